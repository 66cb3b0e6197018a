//! WebSocket framing (RFC 6455 §5), the little of it a server that mostly sends needs:
//! headers for unmasked server frames, so a fragment's payload goes to every socket as the
//! very buffer the hub holds, and a reader for the masked control frames viewers send.

use bytes::{Buf, Bytes, BytesMut};

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xa;

/// The header of an unmasked, final frame: at most 10 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    pub fn new(opcode: u8, payload_len: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | (opcode & 0x0f);
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        Self { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A whole frame in one buffer, for what one viewer is sent of its own (a text message, a
/// control frame).
pub fn whole(opcode: u8, payload: &[u8]) -> Bytes {
    let header = Header::new(opcode, payload.len());
    let mut out = BytesMut::with_capacity(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// The longest close reason: a control frame carries at most 125 bytes, two of them the code.
const MAX_CLOSE_REASON: usize = 123;

/// A close frame with a code (RFC 6455 §7.4.1) and a reason, cut (at a character) to what a
/// close frame can carry.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    whole(OPCODE_CLOSE, &payload)
}

/// A whole frame from a client, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Why a client's bytes are not a frame we accept.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 §5.1: a client must mask every frame.
    Unmasked,
    /// Over the size a viewer has any reason to send.
    TooBig(u64),
}

/// The next whole client frame in `buf`, consumed; `Ok(None)` until one is complete.
pub fn read_client_frame(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<ClientFrame>, FrameError> {
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(raw) => (u64::from(u16::from_be_bytes([raw[0], raw[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(raw) => {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(raw);
                (u64::from_be_bytes(eight), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > max_len as u64 {
        return Err(FrameError::TooBig(len));
    }
    // Checked above: the length fits in usize.
    let len = len as usize;
    let Some(mask) = buf.get(at..at + 4).map(|m| [m[0], m[1], m[2], m[3]]) else {
        return Ok(None);
    };
    at += 4;
    let Some(masked) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = masked
        .iter()
        .enumerate()
        .map(|(i, byte)| byte ^ mask[i % 4])
        .collect();
    buf.advance(at + len);
    Ok(Some(ClientFrame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_close_reason_is_cut_to_fit_a_control_frame() {
        let long = "é".repeat(100);
        let frame = close(4401, &long);
        assert_eq!(frame[0], 0x88);
        assert!(usize::from(frame[1]) <= 125, "{}", frame[1]);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(Header::new(OPCODE_BINARY, 5).as_bytes(), [0x82, 5]);
        assert_eq!(Header::new(OPCODE_TEXT, 125).as_bytes(), [0x81, 125]);
        assert_eq!(
            Header::new(OPCODE_BINARY, 126).as_bytes(),
            [0x82, 126, 0, 126]
        );
        assert_eq!(
            Header::new(OPCODE_BINARY, 65_535).as_bytes(),
            [0x82, 126, 0xff, 0xff]
        );
        assert_eq!(
            Header::new(OPCODE_BINARY, 65_536).as_bytes(),
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    fn masked(opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0x80 | opcode, 0x80 | payload.len() as u8]);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn reads_masked_client_frames_in_pieces() {
        let whole = masked(OPCODE_PING, b"Hello");
        let mut buf = BytesMut::new();
        for byte in &whole[..whole.len() - 1] {
            buf.extend_from_slice(&[*byte]);
            assert_eq!(read_client_frame(&mut buf, 1024), Ok(None));
        }
        buf.extend_from_slice(&whole[whole.len() - 1..]);
        let frame = read_client_frame(&mut buf, 1024)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            frame,
            ClientFrame {
                fin: true,
                opcode: OPCODE_PING,
                payload: b"Hello".to_vec()
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_unmasked_and_oversized_frames() {
        let mut buf = BytesMut::from(&[0x81u8, 0x02, b'h', b'i'][..]);
        assert_eq!(read_client_frame(&mut buf, 1024), Err(FrameError::Unmasked));
        let mut buf = BytesMut::from(&[0x82u8, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0][..]);
        assert_eq!(
            read_client_frame(&mut buf, 1024),
            Err(FrameError::TooBig(0x1000_0000))
        );
    }
}
