//! `/ws/{name}`: the WebSocket handshake, after which the connection belongs to the stream's
//! [`Fanout`](super::fanout::Fanout).
//!
//! What is said on the socket afterwards is [`crate::protocol`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::auth::{self, Action, Denied};
use super::frame;
use super::limits::AddressSlot;
use super::viewer::Transport;
use super::{ApiError, AppState};
use crate::stream::Stream;

/// How many viewers the server, and each stream, may have.
#[derive(Debug, Default)]
pub struct ViewerLimits {
    pub total: AtomicU64,
    pub max_total: Option<u64>,
}

/// A viewer's place in the server's and its stream's counts, given back when it goes.
pub struct Slot {
    limits: Arc<ViewerLimits>,
    stream: Option<Arc<Stream>>,
    /// Its connection's place in its address's count, kept for as long as the viewer stays.
    _address: Option<Arc<AddressSlot>>,
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
    fn admit(
        self: &Arc<Self>,
        stream: &Arc<Stream>,
        address: Option<Arc<AddressSlot>>,
    ) -> Result<Slot, ApiError> {
        let server_now = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let mut slot = Slot {
            limits: self.clone(),
            stream: None,
            _address: address,
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
    let mut fanout = app.fanout(&name).ok_or(ApiError::NotFound("stream"))?;
    let stream = fanout.stream().clone();
    // A ladder's viewer has a seat among its rungs: `?rendition=360` starts on that rung and
    // stays there (until it asks for another), `?rendition=auto` lets the server move it
    // between rungs as its link allows; without the parameter a browser (which always sends
    // an Origin) gets `auto`, and anything else, a relay say, the top rung.
    let asked = request.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "rendition")
            .map(|(_, v)| v.to_string())
    });
    let mut seat = None;
    if stream.renditions.len() > 1 {
        let names: Vec<String> = stream.renditions.iter().map(|r| r.name.clone()).collect();
        let current = match asked.as_deref() {
            None | Some("auto") => 0,
            Some(rung) => names.iter().position(|n| n == rung).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "stream {name} has no rendition {rung:?} (it has {})",
                    names.join(", ")
                ))
            })?,
        };
        let auto = match asked.as_deref() {
            Some("auto") => true,
            Some(_) => false,
            None => request.headers().contains_key(axum::http::header::ORIGIN),
        };
        let rungs: Vec<Arc<super::fanout::Fanout>> = stream
            .renditions
            .iter()
            .map(|r| app.fanout(&r.stream).ok_or(ApiError::NotFound("stream")))
            .collect::<Result<_, _>>()?;
        fanout = rungs[current].clone();
        seat = Some(super::viewer::Seat::new(
            rungs.into(),
            names.into(),
            current,
            auto,
        ));
    } else if let Some(asked) = asked.filter(|a| a != "auto") {
        return Err(ApiError::BadRequest(format!(
            "stream {name} has no renditions (asked for {asked:?})"
        )));
    }
    let headers = request.headers();
    check_origin(headers)?;
    let key = handshake_key(headers)?;
    let token = auth::token_of(headers, request.uri().query());
    let grant = app
        .auth
        .allow(stream.read, &name, Action::Read, token.as_deref());
    let grant = match grant {
        Ok(grant) => grant,
        // A browser cannot read the status of a refused handshake, only a close code: the
        // socket is opened and closed at once with the code of the reason.
        Err(denied) => return refuse_after_upgrade(&app, request, &key, &name, denied),
    };
    let expiry = grant
        .expires_ms
        .map(|ms| auth::Expiry::new(app.auth.clone(), name.clone(), stream.read, ms));
    let address = request.extensions().get::<Arc<AddressSlot>>().cloned();
    let slot = app.viewer_limits.admit(&stream, address).inspect_err(|_| {
        app.refusals
            .viewer_limit
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::BadRequest("this connection cannot be upgraded".into()))?;
    // The viewer's span is entered to log, not around every write: with thousands of
    // viewers, entering a span per write is measurable.
    let span = tracing::info_span!("viewer", stream = %name);
    app.tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return span.in_scope(|| tracing::debug!(%err, "upgrade failed")),
        };
        // Our own accept loop serves HTTP/1 straight over the TCP stream (or its TLS
        // stream), so the upgraded connection is that stream again: the fan-out writes to
        // the socket itself.
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let transport = Transport::Plain(parts.io.into_inner());
                return fanout.join(transport, parts.read_buf, slot, expiry, span, seat);
            }
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let (tcp, session) = parts.io.into_inner().into_inner();
                fanout.join(
                    Transport::Tls(tcp, Box::new(session)),
                    parts.read_buf,
                    slot,
                    expiry,
                    span,
                    seat,
                )
            }
            Err(_) => span.in_scope(|| {
                tracing::error!("upgraded connection is not a TCP or TLS stream; viewer dropped")
            }),
        }
    });
    switching_protocols(&key)
}

/// The answer that completes a handshake.
pub(super) fn switching_protocols(key: &str) -> Result<Response, ApiError> {
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

/// Completes the handshake of a viewer that is not let in, then sends it a close frame with
/// the code of `denied` and nothing else.
fn refuse_after_upgrade(
    app: &AppState,
    request: Request,
    key: &str,
    name: &str,
    denied: Denied,
) -> Result<Response, ApiError> {
    let span = tracing::info_span!("viewer", stream = %name);
    span.in_scope(|| tracing::debug!(reason = %denied, "viewer refused"));
    let code = denied.close_code();
    close_after_upgrade(app, request, key, code, &denied.to_string())
        .ok_or(ApiError::Denied(denied))?
}

/// Completes a handshake only to close the socket at once with `code` and `reason` (a browser
/// sees no HTTP status, only a close code). `None` if the request cannot be upgraded.
pub(super) fn close_after_upgrade(
    app: &AppState,
    mut request: Request,
    key: &str,
    code: u16,
    reason: &str,
) -> Option<Result<Response, ApiError>> {
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()?;
    let close = frame::close(code, reason);
    app.tracker.spawn(async move {
        use tokio::io::AsyncWriteExt;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            let _ = io.write_all(&close).await;
            let _ = io.shutdown().await;
        })
        .await;
    });
    Some(switching_protocols(key))
}

/// How long a refused viewer's socket may take to take its close frame.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The client's key, if the request is a WebSocket handshake (RFC 6455 §4.2.1).
pub(super) fn handshake_key(headers: &HeaderMap) -> Result<String, ApiError> {
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
pub(super) fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
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
