#!/usr/bin/env bash
# A local Kafka-protocol broker (nisshi 0.8.1) for vigil's tests and local runs.
#
# Usage: scripts/kafka.sh install | start | stop [--wipe] | status | topics [PARTITIONS [TOPIC...]]
#   install          build nisshi 0.8.1 from its crates.io source with one fix of vigil's and
#                    cargo-install it with the sqlite and memory engines, unless `cargo install
#                    --list` already names the fixed build (~25 min cold); replaces any other nisshi
#   start            start a broker on 127.0.0.1:$KAFKA_PORT in the background and wait until it
#                    answers (60 s at most); a no-op if it is already running
#   stop [--wipe]    stop it (SIGTERM, SIGKILL after 20 s); the data stays unless --wipe is given
#   status           print "running" (exit 0) or "not running" (exit 1)
#   topics [N [T..]] create topics T.. (default: $KAFKA_TOPICS, or the four of SPEC §4) with N
#                    partitions (default 4) and max.message.bytes=8388608; existing ones are kept
#
# Environment:
#   KAFKA_PORT     listener port (default 9092)
#   KAFKA_DIR      state dir: pid file, broker.log, data (default ${TMPDIR:-/tmp}/vigil-kafka-$KAFKA_PORT)
#   KAFKA_STORAGE  --storage-engine URL (default sqlite://nisshi.db, a file in $KAFKA_DIR, which
#                  survives restarts; memory://nisshi/ is faster but loses everything on stop)
#   KAFKA_TOPICS   space-separated topic names for `topics`
#
# The fix (scripts/nisshi/chained-fetch.patch, in the memory/object-store engine): a fetch reads
# the batch that starts at the fetch offset and the ones that follow it by key. Unfixed, every
# fetch lists every batch of the partition, so its cost grows with all the partition holds; at
# 50,000 events/s that alone raised the job's p99 from 46-52 ms to 102-112 ms within 20 s.
set -euo pipefail

NISSHI_VERSION=0.8.1
FIXED="$NISSHI_VERSION+vigil.1"
PATCH="$(cd "$(dirname "$0")" && pwd)/nisshi/chained-fetch.patch"
PORT=${KAFKA_PORT:-9092}
DIR=${KAFKA_DIR:-${TMPDIR:-/tmp}/vigil-kafka-$PORT}
STORAGE=${KAFKA_STORAGE:-sqlite://nisshi.db}
BROKER=tcp://127.0.0.1:$PORT
PIDFILE=$DIR/broker.pid
LOG=$DIR/broker.log
export PATH="$PATH:$HOME/.cargo/bin"

die() { echo "kafka.sh: $*" >&2; exit 1; }

# `cargo install --list` names the fixed build by its version; nisshi lists the storage engines it
# was built with at the end of `--help`.
installed() {
  command -v nisshi >/dev/null && cargo install --list 2>/dev/null | grep -qF "nisshi v$FIXED" \
    && nisshi --help 2>/dev/null | grep -q '^Storage engines:.*libsql'
}

install() {
  if installed; then echo "nisshi $FIXED is installed: $(command -v nisshi)"; return; fi
  local work registry crate name
  work=$(mktemp -d)
  trap "rm -rf '$work'" EXIT
  # cargo downloads (and checksums) the published crates for a throwaway package that needs them.
  mkdir -p "$work/fetch/src"
  touch "$work/fetch/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s\n%s\n' \
    "nisshi = { version = \"=$NISSHI_VERSION\", default-features = false }" \
    "nisshi-storage-dynostore = { version = \"=$NISSHI_VERSION\", default-features = false }" \
    >"$work/fetch/Cargo.toml"
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
  registry=${CARGO_HOME:-$HOME/.cargo}/registry/cache
  for name in nisshi nisshi-storage-dynostore; do
    crate=$(find "$registry" -name "$name-$NISSHI_VERSION.crate" | head -n 1)
    [[ -n $crate ]] || die "cargo fetch did not download $name $NISSHI_VERSION"
    tar -xzf "$crate" -C "$work"
  done
  (cd "$work/nisshi-storage-dynostore-$NISSHI_VERSION" && git apply "$PATCH")
  # The binary builds against the fixed engine, under a version that says so; cargo then changes
  # only those two entries of nisshi's own Cargo.lock, which pins everything else.
  local nisshi="$work/nisshi-$NISSHI_VERSION"
  sed -i "0,/^version = \"$NISSHI_VERSION\"/s//version = \"$FIXED\"/" "$nisshi/Cargo.toml"
  printf '\n[patch.crates-io]\nnisshi-storage-dynostore = { path = "../nisshi-storage-dynostore-%s" }\n' \
    "$NISSHI_VERSION" >>"$nisshi/Cargo.toml"
  cargo metadata --quiet --format-version 1 --manifest-path "$nisshi/Cargo.toml" >/dev/null
  # libsql adds sqlite:// (persistent, in one file); dynostore adds memory://, s3://, gs://.
  cargo install --path "$nisshi" --locked --ignore-rust-version --force \
    --no-default-features --features dynostore,libsql
  installed || die "nisshi installed, but \`cargo install --list\` does not name $FIXED with the sqlite engine"
}

# Prints the broker's pid if it runs: a live (not zombie) nisshi process named in the pid file.
pid() {
  local p stat
  p=$(cat "$PIDFILE" 2>/dev/null) && stat=$(cat "/proc/$p/stat" 2>/dev/null) || return 1
  [[ $stat == "$p (nisshi) "[^Z]* ]] && echo "$p"
}

# Whether the process started for the broker is alive (not a zombie), under any name.
starting_or_running() {
  local p stat
  p=$(cat "$PIDFILE" 2>/dev/null) && stat=$(cat "/proc/$p/stat" 2>/dev/null) || return 1
  [[ $stat == "$p ("*") "[^Z]* ]]
}

# nisshi's own client retries a refused connection for ~20 s, so probe the port first.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
answers() { port_open && timeout 10 nisshi topic list --broker "$BROKER" >/dev/null 2>&1; }

start() {
  if p=$(pid); then echo "nisshi already running on 127.0.0.1:$PORT (pid $p)"; return; fi
  command -v nisshi >/dev/null || die "nisshi is not installed: run $0 install"
  port_open && die "something else already listens on 127.0.0.1:$PORT (another broker?)"
  mkdir -p "$DIR"
  # The sqlite engine resolves its file against the working directory, so run in $DIR.
  (cd "$DIR" && exec nohup nisshi broker --listener-url "$BROKER" --advertised-listener-url "$BROKER" \
    --storage-engine "$STORAGE" --group-initial-rebalance-delay 0s >>"$LOG" 2>&1 </dev/null) &
  echo $! >"$PIDFILE"
  for _ in $(seq 120); do
    # Until the background shell has exec'd nisshi, the process is still named bash.
    starting_or_running || { tail -n 30 "$LOG" >&2; rm -f "$PIDFILE"; die "nisshi exited during start-up (log: $LOG)"; }
    if answers; then echo "nisshi running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), $STORAGE, dir $DIR)"; return; fi
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2
  stop >/dev/null
  die "nisshi did not answer on 127.0.0.1:$PORT within 60 s (log: $LOG)"
}

stop() {
  if p=$(pid); then
    kill -TERM "$p"
    for _ in $(seq 40); do pid >/dev/null || break; sleep 0.5; done
    if pid >/dev/null; then kill -KILL "$p"; echo "nisshi (pid $p) killed"; else echo "nisshi (pid $p) stopped"; fi
  else
    echo "nisshi not running"
  fi
  rm -f "$PIDFILE"
  if [[ ${1:-} == --wipe ]]; then rm -rf "$DIR"; echo "wiped $DIR"; fi
}

status() {
  if p=$(pid); then echo "running on 127.0.0.1:$PORT (pid $p)"; else echo "not running"; return 1; fi
}

topics() {
  local partitions=${1:-4}
  [[ $# -gt 0 ]] && shift
  [[ $partitions =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer, not '$partitions'"
  local names=("$@")
  [[ ${#names[@]} -gt 0 ]] || read -ra names <<<"${KAFKA_TOPICS:-anomaly-events anomaly-decisions anomaly-alerts anomaly-dlq}"
  local existing
  port_open && existing=$(nisshi topic list --broker "$BROKER") || die "no broker answers on 127.0.0.1:$PORT"
  for t in "${names[@]}"; do
    if grep -qF "\"name\":\"$t\"" <<<"$existing"; then echo "topic $t exists"; continue; fi
    nisshi topic create "$t" --broker "$BROKER" --partitions "$partitions" \
      --config max.message.bytes=8388608 --silent
    echo "topic $t created ($partitions partitions)"
  done
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install | start | stop | status | topics) "$cmd" "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
