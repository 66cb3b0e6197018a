//! `stbl`, the sample table (ISO/IEC 14496-12 §8.5.1). In a fragmented file only `stsd`
//! matters; `stts`, `stsc`, `stsz` and `stco` are present but empty, and kept verbatim.

pub mod stsd;

pub use stsd::*;

use crate::fmp4::atom::container;

container! {
    /// The sample table.
    pub struct Stbl = b"stbl" {
        required stsd: Stsd,
    }
}
