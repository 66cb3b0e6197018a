//! `/ws/{name}`: one task per viewer over the hub's shared fragments.
//!
//! The protocol (SPEC.md): a text `init` message, the init segment as one binary frame, then
//! each fragment as one binary frame, starting at a key frame. A viewer that falls behind is
//! told `skipped` and moved to the next key frame; a new init repeats the first two steps; the
//! end of the stream is `end` and close code 1000.
//!
//! The upgraded connection is written directly: a server frame is a 2 to 10 byte header and a
//! payload, and the payload is the very buffer the hub holds, so a viewer costs no copy of the
//! media. Everything pending for a viewer goes out in one vectored write, which is what keeps
//! thousands of sockets cheap (a socket that is behind catches up in one system call). Viewers
//! send next to nothing; their frames are read through a small buffer.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Header};
use super::{ApiError, AppState};
use crate::stream::{Delivery, MediaInit, Stream, unix_millis};

/// An idle socket is pinged this often (SPEC.md, step 7).
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Viewers send us nothing of size; anything larger is an abuse.
const MAX_INCOMING_FRAME: usize = 16 * 1024;
/// At most this much is written per batch, so one viewer's backlog cannot hog its task.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Frames per vectored write: two slices each, within IOV_MAX (1024).
const MAX_FRAMES_PER_WRITE: usize = 256;

/// How many viewers the server, and each stream, may have.
#[derive(Debug, Default)]
pub struct ViewerLimits {
    pub total: AtomicU64,
    pub max_total: Option<u64>,
}

/// A viewer's place in the server's and its stream's counts, given back when it goes.
struct Slot {
    limits: Arc<ViewerLimits>,
    stream: Option<Arc<Stream>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(stream) = &self.stream {
            stream.admitted.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ViewerLimits {
    /// Takes a place for a viewer of `stream`, or says why there is none. Counts go up first
    /// and come back down (by the slot's drop) when over, so that viewers arriving at once
    /// cannot all slip under a limit.
    fn admit(self: &Arc<Self>, stream: &Arc<Stream>) -> Result<Slot, ApiError> {
        let server_now = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let mut slot = Slot {
            limits: self.clone(),
            stream: None,
        };
        let stream_now = stream.admitted.fetch_add(1, Ordering::Relaxed) + 1;
        slot.stream = Some(stream.clone());
        if let Some(max) = stream.max_viewers
            && stream_now > max
        {
            return Err(ApiError::Busy(format!(
                "stream {} has its maximum of {max} viewers",
                stream.name
            )));
        }
        if let Some(max) = self.max_total
            && server_now > max
        {
            return Err(ApiError::Busy(format!(
                "the server has its maximum of {max} viewers"
            )));
        }
        Ok(slot)
    }
}

pub async fn upgrade(
    State(app): State<AppState>,
    Path(name): Path<String>,
    mut request: Request,
) -> Result<Response, ApiError> {
    // An unknown stream is 404 before anything about the upgrade is looked at.
    let stream = app
        .streams
        .get(&name)
        .cloned()
        .ok_or(ApiError::NotFound("stream"))?;
    let headers = request.headers();
    check_origin(headers)?;
    let key = handshake_key(headers)?;
    let slot = app.viewer_limits.admit(&stream)?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::BadRequest("this connection cannot be upgraded".into()))?;
    let shutdown = app.shutdown.clone();
    // The viewer's span is entered to log, not around every poll of its task: with thousands
    // of viewers, entering a span per poll is measurable.
    let span = tracing::info_span!("viewer", stream = %name);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), stream, shutdown, slot, span).await,
            Err(err) => span.in_scope(|| tracing::debug!(%err, "upgrade failed")),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| ApiError::BadRequest("bad Sec-WebSocket-Key".into()))?,
    );
    Ok(response)
}

/// The client's key, if the request is a WebSocket handshake (RFC 6455 §4.2.1).
fn handshake_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(ApiError::BadRequest(
            "this route takes WebSocket connections only".into(),
        ));
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(ApiError::BadRequest(
            "unsupported WebSocket version (13 expected)".into(),
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest("Sec-WebSocket-Key is missing".into()))
}

/// Browsers send `Origin`; a page from another site may not open our sockets. Clients that
/// are not browsers (relays, tools) send none and are let in.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest))
        .unwrap_or_default();
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("cross-origin WebSocket refused"))
    }
}

/// The text message that announces an init segment. Besides what SPEC.md names, it carries
/// the init's `generation`, the server's clock (`server_time_ms`) and the stream's `timeline`
/// id, which relays use to tell a resumed upstream from one that started over.
pub fn init_message(init: &MediaInit, timeline: &str) -> String {
    let segment = &init.segment;
    let video = segment.video();
    json!({
        "type": "init",
        "mime": segment.mime(),
        "codecs": segment.codecs(),
        "width": video.map(|v| v.width),
        "height": video.map(|v| v.height),
        "generation": init.generation,
        "server_time_ms": unix_millis(std::time::SystemTime::now()),
        "timeline": timeline,
    })
    .to_string()
}

/// A frame to send: its header and its payload (shared, never copied for a viewer).
struct Outgoing {
    header: Header,
    payload: Bytes,
}

impl Outgoing {
    fn new(opcode: u8, payload: Bytes) -> Self {
        Self {
            header: Header::new(opcode, payload.len()),
            payload,
        }
    }

    fn text(text: String) -> Self {
        Self::new(frame::OPCODE_TEXT, Bytes::from(text))
    }

    fn close(code: u16, reason: &str) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Self::new(frame::OPCODE_CLOSE, Bytes::from(payload))
    }
}

/// Writes every frame, as few system calls as the socket allows.
async fn write_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &[Outgoing],
) -> std::io::Result<()> {
    for chunk in frames.chunks(MAX_FRAMES_PER_WRITE) {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunk.len() * 2);
        for frame in chunk {
            slices.push(IoSlice::new(frame.header.as_bytes()));
            if !frame.payload.is_empty() {
                slices.push(IoSlice::new(&frame.payload));
            }
        }
        let mut remaining = &mut slices[..];
        while !remaining.is_empty() {
            let written = io.write_vectored(remaining).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut remaining, written);
        }
    }
    io.flush().await
}

/// Why a viewer's connection ends.
enum Ending {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The connection is gone or the viewer closed it: nothing more to say.
    Gone,
}

async fn serve<IO>(
    mut io: IO,
    stream: Arc<Stream>,
    shutdown: CancellationToken,
    _slot: Slot,
    span: tracing::Span,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let hub = &stream.hub;
    let joined = Instant::now();
    let mut subscription = hub.subscribe();
    span.in_scope(|| tracing::debug!(viewers = hub.viewers(), "viewer joined"));
    let mut incoming = BytesMut::with_capacity(256);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    let mut sent_since_ping = false;
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut sent: Vec<Instant> = Vec::new();
    // Made once, not per turn of the loop: a fresh `cancelled()` future registers with the
    // token, whose waiter list every viewer of the server shares, and leaves it again on drop.
    let shutdown = shutdown.cancelled();
    tokio::pin!(shutdown);
    let ending = loop {
        tokio::select! {
            _ = &mut shutdown => break Ending::Close(frame::CLOSE_GOING_AWAY, "server shutting down"),
            read = io.read_buf(&mut incoming) => match read {
                Ok(0) | Err(_) => break Ending::Gone,
                Ok(_) => match answer_client(&mut incoming) {
                    Ok(replies) => {
                        if !replies.is_empty() && write_frames(&mut io, &replies).await.is_err() {
                            break Ending::Gone;
                        }
                        if replies.iter().any(|r| r.header.as_bytes()[0] & 0x0f == frame::OPCODE_CLOSE) {
                            break Ending::Gone;
                        }
                    }
                    Err(ending) => break ending,
                },
            },
            _ = ping.tick() => {
                if !sent_since_ping
                    && write_frames(&mut io, &[Outgoing::new(frame::OPCODE_PING, Bytes::new())]).await.is_err()
                {
                    break Ending::Gone;
                }
                sent_since_ping = false;
            }
            first = subscription.next() => {
                let mut next = Some(first);
                let mut ended = false;
                let mut batch_bytes = 0usize;
                while let Some(delivery) = next.take() {
                    match delivery {
                        Delivery::Init(init) => {
                            batch.push(Outgoing::text(init_message(&init, hub.timeline())));
                            batch.push(Outgoing::new(frame::OPCODE_BINARY, init.segment.bytes.clone()));
                        }
                        Delivery::Fragment(fragment) => {
                            let bytes = fragment.fragment.bytes.clone();
                            batch_bytes += bytes.len();
                            hub.counters.fragments_out.fetch_add(1, Ordering::Relaxed);
                            hub.counters.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            sent.push(fragment.received);
                            batch.push(Outgoing::new(frame::OPCODE_BINARY, bytes));
                        }
                        Delivery::Skipped(n) => {
                            hub.counters.skips.fetch_add(1, Ordering::Relaxed);
                            hub.counters.skipped_fragments.fetch_add(n, Ordering::Relaxed);
                            span.in_scope(|| {
                                tracing::debug!(fragments = n, "slow viewer moved to the next key frame");
                            });
                            batch.push(Outgoing::text(json!({"type": "skipped", "fragments": n}).to_string()));
                        }
                        Delivery::End => {
                            batch.push(Outgoing::text(json!({"type": "end"}).to_string()));
                            ended = true;
                        }
                    }
                    if !ended && batch_bytes < MAX_BATCH_BYTES {
                        next = subscription.try_next();
                    }
                }
                if send_batch(&mut io, hub, &mut batch, &mut sent, joined).await.is_err() {
                    break Ending::Gone;
                }
                sent_since_ping = true;
                if ended {
                    break Ending::Close(frame::CLOSE_NORMAL, "stream ended");
                }
            }
        }
    };
    if let Ending::Close(code, reason) = ending {
        let _ = write_frames(&mut io, &[Outgoing::close(code, reason)]).await;
        let _ = io.shutdown().await;
    }
    hub.unsubscribe();
    span.in_scope(|| tracing::debug!(viewers = hub.viewers(), "viewer left"));
}

/// Writes a viewer's batch and empties it; counts the write and each fragment's ingest-to-send
/// delay (from the hub taking it to its bytes handed to the kernel; the GOP a new viewer
/// starts with is not a delay and is left out).
async fn send_batch<W: AsyncWrite + Unpin>(
    io: &mut W,
    hub: &crate::stream::Hub,
    batch: &mut Vec<Outgoing>,
    sent: &mut Vec<Instant>,
    joined: Instant,
) -> std::io::Result<()> {
    write_frames(io, batch).await?;
    hub.counters.socket_writes.fetch_add(1, Ordering::Relaxed);
    let written = Instant::now();
    for received in sent.iter() {
        if *received > joined {
            hub.counters
                .send_delay
                .observe(written.saturating_duration_since(*received));
        }
    }
    batch.clear();
    sent.clear();
    Ok(())
}

/// Reads what a viewer sent: pings are answered, a close is returned, data is ignored.
fn answer_client(incoming: &mut BytesMut) -> Result<Vec<Outgoing>, Ending> {
    let mut replies = Vec::new();
    loop {
        match frame::read_client_frame(incoming, MAX_INCOMING_FRAME) {
            Ok(Some(f)) => match f.opcode {
                frame::OPCODE_PING => {
                    replies.push(Outgoing::new(frame::OPCODE_PONG, Bytes::from(f.payload)))
                }
                frame::OPCODE_CLOSE => {
                    // Echo the viewer's code, as RFC 6455 §5.5.1 asks.
                    replies.push(Outgoing::new(frame::OPCODE_CLOSE, Bytes::from(f.payload)));
                    return Ok(replies);
                }
                _ => {}
            },
            Ok(None) => {
                // What is left is the start of a frame: keep the buffer small.
                if incoming.capacity() > 4 * MAX_INCOMING_FRAME && incoming.is_empty() {
                    *incoming = BytesMut::with_capacity(256);
                }
                return Ok(replies);
            }
            Err(frame::FrameError::Unmasked) => {
                return Err(Ending::Close(
                    frame::CLOSE_PROTOCOL_ERROR,
                    "client frames must be masked",
                ));
            }
            Err(frame::FrameError::TooBig(_)) => {
                return Err(Ending::Close(frame::CLOSE_TOO_BIG, "message too big"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        if let Some(origin) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("header"),
            );
        }
        h
    }

    #[test]
    fn same_origin_and_non_browsers_are_let_in_others_are_not() {
        assert!(check_origin(&headers("127.0.0.1:8080", None)).is_ok());
        assert!(check_origin(&headers("127.0.0.1:8080", Some("http://127.0.0.1:8080"))).is_ok());
        assert!(check_origin(&headers("cam.example:443", Some("https://cam.example:443"))).is_ok());
        assert!(check_origin(&headers("127.0.0.1:8080", Some("http://evil.example"))).is_err());
    }

    #[test]
    fn a_handshake_needs_upgrade_version_and_key() {
        let mut h = HeaderMap::new();
        assert!(handshake_key(&h).is_err());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(handshake_key(&h).is_err(), "no key");
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            handshake_key(&h).ok().as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        // RFC 6455 §1.3's example.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
