//! RTMP ingest (`--rtmp-listen ADDR`): OBS, ffmpeg or any RTMP encoder publishing to
//! `rtmp://host/APP/NAME` (stream key `NAME`, or `NAME?token=…`) feeds the `publish` stream
//! `NAME`. The handshake and chunk stream are `rml_rtmp`'s; the audio and video messages are
//! FLV tags' bodies, so they are written back into an FLV byte stream and handed to the stream
//! like any other publisher's bytes: the same FLV reader and fragment writer as our own
//! ffmpeg's zero-wait ingest, a fragment per frame, nothing waited for.
//!
//! The app name is not checked. A publisher refused (unknown stream, not a publish stream,
//! no valid token, the stream busy) gets RTMP's error status and the connection is closed;
//! one cut off by the stream (bad media, another publisher taking over) is disconnected, the
//! reason logged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppState;
use super::auth::{self, Action};
use crate::source::publish::{Published, Publisher, PublisherInfo, STALL_TIMEOUT, now_ms};

/// FLV tags queued between the RTMP connection and its stream: a publisher faster than the
/// stream takes waits (TCP pushes back), nothing is dropped.
const QUEUE_TAGS: usize = 256;

/// Takes RTMP publishers on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    tls: Option<Arc<super::tls::Tls>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept an RTMP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("rtmp", %peer);
        tracker.spawn(tracing::Instrument::instrument(
            async move {
                let ended = match tls {
                    None => connection(tcp, peer, &app, &shutdown).await,
                    Some(tls) => {
                        let timeout = app_header_timeout();
                        match tokio::time::timeout(timeout, tls.acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => connection(stream, peer, &app, &shutdown).await,
                            Ok(Err(err)) => Err(format!("TLS handshake failed: {err}")),
                            Err(_) => Err("no TLS handshake in time".into()),
                        }
                    }
                };
                match ended {
                    Ok(()) => tracing::debug!("RTMP connection closed"),
                    Err(reason) => tracing::info!("RTMP connection ended: {reason}"),
                }
            },
            span,
        ));
    }
}

fn app_header_timeout() -> Duration {
    Duration::from_secs(10)
}

/// What one RTMP connection publishes to, once its publish request is taken.
struct Publishing {
    /// The FLV bytes; an error when the connection broke before the publisher said it was
    /// done, so the stream tells that from a clean end.
    tags: mpsc::Sender<std::io::Result<Bytes>>,
    done: oneshot::Receiver<Published>,
    stream: String,
}

/// One RTMP connection, from the handshake to its end.
async fn connection<S>(
    mut socket: S,
    peer: SocketAddr,
    app: &AppState,
    shutdown: &CancellationToken,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let read = |n: std::io::Result<usize>| match n {
        Ok(0) => Err("the publisher closed the connection".to_string()),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("reading: {err}")),
    };
    // The handshake, within the time a client has for its request headers elsewhere.
    let mut handshake = Handshake::new(PeerType::Server);
    let remaining = tokio::time::timeout(app_header_timeout(), async {
        loop {
            let n = read(socket.read(&mut buf).await)?;
            match handshake.process_bytes(&buf[..n]) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    write(&mut socket, &response_bytes).await?;
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    write(&mut socket, &response_bytes).await?;
                    return Ok::<_, String>(remaining_bytes);
                }
                Err(err) => return Err(format!("not an RTMP handshake: {err:?}")),
            }
        }
    })
    .await
    .map_err(|_| "no RTMP handshake in time".to_string())??;

    let (mut session, results) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| format!("cannot start an RTMP session: {e:?}"))?;
    let mut publishing: Option<Publishing> = None;
    let mut pending = results;
    pending.extend(
        session
            .handle_input(&remaining)
            .map_err(|e| format!("bad RTMP input: {e:?}"))?,
    );
    let mut wrote_header = false;
    loop {
        // Results can raise requests whose answers are more results: work through all.
        while !pending.is_empty() {
            let results = std::mem::take(&mut pending);
            for result in results {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        write(&mut socket, &packet.bytes).await?;
                    }
                    ServerSessionResult::RaisedEvent(event) => {
                        let (more, end) = on_event(
                            event,
                            &mut session,
                            &mut publishing,
                            &mut wrote_header,
                            peer.ip(),
                            app,
                        )
                        .await?;
                        if let Some(end) = end {
                            // The answer (a refusal's status) goes out, then the connection
                            // ends.
                            for result in more {
                                if let ServerSessionResult::OutboundResponse(packet) = result {
                                    write(&mut socket, &packet.bytes).await?;
                                }
                            }
                            let _ = socket.shutdown().await;
                            return end;
                        }
                        pending.extend(more);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        let stalled = tokio::time::sleep(STALL_TIMEOUT);
        let done = async {
            match publishing.as_mut() {
                Some(p) => (&mut p.done).await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = socket.read(&mut buf) => {
                let n = match read(n) {
                    Ok(n) => n,
                    Err(reason) => {
                        if let Some(p) = &publishing {
                            let broke = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("the RTMP connection broke off ({reason})"),
                            );
                            let _ = p.tags.send(Err(broke)).await;
                        }
                        return Err(reason);
                    }
                };
                pending = session
                    .handle_input(&buf[..n])
                    .map_err(|e| format!("bad RTMP input: {e:?}"))?;
            }
            published = done => {
                let reason = published
                    .and_then(|p| p.error)
                    .map_or_else(|| "the stream let the publisher go".to_string(), |e| e.to_string());
                tracing::warn!("RTMP publisher cut off: {reason}");
                let _ = socket.shutdown().await;
                return Err(format!("cut off: {reason}"));
            }
            _ = stalled => return Err(format!("nothing for {} s", STALL_TIMEOUT.as_secs())),
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn write<S: AsyncWrite + Unpin>(socket: &mut S, bytes: &[u8]) -> Result<(), String> {
    socket
        .write_all(bytes)
        .await
        .map_err(|e| format!("writing: {e}"))
}

/// What an event asks for: more to send, and, once that is sent, whether the connection ends
/// (`Ok(())` cleanly, `Err` with the reason).
type Step = (Vec<ServerSessionResult>, Option<Result<(), String>>);

/// Answers one session event.
async fn on_event(
    event: ServerSessionEvent,
    session: &mut ServerSession,
    publishing: &mut Option<Publishing>,
    wrote_header: &mut bool,
    address: IpAddr,
    app: &AppState,
) -> Result<Step, String> {
    let rtmp = |e: rml_rtmp::sessions::ServerSessionError| format!("RTMP session: {e:?}");
    match event {
        ServerSessionEvent::ConnectionRequested { request_id, .. } => {
            Ok((session.accept_request(request_id).map_err(rtmp)?, None))
        }
        ServerSessionEvent::PublishStreamRequested {
            request_id,
            stream_key,
            ..
        } => match offer(&stream_key, address, app) {
            Ok(accepted) => {
                tracing::info!(stream = %accepted.stream, "RTMP publisher accepted");
                *publishing = Some(accepted);
                Ok((session.accept_request(request_id).map_err(rtmp)?, None))
            }
            Err((code, reason)) => {
                tracing::info!(%reason, "RTMP publisher refused");
                let refusal = session
                    .reject_request(request_id, code, &reason)
                    .map_err(rtmp)?;
                Ok((refusal, Some(Err(format!("refused: {reason}")))))
            }
        },
        ServerSessionEvent::AudioDataReceived {
            data, timestamp, ..
        } => {
            send_tag(publishing, wrote_header, 8, &data, timestamp.value).await;
            Ok((Vec::new(), None))
        }
        ServerSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } => {
            send_tag(publishing, wrote_header, 9, &data, timestamp.value).await;
            Ok((Vec::new(), None))
        }
        ServerSessionEvent::PublishStreamFinished { .. } => {
            // The end of the publisher's FLV: the stream sees its input close cleanly.
            let Some(p) = publishing.take() else {
                return Ok((Vec::new(), Some(Ok(()))));
            };
            drop(p.tags);
            let error = p.done.await.ok().and_then(|published| published.error);
            let end = match error {
                None => {
                    tracing::info!(stream = %p.stream, "RTMP publisher finished");
                    Ok(())
                }
                Some(error) => Err(format!("cut off: {error}")),
            };
            Ok((Vec::new(), Some(end)))
        }
        _ => Ok((Vec::new(), None)),
    }
}

/// The stream a publish request names, with its token checked and a place as its publisher
/// taken; or RTMP's status code and the reason.
fn offer(
    stream_key: &str,
    address: IpAddr,
    app: &AppState,
) -> Result<Publishing, (&'static str, String)> {
    let (name, query) = stream_key.split_once('?').unwrap_or((stream_key, ""));
    let bad_name = "NetStream.Publish.BadName";
    let token = auth::query_token(query);
    super::publish::may_make(app, name, token.as_deref())
        .map_err(|denied| ("NetStream.Publish.Unauthorized", denied.to_string()))?;
    let stream = app
        .streams
        .for_publisher(name)
        .map_err(|e| (bad_name, e.to_string()))?;
    if let Err(denied) = app
        .auth
        .allow(stream.publish, name, Action::Publish, token.as_deref())
    {
        return Err(("NetStream.Publish.Unauthorized", denied.to_string()));
    }
    let Some(point) = stream.publish_point.clone() else {
        return Err((bad_name, format!("stream {name} is not fed by publishers")));
    };
    let (tags, rx) = mpsc::channel::<std::io::Result<Bytes>>(QUEUE_TAGS);
    let (done, answer) = oneshot::channel();
    let input = tokio_util::io::StreamReader::new(Box::pin(tags_stream(rx)));
    point
        .offer(Publisher {
            input: Box::new(input),
            info: PublisherInfo {
                address: Some(address),
                protocol: "rtmp",
                since_ms: now_ms(),
            },
            done,
        })
        .map_err(|refused| (bad_name, refused.to_string()))?;
    Ok(Publishing {
        tags,
        done: answer,
        stream: name.to_string(),
    })
}

/// The tags of a channel as a stream of byte chunks.
fn tags_stream(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The FLV file header and the first PreviousTagSize (FLV spec, E.2 and E.3): audio and video.
const FLV_HEADER: &[u8] = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

/// Sends one message as an FLV tag (E.4.1) to the stream. If the stream has let go of the
/// publisher, nothing is sent: its `done` answer says why, and ends the connection.
async fn send_tag(
    publishing: &mut Option<Publishing>,
    wrote_header: &mut bool,
    kind: u8,
    data: &[u8],
    timestamp_ms: u32,
) {
    let Some(p) = publishing.as_ref() else {
        return;
    };
    let mut tag = BytesMut::with_capacity(FLV_HEADER.len() + 15 + data.len());
    if !*wrote_header {
        tag.put_slice(FLV_HEADER);
        *wrote_header = true;
    }
    let size = data.len() as u32;
    tag.put_u8(kind);
    tag.put_slice(&size.to_be_bytes()[1..]);
    tag.put_slice(&timestamp_ms.to_be_bytes()[1..]);
    tag.put_u8((timestamp_ms >> 24) as u8);
    tag.put_slice(&[0, 0, 0]);
    tag.put_slice(data);
    tag.put_u32(11 + size);
    let _ = p.tags.send(Ok(tag.freeze())).await;
}
