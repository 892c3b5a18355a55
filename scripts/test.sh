#!/usr/bin/env bash
# The whole test suite, as README.md and CI run it: installs the test broker (nisshi, once per
# machine, ~25 min cold) if it is missing, then runs every test of the workspace. The Kafka
# tests start their own private brokers through scripts/kafka.sh. promtool is installed (apt) if
# missing, for the metrics-format test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/kafka.sh install
# tests/http_api.rs checks /metrics with promtool (Debian package `prometheus`).
if ! command -v promtool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi
exec cargo test --workspace --locked "$@"
