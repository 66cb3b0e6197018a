#!/usr/bin/env bash
# `package` beside ffmpeg's DASH muxer (-c copy) and mp4box.js's segmenter on one MP4 file,
# in one run: wall seconds, GB/s of input and peak RSS of each. The file is read once first
# so every tool starts from the page cache. Make a 1 GB progressive file with e.g.
#   ffmpeg -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine -t 400 \
#     -c:v libx264 -preset ultrafast -b:v 20M -c:a aac big.mp4
# Usage: scripts/package-bench.sh FILE [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:?usage: scripts/package-bench.sh FILE [RUNS]}
runs=${2:-2}
size=$(stat -c %s "$file")
cargo build --release --quiet
tests/browser/node_modules/.bin/playwright-core --version >/dev/null 2>&1 ||
  (cd tests/browser && npm ci --no-audit --no-fund >/dev/null)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat "$file" >/dev/null
measure() { # NAME COMMAND...: one line of figures
  local name=$1
  shift
  rm -rf "$out/work" && mkdir -p "$out/work"
  /usr/bin/time -f '%e %M' -o "$out/time" "$@" >/dev/null 2>"$out/err" ||
    { echo "$name failed:"; cat "$out/err"; return 1; }
  read -r secs kb <"$out/time"
  awk -v n="$name" -v s="$secs" -v kb="$kb" -v size="$size" \
    'BEGIN { printf "%-22s %7.2f s  %5.2f GB/s  peak RSS %5.0f MB\n", n, s, size / s / 1e9, kb / 1024 }'
}
echo "$(basename "$file"): $((size / 1000000)) MB"
for _ in $(seq "$runs"); do
  measure "package" target/release/websocketlivestream package "$file" --out "$out/work"
  measure "ffmpeg -c copy -f dash" ffmpeg -hide_banner -loglevel error -y -i "$file" -c copy \
    -map 0 -f dash -seg_duration 2 "$out/work/manifest.mpd"
  measure "mp4box.js" node scripts/mp4box-throughput.mjs "$file"
done
