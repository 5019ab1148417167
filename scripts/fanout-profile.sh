#!/usr/bin/env bash
# Where a node's CPU per delivery goes, on the load of `cargo bench --bench fanout` (cpu scenario):
# a private redis-server, two `switchboard hub` processes, one `switchboard load` process.
#
#   scripts/fanout-profile.sh NODE_BIN callgrind|strace|perf [RATE] [DURATION_S]
#
# callgrind: both nodes run under `valgrind --tool=callgrind`; their counters are zeroed once every
#   client is in and dumped DURATION-3 s later (callgrind_control), so the dump holds the sending
#   phase only. Divide the instructions (the `summary:` line of each *.1 file) by the deliveries
#   printed ("deliveries in window", both nodes' client_out over the same window); the last line
#   also gives instructions per message per node (every message reaches every client once).
#   Valgrind is slow: use a low rate (4000).
# strace: `strace -c -f` on node a over the same window; divide its sendto/writev calls by node
#   a's deliveries (strace slows the node, which lets more frames queue: read it as an upper bound
#   of batching, not as the figure without strace).
# NODE_ARGS adds `switchboard hub` flags (e.g. --no-io-uring).
# CLIENTS (200) sets the client count: 20 clients at 40000/s is a hot room (2000 messages/s each).
# perf: `perf record -e cpu-clock` (software sampling: this machine has no hardware counters) on
#   node a over the same window; prints the top symbols by time, user and kernel together. Where
#   callgrind counts instructions, this shows time, cache misses and stalls included.
# Needs redis-server, curl, python3, valgrind, strace or perf. Output files stay in the printed directory.
set -euo pipefail
BIN=${1:?NODE_BIN}; MODE=${2:?callgrind|strace|perf}; RATE=${3:-4000}; DUR=${4:-10}
CLIENTS=${CLIENTS:-200}
LOADBIN=${LOAD_BIN:-$(dirname "$0")/../target/release/switchboard}
D=$(mktemp -d /tmp/fanout-profile.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$D" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
start_node() {
  if [ "$MODE" = callgrind ]; then
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.$1.%p" "$BIN" hub ${NODE_ARGS:-} --listen 127.0.0.1:0 \
      --name "$1" --redis "redis://127.0.0.1:$PORT" >"$D/$1.out" 2>"$D/$1.err" &
  else
    RUST_LOG=warn "$BIN" hub ${NODE_ARGS:-} --listen 127.0.0.1:0 --name "$1" --redis "redis://127.0.0.1:$PORT" \
      >"$D/$1.out" 2>"$D/$1.err" &
  fi
}
start_node a; A=$!; PIDS+=($A)
start_node b; B=$!; PIDS+=($B)
for _ in $(seq 1 300); do grep -q http "$D/a.out" && grep -q http "$D/b.out" && break; sleep 0.2; done
# Under valgrind the backplane takes seconds to connect; clients sent before would be delivered
# locally only (counted as forward failures).
if [ "$MODE" = callgrind ]; then sleep 4; fi
HA=$(grep -o 'http://[^ ]*/chat' "$D/a.out" | head -1); HB=$(grep -o 'http://[^ ]*/chat' "$D/b.out" | head -1)
stat_of() { curl -s "${1%/chat}/switchboard/stats" | python3 -c "import json,sys;d=json.load(sys.stdin);print($2)"; }
out_of() { stat_of "$1" 'd["messages"]["client_out"]'; }
conns_of() { stat_of "$1" 'd["connections"]["json"]+d["connections"]["messagepack"]'; }
"$LOADBIN" load --node "$HA" --node "$HB" --clients "$CLIENTS" --rate "$RATE" --duration "$DUR" \
  --json --quiet >"$D/load.json" 2>"$D/load.err" &
LOAD=$!
for _ in $(seq 1 600); do
  [ $(( $(conns_of "$HA") + $(conns_of "$HB") )) -ge "$CLIENTS" ] && break; sleep 0.1
done
sleep 1
if [ "$MODE" = callgrind ]; then callgrind_control -z "$A" >/dev/null; callgrind_control -z "$B" >/dev/null; fi
if [ "$MODE" = strace ]; then strace -c -f -p "$A" -o "$D/strace.a" & STRACE=$!; fi
if [ "$MODE" = perf ]; then
  perf record -q -e cpu-clock -F 4999 ${PERF_CALLGRAPH:--g} -p "$A" -o "$D/perf.a" -- sleep $((DUR - 3)) 2>"$D/perf.err" &
  PERF=$!
fi
A0=$(out_of "$HA"); B0=$(out_of "$HB")
sleep $((DUR - 3))
A1=$(out_of "$HA"); B1=$(out_of "$HB")
if [ "$MODE" = callgrind ]; then callgrind_control -d "$A" >/dev/null; callgrind_control -d "$B" >/dev/null; fi
if [ "$MODE" = strace ]; then kill -INT "$STRACE"; wait "$STRACE" || true; fi
if [ "$MODE" = perf ]; then wait "$PERF" || true; fi
echo "deliveries in window: $((A1 - A0 + B1 - B0)) (node a: $((A1 - A0)))"
wait "$LOAD"
python3 -c "import json;d=json.load(open('$D/load.json'));print('load:',d['delivered'],'delivered',d['lost'],'lost',round(d['achieved_deliveries_per_s']),'deliveries/s')"
for h in "$HA" "$HB"; do stat_of "$h" 'd["node_name"], "forward_failures", d["forward_failures"]'; done
if [ "$MODE" = callgrind ]; then
  total=0
  for f in "$D"/cg.*.1; do total=$((total + $(sed -n 's/^summary: //p' "$f"))); done
  # Every message reaches every client once: messages = deliveries / clients; per node = / 2.
  echo "callgrind: $total instructions, $((total / (A1 - A0 + B1 - B0))) per delivery," \
    "$((total * CLIENTS / (A1 - A0 + B1 - B0) / 2)) per message per node"
fi
if [ "$MODE" = strace ]; then head -8 "$D/strace.a"; fi
if [ "$MODE" = perf ]; then
  perf report -i "$D/perf.a" --no-children --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -40
fi
echo "files: $D"
