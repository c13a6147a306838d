#!/usr/bin/env bash
# The README's DinoGaze-SPADE table on OSIE (CPU, one run at a time, about an hour on 2 cores):
#   scripts/dinogaze_osie.sh [STEP ...]
# steps (default: all, in this order): no_injection scanpath spatial_on_scanpaths spade
# spade_static cross_attention report. spatial_on_scanpaths scores the spatial no_injection
# model on the scanpath model's held-out fixations (the scanpath model uses the same features).
# Results: output/01_dinogaze_spade/cpu_osie/<step>/metrics.json (spatial_on_scanpaths, an
# evaluation only: <step>/eval/metrics.json); report writes the README's tables to
# output/01_dinogaze_spade/cpu_osie/report/. A step whose folder holds a run is refused:
# delete the folder to run it again.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=configs/01_dinogaze_spade/cpu_osie
out=output/01_dinogaze_spade/cpu_osie
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(no_injection scanpath spatial_on_scanpaths spade spade_static cross_attention report)
for step in "${steps[@]}"; do
  if [ "$step" = report ]; then  # the tables are made from the runs: rewritten each time
    uv run python -m code.report "$out"/{no_injection,spade,spade_static,cross_attention,scanpath,spatial_on_scanpaths} \
      --names "no injection (identity)" "SPADE (dynamic)" "SPADE (static)" cross-attention \
      "scanpath model (conditional)" "spatial model (no injection)" --out "$out/report" --overwrite
  elif [ "$step" = spatial_on_scanpaths ]; then
    uv run python -m code.main --cfg "$configs/no_injection.yaml" --eval-only \
      --checkpoint "$out/no_injection/best.pt" --opts \
      OUTPUT_DIR "$out/$step" \
      DATA.SAMPLES.NAME scanpath \
      DATA.SAMPLES.SCANPATH.HISTORY_LENGTH 3 \
      DATA.SAMPLES.SCANPATH.INCLUDE_FIRST false
  else
    uv run python -m code.main --cfg "$configs/$step.yaml"
  fi
done
