#!/usr/bin/env bash
# Switchboard hub nodes against Socket.IO + @socket.io/redis-adapter nodes on the same broadcast
# load, on one machine, in one run: node CPU per delivery (user, kernel, total, and the ratio
# Socket.IO / Switchboard), p99 send → receipt cross-node and same-node, loss, and each driver's
# share of a core (a driver near 100 % is in its own tail). benches/socketio/compare.mjs does the
# work; this installs its npm packages and checks the tools first. Everything stays on 127.0.0.1.
#
#   scripts/socketio-compare.sh                        # 3 runs, 200 clients, 40,000 deliveries/s
#   SIO_RATE=80000 scripts/socketio-compare.sh
#   SIO_CLIENT=both SIO_RUNS=1 scripts/socketio-compare.sh
#   SWITCHBOARD_BIN=/tmp/other/switchboard scripts/socketio-compare.sh
#
# Knobs (environment):
#   SIO_RUNS (3)          runs; each runs every row on fresh nodes, then the medians are printed
#   SIO_CLIENTS (200)     clients, alternating across the two nodes; the first 10 send
#   SIO_RATE (40000)      deliveries/s over all clients (a broadcast reaches every client)
#   SIO_DURATION (10)     seconds of sending; CPU is measured over the middle DURATION − 2 s
#   SIO_CLIENT (official) official: @microsoft/signalr and socket.io-client; raw: the `ws` package
#                         speaking each protocol's text directly; both: one row of each
#   SIO_LEAN (1)          0 leaves out the row of `switchboard load` against Switchboard
#   SIO_HUB_ARGS          extra `switchboard hub` flags. From 200,000 deliveries/s with 200
#                         clients each sender reaches the hub's default limit of 100 invocations/s
#                         per connection: add --max-invocations-per-second 0 (Socket.IO has none)
#   SWITCHBOARD_BIN (target/release/switchboard)  the binary run as nodes and as `load`; the
#                         default is built with `cargo build --release` when it is missing
#
# Everything runs on this machine's cores, so other work (a cargo build) changes the figures: each
# row waits until the machine is quiet, is measured again once if other processes took more than
# 10 % of a core over its window, and is flagged DISTURBED if they did both times.
#
# Needs node (18+), npm (the first time, to install benches/socketio's locked packages) and
# redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in node npm redis-server; do
  if ! command -v "$tool" >/dev/null; then
    echo "socketio-compare: $tool is not on PATH (it needs node 18+ with npm, and redis-server)" >&2
    exit 1
  fi
done

# npm ci only when the installed packages are older than the lock (npm writes the hidden lock).
if [ ! -f benches/socketio/package-lock.json ]; then
  npm install --prefix benches/socketio --no-audit --no-fund
elif [ ! benches/socketio/node_modules/.package-lock.json -nt benches/socketio/package-lock.json ]; then
  npm ci --prefix benches/socketio --no-audit --no-fund
fi

if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  export SWITCHBOARD_BIN=target/release/switchboard
  [ -x "$SWITCHBOARD_BIN" ] || cargo build --release
fi

exec node benches/socketio/compare.mjs "$@"
