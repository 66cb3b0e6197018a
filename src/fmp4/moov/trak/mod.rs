//! `trak`, one track (ISO/IEC 14496-12 §8.3.1).
//!
//! ```text
//! trak
//! ├── tkhd
//! ├── edts           (kept verbatim: an edit list)
//! └── mdia           mdia/
//! ```

pub mod mdia;
mod tkhd;

pub use mdia::*;
pub use tkhd::*;

use crate::fmp4::Opaque;
use crate::fmp4::atom::container;

/// `edts`, the edit list container (§8.6.5), kept as it came.
pub type Edts = Opaque<{ u32::from_be_bytes(*b"edts") }>;

container! {
    /// A track.
    pub struct Trak = b"trak" {
        required tkhd: Tkhd,
        optional edts: Edts,
        required mdia: Mdia,
    }
}
