//! Our own ISO base media file format code (ISO/IEC 14496-12), for fragmented MP4 streams.
//!
//! Pure: no I/O, no tokio, no knowledge of streams, sources or servers. Bytes go in as
//! `bytes::Bytes`; what comes out shares them.
//!
//! ```text
//! ftyp                         ftyp.rs
//! moov                         moov/
//! ├── mvhd
//! ├── trak*                    moov/trak/
//! │   ├── tkhd
//! │   └── mdia > minf > stbl > stsd > avc1|hvc1|mp4a > avcC|hvcC|esds
//! └── mvex > trex*             moov/mvex/
//! [styp] [prft] [emsg]         ftyp.rs, prft.rs (others kept verbatim)
//! moof                         moof/
//! ├── mfhd
//! └── traf*                    moof/traf/
//!     ├── tfhd
//!     ├── tfdt
//!     └── trun*
//! mdat                         mdat.rs (a slice of the input, never copied)
//! ```
//!
//! On top of the boxes: [`Splitter`] cuts a byte stream into init and fragments,
//! [`Segmenter`] groups fragments into key-frame-aligned segments and parts, [`rewriter`]
//! shifts times and renumbers, [`codec`] writes RFC 6381 codec strings, [`probe`] dumps a
//! box tree, and [`writer`] writes an init and a fragment per sample from decoder
//! configurations (the zero-wait ingest).

mod atom;
pub mod av1;
pub mod avc;
pub mod codec;
mod error;
pub mod flatten;
mod fourcc;
mod fragment;
mod ftyp;
mod header;
pub mod hevc;
mod init;
mod mdat;
pub mod moof;
pub mod moov;
mod prft;
pub mod probe;
pub mod progressive;
mod reader;
pub mod rewriter;
mod segmenter;
pub mod sidx;
mod splitter;
pub mod webcodecs;
pub mod writer;

pub use atom::{Atom, Dump, Opaque, RawBox};
pub use error::{BoxPath, Error, ErrorKind, MAX_DEPTH, Result};
pub use fourcc::FourCC;
pub use fragment::{
    Fragment, TrackRun, earliest_presentation, split_at, split_at_key_frames, split_by_track,
    with_sample_duration,
};
pub use ftyp::{Ftyp, Styp};
pub use header::{BoxHeader, MAX_HEADER_LEN};
pub use init::{InitSegment, Track, TrackKind};
pub use mdat::Mdat;
pub use moof::{Moof, Traf};
pub use moov::*;
pub use prft::{Prft, ntp_from_system_time, unix_millis_from_ntp};
pub use reader::{Child, Reader};
pub use segmenter::{PartInfo, Placement, SegmentInfo, Segmenter};
pub use splitter::{DEFAULT_MAX_BOX_SIZE, Splitter, Unit};
