//! The incremental splitter: bytes in, in whatever chunks they arrive; init segments and media
//! fragments out.
//!
//! ```text
//! stream   := init fragment* [mfra]
//! init     := [ftyp] (other)* moov              -> Unit::Init
//! fragment := (styp | prft | emsg | sidx | other)* moof mdat   -> Unit::Fragment
//! ```
//! `free`, `skip` and `mfra` between units are dropped; a new `ftyp`/`moov` between fragments
//! starts a new init (an encoder that restarted, a concatenated stream).
//!
//! Two kinds of "no": [`Splitter::poll`] returns `Ok(None)` when it needs more bytes (nothing
//! is lost, feed more), and an error when the stream is broken; after an error the splitter
//! returns that error until it is replaced.
//!
//! Copies: a unit that arrives inside one chunk is handed out as a zero-copy slice of that
//! chunk. A unit split across chunks is gathered into a buffer sized from its box headers, so
//! each of its bytes is copied exactly once, into the buffer every viewer then shares.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::moof::Tfdt;
use super::{
    Atom, BoxHeader, BoxPath, Error, ErrorKind, FourCC, Fragment, InitSegment, Mdat, Moov, Result,
    fragment::MOOF, rewriter,
};

/// Large enough for a key frame of a 4K stream at a high bitrate; small enough that a
/// corrupted size cannot make us buffer gigabytes.
pub const DEFAULT_MAX_BOX_SIZE: u64 = 64 << 20;

const FTYP: FourCC = FourCC::new(b"ftyp");
const FREE: FourCC = FourCC::new(b"free");
const SKIP: FourCC = FourCC::new(b"skip");
const MFRA: FourCC = FourCC::new(b"mfra");

/// What the splitter hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    Init(Arc<InitSegment>),
    Fragment(Fragment),
}

/// What the boxes of the unit being gathered make so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gathered {
    Nothing,
    /// `ftyp` and perhaps other boxes, waiting for `moov`.
    InitStart,
    /// Boxes before a `moof`.
    Prefix,
    /// A `moof`, waiting for its `mdat`.
    Moof,
}

pub struct Splitter {
    max_box_size: u64,
    /// The unit being gathered, when it did not arrive in one chunk.
    pending: BytesMut,
    /// What is left of the newest chunk.
    input: Bytes,
    /// Absolute stream offset of the current unit's first byte.
    unit_offset: u64,
    /// How many bytes of the current unit are whole boxes already walked.
    cursor: usize,
    gathered: Gathered,
    /// Bytes of a dropped box still to skip.
    skip: u64,
    init: Option<Arc<InitSegment>>,
    failed: Option<Error>,
    /// Per track, where its last fragment ended: the decode time of a next one without a
    /// `tfdt`.
    track_ends: Vec<(u32, u64)>,
    /// Per track, what its Smooth Streaming `tfxd` times are moved by: ffmpeg's ismv writes
    /// a track that starts before zero (AAC's priming) with a negative first time, so the
    /// track starts at zero instead, every fragment moved alike.
    smooth_shifts: Vec<(u32, u64)>,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BOX_SIZE)
    }
}

impl Splitter {
    pub fn new(max_box_size: u64) -> Self {
        Self {
            max_box_size,
            pending: BytesMut::new(),
            input: Bytes::new(),
            unit_offset: 0,
            cursor: 0,
            gathered: Gathered::Nothing,
            skip: 0,
            init: None,
            failed: None,
            track_ends: Vec::new(),
            smooth_shifts: Vec::new(),
        }
    }

    /// A splitter for fragments that continue a stream whose init segment is already known
    /// (a relay that reconnects, or fragments arriving one per message).
    pub fn with_init(max_box_size: u64, init: Arc<InitSegment>) -> Self {
        Self {
            init: Some(init),
            ..Self::new(max_box_size)
        }
    }

    /// The same splitter counting its input from `offset`: for fragments read from the middle
    /// of a file, whose `base_data_offset`s count from the file's start.
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.unit_offset = offset;
        self
    }

    /// The init segment in force, if one has been seen.
    pub fn init(&self) -> Option<&Arc<InitSegment>> {
        self.init.as_ref()
    }

    /// Absolute offset of the first byte not yet handed out.
    pub fn position(&self) -> u64 {
        self.unit_offset
    }

    /// Adds a chunk of input. Call [`Splitter::poll`] until it returns `Ok(None)` before the
    /// next `feed`, or the leftover is copied to join the two.
    pub fn feed(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if self.input.is_empty() {
            self.input = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.input.len() + chunk.len());
            joined.extend_from_slice(&self.input);
            joined.extend_from_slice(&chunk);
            self.input = joined.freeze();
        }
    }

    /// The next complete unit, `Ok(None)` if more input is needed.
    pub fn poll(&mut self) -> Result<Option<Unit>> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Checks that the input ended at a unit boundary. A stream cut inside a box is an error
    /// that says how much was lost.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let buffered = self.pending.len() + self.input.len();
        if buffered > 0 || self.cursor > 0 {
            return Err(Error::new(
                ErrorKind::Truncated {
                    needed: 0,
                    available: buffered as u64,
                },
                self.unit_offset,
                BoxPath::root(),
            ));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Unit>> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(self.input.len());
                self.input.advance(n);
                self.skip -= n as u64;
                self.unit_offset += n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
                continue;
            }
            let cursor = self.cursor;
            let Some(header) = self.header_at(cursor)? else {
                return Ok(None);
            };
            let kind = header.kind;
            let size = header
                .size
                .ok_or_else(|| self.error(ErrorKind::SizeToEnd, cursor, Some(kind)))?;
            if size > self.max_box_size {
                return Err(self.error(
                    ErrorKind::TooLarge {
                        size,
                        max: self.max_box_size,
                    },
                    cursor,
                    Some(kind),
                ));
            }
            // `size <= max_box_size`, which fits in memory by construction.
            let size = usize::try_from(size)
                .map_err(|_| self.error(ErrorKind::Overflow("box size"), cursor, Some(kind)))?;
            let end = cursor
                .checked_add(size)
                .ok_or_else(|| self.error(ErrorKind::Overflow("unit size"), cursor, Some(kind)))?;

            let droppable = kind == FREE || kind == SKIP || kind == MFRA;
            if self.gathered == Gathered::Nothing && droppable {
                // Nothing of this unit is worth keeping: drop what is buffered of it and skip
                // the rest without copying.
                let buffered = self.pending.len().min(size);
                self.pending.clear();
                let from_input = (size - buffered).min(self.input.len());
                self.input.advance(from_input);
                self.unit_offset += (buffered + from_input) as u64;
                self.skip = (size - buffered - from_input) as u64;
                continue;
            }

            let is_init_box = kind == FTYP || kind == Moov::KIND;
            match self.gathered {
                Gathered::Moof if kind != Mdat::KIND => {
                    return Err(self.error(
                        ErrorKind::OutOfOrder("moof not followed by its mdat"),
                        cursor,
                        Some(kind),
                    ));
                }
                Gathered::Prefix if is_init_box => {
                    return Err(self.error(
                        ErrorKind::OutOfOrder("init segment box inside a media fragment"),
                        cursor,
                        Some(kind),
                    ));
                }
                Gathered::InitStart if kind == MOOF => {
                    return Err(self.error(
                        ErrorKind::OutOfOrder("media before the moov of the init segment"),
                        cursor,
                        Some(kind),
                    ));
                }
                _ => {}
            }
            if kind == Mdat::KIND && self.init.is_none() {
                return Err(self.error(
                    ErrorKind::Unsupported(
                        "media data before any moov: not a fragmented MP4 stream; remux it with \
                         `ffmpeg -i IN -c copy -movflags frag_keyframe+empty_moov+default_base_moof OUT.mp4`",
                    ),
                    cursor,
                    Some(kind),
                ));
            }
            if kind == MOOF && self.init.is_none() {
                return Err(self.error(
                    ErrorKind::OutOfOrder("media fragment before the init segment"),
                    cursor,
                    Some(kind),
                ));
            }
            if kind == Mdat::KIND && self.gathered != Gathered::Moof {
                return Err(self.error(
                    ErrorKind::OutOfOrder("mdat without a moof before it"),
                    cursor,
                    Some(kind),
                ));
            }

            if !self.ensure(end) {
                return Ok(None);
            }
            self.cursor = end;

            if kind == Moov::KIND {
                let offset = self.unit_offset;
                let bytes = self.take_unit(end);
                let init = Arc::new(InitSegment::parse(bytes, offset)?);
                self.init = Some(init.clone());
                return Ok(Some(Unit::Init(init)));
            }
            if kind == Mdat::KIND {
                let offset = self.unit_offset;
                let bytes = self.take_unit(end);
                let init = self
                    .init
                    .as_ref()
                    .ok_or_else(|| self.error(ErrorKind::MissingBox(Moov::KIND), 0, None))?;
                let fragment = match Fragment::parse(bytes.clone(), offset, init) {
                    // Timed by a Smooth `tfxd`, else only by order: from where the track's
                    // last fragment ended.
                    Err(err) if err.kind == ErrorKind::MissingBox(Tfdt::KIND) => {
                        let ends = &self.track_ends;
                        let shifts = &mut self.smooth_shifts;
                        let time_of = |track: u32, smooth: Option<u64>| match smooth {
                            Some(time) => {
                                let shift = match shifts.iter().find(|(t, _)| *t == track) {
                                    Some((_, shift)) => *shift,
                                    None => {
                                        // A first time past 2^63 is a negative one.
                                        let shift = (time as i64).min(0).unsigned_abs();
                                        shifts.push((track, shift));
                                        shift
                                    }
                                };
                                time.wrapping_add(shift)
                            }
                            None => ends
                                .iter()
                                .find(|(t, _)| *t == track)
                                .map_or(0, |(_, end)| *end),
                        };
                        match rewriter::add_missing_tfdt(&bytes, offset, time_of)? {
                            Some(fixed) => Fragment::parse(fixed, offset, init)?,
                            None => return Err(err),
                        }
                    }
                    other => other?,
                };
                for run in &fragment.runs {
                    match self.track_ends.iter_mut().find(|(t, _)| *t == run.track_id) {
                        Some((_, end)) => *end = run.end_time(),
                        None => self.track_ends.push((run.track_id, run.end_time())),
                    }
                }
                return Ok(Some(Unit::Fragment(fragment)));
            }
            // Before the first init, every box belongs to it; after, boxes before a moof are
            // that fragment's prefix, and an ftyp starts a new init.
            self.gathered = if kind == MOOF {
                Gathered::Moof
            } else if kind == FTYP || self.init.is_none() || self.gathered == Gathered::InitStart {
                Gathered::InitStart
            } else {
                Gathered::Prefix
            };
        }
    }

    /// The header of the box at `cursor` in the current unit, once enough bytes are here.
    fn header_at(&mut self, cursor: usize) -> Result<Option<BoxHeader>> {
        for len in [8usize, 16, 24, 32] {
            if !self.ensure(cursor + len) {
                return Ok(None);
            }
            let view = if self.pending.is_empty() {
                &self.input[..]
            } else {
                &self.pending[..]
            };
            let window = view.get(cursor..cursor + len).unwrap_or(&[]);
            match BoxHeader::parse(window) {
                Ok(Some(header)) => return Ok(Some(header)),
                Ok(None) => continue,
                Err(kind) => return Err(self.error(kind, cursor, None)),
            }
        }
        Err(self.error(ErrorKind::BadSize { size: 0 }, cursor, None))
    }

    /// Makes the first `len` bytes of the current unit contiguous, if the input has them,
    /// copying only into the unit's own buffer and only what it needs.
    fn ensure(&mut self, len: usize) -> bool {
        if self.pending.is_empty() {
            if self.input.len() >= len {
                return true;
            }
            self.pending.reserve(len);
            self.pending.extend_from_slice(&self.input);
            self.input.clear();
            return false;
        }
        let have = self.pending.len();
        if have >= len {
            return true;
        }
        let take = (len - have).min(self.input.len());
        self.pending.reserve(len - have);
        self.pending.extend_from_slice(&self.input[..take]);
        self.input.advance(take);
        self.pending.len() >= len
    }

    /// Hands out the first `len` bytes of the current unit and starts the next one.
    fn take_unit(&mut self, len: usize) -> Bytes {
        let bytes = if self.pending.is_empty() {
            self.input.split_to(len)
        } else {
            self.pending.split_to(len).freeze()
        };
        self.unit_offset += len as u64;
        self.cursor = 0;
        self.gathered = Gathered::Nothing;
        bytes
    }

    fn error(&self, kind: ErrorKind, at: usize, fourcc: Option<FourCC>) -> Error {
        let path = fourcc
            .and_then(|k| BoxPath::root().push(k))
            .unwrap_or_default();
        Error::new(kind, self.unit_offset.saturating_add(at as u64), path)
    }
}
