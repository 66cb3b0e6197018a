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

/// The user type of Smooth Streaming's (PIFF 1.1 §5.2.2) `TfxdBox`, a `uuid` box in a `traf`
/// that gives the fragment's absolute time where there is no `tfdt`.
pub const TFXD_UUID: [u8; 16] = [
    0x6D, 0x1D, 0x9B, 0x05, 0x42, 0xD5, 0x44, 0xE6, 0x80, 0xE2, 0x14, 0x1D, 0xAF, 0xF7, 0x57, 0xB2,
];

impl Traf {
    /// The fragment's absolute time (in the track's timescale) from a Smooth Streaming
    /// `tfxd` box among the unknown children: version 1 writes it in 64 bits, version 0 in 32.
    /// `None` without one, or with one too short to hold its time.
    pub fn smooth_time(&self) -> Option<u64> {
        self.unknown.iter().find_map(|raw| {
            let b = &raw.bytes[..];
            // size(4) 'uuid'(4) usertype(16) version(1) flags(3) time(4 or 8)
            if raw.kind != crate::fmp4::FourCC::new(b"uuid") || b.len() < 32 {
                return None;
            }
            if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) == 1 || b[8..24] != TFXD_UUID {
                return None;
            }
            match b[24] {
                1 if b.len() >= 36 => Some(u64::from_be_bytes(b[28..36].try_into().ok()?)),
                0 => Some(u64::from(u32::from_be_bytes(b[28..32].try_into().ok()?))),
                _ => None,
            }
        })
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
