#!/usr/bin/env bash
# The shipped default model (models/default/): its recipe search, generalisation and release
# (CPU, one run at a time):
#   scripts/default_model.sh [STEP ...]
# steps (default: all, in this order):
#   baseline and every file stem of configs/default_model/search/ (flip long both highres wide
#   ...): train that candidate (a finished run is kept), then score its best checkpoint on
#   OSIE's 70 validation images, through code.predict and code.evaluate, into <run>/osie_val/;
#   baseline is configs/01_dinogaze_spade/cpu_osie/no_injection.yaml, the README's row.
#   search: the candidates' validation table, onto docs/default_model.md (block search).
#   ship: the shipped run (CHOSEN, default both_highres: the best recipe by validation IG,
#     highres, trained on OSIE and Scene500), exported to
#     models/default/model.pt, then scored on OSIE's 140 test images (its one test score)
#     and Scene500's 100 test images, onto models/default/MODEL_CARD.md (blocks test and
#     scene500-test), and on the first 12 OSIE test images: models/default/check.json, the
#     scores tests/test_default_model.py reproduces from the shipped file.
#   scene500: the chosen recipe trained on OSIE alone (TWIN, default highres) scored on all 500
#     Scene500 images (another lab's images, viewers and sizes), onto the card (block scene500).
# Results: output/default_model/search/<step>/ (baseline: output/01_dinogaze_spade/cpu_osie/
# no_injection/) and output/default_model/{osie_test,scene500_test,scene500_all}/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=output/default_model
chosen=${CHOSEN:-both_highres}
twin=${TWIN:-highres}
osie=../shared/data/osie
scene500=../shared/data/scene500
card=models/default/MODEL_CARD.md
baseline=output/01_dinogaze_spade/cpu_osie/no_injection
steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(baseline)
  for file in configs/default_model/search/*.yaml; do steps+=("$(basename "$file" .yaml)"); done
  steps+=(search ship scene500)
fi

run_of() {  # the run folder of a candidate
  if [ "$1" = baseline ]; then echo "$baseline"; else echo "$out/search/$1"; fi
}

# names_of PART: OSIE's images of that part of the split (of every OSIE-only run), one per line
names_of() {
  mkdir -p "$out"
  uv run python -c "import json, sys; print('\n'.join(json.load(open(sys.argv[1]))[sys.argv[2]]))" \
    "$baseline/split.json" "$1" > "$out/osie_$1.txt"
  echo "$out/osie_$1.txt"
}

# score CHECKPOINT DATASET ROOT FOLDER [NAMES]: predict and evaluate into FOLDER (all images,
# or those NAMES lists)
score() {
  local checkpoint=$1 dataset=$2 root=$3 folder=$4 names=${5:-}
  local subset=()
  [ -z "$names" ] || subset=(--images "$names")
  rm -rf "$folder"
  uv run python -m code.predict --checkpoint "$checkpoint" --input "$root/stimuli" \
    --output "$folder" --no-overlays "${subset[@]}"
  uv run python -m code.evaluate saliency --dataset "$dataset" --root "$root" \
    --predictions "$folder/densities" --kind log-density --out "$folder/metrics.json" \
    "${subset[@]}"
  rm -rf "$folder/densities"  # the scores are kept; the maps are hundreds of MB
}

for step in "${steps[@]}"; do
  case "$step" in
    search)
      rows=() names=()
      for file in configs/default_model/search/*.yaml; do
        name=$(basename "$file" .yaml)
        [ -f "$out/search/$name/osie_val/metrics.json" ] || continue
        rows+=("$out/search/$name/osie_val") names+=("$name")
      done
      uv run python -m code.report "$baseline/osie_val" "${rows[@]}" \
        --names baseline "${names[@]}" --update docs/default_model.md#search ;;
    ship)
      run=$(run_of "$chosen")
      uv run python -m code.export "$run/best.pt" models/default/model.pt --overwrite
      osie_test=$(names_of test)
      score models/default/model.pt osie "$osie" "$out/osie_test" "$osie_test"
      uv run python -m code.report "$out/osie_test" --names "default model" \
        --update "$card#test"
      uv run python -c "import json, sys; print('\n'.join(
        s.split('/', 1)[1] for s in json.load(open(sys.argv[1]))['test'] if s.startswith('scene500/')))" \
        "$run/split.json" > "$out/scene500_test.txt"
      score models/default/model.pt scene500 "$scene500" "$out/scene500_test" \
        "$out/scene500_test.txt"
      uv run python -m code.report "$out/scene500_test" --names "default model" \
        --update "$card#scene500-test"
      # the check the tests repeat: the shipped file's scores on the first 12 OSIE test images
      head -n 12 "$osie_test" > "$out/check_images.txt"
      score models/default/model.pt osie "$osie" "$out/check" "$out/check_images.txt"
      uv run python -c "import json, sys; result = json.load(open(sys.argv[1])); print(json.dumps(
        {'images': open(sys.argv[2]).read().split(), 'n_fixations': result['n_fixations'],
         'metrics': {k: result['metrics'][k] for k in ('IG', 'LL', 'NSS', 'AUC')}}, indent=2))" \
        "$out/check/metrics.json" "$out/check_images.txt" > models/default/check.json ;;
    scene500)
      score "$(run_of "$twin")/best.pt" scene500 "$scene500" "$out/scene500_all"
      uv run python -m code.report "$out/scene500_all" --names "$twin (trained on OSIE alone)" \
        --update "$card#scene500" ;;
    *)
      run=$(run_of "$step")
      if [ "$step" = baseline ]; then
        config=configs/01_dinogaze_spade/cpu_osie/no_injection.yaml
      else
        config=configs/default_model/search/$step.yaml
      fi
      [ -f "$run/metrics.json" ] || uv run python -m code.main --cfg "$config"
      score "$run/best.pt" osie "$osie" "$run/osie_val" "$(names_of val)" ;;
  esac
done
