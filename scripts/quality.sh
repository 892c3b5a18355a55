#!/usr/bin/env bash
# Detection quality on real data, end to end: the ULB credit-card set (fetched into data/ if
# missing), vigil's model trained on day 1 and evaluated on day 2, and the LightGBM baseline
# (scripts/baseline_lgbm.py, in a venv under data/) on the same features and split — each with
# and without the windowed features. Writes data/quality/*.json and prints a table.
#
#   scripts/quality.sh            # `vigil train` flags: VIGIL_TRAIN_FLAGS (default "--seeds 5")
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet
export VIGIL="$target/release/vigil"
[[ -f data/ulb.train.jsonl && -f data/ulb.test.jsonl ]] || scripts/fetch-data.sh ulb

venv=data/venv
if ! "$venv/bin/python" -c 'import lightgbm, sklearn' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet lightgbm scikit-learn numpy
fi

mkdir -p data/quality data/models
for part in train test; do
    [[ -f data/ulb.$part.features.csv ]] || "$VIGIL" features --input data/ulb.$part.jsonl --out data/ulb.$part.features.csv
done

row() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(f"{sys.argv[2]:<34} {d[\"pr_auc\"]:.4f}   {d[\"roc_auc\"]:.4f}   {sys.argv[3]}")' "$@"; }

for variant in windows own; do
    flags=()
    [[ $variant == own ]] && flags=(--without-windows)
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$VIGIL" train --input data/ulb.train.jsonl --out "data/models/ulb-$variant.safetensors" "${flags[@]}" ${VIGIL_TRAIN_FLAGS:---seeds 5}
    secs=$(( $(date +%s) - start ))
    "$VIGIL" eval --input data/ulb.test.jsonl --model "data/models/ulb-$variant.safetensors" --json \
        > "data/quality/vigil-$variant.json"
    echo "$secs" > "data/quality/vigil-$variant.train-seconds"
    bflags=(--train data/ulb.train.jsonl --test data/ulb.test.jsonl
            --train-features data/ulb.train.features.csv --test-features data/ulb.test.features.csv)
    [[ $variant == own ]] && bflags+=(--no-windows)
    "$venv/bin/python" scripts/baseline_lgbm.py "${bflags[@]}" > "data/quality/lightgbm-$variant.json"
done

echo
echo "ULB credit-card, trained on day 1, scored on day 2"
echo "model                              PR-AUC   ROC-AUC  train"
for variant in windows own; do
    row "data/quality/vigil-$variant.json" "vigil ($variant)" "$(cat "data/quality/vigil-$variant.train-seconds") s"
    row "data/quality/lightgbm-$variant.json" "LightGBM ($variant)" \
        "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train_seconds"])' "data/quality/lightgbm-$variant.json") s"
done
