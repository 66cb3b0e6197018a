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
//! Each viewer also has a small reading task, which answers what the viewer sends (pings,
//! close) through the shard and notices when the connection goes.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::{self, Header};
use super::wire::{Frame, Wire, WireWindow};
use super::ws::{Slot, init_message};
use crate::stream::{Delivery, Hub, SEND_DELAY_BUCKETS, SendDelay, Stream, Subscription};

/// An idle socket is pinged this often (SPEC.md, step 7).
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Viewers send us nothing of size; anything larger is an abuse.
const MAX_INCOMING_FRAME: usize = 16 * 1024;
/// At most this much is taken from the hub into one viewer's queue at a time, so a viewer
/// that stops reading holds references to little, and is skipped rather than buried.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Slices per vectored write, within IOV_MAX (1024).
const MAX_SLICES: usize = 512;
/// A shard lets other tasks run after writing to this many viewers.
const VIEWERS_PER_TURN: usize = 64;
/// How soon a shard tries again when some socket could not take everything.
const RETRY_BLOCKED: Duration = Duration::from_millis(20);
/// How often a shard looks at idle viewers (pings) when nothing else happens.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// A viewer being closed whose socket takes nothing more is let go after this long.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The viewers of one stream.
pub struct Fanout {
    stream: Arc<Stream>,
    wire: Mutex<Wire>,
    shards: Vec<ShardHandle>,
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
        });
        for (joins, count, wake) in receivers {
            let shard = Shard {
                fanout: fanout.clone(),
                viewers: Vec::new(),
                count,
                wake,
                stats: Stats::default(),
            };
            tracker.spawn(shard.run(joins, shutdown.clone()));
        }
        fanout
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// A viewer whose WebSocket handshake is done: `pending_input` is what it sent after its
    /// request, if anything.
    pub fn join(&self, tcp: TcpStream, pending_input: Bytes, slot: Slot, span: tracing::Span) {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.viewers.load(Ordering::Relaxed))
        else {
            return;
        };
        let connection = Arc::new(Connection {
            tcp,
            control: Mutex::new(Vec::new()),
            has_control: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            done: CancellationToken::new(),
            wake: shard.wake.clone(),
        });
        let subscription = self.stream.hub.subscribe();
        span.in_scope(|| tracing::debug!(viewers = self.stream.hub.viewers(), "viewer joined"));
        // A copy of the few bytes there may be: `pending_input` is a view of the connection's
        // whole HTTP read buffer, which would otherwise stay for as long as the viewer does.
        let incoming = BytesMut::from(&pending_input[..]);
        drop(pending_input);
        tokio::spawn(read_viewer(connection.clone(), incoming));
        let now = Instant::now();
        let viewer = Viewer {
            connection,
            subscription,
            queue: VecDeque::new(),
            queued_bytes: 0,
            written: 0,
            joined: now,
            last_write: now,
            closing_since: None,
            _slot: slot,
            span,
        };
        shard.viewers.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(viewer)) = shard.joins.send(viewer) {
            // The shard has stopped: the server is shutting down.
            viewer.leave(&self.stream.hub);
        }
    }

    fn window(&self, from: u64) -> WireWindow {
        let mut wire = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        wire.window(&self.stream.hub, from)
    }
}

/// What a viewer's shard and its reading task share.
struct Connection {
    tcp: TcpStream,
    /// Frames the reading task wants sent (pongs, the close echo).
    control: Mutex<Vec<Bytes>>,
    has_control: AtomicBool,
    /// The viewer asked to close, or broke the protocol: send the control frames, then close.
    closing: AtomicBool,
    /// The connection is dead.
    gone: AtomicBool,
    /// Cancelled when the shard lets the viewer go: the reading task stops.
    done: CancellationToken,
    /// The shard's.
    wake: Arc<Notify>,
}

impl Connection {
    fn send_control(&self, frame: Bytes) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
        self.has_control.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Something queued for one viewer.
enum Out {
    /// A whole frame of this viewer's own (an init message, a notice, a control frame).
    Own(Bytes),
    /// A fragment's shared frame, and when the hub took the fragment (for the send delay).
    Frame(Arc<Frame>, Instant),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Own(bytes) => bytes.len(),
            Out::Frame(frame, _) => frame.len(),
        }
    }
}

/// A whole frame in one buffer, for what a viewer is sent of its own.
fn own_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let header = Header::new(opcode, payload.len());
    let mut out = BytesMut::with_capacity(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    own_frame(frame::OPCODE_CLOSE, &payload)
}

/// One viewer, as its shard keeps it.
struct Viewer {
    connection: Arc<Connection>,
    subscription: Subscription,
    queue: VecDeque<Out>,
    queued_bytes: usize,
    /// Bytes of `queue[0]` already written.
    written: usize,
    joined: Instant,
    last_write: Instant,
    /// Set once the viewer is to be closed: nothing but what is queued goes out.
    closing_since: Option<Instant>,
    _slot: Slot,
    span: tracing::Span,
}

/// What became of a viewer on a walk.
enum Turn {
    /// Still with us.
    Stays,
    /// Let it go.
    Leaves,
}

/// Counts a shard gathers during a walk and adds to the hub's once.
#[derive(Default)]
struct Stats {
    fragments: u64,
    bytes: u64,
    writes: u64,
    skips: u64,
    skipped: u64,
    delay_buckets: [u64; SEND_DELAY_BUCKETS.len() + 1],
    delay_sum: Duration,
}

impl Stats {
    fn flush(&mut self, hub: &Hub) {
        let c = &hub.counters;
        c.fragments_out.fetch_add(self.fragments, Ordering::Relaxed);
        c.bytes_out.fetch_add(self.bytes, Ordering::Relaxed);
        c.socket_writes.fetch_add(self.writes, Ordering::Relaxed);
        c.skips.fetch_add(self.skips, Ordering::Relaxed);
        c.skipped_fragments
            .fetch_add(self.skipped, Ordering::Relaxed);
        c.send_delay.add(&self.delay_buckets, self.delay_sum);
        *self = Stats::default();
    }

    fn observe_delay(&mut self, delay: Duration) {
        if let Some(bucket) = self.delay_buckets.get_mut(SendDelay::bucket(delay)) {
            *bucket += 1;
        }
        self.delay_sum += delay;
    }
}

struct Shard {
    fanout: Arc<Fanout>,
    viewers: Vec<Viewer>,
    count: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    stats: Stats,
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
            let blocked = self.viewers.iter().any(|v| !v.queue.is_empty());
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
            match viewer.turn(hub, &window, &mut self.stats) {
                Turn::Stays => index += 1,
                Turn::Leaves => {
                    let viewer = self.viewers.swap_remove(index);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    viewer.leave(hub);
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
        self.stats.flush(hub);
    }

    /// The server is stopping: a close frame to each viewer, as far as its socket takes it.
    fn close_all(&mut self, hub: &Hub) {
        for mut viewer in self.viewers.drain(..) {
            viewer.close_now(frame::CLOSE_GOING_AWAY, "server shutting down");
            let _ = viewer.flush(&mut self.stats);
            viewer.leave(hub);
        }
        self.count.store(0, Ordering::Relaxed);
        self.stats.flush(hub);
    }
}

impl Viewer {
    /// One walk's work for this viewer: take in what the hub has, write what the socket
    /// takes.
    fn turn(&mut self, hub: &Hub, window: &WireWindow, stats: &mut Stats) -> Turn {
        if self.connection.gone.load(Ordering::Acquire) {
            return Turn::Leaves;
        }
        if self.connection.has_control.swap(false, Ordering::AcqRel) {
            let control = std::mem::take(
                &mut *self
                    .connection
                    .control
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if self.connection.closing.load(Ordering::Acquire) {
                self.truncate_queue();
                self.closing_since.get_or_insert_with(Instant::now);
            }
            let at = usize::from(self.written > 0).min(self.queue.len());
            for (i, frame) in control.into_iter().enumerate() {
                self.queued_bytes += frame.len();
                self.queue.insert(at + i, Out::Own(frame));
            }
        }
        if self.closing_since.is_none() && self.queue.is_empty() {
            self.take_from(hub, window, stats);
            if self.queue.is_empty() && self.last_write.elapsed() > PING_INTERVAL {
                self.push(Out::Own(own_frame(frame::OPCODE_PING, &[])));
            }
        }
        self.drop_stale(window.events.now);
        if self.flush(stats).is_err() {
            return Turn::Leaves;
        }
        match self.closing_since {
            Some(since) if self.queue.is_empty() || since.elapsed() > CLOSE_GRACE => {
                let _ = socket2::SockRef::from(&self.connection.tcp)
                    .shutdown(std::net::Shutdown::Write);
                Turn::Leaves
            }
            _ => Turn::Stays,
        }
    }

    fn push(&mut self, out: Out) {
        self.queued_bytes += out.len();
        self.queue.push_back(out);
    }

    /// Takes the viewer's next deliveries into its queue.
    fn take_from(&mut self, hub: &Hub, window: &WireWindow, stats: &mut Stats) {
        while self.queued_bytes < MAX_BATCH_BYTES {
            let Some(delivery) = self.subscription.next_in(&window.events) else {
                break;
            };
            match delivery {
                Delivery::Init(init) => {
                    let text = init_message(&init, hub.timeline());
                    self.push(Out::Own(own_frame(frame::OPCODE_TEXT, text.as_bytes())));
                    self.push(Out::Own(own_frame(
                        frame::OPCODE_BINARY,
                        &init.segment.bytes,
                    )));
                }
                Delivery::Fragment(number, fragment) => {
                    let frame = window
                        .frame(number)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Frame::new(fragment.fragment.bytes.clone())));
                    self.push(Out::Frame(frame, fragment.received));
                }
                Delivery::Skipped(n) => {
                    stats.skips += 1;
                    stats.skipped += n;
                    self.span.in_scope(|| {
                        tracing::debug!(fragments = n, "slow viewer moved to the next key frame");
                    });
                    let text = json!({"type": "skipped", "fragments": n}).to_string();
                    self.push(Out::Own(own_frame(frame::OPCODE_TEXT, text.as_bytes())));
                }
                Delivery::End => {
                    let text = json!({"type": "end"}).to_string();
                    self.push(Out::Own(own_frame(frame::OPCODE_TEXT, text.as_bytes())));
                    self.push(Out::Own(close_frame(frame::CLOSE_NORMAL, "stream ended")));
                    self.closing_since = Some(Instant::now());
                    break;
                }
            }
        }
    }

    /// A viewer whose socket took too little for too long has fragments in its queue that are
    /// already too old: they are dropped (all but a frame already begun, and the viewer's own
    /// messages), and the viewer is moved to the next fresh key frame like any other that
    /// fell behind. Without this, what a slow viewer took in while it still kept up would
    /// reach it seconds late.
    fn drop_stale(&mut self, now: Instant) {
        let begun = usize::from(self.written > 0);
        let oldest = self.queue.iter().skip(begun).find_map(|out| match out {
            Out::Frame(_, received) => Some(*received),
            Out::Own(_) => None,
        });
        if !oldest.is_some_and(|received| self.subscription.is_stale(received, now)) {
            return;
        }
        let before = self.queue.len();
        let mut index = 0;
        self.queue.retain(|out| {
            index += 1;
            index <= begun || matches!(out, Out::Own(_))
        });
        self.queued_bytes = self.queue.iter().map(Out::len).sum();
        self.subscription
            .skip_to_key((before - self.queue.len()) as u64);
    }

    /// Drops what is queued, but for a frame already begun (its end must still go out).
    fn truncate_queue(&mut self) {
        let keep = usize::from(self.written > 0);
        self.queue.truncate(keep);
        self.queued_bytes = self.queue.iter().map(Out::len).sum();
    }

    /// Queues a close frame and nothing after it.
    fn close_now(&mut self, code: u16, reason: &str) {
        self.truncate_queue();
        self.push(Out::Own(close_frame(code, reason)));
        self.closing_since.get_or_insert_with(Instant::now);
    }

    /// Writes as much of the queue as the socket takes now. `Err` means the connection is
    /// broken.
    fn flush(&mut self, stats: &mut Stats) -> std::io::Result<()> {
        while let Some(front) = self.queue.front() {
            let result = match front {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Out::Frame(frame, _) if frame.file.is_some() && super::wire::file::usable() => {
                    self.send_file_run()
                }
                _ => self.write_slices(),
            };
            let (written, asked) = match result {
                Ok(counts) => counts,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                // Interrupted, or sendfile refused (the queue then goes out as writes).
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::Unsupported
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(err),
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            stats.writes += 1;
            self.last_write = Instant::now();
            self.advance(written, stats);
            if written < asked {
                // The socket is full: the rest waits for the next walk.
                return Ok(());
            }
        }
        Ok(())
    }

    /// One `sendfile` of the longest run of queued frames lying back to back in one chunk.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_file_run(&self) -> std::io::Result<(usize, usize)> {
        let mut run: Option<(&super::wire::file::Span, usize)> = None;
        let mut total = 0usize;
        for out in &self.queue {
            let Out::Frame(frame, _) = out else { break };
            let Some(span) = frame.file.as_ref() else {
                break;
            };
            match run {
                None => run = Some((span, frame.len())),
                Some((last, last_len)) if last.continues_with(last_len, span) => {
                    run = Some((span, frame.len()));
                }
                Some(_) => break,
            }
            total += frame.len();
            if total >= MAX_BATCH_BYTES {
                break;
            }
        }
        let Some(Out::Frame(first, _)) = self.queue.front() else {
            return Ok((0, 0));
        };
        let Some(start) = first.file.as_ref() else {
            return Ok((0, 0));
        };
        let asked = total - self.written;
        let offset = start.offset + self.written as u64;
        let written = self.connection.tcp.try_io(Interest::WRITABLE, || {
            super::wire::file::send(&self.connection.tcp, &start.chunk, offset, asked)
        })?;
        Ok((written, asked))
    }

    /// One vectored write of the queue's front: own frames, and shared frames as header and
    /// payload.
    fn write_slices(&self) -> std::io::Result<(usize, usize)> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.queue.len().min(MAX_SLICES));
        for out in &self.queue {
            if slices.len() + 2 > MAX_SLICES {
                break;
            }
            match out {
                Out::Own(bytes) => slices.push(IoSlice::new(bytes)),
                Out::Frame(frame, _) => {
                    slices.push(IoSlice::new(frame.header.as_bytes()));
                    if !frame.payload.is_empty() {
                        slices.push(IoSlice::new(&frame.payload));
                    }
                }
            }
        }
        let mut remaining = &mut slices[..];
        IoSlice::advance_slices(&mut remaining, self.written);
        let asked = remaining.iter().map(|s| s.len()).sum();
        let written = self.connection.tcp.try_write_vectored(remaining)?;
        Ok((written, asked))
    }

    /// Counts `n` more bytes of the queue as written.
    fn advance(&mut self, mut n: usize, stats: &mut Stats) {
        let now = Instant::now();
        while let Some(front) = self.queue.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.queued_bytes -= front.len();
            if let Some(Out::Frame(frame, received)) = self.queue.pop_front() {
                stats.fragments += 1;
                stats.bytes += frame.payload.len() as u64;
                // The GOP a viewer joins with is not a delay.
                if received > self.joined {
                    stats.observe_delay(now.saturating_duration_since(received));
                }
            }
        }
    }

    fn leave(self, hub: &Hub) {
        self.connection.done.cancel();
        hub.unsubscribe();
        self.span
            .in_scope(|| tracing::debug!(viewers = hub.viewers(), "viewer left"));
    }
}

/// Reads what a viewer sends: pings are answered, a close is echoed, data is ignored; a
/// broken or finished connection is reported to the shard.
async fn read_viewer(connection: Arc<Connection>, mut incoming: BytesMut) {
    loop {
        if answer_client(&connection, &mut incoming) {
            return;
        }
        tokio::select! {
            _ = connection.done.cancelled() => return,
            ready = connection.tcp.readable() => if ready.is_err() {
                connection.gone();
                return;
            },
        }
        if incoming.capacity() - incoming.len() < 256 {
            incoming.reserve(1024);
        }
        match connection.tcp.try_read_buf(&mut incoming) {
            Ok(0) => {
                connection.gone();
                return;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                connection.gone();
                return;
            }
        }
    }
}

/// Answers the whole frames in `incoming`; true once the viewer is being closed.
fn answer_client(connection: &Connection, incoming: &mut BytesMut) -> bool {
    loop {
        match frame::read_client_frame(incoming, MAX_INCOMING_FRAME) {
            Ok(Some(f)) => match f.opcode {
                frame::OPCODE_PING => {
                    connection.send_control(own_frame(frame::OPCODE_PONG, &f.payload));
                }
                frame::OPCODE_CLOSE => {
                    // Echo the viewer's code, as RFC 6455 §5.5.1 asks.
                    connection.closing.store(true, Ordering::Release);
                    connection.send_control(own_frame(frame::OPCODE_CLOSE, &f.payload));
                    return true;
                }
                _ => {}
            },
            Ok(None) => {
                // What is left is the start of a frame: keep the buffer small.
                if incoming.is_empty() && incoming.capacity() > 4 * MAX_INCOMING_FRAME {
                    *incoming = BytesMut::with_capacity(256);
                }
                return false;
            }
            Err(err) => {
                let (code, reason) = match err {
                    frame::FrameError::Unmasked => {
                        (frame::CLOSE_PROTOCOL_ERROR, "client frames must be masked")
                    }
                    frame::FrameError::TooBig(_) => (frame::CLOSE_TOO_BIG, "message too big"),
                };
                connection.closing.store(true, Ordering::Release);
                connection.send_control(close_frame(code, reason));
                return true;
            }
        }
    }
}
