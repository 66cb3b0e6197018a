//! `minf`, media information (ISO/IEC 14496-12 §8.4.4).
//!
//! ```text
//! minf
//! ├── vmhd | smhd    (kept verbatim)
//! ├── dinf           (kept verbatim)
//! └── stbl           stbl/ (stsd; the sample tables are empty in a fragmented file)
//! ```

pub mod stbl;

pub use stbl::*;

use crate::fmp4::Opaque;
use crate::fmp4::atom::container;

/// `vmhd`, video media header (§12.1.2).
pub type Vmhd = Opaque<{ u32::from_be_bytes(*b"vmhd") }>;
/// `smhd`, sound media header (§12.2.2).
pub type Smhd = Opaque<{ u32::from_be_bytes(*b"smhd") }>;
/// `dinf`, data information (§8.7.1): where samples live; always "in this file" here.
pub type Dinf = Opaque<{ u32::from_be_bytes(*b"dinf") }>;

container! {
    /// Media information.
    pub struct Minf = b"minf" {
        optional vmhd: Vmhd,
        optional smhd: Smhd,
        optional dinf: Dinf,
        required stbl: Stbl,
    }
}
