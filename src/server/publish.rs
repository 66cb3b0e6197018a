//! `PUT`/`POST /publish/{name}`: a publisher pushes FLV or fragmented MP4 in the request body
//! (`ffmpeg … -f flv -method PUT http://host/publish/NAME`, `curl -T - …`) to a stream whose
//! source is `publish`. The answer comes when the body ends, or when the publisher is cut off,
//! with the reason.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use tokio::sync::oneshot;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::auth::{self, Action};
use super::limits::AddressSlot;
use super::{ApiError, AppState};
use crate::fmp4::webcodecs;
use crate::protocol;
use crate::source::SourceError;
use crate::source::publish::{Publisher, PublisherInfo, now_ms};

/// A name no stream has yet is made a stream (with `publish = "any"`) only for the bearer of
/// a publish token naming it: nobody else makes streams.
pub(super) fn may_make(
    app: &AppState,
    name: &str,
    token: Option<&str>,
) -> Result<(), auth::Denied> {
    if app.streams.makes_new() && app.streams.get(name).is_none() {
        app.auth
            .allow(crate::stream::Access::Token, name, Action::Publish, token)
            .map(|_| ())
    } else {
        Ok(())
    }
}

pub async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let token = auth::token_of(request.headers(), query.as_deref());
    may_make(&app, &name, token.as_deref()).map_err(ApiError::Denied)?;
    let stream = app.streams.for_publisher(&name).map_err(|e| match e {
        crate::stream::NewStream::Unknown(_) => ApiError::NotFound("stream"),
        other => ApiError::Conflict(other.to_string()),
    })?;
    let Some(point) = stream.publish_point.clone() else {
        return Err(ApiError::Conflict(format!(
            "stream {name} is not fed by publishers (its source is {})",
            stream.source
        )));
    };
    app.auth
        .allow(stream.publish, &name, Action::Publish, token.as_deref())
        .map_err(ApiError::Denied)?;
    let address = request
        .extensions()
        .get::<Arc<AddressSlot>>()
        .map(|slot| slot.address());
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let (done, answer) = oneshot::channel();
    let publisher = Publisher {
        input: Box::new(tokio_util::io::StreamReader::new(body)),
        info: PublisherInfo {
            address,
            protocol: "http",
            since_ms: now_ms(),
        },
        done,
    };
    point
        .offer(publisher)
        .map_err(|refused| ApiError::Conflict(format!("stream {name}: {refused}")))?;
    let Ok(published) = answer.await else {
        return Err(ApiError::Busy(format!(
            "stream {name} stopped taking its publisher"
        )));
    };
    let status = match &published.error {
        None => StatusCode::OK,
        Some(SourceError::Publisher(_)) => StatusCode::CONFLICT,
        Some(SourceError::Io { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut => {
            StatusCode::REQUEST_TIMEOUT
        }
        Some(_) => StatusCode::BAD_REQUEST,
    };
    let text = match &published.error {
        None => format!("published {} bytes to {name}\n", published.bytes),
        Some(error) => format!("cut off after {} bytes: {error}\n", published.bytes),
    };
    let mut response = (status, Body::from(text)).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `/ws/publish/{name}`: the browser publisher's socket. Each binary message is one of
/// [`crate::fmp4::webcodecs`]'s; the server answers with a text message a second,
/// `{"type":"stats","viewers":N,"bytes":B}`. A publisher that is refused, or cut off, is
/// closed with a code: 4401/4403/4410 (its token), 4404 (no such publish stream), 4409 (the
/// stream has a publisher, or another took over), 4400 (not the framing, or media the stream
/// cannot use), the reason in the close frame.
pub async fn socket(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Result<Response, ApiError> {
    let token = auth::token_of(request.headers(), query.as_deref());
    if let Err(denied) = may_make(&app, &name, token.as_deref()) {
        let key = super::ws::handshake_key(request.headers())?;
        let (code, reason) = (denied.close_code(), denied.to_string());
        return super::ws::close_after_upgrade(&app, request, &key, code, &reason)
            .unwrap_or_else(|| Err(ApiError::Denied(denied)));
    }
    let stream = app.streams.for_publisher(&name).map_err(|e| match e {
        crate::stream::NewStream::Unknown(_) => ApiError::NotFound("stream"),
        other => ApiError::Conflict(other.to_string()),
    })?;
    let headers = request.headers();
    super::ws::check_origin(headers)?;
    let key = super::ws::handshake_key(headers)?;
    let refuse = |request, code, reason: &str| {
        tracing::info!(stream = %name, %reason, "browser publisher refused");
        super::ws::close_after_upgrade(&app, request, &key, code, reason)
            .unwrap_or_else(|| Err(ApiError::BadRequest(reason.to_string())))
    };
    let Some(point) = stream.publish_point.clone() else {
        let reason = format!("stream {name} is not fed by publishers");
        return refuse(request, protocol::CLOSE_NOT_PUBLISHABLE, &reason);
    };
    if let Err(denied) = app
        .auth
        .allow(stream.publish, &name, Action::Publish, token.as_deref())
    {
        return refuse(request, denied.close_code(), &denied.to_string());
    }
    let address = request
        .extensions()
        .get::<Arc<AddressSlot>>()
        .map(|slot| slot.address());
    let (tags, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(256);
    let (done, answer) = oneshot::channel();
    let input = tokio_util::io::StreamReader::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )));
    let offered = point.offer(Publisher {
        input: Box::new(input),
        info: PublisherInfo {
            address,
            protocol: "websocket",
            since_ms: now_ms(),
        },
        done,
    });
    if let Err(refused) = offered {
        return refuse(request, protocol::CLOSE_BUSY, &refused.to_string());
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return Err(ApiError::BadRequest(
            "this connection cannot be upgraded".into(),
        ));
    };
    let span = tracing::info_span!("publisher", stream = %name);
    app.tracker.spawn(tracing::Instrument::instrument(
        async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(webcodecs::MAX_MESSAGE))
                .max_frame_size(Some(webcodecs::MAX_MESSAGE));
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            publish_socket(socket, tags, answer, stream).await;
        },
        span,
    ));
    super::ws::switching_protocols(&key)
}

/// Reads the publisher's messages into the stream until either ends.
async fn publish_socket<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    tags: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    mut answer: oneshot::Receiver<crate::source::publish::Published>,
    stream: Arc<crate::stream::Stream>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let mut muxer = webcodecs::BrowserMuxer::default();
    let mut bytes = 0u64;
    let mut stats = tokio::time::interval(std::time::Duration::from_secs(1));
    let close = |code: u16, reason: String| {
        Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.chars().take(100).collect::<String>().into(),
        }))
    };
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    bytes += data.len() as u64;
                    match muxer.push(&data, std::time::SystemTime::now()) {
                        Ok(out) if out.is_empty() => {}
                        Ok(out) => {
                            if tags.send(Ok(out)).await.is_err() {
                                // The stream let go: its answer says why.
                                continue;
                            }
                        }
                        Err(err) => {
                            let reason = format!("not the publisher's framing: {err}");
                            let _ = tags
                                .send(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, reason.clone())))
                                .await;
                            let _ = socket.send(close(protocol::CLOSE_BAD_MEDIA, reason)).await;
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    // The publisher is done: the stream sees its input end.
                    drop(tags);
                    let _ = answer.await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    let broke = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the publisher's socket broke ({err})"),
                    );
                    let _ = tags.send(Err(broke)).await;
                    return;
                }
            },
            published = &mut answer => {
                let error = published.ok().and_then(|p| p.error);
                let (code, reason) = match &error {
                    Some(SourceError::Publisher(why)) if why.contains("took over") => {
                        (protocol::CLOSE_BUSY, why.clone())
                    }
                    Some(SourceError::Publisher(why)) => (protocol::CLOSE_GOING_AWAY, why.clone()),
                    Some(other) => (protocol::CLOSE_BAD_MEDIA, other.to_string()),
                    None => (protocol::CLOSE_NORMAL, "done".to_string()),
                };
                let _ = socket.send(close(code, reason)).await;
                return;
            }
            _ = stats.tick() => {
                let text = serde_json::json!({
                    "type": "stats",
                    "viewers": stream.hub.viewers(),
                    "bytes": bytes,
                })
                .to_string();
                if socket.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        }
    }
}
