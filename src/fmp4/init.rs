//! The init segment (`ftyp` + `moov`) and what the rest of the server needs to know of it:
//! tracks, timescales, codecs, picture size and sample defaults.

use bytes::Bytes;

use super::moov::{AUDIO, VIDEO};
use super::{Atom, ErrorKind, FourCC, Ftyp, Moov, Reader, Result, SampleEntry, Trex, codec};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Other(FourCC),
}

/// One track, summarised from its `trak` and `trex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: u32,
    pub kind: TrackKind,
    pub timescale: u32,
    /// The RFC 6381 codec string, when the sample entry is one this code knows.
    pub codec: Option<String>,
    pub sample_entry: FourCC,
    pub width: u16,
    pub height: u16,
    pub sample_rate: u32,
    pub channels: u16,
    /// Sample defaults for fragments (`trex`), zero where the movie gives none.
    pub defaults: Trex,
}

/// A parsed init segment.
#[derive(Debug, Clone, PartialEq)]
pub struct InitSegment {
    /// The bytes as received: served as `init.mp4` and sent to viewers unchanged.
    pub bytes: Bytes,
    pub ftyp: Option<Ftyp>,
    pub moov: Moov,
    pub tracks: Vec<Track>,
}

impl InitSegment {
    /// Parses `ftyp` (optional) and `moov` from `bytes`, which sits at absolute offset `base`
    /// of its stream. Other top-level boxes are tolerated and kept in `bytes`.
    pub fn parse(bytes: Bytes, base: u64) -> Result<Self> {
        let mut r = Reader::new(&bytes, base);
        let mut ftyp = None;
        let mut moov = None;
        while let Some(child) = r.next_box()? {
            let kind = child.kind();
            if kind == Ftyp::KIND {
                ftyp = Some(child.decode::<Ftyp>()?);
            } else if kind == Moov::KIND {
                if moov.is_some() {
                    return Err(r.error(ErrorKind::DuplicateBox(kind)));
                }
                moov = Some(child.decode::<Moov>()?);
            }
        }
        let moov = moov.ok_or_else(|| r.error(ErrorKind::MissingBox(Moov::KIND)))?;
        if moov.mvex.is_none() {
            return Err(r.error(ErrorKind::Unsupported(
                "not a fragmented MP4 (moov has no mvex); remux it with \
                 `ffmpeg -i IN -c copy -movflags frag_keyframe+empty_moov+default_base_moof OUT.mp4`",
            )));
        }
        let tracks = moov
            .trak
            .iter()
            .map(|trak| summarize(&moov, trak))
            .collect();
        Ok(Self {
            bytes,
            ftyp,
            moov,
            tracks,
        })
    }

    pub fn track(&self, id: u32) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    pub fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video)
    }

    pub fn audio(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Audio)
    }

    /// The track whose sync samples start segments and groups of pictures: the first video
    /// track, else the first track.
    pub fn reference_track(&self) -> Option<&Track> {
        self.video().or_else(|| self.tracks.first())
    }

    /// The codecs of all tracks, comma-separated, in track order (`avc1.64001f,mp4a.40.2`).
    pub fn codecs(&self) -> String {
        let codecs: Vec<&str> = self
            .tracks
            .iter()
            .filter_map(|t| t.codec.as_deref())
            .collect();
        codecs.join(",")
    }

    /// An init segment with only `track_id`: the same `ftyp`, and a `moov` with that track's
    /// `trak` and `trex` alone. DASH-IF IOP wants one media component per Representation, so
    /// the MPD offers each track of a muxed stream on its own.
    pub fn single_track(&self, track_id: u32) -> Option<Bytes> {
        let mut moov = self.moov.clone();
        moov.trak.retain(|trak| trak.tkhd.track_id == track_id);
        if moov.trak.is_empty() {
            return None;
        }
        if let Some(mvex) = moov.mvex.as_mut() {
            mvex.trex.retain(|trex| trex.track_id == track_id);
        }
        let mut out = bytes::BytesMut::with_capacity(self.bytes.len());
        if let Some(ftyp) = &self.ftyp {
            ftyp.encode(&mut out);
        }
        moov.encode(&mut out);
        Some(out.freeze())
    }

    /// The MIME type with codecs, ready for `MediaSource.isTypeSupported`.
    pub fn mime(&self) -> String {
        let media = if self.video().is_some() {
            "video/mp4"
        } else {
            "audio/mp4"
        };
        format!("{media}; codecs=\"{}\"", self.codecs())
    }
}

/// Opus's sample entry (Opus in ISOBMFF §4.3.1), which this code keeps as raw bytes.
const OPUS: FourCC = FourCC::new(b"Opus");
const AV01: FourCC = FourCC::new(b"av01");

/// The `av1C` body inside an `av01` sample entry (its 8-byte header and 78 bytes of visual
/// fields first).
fn av1c_of(entry: &[u8]) -> Option<&[u8]> {
    let rest = entry.get(8 + 78..)?;
    let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    (rest.get(4..8)? == b"av1C")
        .then(|| rest.get(8..size))
        .flatten()
}

/// An `Opus` entry's sample rate (its `dOps` input rate) and channel count, read from the raw
/// box: the AudioSampleEntry's channel count at byte 24, `dOps` at 36.
fn opus_format(entry: &[u8]) -> Option<(u32, u16)> {
    let channels = u16::from_be_bytes(entry.get(24..26)?.try_into().ok()?);
    let dops = entry.get(36..)?;
    if dops.get(4..8)? != b"dOps" {
        return Some((48_000, channels));
    }
    let rate = u32::from_be_bytes(dops.get(12..16)?.try_into().ok()?);
    Some((rate, channels))
}

fn summarize(moov: &Moov, trak: &super::Trak) -> Track {
    let mdia = &trak.mdia;
    let kind = match mdia.hdlr.handler_type {
        VIDEO => TrackKind::Video,
        AUDIO => TrackKind::Audio,
        other => TrackKind::Other(other),
    };
    let entry = mdia.minf.stbl.stsd.entries.first();
    let codec = entry.and_then(|entry| match entry {
        SampleEntry::Avc1(e) => Some(codec::avc(entry.kind(), &e.avcc)),
        SampleEntry::Avc3(e) => Some(codec::avc(entry.kind(), &e.avcc)),
        SampleEntry::Hvc1(e) => Some(codec::hevc(entry.kind(), &e.hvcc)),
        SampleEntry::Hev1(e) => Some(codec::hevc(entry.kind(), &e.hvcc)),
        SampleEntry::Mp4a(e) => Some(codec::mp4a(&e.esds)),
        SampleEntry::Unknown(raw) if raw.kind == OPUS => Some("opus".to_string()),
        SampleEntry::Unknown(raw) if raw.kind == AV01 => {
            av1c_of(&raw.bytes).and_then(super::av1::codec)
        }
        SampleEntry::Unknown(_) => None,
    });
    let (width, height) = entry
        .and_then(SampleEntry::visual)
        .map(|v| (v.width, v.height))
        .unwrap_or((
            u16::try_from(trak.tkhd.width >> 16).unwrap_or(0),
            u16::try_from(trak.tkhd.height >> 16).unwrap_or(0),
        ));
    let (sample_rate, channels) = entry
        .and_then(SampleEntry::audio)
        .map(|a| (a.sample_rate_hz(), a.channel_count))
        .or_else(|| match entry {
            Some(SampleEntry::Unknown(raw)) if raw.kind == OPUS => opus_format(&raw.bytes),
            _ => None,
        })
        .unwrap_or((0, 0));
    let id = trak.tkhd.track_id;
    Track {
        id,
        kind,
        timescale: mdia.mdhd.timescale,
        codec,
        sample_entry: entry.map(SampleEntry::kind).unwrap_or_default(),
        width,
        height,
        sample_rate,
        channels,
        defaults: moov.trex(id).copied().unwrap_or(Trex {
            track_id: id,
            ..Trex::default()
        }),
    }
}
