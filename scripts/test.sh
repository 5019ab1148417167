#!/usr/bin/env bash
# Runs every test of Switchboard on a fresh Debian machine: installs what the tests need when it is
# missing (redis-server, redis-tools and redis-sentinel for the backplane, Cluster and Sentinel
# tests, prometheus for promtool and a real Prometheus in the alert tests, Node.js + npm packages for the interop tests with the official @microsoft/signalr client,
# Xvfb and the X libraries eframe loads for the dashboard's smoke test in a real window, xwd for its
# screenshots, xdotool and tesseract for the presenter screens), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The Cluster tests join nodes with redis-cli (redis-tools); the Sentinel tests run redis-sentinel.
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v xwd >/dev/null 2>&1 || missing+=(x11-apps)
# tests/presenter_screens.rs presses keys in the demo's window (xdotool) and reads its
# screenshots back as text (tesseract).
command -v xdotool >/dev/null 2>&1 || missing+=(xdotool)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
# tests/auth_interop.rs drives the Python signalrcore client from a venv (Debian: python3-venv).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# tests/prometheus.rs checks the alert rules with promtool and runs a real Prometheus server.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The TLS tests make their certificates at test time with the openssl CLI (tests/common/certs.rs).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# promtool (the agent test lints its /metrics with `promtool check metrics`).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The X and GL libraries eframe loads when the window opens (read once: a pipe into `grep -q`
# could end ldconfig with SIGPIPE, which pipefail would report as a missing library).
libs=$(ldconfig -p 2>/dev/null || true)
for lib in libxcursor1:libXcursor.so.1 libxi6:libXi.so.6 libxkbcommon-x11-0:libxkbcommon-x11.so.0 \
  libgl1:libGL.so.1 libegl1:libEGL.so.1; do
  grep -qF "${lib#*:}" <<<"$libs" || missing+=("${lib%%:*}")
done
# Mesa's software renderer, which the dashboard's OpenGL context uses under Xvfb.
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libgl1-mesa-dri >/dev/null 2>&1; then
  missing+=(libgl1-mesa-dri)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
  echo "== npm ci (tests/js)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -x tests/py/.venv/bin/python ] || ! tests/py/.venv/bin/python -c 'import signalrcore' >/dev/null 2>&1; then
  echo "== python venv with signalrcore (tests/py/.venv)"
  python3 -m venv tests/py/.venv
  tests/py/.venv/bin/pip install --quiet --disable-pip-version-check signalrcore==1.0.2
fi

echo "== cargo test"
cargo test --locked "$@"
