//! `moov`, the movie box (ISO/IEC 14496-12 §8.2.1): in a fragmented stream it carries no
//! samples, only the tracks and how to decode them.
//!
//! ```text
//! moov
//! ├── mvhd
//! ├── trak*          trak/
//! └── mvex           mvex/ (trex per track: sample defaults for the fragments)
//! ```

pub mod mvex;
mod mvhd;
pub mod trak;

pub use mvex::*;
pub use mvhd::*;
pub use trak::*;

use super::atom::container;

container! {
    /// The movie box.
    pub struct Moov = b"moov" {
        required mvhd: Mvhd,
        repeated trak: Trak,
        optional mvex: Mvex,
    }
}

impl Moov {
    /// The `trex` defaults of a track, if the movie declares them.
    pub fn trex(&self, track_id: u32) -> Option<&Trex> {
        self.mvex
            .as_ref()
            .and_then(|mvex| mvex.trex.iter().find(|t| t.track_id == track_id))
    }
}
