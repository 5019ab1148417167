#!/usr/bin/env bash
# Starts a private redis-server and two Switchboard hub nodes sharing it, on loopback:
#   node-a  http://127.0.0.1:5001/   node-b  http://127.0.0.1:5002/
# Open both chat pages in two browser windows and watch messages cross the backplane.
# Ctrl-C stops everything. Installs redis-server when it is missing (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6390}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi
fi

cargo build --release --quiet
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done

./target/release/switchboard hub --listen 127.0.0.1:5001 --redis "redis://127.0.0.1:$REDIS_PORT" --name node-a &
pids+=($!)
./target/release/switchboard hub --listen 127.0.0.1:5002 --redis "redis://127.0.0.1:$REDIS_PORT" --name node-b &
pids+=($!)
echo "redis on 127.0.0.1:$REDIS_PORT; chat pages: http://127.0.0.1:5001/ and http://127.0.0.1:5002/ (Ctrl-C to stop)"
wait
