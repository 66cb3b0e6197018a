//! `mvex`, movie extends (ISO/IEC 14496-12 §8.8.1): present when the movie continues in
//! fragments.

mod trex;

pub use trex::*;

use crate::fmp4::Opaque;
use crate::fmp4::atom::container;

/// `mehd`, the whole duration of a fragmented movie; live streams do not know it.
pub type Mehd = Opaque<{ u32::from_be_bytes(*b"mehd") }>;

container! {
    /// Movie extends.
    pub struct Mvex = b"mvex" {
        optional mehd: Mehd,
        repeated trex: Trex,
    }
}
