//! `mdhd`, the media header (ISO/IEC 14496-12 §8.4.2): the track's timescale.

use bytes::BufMut;

use crate::fmp4::atom::{field, invalid, put_full_header};
use crate::fmp4::{Atom, ErrorKind, FourCC, Reader, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdhd {
    pub version: u8,
    pub creation_time: u64,
    pub modification_time: u64,
    /// Ticks per second of every time in this track.
    pub timescale: u32,
    pub duration: u64,
    /// ISO 639-2/T code, three lower-case letters.
    pub language: [u8; 3],
}

impl Atom for Mdhd {
    const KIND: FourCC = FourCC::new(b"mdhd");

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
        if timescale == 0 {
            return Err(invalid(r, "mdhd timescale is 0"));
        }
        // Packed as three 5-bit letters, each offset by 0x60 (§8.4.2.3).
        let packed = r.u16()?;
        let language = [
            ((packed >> 10) & 0x1f) as u8 + 0x60,
            ((packed >> 5) & 0x1f) as u8 + 0x60,
            (packed & 0x1f) as u8 + 0x60,
        ];
        r.skip(2)?; // pre_defined
        Ok(Self {
            version,
            creation_time,
            modification_time,
            timescale,
            duration,
            language,
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
        let [a, b, c] = self
            .language
            .map(|l| u16::from(l.wrapping_sub(0x60) & 0x1f));
        out.put_u16((a << 10) | (b << 5) | c);
        out.put_u16(0);
    }

    fn body_len(&self) -> usize {
        if self.version == 1 { 36 } else { 24 }
    }

    fn describe(&self, out: &mut String) {
        field(out, "timescale", self.timescale);
        field(out, "duration", self.duration);
        field(out, "language", String::from_utf8_lossy(&self.language));
    }
}
