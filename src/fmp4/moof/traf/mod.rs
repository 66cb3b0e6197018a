//! `traf`, one track's part of a fragment (ISO/IEC 14496-12 §8.8.6).
//!
//! ```text
//! traf
//! ├── tfhd           track and sample defaults
//! ├── tfdt           decode time of the first sample ("Safari wants tfdt right after tfhd")
//! └── trun*          the samples
//! ```
//! Sample flags (§8.8.3.1) are one 32-bit word:
//! `reserved(4) is_leading(2) depends_on(2) is_depended_on(2) has_redundancy(2)
//!  padding(3) is_non_sync(1) degradation_priority(16)`.

mod tfdt;
mod tfhd;
mod trun;

pub use tfdt::*;
pub use tfhd::*;
pub use trun::*;

use crate::fmp4::atom::container;

container! {
    /// A track fragment.
    pub struct Traf = b"traf" {
        required tfhd: Tfhd,
        optional tfdt: Tfdt,
        repeated trun: Trun,
    }
}

/// `sample_is_non_sync_sample` in sample flags.
pub const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// Whether sample flags mark a sync sample (a key frame, or any audio frame).
pub fn is_sync(flags: u32) -> bool {
    flags & SAMPLE_IS_NON_SYNC == 0
}

/// Sample flags for a key frame: depends on no other sample, sync.
pub const KEY_FRAME_FLAGS: u32 = 0x0200_0000;
/// Sample flags for any other frame: depends on others, not sync.
pub const NON_KEY_FRAME_FLAGS: u32 = 0x0101_0000;
