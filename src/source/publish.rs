//! The `publish` source: a stream fed by whoever publishes to it (`PUT`/`POST /publish/NAME`
//! today), one publisher at a time. The stream waits for its first publisher; one that goes
//! leaves the viewers connected and the next one continues the timeline, as a restarted
//! source does. What a publisher sends is FLV or fragmented MP4, told apart by its first
//! bytes, read by the same demuxers as every other source; anything else cuts it off with the
//! reason, which it is told.
//!
//! This module knows nothing of HTTP: a publisher is a byte stream ([`AsyncRead`]) with a
//! place to hear how it ended.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Continuity, PipeEnd, SourceContext, SourceError, SourceEvent, read_pipe};

/// A publisher that sends nothing for this long, mid-stream or before its first byte, is cut
/// off: it holds the stream from any other publisher.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Who publishes, as `/api/streams` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherInfo {
    pub address: Option<IpAddr>,
    /// `http`, later `rtmp` and `websocket`.
    pub protocol: &'static str,
    /// When it started (Unix ms).
    pub since_ms: u64,
}

/// How a publisher's session ended, for its answer.
#[derive(Debug)]
pub struct Published {
    /// Bytes read from it.
    pub bytes: u64,
    /// `None`: its input ended cleanly.
    pub error: Option<SourceError>,
}

/// One publisher, offered to its stream.
pub struct Publisher {
    pub input: Box<dyn AsyncRead + Send + Unpin>,
    pub info: PublisherInfo,
    /// Told how the session ended. Dropped unsent if the stream goes first.
    pub done: oneshot::Sender<Published>,
}

/// Why a publisher was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the stream already has a publisher (from {0})")]
    Busy(String),
}

/// Where a stream's publishers come in: the server offers them, the stream's source takes
/// them, one at a time.
#[derive(Debug)]
pub struct PublishPoint {
    /// A new publisher cuts off the one publishing, instead of being refused.
    takeover: bool,
    state: Mutex<PointState>,
    arrived: Notify,
    pub publishes: AtomicU64,
    pub refused: AtomicU64,
}

#[derive(Debug, Default)]
struct PointState {
    active: Option<(PublisherInfo, CancellationToken)>,
    pending: Option<PendingPublisher>,
}

struct PendingPublisher(Publisher);

impl std::fmt::Debug for PendingPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PendingPublisher")
            .field(&self.0.info)
            .finish()
    }
}

impl PublishPoint {
    pub fn new(takeover: bool) -> Self {
        Self {
            takeover,
            state: Mutex::default(),
            arrived: Notify::new(),
            publishes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Hands a publisher to the stream, or says why not.
    pub fn offer(&self, publisher: Publisher) -> Result<(), Refused> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let holder = state
            .active
            .as_ref()
            .map(|(info, _)| info)
            .or(state.pending.as_ref().map(|p| &p.0.info));
        if let Some(holder) = holder {
            if !self.takeover {
                let from = holder
                    .address
                    .map_or_else(|| holder.protocol.to_string(), |a| a.to_string());
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Busy(from));
            }
            if let Some((_, cut)) = &state.active {
                cut.cancel();
            }
        }
        // A publisher still pending when another takes over is dropped: its answer says so.
        state.pending = Some(PendingPublisher(publisher));
        drop(state);
        self.publishes.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_one();
        Ok(())
    }

    /// Who publishes now, if anyone.
    pub fn publisher(&self) -> Option<PublisherInfo> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.active.as_ref().map(|(info, _)| info.clone())
    }

    /// The next publisher, once there is one; the token cuts it off.
    async fn next(&self) -> (Publisher, CancellationToken) {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(PendingPublisher(publisher)) = state.pending.take() {
                    let cut = CancellationToken::new();
                    state.active = Some((publisher.info.clone(), cut.clone()));
                    return (publisher, cut);
                }
            }
            self.arrived.notified().await;
        }
    }

    fn finished(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).active = None;
    }
}

/// Takes the stream's publishers one after another until the stream stops.
pub async fn run(point: Arc<PublishPoint>, ctx: SourceContext) {
    let mut continuity = Continuity::default();
    if !ctx.send(SourceEvent::Waiting).await {
        return;
    }
    loop {
        let (publisher, cut) = tokio::select! {
            next = point.next() => next,
            _ = ctx.cancel.cancelled() => return,
        };
        let Publisher { input, info, done } = publisher;
        let from = info
            .address
            .map_or_else(|| "?".to_string(), |a| a.to_string());
        tracing::info!(stream = %ctx.stream, publisher = %from, protocol = info.protocol, "publisher connected");
        continuity.restart();
        let mut input = Watched::new(input, STALL_TIMEOUT);
        let mut demuxer = None;
        let end = tokio::select! {
            end = read_pipe(&mut input, "the publisher", &mut demuxer, &mut continuity, &ctx) => end,
            _ = cut.cancelled() => PipeEnd::Failed(SourceError::Publisher("another publisher took over".into())),
        };
        let stopped = matches!(end, PipeEnd::Stopped);
        let error = match end {
            PipeEnd::Stopped => Some(SourceError::Publisher("the server is stopping".into())),
            PipeEnd::Failed(error) => Some(error),
            PipeEnd::Closed => match demuxer.as_mut() {
                Some(demuxer) => demuxer.finish().err(),
                None => Some(SourceError::Publisher("the publisher sent nothing".into())),
            },
        };
        match &error {
            Some(error) => {
                tracing::warn!(stream = %ctx.stream, publisher = %from, "publisher cut off: {error}")
            }
            None => tracing::info!(stream = %ctx.stream, publisher = %from, "publisher finished"),
        }
        let bytes = input.bytes;
        point.finished();
        let _ = done.send(Published { bytes, error });
        if stopped || !ctx.send(SourceEvent::Waiting).await {
            return;
        }
    }
}

/// A publisher's input, counted, and ended with an error when it stalls.
struct Watched {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    bytes: u64,
}

impl Watched {
    fn new(inner: Box<dyn AsyncRead + Send + Unpin>, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            bytes: 0,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let read = buf.filled().len() - before;
                self.bytes += read as u64;
                let next = tokio::time::Instant::now() + self.timeout;
                self.deadline.as_mut().reset(next);
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nothing for {} s", self.timeout.as_secs()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Now, in Unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
