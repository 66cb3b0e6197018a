//! `mfhd`, the movie fragment header (ISO/IEC 14496-12 §8.8.5).

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, FourCC, Reader, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mfhd {
    /// Increases with each fragment; players do not rely on it, but validators do.
    pub sequence_number: u32,
}

impl Mfhd {
    /// Where `sequence_number` lies in the body: after version and flags.
    pub const SEQUENCE_OFFSET: usize = 4;
}

impl Atom for Mfhd {
    const KIND: FourCC = FourCC::new(b"mfhd");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let _ = r.full_header()?;
        Ok(Self {
            sequence_number: r.u32()?,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, 0);
        out.put_u32(self.sequence_number);
    }

    fn body_len(&self) -> usize {
        8
    }

    fn describe(&self, out: &mut String) {
        field(out, "sequence", self.sequence_number);
    }
}
