//! `/ws/{name}`: one task per viewer over the hub's shared fragments.
//!
//! The protocol (SPEC.md): a text `init` message, the init segment as one binary frame, then
//! each fragment as one binary frame, starting at a key frame. A viewer that falls behind is
//! told `skipped` and moved to the next key frame; a new init repeats the first two steps; the
//! end of the stream is `end` and close code 1000. Everything pending for a viewer is written
//! in one flush, which is what keeps thousands of sockets cheap.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tracing::Instrument;

use super::{ApiError, AppState};
use crate::stream::{Delivery, MediaInit, Stream, unix_millis};

/// An idle socket is pinged this often (SPEC.md, step 7).
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Viewers send us nothing of size; anything large is an abuse.
const MAX_INCOMING_MESSAGE: usize = 64 * 1024;
/// At most this much is written per flush, so one viewer's backlog cannot hog its task.
const MAX_BATCH_BYTES: usize = 1 << 20;

pub async fn upgrade(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // An unknown stream is 404 before anything about the upgrade is looked at.
    let stream = app
        .streams
        .get(&name)
        .cloned()
        .ok_or(ApiError::NotFound("stream"))?;
    check_origin(&headers)?;
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let shutdown = app.shutdown.clone();
    let span = tracing::info_span!("viewer", stream = %name);
    Ok(ws
        .max_message_size(MAX_INCOMING_MESSAGE)
        .max_frame_size(MAX_INCOMING_MESSAGE)
        .on_upgrade(move |socket| serve(socket, stream, shutdown).instrument(span)))
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

async fn serve(
    socket: WebSocket,
    stream: Arc<Stream>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let hub = &stream.hub;
    let joined = std::time::Instant::now();
    let mut subscription = hub.subscribe();
    tracing::debug!(viewers = hub.viewers(), "viewer joined");
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    let mut sent_since_ping = false;
    let close = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
            message = incoming.next() => match message {
                // Pongs and pings are answered by the protocol layer; text is not ours to act on.
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    tracing::debug!(%err, "viewer socket failed");
                    break None;
                }
            },
            _ = ping.tick() => {
                if !sent_since_ping && sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
                sent_since_ping = false;
            }
            first = subscription.next() => {
                let mut batch_bytes = 0usize;
                let mut sent_fragments = Vec::new();
                let mut next = Some(first);
                let mut ended = false;
                let mut failed = false;
                while let Some(delivery) = next.take() {
                    let (messages, bytes) = messages_for(&delivery, hub.timeline());
                    if matches!(delivery, Delivery::End) {
                        ended = true;
                    }
                    for message in messages {
                        if sink.feed(message).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed || ended {
                        break;
                    }
                    if let Delivery::Skipped(n) = delivery {
                        hub.counters.skips.fetch_add(1, Ordering::Relaxed);
                        hub.counters.skipped_fragments.fetch_add(n, Ordering::Relaxed);
                        tracing::debug!(fragments = n, "slow viewer moved to the next key frame");
                    }
                    if let Delivery::Fragment(fragment) = &delivery {
                        hub.counters.fragments_out.fetch_add(1, Ordering::Relaxed);
                        hub.counters.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
                        sent_fragments.push(fragment.received);
                    }
                    batch_bytes += bytes;
                    if batch_bytes < MAX_BATCH_BYTES {
                        next = subscription.try_next();
                    }
                }
                if failed || sink.flush().await.is_err() {
                    break None;
                }
                // Ingest to send: from the hub taking the fragment to its bytes handed to the
                // kernel (the GOP a new viewer starts with is not a delay and is left out).
                for received in sent_fragments {
                    if received > joined {
                        hub.counters.send_delay.observe(received.elapsed());
                    }
                }
                sent_since_ping = true;
                if ended {
                    break Some((close_code::NORMAL, "stream ended"));
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    hub.unsubscribe();
    tracing::debug!(viewers = hub.viewers(), "viewer left");
}

/// The WebSocket messages for one delivery, and the media bytes they carry.
fn messages_for(delivery: &Delivery, timeline: &str) -> (Vec<Message>, usize) {
    match delivery {
        Delivery::Init(init) => {
            let bytes = init.segment.bytes.clone();
            let len = bytes.len();
            (
                vec![
                    Message::Text(init_message(init, timeline).into()),
                    Message::Binary(bytes),
                ],
                len,
            )
        }
        Delivery::Fragment(fragment) => {
            let bytes = fragment.fragment.bytes.clone();
            let len = bytes.len();
            (vec![Message::Binary(bytes)], len)
        }
        Delivery::Skipped(n) => (
            vec![Message::Text(
                json!({"type": "skipped", "fragments": n})
                    .to_string()
                    .into(),
            )],
            0,
        ),
        Delivery::End => (
            vec![Message::Text(json!({"type": "end"}).to_string().into())],
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
