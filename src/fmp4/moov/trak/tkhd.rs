//! `tkhd`, the track header (ISO/IEC 14496-12 §8.3.2).

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, ErrorKind, FourCC, Reader, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tkhd {
    pub version: u8,
    /// Bit 0 enabled, bit 1 in movie, bit 2 in preview.
    pub flags: u32,
    pub creation_time: u64,
    pub modification_time: u64,
    pub track_id: u32,
    pub duration: u64,
    pub layer: i16,
    pub alternate_group: i16,
    /// 8.8 fixed point.
    pub volume: i16,
    pub matrix: [i32; 9],
    /// 16.16 fixed point, in pixels.
    pub width: u32,
    /// 16.16 fixed point, in pixels.
    pub height: u32,
}

impl Atom for Tkhd {
    const KIND: FourCC = FourCC::new(b"tkhd");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (version, flags) = r.full_header()?;
        let (creation_time, modification_time, track_id, duration) = match version {
            0 => {
                let creation = u64::from(r.u32()?);
                let modification = u64::from(r.u32()?);
                let track_id = r.u32()?;
                r.skip(4)?; // reserved
                (creation, modification, track_id, u64::from(r.u32()?))
            }
            1 => {
                let creation = r.u64()?;
                let modification = r.u64()?;
                let track_id = r.u32()?;
                r.skip(4)?; // reserved
                (creation, modification, track_id, r.u64()?)
            }
            v => return Err(r.error(ErrorKind::UnsupportedVersion(v))),
        };
        r.skip(8)?; // reserved
        let layer = r.i16()?;
        let alternate_group = r.i16()?;
        let volume = r.i16()?;
        r.skip(2)?; // reserved
        let mut matrix = [0i32; 9];
        for value in &mut matrix {
            *value = r.i32()?;
        }
        let width = r.u32()?;
        let height = r.u32()?;
        Ok(Self {
            version,
            flags,
            creation_time,
            modification_time,
            track_id,
            duration,
            layer,
            alternate_group,
            volume,
            matrix,
            width,
            height,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, self.version, self.flags);
        if self.version == 1 {
            out.put_u64(self.creation_time);
            out.put_u64(self.modification_time);
            out.put_u32(self.track_id);
            out.put_u32(0);
            out.put_u64(self.duration);
        } else {
            out.put_u32(self.creation_time as u32);
            out.put_u32(self.modification_time as u32);
            out.put_u32(self.track_id);
            out.put_u32(0);
            out.put_u32(self.duration as u32);
        }
        out.put_bytes(0, 8);
        out.put_i16(self.layer);
        out.put_i16(self.alternate_group);
        out.put_i16(self.volume);
        out.put_u16(0);
        for value in self.matrix {
            out.put_i32(value);
        }
        out.put_u32(self.width);
        out.put_u32(self.height);
    }

    fn body_len(&self) -> usize {
        if self.version == 1 { 96 } else { 84 }
    }

    fn describe(&self, out: &mut String) {
        field(out, "track", self.track_id);
        field(out, "flags", format_args!("0x{:x}", self.flags));
        field(out, "duration", self.duration);
        if self.width != 0 || self.height != 0 {
            field(out, "width", self.width >> 16);
            field(out, "height", self.height >> 16);
        }
    }
}
