//! Box headers (ISO/IEC 14496-12 §4.2): a 32-bit size and a type, a 64-bit `largesize` when
//! size is 1, and a 16-byte extended type after `uuid`.

use super::{ErrorKind, FourCC};

pub const UUID: FourCC = FourCC::new(b"uuid");

/// The longest a header can be: size, type, largesize and a `uuid` extended type.
pub const MAX_HEADER_LEN: usize = 32;

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: FourCC,
    /// The whole box, header included; `None` for size 0, "to the end of the enclosing data".
    pub size: Option<u64>,
    /// 8, 16, 24 or 32 bytes.
    pub header_len: u8,
    /// The extended type of a `uuid` box.
    pub user_type: Option<[u8; 16]>,
}

impl BoxHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (never more than [`MAX_HEADER_LEN`]); an error
    /// means no amount of further input can make this a valid header.
    pub fn parse(buf: &[u8]) -> Result<Option<BoxHeader>, ErrorKind> {
        let Some((size32, kind)) = buf.first_chunk::<8>().map(|head| {
            let (size, kind) = head.split_at(4);
            (
                u32::from_be_bytes([size[0], size[1], size[2], size[3]]),
                FourCC([kind[0], kind[1], kind[2], kind[3]]),
            )
        }) else {
            return Ok(None);
        };
        let mut header_len: usize = 8;
        let size = match size32 {
            0 => None,
            1 => {
                let Some(large) = buf.get(8..16) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(large);
                header_len = 16;
                Some(u64::from_be_bytes(raw))
            }
            n => Some(u64::from(n)),
        };
        let mut user_type = None;
        if kind == UUID {
            let Some(ext) = buf.get(header_len..header_len + 16) else {
                return Ok(None);
            };
            let mut raw = [0u8; 16];
            raw.copy_from_slice(ext);
            user_type = Some(raw);
            header_len += 16;
        }
        let header_len_u8 = u8::try_from(header_len).map_err(|_| ErrorKind::BadSize {
            size: header_len as u64,
        })?;
        if let Some(size) = size {
            // A largesize below 2^32 is legal but odd; a size below the header never is.
            if size < header_len as u64 {
                return Err(ErrorKind::BadSize { size });
            }
        }
        Ok(Some(BoxHeader {
            kind,
            size,
            header_len: header_len_u8,
            user_type,
        }))
    }

    /// The body length, given how many bytes the enclosing data has from this header on
    /// (used for size 0).
    pub fn body_len(&self, available: u64) -> u64 {
        let total = self.size.unwrap_or(available);
        total.saturating_sub(u64::from(self.header_len))
    }

    /// The length of the header a box of `body_len` bytes is written with: 8, or 16 when the
    /// size needs 64 bits.
    pub fn encoded_len(body_len: usize) -> usize {
        if body_len as u64 + 8 > u64::from(u32::MAX) {
            16
        } else {
            8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_compact_header() {
        let h = BoxHeader::parse(b"\0\0\0\x10moofxxxxxxxx")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.kind, FourCC::new(b"moof"));
        assert_eq!(h.size, Some(16));
        assert_eq!(h.header_len, 8);
    }

    #[test]
    fn reads_a_largesize_header() {
        let mut buf = vec![0, 0, 0, 1];
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&(1u64 << 33).to_be_bytes());
        let h = BoxHeader::parse(&buf).expect("valid").expect("complete");
        assert_eq!(h.size, Some(1 << 33));
        assert_eq!(h.header_len, 16);
        assert_eq!(h.body_len(0), (1 << 33) - 16);
    }

    #[test]
    fn reads_a_uuid_header() {
        let mut buf = vec![0, 0, 0, 40];
        buf.extend_from_slice(b"uuid");
        buf.extend_from_slice(&[7u8; 16]);
        let h = BoxHeader::parse(&buf).expect("valid").expect("complete");
        assert_eq!(h.user_type, Some([7u8; 16]));
        assert_eq!(h.header_len, 24);
    }

    #[test]
    fn asks_for_more_bytes_when_the_header_is_cut() {
        assert_eq!(BoxHeader::parse(b"\0\0\0"), Ok(None));
        assert_eq!(BoxHeader::parse(b"\0\0\0\x01mdat\0\0"), Ok(None));
        assert_eq!(BoxHeader::parse(b"\0\0\0\x28uuid1234"), Ok(None));
    }

    #[test]
    fn rejects_sizes_below_the_header() {
        assert_eq!(
            BoxHeader::parse(b"\0\0\0\x07free"),
            Err(ErrorKind::BadSize { size: 7 })
        );
        let mut buf = vec![0, 0, 0, 1];
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&8u64.to_be_bytes());
        assert_eq!(BoxHeader::parse(&buf), Err(ErrorKind::BadSize { size: 8 }));
    }

    #[test]
    fn size_zero_means_to_the_end() {
        let h = BoxHeader::parse(b"\0\0\0\0mdat")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.size, None);
        assert_eq!(h.body_len(100), 92);
    }
}
