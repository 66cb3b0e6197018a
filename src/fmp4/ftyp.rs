//! `ftyp` and `styp`: the brands of a file and of a segment (ISO/IEC 14496-12 §4.3, §8.16.2).
//! One layout, two box types.

use bytes::BufMut;

use super::{Atom, FourCC, Reader, Result, atom::field};

pub const FTYP: u32 = u32::from_be_bytes(*b"ftyp");
pub const STYP: u32 = u32::from_be_bytes(*b"styp");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileType<const KIND: u32> {
    pub major_brand: FourCC,
    pub minor_version: u32,
    pub compatible_brands: Vec<FourCC>,
}

pub type Ftyp = FileType<FTYP>;
pub type Styp = FileType<STYP>;

impl<const KIND: u32> Atom for FileType<KIND> {
    const KIND: FourCC = FourCC::from_u32(KIND);

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let major_brand = r.fourcc()?;
        let minor_version = r.u32()?;
        let count = r.remaining() / 4;
        let mut compatible_brands = Vec::with_capacity(count);
        for _ in 0..count {
            compatible_brands.push(r.fourcc()?);
        }
        Ok(Self {
            major_brand,
            minor_version,
            compatible_brands,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        out.put_slice(self.major_brand.as_bytes());
        out.put_u32(self.minor_version);
        for brand in &self.compatible_brands {
            out.put_slice(brand.as_bytes());
        }
    }

    fn body_len(&self) -> usize {
        8 + 4 * self.compatible_brands.len()
    }

    fn describe(&self, out: &mut String) {
        field(out, "major", self.major_brand);
        field(out, "minor", self.minor_version);
        let brands: Vec<String> = self
            .compatible_brands
            .iter()
            .map(|b| b.to_string())
            .collect();
        field(out, "compatible", brands.join(","));
    }
}
