#!/usr/bin/env bash
# Makes res/sample.mp4, the clip the `sample` source loops when no ffmpeg is around.
#
# 4.2667 s is a whole number of both video frames at 30 fps (128) and AAC frames at 48 kHz
# (200), so the clip loops without audio drifting against video. ffmpeg adds one AAC priming
# frame and lengthens the first video frame by as much, so both tracks end at 4.288 s. One
# fragment per frame, like the live pipeline; no prft (the sample source writes its own, with
# the time it sends each frame). 1280x720 H.264 High, AAC-LC stereo, under 2 MB.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
  -t 4.266667 \
  -c:v libx264 -preset medium -profile:v high -pix_fmt yuv420p -g 30 -keyint_min 30 \
  -sc_threshold 0 -bf 0 -b:v 2000k -maxrate 2500k -bufsize 2500k \
  -c:a aac -b:a 96k -ac 2 \
  -f mp4 -movflags empty_moov+default_base_moof+frag_every_frame sample.mp4
ls -l sample.mp4
