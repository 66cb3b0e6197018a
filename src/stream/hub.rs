//! The hub of one stream: it holds the init segment, the newest group of pictures and the
//! window of segments, and fans every fragment out to every viewer.
//!
//! A fragment is allocated once (an `Arc<LiveFragment>` around the `Bytes` the splitter
//! handed out) and shared by the event ring, the segment window and every viewer's queue.
//! The ring numbers every event (init, fragment, end); it reaches back at least to the newest
//! key frame, which is where a new viewer starts. Viewers never hold the hub's lock while they
//! write: whoever sends takes the ring's events in one go ([`Hub::events_since`]) and walks
//! each viewer's [`Subscription`] over them; one that falls behind is moved to the next key
//! frame, so a slow viewer cannot slow the source or anyone else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::fmp4::{Fragment, InitSegment, PartInfo, Segmenter, TrackKind};

/// How many events the ring keeps (more while the newest GOP needs them). A viewer further
/// behind has lost them and is skipped to the next key frame; [`HubConfig::max_viewer_lag`]
/// skips it long before that.
const RING_CAPACITY: usize = 1024;

/// A GOP larger than this is not cached: late joiners wait for the next key frame instead of
/// the server holding unbounded memory for a source that never sends one.
const MAX_GOP_BYTES: usize = 32 << 20;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Target segment duration (DASH and HLS segments).
    pub segment_secs: f64,
    /// Target LL-HLS part duration.
    pub part_secs: f64,
    /// Completed segments kept and listed in manifests.
    pub window: usize,
    /// A viewer whose next fragment is older than this skips to the next key frame.
    pub max_viewer_lag: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            segment_secs: 2.0,
            part_secs: 0.2,
            window: 6,
            max_viewer_lag: Duration::from_millis(1500),
        }
    }
}

/// The init segment as the hub serves it.
#[derive(Debug)]
pub struct MediaInit {
    pub segment: Arc<InitSegment>,
    /// Counts inits since the stream started; a new one means "start again from here".
    pub generation: u64,
    /// The track whose sync samples start GOPs and segments.
    pub reference_track: u32,
    /// One init per track (DASH serves each track as its own Representation).
    pub track_inits: Vec<(u32, Bytes)>,
}

impl MediaInit {
    pub fn track_init(&self, track_id: u32) -> Option<&Bytes> {
        self.track_inits
            .iter()
            .find(|(id, _)| *id == track_id)
            .map(|(_, bytes)| bytes)
    }
}

/// A fragment as the hub holds it.
#[derive(Debug)]
pub struct LiveFragment {
    pub fragment: Fragment,
    /// When the hub received it: viewers measure their lag against this.
    pub received: Instant,
    pub received_unix_ms: u64,
    /// Starts with a sync sample of the reference track: a GOP, and a viewer, may start here.
    pub key: bool,
}

/// One track's timing within a segment, in that track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackTiming {
    pub track_id: u32,
    pub start: u64,
    pub duration: u64,
}

/// A part of a segment: `fragments[first..first + count]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub info: PartInfo,
    pub first: usize,
    pub count: usize,
}

/// A segment, complete or still growing.
#[derive(Debug, Clone)]
pub struct Segment {
    pub number: u64,
    pub generation: u64,
    /// Reference track time of the first sample, and the duration once complete.
    pub start: u64,
    pub duration: u64,
    pub timescale: u32,
    pub fragments: Vec<Arc<LiveFragment>>,
    pub parts: Vec<Part>,
    pub tracks: Vec<TrackTiming>,
    pub bytes: usize,
    /// Wall clock of the first sample (Unix ms): the encoder's `prft` if it wrote one.
    pub wall_start_ms: u64,
    /// The first segment after a change of init.
    pub discontinuity: bool,
    pub complete: bool,
}

impl Segment {
    pub fn duration_secs(&self) -> f64 {
        self.duration as f64 / f64::from(self.timescale.max(1))
    }

    /// The segment's bytes, in order, as shared slices.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.fragments.iter().map(|f| &f.fragment.bytes)
    }

    /// The bytes of one track's fragments.
    pub fn track_chunks(&self, track_id: u32) -> impl Iterator<Item = &Bytes> {
        self.fragments
            .iter()
            .filter(move |f| f.fragment.run(track_id).is_some())
            .map(|f| &f.fragment.bytes)
    }

    pub fn part(&self, index: u32) -> Option<&Part> {
        self.parts.iter().find(|p| p.info.index == index)
    }

    pub fn part_chunks(&self, part: &Part) -> impl Iterator<Item = &Bytes> {
        self.fragments
            .iter()
            .skip(part.first)
            .take(part.count)
            .map(|f| &f.fragment.bytes)
    }

    fn track_timing_mut(&mut self, track_id: u32) -> Option<&mut TrackTiming> {
        self.tracks.iter_mut().find(|t| t.track_id == track_id)
    }
}

/// What the stream is doing, for the API and the index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the source's first init segment.
    Starting,
    Live,
    /// The source failed and is being restarted.
    Restarting(String),
    /// An on-demand stream with no viewers.
    Idle,
    /// The source ended for good.
    Ended,
    /// The source cannot work (bad input, missing program).
    Failed(String),
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Live => "live",
            Status::Restarting(_) => "restarting",
            Status::Idle => "idle",
            Status::Ended => "ended",
            Status::Failed(_) => "failed",
        }
    }
}

/// What the hub sends every viewer, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Init(Arc<MediaInit>),
    Fragment(Arc<LiveFragment>),
    End,
}

/// Upper bounds (seconds) of the ingest-to-send histogram's buckets.
pub const SEND_DELAY_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// How long fragments wait between entering the hub and being written to a viewer's socket.
#[derive(Debug, Default)]
pub struct SendDelay {
    /// Cumulative counts per bucket of [`SEND_DELAY_BUCKETS`], then the overflow.
    buckets: [AtomicU64; SEND_DELAY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl SendDelay {
    /// The bucket `delay` falls in: an index of [`SEND_DELAY_BUCKETS`], or its length for the
    /// overflow.
    pub fn bucket(delay: Duration) -> usize {
        let secs = delay.as_secs_f64();
        SEND_DELAY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(SEND_DELAY_BUCKETS.len())
    }

    /// Adds counts gathered elsewhere: per bucket of [`SEND_DELAY_BUCKETS`] and the overflow,
    /// and their sum.
    pub fn add(&self, buckets: &[u64; SEND_DELAY_BUCKETS.len() + 1], sum: Duration) {
        for (bucket, n) in self.buckets.iter().zip(buckets) {
            if *n > 0 {
                bucket.fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(sum.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts per bucket (not cumulative; the last is the overflow), and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// Counters for the API and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub viewers: AtomicU64,
    pub fragments_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub fragments_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Batches written to viewers' sockets: fragments out per write shows batching at work.
    pub socket_writes: AtomicU64,
    pub skips: AtomicU64,
    pub skipped_fragments: AtomicU64,
    pub source_restarts: AtomicU64,
    pub upstream_reconnects: AtomicU64,
    pub send_delay: SendDelay,
}

struct State {
    init: Option<Arc<MediaInit>>,
    /// Every viewer's events, oldest first; `ring[0]` is numbered `ring_first`.
    ring: VecDeque<Event>,
    ring_first: u64,
    /// The number of the newest GOP's first fragment, while that GOP is cached (the ring
    /// keeps it): a new viewer starts there.
    gop_start: Option<u64>,
    gop_bytes: usize,
    segmenter: Option<Segmenter>,
    window: VecDeque<Arc<Segment>>,
    open: Option<Segment>,
    /// Unix ms of media time 0 of the reference track (DASH `availabilityStartTime`).
    anchor_ms: Option<u64>,
    /// Set by a new, different init; marks the next segment.
    discontinuity: bool,
    discontinuities: u64,
    /// Whether every fragment so far carried one track, so DASH can serve tracks apart.
    single_track_fragments: bool,
    status: Status,
    next_number: u64,
}

pub struct Hub {
    config: HubConfig,
    /// Names this hub's timeline: a relay that reconnects and finds the same id resumes where
    /// it was; another id means the upstream started over.
    timeline: String,
    state: Mutex<State>,
    /// Bumped after every change; manifests and growing segments wait on it.
    updates: watch::Sender<u64>,
    /// Woken when a viewer comes or goes, or an HTTP client asks for media: an on-demand
    /// stream's controller waits on it.
    demand: Notify,
    /// When an HTTP client last asked for media (ms since `created`).
    last_request_ms: AtomicU64,
    created: Instant,
    pub counters: Counters,
}

/// An id no other hub, in this process or another, is likely to have had: the clock, the
/// process and a counter.
fn new_timeline_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}

pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hub {
    /// `first_number` numbers the first segment; numbering from the wall clock keeps segment
    /// URLs unique across restarts of the server, so a cache never serves an old one.
    pub fn new(config: HubConfig, first_number: u64) -> Self {
        let (updates, _) = watch::channel(0);
        Self {
            config,
            timeline: new_timeline_id(),
            state: Mutex::new(State {
                init: None,
                ring: VecDeque::new(),
                ring_first: 0,
                gop_start: None,
                gop_bytes: 0,
                segmenter: None,
                window: VecDeque::new(),
                open: None,
                anchor_ms: None,
                discontinuity: false,
                discontinuities: 0,
                single_track_fragments: true,
                status: Status::Starting,
                next_number: first_number,
            }),
            updates,
            demand: Notify::new(),
            last_request_ms: AtomicU64::new(0),
            created: Instant::now(),
            counters: Counters::default(),
        }
    }

    /// An HTTP client asked for this stream's media (a DASH or HLS player is a viewer too).
    pub fn touch(&self) {
        let now = self.created.elapsed().as_millis() as u64;
        self.last_request_ms.store(now.max(1), Ordering::Relaxed);
        self.demand.notify_one();
    }

    /// How long since anyone watched: zero while a WebSocket viewer is connected, else the
    /// time since the last HTTP request or departure (forever if there never was one).
    pub fn idle_for(&self) -> Duration {
        if self.viewers() > 0 {
            return Duration::ZERO;
        }
        let last = self.last_request_ms.load(Ordering::Relaxed);
        if last == 0 {
            // Nobody has ever asked.
            return Duration::MAX;
        }
        let now = self.created.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Waits until a viewer comes or goes or an HTTP client asks for media.
    pub async fn demand_changed(&self) {
        self.demand.notified().await;
    }

    /// Forgets the media of a source that stopped for lack of viewers: the next start is a
    /// fresh stream (segment numbers keep counting).
    pub fn reset(&self, status: Status) {
        let mut state = self.lock();
        state.init = None;
        // Numbers go on: a viewer's place in the ring must never point at a later event.
        state.ring_first += state.ring.len() as u64;
        state.ring.clear();
        state.gop_start = None;
        state.gop_bytes = 0;
        state.segmenter = None;
        state.window.clear();
        state.open = None;
        state.anchor_ms = None;
        state.discontinuity = false;
        state.single_track_fragments = true;
        state.status = status;
        drop(state);
        self.bump();
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The id of this hub's timeline (see [`Hub::timeline`]'s field).
    pub fn timeline(&self) -> &str {
        &self.timeline
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping the stream would; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.updates.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after every fragment, init or status change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    pub fn set_status(&self, status: Status) {
        self.lock().status = status;
        self.bump();
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Installs a new init segment: viewers get it at once and then wait for a key frame.
    pub fn set_init(&self, segment: Arc<InitSegment>) {
        let Some(reference) = segment.reference_track() else {
            tracing::warn!("init segment without tracks ignored");
            return;
        };
        let reference_track = reference.id;
        let mut state = self.lock();
        let same_as_before = state
            .init
            .as_ref()
            .is_some_and(|old| old.segment.bytes == segment.bytes);
        let generation = state.init.as_ref().map_or(1, |old| old.generation + 1);
        let track_inits = segment
            .tracks
            .iter()
            .filter_map(|t| segment.single_track(t.id).map(|b| (t.id, b)))
            .collect();
        let media = Arc::new(MediaInit {
            segment,
            generation,
            reference_track,
            track_inits,
        });
        if !same_as_before {
            // Different codecs or parameters: segments made before cannot follow on from
            // the new init, so the segment window starts over (numbers keep counting).
            if state.init.is_some() {
                state.discontinuity = true;
                state.discontinuities += 1;
            }
            state.window.clear();
            state.open = None;
            state.segmenter = None;
            state.single_track_fragments = true;
        } else if let Some(open) = state.open.take() {
            // Same init: a restarted source continues the timeline; close what was growing.
            Self::finish_open(&mut state, open, self.config.window);
        }
        state.segmenter = None;
        state.gop_start = None;
        state.gop_bytes = 0;
        state.init = Some(media.clone());
        state.status = Status::Live;
        Self::append(&mut state, Event::Init(media));
        drop(state);
        self.bump();
    }

    /// Takes a fragment from the source: GOP cache, segment window, every viewer.
    pub fn push(&self, fragment: Fragment) {
        let now = SystemTime::now();
        let len = fragment.len() as u64;
        self.counters.fragments_in.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_in.fetch_add(len, Ordering::Relaxed);
        let mut state = self.lock();
        let Some(init) = state.init.clone() else {
            return;
        };
        let key = fragment.starts_with_sync_of(init.reference_track);
        let live = Arc::new(LiveFragment {
            fragment,
            received: Instant::now(),
            received_unix_ms: unix_millis(now),
            key,
        });
        if live.fragment.runs.len() > 1 {
            state.single_track_fragments = false;
        }
        let index = state.ring_first + state.ring.len() as u64;
        if key {
            state.gop_start = Some(index);
            state.gop_bytes = 0;
        }
        if state.gop_start.is_some() {
            state.gop_bytes += live.fragment.len();
            if state.gop_bytes > MAX_GOP_BYTES {
                state.gop_start = None;
                state.gop_bytes = 0;
            }
        }
        self.place_in_segments(&mut state, &init, &live);
        Self::append(&mut state, Event::Fragment(live));
        drop(state);
        self.bump();
    }

    fn place_in_segments(&self, state: &mut State, init: &MediaInit, live: &Arc<LiveFragment>) {
        let Some(reference) = init.segment.track(init.reference_track) else {
            return;
        };
        if state.segmenter.is_none() {
            let next = state.next_number;
            state.segmenter = Some(Segmenter::new(
                reference,
                self.config.segment_secs,
                self.config.part_secs,
                next,
            ));
        }
        let Some(placement) = state
            .segmenter
            .as_mut()
            .and_then(|s| s.push(&live.fragment))
        else {
            return;
        };
        if let Some(closed) = placement.closed_segment {
            if let Some(mut open) = state.open.take() {
                open.duration = closed.duration;
                if let Some(part) = placement.closed_part {
                    Self::close_part(&mut open, part);
                }
                Self::finish_open(state, open, self.config.window);
            }
        } else if let (Some(part), Some(open)) = (placement.closed_part, state.open.as_mut()) {
            Self::close_part(open, part);
        }
        if placement.starts_segment {
            let run = live.fragment.run(init.reference_track).copied();
            let start = run.map_or(0, |r| r.decode_time);
            if state.anchor_ms.is_none() {
                let offset_ms = start.saturating_mul(1000) / u64::from(reference.timescale.max(1));
                state.anchor_ms = Some(live.received_unix_ms.saturating_sub(offset_ms));
            }
            let wall_start_ms = live
                .fragment
                .prft
                .and_then(|p| p.unix_millis())
                .unwrap_or(live.received_unix_ms);
            state.next_number = placement.segment + 1;
            let discontinuity = std::mem::take(&mut state.discontinuity);
            state.open = Some(Segment {
                number: placement.segment,
                generation: init.generation,
                start,
                duration: 0,
                timescale: reference.timescale,
                fragments: Vec::new(),
                parts: Vec::new(),
                tracks: Vec::new(),
                bytes: 0,
                wall_start_ms,
                discontinuity,
                complete: false,
            });
        }
        let Some(open) = state.open.as_mut() else {
            return;
        };
        if placement.starts_part {
            open.parts.push(Part {
                info: PartInfo {
                    segment: open.number,
                    index: placement.part,
                    start: live
                        .fragment
                        .run(init.reference_track)
                        .map_or(open.start, |r| r.decode_time),
                    duration: 0,
                    independent: live.key,
                },
                first: open.fragments.len(),
                count: 0,
            });
        }
        if let Some(part) = open.parts.last_mut() {
            part.count += 1;
        }
        for run in &live.fragment.runs {
            match open.track_timing_mut(run.track_id) {
                Some(timing) => timing.duration += run.duration,
                None => open.tracks.push(TrackTiming {
                    track_id: run.track_id,
                    start: run.decode_time,
                    duration: run.duration,
                }),
            }
        }
        open.bytes += live.fragment.len();
        open.fragments.push(live.clone());
    }

    fn close_part(open: &mut Segment, part: PartInfo) {
        if let Some(p) = open.parts.iter_mut().find(|p| p.info.index == part.index) {
            p.info.duration = part.duration;
        }
    }

    fn finish_open(state: &mut State, mut open: Segment, window: usize) {
        if open.duration == 0 {
            open.duration = open
                .tracks
                .iter()
                .find(|t| t.start == open.start)
                .map_or(0, |t| t.duration);
        }
        open.complete = true;
        state.window.push_back(Arc::new(open));
        while state.window.len() > window.max(1) {
            state.window.pop_front();
        }
    }

    /// The source ended: close the growing segment and tell every viewer.
    pub fn end(&self, status: Status) {
        let mut state = self.lock();
        if let Some(mut segmenter) = state.segmenter.take()
            && let (Some((segment, part)), Some(mut open)) = (segmenter.finish(), state.open.take())
        {
            open.duration = segment.duration;
            Self::close_part(&mut open, part);
            Self::finish_open(&mut state, open, self.config.window);
        }
        state.status = status;
        Self::append(&mut state, Event::End);
        drop(state);
        self.bump();
    }

    /// Adds an event to the ring and lets the oldest go, keeping the cached GOP.
    fn append(state: &mut State, event: Event) {
        state.ring.push_back(event);
        let keep_from = state.gop_start.unwrap_or(u64::MAX);
        while state.ring.len() > RING_CAPACITY && state.ring_first < keep_from {
            state.ring.pop_front();
            state.ring_first += 1;
        }
    }

    /// A new viewer: the init and the GOP so far, then everything live.
    pub fn subscribe(&self) -> Subscription {
        let state = self.lock();
        let head = state.ring_first + state.ring.len() as u64;
        let start = state.init.as_ref().and(state.gop_start);
        let subscription = Subscription {
            init: state.init.clone(),
            next: start.unwrap_or(head),
            backlog_end: head,
            resume: None,
            waiting_for_key: start.is_none(),
            skipping: false,
            skipped: 0,
            max_lag: self.config.max_viewer_lag,
            ended: false,
        };
        drop(state);
        self.counters.viewers.fetch_add(1, Ordering::Relaxed);
        self.demand.notify_one();
        subscription
    }

    /// The ring's events from number `first` on (or from its oldest, if that is later), to
    /// walk subscriptions over without holding the hub's lock.
    pub fn events_since(&self, first: u64) -> EventWindow {
        let state = self.lock();
        let from = first.max(state.ring_first);
        let skip = usize::try_from(from - state.ring_first).unwrap_or(usize::MAX);
        EventWindow {
            first: from,
            oldest: state.ring_first,
            events: state.ring.iter().skip(skip).cloned().collect(),
            now: Instant::now(),
        }
    }

    /// Called by a viewer's task when it goes.
    pub fn unsubscribe(&self) {
        self.counters.viewers.fetch_sub(1, Ordering::Relaxed);
        // The last viewer gone counts as a request: the idle time starts now.
        self.touch();
    }

    pub fn viewers(&self) -> u64 {
        self.counters.viewers.load(Ordering::Relaxed)
    }

    /// A consistent view of the init and the window, for manifests and segment requests.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            init: state.init.clone(),
            segments: state.window.iter().cloned().collect(),
            open: state.open.clone().map(Arc::new),
            anchor_ms: state.anchor_ms,
            discontinuities: state.discontinuities,
            single_track_fragments: state.single_track_fragments,
            status: state.status.clone(),
        }
    }

    /// The number of the newest segment, growing or complete, without copying anything.
    pub fn newest_number(&self) -> Option<u64> {
        let state = self.lock();
        state
            .open
            .as_ref()
            .map(|s| s.number)
            .or_else(|| state.window.back().map(|s| s.number))
    }

    /// The segment numbered `number`, complete or growing.
    pub fn segment(&self, number: u64) -> Option<Arc<Segment>> {
        let state = self.lock();
        if let Some(open) = state.open.as_ref().filter(|s| s.number == number) {
            return Some(Arc::new(open.clone()));
        }
        state.window.iter().find(|s| s.number == number).cloned()
    }

    /// Video and audio kinds of the current init, for the API.
    pub fn track_kinds(&self) -> Vec<TrackKind> {
        self.lock()
            .init
            .as_ref()
            .map(|i| i.segment.tracks.iter().map(|t| t.kind).collect())
            .unwrap_or_default()
    }
}

/// The hub's state at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub init: Option<Arc<MediaInit>>,
    pub segments: Vec<Arc<Segment>>,
    pub open: Option<Arc<Segment>>,
    pub anchor_ms: Option<u64>,
    pub discontinuities: u64,
    pub single_track_fragments: bool,
    pub status: Status,
}

impl Snapshot {
    /// Ingest bitrate over the window, in bits per second.
    pub fn bitrate_bps(&self) -> u64 {
        let bytes: usize = self.segments.iter().map(|s| s.bytes).sum();
        let secs: f64 = self.segments.iter().map(|s| s.duration_secs()).sum();
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        }
    }

    /// Bitrate of one track over the window.
    pub fn track_bitrate_bps(&self, track_id: u32) -> u64 {
        let bytes: usize = self
            .segments
            .iter()
            .flat_map(|s| s.track_chunks(track_id))
            .map(|b| b.len())
            .sum();
        let secs: f64 = self.segments.iter().map(|s| s.duration_secs()).sum();
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        }
    }
}

/// The ring's events from one number on, and the moment they were taken.
#[derive(Debug, Clone)]
pub struct EventWindow {
    /// The number of `events[0]`.
    pub first: u64,
    /// The number of the oldest event the ring still holds (at most `first`).
    pub oldest: u64,
    pub events: Vec<Event>,
    /// Staleness is judged against this, once per window rather than per event and viewer.
    pub now: Instant,
}

impl EventWindow {
    /// The number after the last event.
    pub fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    pub fn get(&self, number: u64) -> Option<&Event> {
        let offset = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.events.get(offset)
    }
}

/// What a viewer is sent next.
#[derive(Debug, Clone)]
pub enum Delivery {
    Init(Arc<MediaInit>),
    /// A fragment and its number in the ring.
    Fragment(u64, Arc<LiveFragment>),
    /// The viewer fell behind; this many fragments were left out and the next one starts a
    /// GOP.
    Skipped(u64),
    End,
}

/// One viewer's place in the hub's events: the init it joined with, the GOP, then live.
#[derive(Debug)]
pub struct Subscription {
    /// The init to send first (the stream's, when the viewer joined).
    init: Option<Arc<MediaInit>>,
    /// The number of the next event to look at.
    next: u64,
    /// Events before this number were the cached GOP when the viewer joined: sent whole,
    /// however old.
    backlog_end: u64,
    /// A fresh key frame found while skipping, sent right after the `Skipped` notice.
    resume: Option<(u64, Arc<LiveFragment>)>,
    /// After an init (or joining before the first key frame): drop media up to a key frame.
    waiting_for_key: bool,
    /// Behind: dropping media up to a key frame, counting it.
    skipping: bool,
    skipped: u64,
    max_lag: Duration,
    /// `End` has been delivered: nothing follows.
    ended: bool,
}

impl Subscription {
    /// The number of the next event this viewer needs.
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// Whether a fragment the hub took at `received` is too old to send at `now`.
    pub fn is_stale(&self, received: Instant, now: Instant) -> bool {
        now.saturating_duration_since(received) > self.max_lag
    }

    /// The viewer lost `n` fragments delivered to it but never sent (they went stale in its
    /// queue): it is told so and starts again at the next fresh key frame.
    pub fn skip_to_key(&mut self, n: u64) {
        self.skipped += n;
        self.skipping = !self.waiting_for_key;
    }

    /// The next delivery from `window`, or `None` when the viewer has everything in it (or
    /// the stream has ended).
    pub fn next_in(&mut self, window: &EventWindow) -> Option<Delivery> {
        if let Some(init) = self.init.take() {
            return Some(Delivery::Init(init));
        }
        if let Some((number, fragment)) = self.resume.take() {
            return Some(Delivery::Fragment(number, fragment));
        }
        while !self.ended {
            if self.next < window.first {
                // The ring let these go before the viewer got to them.
                self.skipped += window.first - self.next;
                self.skipping = !self.waiting_for_key;
                self.next = window.first;
            }
            let number = self.next;
            let event = window.get(number)?;
            self.next += 1;
            if let Some(delivery) = self.accept(number, event, window.now) {
                return Some(delivery);
            }
        }
        None
    }

    fn accept(&mut self, number: u64, event: &Event, now: Instant) -> Option<Delivery> {
        match event {
            Event::Init(init) => {
                self.waiting_for_key = true;
                self.skipping = false;
                Some(Delivery::Init(init.clone()))
            }
            Event::Fragment(fragment) => {
                let stale = number >= self.backlog_end && self.is_stale(fragment.received, now);
                if stale && !self.waiting_for_key {
                    self.skipping = true;
                }
                if self.skipping {
                    // Behind: leave out everything up to a key frame that is itself fresh,
                    // so that one skip brings the viewer back to the live edge.
                    if !fragment.key || stale {
                        self.skipped += 1;
                        return None;
                    }
                    self.skipping = false;
                    self.waiting_for_key = false;
                    self.resume = Some((number, fragment.clone()));
                    return Some(Delivery::Skipped(std::mem::take(&mut self.skipped)));
                }
                if self.waiting_for_key {
                    if !fragment.key {
                        return None;
                    }
                    self.waiting_for_key = false;
                }
                Some(Delivery::Fragment(number, fragment.clone()))
            }
            Event::End => {
                self.ended = true;
                Some(Delivery::End)
            }
        }
    }
}
