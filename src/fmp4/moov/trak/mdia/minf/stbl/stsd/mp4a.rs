//! The AAC sample entry `mp4a` and its `esds` elementary stream descriptor (ISO/IEC 14496-14
//! §5.6, descriptors from ISO/IEC 14496-1 §7.2.6).
//!
//! ```text
//! esds (full box)
//! └── ES_Descriptor (tag 3)
//!     ├── DecoderConfigDescriptor (tag 4)
//!     │   └── DecoderSpecificInfo (tag 5): the AudioSpecificConfig
//!     └── SLConfigDescriptor (tag 6)
//! ```

use bytes::{BufMut, Bytes};

use super::{AudioSampleEntry, decode_entry_children};
use crate::fmp4::atom::{field, put_full_header};
use crate::fmp4::{Atom, Dump, ErrorKind, FourCC, RawBox, Reader, Result, atom::invalid};

/// The `esds` inside a QuickTime `wave` child (`frma`, `mp4a`, `esds`, a zero terminator).
fn esds_in_wave(mut r: Reader<'_>) -> Result<Option<Esds>> {
    while r.remaining() >= 8 {
        let Some(mut child) = r.next_box()? else {
            break;
        };
        if child.kind() != FourCC::new(b"wave") {
            continue;
        }
        let wave = child.body();
        while wave.remaining() >= 8 {
            let Some(inner) = wave.next_box()? else {
                break;
            };
            if inner.kind() == Esds::KIND {
                return inner.decode::<Esds>().map(Some);
            }
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mp4a {
    pub audio: AudioSampleEntry,
    pub esds: Esds,
    pub unknown: Vec<RawBox>,
}

impl Atom for Mp4a {
    const KIND: FourCC = FourCC::new(b"mp4a");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let mut audio = AudioSampleEntry::decode(r)?;
        let children = r.clone();
        match decode_entry_children::<Esds>(r) {
            Ok((esds, unknown)) => Ok(Self {
                audio,
                esds,
                unknown,
            }),
            Err(err) if err.kind == ErrorKind::MissingBox(Esds::KIND) => {
                // QuickTime (GStreamer's qtmux): a version 1 sound description whose `esds`
                // is inside a `wave` box. Read as the ISO entry it describes: version 0, the
                // `esds` its own child, the `wave` dropped.
                let esds = esds_in_wave(children)?.ok_or(err)?;
                audio.qt_version = 0;
                audio.qt_extension = Bytes::new();
                Ok(Self {
                    audio,
                    esds,
                    unknown: Vec::new(),
                })
            }
            Err(err) => Err(err),
        }
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        self.audio.encode(out);
        self.esds.encode(out);
        for raw in &self.unknown {
            raw.encode(out);
        }
    }

    fn body_len(&self) -> usize {
        self.audio.len()
            + self.esds.encoded_len()
            + self.unknown.iter().map(RawBox::len).sum::<usize>()
    }

    fn describe(&self, out: &mut String) {
        self.audio.describe(out);
    }

    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump)) {
        visit(&self.esds);
        for raw in &self.unknown {
            visit(raw);
        }
    }
}

const ES_DESCRIPTOR: u8 = 0x03;
const DECODER_CONFIG_DESCRIPTOR: u8 = 0x04;
const DECODER_SPECIFIC_INFO: u8 = 0x05;

/// The elementary stream descriptor of an MPEG-4 audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Esds {
    pub es_id: u16,
    /// streamDependenceFlag, URL_Flag, OCRstreamFlag and streamPriority.
    pub es_flags: u8,
    /// The optional fields those flags announce, kept verbatim.
    pub es_optional: Bytes,
    /// 0x40 is MPEG-4 audio (ISO/IEC 14496-3).
    pub object_type_indication: u8,
    /// streamType (6 bits, 5 = audio), upStream and the reserved bit, as stored.
    pub stream_type: u8,
    pub buffer_size_db: u32,
    pub max_bitrate: u32,
    pub avg_bitrate: u32,
    /// The AudioSpecificConfig.
    pub decoder_specific_info: Option<Bytes>,
    /// Descriptors after the DecoderConfigDescriptor (the SLConfigDescriptor), verbatim.
    pub trailing_descriptors: Bytes,
    /// How descriptor sizes are written: 1 means as compactly as each size allows; 2 to 4
    /// pad every size to that many bytes (ffmpeg pads to 4).
    pub size_width: u8,
}

/// Reads a descriptor's tag and its expandable size (ISO/IEC 14496-1 §8.3.3): up to four
/// bytes of seven bits each, the top bit saying "more follows".
fn read_descriptor_header(r: &mut Reader<'_>) -> Result<(u8, usize, u8)> {
    let tag = r.u8()?;
    let mut size: usize = 0;
    for width in 1..=4u8 {
        let byte = r.u8()?;
        size = (size << 7) | usize::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Ok((tag, size, width));
        }
    }
    Err(invalid(r, "descriptor size longer than four bytes"))
}

fn put_descriptor_header<B: BufMut>(out: &mut B, tag: u8, size: usize, preferred_width: u8) {
    let width = size_width_for(size, preferred_width);
    out.put_u8(tag);
    for i in (0..width).rev() {
        let more = if i == 0 { 0 } else { 0x80 };
        out.put_u8(((size >> (7 * u32::from(i))) as u8 & 0x7f) | more);
    }
}

/// The width a descriptor size is written in: the preferred one, or more if the size needs it.
fn size_width_for(size: usize, preferred: u8) -> u8 {
    let mut needed = 1u8;
    while needed < 4 && size >> (7 * u32::from(needed)) != 0 {
        needed += 1;
    }
    needed.max(preferred.clamp(1, 4))
}

/// A whole descriptor: tag, size field and body.
fn descriptor_len(body: usize, preferred_width: u8) -> usize {
    1 + usize::from(size_width_for(body, preferred_width)) + body
}

impl Esds {
    /// The audio object type of the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): 2 is
    /// AAC-LC, 5 SBR (HE-AAC), 29 PS (HE-AACv2).
    pub fn audio_object_type(&self) -> Option<u8> {
        let asc = self.decoder_specific_info.as_ref()?;
        let first = *asc.first()?;
        let aot = first >> 3;
        if aot == 31 {
            let second = *asc.get(1)?;
            Some(32 + (((first & 0b111) << 3) | (second >> 5)))
        } else {
            Some(aot)
        }
    }

    fn decoder_config_len(&self) -> usize {
        13 + self
            .decoder_specific_info
            .as_ref()
            .map_or(0, |dsi| descriptor_len(dsi.len(), self.size_width))
    }

    fn es_descriptor_len(&self) -> usize {
        3 + self.es_optional.len()
            + descriptor_len(self.decoder_config_len(), self.size_width)
            + self.trailing_descriptors.len()
    }
}

impl Atom for Esds {
    const KIND: FourCC = FourCC::new(b"esds");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let _ = r.full_header()?;
        let (tag, size, width) = read_descriptor_header(r)?;
        let size_width = if width == size_width_for(size, 1) {
            1
        } else {
            width
        };
        if tag != ES_DESCRIPTOR {
            return Err(invalid(r, "esds does not start with an ES_Descriptor"));
        }
        let mut es = r.sub(size)?;
        let es_id = es.u16()?;
        let es_flags = es.u8()?;
        let mut optional_len = 0;
        if es_flags & 0x80 != 0 {
            optional_len += 2; // dependsOn_ES_ID
        }
        if es_flags & 0x40 != 0 {
            // URLlength, then the URL; peek the length without consuming it.
            let mut peek = es.clone();
            optional_len += 1 + usize::from(peek.u8()?);
        }
        if es_flags & 0x20 != 0 {
            optional_len += 2; // OCR_ES_Id
        }
        let es_optional = es.bytes(optional_len)?;

        let (tag, size, _) = read_descriptor_header(&mut es)?;
        if tag != DECODER_CONFIG_DESCRIPTOR {
            return Err(es.error(ErrorKind::InvalidValue(
                "ES_Descriptor has no DecoderConfigDescriptor",
            )));
        }
        let mut dc = es.sub(size)?;
        let object_type_indication = dc.u8()?;
        let stream_type = dc.u8()?;
        let buffer_size_db = dc.u24()?;
        let max_bitrate = dc.u32()?;
        let avg_bitrate = dc.u32()?;
        let decoder_specific_info = if dc.is_empty() {
            None
        } else {
            let (tag, size, _) = read_descriptor_header(&mut dc)?;
            if tag != DECODER_SPECIFIC_INFO {
                return Err(invalid(
                    &dc,
                    "unexpected descriptor in DecoderConfigDescriptor",
                ));
            }
            Some(dc.bytes(size)?)
        };
        dc.expect_end()?;
        let trailing_descriptors = es.rest();
        // The ES_Descriptor must fill the box: stray bytes after it mean a broken box.
        r.expect_end()?;
        Ok(Self {
            es_id,
            es_flags,
            es_optional,
            object_type_indication,
            stream_type,
            buffer_size_db,
            max_bitrate,
            avg_bitrate,
            decoder_specific_info,
            trailing_descriptors,
            size_width,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, 0, 0);
        put_descriptor_header(
            out,
            ES_DESCRIPTOR,
            self.es_descriptor_len(),
            self.size_width,
        );
        out.put_u16(self.es_id);
        out.put_u8(self.es_flags);
        out.put_slice(&self.es_optional);
        put_descriptor_header(
            out,
            DECODER_CONFIG_DESCRIPTOR,
            self.decoder_config_len(),
            self.size_width,
        );
        out.put_u8(self.object_type_indication);
        out.put_u8(self.stream_type);
        out.put_slice(&self.buffer_size_db.to_be_bytes()[1..]);
        out.put_u32(self.max_bitrate);
        out.put_u32(self.avg_bitrate);
        if let Some(dsi) = &self.decoder_specific_info {
            put_descriptor_header(out, DECODER_SPECIFIC_INFO, dsi.len(), self.size_width);
            out.put_slice(dsi);
        }
        out.put_slice(&self.trailing_descriptors);
    }

    fn body_len(&self) -> usize {
        4 + descriptor_len(self.es_descriptor_len(), self.size_width)
    }

    fn describe(&self, out: &mut String) {
        field(
            out,
            "object_type",
            format_args!("0x{:02x}", self.object_type_indication),
        );
        if let Some(aot) = self.audio_object_type() {
            field(out, "audio_object_type", aot);
        }
        field(out, "avg_bitrate", self.avg_bitrate);
    }
}
