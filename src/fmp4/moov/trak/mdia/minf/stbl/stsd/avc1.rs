//! H.264 sample entries `avc1`/`avc3` and their `avcC` decoder configuration record
//! (ISO/IEC 14496-15 §5.3.3 and §5.4). `avc1` keeps SPS and PPS only here; `avc3` may also
//! carry them in band.

use bytes::{BufMut, Bytes};

use super::{VisualSampleEntry, decode_entry_children};
use crate::fmp4::atom::field;
use crate::fmp4::{Atom, Dump, FourCC, RawBox, Reader, Result, atom::invalid};

pub const AVC1: u32 = u32::from_be_bytes(*b"avc1");
pub const AVC3: u32 = u32::from_be_bytes(*b"avc3");

/// An H.264 sample entry; `KIND` tells `avc1` from `avc3`.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcSampleEntry<const KIND: u32> {
    pub visual: VisualSampleEntry,
    pub avcc: Avcc,
    /// `pasp`, `btrt`, `colr` and the like, kept verbatim after `avcC`.
    pub unknown: Vec<RawBox>,
}

pub type Avc1 = AvcSampleEntry<AVC1>;
pub type Avc3 = AvcSampleEntry<AVC3>;

impl<const KIND: u32> Atom for AvcSampleEntry<KIND> {
    const KIND: FourCC = FourCC::from_u32(KIND);

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let visual = VisualSampleEntry::decode(r)?;
        let (avcc, unknown) = decode_entry_children::<Avcc>(r)?;
        Ok(Self {
            visual,
            avcc,
            unknown,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        self.visual.encode(out);
        self.avcc.encode(out);
        for raw in &self.unknown {
            raw.encode(out);
        }
    }

    fn body_len(&self) -> usize {
        VisualSampleEntry::LEN
            + self.avcc.encoded_len()
            + self.unknown.iter().map(RawBox::len).sum::<usize>()
    }

    fn describe(&self, out: &mut String) {
        self.visual.describe(out);
    }

    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump)) {
        visit(&self.avcc);
        for raw in &self.unknown {
            visit(raw);
        }
    }
}

/// The AVC decoder configuration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avcc {
    pub configuration_version: u8,
    pub profile_indication: u8,
    pub profile_compatibility: u8,
    pub level_indication: u8,
    /// NAL unit length fields in samples are this plus one bytes long.
    pub length_size_minus_one: u8,
    pub sequence_parameter_sets: Vec<Bytes>,
    pub picture_parameter_sets: Vec<Bytes>,
    /// The High-profile extension (chroma format, bit depths, SPS extensions) and anything
    /// after it, kept verbatim: encoders disagree on whether to write it.
    pub extension: Bytes,
}

impl Avcc {
    fn read_sets(r: &mut Reader<'_>, count: usize) -> Result<Vec<Bytes>> {
        let count = r.bounded_count(count as u64, 2)?;
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(r.u16()?);
            sets.push(r.bytes(len)?);
        }
        Ok(sets)
    }
}

impl Atom for Avcc {
    const KIND: FourCC = FourCC::new(b"avcC");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let configuration_version = r.u8()?;
        if configuration_version != 1 {
            return Err(invalid(r, "avcC configurationVersion is not 1"));
        }
        let profile_indication = r.u8()?;
        let profile_compatibility = r.u8()?;
        let level_indication = r.u8()?;
        let length_size_minus_one = r.u8()? & 0b11;
        let sps_count = usize::from(r.u8()? & 0b1_1111);
        let sequence_parameter_sets = Self::read_sets(r, sps_count)?;
        let pps_count = usize::from(r.u8()?);
        let picture_parameter_sets = Self::read_sets(r, pps_count)?;
        Ok(Self {
            configuration_version,
            profile_indication,
            profile_compatibility,
            level_indication,
            length_size_minus_one,
            sequence_parameter_sets,
            picture_parameter_sets,
            extension: r.rest(),
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.configuration_version);
        out.put_u8(self.profile_indication);
        out.put_u8(self.profile_compatibility);
        out.put_u8(self.level_indication);
        out.put_u8(0b1111_1100 | (self.length_size_minus_one & 0b11));
        out.put_u8(0b1110_0000 | (self.sequence_parameter_sets.len() as u8 & 0b1_1111));
        for sps in &self.sequence_parameter_sets {
            out.put_u16(sps.len() as u16);
            out.put_slice(sps);
        }
        out.put_u8(self.picture_parameter_sets.len() as u8);
        for pps in &self.picture_parameter_sets {
            out.put_u16(pps.len() as u16);
            out.put_slice(pps);
        }
        out.put_slice(&self.extension);
    }

    fn body_len(&self) -> usize {
        7 + self
            .sequence_parameter_sets
            .iter()
            .chain(&self.picture_parameter_sets)
            .map(|set| 2 + set.len())
            .sum::<usize>()
            + self.extension.len()
    }

    fn describe(&self, out: &mut String) {
        field(out, "profile", self.profile_indication);
        field(
            out,
            "compat",
            format_args!("0x{:02x}", self.profile_compatibility),
        );
        field(out, "level", self.level_indication);
        field(out, "nal_length", self.length_size_minus_one + 1);
        field(out, "sps", self.sequence_parameter_sets.len());
        field(out, "pps", self.picture_parameter_sets.len());
    }
}
