//! A bounded, panic-free cursor over the bytes of one box.
//!
//! Every read is checked against the end of the box being read, so a child can never read into
//! its parent's siblings, and every value handed out of the input (`mdat` payloads, unknown
//! boxes) is a zero-copy slice of the `Bytes` that came in.

use bytes::Bytes;

use super::{BoxHeader, BoxPath, Error, ErrorKind, FourCC, RawBox, Result};

/// A cursor over `data[pos..end]`, which sits at absolute stream offset `base + pos`.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    end: usize,
    base: u64,
    path: BoxPath,
}

/// A child box found by [`Reader::next_box`]: its header, where it starts, and a reader
/// limited to its body.
pub struct Child<'a> {
    pub header: BoxHeader,
    start: usize,
    body: Reader<'a>,
}

impl<'a> Reader<'a> {
    /// A reader over all of `data`, whose first byte is at absolute offset `base`.
    pub fn new(data: &'a Bytes, base: u64) -> Self {
        Self {
            data,
            pos: 0,
            end: data.len(),
            base,
            path: BoxPath::root(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The absolute stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }

    pub fn path(&self) -> BoxPath {
        self.path
    }

    /// An error of `kind` at the current position.
    pub fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind, self.offset(), self.path)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let available = self.remaining();
        if n > available {
            return Err(self.error(ErrorKind::Truncated {
                needed: n as u64,
                available: available as u64,
            }));
        }
        let start = self.pos;
        self.pos += n;
        let data: &'a Bytes = self.data;
        data.get(start..start + n).ok_or_else(|| {
            Error::new(
                ErrorKind::Truncated {
                    needed: n as u64,
                    available: 0,
                },
                self.base.saturating_add(start as u64),
                self.path,
            )
        })
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub fn u24(&mut self) -> Result<u32> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn fourcc(&mut self) -> Result<FourCC> {
        Ok(FourCC(self.array()?))
    }

    /// The version and flags of a full box (ISO/IEC 14496-12 §4.2, `FullBox`).
    pub fn full_header(&mut self) -> Result<(u8, u32)> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00ff_ffff))
    }

    /// The next `n` bytes as a zero-copy slice of the input.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes> {
        let available = self.remaining();
        if n > available {
            return Err(self.error(ErrorKind::Truncated {
                needed: n as u64,
                available: available as u64,
            }));
        }
        let out = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// A reader over the next `n` bytes, within the same box (for descriptors and other
    /// length-prefixed structures that are not boxes).
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>> {
        let available = self.remaining();
        if n > available {
            return Err(self.error(ErrorKind::Truncated {
                needed: n as u64,
                available: available as u64,
            }));
        }
        let sub = Reader {
            data: self.data,
            pos: self.pos,
            end: self.pos + n,
            base: self.base,
            path: self.path,
        };
        self.pos += n;
        Ok(sub)
    }

    /// Everything left in this box, as a zero-copy slice.
    pub fn rest(&mut self) -> Bytes {
        let out = self.data.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    /// Checks that `count` items of at least `min_item_len` bytes each fit in what is left,
    /// before anything is allocated for them.
    pub fn bounded_count(&self, count: u64, min_item_len: usize) -> Result<usize> {
        let available = self.remaining() as u64;
        let needed = count.checked_mul(min_item_len.max(1) as u64);
        match needed {
            Some(needed) if needed <= available => usize::try_from(count)
                .map_err(|_| self.error(ErrorKind::CountTooLarge { count, available })),
            _ => Err(self.error(ErrorKind::CountTooLarge { count, available })),
        }
    }

    /// Fails unless every byte of the box was read: a box must use its body exactly.
    pub fn expect_end(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(ErrorKind::TrailingBytes { count: n as u64 })),
        }
    }

    /// Reads the next child box header, or `None` when this box has no bytes left.
    pub fn next_box(&mut self) -> Result<Option<Child<'a>>> {
        if self.is_empty() {
            return Ok(None);
        }
        let start = self.pos;
        let window = self.data.get(start..self.end).unwrap_or(&[]);
        let header = match BoxHeader::parse(window) {
            Ok(Some(header)) => header,
            // Inside a complete parent, a header that needs more bytes is a truncated parent.
            Ok(None) => {
                return Err(self.error(ErrorKind::Truncated {
                    needed: 8,
                    available: window.len() as u64,
                }));
            }
            Err(kind) => return Err(self.error(kind)),
        };
        let available = window.len() as u64;
        let size = header.size.unwrap_or(available);
        if size > available {
            return Err(self.error(ErrorKind::Truncated {
                needed: size,
                available,
            }));
        }
        let path = self
            .path
            .push(header.kind)
            .ok_or_else(|| self.error(ErrorKind::TooDeep))?;
        // `size <= available`, and `available` came from a usize.
        let size = size as usize;
        let body = Reader {
            data: self.data,
            pos: start + usize::from(header.header_len),
            end: start + size,
            base: self.base,
            path,
        };
        self.pos = start + size;
        Ok(Some(Child {
            header,
            start,
            body,
        }))
    }
}

impl<'a> Child<'a> {
    pub fn kind(&self) -> FourCC {
        self.header.kind
    }

    /// The whole box, header included, kept verbatim.
    pub fn raw(&self) -> RawBox {
        RawBox {
            kind: self.header.kind,
            bytes: self.body.data.slice(self.start..self.body.end),
        }
    }

    /// Where the child starts in the buffer the reader was made over.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The whole child, header included, in bytes.
    pub fn len(&self) -> usize {
        self.body.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of boxes down to and including this child.
    pub fn path(&self) -> BoxPath {
        self.body.path
    }

    /// The reader over this child's body.
    pub fn body(&mut self) -> &mut Reader<'a> {
        &mut self.body
    }

    /// The absolute offset of the child's first header byte.
    pub fn offset(&self) -> u64 {
        self.body.base.saturating_add(self.start as u64)
    }

    /// Decodes the child as `A`, which must use the body exactly.
    pub fn decode<A: super::Atom>(mut self) -> Result<A> {
        if self.header.kind != A::KIND {
            return Err(Error::new(
                ErrorKind::UnexpectedBox {
                    expected: A::KIND,
                    found: self.header.kind,
                },
                self.offset(),
                self.body.path,
            ));
        }
        let atom = A::decode_body(&mut self.body)?;
        self.body.expect_end()?;
        Ok(atom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order() {
        let data = Bytes::from_static(&[1, 0, 2, 0, 0, 3, 0, 0, 0, 4]);
        let mut r = Reader::new(&data, 100);
        assert_eq!(r.u8().ok(), Some(1));
        assert_eq!(r.u16().ok(), Some(2));
        assert_eq!(r.u24().ok(), Some(3));
        assert_eq!(r.offset(), 106);
        assert_eq!(r.u32().ok(), Some(4));
        assert!(r.is_empty());
    }

    #[test]
    fn a_short_read_is_an_error_with_the_absolute_offset() {
        let data = Bytes::from_static(&[1, 2, 3]);
        let mut r = Reader::new(&data, 1000);
        r.u8().expect("one byte is there");
        let err = r.u32().expect_err("only two bytes left");
        assert_eq!(
            err.kind,
            ErrorKind::Truncated {
                needed: 4,
                available: 2
            }
        );
        assert_eq!(err.offset, 1001);
    }

    #[test]
    fn a_child_cannot_read_past_its_end() {
        // A 12-byte `free` box followed by 4 bytes that belong to the parent.
        let data = Bytes::from_static(b"\0\0\0\x0cfree\x01\x02\x03\x04\x05\x06\x07\x08");
        let mut r = Reader::new(&data, 0);
        let mut child = r.next_box().expect("valid").expect("present");
        assert_eq!(child.kind(), FourCC::new(b"free"));
        let body = child.body();
        assert_eq!(body.u32().ok(), Some(0x01020304));
        assert!(body.u8().is_err());
        assert_eq!(r.remaining(), 4);
    }

    #[test]
    fn a_child_larger_than_its_parent_is_truncated() {
        let data = Bytes::from_static(b"\0\0\0\x20free\0\0\0\0");
        let mut r = Reader::new(&data, 0);
        let err = r.next_box().err().expect("box claims 32 bytes, has 12");
        assert!(matches!(err.kind, ErrorKind::Truncated { needed: 32, .. }));
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        let data = Bytes::from_static(&[0; 16]);
        let r = Reader::new(&data, 0);
        assert_eq!(r.bounded_count(4, 4).ok(), Some(4));
        assert!(matches!(
            r.bounded_count(5, 4).map_err(|e| e.kind),
            Err(ErrorKind::CountTooLarge { count: 5, .. })
        ));
        assert!(r.bounded_count(u64::MAX, 8).is_err());
    }
}
