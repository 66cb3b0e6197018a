//! `stsd`, the sample descriptions (ISO/IEC 14496-12 §8.5.2): which codec a track uses and
//! its decoder configuration.
//!
//! ```text
//! stsd
//! ├── avc1 | avc3    avc1.rs   > avcC (ISO/IEC 14496-15 §5.4)
//! ├── hvc1 | hev1    hvc1.rs   > hvcC (ISO/IEC 14496-15 §8.4)
//! └── mp4a           mp4a.rs   > esds (ISO/IEC 14496-14 §5.6)
//! ```

mod avc1;
mod hvc1;
mod mp4a;

pub use avc1::*;
pub use hvc1::*;
pub use mp4a::*;

use bytes::BufMut;

use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, Dump, ErrorKind, FourCC, RawBox, Reader, Result};

/// One sample description.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleEntry {
    Avc1(Avc1),
    Avc3(Avc3),
    Hvc1(Hvc1),
    Hev1(Hev1),
    Mp4a(Mp4a),
    /// A codec this code does not model, kept verbatim.
    Unknown(RawBox),
}

impl SampleEntry {
    pub fn kind(&self) -> FourCC {
        self.as_dump().kind()
    }

    fn as_dump(&self) -> &dyn Dump {
        match self {
            SampleEntry::Avc1(e) => e,
            SampleEntry::Avc3(e) => e,
            SampleEntry::Hvc1(e) => e,
            SampleEntry::Hev1(e) => e,
            SampleEntry::Mp4a(e) => e,
            SampleEntry::Unknown(raw) => raw,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            SampleEntry::Avc1(e) => e.encoded_len(),
            SampleEntry::Avc3(e) => e.encoded_len(),
            SampleEntry::Hvc1(e) => e.encoded_len(),
            SampleEntry::Hev1(e) => e.encoded_len(),
            SampleEntry::Mp4a(e) => e.encoded_len(),
            SampleEntry::Unknown(raw) => raw.len(),
        }
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        match self {
            SampleEntry::Avc1(e) => e.encode(out),
            SampleEntry::Avc3(e) => e.encode(out),
            SampleEntry::Hvc1(e) => e.encode(out),
            SampleEntry::Hev1(e) => e.encode(out),
            SampleEntry::Mp4a(e) => e.encode(out),
            SampleEntry::Unknown(raw) => raw.encode(out),
        }
    }

    /// The video fields of a video sample entry.
    pub fn visual(&self) -> Option<&VisualSampleEntry> {
        match self {
            SampleEntry::Avc1(e) => Some(&e.visual),
            SampleEntry::Avc3(e) => Some(&e.visual),
            SampleEntry::Hvc1(e) => Some(&e.visual),
            SampleEntry::Hev1(e) => Some(&e.visual),
            _ => None,
        }
    }

    /// The audio fields of an audio sample entry.
    pub fn audio(&self) -> Option<&AudioSampleEntry> {
        match self {
            SampleEntry::Mp4a(e) => Some(&e.audio),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stsd {
    pub entries: Vec<SampleEntry>,
}

impl Atom for Stsd {
    const KIND: FourCC = FourCC::new(b"stsd");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let _ = r.full_header()?;
        let declared = r.u32()?;
        let count = r.bounded_count(u64::from(declared), 8)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let child = r.next_box()?.ok_or_else(|| {
                r.error(ErrorKind::InvalidValue(
                    "stsd has fewer entries than its count",
                ))
            })?;
            let kind = child.kind();
            let entry = if kind == Avc1::KIND {
                SampleEntry::Avc1(child.decode()?)
            } else if kind == Avc3::KIND {
                SampleEntry::Avc3(child.decode()?)
            } else if kind == Hvc1::KIND {
                SampleEntry::Hvc1(child.decode()?)
            } else if kind == Hev1::KIND {
                SampleEntry::Hev1(child.decode()?)
            } else if kind == Mp4a::KIND {
                SampleEntry::Mp4a(child.decode()?)
            } else {
                SampleEntry::Unknown(child.raw())
            };
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, 0);
        out.put_u32(self.entries.len() as u32);
        for entry in &self.entries {
            entry.encode(out);
        }
    }

    fn body_len(&self) -> usize {
        8 + self
            .entries
            .iter()
            .map(SampleEntry::encoded_len)
            .sum::<usize>()
    }

    fn describe(&self, out: &mut String) {
        field(out, "entries", self.entries.len());
    }

    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump)) {
        for entry in &self.entries {
            visit(entry.as_dump());
        }
    }
}

/// The fields every video sample entry starts with (ISO/IEC 14496-12 §12.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisualSampleEntry {
    pub data_reference_index: u16,
    pub width: u16,
    pub height: u16,
    /// 16.16 pixels per inch; 72 dpi is `0x0048_0000`.
    pub horizresolution: u32,
    pub vertresolution: u32,
    pub frame_count: u16,
    /// A Pascal string padded to 32 bytes.
    pub compressorname: [u8; 32],
    pub depth: u16,
}

impl VisualSampleEntry {
    pub const LEN: usize = 78;

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.skip(6)?; // reserved
        let data_reference_index = r.u16()?;
        r.skip(16)?; // pre_defined, reserved, pre_defined[3]
        let width = r.u16()?;
        let height = r.u16()?;
        let horizresolution = r.u32()?;
        let vertresolution = r.u32()?;
        r.skip(4)?; // reserved
        let frame_count = r.u16()?;
        let compressorname = r.array()?;
        let depth = r.u16()?;
        r.skip(2)?; // pre_defined = -1
        Ok(Self {
            data_reference_index,
            width,
            height,
            horizresolution,
            vertresolution,
            frame_count,
            compressorname,
            depth,
        })
    }

    pub fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_bytes(0, 6);
        out.put_u16(self.data_reference_index);
        out.put_bytes(0, 16);
        out.put_u16(self.width);
        out.put_u16(self.height);
        out.put_u32(self.horizresolution);
        out.put_u32(self.vertresolution);
        out.put_u32(0);
        out.put_u16(self.frame_count);
        out.put_slice(&self.compressorname);
        out.put_u16(self.depth);
        out.put_i16(-1);
    }

    pub fn describe(&self, out: &mut String) {
        field(out, "width", self.width);
        field(out, "height", self.height);
    }
}

/// The fields every audio sample entry starts with (ISO/IEC 14496-12 §12.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSampleEntry {
    pub data_reference_index: u16,
    /// QuickTime's sound description version: 0 in ISO files; 1 and 2 add fields, kept in
    /// `qt_extension`.
    pub qt_version: u16,
    pub channel_count: u16,
    pub sample_size: u16,
    /// 16.16 fixed point, in Hz.
    pub sample_rate: u32,
    pub qt_extension: bytes::Bytes,
}

impl AudioSampleEntry {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.skip(6)?; // reserved
        let data_reference_index = r.u16()?;
        let qt_version = r.u16()?;
        r.skip(6)?; // revision, vendor
        let channel_count = r.u16()?;
        let sample_size = r.u16()?;
        r.skip(4)?; // pre_defined, reserved
        let sample_rate = r.u32()?;
        let qt_extension = match qt_version {
            0 => bytes::Bytes::new(),
            1 => r.bytes(16)?,
            2 => r.bytes(36)?,
            v => {
                return Err(r.error(ErrorKind::UnsupportedVersion(
                    u8::try_from(v).unwrap_or(u8::MAX),
                )));
            }
        };
        Ok(Self {
            data_reference_index,
            qt_version,
            channel_count,
            sample_size,
            sample_rate,
            qt_extension,
        })
    }

    pub fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_bytes(0, 6);
        out.put_u16(self.data_reference_index);
        out.put_u16(self.qt_version);
        out.put_bytes(0, 6);
        out.put_u16(self.channel_count);
        out.put_u16(self.sample_size);
        out.put_u32(0);
        out.put_u32(self.sample_rate);
        out.put_slice(&self.qt_extension);
    }

    pub fn len(&self) -> usize {
        28 + self.qt_extension.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The sample rate in Hz (the integer part of the 16.16 field).
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate >> 16
    }

    pub fn describe(&self, out: &mut String) {
        field(out, "channels", self.channel_count);
        field(out, "sample_rate", self.sample_rate_hz());
        field(out, "sample_size", self.sample_size);
    }
}

/// Reads the children of a sample entry after its fixed fields: the one required
/// configuration box `C`, and anything else verbatim.
fn decode_entry_children<C: Atom>(r: &mut Reader<'_>) -> Result<(C, Vec<RawBox>)> {
    let mut config = None;
    let mut unknown = Vec::new();
    loop {
        // QuickTime ends a sample entry's list of boxes with four zero bytes (GStreamer's
        // qtmux writes them): not a box, and nothing to keep.
        let left = r.remaining();
        if left > 0 && left < 8 {
            let rest = r.rest();
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            return Err(r.error(ErrorKind::Truncated {
                needed: 8,
                available: left as u64,
            }));
        }
        let Some(child) = r.next_box()? else {
            break;
        };
        if child.kind() == C::KIND {
            if config.is_some() {
                return Err(r.error(ErrorKind::DuplicateBox(C::KIND)));
            }
            config = Some(child.decode::<C>()?);
        } else {
            unknown.push(child.raw());
        }
    }
    let config = config.ok_or_else(|| r.error(ErrorKind::MissingBox(C::KIND)))?;
    Ok((config, unknown))
}
