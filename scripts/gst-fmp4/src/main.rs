// Only here so that cargo fetches gst-plugin-fmp4; scripts/gst-fmp4.sh builds that.
fn main() {}
