#!/usr/bin/env bash
# The latency benchmark: a release server with the 720p30 test pattern, its player page in
# headless Chromium for 60 s per player (WebCodecs and MSE by default, one after the other on
# the same server), then p50/p95/p99 encoder-to-screen latency and join times for each.
#
#   scripts/latency.sh [SECONDS] [PLAYERS] [-- extra server arguments]
#   scripts/latency.sh 60 webcodecs,mse,ll-hls,ll-dash
#   scripts/latency.sh 60 auto -- --config my.toml
#
# Needs ffmpeg, Node.js and Chromium (Debian's chromium; or set CHROMIUM).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
players=${2:-webcodecs,mse}
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
server_args=("$@")
[ ${#server_args[@]} -gt 0 ] || server_args=(--stream live=testsrc)

cargo build --release --quiet
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

log=$(mktemp)
target/release/websocketlivestream --listen 127.0.0.1:0 "${server_args[@]}" 2> "$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
# Let the encoder settle and the first segments exist.
sleep 4
node tests/browser/latency.mjs --url "$url" --seconds "$seconds" --players "$players"
