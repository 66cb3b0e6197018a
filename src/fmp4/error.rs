//! The one error type of the box code: what went wrong, where, and in which box.
//!
//! "Where" is the absolute byte offset in the stream (not in the current buffer), so a log line
//! points at the same byte as `probe` and a hex dump of the input.

use std::fmt;

use super::FourCC;

/// How deep boxes may nest. Real files stay below ten levels; the limit keeps a crafted file
/// from recursing without end.
pub const MAX_DEPTH: usize = 12;

/// The chain of boxes from the top level down to the one being read, as in `moof > traf > trun`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct BoxPath {
    kinds: [FourCC; MAX_DEPTH],
    len: u8,
}

impl BoxPath {
    pub const fn root() -> Self {
        Self {
            kinds: [FourCC([0; 4]); MAX_DEPTH],
            len: 0,
        }
    }

    /// The path one level deeper, or `None` past [`MAX_DEPTH`].
    pub fn push(&self, kind: FourCC) -> Option<Self> {
        let mut next = *self;
        let slot = next.kinds.get_mut(usize::from(self.len))?;
        *slot = kind;
        next.len = self.len.checked_add(1)?;
        Some(next)
    }

    pub fn kinds(&self) -> &[FourCC] {
        self.kinds.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The innermost box, if any.
    pub fn last(&self) -> Option<FourCC> {
        self.kinds().last().copied()
    }

    pub fn depth(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Display for BoxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("top level");
        }
        for (i, kind) in self.kinds().iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{kind}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BoxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxPath({self})")
    }
}

/// What is wrong with the bytes. Tests match on this, so each kind is one distinct fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A field or child needs more bytes than its box has left.
    #[error("box ends early: {needed} bytes needed, {available} left")]
    Truncated { needed: u64, available: u64 },
    /// A box header whose size cannot be right (below its own header length).
    #[error("impossible box size {size}")]
    BadSize { size: u64 },
    /// Size 0 means "to the end of the file", which a live stream does not have.
    #[error("box size 0 (\"until end of file\") cannot be used in a stream")]
    SizeToEnd,
    /// Larger than the configured maximum box size.
    #[error("box of {size} bytes is over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    /// A box that must be of one type was another.
    #[error("expected a {expected} box, found {found}")]
    UnexpectedBox { expected: FourCC, found: FourCC },
    /// A required child is absent.
    #[error("required child box {0} is missing")]
    MissingBox(FourCC),
    /// A child that may appear once appeared again.
    #[error("child box {0} appears more than once")]
    DuplicateBox(FourCC),
    /// A box whose fields end before its body does.
    #[error("{count} unread bytes at the end of the box")]
    TrailingBytes { count: u64 },
    /// A count that the remaining bytes cannot hold (checked before allocating).
    #[error("count {count} cannot fit in the {available} bytes left")]
    CountTooLarge { count: u64, available: u64 },
    /// A full box version this code does not read.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Boxes nested deeper than [`MAX_DEPTH`].
    #[error("boxes nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A field whose value breaks the format's rules.
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
    /// Top-level boxes in an order a fragmented stream cannot have.
    #[error("out of order: {0}")]
    OutOfOrder(&'static str),
    /// A value this code cannot represent (for example a shifted time beyond 64 bits).
    #[error("arithmetic overflow: {0}")]
    Overflow(&'static str),
    /// Input that is not a fragmented MP4 stream at all.
    #[error("unsupported input: {0}")]
    Unsupported(&'static str),
    #[error(
        "sample {sample} of track {track} ends at byte {end}, past the end of the file ({file_len} bytes)"
    )]
    SampleOutsideFile {
        track: u32,
        sample: u64,
        end: u64,
        file_len: u64,
    },
}

/// A box-level error: the kind, the absolute byte offset and the path of boxes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    /// Absolute offset in the input stream of the byte that could not be read.
    pub offset: u64,
    /// The boxes around that byte, outermost first.
    pub path: BoxPath,
}

impl Error {
    pub fn new(kind: ErrorKind, offset: u64, path: BoxPath) -> Self {
        Self { kind, offset, path }
    }

    /// The innermost box the error happened in, if any.
    pub fn fourcc(&self) -> Option<FourCC> {
        self.path.last()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} at byte {}", self.kind, self.path, self.offset)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prints_like_a_box_tree() {
        let path = BoxPath::root()
            .push(FourCC::new(b"moof"))
            .and_then(|p| p.push(FourCC::new(b"traf")))
            .and_then(|p| p.push(FourCC::new(b"trun")));
        let path = path.expect("three levels fit");
        assert_eq!(path.to_string(), "moof > traf > trun");
        assert_eq!(path.last(), Some(FourCC::new(b"trun")));
    }

    #[test]
    fn path_refuses_to_grow_past_the_depth_limit() {
        let mut path = BoxPath::root();
        for _ in 0..MAX_DEPTH {
            path = path.push(FourCC::new(b"moov")).expect("within the limit");
        }
        assert!(path.push(FourCC::new(b"trak")).is_none());
    }

    #[test]
    fn message_says_what_where_and_in_what() {
        let path = BoxPath::root().push(FourCC::new(b"moof")).expect("fits");
        let err = Error::new(ErrorKind::MissingBox(FourCC::new(b"mfhd")), 1234, path);
        assert_eq!(
            err.to_string(),
            "required child box mfhd is missing in moof at byte 1234"
        );
    }
}
