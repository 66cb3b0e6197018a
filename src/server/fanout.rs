//! Sending one stream to its WebSocket viewers.
//!
//! A stream's viewers are split among a few shards (one per worker thread). A shard is one
//! task that, whenever the hub has something new, walks its viewers in turn and writes each
//! everything it has pending in one system call, without waiting: a socket that cannot take
//! more keeps its backlog for the next walk, and a viewer that falls too far behind is moved
//! to the next key frame by its [`Subscription`]. This is what holds thousands of viewers on
//! a small machine: each fragment costs one wake-up per shard rather than one per viewer, the
//! walks visit viewers in a fixed order (a viewer waits one walk at most, never a random
//! scheduler queue), and a viewer that is behind catches up in one write. The bytes are the
//! wire's shared frames ([`super::wire`]); a viewer owns only its queue of references.
//!
//! Each viewer ([`super::viewer`]) also has a small reading task ([`super::reader`]), which
//! answers what the viewer sends (pings, close) through the shard and notices when the
//! connection goes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::Expiry;
use super::metrics::{SendCounters, SendTally};
use super::reader::read_viewer;
use super::viewer::{Connection, Transport, Turn, Viewer};
use super::wire::{Wire, WireWindow};
use super::ws::Slot;
use crate::protocol;
use crate::stream::{Hub, Stream};

/// A shard lets other tasks run after writing to this many viewers.
const VIEWERS_PER_TURN: usize = 64;
/// How soon a shard tries again when some socket could not take everything.
const RETRY_BLOCKED: Duration = Duration::from_millis(20);
/// How often a shard looks at idle viewers (pings) when nothing else happens.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The viewers of one stream.
pub struct Fanout {
    stream: Arc<Stream>,
    wire: Mutex<Wire>,
    shards: Vec<ShardHandle>,
    counters: SendCounters,
    /// The server's: each viewer's reading task is spawned on it.
    tracker: TaskTracker,
}

struct ShardHandle {
    joins: mpsc::UnboundedSender<Viewer>,
    viewers: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl Fanout {
    /// Starts `shards` shard tasks for `stream`; they end at `shutdown`, closing their
    /// viewers with 1001.
    pub fn start(
        stream: Arc<Stream>,
        shards: usize,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Self> {
        let mut handles = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..shards.max(1) {
            let (joins, rx) = mpsc::unbounded_channel();
            let handle = ShardHandle {
                joins,
                viewers: Arc::new(AtomicUsize::new(0)),
                wake: Arc::new(Notify::new()),
            };
            receivers.push((rx, handle.viewers.clone(), handle.wake.clone()));
            handles.push(handle);
        }
        let fanout = Arc::new(Self {
            stream,
            wire: Mutex::new(Wire::new()),
            shards: handles,
            counters: SendCounters::default(),
            tracker: tracker.clone(),
        });
        for (joins, count, wake) in receivers {
            let shard = Shard {
                fanout: fanout.clone(),
                viewers: Vec::new(),
                count,
                wake,
                tally: SendTally::default(),
            };
            tracker.spawn(shard.run(joins, shutdown.clone()));
        }
        fanout
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// What this stream's viewers were sent.
    pub fn counters(&self) -> &SendCounters {
        &self.counters
    }

    /// A viewer whose WebSocket handshake is done: `pending_input` is what it sent after its
    /// request, if anything.
    pub fn join(
        &self,
        transport: Transport,
        pending_input: Bytes,
        slot: Slot,
        expiry: Option<Expiry>,
        span: tracing::Span,
        seat: Option<super::viewer::Seat>,
    ) {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.viewers.load(Ordering::Relaxed))
        else {
            return;
        };
        let connection = Arc::new(Connection::new(transport, expiry, shard.wake.clone()));
        let subscription = self.stream.hub.subscribe();
        span.in_scope(|| tracing::debug!(viewers = self.stream.hub.viewers(), "viewer joined"));
        // A copy of the few bytes there may be: `pending_input` is a view of the connection's
        // whole HTTP read buffer, which would otherwise stay for as long as the viewer does.
        let incoming = BytesMut::from(&pending_input[..]);
        drop(pending_input);
        self.tracker
            .spawn(read_viewer(connection.clone(), incoming));
        let mut viewer = Viewer::new(connection, subscription, slot, span);
        if let Some(seat) = seat {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let _ = socket2::SockRef::from(&viewer.connection.tcp)
                .set_tcp_notsent_lowat(super::viewer::LADDER_NOT_SENT_BYTES);
            viewer.notify_text(&seat.message());
            viewer.seat = Some(seat);
        }
        shard.viewers.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(viewer)) = shard.joins.send(viewer) {
            // The shard has stopped: the server is shutting down.
            viewer.leave(&self.stream.hub);
        }
    }

    /// A viewer of rung `rung` of its ladder, coming from another rung of it: it goes on at
    /// the key frame at `key_secs` (or at this rung's next one), after this rung's init.
    pub fn adopt(&self, mut viewer: Viewer, rung: usize, key_secs: Option<f64>) {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.viewers.load(Ordering::Relaxed))
        else {
            viewer.connection.gone();
            return;
        };
        viewer.connection.set_wake(shard.wake.clone());
        viewer.subscription = self.stream.hub.subscribe_at_key(key_secs);
        if let Some(seat) = viewer.seat.as_mut() {
            seat.moved_to(rung, Instant::now());
            let message = seat.message();
            viewer.notify_text(&message);
        }
        shard.viewers.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(viewer)) = shard.joins.send(viewer) {
            viewer.leave(&self.stream.hub);
        } else {
            shard.wake.notify_one();
        }
    }

    fn window(&self, from: u64) -> WireWindow {
        let mut wire = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        wire.window(&self.stream.hub, from, Instant::now())
    }
}

struct Shard {
    fanout: Arc<Fanout>,
    viewers: Vec<Viewer>,
    count: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    tally: SendTally,
}

impl Shard {
    async fn run(
        mut self,
        mut joins: mpsc::UnboundedReceiver<Viewer>,
        shutdown: CancellationToken,
    ) {
        let hub = self.fanout.stream.hub.clone();
        let mut updates = hub.watch();
        loop {
            let blocked = self.viewers.iter().any(Viewer::has_backlog);
            let tick = if blocked { RETRY_BLOCKED } else { IDLE_TICK };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                joined = joins.recv() => match joined {
                    Some(viewer) => self.viewers.push(viewer),
                    None => break,
                },
                changed = updates.changed() => if changed.is_err() { break },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
            while let Ok(viewer) = joins.try_recv() {
                self.viewers.push(viewer);
            }
            self.walk(&hub, &mut updates).await;
        }
        self.close_all(&hub);
    }

    /// Writes every viewer what it has pending, in order, and lets go of those that left.
    /// Whatever the hub receives during the walk is taken in as it goes (at each pause), so
    /// that a fragment waits for one walk at most, not for the end of this one and the next.
    async fn walk(&mut self, hub: &Hub, updates: &mut watch::Receiver<u64>) {
        let Some(from) = self
            .viewers
            .iter()
            .map(|v| v.subscription.next_number())
            .min()
        else {
            return;
        };
        updates.borrow_and_update();
        let mut window = self.fanout.window(from);
        let mut index = 0;
        let mut since_yield = 0;
        while index < self.viewers.len() {
            let viewer = &mut self.viewers[index];
            match viewer.turn(hub, &window, &mut self.tally) {
                Turn::Stays => index += 1,
                Turn::Leaves => {
                    let viewer = self.viewers.swap_remove(index);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    viewer.leave(hub);
                }
                Turn::Switch { rung, key_secs } => {
                    let mut viewer = self.viewers.swap_remove(index);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    viewer.leave_for_rung(hub);
                    let target = viewer
                        .seat
                        .as_ref()
                        .and_then(|seat| seat.rungs.get(rung).cloned());
                    match target {
                        Some(target) => target.adopt(viewer, rung, key_secs),
                        None => viewer.connection.gone(),
                    }
                }
            }
            since_yield += 1;
            if since_yield == VIEWERS_PER_TURN {
                since_yield = 0;
                tokio::task::yield_now().await;
                if updates.has_changed().unwrap_or(false) {
                    updates.borrow_and_update();
                    window = self.fanout.window(from);
                }
            }
        }
        self.tally.flush(&self.fanout.counters);
    }

    /// The server is stopping: a close frame to each viewer, as far as its socket takes it.
    fn close_all(&mut self, hub: &Hub) {
        for mut viewer in self.viewers.drain(..) {
            viewer.close_now(protocol::CLOSE_GOING_AWAY, "server shutting down");
            let _ = viewer.flush(&mut self.tally);
            viewer.leave(hub);
        }
        self.count.store(0, Ordering::Relaxed);
        self.tally.flush(&self.fanout.counters);
    }
}
