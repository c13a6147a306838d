#!/usr/bin/env bash
# The README's DinoGaze-SPADE table on OSIE: the four spatial ablations, the scanpath model, and
# the spatial SPADE model scored on the scanpath model's held-out fixations. CPU, one run at a
# time (about an hour on 2 cores). Results: output/01_dinogaze_spade/cpu_osie/*/metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=configs/01_dinogaze_spade/cpu_osie
out=output/01_dinogaze_spade/cpu_osie
for ablation in no_injection spade spade_static cross_attention scanpath; do
  uv run python -m code.main --cfg "$configs/$ablation.yaml"
done
# The spatial model on the same fixations as the scanpath model (each given nothing but the image).
mkdir -p "$out/spade_on_scanpaths"
cp "$out/spade/best.pt" "$out/spade_on_scanpaths/best.pt"
uv run python -m code.main --cfg "$configs/spade.yaml" --eval-only --opts \
  OUTPUT_DIR "$out/spade_on_scanpaths" \
  DATA.SAMPLES.NAME scanpath \
  DATA.SAMPLES.SCANPATH.HISTORY_LENGTH 3 \
  DATA.SAMPLES.SCANPATH.INCLUDE_FIRST false
