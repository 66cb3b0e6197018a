//! `hdlr`, the handler (ISO/IEC 14496-12 §8.4.3): what kind of media a track carries.

use bytes::{BufMut, Bytes};

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, FourCC, Reader, Result};

pub const VIDEO: FourCC = FourCC::new(b"vide");
pub const AUDIO: FourCC = FourCC::new(b"soun");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdlr {
    pub handler_type: FourCC,
    /// The name as stored (usually null-terminated UTF-8), kept byte for byte.
    pub name: Bytes,
}

impl Atom for Hdlr {
    const KIND: FourCC = FourCC::new(b"hdlr");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let _ = r.full_header()?;
        r.skip(4)?; // pre_defined
        let handler_type = r.fourcc()?;
        r.skip(12)?; // reserved
        Ok(Self {
            handler_type,
            name: r.rest(),
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, 0);
        out.put_u32(0);
        out.put_slice(self.handler_type.as_bytes());
        out.put_bytes(0, 12);
        out.put_slice(&self.name);
    }

    fn body_len(&self) -> usize {
        24 + self.name.len()
    }

    fn describe(&self, out: &mut String) {
        field(out, "handler", self.handler_type);
        let name = String::from_utf8_lossy(&self.name);
        field(
            out,
            "name",
            format_args!("{:?}", name.trim_end_matches('\0')),
        );
    }
}
