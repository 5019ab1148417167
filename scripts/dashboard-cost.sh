#!/usr/bin/env bash
# Measures what the dashboard costs to leave open: CPU (% of one core, user + kernel, from
# /proc/PID/stat) and frames drawn per second, per tab, in a real window under Xvfb with software
# OpenGL (where one full frame costs about 20 ms of CPU). Prints one table row per scenario:
#   demo, tab by tab    `switchboard demo` at its default settings (2 nodes, 5 clients each, 2 msg/s),
#                       the whole demo process: dashboard, both nodes and the simulated clients
#   presenter           the same with --presenter (the topology in large type)
#   quiet               `switchboard dashboard` watching one `switchboard hub` with no clients on a
#                       private redis-server: heartbeats and monitor pushes only
#   flood 10k           the dashboard's Traffic tab while 10,000 msg/s of backplane traffic arrive
#                       (the tap_flood bench's publisher)
#
# Usage: scripts/dashboard-cost.sh [--bin PATH] [--secs N] [--warmup N] [--only demo|quiet|flood]
# Needs Xvfb and redis-server (scripts/test.sh installs both). Builds the release binary when --bin is
# not given. Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=""
secs=20
warmup=8
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--secs N] [--warmup N] [--only demo|quiet|flood]" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin=target/release/switchboard
fi
for tool in Xvfb redis-server; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/test.sh installs it)" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A private X server on a free display, and a private home so no remembered settings are read or
# written.
display=""
for n in $(seq 140 199); do
  if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then display=":$n"; break; fi
done
[ -n "$display" ] || { echo "no free X display" >&2; exit 2; }
Xvfb "$display" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
sleep 1
real_home=$HOME # cargo and rustup live there; the window gets a private home
export DISPLAY=$display HOME=$work/home XDG_DATA_HOME=$work/home/.local/share LIBGL_ALWAYS_SOFTWARE=1
mkdir -p "$HOME"
unset WAYLAND_DISPLAY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

printf '%-22s %8s %9s %s\n' scenario "CPU %" "frames/s" "slowest frame built"

# measure NAME ARGS...: runs the binary for warmup + secs (it closes itself), samples its CPU over the
# last `secs` and counts the frames it drew in that window (from its exit log).
measure() {
  local name=$1; shift
  local log=$work/$name.log
  RUST_LOG=info "$bin" "$@" --exit-after $((warmup + secs)) >"$log" 2>&1 &
  local pid=$!
  sleep "$warmup"
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(ticks "$pid")
  sleep "$secs"
  t1=$(date +%s.%N); c1=$(ticks "$pid" 2>/dev/null || echo "$c0")
  wait "$pid" || true
  local frames slowest
  frames=$(sed -n 's/.*per second: \[\(.*\)\].*/\1/p' "$log" | tr -d ' ' | tr ',' '\n' |
    awk -v a="$warmup" -v b=$((warmup + secs)) 'NR > a && NR <= b { s += $1 } END { print s + 0 }')
  slowest=$(sed -n 's/.*slowest built in \([0-9.]*\) ms.*/\1 ms/p' "$log")
  awk -v n="$name" -v c=$((c1 - c0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" -v f="$frames" -v s="${slowest:-?}" \
    'BEGIN { d = t1 - t0; printf "%-22s %8.1f %9.1f %s\n", n, 100 * c / hz / d, f / d, s }'
}

if [ -z "$only" ] || [ "$only" = demo ]; then
  for tab in traffic rates nodes send topology; do
    measure "demo $tab" demo --tab "$tab"
  done
  measure "demo presenter" demo --presenter
fi

if [ -z "$only" ] || [ "$only" = quiet ]; then
  rport=$(free_port); hport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
  pids+=($!)
  RUST_LOG=warn "$bin" hub --listen "127.0.0.1:$hport" --redis "redis://127.0.0.1:$rport" --name quiet >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  for tab in traffic nodes; do
    measure "quiet $tab" dashboard --fresh --redis "redis://127.0.0.1:$rport" \
      --node "http://127.0.0.1:$hport/chat" --tab "$tab"
  done
fi

if [ -z "$only" ] || [ "$only" = flood ]; then
  flood_log=$work/flood.log
  HOME=$real_home FLOOD_ONLY=1 FLOOD_RATE=10000 FLOOD_SECS=$((warmup + secs + 10)) \
    cargo bench --locked --quiet --bench tap_flood >"$flood_log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do grep -q '^prefix:' "$flood_log" && break; sleep 0.5; done
  url=$(sed -n 's/^redis URL: *//p' "$flood_log")
  prefix=$(sed -n 's/^prefix: *//p' "$flood_log")
  if [ -z "$url" ]; then
    echo "flood: the publisher did not start:"; cat "$flood_log"
  else
    sleep 5 # the publisher starts 5 s after printing its address
    measure "flood 10k traffic" dashboard --fresh --redis "$url" --channel-prefix "$prefix" --tab traffic
  fi
fi
