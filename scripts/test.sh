#!/usr/bin/env bash
# The whole test suite, as README.md and CI run it: installs the test broker (nisshi, once per
# machine, ~25 min cold) if it is missing, then runs every test of the workspace. The Kafka
# tests start their own private brokers through scripts/kafka.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/kafka.sh install
exec cargo test --workspace --locked "$@"
