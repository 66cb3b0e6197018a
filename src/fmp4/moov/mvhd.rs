//! `mvhd`, the movie header (ISO/IEC 14496-12 §8.2.2).

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, ErrorKind, FourCC, Reader, Result};

/// The identity matrix, in 16.16 and 2.30 fixed point (§6.2.2).
pub const UNITY_MATRIX: [i32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mvhd {
    pub version: u8,
    pub creation_time: u64,
    pub modification_time: u64,
    pub timescale: u32,
    pub duration: u64,
    /// 16.16 fixed point; 1.0 is normal.
    pub rate: i32,
    /// 8.8 fixed point; 1.0 is full.
    pub volume: i16,
    pub matrix: [i32; 9],
    pub next_track_id: u32,
}

impl Atom for Mvhd {
    const KIND: FourCC = FourCC::new(b"mvhd");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (version, _flags) = r.full_header()?;
        let (creation_time, modification_time, timescale, duration) = match version {
            0 => (
                u64::from(r.u32()?),
                u64::from(r.u32()?),
                r.u32()?,
                u64::from(r.u32()?),
            ),
            1 => (r.u64()?, r.u64()?, r.u32()?, r.u64()?),
            v => return Err(r.error(ErrorKind::UnsupportedVersion(v))),
        };
        let rate = r.i32()?;
        let volume = r.i16()?;
        r.skip(2 + 8)?; // reserved
        let mut matrix = [0i32; 9];
        for value in &mut matrix {
            *value = r.i32()?;
        }
        r.skip(24)?; // pre_defined
        let next_track_id = r.u32()?;
        Ok(Self {
            version,
            creation_time,
            modification_time,
            timescale,
            duration,
            rate,
            volume,
            matrix,
            next_track_id,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, self.version, 0);
        if self.version == 1 {
            out.put_u64(self.creation_time);
            out.put_u64(self.modification_time);
            out.put_u32(self.timescale);
            out.put_u64(self.duration);
        } else {
            out.put_u32(self.creation_time as u32);
            out.put_u32(self.modification_time as u32);
            out.put_u32(self.timescale);
            out.put_u32(self.duration as u32);
        }
        out.put_i32(self.rate);
        out.put_i16(self.volume);
        out.put_bytes(0, 10);
        for value in self.matrix {
            out.put_i32(value);
        }
        out.put_bytes(0, 24);
        out.put_u32(self.next_track_id);
    }

    fn body_len(&self) -> usize {
        if self.version == 1 { 112 } else { 100 }
    }

    fn describe(&self, out: &mut String) {
        field(out, "timescale", self.timescale);
        field(out, "duration", self.duration);
        field(out, "next_track_id", self.next_track_id);
    }
}
