//! H.265 sample entries `hvc1`/`hev1` and their `hvcC` decoder configuration record
//! (ISO/IEC 14496-15 §8.3.3 and §8.4). `hvc1` keeps parameter sets only here; `hev1` may
//! also carry them in band.

use bytes::{BufMut, Bytes};

use super::{VisualSampleEntry, decode_entry_children};
use crate::fmp4::atom::field;
use crate::fmp4::{Atom, Dump, FourCC, RawBox, Reader, Result, atom::invalid};

pub const HVC1: u32 = u32::from_be_bytes(*b"hvc1");
pub const HEV1: u32 = u32::from_be_bytes(*b"hev1");

/// An H.265 sample entry; `KIND` tells `hvc1` from `hev1`.
#[derive(Debug, Clone, PartialEq)]
pub struct HevcSampleEntry<const KIND: u32> {
    pub visual: VisualSampleEntry,
    pub hvcc: Hvcc,
    pub unknown: Vec<RawBox>,
}

pub type Hvc1 = HevcSampleEntry<HVC1>;
pub type Hev1 = HevcSampleEntry<HEV1>;

impl<const KIND: u32> Atom for HevcSampleEntry<KIND> {
    const KIND: FourCC = FourCC::from_u32(KIND);

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let visual = VisualSampleEntry::decode(r)?;
        let (hvcc, unknown) = decode_entry_children::<Hvcc>(r)?;
        Ok(Self {
            visual,
            hvcc,
            unknown,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        self.visual.encode(out);
        self.hvcc.encode(out);
        for raw in &self.unknown {
            raw.encode(out);
        }
    }

    fn body_len(&self) -> usize {
        VisualSampleEntry::LEN
            + self.hvcc.encoded_len()
            + self.unknown.iter().map(RawBox::len).sum::<usize>()
    }

    fn describe(&self, out: &mut String) {
        self.visual.describe(out);
    }

    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump)) {
        visit(&self.hvcc);
        for raw in &self.unknown {
            visit(raw);
        }
    }
}

/// One array of NAL units of a type (VPS, SPS, PPS, SEI) in `hvcC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvccArray {
    pub completeness: bool,
    pub nal_unit_type: u8,
    pub nalus: Vec<Bytes>,
}

/// The HEVC decoder configuration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hvcc {
    pub configuration_version: u8,
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    pub general_profile_compatibility_flags: u32,
    /// 48 bits.
    pub general_constraint_indicator_flags: u64,
    pub general_level_idc: u8,
    pub min_spatial_segmentation_idc: u16,
    pub parallelism_type: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub avg_frame_rate: u16,
    pub constant_frame_rate: u8,
    pub num_temporal_layers: u8,
    pub temporal_id_nested: bool,
    pub length_size_minus_one: u8,
    pub arrays: Vec<HvccArray>,
}

impl Atom for Hvcc {
    const KIND: FourCC = FourCC::new(b"hvcC");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let configuration_version = r.u8()?;
        if configuration_version != 1 {
            return Err(invalid(r, "hvcC configurationVersion is not 1"));
        }
        let profile = r.u8()?;
        let general_profile_compatibility_flags = r.u32()?;
        let [a, b, c, d, e, f] = r.array::<6>()?;
        let general_constraint_indicator_flags = u64::from_be_bytes([0, 0, a, b, c, d, e, f]);
        let general_level_idc = r.u8()?;
        let min_spatial_segmentation_idc = r.u16()? & 0x0fff;
        let parallelism_type = r.u8()? & 0b11;
        let chroma_format_idc = r.u8()? & 0b11;
        let bit_depth_luma_minus8 = r.u8()? & 0b111;
        let bit_depth_chroma_minus8 = r.u8()? & 0b111;
        let avg_frame_rate = r.u16()?;
        let packed = r.u8()?;
        let array_count = usize::from(r.u8()?);
        let array_count = r.bounded_count(array_count as u64, 3)?;
        let mut arrays = Vec::with_capacity(array_count);
        for _ in 0..array_count {
            let head = r.u8()?;
            let nalu_count = r.u16()?;
            let nalu_count = r.bounded_count(u64::from(nalu_count), 2)?;
            let mut nalus = Vec::with_capacity(nalu_count);
            for _ in 0..nalu_count {
                let len = usize::from(r.u16()?);
                nalus.push(r.bytes(len)?);
            }
            arrays.push(HvccArray {
                completeness: head & 0x80 != 0,
                nal_unit_type: head & 0x3f,
                nalus,
            });
        }
        Ok(Self {
            configuration_version,
            general_profile_space: profile >> 6,
            general_tier_flag: profile & 0x20 != 0,
            general_profile_idc: profile & 0x1f,
            general_profile_compatibility_flags,
            general_constraint_indicator_flags,
            general_level_idc,
            min_spatial_segmentation_idc,
            parallelism_type,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            avg_frame_rate,
            constant_frame_rate: packed >> 6,
            num_temporal_layers: (packed >> 3) & 0b111,
            temporal_id_nested: packed & 0b100 != 0,
            length_size_minus_one: packed & 0b11,
            arrays,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.configuration_version);
        out.put_u8(
            (self.general_profile_space << 6)
                | (u8::from(self.general_tier_flag) << 5)
                | (self.general_profile_idc & 0x1f),
        );
        out.put_u32(self.general_profile_compatibility_flags);
        out.put_slice(&self.general_constraint_indicator_flags.to_be_bytes()[2..]);
        out.put_u8(self.general_level_idc);
        out.put_u16(0xf000 | (self.min_spatial_segmentation_idc & 0x0fff));
        out.put_u8(0b1111_1100 | (self.parallelism_type & 0b11));
        out.put_u8(0b1111_1100 | (self.chroma_format_idc & 0b11));
        out.put_u8(0b1111_1000 | (self.bit_depth_luma_minus8 & 0b111));
        out.put_u8(0b1111_1000 | (self.bit_depth_chroma_minus8 & 0b111));
        out.put_u16(self.avg_frame_rate);
        out.put_u8(
            (self.constant_frame_rate << 6)
                | ((self.num_temporal_layers & 0b111) << 3)
                | (u8::from(self.temporal_id_nested) << 2)
                | (self.length_size_minus_one & 0b11),
        );
        out.put_u8(self.arrays.len() as u8);
        for array in &self.arrays {
            out.put_u8((u8::from(array.completeness) << 7) | (array.nal_unit_type & 0x3f));
            out.put_u16(array.nalus.len() as u16);
            for nalu in &array.nalus {
                out.put_u16(nalu.len() as u16);
                out.put_slice(nalu);
            }
        }
    }

    fn body_len(&self) -> usize {
        23 + self
            .arrays
            .iter()
            .map(|a| 3 + a.nalus.iter().map(|n| 2 + n.len()).sum::<usize>())
            .sum::<usize>()
    }

    fn describe(&self, out: &mut String) {
        field(out, "profile", self.general_profile_idc);
        field(
            out,
            "tier",
            if self.general_tier_flag {
                "high"
            } else {
                "main"
            },
        );
        field(out, "level", self.general_level_idc);
        field(out, "nal_length", self.length_size_minus_one + 1);
        field(out, "arrays", self.arrays.len());
    }
}
