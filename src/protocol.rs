//! The WebSocket protocol of `/ws/{name}`, spoken by the server to every viewer and read by
//! relays (a relay is a viewer of its upstream). Pure: message types and their JSON, no I/O.
//!
//! On the wire (SPEC.md, "WebSocket protocol"):
//! 1. a text frame holding [`Message::Init`];
//! 2. a binary frame: the init segment, byte for byte what `/dash/{name}/init.mp4` serves;
//! 3. binary frames of media, each a whole number of top-level boxes
//!    (`[styp] [prft] moof mdat`), the first at a key frame;
//! 4. [`Message::Skipped`] before the key frame a slow viewer is moved forward to;
//! 5. on a new init, steps 1 and 2 again on the same socket;
//! 6. [`Message::End`] and close code [`CLOSE_NORMAL`] when the stream ends;
//! 7. a ping on an idle socket every [`PING_INTERVAL`];
//! 8. on a stream that needs a token: a viewer refused at the door is closed at once with
//!    [`CLOSE_UNAUTHORIZED`], [`CLOSE_FORBIDDEN`] or [`CLOSE_TOKEN_EXPIRED`];
//!    [`Message::Expiring`] comes [`EXPIRY_WARNING`] before its token runs out; the viewer may
//!    send [`ClientMessage::Token`] with a new one, answered [`Message::Renewed`]; a token
//!    that runs out closes the socket with [`CLOSE_TOKEN_EXPIRED`], a renewal refused with
//!    the code of its reason.
//!
//! Text messages are JSON objects told apart by their `"type"`. A reader ignores types it does
//! not know, so that a newer server can add messages without breaking older relays.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An idle socket is pinged this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Close codes (RFC 6455 §7.4.1) the server sends.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// No token, or one that is not valid (bad signature, malformed, unknown key).
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// A valid token that does not name this stream, or not the action.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// The token has expired (at the door, or while watching without a renewal).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4410;

/// The publisher's socket (`/ws/publish/NAME`): the stream takes no publishers.
pub const CLOSE_NOT_PUBLISHABLE: u16 = 4404;
/// The publisher's socket: the stream has a publisher, or another one took over.
pub const CLOSE_BUSY: u16 = 4409;
/// The publisher's socket: what it sent is not the framing or not usable media.
pub const CLOSE_BAD_MEDIA: u16 = 4400;

/// How long before its token runs out a viewer is sent [`Message::Expiring`] (or at once,
/// when less is left).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30);

/// A text message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Message {
    /// An init segment follows as the next binary frame.
    Init(InitInfo),
    /// This many fragments were left out; the next media frame starts at a key frame.
    Skipped { fragments: u64 },
    /// The stream has ended; the server closes with [`CLOSE_NORMAL`].
    End,
    /// The viewer's token runs out at `expires_ms` (Unix ms): send a new one.
    Expiring { expires_ms: u64 },
    /// A new token was accepted; it runs out at `expires_ms`.
    Renewed { expires_ms: u64 },
    /// The rung of the stream's ladder this viewer is sent from now on (its init follows),
    /// whether the server picks it (`auto`), and the ladder's rungs, top first.
    Rendition {
        name: String,
        auto: bool,
        renditions: Vec<String>,
    },
    /// A message of a type this build does not know (read side only).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// What the `init` message says about the init segment that follows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InitInfo {
    /// Goes straight into `MediaSource.isTypeSupported` / `addSourceBuffer`:
    /// `video/mp4; codecs="avc1.64001f,mp4a.40.2"`.
    pub mime: String,
    /// The codecs alone, comma-separated.
    pub codecs: String,
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// Counts inits since the stream started.
    pub generation: u64,
    /// The server's wall clock when it sent this (Unix ms).
    pub server_time_ms: u64,
    /// The id of the stream's timeline: a relay that reconnects and finds the same id resumes
    /// where it was; another id means the upstream started over.
    pub timeline: Option<String>,
}

/// A text message from a viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    /// A new token for this viewer, before its current one runs out.
    Token { token: String },
    /// Send this rung of the stream's ladder (`360`), or let the server pick (`auto`).
    Rendition { name: String },
    #[serde(other, skip_serializing)]
    Unknown,
}

impl ClientMessage {
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl Message {
    /// The message as the text of a frame.
    pub fn to_json(&self) -> String {
        // A message is plain data (strings and numbers): it always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A text frame's message; an error if it is not JSON or not a message.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_and_carry_the_spec_fields() {
        let init = Message::Init(InitInfo {
            mime: "video/mp4; codecs=\"avc1.64001f,mp4a.40.2\"".into(),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            width: Some(1280),
            height: Some(720),
            generation: 2,
            server_time_ms: 1_700_000_000_000,
            timeline: Some("abc".into()),
        });
        let text = init.to_json();
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["type"], "init");
        assert_eq!(value["mime"], "video/mp4; codecs=\"avc1.64001f,mp4a.40.2\"");
        assert_eq!(value["width"], 1280);
        assert_eq!(Message::from_json(&text).expect("reads back"), init);
        assert_eq!(
            Message::Skipped { fragments: 7 }.to_json(),
            r#"{"type":"skipped","fragments":7}"#
        );
        assert_eq!(Message::End.to_json(), r#"{"type":"end"}"#);
        assert_eq!(
            Message::Expiring { expires_ms: 5 }.to_json(),
            r#"{"type":"expiring","expires_ms":5}"#
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"type":"token","token":"a.b.c"}"#).expect("reads"),
            ClientMessage::Token {
                token: "a.b.c".into()
            }
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"type":"hello"}"#).expect("reads"),
            ClientMessage::Unknown
        );
    }

    #[test]
    fn unknown_types_are_told_apart_from_what_is_not_a_message() {
        assert_eq!(
            Message::from_json(r#"{"type":"someday","until":5}"#).expect("a message"),
            Message::Unknown
        );
        assert!(Message::from_json("not json").is_err());
        assert!(Message::from_json(r#"{"no":"type"}"#).is_err());
    }
}
