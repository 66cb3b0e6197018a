//! `tfhd`, the track fragment header (ISO/IEC 14496-12 §8.8.7): the track, where sample data
//! is counted from, and sample defaults that override `trex`.

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, FourCC, Reader, Result};

pub const BASE_DATA_OFFSET_PRESENT: u32 = 0x00_0001;
pub const SAMPLE_DESCRIPTION_INDEX_PRESENT: u32 = 0x00_0002;
pub const DEFAULT_SAMPLE_DURATION_PRESENT: u32 = 0x00_0008;
pub const DEFAULT_SAMPLE_SIZE_PRESENT: u32 = 0x00_0010;
pub const DEFAULT_SAMPLE_FLAGS_PRESENT: u32 = 0x00_0020;
pub const DURATION_IS_EMPTY: u32 = 0x01_0000;
pub const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

const FIELD_FLAGS: u32 = BASE_DATA_OFFSET_PRESENT
    | SAMPLE_DESCRIPTION_INDEX_PRESENT
    | DEFAULT_SAMPLE_DURATION_PRESENT
    | DEFAULT_SAMPLE_SIZE_PRESENT
    | DEFAULT_SAMPLE_FLAGS_PRESENT;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tfhd {
    pub track_id: u32,
    /// An absolute file offset: streams use `default_base_is_moof` instead.
    pub base_data_offset: Option<u64>,
    pub sample_description_index: Option<u32>,
    pub default_sample_duration: Option<u32>,
    pub default_sample_size: Option<u32>,
    pub default_sample_flags: Option<u32>,
    /// Flag bits other than the optional-field bits (`duration-is-empty`,
    /// `default-base-is-moof`, and any this code does not know), kept as they came.
    pub other_flags: u32,
}

impl Tfhd {
    /// Where `default_sample_duration` lies in the body, when present: after version and
    /// flags, the track id, and the optional base data offset and sample description index
    /// (§8.8.7.1's order).
    pub fn default_duration_offset(&self) -> usize {
        8 + if self.base_data_offset.is_some() {
            8
        } else {
            0
        } + if self.sample_description_index.is_some() {
            4
        } else {
            0
        }
    }

    pub fn default_base_is_moof(&self) -> bool {
        self.other_flags & DEFAULT_BASE_IS_MOOF != 0
    }

    fn flags(&self) -> u32 {
        let mut flags = self.other_flags & !FIELD_FLAGS;
        let present = [
            (self.base_data_offset.is_some(), BASE_DATA_OFFSET_PRESENT),
            (
                self.sample_description_index.is_some(),
                SAMPLE_DESCRIPTION_INDEX_PRESENT,
            ),
            (
                self.default_sample_duration.is_some(),
                DEFAULT_SAMPLE_DURATION_PRESENT,
            ),
            (
                self.default_sample_size.is_some(),
                DEFAULT_SAMPLE_SIZE_PRESENT,
            ),
            (
                self.default_sample_flags.is_some(),
                DEFAULT_SAMPLE_FLAGS_PRESENT,
            ),
        ];
        for (is_present, bit) in present {
            if is_present {
                flags |= bit;
            }
        }
        flags
    }
}

impl Atom for Tfhd {
    const KIND: FourCC = FourCC::new(b"tfhd");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (_version, flags) = r.full_header()?;
        let track_id = r.u32()?;
        let mut tfhd = Tfhd {
            track_id,
            other_flags: flags & !FIELD_FLAGS,
            ..Tfhd::default()
        };
        if flags & BASE_DATA_OFFSET_PRESENT != 0 {
            tfhd.base_data_offset = Some(r.u64()?);
        }
        if flags & SAMPLE_DESCRIPTION_INDEX_PRESENT != 0 {
            tfhd.sample_description_index = Some(r.u32()?);
        }
        if flags & DEFAULT_SAMPLE_DURATION_PRESENT != 0 {
            tfhd.default_sample_duration = Some(r.u32()?);
        }
        if flags & DEFAULT_SAMPLE_SIZE_PRESENT != 0 {
            tfhd.default_sample_size = Some(r.u32()?);
        }
        if flags & DEFAULT_SAMPLE_FLAGS_PRESENT != 0 {
            tfhd.default_sample_flags = Some(r.u32()?);
        }
        Ok(tfhd)
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, self.flags());
        out.put_u32(self.track_id);
        if let Some(v) = self.base_data_offset {
            out.put_u64(v);
        }
        for v in [
            self.sample_description_index,
            self.default_sample_duration,
            self.default_sample_size,
            self.default_sample_flags,
        ]
        .into_iter()
        .flatten()
        {
            out.put_u32(v);
        }
    }

    fn body_len(&self) -> usize {
        8 + self.base_data_offset.map_or(0, |_| 8)
            + 4 * [
                self.sample_description_index,
                self.default_sample_duration,
                self.default_sample_size,
                self.default_sample_flags,
            ]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }

    fn describe(&self, out: &mut String) {
        field(out, "track", self.track_id);
        if self.default_base_is_moof() {
            out.push_str(" base=moof");
        }
        if let Some(v) = self.default_sample_duration {
            field(out, "duration", v);
        }
        if let Some(v) = self.default_sample_size {
            field(out, "size", v);
        }
        if let Some(v) = self.default_sample_flags {
            field(out, "flags", format_args!("0x{v:08x}"));
        }
    }
}
