//! `trun`, a track run (ISO/IEC 14496-12 §8.8.8): the samples of a fragment, their durations,
//! sizes, flags and composition offsets; any field absent here comes from `tfhd`, then `trex`.
//!
//! Two readers: [`Trun`] decodes every sample (for rewriting and `probe`); [`Trun::summarize`]
//! walks the same bytes without allocating, which is all the splitter needs per fragment.

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, ErrorKind, FourCC, Reader, Result};

pub const DATA_OFFSET_PRESENT: u32 = 0x00_0001;
pub const FIRST_SAMPLE_FLAGS_PRESENT: u32 = 0x00_0004;
pub const SAMPLE_DURATION_PRESENT: u32 = 0x00_0100;
pub const SAMPLE_SIZE_PRESENT: u32 = 0x00_0200;
pub const SAMPLE_FLAGS_PRESENT: u32 = 0x00_0400;
pub const SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT: u32 = 0x00_0800;

/// The per-sample field bits.
pub const SAMPLE_FIELDS: u32 = SAMPLE_DURATION_PRESENT
    | SAMPLE_SIZE_PRESENT
    | SAMPLE_FLAGS_PRESENT
    | SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT;

const KNOWN_FLAGS: u32 = DATA_OFFSET_PRESENT | FIRST_SAMPLE_FLAGS_PRESENT | SAMPLE_FIELDS;

/// One sample; only the fields named in [`Trun::sample_fields`] are meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunSample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Presentation minus decode time; unsigned in version 0, signed in version 1.
    pub composition_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trun {
    pub version: u8,
    /// Where the first sample's data starts, from the base offset (`moof` for CMAF).
    pub data_offset: Option<i32>,
    pub first_sample_flags: Option<u32>,
    /// Which of the per-sample fields are stored ([`SAMPLE_FIELDS`] bits).
    pub sample_fields: u32,
    pub sample_count: u32,
    /// One entry per sample when any per-sample field is stored, else empty: a run of
    /// samples described only by defaults takes no bytes, so its count bounds nothing.
    pub samples: Vec<TrunSample>,
}

/// Sample defaults in force for a track fragment, from `tfhd` or else `trex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleDefaults {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

/// What the splitter needs from a run: its length in time and bytes and whether it starts at
/// a sync sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunSummary {
    pub sample_count: u32,
    pub duration: u64,
    pub data_size: u64,
    pub data_offset: Option<i32>,
    pub first_sample_flags: u32,
    /// The first sample's composition offset (presentation minus decode time).
    pub first_composition_offset: i64,
}

/// The length of one sample entry of a `trun` with `flags`.
pub fn per_sample_len(fields: u32) -> usize {
    [
        SAMPLE_DURATION_PRESENT,
        SAMPLE_SIZE_PRESENT,
        SAMPLE_FLAGS_PRESENT,
        SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT,
    ]
    .iter()
    .filter(|bit| fields & **bit != 0)
    .count()
        * 4
}

fn read_composition_offset(r: &mut Reader<'_>, version: u8) -> Result<i64> {
    Ok(if version == 0 {
        i64::from(r.u32()?)
    } else {
        i64::from(r.i32()?)
    })
}

/// Where the first sample entry lies in the body of a `trun` with `flags`: after version and
/// flags, the sample count, and the optional data offset and first sample's flags.
pub fn first_sample_offset(flags: u32) -> usize {
    8 + if flags & DATA_OFFSET_PRESENT != 0 {
        4
    } else {
        0
    } + if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
        4
    } else {
        0
    }
}

impl Trun {
    fn flags(&self) -> u32 {
        let mut flags = self.sample_fields & SAMPLE_FIELDS;
        if self.data_offset.is_some() {
            flags |= DATA_OFFSET_PRESENT;
        }
        if self.first_sample_flags.is_some() {
            flags |= FIRST_SAMPLE_FLAGS_PRESENT;
        }
        flags
    }

    /// Walks the run's body without allocating, resolving absent fields from `defaults`.
    pub fn summarize(r: &mut Reader<'_>, defaults: &SampleDefaults) -> Result<TrunSummary> {
        let (version, flags) = r.full_header()?;
        if version > 1 {
            return Err(r.error(ErrorKind::UnsupportedVersion(version)));
        }
        let sample_count = r.u32()?;
        let data_offset = if flags & DATA_OFFSET_PRESENT != 0 {
            Some(r.i32()?)
        } else {
            None
        };
        let first_flags_field = if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let fields = flags & SAMPLE_FIELDS;
        let item_len = per_sample_len(fields);
        let mut summary = TrunSummary {
            sample_count,
            data_offset,
            first_sample_flags: first_flags_field.unwrap_or(defaults.flags),
            ..TrunSummary::default()
        };
        if item_len == 0 {
            let count = u64::from(sample_count);
            summary.duration = count * u64::from(defaults.duration);
            summary.data_size = count * u64::from(defaults.size);
            return Ok(summary);
        }
        let count = r.bounded_count(u64::from(sample_count), item_len)?;
        for i in 0..count {
            let duration = if fields & SAMPLE_DURATION_PRESENT != 0 {
                r.u32()?
            } else {
                defaults.duration
            };
            let size = if fields & SAMPLE_SIZE_PRESENT != 0 {
                r.u32()?
            } else {
                defaults.size
            };
            if fields & SAMPLE_FLAGS_PRESENT != 0 {
                let sample_flags = r.u32()?;
                if i == 0 && first_flags_field.is_none() {
                    summary.first_sample_flags = sample_flags;
                }
            }
            if fields & SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT != 0 {
                let offset = read_composition_offset(r, version)?;
                if i == 0 {
                    summary.first_composition_offset = offset;
                }
            }
            summary.duration += u64::from(duration);
            summary.data_size += u64::from(size);
        }
        Ok(summary)
    }
}

impl Atom for Trun {
    const KIND: FourCC = FourCC::new(b"trun");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (version, flags) = r.full_header()?;
        if version > 1 {
            return Err(r.error(ErrorKind::UnsupportedVersion(version)));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(r.error(ErrorKind::InvalidValue("trun has unknown flag bits")));
        }
        let sample_count = r.u32()?;
        let data_offset = if flags & DATA_OFFSET_PRESENT != 0 {
            Some(r.i32()?)
        } else {
            None
        };
        let first_sample_flags = if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let sample_fields = flags & SAMPLE_FIELDS;
        let item_len = per_sample_len(sample_fields);
        let mut samples = Vec::new();
        if item_len > 0 {
            let count = r.bounded_count(u64::from(sample_count), item_len)?;
            samples.reserve_exact(count);
            for _ in 0..count {
                let mut sample = TrunSample::default();
                if sample_fields & SAMPLE_DURATION_PRESENT != 0 {
                    sample.duration = r.u32()?;
                }
                if sample_fields & SAMPLE_SIZE_PRESENT != 0 {
                    sample.size = r.u32()?;
                }
                if sample_fields & SAMPLE_FLAGS_PRESENT != 0 {
                    sample.flags = r.u32()?;
                }
                if sample_fields & SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT != 0 {
                    sample.composition_offset = read_composition_offset(r, version)?;
                }
                samples.push(sample);
            }
        }
        Ok(Self {
            version,
            data_offset,
            first_sample_flags,
            sample_fields,
            sample_count,
            samples,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, self.version, self.flags());
        let fields = self.sample_fields & SAMPLE_FIELDS;
        let count = if fields == 0 {
            self.sample_count
        } else {
            self.samples.len() as u32
        };
        out.put_u32(count);
        if let Some(v) = self.data_offset {
            out.put_i32(v);
        }
        if let Some(v) = self.first_sample_flags {
            out.put_u32(v);
        }
        if fields == 0 {
            return;
        }
        for sample in &self.samples {
            if fields & SAMPLE_DURATION_PRESENT != 0 {
                out.put_u32(sample.duration);
            }
            if fields & SAMPLE_SIZE_PRESENT != 0 {
                out.put_u32(sample.size);
            }
            if fields & SAMPLE_FLAGS_PRESENT != 0 {
                out.put_u32(sample.flags);
            }
            if fields & SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT != 0 {
                if self.version == 0 {
                    out.put_u32(sample.composition_offset as u32);
                } else {
                    out.put_i32(sample.composition_offset as i32);
                }
            }
        }
    }

    fn body_len(&self) -> usize {
        let fields = self.sample_fields & SAMPLE_FIELDS;
        8 + self.data_offset.map_or(0, |_| 4)
            + self.first_sample_flags.map_or(0, |_| 4)
            + if fields == 0 {
                0
            } else {
                self.samples.len() * per_sample_len(fields)
            }
    }

    fn describe(&self, out: &mut String) {
        let count = if self.sample_fields & SAMPLE_FIELDS == 0 {
            self.sample_count as usize
        } else {
            self.samples.len()
        };
        field(out, "samples", count);
        if let Some(v) = self.data_offset {
            field(out, "data_offset", v);
        }
        if let Some(v) = self.first_sample_flags {
            field(out, "first_flags", format_args!("0x{v:08x}"));
        }
    }
}
