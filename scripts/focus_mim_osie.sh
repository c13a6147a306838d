#!/usr/bin/env bash
# The README's masked-image-modelling results on OSIE (CPU, one run at a time):
#   [SEED=1] scripts/focus_mim_osie.sh [STEP ...]
# steps (default, in this order): random_patches_no_crop none_no_crop random_frozen scratch
# periphery_no_crop fixations_no_crop report. A mask step (any file stem of
# configs/04_focus_mim/cpu_osie/, e.g. periphery: with the seed's random crops) runs the
# saliency-probe pipeline with that mask (pretraining on OSIE train + val and Scene500 stimuli,
# then the frozen encoder's readout on OSIE); random_frozen and scratch train the readout model
# without pretraining. SEED
# (default 0) seeds every run; runs of seed s > 0 go to folders ending in _seed<s>. Results:
# output/04_focus_mim/saliency_probe/<step>[_seed<s>]/ (a pipeline's stages in its
# <stage>/ folders); report tabulates every finished run of every seed into
# output/04_focus_mim/saliency_probe/report/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=output/04_focus_mim/saliency_probe
seed=${SEED:-0}
suffix=""
[ "$seed" = 0 ] || suffix="_seed$seed"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(random_patches_no_crop none_no_crop random_frozen scratch
  periphery_no_crop fixations_no_crop report)
for step in "${steps[@]}"; do
  run="$out/$step$suffix"
  case "$step" in
    random_frozen | scratch)
      [ "$step" = random_frozen ] && config=readout || config=scratch
      uv run python -m code.main --cfg "configs/04_focus_mim/saliency_probe/$config.yaml" \
        --opts SEED "$seed" OUTPUT_DIR "$run" ;;
    report)
      ready=() names=()  # the runs finished so far, of every seed
      for folder in "$out"/*/; do
        name=$(basename "$folder")
        if [ -f "$folder/readout/metrics.json" ]; then
          ready+=("$folder/readout") names+=("MIM ${name%%_seed*} frozen${name#"${name%%_seed*}"}")
        elif [ -f "$folder/metrics.json" ]; then
          ready+=("$folder") names+=("$name")
        fi
      done
      # the tables are made from the runs: rewritten each time
      uv run python -m code.report "${ready[@]}" --names "${names[@]}" --out "$out/report" \
        --overwrite ;;
    *)
      uv run python -m code.main --cfg configs/04_focus_mim/saliency_probe.yaml --opts \
        PIPELINE.STAGES "[cpu_osie/$step.yaml, saliency_probe/readout.yaml]" \
        PIPELINE.OUTPUT_DIR "$run" SEED "$seed" ;;
  esac
done
