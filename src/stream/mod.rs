//! One live stream: a source feeding a hub. This layer owns the streams' lifecycles and
//! nothing of HTTP: the server asks the hub for what to send.
//!
//! - [`window`]: segments, parts and track timings as they are cut (pure, also `package`'s);
//! - [`ring`]: the numbered events viewers are sent, and each viewer's place in them;
//! - [`Hub`]: both under one lock, with the stream's status and demand;
//! - [`manifests`] and [`record`]: the window as DASH and HLS, live and on disk.

mod hub;
pub mod manifests;
pub mod record;
pub mod ring;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use hub::{Counters, Hub, HubConfig, unix_millis};
pub use ring::{Delivery, Event, EventWindow, Subscription};
pub use window::{LiveFragment, MediaInit, Part, Segment, Snapshot, Status, TrackTiming, Window};

use crate::source::{self, EncoderOptions, Restart, SourceContext, SourceEvent, SourceSpec};

/// Shared buffers one after another in one new one: a segment written to a file.
pub fn concat<'a>(chunks: impl Iterator<Item = &'a bytes::Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out
}

/// What a stream is made of, from the command line or the config file.
#[derive(Debug, Clone)]
pub struct StreamDef {
    pub name: String,
    pub source: SourceSpec,
    pub encoder: EncoderOptions,
    /// Run the source only while someone watches, stopping it this long after the last viewer
    /// left (the prototype's `startStream`/`stopStream`).
    pub on_demand: Option<Duration>,
    /// Viewers this stream takes at once; more are answered 503.
    pub max_viewers: Option<u64>,
    /// Keep its segments and manifests on disk too.
    pub record: Option<record::RecordConfig>,
    /// A CA certificate (PEM) a `wss://` relay upstream may be signed by, beside the public
    /// roots.
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Who may watch it (WebSocket, DASH, HLS).
    pub read: Access,
    /// Who may publish to it.
    pub publish: Access,
    /// For a `publish` source: a second publisher takes over from the first (instead of
    /// being refused).
    pub takeover: bool,
}

/// Who may do something with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Anyone who can reach the server.
    #[default]
    Public,
    /// Only the bearer of a token that names the stream and the action.
    Token,
}

/// A running stream.
pub struct Stream {
    pub name: String,
    pub source: SourceSpec,
    pub hub: Arc<Hub>,
    pub max_viewers: Option<u64>,
    pub read: Access,
    pub publish: Access,
    /// Where publishers come in, for a `publish` source.
    pub publish_point: Option<Arc<source::publish::PublishPoint>>,
    /// Viewers admitted and not yet gone, counted at the upgrade (before they reach the hub),
    /// so that `max_viewers` holds even for viewers arriving at once.
    pub admitted: std::sync::atomic::AtomicU64,
}

/// Every stream of the server, in the order they were given.
#[derive(Default)]
pub struct Streams {
    list: Vec<Arc<Stream>>,
}

impl Streams {
    pub fn get(&self, name: &str) -> Option<&Arc<Stream>> {
        self.list.iter().find(|s| s.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Stream>> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Starts every stream's source; they run until `cancel`.
pub fn start(
    defs: Vec<StreamDef>,
    config: &HubConfig,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Streams {
    // Segment numbers start at the wall clock's seconds: a restarted server never reuses a
    // URL that a cache may still hold.
    let first_number = unix_millis(SystemTime::now()) / 1000;
    let list = defs
        .into_iter()
        .map(|def| {
            let stream = Arc::new(Stream {
                name: def.name.clone(),
                source: def.source.clone(),
                hub: Arc::new(Hub::new(config.clone(), first_number)),
                max_viewers: def.max_viewers,
                read: def.read,
                publish: def.publish,
                publish_point: (def.source == SourceSpec::Publish)
                    .then(|| Arc::new(source::publish::PublishPoint::new(def.takeover))),
                admitted: Default::default(),
            });
            let span = tracing::info_span!("stream", name = %def.name);
            if let Some(config) = def.record.clone() {
                tracker.spawn(
                    record::run(stream.hub.clone(), config, cancel.child_token())
                        .instrument(span.clone()),
                );
            }
            tracker.spawn(
                drive(stream.clone(), def, cancel.child_token(), tracker.clone()).instrument(span),
            );
            stream
        })
        .collect();
    Streams { list }
}

/// Runs a stream: its source all the time, or, on demand, while anyone watches.
async fn drive(
    stream: Arc<Stream>,
    def: StreamDef,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let Some(idle_timeout) = def.on_demand else {
        run_source(&stream, &def, cancel, &tracker).await;
        return;
    };
    let hub = &stream.hub;
    loop {
        hub.reset(Status::Idle);
        // Asleep until someone wants the stream.
        while hub.idle_for() > idle_timeout {
            tokio::select! {
                _ = hub.demand_changed() => {}
                _ = cancel.cancelled() => return,
            }
        }
        tracing::info!("a viewer arrived: starting the on-demand source");
        hub.set_status(Status::Starting);
        let run = cancel.child_token();
        let source = run_source(&stream, &def, run.clone(), &tracker);
        tokio::pin!(source);
        let finished = loop {
            tokio::select! {
                _ = &mut source => break true,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = hub.demand_changed() => {}
            }
            if hub.idle_for() > idle_timeout {
                break false;
            }
        };
        if cancel.is_cancelled() {
            return;
        }
        if finished {
            // The source ended by itself (its input is over); it stays ended.
            return;
        }
        tracing::info!(
            idle_secs = idle_timeout.as_secs_f64(),
            "no viewers: stopping the on-demand source"
        );
        run.cancel();
        source.await;
    }
}

/// Runs a stream's source until it ends or `cancel`, applying what it reports to the hub.
async fn run_source(
    stream: &Arc<Stream>,
    def: &StreamDef,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let (events, mut rx) = mpsc::channel(256);
    let ctx = SourceContext {
        stream: stream.name.clone(),
        events,
        cancel: cancel.clone(),
        upstream_ca: def.upstream_ca.clone(),
        publish: stream.publish_point.clone(),
    };
    tracker.spawn(source::run(def.source.clone(), def.encoder.clone(), ctx).in_current_span());
    let hub = &stream.hub;
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Init(init) => {
                tracing::info!(
                    codecs = %init.codecs(),
                    tracks = init.tracks.len(),
                    "source is live"
                );
                hub.set_init(init);
            }
            SourceEvent::Fragment(fragment) => hub.push(fragment, std::time::Instant::now()),
            SourceEvent::Restarting { error, cause, .. } => {
                let counter = match cause {
                    Restart::Process => &hub.counters.source_restarts,
                    Restart::Upstream => &hub.counters.upstream_reconnects,
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                hub.set_status(Status::Restarting(error.to_string()));
            }
            SourceEvent::Waiting => hub.set_status(Status::Waiting),
            SourceEvent::Finished { error } => {
                let status = match error {
                    Some(error) => Status::Failed(error.to_string()),
                    None => Status::Ended,
                };
                tracing::info!(status = status.as_str(), "stream finished");
                hub.end(status);
            }
        }
    }
}
