#!/usr/bin/env bash
# Builds GStreamer's fragmented-MP4 muxers (isofmp4mux, cmafmux, dashmp4mux: gst-plugin-fmp4
# 0.10, the gst-plugins-rs release for GStreamer 1.22) from crates.io into
# target/gst-plugin-fmp4/, unless GStreamer already has them. Needs GStreamer's development
# files (Debian: libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev). The tests look for the
# plugin there (tests/package_progressive.rs); to use it by hand:
#   GST_PLUGIN_PATH=target/gst-plugin-fmp4/release gst-inspect-1.0 isofmp4mux
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gst-plugin-fmp4
if gst-inspect-1.0 isofmp4mux >/dev/null 2>&1; then
  echo "GStreamer already has isofmp4mux"
  exit 0
fi
if [ -f "$out/release/libgstfmp4.so" ] &&
  GST_PLUGIN_PATH="$out/release" gst-inspect-1.0 isofmp4mux >/dev/null 2>&1; then
  echo "isofmp4mux already built in $out/release"
  exit 0
fi
# cargo fetches the crate (its dependencies pinned by the lock file), and says where it is.
manifest=scripts/gst-fmp4/Cargo.toml
cargo fetch --locked --manifest-path "$manifest"
source_dir=$(cargo metadata --locked --format-version 1 --manifest-path "$manifest" |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="gst-plugin-fmp4").rsplit("/",1)[0])')
# Built from a copy, with the same lock, so the registry's sources stay as they came.
rm -rf "$out/src"
mkdir -p "$out"
cp -r "$source_dir" "$out/src"
cp scripts/gst-fmp4/Cargo.lock "$out/src/Cargo.lock"
cargo build --release --lib --manifest-path "$out/src/Cargo.toml" --target-dir "$out"
GST_PLUGIN_PATH="$out/release" gst-inspect-1.0 isofmp4mux >/dev/null
echo "built isofmp4mux and cmafmux in $out/release"
