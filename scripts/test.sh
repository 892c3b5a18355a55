#!/usr/bin/env bash
# The whole test suite, as README.md and CI run it: installs the test brokers if they are missing
# (once per machine: nisshi ~25 min cold, noida-db for transactions a few minutes), then runs every test
# of the workspace. The Kafka tests start their own private brokers. promtool is installed (apt) if
# missing, for the metrics-format test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/kafka.sh install
# tests/exactly_once.rs needs a broker with transactions: noida-db (DESIGN.md), with vigil's fix of
# its aborted-transaction reporting (scripts/noida-db.sh; a few minutes cold).
bash scripts/noida-db.sh install
# tests/http_api.rs checks /metrics with promtool (Debian package `prometheus`).
if ! command -v promtool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi
exec cargo test --workspace --locked "$@"
