//! websocketlivestream: a live video server. A camera, a test pattern, a file or a network
//! stream goes in; browsers play it within a frame or two over a WebSocket into Media Source
//! Extensions or WebCodecs, and players and CDNs fetch it as DASH and LL-HLS.
//!
//! Imports run one way: `server -> stream -> source -> fmp4`.
//! - [`fmp4`]: our ISO-BMFF code: boxes, splitter, segmenter, rewriter. Pure.
//! - [`manifest`]: DASH MPD and HLS playlists from a segment index. Pure.

pub mod fmp4;
