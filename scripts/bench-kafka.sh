#!/usr/bin/env bash
# Kafka benchmark through a private nisshi broker on this machine (see README "Benchmarks"):
#   1. throughput: a backlog of EVENTS events over 4 partitions, read with `--stop-at-end` and
#      decided into Kafka, once per worker count;
#   2. latency: the job (Kafka in and out) runs first, then `vigil gen --to kafka --rate RATE`
#      offers EVENTS events (after one warm-up event); the job's summary gives produce time →
#      decision rendered and produce time → decision acknowledged by the broker (p50/p95/p99),
#      and the consumer lag (`kafka_consumer_lag_messages` from /metrics) is sampled every second.
# Usage: scripts/bench-kafka.sh [EVENTS (default 1000000)] [RATE (default 50000)] [WORKERS... (default 1 2)]
# Environment: BENCH_KAFKA_PORT (default 9392). The broker keeps its data in memory and is
# wiped before each measurement, so every run starts from empty topics.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
rate=${2:-50000}
shift $(($# < 2 ? $# : 2))
if (($#)); then workers=("$@"); else workers=(1 2); fi
port=${BENCH_KAFKA_PORT:-9392}
http_port=$((port + 1))
export KAFKA_PORT=$port KAFKA_STORAGE=memory://nisshi/ KAFKA_DIR=${TMPDIR:-/tmp}/vigil-bench-kafka-$port
vigil=./target/release/vigil
out=$(mktemp -d)
trap 'bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

cargo build --release --locked
bash scripts/kafka.sh install >/dev/null

fresh_broker() {
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  # One runtime thread: the broker shares the two cores with the job and the load generator,
  # and its cross-thread wake-ups cost more than they give (paced p99 delivered 55-107 → 46-61 ms).
  TOKIO_WORKER_THREADS=1 bash scripts/kafka.sh start >/dev/null
  bash scripts/kafka.sh topics 4 >/dev/null
}

summary() { grep -E '^  (events in|throughput|latency|delivered) ' "$1" | sed 's/^  */    /'; }

echo "== throughput: backlog of $events events, 4 partitions, Kafka in and out"
for w in "${workers[@]}"; do
  fresh_broker
  "$vigil" gen --to kafka --brokers "127.0.0.1:$port" --events "$events" --users 100000 >/dev/null 2>&1
  "$vigil" run --source kafka --sink kafka --brokers "127.0.0.1:$port" --stop-at-end --workers "$w" \
    --out-dir "$out" >"$out/throughput-$w.log" 2>&1
  echo "  $w worker(s):"
  summary "$out/throughput-$w.log"
done

echo "== latency: $events events offered at $rate events/s, Kafka in and out"
metric_sum() {
  curl -s "http://127.0.0.1:$http_port/metrics" | awk -v name="$1" '$1 ~ "^" name "[{ ]" { sum += $NF } END { printf "%d", sum }'
}
lag() { metric_sum kafka_consumer_lag_messages; }
decided() { metric_sum vigil_events_total; }
for w in "${workers[@]}"; do
  fresh_broker
  # One warm-up event: the lag gauge appears once the job has read it, so the paced stream
  # starts when the job is reading (else its first events would wait for the job to connect).
  "$vigil" gen --to kafka --brokers "127.0.0.1:$port" --events 1 --seed 99 >/dev/null 2>&1
  "$vigil" run --source kafka --sink kafka --brokers "127.0.0.1:$port" --workers "$w" --out-dir "$out" \
    --http "127.0.0.1:$http_port" >"$out/latency-$w.log" 2>&1 &
  job=$!
  until curl -sf "http://127.0.0.1:$http_port/metrics" | grep -q '^kafka_consumer_lag_messages'; do
    kill -0 "$job" || { cat "$out/latency-$w.log" >&2; exit 1; }
    sleep 0.2
  done
  "$vigil" gen --to kafka --brokers "127.0.0.1:$port" --events "$events" --users 100000 --rate "$rate" \
    >/dev/null 2>&1 &
  gen=$!
  samples=()
  while kill -0 "$gen" 2>/dev/null; do samples+=("$(lag)"); sleep 1; done
  wait "$gen"
  # The job runs until stopped, as in production: stop it once it has taken in every event.
  until (($(decided) > events)); do sleep 0.2; done
  kill -TERM "$job"
  wait "$job" || true
  echo "  $w worker(s):"
  summary "$out/latency-$w.log"
  echo "    consumer lag, messages, one sample per second: ${samples[*]}"
done
