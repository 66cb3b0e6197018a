//! `trex`, track extends (ISO/IEC 14496-12 §8.8.3): the sample defaults of one track's
//! fragments, used where `tfhd` and `trun` say nothing.

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, FourCC, Reader, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trex {
    pub track_id: u32,
    pub default_sample_description_index: u32,
    pub default_sample_duration: u32,
    pub default_sample_size: u32,
    pub default_sample_flags: u32,
}

impl Atom for Trex {
    const KIND: FourCC = FourCC::new(b"trex");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let _ = r.full_header()?;
        Ok(Self {
            track_id: r.u32()?,
            default_sample_description_index: r.u32()?,
            default_sample_duration: r.u32()?,
            default_sample_size: r.u32()?,
            default_sample_flags: r.u32()?,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, 0);
        out.put_u32(self.track_id);
        out.put_u32(self.default_sample_description_index);
        out.put_u32(self.default_sample_duration);
        out.put_u32(self.default_sample_size);
        out.put_u32(self.default_sample_flags);
    }

    fn body_len(&self) -> usize {
        24
    }

    fn describe(&self, out: &mut String) {
        field(out, "track", self.track_id);
        field(out, "duration", self.default_sample_duration);
        field(out, "size", self.default_sample_size);
        field(
            out,
            "flags",
            format_args!("0x{:08x}", self.default_sample_flags),
        );
    }
}
