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

/// A video tag's body, for the codecs this reader knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Video {
    /// The AVCDecoderConfigurationRecord (the body of an MP4 `avcC`).
    AvcConfig(Bytes),
    /// One access unit, NAL units with length prefixes as the config says.
    AvcFrame {
        key: bool,
        /// Presentation minus decode time, in milliseconds.
        composition_ms: i32,
        data: Bytes,
    },
    AvcEnd,
    /// A codec this ingest does not carry, by its FLV codec id.
    Other(u8),
}

/// An audio tag's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// The AudioSpecificConfig (ISO/IEC 14496-3), as in an MP4 `esds`.
    AacConfig(Bytes),
    AacFrame(Bytes),
    /// A format this ingest does not carry, by its FLV sound format.
    Other(u8),
}

const CODEC_AVC: u8 = 7;
const SOUND_AAC: u8 = 10;

impl Tag {
    /// Reads a video tag's body (E.4.3.1).
    pub fn video(&self) -> Result<Video> {
        let short = || Error::ShortBody {
            offset: self.offset,
            what: "video",
        };
        let first = *self.data.first().ok_or_else(short)?;
        if first & 0x80 != 0 {
            // Enhanced RTMP's extended header (HEVC, AV1, VP9): Debian's ffmpeg 5.1 does not
            // write it.
            return Ok(Video::Other(first & 0x0f | 0x80));
        }
        let codec = first & 0x0f;
        if codec != CODEC_AVC {
            return Ok(Video::Other(codec));
        }
        if self.data.len() < 5 {
            return Err(short());
        }
        let packet_type = self.data[1];
        // A signed 24-bit number.
        let raw =
            i32::from(self.data[2]) << 16 | i32::from(self.data[3]) << 8 | i32::from(self.data[4]);
        let composition_ms = (raw << 8) >> 8;
        let body = self.data.slice(5..);
        Ok(match packet_type {
            0 => Video::AvcConfig(body),
            1 => Video::AvcFrame {
                key: first >> 4 == 1,
                composition_ms,
                data: body,
            },
            _ => Video::AvcEnd,
        })
    }

    /// Reads an audio tag's body (E.4.2.1).
    pub fn audio(&self) -> Result<Audio> {
        let first = *self.data.first().ok_or(Error::ShortBody {
            offset: self.offset,
            what: "audio",
        })?;
        let format = first >> 4;
        if format != SOUND_AAC {
            return Ok(Audio::Other(format));
        }
        let packet_type = *self.data.get(1).ok_or(Error::ShortBody {
            offset: self.offset,
            what: "audio",
        })?;
        let body = self.data.slice(2..);
        Ok(if packet_type == 0 {
            Audio::AacConfig(body)
        } else {
            Audio::AacFrame(body)
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
            Video::AvcConfig(body) => assert_eq!(&body[..], &[1, 2, 3]),
            other => panic!("{other:?}"),
        }
        match whole[2].video().expect("video") {
            Video::AvcFrame {
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
            Audio::AacFrame(Bytes::from_static(&[9, 9]))
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
            Ok(Video::AvcFrame {
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
}
