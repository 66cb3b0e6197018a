//! Manifests from a segment index: the DASH MPD and the HLS playlists. Pure: they know
//! segments, times and codecs, nothing of streams, sources or HTTP.

pub mod dash;
pub mod hls;
mod time;

pub use time::{iso8601_duration, parse_datetime, xs_datetime};
