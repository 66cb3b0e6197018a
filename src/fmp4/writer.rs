//! The fragment writer: an init segment from decoder configuration records, and a fragment for
//! each sample the moment it exists, so a frame never waits for the next one (ffmpeg's fMP4
//! muxer has to, to learn its duration). Pure, like the rest of the box code.
//!
//! ```text
//! init      ftyp moov > mvhd
//!                     > trak* > tkhd, mdia > mdhd, hdlr, minf > vmhd|smhd, dinf > dref > url
//!                                                           > stbl > stsd > avc1|hvc1|mp4a
//!                                                                  > stts, stsc, stsz, stco (empty)
//!                     > mvex > trex*
//! fragment  [prft] moof > mfhd, traf > tfhd (default-base-is-moof), tfdt (v1), trun (1 sample)
//!           mdat
//! ```
//! A fragment's duration is a promise the next fragment's `tfdt` may correct: the caller gives
//! the nominal one (from the frame rate or the last interval), and times stay absolute, so a
//! late or early frame shifts nothing after it.

use bytes::{BufMut, Bytes, BytesMut};

use super::moof::{
    Mfhd, SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FLAGS_PRESENT,
    SAMPLE_SIZE_PRESENT, Tfdt, Tfhd, Traf, Trun, TrunSample,
};
use super::moov::{
    AudioSampleEntry, Avc1, Avcc, Dinf, Esds, Hdlr, Hvc1, Hvcc, Mdhd, Mdia, Minf, Moov, Mp4a, Mvex,
    Mvhd, SampleEntry, Smhd, Stbl, Stsd, Tkhd, Trak, Trex, VisualSampleEntry, Vmhd,
};
use super::{Atom, FourCC, Ftyp, Moof, Prft, RawBox, Result, mdat};

/// The track ids the writer gives: video first, as ffmpeg does.
pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;

/// ISO/IEC 14496-12 §8.8.3.1 sample flags: a sync sample (depends on nothing), and one that
/// depends on others and is not a sync sample.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: data offsets count from the `moof` (CMAF, and what every browser wants).
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const IDENTITY: [i32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// A video track's decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoConfig {
    /// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1), an `avcC` body.
    Avc(Bytes),
    /// An HEVCDecoderConfigurationRecord (§8.3.3.1), an `hvcC` body.
    Hevc(Bytes),
    /// An AV1CodecConfigurationRecord (AV1-ISOBMFF §2.3), an `av1C` body.
    Av1(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub config: VideoConfig,
    pub width: u16,
    pub height: u16,
    pub timescale: u32,
}

/// An audio track's decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioConfig {
    /// AAC: its AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
    Aac(Bytes),
    /// Opus (Encapsulation of Opus in ISO Base Media File Format, §4.3): the samples to drop
    /// at the start (from the encoder's OpusHead; 312 for libopus at 48 kHz, as Chromium's).
    Opus { pre_skip: u16 },
}

/// An audio track: AAC or Opus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    pub config: AudioConfig,
    pub sample_rate: u32,
    pub channels: u16,
    pub timescale: u32,
}

/// One sample to write, times in its track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    pub decode_time: u64,
    pub duration: u32,
    /// Presentation minus decode time.
    pub composition_offset: i32,
    pub sync: bool,
    pub data: &'a [u8],
}

/// Wraps a box body in its header, for the records the box decoders read.
/// A box of `kind` around `body`.
pub(crate) fn boxed(kind: &[u8; 4], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + body.len());
    out.put_u32((8 + body.len()) as u32);
    out.put_slice(kind);
    out.put_slice(body);
    out.freeze()
}

/// An empty full box (`stts`, `stsc`, `stco` with no entries; `stsz` with size and count 0).
pub(crate) fn empty_table(kind: &[u8; 4], zero_fields: usize) -> RawBox {
    RawBox {
        kind: FourCC::new(kind),
        bytes: boxed(kind, &vec![0; 4 + 4 * zero_fields]),
    }
}

fn sample_table(entry: SampleEntry) -> Stbl {
    Stbl {
        stsd: Stsd {
            entries: vec![entry],
        },
        unknown: vec![
            empty_table(b"stts", 1),
            empty_table(b"stsc", 1),
            empty_table(b"stsz", 2),
            empty_table(b"stco", 1),
        ],
    }
}

/// `dinf > dref > url ` saying "the samples are in this file" (§8.7.2).
fn data_information() -> Dinf {
    let url = boxed(b"url ", &[0, 0, 0, 1]);
    let mut dref = vec![0, 0, 0, 0, 0, 0, 0, 1];
    dref.extend_from_slice(&url);
    Dinf {
        body: boxed(b"dref", &dref),
    }
}

fn track(
    id: u32,
    timescale: u32,
    handler: &[u8; 4],
    name: &str,
    minf: Minf,
    size: (u16, u16),
) -> Trak {
    let audio = handler == b"soun";
    Trak {
        tkhd: Tkhd {
            version: 0,
            // Enabled and in the movie.
            flags: 3,
            creation_time: 0,
            modification_time: 0,
            track_id: id,
            duration: 0,
            layer: 0,
            alternate_group: i16::from(audio),
            volume: if audio { 0x0100 } else { 0 },
            matrix: IDENTITY,
            width: u32::from(size.0) << 16,
            height: u32::from(size.1) << 16,
        },
        edts: None,
        mdia: Mdia {
            mdhd: Mdhd {
                version: 0,
                creation_time: 0,
                modification_time: 0,
                timescale,
                duration: 0,
                language: *b"und",
            },
            hdlr: Hdlr {
                handler_type: FourCC::new(handler),
                name: Bytes::from(format!("{name}\0")),
            },
            minf,
            unknown: Vec::new(),
        },
        unknown: Vec::new(),
    }
}

fn video_trak(video: &VideoTrack) -> Result<Trak> {
    let visual = VisualSampleEntry {
        data_reference_index: 1,
        width: video.width,
        height: video.height,
        horizresolution: 0x0048_0000,
        vertresolution: 0x0048_0000,
        frame_count: 1,
        compressorname: [0; 32],
        depth: 0x0018,
    };
    let entry = match &video.config {
        VideoConfig::Avc(record) => SampleEntry::Avc1(Avc1 {
            visual,
            avcc: Avcc::decode(&boxed(b"avcC", record))?,
            unknown: Vec::new(),
        }),
        VideoConfig::Hevc(record) => SampleEntry::Hvc1(Hvc1 {
            visual,
            hvcc: Hvcc::decode(&boxed(b"hvcC", record))?,
            unknown: Vec::new(),
        }),
        // An `av01` entry: the visual fields, then the `av1C` (AV1-ISOBMFF §2.2).
        VideoConfig::Av1(record) => {
            let mut body = BytesMut::with_capacity(VisualSampleEntry::LEN + 8 + record.len());
            visual.encode(&mut body);
            body.put_slice(&boxed(b"av1C", record));
            SampleEntry::Unknown(RawBox {
                kind: FourCC::new(b"av01"),
                bytes: boxed(b"av01", &body),
            })
        }
    };
    let minf = Minf {
        // Version 0, flags 1 (§12.1.2), graphics mode and colour 0.
        vmhd: Some(Vmhd {
            body: Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        }),
        smhd: None,
        dinf: Some(data_information()),
        stbl: sample_table(entry),
        unknown: Vec::new(),
    };
    Ok(track(
        VIDEO_TRACK_ID,
        video.timescale,
        b"vide",
        "VideoHandler",
        minf,
        (video.width, video.height),
    ))
}

/// An `Opus` sample entry with its `dOps` (Opus in ISOBMFF §4.3.1, §4.3.2), channel mapping
/// family 0 (mono or stereo).
fn opus_entry(audio: &AudioTrack, pre_skip: u16) -> SampleEntry {
    let channels = audio.channels.clamp(1, 2);
    let mut dops = BytesMut::with_capacity(11);
    dops.put_u8(0); // Version
    dops.put_u8(channels as u8);
    dops.put_u16(pre_skip);
    dops.put_u32(audio.sample_rate);
    dops.put_i16(0); // OutputGain
    dops.put_u8(0); // ChannelMappingFamily
    let dops = boxed(b"dOps", &dops);
    let mut body = BytesMut::with_capacity(28 + dops.len());
    body.put_slice(&[0; 6]);
    body.put_u16(1); // data_reference_index
    body.put_slice(&[0; 8]);
    body.put_u16(channels);
    body.put_u16(16);
    body.put_u32(0);
    // Opus in ISOBMFF asks for 48000 here whatever the input rate.
    body.put_u32(48_000 << 16);
    body.put_slice(&dops);
    SampleEntry::Unknown(RawBox {
        kind: FourCC::new(b"Opus"),
        bytes: boxed(b"Opus", &body),
    })
}

fn audio_trak(audio: &AudioTrack) -> Trak {
    let config = match &audio.config {
        AudioConfig::Aac(config) => config.clone(),
        AudioConfig::Opus { pre_skip } => {
            return audio_track_with(audio, opus_entry(audio, *pre_skip));
        }
    };
    let entry = SampleEntry::Mp4a(Mp4a {
        audio: AudioSampleEntry {
            data_reference_index: 1,
            qt_version: 0,
            channel_count: audio.channels,
            sample_size: 16,
            sample_rate: audio.sample_rate.min(0xffff) << 16,
            qt_extension: Bytes::new(),
        },
        esds: Esds {
            es_id: 0,
            es_flags: 0,
            es_optional: Bytes::new(),
            // MPEG-4 audio (ISO/IEC 14496-1 Table 5), an audio stream (Table 6).
            object_type_indication: 0x40,
            stream_type: 0x15,
            buffer_size_db: 0,
            max_bitrate: 0,
            avg_bitrate: 0,
            decoder_specific_info: Some(config),
            // SLConfigDescriptor, predefined 2 (MP4 files, §7.3.2.3).
            trailing_descriptors: Bytes::from_static(&[0x06, 0x01, 0x02]),
            size_width: 1,
        },
        unknown: Vec::new(),
    });
    audio_track_with(audio, entry)
}

fn audio_track_with(audio: &AudioTrack, entry: SampleEntry) -> Trak {
    let minf = Minf {
        vmhd: None,
        // Version 0, balance 0 (§12.2.2).
        smhd: Some(Smhd {
            body: Bytes::from_static(&[0; 8]),
        }),
        dinf: Some(data_information()),
        stbl: sample_table(entry),
        unknown: Vec::new(),
    };
    track(
        AUDIO_TRACK_ID,
        audio.timescale,
        b"soun",
        "SoundHandler",
        minf,
        (0, 0),
    )
}

/// `mvex` with a `trex` per track and no defaults: every fragment says its own.
pub(crate) fn mvex_for(traks: &[Trak]) -> Mvex {
    let trex = traks
        .iter()
        .map(|t| Trex {
            track_id: t.tkhd.track_id,
            default_sample_description_index: 1,
            default_sample_duration: 0,
            default_sample_size: 0,
            default_sample_flags: 0,
        })
        .collect();
    Mvex {
        mehd: None,
        trex,
        unknown: Vec::new(),
    }
}

/// An init segment, `ftyp` and `moov`, for these tracks.
pub fn init_segment(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> Result<Bytes> {
    let mut traks = Vec::new();
    if let Some(video) = video {
        traks.push(video_trak(video)?);
    }
    if let Some(audio) = audio {
        traks.push(audio_trak(audio));
    }
    let moov = Moov {
        mvhd: Mvhd {
            version: 0,
            creation_time: 0,
            modification_time: 0,
            timescale: 1000,
            duration: 0,
            rate: 0x0001_0000,
            volume: 0x0100,
            matrix: IDENTITY,
            next_track_id: AUDIO_TRACK_ID + 1,
        },
        mvex: Some(mvex_for(&traks)),
        trak: traks,
        unknown: Vec::new(),
    };
    let brands: &[&[u8; 4]] = &[b"iso6", b"cmfc", b"isom", b"mp41"];
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: brands.iter().map(|b| FourCC::new(b)).collect(),
    };
    let mut out = BytesMut::with_capacity(ftyp.encoded_len() + moov.encoded_len());
    ftyp.encode(&mut out);
    moov.encode(&mut out);
    Ok(out.freeze())
}

/// One sample as a fragment, `[prft] moof mdat`, in one buffer: the sample's bytes are copied
/// once, here, into what every viewer then shares.
pub fn fragment(track_id: u32, sequence: u32, sample: &Sample<'_>, prft: Option<&Prft>) -> Bytes {
    let size = u32::try_from(sample.data.len()).unwrap_or(u32::MAX);
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id,
                base_data_offset: None,
                sample_description_index: None,
                default_sample_duration: None,
                default_sample_size: None,
                default_sample_flags: None,
                other_flags: DEFAULT_BASE_IS_MOOF,
            },
            tfdt: Some(Tfdt {
                version: 1,
                base_media_decode_time: sample.decode_time,
            }),
            trun: vec![Trun {
                // Version 1 where a composition offset is negative (§8.8.8.2).
                version: u8::from(sample.composition_offset < 0),
                data_offset: Some(0),
                first_sample_flags: None,
                sample_fields: SAMPLE_DURATION_PRESENT
                    | SAMPLE_SIZE_PRESENT
                    | SAMPLE_FLAGS_PRESENT
                    | SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT,
                sample_count: 1,
                samples: vec![TrunSample {
                    duration: sample.duration,
                    size,
                    flags: if sample.sync {
                        SYNC_SAMPLE_FLAGS
                    } else {
                        NON_SYNC_SAMPLE_FLAGS
                    },
                    composition_offset: i64::from(sample.composition_offset),
                }],
            }],
            unknown: Vec::new(),
        }],
        unknown: Vec::new(),
    };
    // The data starts after the moof and the mdat header.
    let moof_len = moof.encoded_len();
    let mdat_header = mdat::header_len(sample.data.len() as u64);
    if let Some(trun) = moof.traf.first_mut().and_then(|t| t.trun.first_mut()) {
        trun.data_offset = i32::try_from(moof_len + mdat_header).ok();
    }
    let prft_len = prft.map_or(0, Atom::encoded_len);
    let mut out = BytesMut::with_capacity(prft_len + moof_len + mdat_header + sample.data.len());
    if let Some(prft) = prft {
        prft.encode(&mut out);
    }
    moof.encode(&mut out);
    mdat::put_header(&mut out, sample.data.len() as u64);
    out.put_slice(sample.data);
    out.freeze()
}

/// Keeps a track's decode times strictly increasing, whatever the input's: a time at or before
/// the last one moves `step` past it (seen here: one repeated FLV millisecond made Chromium's
/// MSE drop every frame up to the next key frame). A step of a millisecond keeps the order
/// for readers that count in milliseconds too (ffmpeg does).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicTime {
    last: Option<u64>,
    step: u64,
}

impl MonotonicTime {
    pub fn new(step: u64) -> Self {
        Self {
            last: None,
            step: step.max(1),
        }
    }

    pub fn next(&mut self, time: u64) -> u64 {
        let time = match self.last {
            Some(last) if time <= last => last.saturating_add(self.step),
            _ => time,
        };
        self.last = Some(time);
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Fragment, InitSegment, TrackKind};

    const AVCC: &[u8] = &[
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 26, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05,
        0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83,
        0x19, 0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
    ];

    fn tracks() -> (VideoTrack, AudioTrack) {
        (
            VideoTrack {
                config: VideoConfig::Avc(Bytes::from_static(AVCC)),
                width: 1280,
                height: 720,
                timescale: 90_000,
            },
            AudioTrack {
                config: AudioConfig::Aac(Bytes::from_static(&[0x11, 0x90])),
                sample_rate: 48_000,
                channels: 2,
                timescale: 48_000,
            },
        )
    }

    #[test]
    fn an_init_reads_back_with_the_codecs_it_was_given() {
        let (video, audio) = tracks();
        let bytes = init_segment(Some(&video), Some(&audio)).expect("init");
        let init = InitSegment::parse(bytes, 0).expect("our init parses");
        assert_eq!(init.codecs(), "avc1.64001f,mp4a.40.2");
        let v = init.video().expect("video");
        assert_eq!(
            (v.id, v.kind, v.width, v.height),
            (1, TrackKind::Video, 1280, 720)
        );
        assert_eq!(v.timescale, 90_000);
        let a = init.audio().expect("audio");
        assert_eq!((a.id, a.sample_rate, a.channels), (2, 48_000, 2));
    }

    #[test]
    fn a_fragment_reads_back_as_the_sample_it_was() {
        let (video, _) = tracks();
        let init = InitSegment::parse(init_segment(Some(&video), None).expect("init"), 0)
            .expect("init parses");
        let data = [7u8; 100];
        let sample = Sample {
            decode_time: 123_456,
            duration: 3000,
            composition_offset: -1500,
            sync: true,
            data: &data,
        };
        let prft = Prft::at(VIDEO_TRACK_ID, 123_456, std::time::SystemTime::now());
        let bytes = fragment(VIDEO_TRACK_ID, 9, &sample, Some(&prft));
        let f = Fragment::parse(bytes.clone(), 0, &init).expect("fragment parses");
        assert_eq!(f.sequence, 9);
        assert_eq!(f.prft, Some(prft));
        let run = f.run(VIDEO_TRACK_ID).expect("a run");
        assert_eq!(
            (run.decode_time, run.duration, run.sample_count),
            (123_456, 3000, 1)
        );
        assert!(run.starts_with_sync);
        assert_eq!(&bytes[bytes.len() - 100..], &data[..]);
    }

    #[test]
    fn decode_times_only_go_forward() {
        let mut t = MonotonicTime::new(1);
        assert_eq!(
            [10, 20, 20, 15, 30].map(|x| t.next(x)),
            [10, 20, 21, 22, 30]
        );
        let mut t = MonotonicTime::new(90);
        assert_eq!([900, 900, 1000].map(|x| t.next(x)), [900, 990, 1000]);
    }
}
