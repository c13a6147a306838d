#!/usr/bin/env bash
# The README's masked-image-modelling results on OSIE (CPU, one run at a time):
#   scripts/focus_mim_osie.sh [STEP ...]
# steps (default: all, in this order): periphery random_frozen fixations scratch random_patches
# none foveate report. A mask step runs the saliency-probe pipeline with that mask
# (pretraining on OSIE train + val and Scene500 stimuli, then the frozen encoder's readout on
# OSIE); foveate pretrains only; random_frozen and scratch train the readout model without
# pretraining. Results: output/04_focus_mim/saliency_probe/<step>/ (the pipeline's stages in
# <step>/<stage>/); report writes the table to output/04_focus_mim/saliency_probe/report/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=output/04_focus_mim/saliency_probe
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(periphery random_frozen fixations scratch random_patches none foveate report)
for step in "${steps[@]}"; do
  case "$step" in
    random_frozen) uv run python -m code.main --cfg configs/04_focus_mim/saliency_probe/readout.yaml ;;
    scratch) uv run python -m code.main --cfg configs/04_focus_mim/saliency_probe/scratch.yaml ;;
    foveate) uv run python -m code.main --cfg configs/04_focus_mim/cpu_osie/foveate.yaml ;;
    report)
      ready=() names=()  # the runs finished so far
      for run in periphery fixations random_patches none; do
        [ -f "$out/$run/readout/metrics.json" ] && ready+=("$out/$run/readout") names+=("MIM $run, frozen")
      done
      for run in random_frozen scratch; do
        [ -f "$out/$run/metrics.json" ] && ready+=("$out/$run") names+=("$run")
      done
      uv run python -m code.report "${ready[@]}" --names "${names[@]}" --out "$out/report" ;;
    *) uv run python -m code.main --cfg configs/04_focus_mim/saliency_probe.yaml --opts \
         PIPELINE.STAGES "[cpu_osie/$step.yaml, saliency_probe/readout.yaml]" \
         PIPELINE.OUTPUT_DIR "$out/$step" ;;
  esac
done
