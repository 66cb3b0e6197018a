//! websocketlivestream: a live video server. A camera, a test pattern, a file or a network
//! stream goes in; browsers play it within a frame or two over a WebSocket into Media Source
//! Extensions or WebCodecs, and players and CDNs fetch it as DASH and LL-HLS.
//!
//! Imports run one way: `server -> stream -> source -> fmp4`, `source -> flv`; `stream` and
//! `server` may use `manifest`, `server` and `source` use `protocol`.
//! - [`fmp4`]: our ISO-BMFF code: boxes, splitter, segmenter, rewriter, fragment writer. Pure.
//! - [`flv`]: the FLV tag reader for the zero-wait ingest. Pure.
//! - [`manifest`]: DASH MPD and HLS playlists from a segment index. Pure.
//! - [`protocol`]: the WebSocket messages viewers and relays read. Pure.
//! - [`source`]: where bytes come from: ffmpeg, stdin, the bundled sample, another server
//!   (relay), a folder an encoder writes to.
//! - [`stream`]: one live stream: a source feeding a hub (segment window, event ring, status).
//! - [`server`]: axum: pages, WebSocket viewers and their fan-out, DASH, HLS, the API.
//! - [`cli`] and [`package`]: the command line, and the `package` subcommand.

#[cfg(feature = "server")]
pub mod cli;
pub mod flv;
pub mod fmp4;
pub mod manifest;
#[cfg(feature = "server")]
pub mod package;
#[cfg(feature = "server")]
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod source;
#[cfg(feature = "server")]
pub mod stream;
