//! `tfdt`, the track fragment decode time (ISO/IEC 14496-12 §8.8.12, in traf): the decode
//! time of the fragment's first sample, in the track's timescale.

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, ErrorKind, FourCC, Reader, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tfdt {
    /// 0 stores the time in 32 bits, 1 in 64.
    pub version: u8,
    pub base_media_decode_time: u64,
}

impl Tfdt {
    /// Where `base_media_decode_time` lies in the body: after version and flags.
    pub const DECODE_TIME_OFFSET: usize = 4;

    /// A `tfdt` in the smallest version that holds `time`.
    pub fn new(time: u64) -> Self {
        Self {
            version: u8::from(time > u64::from(u32::MAX)),
            base_media_decode_time: time,
        }
    }
}

impl Atom for Tfdt {
    const KIND: FourCC = FourCC::new(b"tfdt");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (version, _flags) = r.full_header()?;
        let base_media_decode_time = match version {
            0 => u64::from(r.u32()?),
            1 => r.u64()?,
            v => return Err(r.error(ErrorKind::UnsupportedVersion(v))),
        };
        Ok(Self {
            version,
            base_media_decode_time,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        // A time beyond 32 bits forces version 1, whatever the struct says.
        let version = if self.base_media_decode_time > u64::from(u32::MAX) {
            1
        } else {
            self.version
        };
        put_full_header(out, version, 0);
        if version == 1 {
            out.put_u64(self.base_media_decode_time);
        } else {
            out.put_u32(self.base_media_decode_time as u32);
        }
    }

    fn body_len(&self) -> usize {
        if self.version == 1 || self.base_media_decode_time > u64::from(u32::MAX) {
            12
        } else {
            8
        }
    }

    fn describe(&self, out: &mut String) {
        field(out, "decode_time", self.base_media_decode_time);
    }
}
