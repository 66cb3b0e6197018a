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

/// The length of an `mdat` header for `payload` bytes: 8, or 16 with a 64-bit size.
pub fn header_len(payload: u64) -> usize {
    if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    }
}

/// Writes an `mdat` header for `payload` bytes (which the caller writes after it).
pub fn put_header<B: BufMut>(out: &mut B, payload: u64) {
    if header_len(payload) == 16 {
        out.put_u32(1);
        out.put_slice(b"mdat");
        out.put_u64(payload + 16);
    } else {
        out.put_u32((payload + 8) as u32);
        out.put_slice(b"mdat");
    }
}
