#!/usr/bin/env bash
# The fan-out benchmark: a release server fed a 1 Mbit/s 720p30 stream (with audio) by ffmpeg,
# and the load generator (examples/loadgen.rs) beside it on the same machine.
#
#   scripts/load.sh sweep [N...]        our server, N viewers each (lag from prft);
#                                       default 1000 3000 5000 6000 7000
#   scripts/load.sh slow [N] [SLOW]     N viewers alone, then N viewers plus SLOW viewers
#                                       reading at a tenth of the rate; default 1000 100
#   scripts/load.sh tls [N...]          the sweep in plain text, then the same server over TLS
#                                       (self-signed, wss://), one after the other in one run;
#                                       default 1000 3000 5000
#   scripts/load.sh compare [N...]      node-media-server's WebSocket-FLV (from npm) and our
#                                       server fed by the same ffmpeg, the same loads in one
#                                       run (lag relative to each viewer's first frame, as FLV
#                                       has no wall clock); default 500 1000 2000 3000 5000
#
# Each run prints the load generator's report and a `summary:` line; a run is "held" when
# every viewer connected and stayed, none saw a protocol error or a skip, the p99 lag was
# within 100 ms and the server's RSS within 500 MB. Needs ffmpeg (and Node.js for compare).
# SECONDS_PER_RUN (default 20) sets the measured window of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-sweep}
shift || true
seconds=${SECONDS_PER_RUN:-20}
work=${WSLS_BENCH_DIR:-target/bench-load}
mkdir -p "$work"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

clip=$work/1mbit.mp4
if [ ! -f "$clip" ]; then
  echo "making $clip (20 s of 1280x720@30, 900 kbit/s H.264 + 96 kbit/s AAC)"
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 20 -c:v libx264 -preset veryfast -tune zerolatency -g 30 -bf 0 -b:v 900k \
    -maxrate 1000k -bufsize 1000k -c:a aac -b:a 96k "$clip"
fi
cargo build --release --quiet --bin websocketlivestream --example loadgen
loadgen=target/release/examples/loadgen

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

nms_port=18000
if [ "$mode" = compare ]; then
  if [ ! -f "$work/nms/node_modules/node-media-server/package.json" ]; then
    mkdir -p "$work/nms"
    (cd "$work/nms" && npm init -y >/dev/null &&
      npm install --no-audit --no-fund --silent node-media-server@4.4.3)
  fi
  cat > "$work/nms/config.json" <<EOF
{
  "bind": "127.0.0.1",
  "notify": { "url": "" },
  "store": { "path": "$PWD/$work/nms/data", "maxHistory": 100 },
  "auth": { "play": false, "publish": false, "secret": "bench",
            "jwt": { "secret": "bench", "expiresIn": "24h", "refreshExpiresIn": "7d",
                     "algorithm": "HS256", "users": [] } },
  "rtmp": { "port": 11935 },
  "http": { "port": $nms_port },
  "webadmin": { "enable": false },
  "record": { "auto": false, "path": "$PWD/$work/nms/record" }
}
EOF
  node "$work/nms/node_modules/node-media-server/bin/app.js" -c "$work/nms/config.json" \
    --no-admin > "$work/nms.log" 2>&1 &
  nms=$!
  pids+=("$nms")
  sleep 2
  node_version=$(node --version)
fi

# One ffmpeg, in real time, looping the clip: fMP4 with a prft per frame to our server's
# stdin and, when comparing, the same packets as FLV over RTMP to node-media-server.
# start_server ARGS...: (re)starts that pair, the server with ARGS besides its stream.
extra_output=()
[ "$mode" = compare ] && extra_output=(-map 0 -c copy -f flv rtmp://127.0.0.1:11935/live/stream)
server_log=$work/server.log
server=
start_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    sleep 2
  fi
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" \
    -map 0 -c copy -f mp4 -movflags empty_moov+default_base_moof+frag_every_frame \
    -write_prft wallclock -flush_packets 1 pipe:1 "${extra_output[@]}" 2> "$work/ffmpeg.log" |
    target/release/websocketlivestream --listen 127.0.0.1:19200 --stream live=stdin "$@" \
      2> "$server_log" &
  server=$!
  pids+=("$server")
  sleep 5
  kill -0 "$server" || { cat "$server_log" "$work/ffmpeg.log"; echo "the server did not start" >&2; exit 1; }
}
start_server

# run LABEL PID ARGS...: one load generator run, its report and summary kept.
results=()
run() {
  local label=$1 pid=$2
  shift 2
  echo
  echo "== $label"
  local out
  out=$("$loadgen" --seconds "$seconds" --warmup 5 --ramp 500 --server-pid "$pid" "$@")
  echo "$out"
  results+=("$label: $(grep '^summary:' <<< "$out" | sed 's/^summary: //')")
  sleep 3
}

case $mode in
  sweep)
    [ $# -gt 0 ] || set -- 1000 3000 5000 6000 7000
    for n in "$@"; do
      run "ours $n" "$server" --url ws://127.0.0.1:19200/ws/live --viewers "$n"
    done
    ;;
  slow)
    n=${1:-1000}
    slow=${2:-100}
    run "ours $n alone" "$server" --url ws://127.0.0.1:19200/ws/live --viewers "$n"
    run "ours $n + $slow slow" "$server" --url ws://127.0.0.1:19200/ws/live --viewers "$n" \
      --slow "$slow" --slow-rate 0.1
    ;;
  tls)
    [ $# -gt 0 ] || set -- 1000 3000 5000
    for n in "$@"; do
      run "plain $n" "$server" --url ws://127.0.0.1:19200/ws/live --viewers "$n"
    done
    start_server --tls-self-signed --state-dir "$work/state" --admin-listen 127.0.0.1:19201
    for n in "$@"; do
      run "tls $n" "$server" --url wss://localhost:19200/ws/live --viewers "$n" \
        --ca "$work/state/self-signed-cert.pem" --metrics 127.0.0.1:19201
    done
    ;;
  compare)
    [ $# -gt 0 ] || set -- 500 1000 2000 3000 5000
    for n in "$@"; do
      run "ours $n" "$server" --url ws://127.0.0.1:19200/ws/live --viewers "$n" --lag relative
      run "node-media-server $n" "$nms" --url "ws://127.0.0.1:$nms_port/live/stream.flv" \
        --viewers "$n" --protocol flv
    done
    echo
    echo "node-media-server 4.4.3 on Node.js $node_version"
    ;;
  *)
    echo "unknown mode $mode (sweep, slow, tls or compare)" >&2
    exit 2
    ;;
esac

echo
echo "== summary"
printf '%s\n' "${results[@]}"
