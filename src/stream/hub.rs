//! The hub of one stream: what its source hands over goes into the segment window
//! ([`Window`]: segments, parts, manifests' view) and the event ring ([`Ring`]: what viewers
//! are sent), under one lock; the hub also keeps the stream's status and its demand (who is
//! watching, for on-demand sources) and tells waiters when anything changed. Sending to
//! viewers is the server's job: it reads the ring through [`Hub::events_since`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};

use super::ring::{EventWindow, Ring, Subscription};
use super::window::{Cutting, Segment, Snapshot, Status, Window};
use crate::fmp4::{Fragment, InitSegment, TrackKind};

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

impl HubConfig {
    /// How the segment window cuts.
    pub fn cutting(&self) -> Cutting {
        Cutting {
            segment_secs: self.segment_secs,
            part_secs: self.part_secs,
            keep: self.window,
        }
    }
}

/// What the stream took in and what became of its source, for the API and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub viewers: AtomicU64,
    pub fragments_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub source_restarts: AtomicU64,
    pub upstream_reconnects: AtomicU64,
}

struct State {
    window: Window,
    ring: Ring,
    status: Status,
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
            timeline: new_timeline_id(),
            state: Mutex::new(State {
                window: Window::new(config.cutting(), first_number),
                ring: Ring::default(),
                status: Status::Starting,
            }),
            config,
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
        state.window.reset();
        state.ring.clear();
        state.status = status;
        drop(state);
        self.bump();
    }

    /// The number the next segment will have.
    pub fn next_number(&self) -> u64 {
        self.lock().window.next_number()
    }

    /// Numbers the segments from `next` on, if that is further than they had got (the
    /// rungs of a ladder that starts again).
    pub fn number_from(&self, next: u64) {
        self.lock().window.number_from(next);
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

    /// Asks `check` now and after every change of the hub until it answers, or `None` once
    /// `deadline` has passed without an answer.
    pub async fn wait_for<T>(
        &self,
        deadline: tokio::time::Instant,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        // Subscribed before the first look: a change between the two is not missed.
        let mut updates = self.watch();
        loop {
            if let Some(answer) = check(self) {
                return Some(answer);
            }
            match tokio::time::timeout_at(deadline, updates.changed()).await {
                Ok(Ok(())) => {}
                // The hub holds the sender for as long as it lives: only the deadline ends this.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
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
        let mut state = self.lock();
        let Some(media) = state.window.set_init(segment) else {
            tracing::warn!("init segment without tracks ignored");
            return;
        };
        state.status = Status::Live;
        state.ring.push_init(media);
        drop(state);
        self.bump();
    }

    /// Takes a fragment the source handed over at `received`: segment window, GOP cache,
    /// every viewer.
    pub fn push(&self, fragment: Fragment, received: Instant) {
        let received_unix_ms = unix_millis(SystemTime::now());
        self.counters.fragments_in.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_in
            .fetch_add(fragment.len() as u64, Ordering::Relaxed);
        let mut state = self.lock();
        let Some(live) = state.window.push(fragment, received, received_unix_ms) else {
            return;
        };
        state.ring.push_fragment(live);
        drop(state);
        self.bump();
    }

    /// The source ended: close the growing segment and tell every viewer.
    pub fn end(&self, status: Status) {
        let mut state = self.lock();
        state.window.finish();
        state.status = status;
        state.ring.push_end();
        drop(state);
        self.bump();
    }

    /// A new viewer: the init and the GOP so far, then everything live.
    pub fn subscribe(&self) -> Subscription {
        let state = self.lock();
        let subscription = state
            .ring
            .subscribe(state.window.init().cloned(), self.config.max_viewer_lag);
        drop(state);
        self.counters.viewers.fetch_add(1, Ordering::Relaxed);
        self.demand.notify_one();
        subscription
    }

    /// A viewer coming from another rung of the same ladder: see
    /// [`super::ring::Ring::subscribe_at_key`].
    pub fn subscribe_at_key(&self, key_secs: Option<f64>) -> Subscription {
        let state = self.lock();
        let subscription = state.ring.subscribe_at_key(
            state.window.init().cloned(),
            self.config.max_viewer_lag,
            key_secs,
        );
        drop(state);
        self.counters.viewers.fetch_add(1, Ordering::Relaxed);
        self.demand.notify_one();
        subscription
    }

    /// The ring's events from number `first` on (or from its oldest, if that is later), taken
    /// at `now`, to walk subscriptions over without holding the hub's lock.
    pub fn events_since(&self, first: u64, now: Instant) -> EventWindow {
        self.lock().ring.since(first, now)
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
        state.window.snapshot(state.status.clone())
    }

    /// The number of the newest segment, growing or complete, without copying anything.
    pub fn newest_number(&self) -> Option<u64> {
        self.lock().window.newest_number()
    }

    /// The segment numbered `number`, complete or growing.
    pub fn segment(&self, number: u64) -> Option<Arc<Segment>> {
        self.lock().window.segment(number)
    }

    /// Video and audio kinds of the current init, for the API.
    pub fn track_kinds(&self) -> Vec<TrackKind> {
        self.lock().window.track_kinds()
    }
}
