//! The relay source `ws://HOST:PORT/ws/NAME`: pulls a stream from another websocketlivestream
//! server, over the same WebSocket protocol browsers use, and hands on its init segment and
//! fragments byte for byte. Chains of servers (origin, intermediates, edge) are relays of
//! relays.
//!
//! A relay of a ladder (`renditions` given for the relay stream, naming the upstream's rungs)
//! holds one connection per rung: the top rung on the stream's own URL, each lower one with
//! `?rendition=HEIGHT`, each dialled again on its own, so one rung lost upstream leaves the
//! others playing.
//!
//! An upstream that goes away is dialled again with bounded, jittered back-off while this
//! server's viewers stay connected; it resends its newest group of pictures, and what overlaps
//! what we already have is dropped (see [`Continuity`]). An upstream that sends something that
//! is not the protocol, or frames over the size limit, is cut off with a logged error.

use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use futures_util::StreamExt;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::supervisor::{Restartable, Retry, supervise};
use super::{
    Backoff, Continuity, Policy, Restart, RunEnd, SourceContext, SourceError, SourceEvent,
};
use tokio::sync::mpsc;

use super::ffmpeg::Rendition;
use crate::fmp4::{DEFAULT_MAX_BOX_SIZE, Fragment, InitSegment, Unit};
use crate::protocol;

/// No legitimate message is larger than the largest box the splitter accepts.
const MAX_MESSAGE: usize = DEFAULT_MAX_BOX_SIZE as usize;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An upstream this quiet is gone, even if its socket looks open (it pings every 30 s).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(45);

pub async fn run(url: String, rungs: Vec<Rendition>, ctx: SourceContext) {
    let lower = rungs.iter().enumerate().skip(1).map(|(rung, rendition)| {
        let url = rung_url(&url, &rendition.name());
        let ctx = ctx.clone();
        async move {
            let (events, mut rx) = mpsc::channel(64);
            let rung_ctx = SourceContext {
                events,
                ..ctx.clone()
            };
            let relay = one_upstream(url, &rung_ctx);
            // What the rung's connection reports goes to the stream as that rung's.
            let forward = async {
                while let Some(event) = rx.recv().await {
                    let event = match event {
                        SourceEvent::Init(init) => SourceEvent::Rendition {
                            rung,
                            unit: Unit::Init(init),
                        },
                        SourceEvent::Fragment(fragment) => SourceEvent::Rendition {
                            rung,
                            unit: Unit::Fragment(fragment),
                        },
                        SourceEvent::Restarting { error, .. }
                        | SourceEvent::Finished { error: Some(error) } => {
                            SourceEvent::RungDown { rung, error }
                        }
                        _ => continue,
                    };
                    if !ctx.send(event).await {
                        return;
                    }
                }
            };
            tokio::join!(relay, forward);
        }
    });
    let top = one_upstream(url.clone(), &ctx);
    tokio::join!(top, futures_util::future::join_all(lower));
}

/// One connection to `url`, dialled again whenever it is lost, until the stream stops.
async fn one_upstream(url: String, ctx: &SourceContext) {
    let retry = Retry {
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        cause: Restart::Upstream,
        lost: format!("upstream {} lost", super::spec::redact(&url)),
        again: "dialling again",
    };
    let relay = Relay {
        url,
        timeline: None,
    };
    supervise(relay, retry, Continuity::new(Policy::Resume), ctx).await;
    // The rung's sender goes with `ctx`'s clone when this returns: its forwarder ends.
}

/// `url` asking for rung `name` of the upstream's ladder (its query, a token say, kept).
fn rung_url(url: &str, name: &str) -> String {
    let (url, fragment) = match url.split_once('#') {
        Some((url, fragment)) => (url, format!("#{fragment}")),
        None => (url, String::new()),
    };
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}rendition={name}{fragment}")
}

/// One upstream, dialled again after each lost connection.
struct Relay {
    url: String,
    /// The upstream's timeline id, from its last init message.
    timeline: Option<String>,
}

impl Restartable for Relay {
    async fn run_once(&mut self, ctx: &SourceContext, continuity: &mut Continuity) -> RunEnd {
        session(&self.url, ctx, continuity, &mut self.timeline).await
    }
}

/// One connection to the upstream, until it ends.
async fn session(
    url: &str,
    ctx: &SourceContext,
    continuity: &mut Continuity,
    timeline: &mut Option<String>,
) -> RunEnd {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connector = match tls_connector(ctx.upstream_ca.as_deref()) {
        Ok(connector) => connector,
        Err(err) => return RunEnd::Failed(err),
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), false, Some(connector));
    // Logs and errors (which the API shows) name the upstream without its token.
    let shown = super::spec::redact(url);
    let url = shown.as_str();
    let mut socket = tokio::select! {
        connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match connected {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(err)) => return RunEnd::Failed(SourceError::Upstream(format!("cannot reach {url}: {}", refusal(err)))),
            Err(_) => return RunEnd::Failed(SourceError::Upstream(format!("no answer from {url} within {CONNECT_TIMEOUT:?}"))),
        },
        _ = ctx.cancel.cancelled() => return RunEnd::Stopped,
    };
    tracing::info!(upstream = %url, "connected to upstream");
    let mut init: Option<Arc<InitSegment>> = None;
    let mut awaiting_init = false;
    // Offsets count what this connection received, for error messages.
    let mut offset = 0u64;
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout(SILENCE_TIMEOUT, socket.next()) => match message {
                Ok(message) => message,
                Err(_) => return RunEnd::Failed(SourceError::Upstream(format!("upstream silent for {SILENCE_TIMEOUT:?}"))),
            },
            _ = ctx.cancel.cancelled() => {
                let _ = socket.close(None).await;
                return RunEnd::Stopped;
            }
        };
        let bytes = match message {
            None => {
                return RunEnd::Failed(SourceError::Upstream(
                    "upstream closed the connection".into(),
                ));
            }
            Some(Err(err)) => return RunEnd::Failed(connection_error(url, err)),
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                return RunEnd::Failed(SourceError::Upstream(format!(
                    "upstream closed the connection{why}"
                )));
            }
            Some(Ok(Message::Text(text))) => {
                match protocol::Message::from_json(text.as_str()) {
                    Ok(protocol::Message::Init(info)) => {
                        awaiting_init = true;
                        if timeline.is_some() && info.timeline != *timeline {
                            tracing::info!(upstream = %url, "the upstream started a new timeline");
                            continuity.timeline_changed();
                        }
                        *timeline = info.timeline;
                    }
                    Ok(protocol::Message::End) => {
                        return RunEnd::Failed(SourceError::Upstream(
                            "the upstream stream ended".into(),
                        ));
                    }
                    Ok(protocol::Message::Skipped { fragments }) => tracing::warn!(
                        upstream = %url,
                        fragments,
                        "this relay fell behind its upstream"
                    ),
                    Ok(protocol::Message::Expiring { expires_ms }) => tracing::warn!(
                        upstream = %url,
                        expires_ms,
                        "the upstream's token for this relay runs out soon; the relay will be closed then (give it a token that lasts longer)"
                    ),
                    Ok(
                        protocol::Message::Renewed { .. }
                        | protocol::Message::Rendition { .. }
                        | protocol::Message::Unknown,
                    ) => {
                        tracing::debug!(upstream = %url, "ignored message {}", text.as_str())
                    }
                    Err(err) => {
                        return RunEnd::Failed(cut_off(
                            url,
                            format!("a text message that is not the protocol ({err})"),
                        ));
                    }
                }
                continue;
            }
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(_)) => continue,
        };
        let len = bytes.len() as u64;
        let event = if awaiting_init {
            awaiting_init = false;
            match InitSegment::parse(bytes, offset) {
                Ok(parsed) => {
                    continuity.on_init(&parsed);
                    let parsed = Arc::new(parsed);
                    init = Some(parsed.clone());
                    SourceEvent::Init(parsed)
                }
                Err(err) => {
                    return RunEnd::Failed(cut_off(url, format!("a broken init segment: {err}")));
                }
            }
        } else {
            let Some(current) = init.as_ref() else {
                return RunEnd::Failed(cut_off(url, "media before an init segment".into()));
            };
            let fragment = match Fragment::parse(bytes, offset, current) {
                Ok(fragment) => fragment,
                Err(err) => {
                    return RunEnd::Failed(cut_off(url, format!("a broken fragment: {err}")));
                }
            };
            match continuity.apply(fragment) {
                Ok(Some(fragment)) => SourceEvent::Fragment(fragment),
                Ok(None) => {
                    offset += len;
                    continue;
                }
                Err(err) => return RunEnd::Failed(SourceError::Timeline(err)),
            }
        };
        offset += len;
        if !ctx.send(event).await {
            let _ = socket.close(None).await;
            return RunEnd::Stopped;
        }
    }
}

/// A failed handshake, with what the upstream said when it refused (a missing rung, a bad
/// token), which its status alone does not tell.
fn refusal(err: tungstenite::Error) -> String {
    if let tungstenite::Error::Http(response) = &err {
        let said = response
            .body()
            .as_deref()
            .map(String::from_utf8_lossy)
            .map(|text| text.trim().chars().take(300).collect::<String>())
            .unwrap_or_default();
        if !said.is_empty() {
            return format!("{err}: {said}");
        }
    }
    err.to_string()
}

/// How `wss://` upstreams are checked: the public roots (webpki-roots), and the CA in
/// `ca_file` if there is one (a private CA, or a server's self-signed certificate itself).
fn tls_connector(ca_file: Option<&Path>) -> Result<Connector, SourceError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| SourceError::Io {
            what: format!("the upstream CA {}", path.display()),
            source,
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(SourceError::Upstream(format!(
                "the upstream CA {} holds no usable certificate",
                path.display()
            )));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SourceError::Upstream(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// A broken connection is news; an upstream breaking the protocol (frames over the size
/// limit, bad framing) is cut off.
fn connection_error(url: &str, err: tungstenite::Error) -> SourceError {
    use tungstenite::error::{Error, ProtocolError};
    match err {
        Error::Capacity(_)
        | Error::Utf8(_)
        | Error::AttackAttempt
        | Error::Protocol(
            ProtocolError::InvalidOpcode(_)
            | ProtocolError::MaskedFrameFromServer
            | ProtocolError::NonZeroReservedBits
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_)
            | ProtocolError::UnexpectedContinueFrame
            | ProtocolError::ExpectedFragment(_),
        ) => cut_off(
            url,
            format!("a frame against the protocol or its size limit ({err})"),
        ),
        other => SourceError::Upstream(format!("the connection broke: {other}")),
    }
}

/// Logs why an upstream is being cut off and returns the error.
fn cut_off(url: &str, what: String) -> SourceError {
    tracing::error!(upstream = %url, "cutting off the upstream: it sent {what}");
    SourceError::CutOff(what)
}
