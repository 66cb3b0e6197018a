#!/usr/bin/env bash
# The latency benchmark: a release server with the 720p30 test pattern (H.264 + AAC), for each
# ingest in turn (--ingest auto: ffmpeg's FLV and our own fragments; --ingest fmp4: ffmpeg's
# own fMP4), each player in headless Chromium for SECONDS, then p50/p95/p99 encoder-to-screen
# latency and the join times of fresh page loads, and one table of it all.
#
#   scripts/latency.sh [SECONDS] [PLAYERS] [INGESTS] [-- extra server arguments]
#   scripts/latency.sh 60                                   # every row below
#   scripts/latency.sh 60 webcodecs,mse,ll-hls,ll-dash auto,fmp4
#   scripts/latency.sh 30 auto auto -- --config my.toml
#   scripts/latency.sh 60 webcodecs,mse auto,rtmp           # our ffmpeg beside an RTMP publisher
#   scripts/latency.sh 60 webcodecs,mse auto,rtmp,browser   # ...and the browser publisher
#   scripts/latency.sh 30 webcodecs,mse stamp,stamp-rtmp,stamp-fmp4,stamp-browser
#                                                           # capture-to-screen, off the picture
#
# Players: webcodecs, mse, auto (our page, muted as a page starts), the same with +sound (after
# a click on the sound button), ll-hls (hls.js), ll-dash (dash.js). The latency is
# measured from each frame's prft wall clock: with --ingest fmp4 ffmpeg's encoder-input time,
# with --ingest auto our ingest's clock (the quickest arrivals, which leaves out the shortest
# encoding time, a few ms: see examples/ingest_lag.rs for capture-to-arrival of both).
# The `rtmp` ingest is a `publish` stream fed by an ffmpeg of its own with our own ffmpeg's
# very arguments, publishing over RTMP (`--rtmp-listen`) instead of writing to our pipe: its
# frames take the same FLV reader and clock, so its rows differ from `auto`'s by what RTMP
# and its connection add beyond their quickest frame (the fixed part is not seen by a prft
# taken on arrival). The `browser` ingest is a `publish` stream fed by the browser publisher
# page (/publish/live, Chromium's fake camera at its own 20 fps and 640x480, H.264 + Opus) in
# the same Chromium: its prft is the server's arrival too.
# The stamp-* ingests measure capture-to-screen off the picture itself, prft or not:
# tests/browser/stamp.mjs makes 1280x720 frames at 30 fps, each carrying a barcode of the wall
# clock when it was made; one ffmpeg encodes them with the test pattern's x264 arguments (no
# audio) and the page reads each stamp back off the <video> or <canvas> at every animation
# frame (latency.mjs --screen 1; our players only). `stamp` pipes ffmpeg's FLV into
# `--stream live=stdin` (the zero-wait path our own ffmpeg takes, through a pipe as ours
# does), `stamp-fmp4` its fragmented MP4 instead, `stamp-rtmp` publishes the same FLV over
# RTMP, and `stamp-browser` is the browser publisher whose camera is a stamped canvas.
# Needs ffmpeg, Node.js and Chromium (Debian's chromium; or set CHROMIUM).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
players=${2:-webcodecs,mse,webcodecs+sound,mse+sound,ll-hls,ll-dash}
ingests=${3:-auto,fmp4}
shift $(( $# >= 3 ? 3 : $# ))
[ "${1:-}" = "--" ] && shift
server_args=("$@")
[ ${#server_args[@]} -gt 0 ] || server_args=(--stream live=testsrc)

cargo build --release --quiet
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

log=$(mktemp)
out=$(mktemp)
server=
cleanup() {
  [ -n "${publisher:-}" ] && kill "$publisher" 2>/dev/null
  pkill -f tests/browser/stamp.mjs 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -f "$log" "$out" "${rtmp_config:-}"
}
trap cleanup EXIT

summary=()
IFS=, read -ra ingest_list <<< "$ingests"
publisher=
rtmp_config=$(mktemp --suffix=.toml)
printf '[[stream]]\nname = "live"\nsource = "publish"\npublish = "public"\n' > "$rtmp_config"
# The test pattern's encoder, for frames of stamp.mjs on standard input.
stamp_encoder=(ffmpeg -hide_banner -nostats -loglevel error -f rawvideo -pix_fmt yuv420p
  -video_size 1280x720 -framerate 30 -i - -c:v libx264 -preset veryfast -tune zerolatency
  -profile:v high -pix_fmt yuv420p -g 30 -keyint_min 30 -sc_threshold 0 -bf 0 -b:v 1500k
  -maxrate 1500k -bufsize 750k -flush_packets 1)
for ingest in "${ingest_list[@]}"; do
  : > "$log"
  publish_args=()
  case "$ingest" in stamp*) publish_args=(--screen 1) ;; esac
  if [ "$ingest" = stamp ] || [ "$ingest" = stamp-fmp4 ]; then
    if [ "$ingest" = stamp ]; then muxer=(-f flv); else
      muxer=(-f mp4 -movflags empty_moov+default_base_moof+frag_every_frame); fi
    node tests/browser/stamp.mjs | "${stamp_encoder[@]}" "${muxer[@]}" - 2> /dev/null |
      target/release/websocketlivestream --listen 127.0.0.1:0 --stream live=stdin 2> "$log" &
    server=$!
  elif [ "$ingest" = stamp-rtmp ]; then
    target/release/websocketlivestream --listen 127.0.0.1:0 --config "$rtmp_config" \
      --rtmp-listen 127.0.0.1:19360 2> "$log" &
    server=$!
    sleep 1
    node tests/browser/stamp.mjs | "${stamp_encoder[@]}" -f flv \
      rtmp://127.0.0.1:19360/live/live 2> /dev/null &
    publisher=$!
  elif [ "$ingest" = stamp-browser ]; then
    target/release/websocketlivestream --listen 127.0.0.1:0 --config "$rtmp_config" 2> "$log" &
    server=$!
    publish_args+=(--publish 1)
  elif [ "$ingest" = browser ]; then
    target/release/websocketlivestream --listen 127.0.0.1:0 --config "$rtmp_config" 2> "$log" &
    server=$!
    publish_args=(--publish 1)
  elif [ "$ingest" = rtmp ]; then
    target/release/websocketlivestream --listen 127.0.0.1:0 --config "$rtmp_config" \
      --rtmp-listen 127.0.0.1:19360 2> "$log" &
    server=$!
    sleep 1
    # Our own ffmpeg's arguments for the test pattern (the server logs them), to RTMP.
    ffmpeg -hide_banner -nostats -loglevel error -re -f lavfi \
      -i 'testsrc=size=1280x720:rate=30[out0];sine=frequency=440:sample_rate=48000[out1]' \
      -map 0:v:0 -map 0:a:0 -c:v libx264 -preset veryfast -tune zerolatency -profile:v high \
      -pix_fmt yuv420p -g 30 -keyint_min 30 -sc_threshold 0 -bf 0 -b:v 1500k -maxrate 1500k \
      -bufsize 750k -c:a aac -b:a 96k -ar 48000 -ac 2 -f flv -flush_packets 1 \
      rtmp://127.0.0.1:19360/live/live 2> /dev/null &
    publisher=$!
  else
    target/release/websocketlivestream --listen 127.0.0.1:0 --ingest "$ingest" "${server_args[@]}" 2> "$log" &
    server=$!
  fi
  url=
  for _ in $(seq 100); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
  # Let the encoder settle and the first segments exist.
  sleep 4
  echo "=== --ingest $ingest"
  node tests/browser/latency.mjs --url "$url" --seconds "$seconds" --players "$players" \
    "${publish_args[@]}" | tee "$out"
  # The table at the end of latency.mjs's report, each row marked with the ingest.
  while IFS= read -r row; do summary+=("$(printf '%-13s %s' "$ingest" "$row")"); done \
    < <(sed -n '/^player /,$p' "$out" | tail -n +2)
  if [ -n "$publisher" ]; then kill "$publisher" 2>/dev/null; wait "$publisher" 2>/dev/null || true; publisher=; fi
  pkill -f tests/browser/stamp.mjs 2>/dev/null || true
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
done

echo
printf '%-13s %-32s   p50   p95   p99  join  live (medians)\n' ingest player
printf '%s\n' "${summary[@]}"
