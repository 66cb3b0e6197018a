//! Four-character codes: the type of every box (ISO/IEC 14496-12 §4.2).

use std::fmt;

/// A box type such as `moof`, kept as its four raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FourCC(pub [u8; 4]);

impl FourCC {
    pub const fn new(code: &[u8; 4]) -> Self {
        Self(*code)
    }

    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    pub const fn from_u32(code: u32) -> Self {
        Self(code.to_be_bytes())
    }
}

impl fmt::Display for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            // Checked above: every byte is printable ASCII.
            for b in self.0 {
                write!(f, "{}", b as char)?;
            }
            Ok(())
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

impl fmt::Debug for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCC({self})")
    }
}

impl From<&[u8; 4]> for FourCC {
    fn from(code: &[u8; 4]) -> Self {
        Self(*code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_ascii_codes_as_text_and_others_as_hex() {
        assert_eq!(FourCC::new(b"moof").to_string(), "moof");
        assert_eq!(FourCC::new(b"url ").to_string(), "url ");
        assert_eq!(FourCC([0, 1, 2, 3]).to_string(), "0x00010203");
    }
}
