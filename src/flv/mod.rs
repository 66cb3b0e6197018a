//! FLV, as ffmpeg's FLV muxer writes it for the zero-wait ingest: each encoded frame the moment
//! it exists, in a tag that carries its own size (Adobe "Video File Format Specification"
//! v10.1, annex E). Pure: bytes in, tags out; nothing of MP4, streams or servers.
//!
//! ```text
//! stream  := header PreviousTagSize0 (tag PreviousTagSize)*
//! header  := "FLV" version=1 flags(audio 0x04, video 0x01) data_offset=9
//! tag     := type(8 audio, 9 video, 18 script) size:u24 timestamp:u24 timestamp_ext:u8
//!            stream_id:u24 data[size]
//! video   := frame_type:4 codec_id:4 (7 = AVC) avc_packet_type:u8 composition_time:s24 body
//! audio   := format:4 (10 = AAC) rate:2 size:1 type:1 aac_packet_type:u8 body
//!
//! Enhanced RTMP (veovera, v2), what OBS 30+ sends for HEVC and Opus:
//! video   := 1:1 frame_type:3 packet_type:4 [mod_ex]* fourcc:4 (hvc1 avc1 av01 …)
//!            [composition_time:s24 if packet_type = 1 and fourcc is avc1/hvc1] body
//! audio   := format:4 (9) packet_type:4 [mod_ex]* fourcc:4 (Opus mp4a …) body
//! ```
//!
//! [`FlvReader::feed`] takes chunks as they come; [`FlvReader::poll`] hands out whole tags, or
//! `Ok(None)` for "feed me more" (nothing is lost), or an error when the stream is broken. A tag
//! that arrived inside one chunk is a zero-copy slice of it; one split across chunks is
//! gathered once. Every size is checked before anything is buffered.

mod amf;

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

pub use amf::{MetaData, parse_metadata};

/// The 9-byte header and the first PreviousTagSize.
const HEADER_LEN: usize = 9 + 4;
const TAG_HEADER_LEN: usize = 11;
const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// FLV data sizes are 24-bit; a tag this large is not a live frame (a 4K key frame at a high
/// bitrate is a few megabytes), so refuse it before buffering.
pub const DEFAULT_MAX_TAG_SIZE: usize = 16 << 20;

/// What is wrong with an FLV stream, and where (the absolute byte offset of the tag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not FLV: the stream does not start with the FLV signature")]
    NotFlv,
    #[error("FLV version {0} is not 1")]
    Version(u8),
    #[error("FLV header claims a data offset of {0}, below its own 9 bytes")]
    HeaderOffset(u32),
    #[error("FLV tag at byte {offset} is {size} bytes, over the limit of {limit}")]
    TagTooLarge {
        offset: u64,
        size: usize,
        limit: usize,
    },
    #[error("FLV tag at byte {offset} has type {kind}, which is not audio, video or script data")]
    TagType { offset: u64, kind: u8 },
    #[error("FLV tag at byte {offset} is encrypted or filtered")]
    Filtered { offset: u64 },
    #[error(
        "FLV tag at byte {offset} is followed by a previous-tag size of {found}, not {expected}"
    )]
    PreviousTagSize {
        offset: u64,
        expected: u32,
        found: u32,
    },
    #[error("FLV {what} tag at byte {offset} is too short for its header")]
    ShortBody { offset: u64, what: &'static str },
    #[error("the FLV stream ends inside a tag ({0} bytes left over)")]
    EndsInsideTag(usize),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which tracks the header says the stream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub audio: bool,
    pub video: bool,
}

/// One tag, its body a slice of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub kind: TagKind,
    /// Milliseconds, the 24-bit field and its extension byte together.
    pub timestamp_ms: u32,
    pub data: Bytes,
    /// Absolute byte offset of the tag in the stream, for errors.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
    Script,
}

/// An incremental FLV reader.
pub struct FlvReader {
    max_tag_size: usize,
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// Absolute offset of the first buffered byte.
    offset: u64,
    header: Option<Header>,
    /// The previous tag's size, checked against the PreviousTagSize that follows it.
    pending_previous: Option<(u64, u32)>,
    failed: Option<Error>,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TAG_SIZE)
    }
}

impl FlvReader {
    pub fn new(max_tag_size: usize) -> Self {
        Self {
            max_tag_size,
            chunks: VecDeque::new(),
            buffered: 0,
            offset: 0,
            header: None,
            pending_previous: None,
            failed: None,
        }
    }

    pub fn feed(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The header, once read.
    pub fn header(&self) -> Option<Header> {
        self.header
    }

    /// The next whole tag, `Ok(None)` if more bytes are needed.
    pub fn poll(&mut self) -> Result<Option<Tag>> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// The input is over: an error if it stopped inside a tag. A stream may end right after a
    /// tag, without the PreviousTagSize that would follow it.
    pub fn finish(&self) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let allowed = if self.pending_previous.is_some() {
            PREVIOUS_TAG_SIZE_LEN
        } else {
            0
        };
        if self.buffered > allowed {
            return Err(Error::EndsInsideTag(self.buffered));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Tag>> {
        if self.header.is_none() {
            let Some(head) = self.peek(HEADER_LEN) else {
                // Say "not FLV" as soon as the first bytes show it.
                if let Some(start) = self.peek(self.buffered.min(3))
                    && !b"FLV".starts_with(&start)
                {
                    return Err(Error::NotFlv);
                }
                return Ok(None);
            };
            if &head[..3] != b"FLV" {
                return Err(Error::NotFlv);
            }
            if head[3] != 1 {
                return Err(Error::Version(head[3]));
            }
            let data_offset = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            if data_offset < 9 {
                return Err(Error::HeaderOffset(data_offset));
            }
            // Bytes past the 9 of the header (a future header extension) are skipped.
            let extra = usize::try_from(data_offset - 9).unwrap_or(usize::MAX);
            if extra > self.max_tag_size {
                return Err(Error::HeaderOffset(data_offset));
            }
            if self.buffered < HEADER_LEN + extra {
                return Ok(None);
            }
            self.header = Some(Header {
                audio: head[4] & 0x04 != 0,
                video: head[4] & 0x01 != 0,
            });
            self.take(HEADER_LEN + extra);
        }
        if let Some((tag_offset, expected)) = self.pending_previous {
            let Some(size) = self.peek(PREVIOUS_TAG_SIZE_LEN) else {
                return Ok(None);
            };
            let found = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
            if found != expected {
                return Err(Error::PreviousTagSize {
                    offset: tag_offset,
                    expected,
                    found,
                });
            }
            self.take(PREVIOUS_TAG_SIZE_LEN);
            self.pending_previous = None;
        }
        let Some(head) = self.peek(TAG_HEADER_LEN) else {
            return Ok(None);
        };
        let offset = self.offset;
        let filtered = head[0] & 0x20 != 0;
        let kind = match head[0] & 0x1f {
            8 => TagKind::Audio,
            9 => TagKind::Video,
            18 => TagKind::Script,
            other => {
                return Err(Error::TagType {
                    offset,
                    kind: other,
                });
            }
        };
        if filtered {
            return Err(Error::Filtered { offset });
        }
        let size = usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
        if size > self.max_tag_size {
            return Err(Error::TagTooLarge {
                offset,
                size,
                limit: self.max_tag_size,
            });
        }
        let timestamp_ms = u32::from(head[7]) << 24
            | u32::from(head[4]) << 16
            | u32::from(head[5]) << 8
            | u32::from(head[6]);
        if self.buffered < TAG_HEADER_LEN + size {
            return Ok(None);
        }
        self.take(TAG_HEADER_LEN);
        let data = self.take(size);
        // Checked above: size < 2^24, so the sum fits.
        self.pending_previous = Some((offset, (TAG_HEADER_LEN + size) as u32));
        Ok(Some(Tag {
            kind,
            timestamp_ms,
            data,
            offset,
        }))
    }

    /// The first `len` buffered bytes, copied (headers only: a few bytes), if there are as many.
    fn peek(&self, len: usize) -> Option<Vec<u8>> {
        if self.buffered < len {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for chunk in &self.chunks {
            let want = len - out.len();
            if want == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..want.min(chunk.len())]);
        }
        Some(out)
    }

    /// Removes the first `len` bytes (there are at least as many): a slice of one chunk when
    /// they lie in it, else gathered into one buffer.
    fn take(&mut self, len: usize) -> Bytes {
        self.buffered -= len;
        self.offset += len as u64;
        if let Some(front) = self.chunks.front_mut()
            && front.len() >= len
        {
            let out = front.split_to(len);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let want = (len - out.len()).min(front.len());
            out.extend_from_slice(&front[..want]);
            front.advance(want);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}

/// The video codecs this reader hands out frames of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264: legacy codec id 7, or Enhanced RTMP's `avc1`.
    Avc,
    /// H.265: Enhanced RTMP's `hvc1`, or the codec id 12 that Chinese CDNs' FLV extension uses.
    Hevc,
    /// AV1: Enhanced RTMP's `av01` (its frames carry no composition time).
    Av1,
}

/// A video tag's body, for the codecs this reader knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Video {
    /// The decoder configuration record: the body of an MP4 `avcC`, `hvcC` or `av1C`.
    Config { codec: VideoCodec, record: Bytes },
    /// One access unit, NAL units with length prefixes as the config says.
    Frame {
        codec: VideoCodec,
        key: bool,
        /// Presentation minus decode time, in milliseconds.
        composition_ms: i32,
        data: Bytes,
    },
    /// The end of the sequence.
    End,
    /// Nothing for a decoder: a command frame, Enhanced RTMP metadata (HDR colour info).
    Ignored,
    /// A codec this ingest does not carry: its FLV codec id or Enhanced RTMP FourCC, named.
    Other(String),
}

/// The audio codecs this reader hands out frames of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC: legacy sound format 10, or Enhanced RTMP's `mp4a`.
    Aac,
    /// Opus: Enhanced RTMP's `Opus`.
    Opus,
}

/// An audio tag's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// AAC's AudioSpecificConfig (ISO/IEC 14496-3, as in an MP4 `esds`), or Opus's ID header
    /// (`OpusHead`, RFC 7845 §5.1).
    Config {
        codec: AudioCodec,
        data: Bytes,
    },
    Frame {
        codec: AudioCodec,
        data: Bytes,
    },
    End,
    /// Nothing for a decoder (Enhanced RTMP's multichannel configuration).
    Ignored,
    /// A format this ingest does not carry, named.
    Other(String),
}

const CODEC_AVC: u8 = 7;
const CODEC_HEVC_CN: u8 = 12;
const SOUND_AAC: u8 = 10;
/// Enhanced RTMP's marker in the sound-format field: a FourCC follows.
const SOUND_EX_HEADER: u8 = 9;
/// FLV's "video info / command frame" frame type: no picture.
const FRAME_COMMAND: u8 = 5;

/// Enhanced RTMP packet types (veovera "Enhanced RTMP" v2), video and audio alike where they
/// share a number.
const PACKET_SEQUENCE_START: u8 = 0;
const PACKET_CODED_FRAMES: u8 = 1;
const PACKET_SEQUENCE_END: u8 = 2;
const PACKET_CODED_FRAMES_X: u8 = 3;
const VIDEO_PACKET_METADATA: u8 = 4;
const PACKET_MULTITRACK_VIDEO: u8 = 6;
const PACKET_MULTITRACK_AUDIO: u8 = 5;
const PACKET_MOD_EX: u8 = 7;

fn legacy_codec_name(codec: u8) -> String {
    let name = match codec {
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video 2",
        _ => "unknown",
    };
    format!("codec id {codec} ({name})")
}

fn legacy_sound_name(format: u8) -> String {
    let name = match format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        2 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "device-specific",
        _ => "unknown",
    };
    format!("sound format {format} ({name})")
}

fn fourcc_name(fourcc: &[u8]) -> String {
    let text: String = fourcc
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect();
    format!("Enhanced RTMP FourCC '{text}'")
}

impl Tag {
    fn short(&self, what: &'static str) -> Error {
        Error::ShortBody {
            offset: self.offset,
            what,
        }
    }

    /// Skips Enhanced RTMP's ModEx prefixes (v2 §"ModEx"): each a size (`u8` + 1, or `u16` + 1
    /// when the byte says 256), that many bytes, then a byte whose low half is the real packet
    /// type. Returns the packet type and where the rest starts.
    fn skip_mod_ex(
        &self,
        mut packet_type: u8,
        mut at: usize,
        what: &'static str,
    ) -> Result<(u8, usize)> {
        while packet_type == PACKET_MOD_EX {
            let size_byte = *self.data.get(at).ok_or_else(|| self.short(what))?;
            at += 1;
            let mut size = usize::from(size_byte) + 1;
            if size == 256 {
                let wide = self.data.get(at..at + 2).ok_or_else(|| self.short(what))?;
                size = usize::from(u16::from_be_bytes([wide[0], wide[1]])) + 1;
                at += 2;
            }
            at += size;
            let next = *self.data.get(at).ok_or_else(|| self.short(what))?;
            packet_type = next & 0x0f;
            at += 1;
        }
        Ok((packet_type, at))
    }

    /// Reads a video tag's body (E.4.3.1, and Enhanced RTMP's extended header).
    pub fn video(&self) -> Result<Video> {
        let first = *self.data.first().ok_or_else(|| self.short("video"))?;
        if first & 0x80 != 0 {
            return self.enhanced_video(first);
        }
        let frame_type = first >> 4;
        let codec = match first & 0x0f {
            CODEC_AVC => VideoCodec::Avc,
            CODEC_HEVC_CN => VideoCodec::Hevc,
            other => return Ok(Video::Other(legacy_codec_name(other))),
        };
        if frame_type == FRAME_COMMAND {
            return Ok(Video::Ignored);
        }
        if self.data.len() < 5 {
            return Err(self.short("video"));
        }
        let body = self.data.slice(5..);
        Ok(match self.data[1] {
            0 => Video::Config {
                codec,
                record: body,
            },
            1 => Video::Frame {
                codec,
                key: frame_type == 1,
                composition_ms: self.composition_at(2),
                data: body,
            },
            _ => Video::End,
        })
    }

    /// A signed 24-bit composition time at `at` (checked present by the caller).
    fn composition_at(&self, at: usize) -> i32 {
        let raw = i32::from(self.data[at]) << 16
            | i32::from(self.data[at + 1]) << 8
            | i32::from(self.data[at + 2]);
        (raw << 8) >> 8
    }

    fn enhanced_video(&self, first: u8) -> Result<Video> {
        let frame_type = (first >> 4) & 0x07;
        let (packet_type, at) = self.skip_mod_ex(first & 0x0f, 1, "video")?;
        if frame_type == FRAME_COMMAND && packet_type != VIDEO_PACKET_METADATA {
            return Ok(Video::Ignored);
        }
        if packet_type == PACKET_MULTITRACK_VIDEO {
            return Ok(Video::Other("Enhanced RTMP multitrack video".into()));
        }
        let fourcc = self
            .data
            .get(at..at + 4)
            .ok_or_else(|| self.short("video"))?;
        let codec = match fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            other => return Ok(Video::Other(fourcc_name(other))),
        };
        let at = at + 4;
        Ok(match packet_type {
            PACKET_SEQUENCE_START => Video::Config {
                codec,
                record: self.data.slice(at..),
            },
            PACKET_CODED_FRAMES if codec == VideoCodec::Av1 => Video::Frame {
                codec,
                key: frame_type == 1,
                composition_ms: 0,
                data: self.data.slice(at..),
            },
            PACKET_CODED_FRAMES => {
                // AVC and HEVC carry a composition time here; CodedFramesX leaves it out.
                if self.data.len() < at + 3 {
                    return Err(self.short("video"));
                }
                Video::Frame {
                    codec,
                    key: frame_type == 1,
                    composition_ms: self.composition_at(at),
                    data: self.data.slice(at + 3..),
                }
            }
            PACKET_CODED_FRAMES_X => Video::Frame {
                codec,
                key: frame_type == 1,
                composition_ms: 0,
                data: self.data.slice(at..),
            },
            PACKET_SEQUENCE_END => Video::End,
            _ => Video::Ignored,
        })
    }

    /// Reads an audio tag's body (E.4.2.1, and Enhanced RTMP's extended audio header).
    pub fn audio(&self) -> Result<Audio> {
        let first = *self.data.first().ok_or_else(|| self.short("audio"))?;
        let format = first >> 4;
        if format == SOUND_EX_HEADER {
            return self.enhanced_audio(first);
        }
        if format != SOUND_AAC {
            return Ok(Audio::Other(legacy_sound_name(format)));
        }
        let packet_type = *self.data.get(1).ok_or_else(|| self.short("audio"))?;
        let data = self.data.slice(2..);
        let codec = AudioCodec::Aac;
        Ok(if packet_type == 0 {
            Audio::Config { codec, data }
        } else {
            Audio::Frame { codec, data }
        })
    }

    fn enhanced_audio(&self, first: u8) -> Result<Audio> {
        let (packet_type, at) = self.skip_mod_ex(first & 0x0f, 1, "audio")?;
        if packet_type == PACKET_MULTITRACK_AUDIO {
            return Ok(Audio::Other("Enhanced RTMP multitrack audio".into()));
        }
        let fourcc = self
            .data
            .get(at..at + 4)
            .ok_or_else(|| self.short("audio"))?;
        let codec = match fourcc {
            b"mp4a" => AudioCodec::Aac,
            b"Opus" => AudioCodec::Opus,
            other => return Ok(Audio::Other(fourcc_name(other))),
        };
        let data = self.data.slice(at + 4..);
        Ok(match packet_type {
            PACKET_SEQUENCE_START => Audio::Config { codec, data },
            PACKET_CODED_FRAMES => Audio::Frame { codec, data },
            PACKET_SEQUENCE_END => Audio::End,
            // The multichannel configuration: the channel layout is in the codec's own
            // header too.
            _ => Audio::Ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let size = data.len() as u32;
        let mut out = vec![
            kind,
            (size >> 16) as u8,
            (size >> 8) as u8,
            size as u8,
            (timestamp >> 16) as u8,
            (timestamp >> 8) as u8,
            timestamp as u8,
            (timestamp >> 24) as u8,
            0,
            0,
            0,
        ];
        out.extend_from_slice(data);
        out.extend_from_slice(&(11 + size).to_be_bytes());
        out
    }

    fn stream(tags: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for t in tags {
            out.extend_from_slice(t);
        }
        out
    }

    fn read_all(data: &[u8], chunk: usize) -> Result<Vec<Tag>> {
        let mut reader = FlvReader::default();
        let mut tags = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            reader.feed(Bytes::copy_from_slice(piece));
            while let Some(tag) = reader.poll()? {
                tags.push(tag);
            }
        }
        reader.finish()?;
        Ok(tags)
    }

    #[test]
    fn tags_come_out_whole_however_the_bytes_are_cut() {
        let data = stream(&[
            tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3]),
            tag(8, 21, &[0xaf, 1, 9, 9]),
            // A timestamp past 24 bits uses the extension byte.
            tag(9, 0x0123_4567, &[0x27, 1, 0, 0, 0x21, 7]),
        ]);
        let whole = read_all(&data, data.len()).expect("whole");
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].timestamp_ms, 0x0123_4567);
        for chunk in 1..data.len() {
            let tags = read_all(&data, chunk).expect("chunked");
            assert_eq!(tags, whole, "chunks of {chunk}");
        }
        match whole[0].video().expect("video") {
            Video::Config {
                codec: VideoCodec::Avc,
                record,
            } => assert_eq!(&record[..], &[1, 2, 3]),
            other => panic!("{other:?}"),
        }
        match whole[2].video().expect("video") {
            Video::Frame {
                codec: VideoCodec::Avc,
                key,
                composition_ms,
                data,
            } => {
                assert!(!key);
                assert_eq!(composition_ms, 0x21);
                assert_eq!(&data[..], &[7]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            whole[1].audio().expect("audio"),
            Audio::Frame {
                codec: AudioCodec::Aac,
                data: Bytes::from_static(&[9, 9])
            }
        );
    }

    #[test]
    fn negative_composition_times_keep_their_sign() {
        let t = Tag {
            kind: TagKind::Video,
            timestamp_ms: 0,
            data: Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0]),
            offset: 0,
        };
        assert!(matches!(
            t.video(),
            Ok(Video::Frame {
                composition_ms: -2,
                ..
            })
        ));
    }

    #[test]
    fn broken_streams_say_what_and_where() {
        let mut reader = FlvReader::default();
        reader.feed(Bytes::from_static(b"ftypisom"));
        assert_eq!(reader.poll(), Err(Error::NotFlv));

        let mut bad_size = stream(&[tag(9, 0, &[0x17, 0, 0, 0, 0])]);
        let n = bad_size.len();
        bad_size[n - 1] ^= 1;
        bad_size.extend_from_slice(&tag(9, 0, &[0x17, 1, 0, 0, 0]));
        let err = read_all(&bad_size, 7).expect_err("a wrong previous-tag size");
        assert!(
            matches!(err, Error::PreviousTagSize { offset: 13, .. }),
            "{err}"
        );

        let mut huge = stream(&[]);
        huge.extend_from_slice(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        let mut reader = FlvReader::new(1 << 20);
        reader.feed(Bytes::from(huge));
        assert!(matches!(
            reader.poll(),
            Err(Error::TagTooLarge { offset: 13, .. })
        ));

        let truncated = stream(&[tag(8, 0, &[0xaf, 1, 1, 2, 3])]);
        let err = read_all(&truncated[..truncated.len() - 7], 5).expect_err("cut short");
        assert!(matches!(err, Error::EndsInsideTag(_)), "{err}");

        let odd = stream(&[tag(7, 0, &[1])]);
        assert!(matches!(
            read_all(&odd, 64),
            Err(Error::TagType { kind: 7, .. })
        ));
    }

    #[test]
    fn a_stream_may_end_without_the_last_previous_tag_size() {
        let data = stream(&[tag(8, 0, &[0xaf, 0, 0x11, 0x90])]);
        let tags = read_all(&data[..data.len() - 4], 3).expect("fine");
        assert_eq!(tags.len(), 1);
    }

    fn body(kind: TagKind, data: &[u8]) -> Tag {
        Tag {
            kind,
            timestamp_ms: 0,
            data: Bytes::copy_from_slice(data),
            offset: 0,
        }
    }

    #[test]
    fn enhanced_rtmp_video_headers_name_their_codec() {
        // Key frame (1), SequenceStart (0), hvc1, then the record.
        let start = body(TagKind::Video, b"\x90hvc1\x01\x02");
        assert_eq!(
            start.video(),
            Ok(Video::Config {
                codec: VideoCodec::Hevc,
                record: Bytes::from_static(&[1, 2]),
            })
        );
        // Inter frame (2), CodedFrames (1): a composition time of 0x10 first.
        let coded = body(TagKind::Video, b"\xa1hvc1\x00\x00\x10\x07");
        assert_eq!(
            coded.video(),
            Ok(Video::Frame {
                codec: VideoCodec::Hevc,
                key: false,
                composition_ms: 16,
                data: Bytes::from_static(&[7]),
            })
        );
        // Key frame, CodedFramesX (3): no composition time.
        let x = body(TagKind::Video, b"\x93avc1\x09");
        assert!(matches!(
            x.video(),
            Ok(Video::Frame { codec: VideoCodec::Avc, key: true, composition_ms: 0, ref data })
                if data[..] == [9]
        ));
        // ModEx (7) with two bytes of modifier, then CodedFramesX.
        let modex = body(TagKind::Video, b"\x97\x01\xaa\xbb\x03hvc1\x05");
        assert!(matches!(modex.video(), Ok(Video::Frame { ref data, .. }) if data[..] == [5]));
        assert_eq!(
            body(TagKind::Video, b"\x94hvc1\x02").video(),
            Ok(Video::Ignored),
            "metadata"
        );
        assert_eq!(
            body(TagKind::Video, b"\x90vp09\x01").video(),
            Ok(Video::Other("Enhanced RTMP FourCC 'vp09'".into()))
        );
        // AV1's coded frames have no composition time.
        assert_eq!(
            body(TagKind::Video, b"\x91av01\x12\x00").video(),
            Ok(Video::Frame {
                codec: VideoCodec::Av1,
                key: true,
                composition_ms: 0,
                data: Bytes::from_static(&[0x12, 0]),
            })
        );
        assert_eq!(
            body(TagKind::Video, b"\x22\x01").video(),
            Ok(Video::Other("codec id 2 (Sorenson H.263)".into()))
        );
        for short in [
            &b"\x90hvc"[..],
            b"\xa1hvc1\x00\x00",
            b"\x97",
            b"\x97\x05\x01",
        ] {
            assert!(
                matches!(
                    body(TagKind::Video, short).video(),
                    Err(Error::ShortBody { .. })
                ),
                "{short:?}"
            );
        }
        // The legacy HEVC id of Chinese CDNs reads as AVC's layout does.
        assert!(matches!(
            body(TagKind::Video, b"\x1c\x00\x00\x00\x00\x01").video(),
            Ok(Video::Config {
                codec: VideoCodec::Hevc,
                ..
            })
        ));
    }

    #[test]
    fn enhanced_rtmp_audio_headers_name_their_codec() {
        let head = body(TagKind::Audio, b"\x90OpusOpusHead");
        assert_eq!(
            head.audio(),
            Ok(Audio::Config {
                codec: AudioCodec::Opus,
                data: Bytes::from_static(b"OpusHead"),
            })
        );
        assert_eq!(
            body(TagKind::Audio, b"\x91Opus\xfc\x01").audio(),
            Ok(Audio::Frame {
                codec: AudioCodec::Opus,
                data: Bytes::from_static(&[0xfc, 1]),
            })
        );
        assert_eq!(
            body(TagKind::Audio, b"\x91fLaC\x00").audio(),
            Ok(Audio::Other("Enhanced RTMP FourCC 'fLaC'".into()))
        );
        assert_eq!(
            body(TagKind::Audio, b"\x2f\x00").audio(),
            Ok(Audio::Other("sound format 2 (MP3)".into()))
        );
        assert!(matches!(
            body(TagKind::Audio, b"\x91Op").audio(),
            Err(Error::ShortBody { .. })
        ));
    }
}
