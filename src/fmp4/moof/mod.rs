//! `moof`, the movie fragment (ISO/IEC 14496-12 §8.8.4): the sample table of the `mdat` that
//! follows it.
//!
//! ```text
//! moof
//! ├── mfhd           sequence number
//! └── traf*          traf/ (tfhd, tfdt, trun*)
//! ```

mod mfhd;
pub mod traf;

pub use mfhd::*;
pub use traf::*;

use super::atom::container;

container! {
    /// A movie fragment.
    pub struct Moof = b"moof" {
        required mfhd: Mfhd,
        repeated traf: Traf,
    }
}
