#!/usr/bin/env bash
# Release-build benchmark of every stage and end to end (see README "Benchmarks").
# Usage: scripts/bench.sh [vigil bench flags...]   e.g. scripts/bench.sh --events 1000000 --json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
exec ./target/release/vigil bench "$@"
