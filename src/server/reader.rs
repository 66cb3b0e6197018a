//! The task that reads one viewer's socket: pings are answered, a close is echoed, a new
//! token is checked and answered, other data is ignored, a frame against the protocol closes the viewer; a broken or finished connection
//! is reported to the viewer's shard, which does all the writing.

use std::sync::Arc;

use std::io::Read as _;

use bytes::BytesMut;

use super::frame;
use super::viewer::{Connection, Nonblocking};
use crate::protocol::{self, ClientMessage, Message};

/// Viewers send us nothing of size; anything larger is an abuse.
const MAX_INCOMING_FRAME: usize = 16 * 1024;

/// Reads until the connection ends or the shard lets the viewer go. `incoming` holds what
/// the viewer sent after its handshake, if anything.
pub async fn read_viewer(connection: Arc<Connection>, mut incoming: BytesMut) {
    loop {
        if answer_client(&connection, &mut incoming) {
            return;
        }
        match read_some(&connection, &mut incoming) {
            Ok(0) => {
                connection.gone();
                return;
            }
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                connection.gone();
                return;
            }
        }
        tokio::select! {
            _ = connection.done.cancelled() => return,
            ready = connection.tcp.readable() => if ready.is_err() {
                connection.gone();
                return;
            },
        }
    }
}

/// What the viewer sent that can be read now, through its TLS session if it has one;
/// `WouldBlock` when there is nothing, `Ok(0)` at its end.
fn read_some(connection: &Connection, incoming: &mut BytesMut) -> std::io::Result<usize> {
    if incoming.capacity() - incoming.len() < 256 {
        incoming.reserve(1024);
    }
    let Some(tls) = &connection.tls else {
        return connection.tcp.try_read_buf(incoming);
    };
    let mut session = tls.lock().unwrap_or_else(|e| e.into_inner());
    let mut plain = [0u8; 4096];
    loop {
        match session.reader().read(&mut plain) {
            Ok(0) => return Ok(0),
            Ok(n) => {
                incoming.extend_from_slice(&plain[..n]);
                return Ok(n);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        if session.read_tls(&mut Nonblocking(&connection.tcp))? == 0 {
            return Ok(0);
        }
        let processed = session.process_new_packets();
        if session.wants_write() {
            // An alert, or an answer to a key update: the shard sends it.
            connection.wake();
        }
        if let Err(err) = processed {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, err));
        }
    }
}

/// Answers a viewer's text message; a close frame if the viewer is to be closed. The only
/// messages viewers send are a new token ([`ClientMessage::Token`]) and a rung to be sent
/// ([`ClientMessage::Rendition`]); others are ignored.
fn answer_message(connection: &Connection, payload: &[u8]) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(payload).ok()?;
    let token = match ClientMessage::from_json(text) {
        Ok(ClientMessage::Token { token }) => token,
        Ok(ClientMessage::Rendition { name }) => {
            // The shard acts on it at the viewer's next turn.
            connection.ask_rendition(name);
            return None;
        }
        _ => return None,
    };
    // A stream that needs no token has nothing to renew.
    let expiry = connection.expiry.as_ref()?;
    match expiry.renew(&token) {
        Ok(expires_ms) => {
            let renewed = Message::Renewed { expires_ms }.to_json();
            connection.send_control(frame::whole(frame::OPCODE_TEXT, renewed.as_bytes()));
            None
        }
        Err(denied) => Some(frame::close(denied.close_code(), &denied.to_string())),
    }
}

/// Answers the whole frames in `incoming`; true once the viewer is being closed.
fn answer_client(connection: &Connection, incoming: &mut BytesMut) -> bool {
    loop {
        match frame::read_client_frame(incoming, MAX_INCOMING_FRAME) {
            Ok(Some(f)) => match f.opcode {
                frame::OPCODE_PING => {
                    connection.send_control(frame::whole(frame::OPCODE_PONG, &f.payload));
                }
                frame::OPCODE_CLOSE => {
                    // Echo the viewer's code, as RFC 6455 §5.5.1 asks.
                    connection.close_with(frame::whole(frame::OPCODE_CLOSE, &f.payload));
                    return true;
                }
                frame::OPCODE_TEXT if f.fin => {
                    if let Some(close) = answer_message(connection, &f.payload) {
                        connection.close_with(close);
                        return true;
                    }
                }
                _ => {}
            },
            Ok(None) => {
                // What is left is the start of a frame: keep the buffer small.
                if incoming.is_empty() && incoming.capacity() > 4 * MAX_INCOMING_FRAME {
                    *incoming = BytesMut::with_capacity(256);
                }
                return false;
            }
            Err(err) => {
                let (code, reason) = match err {
                    frame::FrameError::Unmasked => (
                        protocol::CLOSE_PROTOCOL_ERROR,
                        "client frames must be masked",
                    ),
                    frame::FrameError::TooBig(_) => (protocol::CLOSE_TOO_BIG, "message too big"),
                };
                connection.close_with(frame::close(code, reason));
                return true;
            }
        }
    }
}
