#!/usr/bin/env bash
# The encoding CPU of a rendition ladder: a release server encoding testsrc (1280x720@30, with
# sound) as the ladder given, x264 veryfast, and the CPU time its ffmpeg spent over a window,
# read from /proc (utime + stime of the ffmpeg the server spawned), beside a single-rung run
# of the same source for comparison.
#
#   scripts/ladder-cpu.sh [SECONDS] [LADDER]     default 30 and 720:1500,360:400,180:150
#
# Prints one line per run: CPU-seconds per second (1.00 = one core) and the share of the
# machine's cores. Run it on an idle machine. Needs ffmpeg; Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
ladder=${2:-720:1500,360:400,180:150}
cargo build --release --quiet --bin websocketlivestream
bin=target/release/websocketlivestream
tick=$(getconf CLK_TCK)
cores=$(nproc)

# CPU ticks (utime + stime) of every ffmpeg whose parent is PID.
ffmpeg_ticks() {
  local total=0 pid
  for pid in $(pgrep -P "$1" -x ffmpeg); do
    # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    local rest
    rest=$(sed 's/^.*) //' "/proc/$pid/stat")
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

run() {
  local label=$1
  shift
  "$bin" --listen 127.0.0.1:0 --stream live=testsrc "$@" >"target/ladder-cpu-$label.log" 2>&1 &
  local server=$!
  # Let ffmpeg start and its encoders settle before the window opens.
  sleep 5
  if ! pgrep -P "$server" -x ffmpeg >/dev/null; then
    echo "$label: no ffmpeg under the server; its log:" >&2
    cat "target/ladder-cpu-$label.log" >&2
    kill "$server" 2>/dev/null || true
    exit 1
  fi
  local before after
  before=$(ffmpeg_ticks "$server")
  sleep "$seconds"
  after=$(ffmpeg_ticks "$server")
  kill "$server"
  wait "$server" 2>/dev/null || true
  awk -v t=$((after - before)) -v hz="$tick" -v s="$seconds" -v c="$cores" -v l="$label" \
    'BEGIN { cps = t / hz / s; printf "%s: ffmpeg %.2f CPU-s/s, %.0f%% of %d cores\n", l, cps, 100 * cps / c, c }'
}

run single
run "ladder $ladder" --renditions "$ladder"
