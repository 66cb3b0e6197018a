//! One live stream: a source feeding a hub. This layer owns the streams' lifecycles and
//! nothing of HTTP: the server asks the hub for what to send.

mod hub;
pub mod manifests;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use hub::{
    Delivery, Event, Hub, HubConfig, LiveFragment, MediaInit, Part, Segment, Snapshot, Status,
    Subscription, TrackTiming, unix_millis,
};

use crate::source::{self, EncoderOptions, SourceContext, SourceEvent, SourceSpec};

/// What a stream is made of, from the command line or the config file.
#[derive(Debug, Clone)]
pub struct StreamDef {
    pub name: String,
    pub source: SourceSpec,
    pub encoder: EncoderOptions,
}

/// A running stream.
pub struct Stream {
    pub name: String,
    pub source: SourceSpec,
    pub hub: Arc<Hub>,
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
            });
            let span = tracing::info_span!("stream", name = %def.name);
            tracker.spawn(
                drive(stream.clone(), def, cancel.child_token(), tracker.clone()).instrument(span),
            );
            stream
        })
        .collect();
    Streams { list }
}

/// Runs a stream's source and applies what it reports to the hub.
async fn drive(
    stream: Arc<Stream>,
    def: StreamDef,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let (events, mut rx) = mpsc::channel(256);
    let ctx = SourceContext {
        stream: stream.name.clone(),
        events,
        cancel: cancel.clone(),
    };
    tracker.spawn(source::run(def.source, def.encoder, ctx).in_current_span());
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
            SourceEvent::Fragment(fragment) => hub.push(fragment),
            SourceEvent::Restarting { reason, .. } => {
                hub.counters
                    .source_restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                hub.set_status(Status::Restarting(reason));
            }
            SourceEvent::Finished { reason } => {
                let status = match reason {
                    Some(reason) => Status::Failed(reason),
                    None => Status::Ended,
                };
                tracing::info!(status = status.as_str(), "stream finished");
                hub.end(status);
            }
        }
    }
}
