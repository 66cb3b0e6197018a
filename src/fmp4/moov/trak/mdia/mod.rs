//! `mdia`, the media of a track (ISO/IEC 14496-12 §8.4.1).
//!
//! ```text
//! mdia
//! ├── mdhd           timescale and language
//! ├── hdlr           vide, soun, …
//! └── minf           minf/ (header, dinf, stbl > stsd)
//! ```

mod hdlr;
mod mdhd;
pub mod minf;

pub use hdlr::*;
pub use mdhd::*;
pub use minf::*;

use crate::fmp4::atom::container;

container! {
    /// The media of a track.
    pub struct Mdia = b"mdia" {
        required mdhd: Mdhd,
        required hdlr: Hdlr,
        required minf: Minf,
    }
}
