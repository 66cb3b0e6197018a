//! The browser publisher's framing (`/ws/publish/NAME`, `public/publish.js`): what WebCodecs'
//! encoders give, one WebSocket binary message each, turned into our fMP4 — an init segment
//! once the decoder configurations are known, then a `[prft] moof mdat` per chunk, written by
//! [`crate::fmp4::writer`] the moment the chunk arrives. Pure: bytes in, bytes out.
//!
//! Every message starts with its kind (all numbers big-endian):
//!
//! | kind | message | after the kind |
//! |---|---|---|
//! | 1 | video decoder config | `u16` width, `u16` height, the `avcC` (AVCDecoderConfigurationRecord) |
//! | 2 | audio decoder config | `u8` codec (1 AAC, 2 Opus), `u32` sample rate, `u8` channels, then the AAC AudioSpecificConfig or Opus's OpusHead (may be empty) |
//! | 3 | video chunk | `u8` flags (1: key frame), `u64` timestamp µs, `u32` duration µs (0: unknown), the chunk (AVCC: length-prefixed NAL units) |
//! | 4 | audio chunk | the same header, the chunk |
//! | 5 | no audio | nothing: the publisher sends video alone |
//!
//! The init is written once the video config has come and the audio config (or "no audio");
//! chunks before it, and video before its first key frame, are dropped. A config that changes
//! writes a new init. Times start at the first chunk after the init.

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use super::writer::{
    self, AUDIO_TRACK_ID, AudioConfig, AudioTrack, MonotonicTime, Sample, VIDEO_TRACK_ID,
    VideoConfig, VideoTrack,
};
use super::{Atom, Avcc, Prft};

/// Video is timed in 90 kHz ticks, as the FLV ingest does.
const VIDEO_TIMESCALE: u32 = 90_000;
/// A publisher's message larger than this is refused.
pub const MAX_MESSAGE: usize = 16 << 20;
/// What Opus starts with when the encoder gives no OpusHead (libopus at 48 kHz).
const DEFAULT_OPUS_PRE_SKIP: u16 = 312;

pub const VIDEO_CONFIG: u8 = 1;
pub const AUDIO_CONFIG: u8 = 2;
pub const VIDEO_CHUNK: u8 = 3;
pub const AUDIO_CHUNK: u8 = 4;
pub const NO_AUDIO: u8 = 5;

/// Why a publisher's message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("an empty message")]
    Empty,
    #[error("message kind {0} is not one of the publisher's")]
    Kind(u8),
    #[error("a {0} cut short")]
    Short(&'static str),
    #[error("the video config is not an AVCDecoderConfigurationRecord")]
    Avcc,
    #[error("audio codec {0} is not AAC (1) or Opus (2)")]
    AudioCodec(u8),
    #[error("the picture size {0}x{1} is not usable")]
    Size(u16, u16),
}

/// Turns a publisher's messages into fMP4.
#[derive(Debug, Default)]
pub struct BrowserMuxer {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    no_audio: bool,
    /// The tracks of the init written last, if any.
    written: Option<(Option<VideoTrack>, Option<AudioTrack>)>,
    origin_us: Option<u64>,
    seen_key: bool,
    sequence: u32,
    video_time: Option<MonotonicTime>,
    audio_time: Option<MonotonicTime>,
    last_video_us: Option<u64>,
}

/// `us` microseconds in ticks of `timescale`, without overflow on any input.
fn scale(us: u64, timescale: u64) -> u64 {
    let ticks = u128::from(us) * u128::from(timescale) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn read_chunk_header(body: &mut &[u8]) -> Result<(bool, u64, u32), FramingError> {
    if body.len() < 13 {
        return Err(FramingError::Short("chunk header"));
    }
    let flags = body.get_u8();
    let timestamp = body.get_u64();
    let duration = body.get_u32();
    Ok((flags & 1 != 0, timestamp, duration))
}

impl BrowserMuxer {
    /// One message; what it makes (an init, a fragment, or nothing yet).
    pub fn push(&mut self, message: &[u8], arrived: SystemTime) -> Result<Bytes, FramingError> {
        let (&kind, mut body) = message.split_first().ok_or(FramingError::Empty)?;
        match kind {
            VIDEO_CONFIG => {
                if body.len() < 4 {
                    return Err(FramingError::Short("video config"));
                }
                let width = body.get_u16();
                let height = body.get_u16();
                if width == 0 || height == 0 {
                    return Err(FramingError::Size(width, height));
                }
                let record = Bytes::copy_from_slice(body);
                let mut boxed = BytesMut::with_capacity(8 + record.len());
                boxed.extend_from_slice(&((8 + record.len()) as u32).to_be_bytes());
                boxed.extend_from_slice(b"avcC");
                boxed.extend_from_slice(&record);
                Avcc::decode(&boxed.freeze()).map_err(|_| FramingError::Avcc)?;
                self.video = Some(VideoTrack {
                    config: VideoConfig::Avc(record),
                    width,
                    height,
                    timescale: VIDEO_TIMESCALE,
                });
                Ok(self.init_if_ready())
            }
            AUDIO_CONFIG => {
                if body.len() < 6 {
                    return Err(FramingError::Short("audio config"));
                }
                let codec = body.get_u8();
                let sample_rate = body.get_u32();
                let channels = u16::from(body.get_u8()).max(1);
                let config = match codec {
                    1 => AudioConfig::Aac(Bytes::copy_from_slice(body)),
                    2 => AudioConfig::Opus {
                        // OpusHead (RFC 7845 §5.1): "OpusHead", version, channels, pre-skip LE.
                        pre_skip: match body.get(8..12) {
                            Some(head) if body.starts_with(b"OpusHead") => {
                                u16::from_le_bytes([head[2], head[3]])
                            }
                            _ => DEFAULT_OPUS_PRE_SKIP,
                        },
                    },
                    other => return Err(FramingError::AudioCodec(other)),
                };
                self.audio = Some(AudioTrack {
                    config,
                    sample_rate: sample_rate.max(1),
                    channels,
                    timescale: sample_rate.max(1),
                });
                self.no_audio = false;
                Ok(self.init_if_ready())
            }
            NO_AUDIO => {
                self.no_audio = true;
                self.audio = None;
                Ok(self.init_if_ready())
            }
            VIDEO_CHUNK => {
                let (key, timestamp, duration) = read_chunk_header(&mut body)?;
                if self.written.is_none() || self.video.is_none() {
                    return Ok(Bytes::new());
                }
                self.seen_key |= key;
                if !self.seen_key {
                    return Ok(Bytes::new());
                }
                Ok(self.video_fragment(key, timestamp, duration, body, arrived))
            }
            AUDIO_CHUNK => {
                let (_, timestamp, duration) = read_chunk_header(&mut body)?;
                // Audio waits for the picture: a stream starts at a video key frame.
                if self.written.is_none() || !self.seen_key {
                    return Ok(Bytes::new());
                }
                Ok(self.audio_fragment(timestamp, duration, body))
            }
            other => Err(FramingError::Kind(other)),
        }
    }

    /// An init for the tracks known, once every announced one is, and only when it differs.
    fn init_if_ready(&mut self) -> Bytes {
        if self.video.is_none() || (self.audio.is_none() && !self.no_audio) {
            return Bytes::new();
        }
        let tracks = (self.video.clone(), self.audio.clone());
        if self.written.as_ref() == Some(&tracks) {
            return Bytes::new();
        }
        match writer::init_segment(tracks.0.as_ref(), tracks.1.as_ref()) {
            Ok(init) => {
                self.written = Some(tracks);
                // A new init starts at a key frame again.
                self.seen_key = false;
                init
            }
            Err(_) => Bytes::new(),
        }
    }

    fn relative_us(&mut self, timestamp: u64) -> u64 {
        let origin = *self.origin_us.get_or_insert(timestamp);
        timestamp.saturating_sub(origin)
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn video_fragment(
        &mut self,
        key: bool,
        timestamp: u64,
        duration_us: u32,
        data: &[u8],
        arrived: SystemTime,
    ) -> Bytes {
        let relative = self.relative_us(timestamp);
        let ticks = scale(relative, u64::from(VIDEO_TIMESCALE));
        let decode_time = self
            .video_time
            .get_or_insert_with(|| MonotonicTime::new(1))
            .next(ticks);
        let interval_us = match (duration_us, self.last_video_us) {
            (d, _) if d > 0 => u64::from(d),
            (_, Some(last)) if timestamp > last => timestamp - last,
            _ => 1_000_000 / 30,
        };
        self.last_video_us = Some(timestamp);
        let duration =
            scale(interval_us, u64::from(VIDEO_TIMESCALE)).clamp(1, u64::from(u32::MAX)) as u32;
        let prft = Prft::at(VIDEO_TRACK_ID, decode_time, arrived);
        let sample = Sample {
            decode_time,
            duration,
            composition_offset: 0,
            sync: key,
            data,
        };
        let sequence = self.next_sequence();
        writer::fragment(VIDEO_TRACK_ID, sequence, &sample, Some(&prft))
    }

    fn audio_fragment(&mut self, timestamp: u64, duration_us: u32, data: &[u8]) -> Bytes {
        let Some(rate) = self.audio.as_ref().map(|a| u64::from(a.timescale)) else {
            return Bytes::new();
        };
        let relative = self.relative_us(timestamp);
        let decode_time = self
            .audio_time
            .get_or_insert_with(|| MonotonicTime::new(1))
            .next(scale(relative, rate));
        let duration = match duration_us {
            0 => rate / 50,
            d => scale(u64::from(d), rate),
        }
        .clamp(1, u64::from(u32::MAX)) as u32;
        let sample = Sample {
            decode_time,
            duration,
            composition_offset: 0,
            sync: true,
            data,
        };
        let sequence = self.next_sequence();
        writer::fragment(AUDIO_TRACK_ID, sequence, &sample, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Splitter, Unit};

    /// A Baseline 3.1 avcC with one SPS and one PPS (from x264).
    const AVCC: &[u8] = &[
        0x01, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0x00, 0x09, 0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0xa0,
        0x2d, 0xc8, 0x01, 0x00, 0x04, 0x68, 0xcb, 0x83, 0xcb,
    ];

    fn chunk(kind: u8, key: bool, us: u64, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, u8::from(key)];
        out.extend_from_slice(&us.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn configs_then_chunks_make_an_init_and_fragments_our_splitter_reads() {
        let now = SystemTime::now();
        let mut mux = BrowserMuxer::default();
        let mut video_config = vec![VIDEO_CONFIG, 0x02, 0x80, 0x01, 0xe0];
        video_config.extend_from_slice(AVCC);
        let mut out = BytesMut::new();
        assert!(
            mux.push(&video_config, now).expect("config").is_empty(),
            "waits for audio"
        );
        let mut audio_config = vec![AUDIO_CONFIG, 2];
        audio_config.extend_from_slice(&48_000u32.to_be_bytes());
        audio_config.push(1);
        out.extend_from_slice(&mux.push(&audio_config, now).expect("config"));
        assert!(!out.is_empty(), "the init");
        // Audio before the first key frame, and a non-key frame first: dropped.
        assert!(
            mux.push(&chunk(AUDIO_CHUNK, true, 0, &[1, 2]), now)
                .expect("a")
                .is_empty()
        );
        assert!(
            mux.push(&chunk(VIDEO_CHUNK, false, 0, &[0, 0, 0, 1, 0x41]), now)
                .expect("v")
                .is_empty()
        );
        for i in 0..3u64 {
            let frame = [0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }];
            out.extend_from_slice(
                &mux.push(&chunk(VIDEO_CHUNK, i == 0, 33_333 * i, &frame), now)
                    .expect("v"),
            );
            out.extend_from_slice(
                &mux.push(&chunk(AUDIO_CHUNK, true, 20_000 * i, &[9; 10]), now)
                    .expect("a"),
            );
        }
        let mut splitter = Splitter::default();
        splitter.feed(out.freeze());
        let mut units = Vec::new();
        while let Some(unit) = splitter.poll().expect("our own fMP4") {
            units.push(unit);
        }
        let Some(Unit::Init(init)) = units.first() else {
            panic!("an init first");
        };
        assert_eq!(init.codecs(), "avc1.42c01f,opus");
        let audio = init.audio().expect("audio track");
        assert_eq!((audio.sample_rate, audio.channels), (48_000, 1));
        assert_eq!(units.len(), 1 + 6, "six fragments");
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let now = SystemTime::now();
        let mut mux = BrowserMuxer::default();
        assert_eq!(mux.push(&[], now), Err(FramingError::Empty));
        assert_eq!(mux.push(&[9], now), Err(FramingError::Kind(9)));
        assert_eq!(
            mux.push(&[VIDEO_CONFIG, 0, 1, 0, 1, 0xff], now),
            Err(FramingError::Avcc)
        );
        assert_eq!(
            mux.push(&[VIDEO_CHUNK, 1, 0], now),
            Err(FramingError::Short("chunk header"))
        );
        assert_eq!(
            mux.push(&[AUDIO_CONFIG, 7, 0, 0, 0xbb, 0x80, 1], now),
            Err(FramingError::AudioCodec(7))
        );
    }
}
