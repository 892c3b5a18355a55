#!/usr/bin/env bash
# Starts one timely cluster of vigil processes and supervises it.
#
# Usage: scripts/launch.sh -n PROCESSES -w WORKERS [--hostfile FILE] [--port BASE] [--bin PATH]
#                          -- <vigil run arguments>
#   -n PROCESSES     processes in the cluster (default 1)
#   -w WORKERS       worker threads per process (default 1)
#   --hostfile FILE  one HOST:PORT per process; process i runs on line i+1's host. Local hosts
#                    (localhost, 127.x, ::1, this machine's name) are started directly, others
#                    over ssh ($VIGIL_SSH, default `ssh`) in $VIGIL_REMOTE_DIR (default: this
#                    directory) with $VIGIL_REMOTE_BIN (default: the same path as --bin)
#   --port BASE      without --hostfile: process i listens on 127.0.0.1:BASE+i (default 2101)
#   --bin PATH       the vigil binary (default target/release/vigil, built when missing)
#
# Every line a process prints is prefixed with "[pI] ". Ctrl-C / SIGTERM is forwarded to all
# processes, which drain and stop. When a process fails (non-zero exit or killed), the others
# are stopped (SIGTERM, then SIGKILL after $VIGIL_STOP_GRACE seconds, default 10) and launch.sh
# exits with that process's code (128+signal when it was killed); 0 when all succeed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
processes=1
workers=1
hostfile=
port=2101
bin=
grace=${VIGIL_STOP_GRACE:-10}

die() { echo "launch.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -n | --processes) processes=${2:-}; shift 2 || usage ;;
    -w | --workers) workers=${2:-}; shift 2 || usage ;;
    --hostfile) hostfile=${2:-}; shift 2 || usage ;;
    --port) port=${2:-}; shift 2 || usage ;;
    --bin) bin=${2:-}; shift 2 || usage ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) die "unknown option '$1' (vigil's own arguments go after --)" ;;
  esac
done
is_count "$processes" || die "-n must be a positive integer, not '$processes'"
is_count "$workers" || die "-w must be a positive integer, not '$workers'"
is_count "$port" || die "--port must be a positive integer, not '$port'"
for arg in "$@"; do
  case $arg in
    -w | --workers | -n | --processes | -p | --process | --hostfile | --workers=* | --processes=* | --process=* | --hostfile=*)
      die "'$arg' is set by launch.sh itself; give -n/-w/--hostfile to launch.sh, before --" ;;
  esac
done

if [[ -z $bin ]]; then
  bin=$ROOT/target/release/vigil
  [[ -x $bin ]] || (cd "$ROOT" && cargo build --release --locked) || die "building vigil failed"
fi
[[ -x $bin ]] || die "--bin $bin is not an executable"

# The cluster's addresses, one per process.
hosts=()
if [[ -n $hostfile ]]; then
  [[ -r $hostfile ]] || die "--hostfile $hostfile cannot be read"
  while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ -n $line ]] && hosts+=("$line")
  done <"$hostfile"
  [[ ${#hosts[@]} -ge $processes ]] || die "--hostfile $hostfile has ${#hosts[@]} addresses, -n needs $processes"
  hosts=("${hosts[@]:0:processes}")
else
  for ((i = 0; i < processes; i++)); do hosts+=("127.0.0.1:$((port + i))"); done
fi
workdir=$(mktemp -d "${TMPDIR:-/tmp}/vigil-launch.XXXXXX")
cluster_file=$workdir/hosts
printf '%s\n' "${hosts[@]}" >"$cluster_file"

is_local() {
  local host=${1%:*}
  host=${host#[}
  host=${host%]}
  [[ $host == localhost || $host == 127.* || $host == ::1 || $host == "$(hostname)" || $host == "$(hostname -f 2>/dev/null)" ]]
}

# Starts process $1; sets `started` to the pid of the vigil (or ssh) process.
start_process() {
  local i=$1 host=${hosts[$1]}
  shift
  # The hostfile path is the last cluster argument, so the remote branch can replace it.
  local cluster=(--workers "$workers")
  if [[ $processes -gt 1 ]]; then
    cluster+=(--processes "$processes" --process "$i" --hostfile "$cluster_file")
  fi
  local prefix="[p$i] "
  if is_local "$host"; then
    "$bin" run "${cluster[@]}" "$@" \
      > >(sed -u "s/^/$prefix/") 2> >(sed -u "s/^/$prefix/" >&2) </dev/null &
  else
    local remote_dir=${VIGIL_REMOTE_DIR:-$PWD} remote_bin=${VIGIL_REMOTE_BIN:-$bin} remote_hosts
    remote_hosts=/tmp/vigil-hosts.$$
    local command
    command="cd $(printf %q "$remote_dir") && printf '%s\\n' ${hosts[*]} > $remote_hosts && exec $(printf %q "$remote_bin") run"
    [[ $processes -gt 1 ]] && cluster[-1]=$remote_hosts
    command+=" $(printf '%q ' "${cluster[@]}" "$@")"
    # -tt: a remote process gets SIGHUP when this connection closes, so it never outlives us.
    ${VIGIL_SSH:-ssh} -tt "${host%:*}" "$command" \
      > >(sed -u "s/^/$prefix/") 2> >(sed -u "s/^/$prefix/" >&2) </dev/null &
  fi
  started=$!
}

pids=()
for ((i = 0; i < processes; i++)); do
  start_process "$i" "$@"
  pids+=("$started")
  echo "launch.sh: process $i on ${hosts[$i]} (pid $started)" >&2
done

running() {
  local p
  for p in "${pids[@]}"; do
    if [[ -n $p ]]; then echo "$p"; fi
  done
}

stop_all() {
  local signal=$1 p
  for p in $(running); do kill -s "$signal" "$p" 2>/dev/null || true; done
}

# Asks the remaining processes to stop and reaps them; whatever still runs after $grace
# seconds is killed.
stop_and_reap() {
  stop_all TERM
  local targets
  targets=$(running)
  (
    sleep "$grace"
    for p in $targets; do
      if kill -0 "$p" 2>/dev/null; then
        echo "launch.sh: pid $p still running after ${grace}s; killing it" >&2
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
  ) &
  local killer=$!
  while [[ -n $(running) ]]; do reap_one || true; done
  kill "$killer" 2>/dev/null || true
}

interrupted=0
trap 'interrupted=1; echo "launch.sh: stopping all processes" >&2; stop_all TERM' INT TERM

# Whether process $1 still runs (a zombie does not).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  [[ $stat != *") Z "* ]]
}

# Waits for one process to end; sets `ended_index` and `ended_code`. (Polls rather than using
# `wait -n`, which misses a child that bash reaped while running a command substitution.)
reap_one() {
  local i pid
  while :; do
    for i in "${!pids[@]}"; do
      pid=${pids[$i]}
      if [[ -n $pid ]] && ! alive "$pid"; then
        ended_code=0
        wait "$pid" || ended_code=$?
        pids[i]=
        ended_index=$i
        return 0
      fi
    done
    sleep 0.2
  done
}

status=0
while [[ -n $(running) ]]; do
  reap_one || continue
  if [[ $ended_code -ne 0 && $status -eq 0 ]]; then
    status=$ended_code
    if [[ $interrupted -eq 1 ]]; then
      echo "launch.sh: process $ended_index exited with code $ended_code while stopping" >&2
      continue
    fi
    if [[ $ended_code -gt 128 ]]; then
      why="was killed by signal $((ended_code - 128))"
    else
      why="failed with exit code $ended_code"
    fi
    echo "launch.sh: process $ended_index (${hosts[$ended_index]}) $why; stopping the others" >&2
    stop_and_reap
  fi
done
rm -rf "$workdir"
wait 2>/dev/null || true
exit "$status"
