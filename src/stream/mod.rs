//! One live stream: a source feeding a hub. This layer owns the streams' lifecycles and
//! nothing of HTTP: the server asks the hub for what to send.
//!
//! - [`window`]: segments, parts and track timings as they are cut (pure, also `package`'s);
//! - [`ring`]: the numbered events viewers are sent, and each viewer's place in them;
//! - [`Hub`]: both under one lock, with the stream's status and demand;
//! - [`manifests`] and [`record`]: the window as DASH and HLS, live and on disk.

pub mod archive;
mod hub;
pub mod manifests;
pub mod record;
pub mod ring;
pub mod window;

use std::sync::{Arc, RwLock};
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

/// The most read or written at once: larger reads and writes are several times slower per
/// byte on some kernels (seen here: 4 MiB writes at a fifth of the speed of 64 KiB ones, to
/// disk and to tmpfs alike; `package` of a 1 GB file took 5 to 12 s, now about 1 s).
pub const IO_PIECE: usize = 64 << 10;

/// Writes `bytes` to `file` an [`IO_PIECE`] at a time.
pub fn write_in_pieces(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    for piece in bytes.chunks(IO_PIECE) {
        file.write_all(piece)?;
    }
    Ok(())
}

/// Creates (or truncates) `path` and writes `bytes` to it, an [`IO_PIECE`] at a time.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_in_pieces(&mut std::fs::File::create(path)?, bytes)
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
    /// A ladder's rungs, top first (the first is this stream itself); empty without one.
    pub renditions: Vec<Rung>,
    /// For a lower rung's stream (`NAME@HEIGHT`): the stream whose ladder it is part of.
    pub rendition_of: Option<String>,
    /// What is recorded of it, and the limits it is kept by, if it is recorded.
    pub recording: Option<Recorded>,
}

/// A recorded stream's index and the limits in force.
pub struct Recorded {
    pub archive: Arc<archive::Archive>,
    pub config: record::RecordConfig,
}

/// One rung of a stream's ladder.
#[derive(Clone)]
pub struct Rung {
    /// Its name among the rungs (the height: `360`).
    pub name: String,
    /// The stream that serves it: the ladder's own name for the top rung, `NAME@HEIGHT` for
    /// the others.
    pub stream: String,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub hub: Arc<Hub>,
}

impl Stream {
    /// The rung named `name` (its height), if this stream has a ladder.
    pub fn rung(&self, name: &str) -> Option<&Rung> {
        self.renditions.iter().find(|r| r.name == name)
    }
}

/// The stream name of rung `height` of stream `name`.
pub fn rung_stream_name(name: &str, height: u32) -> String {
    format!("{name}@{height}")
}

/// Every stream of the server, in the order they were given, then those publishers made by
/// publishing to a new name (`publish = "any"`).
pub struct Streams {
    list: RwLock<Vec<Arc<Stream>>>,
    on_the_fly: Option<Spawner>,
}

/// Streams made by publishers, on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnTheFly {
    /// Who may watch them.
    pub read: Access,
    /// At most this many, besides the configured streams.
    pub max: usize,
}

/// What a stream made on the fly starts with.
struct Spawner {
    settings: OnTheFly,
    config: HubConfig,
    first_number: u64,
    cancel: CancellationToken,
    tracker: TaskTracker,
    made: std::sync::atomic::AtomicUsize,
}

/// Why no stream could be made for a publisher's new name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewStream {
    #[error("no stream {0} (and new names are not taken: publish = \"any\" is off)")]
    Unknown(String),
    #[error("{0:?} cannot name a stream: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("the server has made its maximum of {0} streams for publishers")]
    Full(usize),
}

/// Stream names appear in URLs and file names: keep them plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

impl Streams {
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.iter().find(|s| s.name == name).cloned()
    }

    /// Every stream now.
    pub fn all(&self) -> Vec<Arc<Stream>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.list.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether publishers may make streams by publishing to new names.
    pub fn makes_new(&self) -> bool {
        self.on_the_fly.is_some()
    }

    /// The stream a publisher names: one that exists, or, with `publish = "any"`, a new
    /// `publish` stream made for it now. It stays (waiting) after its publisher goes.
    pub fn for_publisher(&self, name: &str) -> Result<Arc<Stream>, NewStream> {
        if let Some(stream) = self.get(name) {
            return Ok(stream);
        }
        let Some(spawner) = &self.on_the_fly else {
            return Err(NewStream::Unknown(name.to_string()));
        };
        if !valid_name(name) {
            return Err(NewStream::BadName(name.to_string()));
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = list.iter().find(|s| s.name == name) {
            return Ok(stream.clone());
        }
        let made = spawner.made.load(std::sync::atomic::Ordering::Relaxed);
        if made >= spawner.settings.max {
            return Err(NewStream::Full(spawner.settings.max));
        }
        spawner
            .made
            .store(made + 1, std::sync::atomic::Ordering::Relaxed);
        let def = StreamDef {
            name: name.to_string(),
            source: SourceSpec::Publish,
            encoder: source::EncoderOptions::default(),
            on_demand: None,
            max_viewers: None,
            record: None,
            upstream_ca: None,
            read: spawner.settings.read,
            publish: Access::Token,
            takeover: false,
        };
        tracing::info!(stream = %name, "a publisher made a new stream");
        let made = spawn(
            def,
            &spawner.config,
            spawner.first_number,
            &spawner.cancel,
            &spawner.tracker,
        );
        let stream = made[0].clone();
        list.extend(made);
        Ok(stream)
    }
}

/// Starts every stream's source; they run until `cancel`. With `on_the_fly`, publishers may
/// make streams by publishing to new names.
pub fn start(
    defs: Vec<StreamDef>,
    config: &HubConfig,
    on_the_fly: Option<OnTheFly>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Streams {
    // Segment numbers start at the wall clock's seconds: a restarted server never reuses a
    // URL that a cache may still hold.
    let first_number = unix_millis(SystemTime::now()) / 1000;
    let list = defs
        .into_iter()
        .flat_map(|def| spawn(def, config, first_number, cancel, tracker))
        .collect();
    Streams {
        list: RwLock::new(list),
        on_the_fly: on_the_fly.map(|settings| Spawner {
            settings,
            config: config.clone(),
            first_number,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            made: Default::default(),
        }),
    }
}

/// Starts one stream: the stream itself first, then, for a ladder, a stream for each lower
/// rung (`NAME@HEIGHT`), fed by the same source.
fn spawn(
    def: StreamDef,
    config: &HubConfig,
    first_number: u64,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Vec<Arc<Stream>> {
    let hub = Arc::new(Hub::new(config.clone(), first_number));
    let ladder = &def.encoder.renditions;
    // Every rung's hub counts its segments from the same number: they are cut at the same
    // key frames, so segment N is the same stretch of time on every rung.
    let renditions: Vec<Rung> = ladder
        .iter()
        .enumerate()
        .map(|(i, r)| Rung {
            name: r.name(),
            stream: if i == 0 {
                def.name.clone()
            } else {
                rung_stream_name(&def.name, r.height)
            },
            height: r.height,
            video_bitrate_kbps: r.video_bitrate_kbps,
            hub: if i == 0 {
                hub.clone()
            } else {
                Arc::new(Hub::new(config.clone(), first_number))
            },
        })
        .collect();
    // A recording goes on from its folder's index: every rung's segments are numbered after
    // what any of them recorded before.
    let recorded_for = |name: &str| {
        def.record.as_ref().map(|config| {
            let mut config = config.clone();
            if name != def.name {
                // Each rung records beside the others: DIR/NAME/, DIR/NAME@360/, ...
                config.dir = config.dir.with_file_name(name);
            }
            Recorded {
                archive: Arc::new(archive::Archive::open(&config.dir)),
                config,
            }
        })
    };
    let mut recordings: Vec<Option<Recorded>> = std::iter::once(def.name.as_str())
        .chain(renditions.iter().skip(1).map(|r| r.stream.as_str()))
        .map(recorded_for)
        .collect();
    let next = recordings
        .iter()
        .flatten()
        .filter_map(|r| r.archive.next_number())
        .max();
    if let Some(next) = next {
        hub.number_from(next);
        for rung in renditions.iter().skip(1) {
            rung.hub.number_from(next);
        }
    }
    let stream = Arc::new(Stream {
        name: def.name.clone(),
        source: def.source.clone(),
        hub,
        max_viewers: def.max_viewers,
        read: def.read,
        publish: def.publish,
        publish_point: (def.source == SourceSpec::Publish)
            .then(|| Arc::new(source::publish::PublishPoint::new(def.takeover))),
        admitted: Default::default(),
        renditions: renditions.clone(),
        rendition_of: None,
        recording: recordings[0].take(),
    });
    let mut made = vec![stream.clone()];
    for (i, rung) in renditions.iter().enumerate().skip(1) {
        made.push(Arc::new(Stream {
            name: rung.stream.clone(),
            source: def.source.clone(),
            hub: rung.hub.clone(),
            max_viewers: def.max_viewers,
            read: def.read,
            publish: def.publish,
            publish_point: None,
            admitted: Default::default(),
            renditions: Vec::new(),
            rendition_of: Some(def.name.clone()),
            recording: recordings[i].take(),
        }));
    }
    let span = tracing::info_span!("stream", name = %def.name);
    for rung_stream in &made {
        if let Some(recorded) = &rung_stream.recording {
            tracker.spawn(
                record::run(
                    rung_stream.hub.clone(),
                    recorded.config.clone(),
                    recorded.archive.clone(),
                    cancel.child_token(),
                )
                .instrument(span.clone()),
            );
        }
    }
    tracker
        .spawn(drive(stream.clone(), def, cancel.child_token(), tracker.clone()).instrument(span));
    made
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
    // A ladder is watched through any of its rungs: its source runs while any rung has a
    // viewer, and stops when none has had one for the idle time.
    let hubs: Vec<Arc<Hub>> = std::iter::once(stream.hub.clone())
        .chain(stream.renditions.iter().skip(1).map(|r| r.hub.clone()))
        .collect();
    let idle_for = || {
        hubs.iter()
            .map(|h| h.idle_for())
            .min()
            .unwrap_or(Duration::MAX)
    };
    let demand_changed =
        || futures_util::future::select_all(hubs.iter().map(|h| Box::pin(h.demand_changed())));
    loop {
        for hub in &hubs {
            hub.reset(Status::Idle);
        }
        // The rungs count their segments on from the same number, so that they line up
        // again on the next start.
        let next = hubs.iter().map(|h| h.next_number()).max().unwrap_or(0);
        for hub in &hubs {
            hub.number_from(next);
        }
        // Asleep until someone wants the stream.
        while idle_for() > idle_timeout {
            tokio::select! {
                _ = demand_changed() => {}
                _ = cancel.cancelled() => return,
            }
        }
        tracing::info!("a viewer arrived: starting the on-demand source");
        for hub in &hubs {
            hub.set_status(Status::Starting);
        }
        let run = cancel.child_token();
        let source = run_source(&stream, &def, run.clone(), &tracker);
        tokio::pin!(source);
        let finished = loop {
            tokio::select! {
                _ = &mut source => break true,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = demand_changed() => {}
            }
            if idle_for() > idle_timeout {
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
    // Whatever happens to the source happens to every rung.
    let every_hub = || {
        stream
            .renditions
            .iter()
            .skip(1)
            .map(|r| &r.hub)
            .chain(std::iter::once(hub))
    };
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Rendition { rung, unit } => {
                let Some(rung) = stream.renditions.get(rung) else {
                    continue;
                };
                match unit {
                    crate::fmp4::Unit::Init(init) => {
                        tracing::info!(
                            rendition = %rung.name,
                            codecs = %init.codecs(),
                            "rendition is live"
                        );
                        rung.hub.set_init(init);
                    }
                    crate::fmp4::Unit::Fragment(fragment) => {
                        rung.hub.push(fragment, std::time::Instant::now());
                    }
                }
            }
            SourceEvent::RungDown { rung, error } => {
                if let Some(rung) = stream.renditions.get(rung) {
                    rung.hub
                        .counters
                        .upstream_reconnects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    rung.hub.set_status(Status::Restarting(error.to_string()));
                }
            }
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
                // A relay's rungs have a connection each (a lower one reports `RungDown`);
                // one ffmpeg encodes every other ladder.
                if matches!(def.source, SourceSpec::Relay(_)) {
                    hub.set_status(Status::Restarting(error.to_string()));
                } else {
                    for hub in every_hub() {
                        hub.set_status(Status::Restarting(error.to_string()));
                    }
                }
            }
            SourceEvent::Waiting => hub.set_status(Status::Waiting),
            SourceEvent::Finished { error } => {
                let status = match error {
                    Some(error) => Status::Failed(error.to_string()),
                    None => Status::Ended,
                };
                tracing::info!(status = status.as_str(), "stream finished");
                for hub in every_hub() {
                    hub.end(status.clone());
                }
            }
        }
    }
}
