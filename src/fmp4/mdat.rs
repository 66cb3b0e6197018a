//! `mdat` (ISO/IEC 14496-12 §8.1.1): the media payload. Its data is a slice of the input,
//! never copied.

use bytes::{BufMut, Bytes};

use super::{Atom, FourCC, Reader, Result};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mdat {
    pub data: Bytes,
}

impl Atom for Mdat {
    const KIND: FourCC = FourCC::new(b"mdat");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self { data: r.rest() })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.data);
    }

    fn body_len(&self) -> usize {
        self.data.len()
    }
}
