#!/usr/bin/env bash
# The seed's STL-10 grid (a GPU job: 500 epochs per cell): mask × fill × crop from the files
# configs/04_focus_mim/stl10/{random_patches,periphery,foveate,none}.yaml (mean fill, random
# crops) and configs/04_focus_mim/stl10/grid/*.yaml (blur fill, whole images), × ratio × seed;
# each cell pretrains, then the linear probe on its frozen encoder. A finished cell (its
# probe's metrics.json) is skipped on a rerun. Table of probe accuracy (mean ± sd over seeds):
# output/04_focus_mim/stl10/grid/table.md.
#   [SEEDS="0 1 2 3 4"] [RATIOS="0.6 0.8"] [GPUS=8] [OPTS="KEY VALUE ..."] \
#     scripts/focus_mim_stl10_grid.sh [VARIANT ...]
# RATIOS (default: each file's own, the seed's best) applies to the masks that have a ratio;
# OPTS are overrides for both stages (e.g. "TRAIN.EPOCHS 100"); VARIANT is a file stem (e.g.
# periphery_blur_no_crop; default: all twelve).
set -euo pipefail
cd "$(dirname "$0")/.."
configs=configs/04_focus_mim/stl10
out=output/04_focus_mim/stl10/grid
seeds=(${SEEDS:-0 1 2 3 4})
ratios=(${RATIOS:-own})
opts=(${OPTS:-})
main=(uv run torchrun --nproc_per_node="${GPUS:-1}" -m code.main)
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=(random_patches periphery foveate none)
  for file in "$configs"/grid/*.yaml; do variants+=("$(basename "$file" .yaml)"); done
fi
for variant in "${variants[@]}"; do
  file="$configs/$variant.yaml"
  [ -f "$file" ] || file="$configs/grid/$variant.yaml"
  [ -f "$file" ] || { echo "no grid file $variant.yaml in $configs or $configs/grid" >&2; exit 1; }
  mask=$(echo "${variant%%_*}" | tr a-z A-Z)
  [ "$mask" = RANDOM ] && mask=RANDOM_PATCHES
  for ratio in "${ratios[@]}"; do
    ratio_opts=() name=$variant
    if [ "$ratio" != own ] && [ "$mask" != NONE ]; then
      ratio_opts=(MODEL.INPUT_STAGE.$mask.RATIO "$ratio") name="${variant}_ratio$ratio"
    fi
    for seed in "${seeds[@]}"; do
      cell="$out/${name}_seed$seed"
      [ -f "$cell/probe/metrics.json" ] && continue
      resume=()
      [ -f "$cell/pretrain/last.pt" ] && [ ! -f "$cell/pretrain/metrics.json" ] && resume=(--resume)
      [ -f "$cell/pretrain/metrics.json" ] || "${main[@]}" --cfg "$file" "${resume[@]}" \
        --opts SEED "$seed" OUTPUT_DIR "$cell/pretrain" "${ratio_opts[@]}" "${opts[@]}"
      resume=()
      [ -f "$cell/probe/last.pt" ] && resume=(--resume)
      "${main[@]}" --cfg "$configs/probe.yaml" "${resume[@]}" --opts SEED "$seed" \
        OUTPUT_DIR "$cell/probe" TRAIN.INIT.CHECKPOINT "$cell/pretrain/best.pt" "${opts[@]}"
    done
  done
done
uv run python - "$out" <<'EOF'
"""Probe accuracy of every finished cell, mean ± sd (ddof 0) over its seeds."""
import json, sys
from pathlib import Path
import numpy as np

out = Path(sys.argv[1])
cells: dict[str, list[float]] = {}
for metrics in sorted(out.glob("*_seed*/probe/metrics.json")):
    name = metrics.parent.parent.name.rsplit("_seed", 1)[0]
    cells.setdefault(name, []).append(json.loads(metrics.read_text())["metrics"]["accuracy"])
lines = ["| cell | probe accuracy | seeds |", "|---|---|---|"]
lines += [f"| {n} | {np.mean(a):.4f} ± {np.std(a):.4f} | {len(a)} |" for n, a in cells.items()]
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
