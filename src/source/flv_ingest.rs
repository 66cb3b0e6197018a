//! The zero-wait ingest: FLV tags in (each frame as ffmpeg encodes it), our own init segment
//! and one `[prft] moof mdat` per frame out, the moment the tag is complete.
//!
//! Times: video in a 90 kHz timescale from the tags' milliseconds (plus their composition
//! offsets), kept strictly increasing where the input's repeat; each fragment lasts the nominal
//! frame interval (the encoder's frame rate, else the last interval), which the next
//! fragment's `tfdt` corrects. Audio in its sample rate, counted in frames of 1024 samples,
//! going back to the tags' time only when they jump.
//!
//! The wall clock in each video `prft` is the ingest's own: a timestamp's wall time is its
//! value plus the smallest (arrival − timestamp) seen lately, the frames that came quickest.
//! Like ffmpeg's own fMP4 `prft`, it leaves out the encoder's time; unlike it, it does not
//! include the frame of waiting that FLV saves.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::SourceError;
use crate::flv::{self, Audio, AudioCodec, FlvReader, Header, TagKind, Video, VideoCodec};
use crate::fmp4::writer::{
    self, AUDIO_TRACK_ID, AudioConfig, AudioTrack, MonotonicTime, Sample, VIDEO_TRACK_ID,
    VideoConfig, VideoTrack, boxed,
};
use crate::fmp4::{Atom, Avcc, Fragment, Hvcc, InitSegment, Prft, Unit, av1, avc, hevc};

const VIDEO_TIMESCALE: u32 = 90_000;
const AAC_FRAME_SAMPLES: u64 = 1024;
/// Opus in MP4 is timed at 48 kHz whatever the input rate (Opus in ISOBMFF §4.3).
const OPUS_RATE: u32 = 48_000;
/// Frames held while waiting for the tracks the FLV header announced; past this many, or
/// this much media time, the init is written with the tracks that did show up (an RTMP
/// publisher's header always announces both; OBS without a microphone sends no audio).
const MAX_WAITING_TAGS: usize = 120;
const MAX_WAITING_MS: u32 = 1000;
/// How many recent frames the wall clock's offset is the smallest of (about 8 s at 30 fps).
const CLOCK_WINDOW: usize = 256;

pub struct FlvIngest {
    reader: FlvReader,
    frame_rate: Option<f64>,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    init: Option<Arc<InitSegment>>,
    waiting: Vec<flv::Tag>,
    sequence: u32,
    video_time: MonotonicTime,
    last_video_ms: Option<u32>,
    audio_next: Option<u64>,
    clock: VecDeque<f64>,
    /// The tracks to wait for when fed tags rather than an FLV stream with its header.
    announced: Option<Header>,
}

impl Default for FlvIngest {
    fn default() -> Self {
        Self {
            reader: FlvReader::default(),
            frame_rate: None,
            video: None,
            audio: None,
            init: None,
            waiting: Vec::new(),
            sequence: 0,
            // A millisecond, the FLV's own unit.
            video_time: MonotonicTime::new(u64::from(VIDEO_TIMESCALE / 1000)),
            last_video_ms: None,
            audio_next: None,
            clock: VecDeque::with_capacity(CLOCK_WINDOW),
            announced: None,
        }
    }
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Sample rate and channels from an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
fn aac_format(config: &[u8]) -> Option<(u32, u16)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let bits = u64::from_be_bytes({
        let mut padded = [0u8; 8];
        for (slot, byte) in padded.iter_mut().zip(config) {
            *slot = *byte;
        }
        padded
    });
    let mut pos = 0;
    let mut take = |n: u32| {
        let value = (bits >> (64 - pos - n)) & ((1 << n) - 1);
        pos += n;
        value
    };
    if config.len() < 2 {
        return None;
    }
    if take(5) == 31 {
        take(6);
    }
    let index = take(4) as usize;
    let rate = if index == 15 {
        take(24) as u32
    } else {
        *RATES.get(index)?
    };
    let channels = take(4) as u16;
    (rate > 0).then_some((rate, channels.max(1)))
}

/// Channels and pre-skip from an Opus ID header (RFC 7845 §5.1): "OpusHead", version 1,
/// channels, pre-skip (little-endian), input rate, gain, mapping family 0 (mono or stereo,
/// what our `dOps` writes).
fn opus_head(head: &[u8]) -> Option<(u16, u16)> {
    if head.len() < 19 || &head[..8] != b"OpusHead" || head[8] >> 4 != 0 {
        return None;
    }
    let channels = u16::from(head[9]);
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    (matches!(channels, 1 | 2) && head[18] == 0).then_some((channels, pre_skip))
}

/// An Opus packet's length in 48 kHz samples, from its table-of-contents byte (RFC 6716
/// §3.1): the frame size its configuration gives, times the frames code 0–3 says.
fn opus_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    let samples = frame * frames;
    // A packet lasts at most 120 ms.
    (frames > 0 && samples <= 5760).then_some(samples)
}

fn video_codec(config: &VideoConfig) -> VideoCodec {
    match config {
        VideoConfig::Avc(_) => VideoCodec::Avc,
        VideoConfig::Hevc(_) => VideoCodec::Hevc,
        VideoConfig::Av1(_) => VideoCodec::Av1,
    }
}

fn audio_codec(config: &AudioConfig) -> AudioCodec {
    match config {
        AudioConfig::Aac(_) => AudioCodec::Aac,
        AudioConfig::Opus { .. } => AudioCodec::Opus,
    }
}

impl FlvIngest {
    pub fn feed(&mut self, chunk: Bytes, arrived: SystemTime) -> Result<Vec<Unit>, SourceError> {
        self.reader.feed(chunk);
        let mut units = Vec::new();
        loop {
            let tag = match self.reader.poll() {
                Ok(Some(tag)) => tag,
                Ok(None) => return Ok(units),
                Err(err) => return Err(SourceError::Flv(err)),
            };
            self.tag(tag, arrived, &mut units)?;
        }
    }

    /// An ingest fed tags one at a time ([`FlvIngest::take_tag`]), not an FLV stream: a
    /// ladder's rung, its own video with the audio all rungs share. `announced` says which
    /// tracks to wait for before the init.
    pub fn for_tags(announced: Header) -> Self {
        Self {
            announced: Some(announced),
            ..Self::default()
        }
    }

    /// One tag, read elsewhere; what it completes comes out.
    pub fn take_tag(
        &mut self,
        tag: flv::Tag,
        arrived: SystemTime,
    ) -> Result<Vec<Unit>, SourceError> {
        let mut units = Vec::new();
        self.tag(tag, arrived, &mut units)?;
        Ok(units)
    }

    /// The input ended: an error if it stopped inside a tag.
    pub fn finish(&self) -> Result<(), SourceError> {
        Ok(self.reader.finish()?)
    }

    fn announced(&self) -> Header {
        self.announced.or(self.reader.header()).unwrap_or(Header {
            audio: true,
            video: true,
        })
    }

    fn tag(
        &mut self,
        tag: flv::Tag,
        arrived: SystemTime,
        units: &mut Vec<Unit>,
    ) -> Result<(), SourceError> {
        match tag.kind {
            TagKind::Script => {
                if let Some(meta) = flv::parse_metadata(&tag.data) {
                    self.frame_rate = meta.frame_rate.filter(|fps| *fps > 0.0 && *fps < 1000.0);
                }
                return Ok(());
            }
            TagKind::Video => match tag.video()? {
                Video::Config { codec, record } => return self.video_config(codec, record, units),
                Video::Other(codec) => {
                    return Err(SourceError::FlvCodec {
                        what: "video",
                        found: codec,
                        expected: "H.264, H.265 or AV1",
                    });
                }
                Video::End | Video::Ignored => return Ok(()),
                Video::Frame { codec, .. } => {
                    if let Some(track) = &self.video
                        && video_codec(&track.config) != codec
                    {
                        return Err(SourceError::CodecConfig {
                            what: "video",
                            why: format!(
                                "a {codec:?} frame in a stream configured as {:?}",
                                video_codec(&track.config)
                            ),
                        });
                    }
                }
            },
            TagKind::Audio => match tag.audio()? {
                Audio::Config { codec, data } => return self.audio_config(codec, data, units),
                Audio::Other(format) => {
                    return Err(SourceError::FlvCodec {
                        what: "audio",
                        found: format,
                        expected: "AAC or Opus",
                    });
                }
                Audio::End | Audio::Ignored => return Ok(()),
                Audio::Frame { codec, .. } => {
                    if let Some(track) = &self.audio
                        && audio_codec(&track.config) != codec
                    {
                        return Err(SourceError::CodecConfig {
                            what: "audio",
                            why: format!(
                                "a {codec:?} frame in a stream configured as {:?}",
                                audio_codec(&track.config)
                            ),
                        });
                    }
                }
            },
        }
        if self.init.is_none() {
            let header = self.announced();
            let ready =
                (self.video.is_some() || !header.video) && (self.audio.is_some() || !header.audio);
            let waited_ms = self.waiting.first().map_or(0, |first| {
                tag.timestamp_ms.saturating_sub(first.timestamp_ms)
            });
            if !ready && self.waiting.len() < MAX_WAITING_TAGS && waited_ms < MAX_WAITING_MS {
                self.waiting.push(tag);
                return Ok(());
            }
            self.write_init(units)?;
            for held in std::mem::take(&mut self.waiting) {
                self.frame(held, arrived, units)?;
            }
        }
        self.frame(tag, arrived, units)
    }

    fn video_config(
        &mut self,
        codec: VideoCodec,
        record: Bytes,
        units: &mut Vec<Unit>,
    ) -> Result<(), SourceError> {
        let (config, dimensions) = match codec {
            VideoCodec::Avc => {
                let avcc = Avcc::decode(&boxed(b"avcC", &record)).map_err(|e| {
                    SourceError::CodecConfig {
                        what: "AVC sequence header",
                        why: e.to_string(),
                    }
                })?;
                let dimensions = avcc
                    .sequence_parameter_sets
                    .first()
                    .and_then(|sps| avc::sps_dimensions(sps));
                (VideoConfig::Avc(record), dimensions)
            }
            VideoCodec::Hevc => {
                let hvcc = Hvcc::decode(&boxed(b"hvcC", &record)).map_err(|e| {
                    SourceError::CodecConfig {
                        what: "HEVC sequence header",
                        why: e.to_string(),
                    }
                })?;
                let dimensions = hvcc
                    .arrays
                    .iter()
                    .flat_map(|array| &array.nalus)
                    .find_map(|nal| hevc::sps_dimensions(nal));
                (VideoConfig::Hevc(record), dimensions)
            }
            VideoCodec::Av1 => {
                let dimensions = av1::dimensions(&record);
                if av1::codec(&record).is_none() {
                    return Err(SourceError::CodecConfig {
                        what: "AV1 sequence header",
                        why: "not an AV1CodecConfigurationRecord".into(),
                    });
                }
                (VideoConfig::Av1(record), dimensions)
            }
        };
        let (width, height) = dimensions.ok_or_else(|| SourceError::CodecConfig {
            what: "video sequence header",
            why: "no readable SPS".into(),
        })?;
        let track = VideoTrack {
            config,
            width,
            height,
            timescale: VIDEO_TIMESCALE,
        };
        if self.video.as_ref() != Some(&track) {
            self.video = Some(track);
            if self.init.is_some() {
                self.write_init(units)?;
            }
        }
        Ok(())
    }

    fn audio_config(
        &mut self,
        codec: AudioCodec,
        config: Bytes,
        units: &mut Vec<Unit>,
    ) -> Result<(), SourceError> {
        let track = match codec {
            AudioCodec::Aac => {
                let (sample_rate, channels) =
                    aac_format(&config).ok_or_else(|| SourceError::CodecConfig {
                        what: "AAC sequence header",
                        why: "not an AudioSpecificConfig".into(),
                    })?;
                AudioTrack {
                    config: AudioConfig::Aac(config),
                    sample_rate,
                    channels,
                    timescale: sample_rate,
                }
            }
            AudioCodec::Opus => {
                let (channels, pre_skip) =
                    opus_head(&config).ok_or_else(|| SourceError::CodecConfig {
                        what: "Opus sequence header",
                        why: "not an OpusHead of one or two channels (RFC 7845 §5.1)".into(),
                    })?;
                AudioTrack {
                    config: AudioConfig::Opus { pre_skip },
                    sample_rate: OPUS_RATE,
                    channels,
                    timescale: OPUS_RATE,
                }
            }
        };
        if self.audio.as_ref() != Some(&track) {
            self.audio = Some(track);
            if self.init.is_some() {
                self.write_init(units)?;
            }
        }
        Ok(())
    }

    fn write_init(&mut self, units: &mut Vec<Unit>) -> Result<(), SourceError> {
        if self.video.is_none() && self.audio.is_none() {
            return Err(SourceError::CodecConfig {
                what: "input",
                why: "media but no sequence header to decode it".into(),
            });
        }
        let bytes =
            writer::init_segment(self.video.as_ref(), self.audio.as_ref()).map_err(|source| {
                SourceError::OwnOutput {
                    what: "init segment",
                    source,
                }
            })?;
        let init =
            Arc::new(
                InitSegment::parse(bytes, 0).map_err(|source| SourceError::OwnOutput {
                    what: "init segment",
                    source,
                })?,
            );
        self.init = Some(init.clone());
        units.push(Unit::Init(init));
        Ok(())
    }

    /// A frame's fragment; media of a track the init does not have is dropped.
    fn frame(
        &mut self,
        tag: flv::Tag,
        arrived: SystemTime,
        units: &mut Vec<Unit>,
    ) -> Result<(), SourceError> {
        let Some(init) = self.init.clone() else {
            return Ok(());
        };
        let bytes = match tag.kind {
            TagKind::Video if self.video.is_some() => {
                let Ok(Video::Frame {
                    key,
                    composition_ms,
                    data,
                    ..
                }) = tag.video()
                else {
                    return Ok(());
                };
                self.video_fragment(tag.timestamp_ms, key, composition_ms, &data, arrived)
            }
            TagKind::Audio => match (&self.audio, tag.audio()) {
                (Some(audio), Ok(Audio::Frame { codec, data })) => {
                    let rate = audio.timescale;
                    let samples = match codec {
                        AudioCodec::Aac => AAC_FRAME_SAMPLES,
                        AudioCodec::Opus => {
                            opus_samples(&data).ok_or_else(|| SourceError::CodecConfig {
                                what: "Opus",
                                why: "a packet without a valid table-of-contents byte".into(),
                            })?
                        }
                    };
                    self.audio_fragment(tag.timestamp_ms, rate, samples, &data)
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let fragment =
            Fragment::parse(bytes, 0, &init).map_err(|source| SourceError::OwnOutput {
                what: "fragment",
                source,
            })?;
        units.push(Unit::Fragment(fragment));
        Ok(())
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn video_fragment(
        &mut self,
        timestamp_ms: u32,
        key: bool,
        composition_ms: i32,
        data: &[u8],
        arrived: SystemTime,
    ) -> Bytes {
        let ticks_per_ms = u64::from(VIDEO_TIMESCALE / 1000);
        let decode_time = self.video_time.next(u64::from(timestamp_ms) * ticks_per_ms);
        // The nominal duration: the encoder's frame rate, else the interval just seen.
        let interval_ms = match (self.frame_rate, self.last_video_ms) {
            (Some(fps), _) => 1000.0 / fps,
            (None, Some(last)) if timestamp_ms > last => f64::from(timestamp_ms - last),
            _ => 1000.0 / 30.0,
        };
        self.last_video_ms = Some(timestamp_ms);
        let duration = (interval_ms * f64::from(VIDEO_TIMESCALE) / 1000.0).round() as u32;
        // The wall clock of this timestamp, from the quickest recent arrivals.
        let offset = unix_ms(arrived) - f64::from(timestamp_ms);
        if self.clock.len() == CLOCK_WINDOW {
            self.clock.pop_front();
        }
        self.clock.push_back(offset);
        let base = self.clock.iter().copied().fold(f64::INFINITY, f64::min);
        let wall_ms = base + f64::from(timestamp_ms);
        let wall = UNIX_EPOCH + Duration::from_secs_f64(wall_ms.max(0.0) / 1000.0);
        let prft = Prft::at(VIDEO_TRACK_ID, decode_time, wall);
        let sample = Sample {
            decode_time,
            duration: duration.max(1),
            composition_offset: composition_ms.saturating_mul(VIDEO_TIMESCALE as i32 / 1000),
            sync: key,
            data,
        };
        let sequence = self.next_sequence();
        writer::fragment(VIDEO_TRACK_ID, sequence, &sample, Some(&prft))
    }

    fn audio_fragment(&mut self, timestamp_ms: u32, rate: u32, samples: u64, data: &[u8]) -> Bytes {
        let from_tag = u64::from(timestamp_ms) * u64::from(rate) / 1000;
        // Counted in whole frames while the tags agree to within a frame; their millisecond
        // times would otherwise jitter every frame's start.
        let decode_time = match self.audio_next {
            Some(next) if next.abs_diff(from_tag) < samples => next,
            _ => from_tag,
        };
        self.audio_next = Some(decode_time + samples);
        let sample = Sample {
            decode_time,
            duration: samples as u32,
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

    #[test]
    fn aac_configs_give_rate_and_channels() {
        assert_eq!(aac_format(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(aac_format(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(aac_format(&[0x11]), None);
        assert_eq!(aac_format(&[0x16, 0x90]), None, "rate index 13 is reserved");
    }

    #[test]
    fn opus_packets_say_how_long_they_are() {
        // libopus at 20 ms: CELT fullband 20 ms (config 31), one frame.
        assert_eq!(opus_samples(&[0xfc, 0xff]), Some(960));
        // SILK narrowband 60 ms (config 3), two frames (code 1): 120 ms.
        assert_eq!(opus_samples(&[0x19]), Some(5760));
        // Code 3 with a count of 3 frames of 2.5 ms (config 16).
        assert_eq!(opus_samples(&[0x83, 0x03]), Some(360));
        assert_eq!(opus_samples(&[0x83, 0x00]), None, "no frames");
        assert_eq!(
            opus_samples(&[0x1b, 0x03]),
            None,
            "180 ms is over the limit"
        );
        assert_eq!(opus_samples(&[0x83]), None, "no count byte");
        assert_eq!(opus_samples(&[]), None);
    }

    #[test]
    fn opus_heads_give_channels_and_pre_skip() {
        let mut head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00".to_vec();
        assert_eq!(opus_head(&head), Some((2, 312)));
        head[18] = 1;
        assert_eq!(opus_head(&head), None, "mapping family 1 is not written");
        assert_eq!(opus_head(b"OpusTags"), None);
    }
}
