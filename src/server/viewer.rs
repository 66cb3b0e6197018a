//! One WebSocket viewer as its shard keeps it: its place in the stream's events, its queue of
//! frames, and the writes that empty that queue onto its socket without waiting.
//!
//! A viewer owns only references: shared frames of the wire ([`super::wire`]) and the few
//! frames of its own (its init message, notices, control frames). Fragments that went stale
//! in its queue are dropped and the viewer moved to the next fresh key frame, so a slow
//! socket costs that viewer alone.

use std::collections::VecDeque;
use std::io::{IoSlice, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::auth::Expiry;
use super::frame;
use super::metrics::SendTally;
use super::wire::{Frame, WireWindow};
use super::ws::Slot;
use crate::protocol::{self, InitInfo, Message};
use crate::stream::{Delivery, Hub, MediaInit, Subscription, unix_millis};

/// At most this much is taken from the hub into one viewer's queue at a time, so a viewer
/// that stops reading holds references to little, and is skipped rather than buried.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Slices per vectored write, within IOV_MAX (1024).
const MAX_SLICES: usize = 512;
/// A viewer being closed whose socket takes nothing more is let go after this long.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A viewer's connection after the handshake.
pub enum Transport {
    Plain(TcpStream),
    /// The socket and its TLS session: every byte in and out goes through the session.
    Tls(TcpStream, Box<rustls::ServerConnection>),
}

/// Bytes of encrypted records a TLS viewer's session may hold beyond what its socket took,
/// like the kernel's not-sent low-water mark: the rest of a backlog stays in the queue, where
/// it can be skipped.
const TLS_BUFFER_BYTES: usize = 32 * 1024;

/// What a viewer's shard and its reading task ([`super::reader`]) share.
pub struct Connection {
    pub tcp: TcpStream,
    /// The TLS session, if the viewer came over TLS. The shard writes through it, the
    /// reading task reads through it; each holds the lock for one call.
    pub tls: Option<Mutex<rustls::ServerConnection>>,
    /// Frames the reading task wants sent (pongs, the close echo).
    control: Mutex<Vec<Bytes>>,
    has_control: AtomicBool,
    /// The viewer asked to close, or broke the protocol: send the control frames, then close.
    closing: AtomicBool,
    /// The connection is dead.
    gone: AtomicBool,
    /// Cancelled when the shard lets the viewer go: the reading task stops.
    pub done: CancellationToken,
    /// When the viewer's token runs out, if its stream needs one.
    pub expiry: Option<Expiry>,
    /// The shard's (another shard's once the viewer moves to another rung).
    wake: Mutex<Arc<Notify>>,
    /// A rung the viewer asked for (`360`, `auto`), for its shard to act on.
    asked: Mutex<Option<String>>,
}

impl Connection {
    /// `wake` is the shard's: it is woken when there is something to send or the
    /// connection died.
    pub fn new(transport: Transport, expiry: Option<Expiry>, wake: Arc<Notify>) -> Self {
        let (tcp, tls) = match transport {
            Transport::Plain(tcp) => (tcp, None),
            Transport::Tls(tcp, mut session) => {
                session.set_buffer_limit(Some(TLS_BUFFER_BYTES));
                (tcp, Some(Mutex::new(*session)))
            }
        };
        Self {
            tcp,
            tls,
            control: Mutex::new(Vec::new()),
            has_control: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            done: CancellationToken::new(),
            expiry,
            wake: Mutex::new(wake),
            asked: Mutex::new(None),
        }
    }

    fn notify(&self) {
        self.wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notify_one();
    }

    /// The viewer moved to a shard of another fan-out: wake that one from now on.
    pub fn set_wake(&self, wake: Arc<Notify>) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = wake;
    }

    /// The viewer asked for rung `name` (or `auto`).
    pub fn ask_rendition(&self, name: String) {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
        self.notify();
    }

    fn take_asked(&self) -> Option<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn send_control(&self, frame: Bytes) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
        self.has_control.store(true, Ordering::Release);
        self.notify();
    }

    /// Sends `frame` (a close) and nothing more.
    pub fn close_with(&self, frame: Bytes) {
        self.closing.store(true, Ordering::Release);
        self.send_control(frame);
    }

    pub fn gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.notify();
    }

    /// Wakes the shard (the TLS session has something of its own to send).
    pub fn wake(&self) {
        self.notify();
    }

    /// Whether the TLS session holds records the socket has not taken.
    fn tls_pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.lock().unwrap_or_else(|e| e.into_inner()).wants_write())
    }

    /// Half-closes the connection: TLS's close_notify first, as far as the socket takes it.
    fn finish(&self) {
        if let Some(tls) = &self.tls {
            let mut session = tls.lock().unwrap_or_else(|e| e.into_inner());
            session.send_close_notify();
            let _ = session.write_tls(&mut Nonblocking(&self.tcp));
        }
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
    }
}

/// A socket as `std::io` sees it, without waiting: `WouldBlock` when it cannot take or give
/// more now (and tokio's readiness is cleared, so the next wait is a real one).
pub struct Nonblocking<'a>(pub &'a TcpStream);

impl std::io::Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// Something queued for one viewer.
enum Out {
    /// A whole frame of this viewer's own (an init message, a notice, a control frame).
    Own(Bytes),
    /// The `skipped` notice for this many fragments, as a whole frame.
    Skipped(Bytes, u64),
    /// A fragment's shared frame, and when the hub took the fragment (for the send delay).
    Frame(Arc<Frame>, Instant),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Own(bytes) | Out::Skipped(bytes, _) => bytes.len(),
            Out::Frame(frame, _) => frame.len(),
        }
    }

    fn text(message: &Message) -> Self {
        Out::Own(frame::whole(
            frame::OPCODE_TEXT,
            message.to_json().as_bytes(),
        ))
    }
}

/// What became of a viewer on a walk.
pub enum Turn {
    /// Still with us.
    Stays,
    /// Let it go.
    Leaves,
    /// Move it to rung `rung` of its ladder, at the key frame at `key_secs` of media if there
    /// is one to meet (an up-switch, seamless), else at the target's next key frame.
    Switch { rung: usize, key_secs: Option<f64> },
}

/// A ladder viewer's place among the rungs, and what the switching has seen.
///
/// The hysteresis: a viewer whose oldest queued fragment is [`DOWN_LAG`] old moves down a
/// rung at once (the rest of its queue dropped; it resumes at the lower rung's next key
/// frame), at most every [`MIN_STAY`]; one whose queue stays below [`ROOMY_LAG`] for
/// `up_wait` moves up a rung at a key frame, without a gap. A step up is a probe: within
/// [`UP_REGRET`] of it, [`PROBE_LAG`] behind takes it back, and `up_wait` (from [`UP_WAIT`])
/// doubles, to [`MAX_UP_WAIT`], so a link that does not carry a rung tries it ever less.
/// The kernel holds little of such a viewer's backlog ([`LADDER_NOT_SENT_BYTES`]), so the
/// queue's age is the viewer's lag within a fraction of a second.
pub struct Seat {
    /// The fan-out of every rung, top first.
    pub rungs: Arc<[Arc<super::fanout::Fanout>]>,
    pub names: Arc<[String]>,
    pub current: usize,
    /// The server picks the rung.
    pub auto: bool,
    /// A rung to move to at the next chance.
    wanted: Option<usize>,
    changed_at: Instant,
    went_up_at: Option<Instant>,
    roomy_since: Option<Instant>,
    up_wait: Duration,
    /// The reference track's id and timescale on the current rung.
    reference: Option<(u32, u32)>,
}

/// A ladder viewer this far behind moves down a rung.
pub const DOWN_LAG: Duration = Duration::from_millis(400);
/// Within [`UP_REGRET`] of a step up, a ladder viewer this far behind takes it back: a rung
/// the link does not carry costs a probe a fraction of a second, not the full `DOWN_LAG`.
pub const PROBE_LAG: Duration = Duration::from_millis(200);
/// A ladder viewer that moved down stays on the rung at least this long before it moves down
/// again (its queue was emptied by the move: a moment to see whether the rung fits).
pub const MIN_STAY: Duration = Duration::from_secs(1);
/// A ladder viewer's kernel may hold this much not yet sent (`TCP_NOTSENT_LOWAT`): less than
/// other viewers', so that a backlog shows in its queue, where the switching sees it, within
/// a fraction of a second at the rates the lower rungs are for.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const LADDER_NOT_SENT_BYTES: u32 = 8 * 1024;
/// Below this, a ladder viewer has room to spare.
pub const ROOMY_LAG: Duration = Duration::from_millis(100);
/// With room to spare this long, a ladder viewer tries the rung above.
pub const UP_WAIT: Duration = Duration::from_secs(4);
pub const MAX_UP_WAIT: Duration = Duration::from_secs(64);
/// A step down this soon after a step up takes the step up back.
pub const UP_REGRET: Duration = Duration::from_secs(15);

impl Seat {
    pub fn new(
        rungs: Arc<[Arc<super::fanout::Fanout>]>,
        names: Arc<[String]>,
        current: usize,
        auto: bool,
    ) -> Self {
        Self {
            rungs,
            names,
            current,
            auto,
            wanted: None,
            changed_at: Instant::now(),
            went_up_at: None,
            roomy_since: None,
            up_wait: UP_WAIT,
            reference: None,
        }
    }

    /// The viewer arrived on rung `rung`.
    pub fn moved_to(&mut self, rung: usize, now: Instant) {
        if rung < self.current {
            self.went_up_at = Some(now);
        } else if self
            .went_up_at
            .is_some_and(|at| now.duration_since(at) < UP_REGRET)
        {
            self.up_wait = (self.up_wait * 2).min(MAX_UP_WAIT);
            self.went_up_at = None;
        }
        self.current = rung;
        self.wanted = None;
        self.changed_at = now;
        self.roomy_since = None;
    }

    pub fn message(&self) -> Message {
        Message::Rendition {
            name: self.names[self.current].clone(),
            auto: self.auto,
            renditions: self.names.to_vec(),
        }
    }
}

/// The message that announces an init segment. Besides what SPEC.md names, it carries the
/// init's generation, the server's clock and the stream's timeline id (see [`InitInfo`]).
fn init_message(init: &MediaInit, timeline: &str) -> Message {
    let segment = &init.segment;
    let video = segment.video();
    Message::Init(InitInfo {
        mime: segment.mime(),
        codecs: segment.codecs(),
        width: video.map(|v| v.width),
        height: video.map(|v| v.height),
        generation: init.generation,
        server_time_ms: unix_millis(SystemTime::now()),
        timeline: Some(timeline.to_string()),
    })
}

/// One viewer, as its shard keeps it.
pub struct Viewer {
    pub connection: Arc<Connection>,
    pub subscription: Subscription,
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
    /// For a viewer of a ladder: its rung and the switching's state.
    pub seat: Option<Seat>,
}

impl Viewer {
    pub fn new(
        connection: Arc<Connection>,
        subscription: Subscription,
        slot: Slot,
        span: tracing::Span,
    ) -> Self {
        let now = Instant::now();
        Self {
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
            seat: None,
        }
    }

    /// Queues a text message ahead of media not yet begun.
    pub fn notify_text(&mut self, message: &Message) {
        let notice = Out::text(message);
        let at = usize::from(self.written > 0).min(self.queue.len());
        self.queued_bytes += notice.len();
        self.queue.insert(at, notice);
    }

    /// How long the oldest fragment in its queue (not begun) has waited since the hub took it.
    fn queue_lag(&self, now: Instant) -> Duration {
        let begun = usize::from(self.written > 0);
        self.queue
            .iter()
            .skip(begun)
            .find_map(|out| match out {
                Out::Frame(_, received) => Some(now.saturating_duration_since(*received)),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// A ladder viewer's move to another rung, if it is due now (see [`Seat`]).
    fn ladder_turn(&mut self, window: &WireWindow) -> Option<Turn> {
        let now = window.events.now;
        let lag = self.queue_lag(now);
        let asked = self.connection.take_asked();
        let seat = self.seat.as_mut()?;
        if let Some(name) = asked {
            if name == "auto" {
                seat.auto = true;
            } else if let Some(i) = seat.names.iter().position(|n| *n == name) {
                seat.auto = false;
                seat.wanted = (i != seat.current).then_some(i);
            }
            let message = seat.message();
            self.notify_text(&message);
        }
        let seat = self.seat.as_mut()?;
        if seat.auto {
            let lowest = seat.rungs.len() - 1;
            let probing = seat.went_up_at.is_some_and(|at| {
                at >= seat.changed_at && now.saturating_duration_since(at) < UP_REGRET
            });
            let settled = probing || now.saturating_duration_since(seat.changed_at) >= MIN_STAY;
            let limit = if probing { PROBE_LAG } else { DOWN_LAG };
            if lag >= limit && seat.current < lowest && settled {
                let rung = seat.current + 1;
                self.span.in_scope(|| {
                    tracing::debug!(
                        lag_ms = lag.as_millis() as u64,
                        rung,
                        "viewer behind: down a rung"
                    );
                });
                self.truncate_queue();
                return Some(Turn::Switch {
                    rung,
                    key_secs: None,
                });
            }
            if lag < ROOMY_LAG && self.queue.len() <= 1 {
                let since = *seat.roomy_since.get_or_insert(now);
                if seat.current > 0
                    && seat.wanted.is_none()
                    && now.saturating_duration_since(since) >= seat.up_wait
                    && now.saturating_duration_since(seat.changed_at) >= seat.up_wait
                {
                    seat.wanted = Some(seat.current - 1);
                }
            } else {
                seat.roomy_since = None;
            }
        }
        let wanted = seat.wanted?;
        // At the key frame the viewer is about to be sent: the other rung has the same one.
        if !self.queue.is_empty() {
            return None;
        }
        let key = self.subscription.next_key(&window.events)?;
        let (track, timescale) = seat.reference?;
        let run = key.fragment.run(track)?;
        Some(Turn::Switch {
            rung: wanted,
            key_secs: Some(run.decode_time as f64 / f64::from(timescale.max(1))),
        })
    }

    /// Whether something is queued that the socket has not taken yet.
    pub fn has_backlog(&self) -> bool {
        !self.queue.is_empty() || self.connection.tls_pending()
    }

    /// One walk's work for this viewer: take in what the hub has, write what the socket
    /// takes.
    pub fn turn(&mut self, hub: &Hub, window: &WireWindow, tally: &mut SendTally) -> Turn {
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
        if self.closing_since.is_none() {
            self.check_expiry();
        }
        // A ladder's viewer may move to another rung now: before it takes in what is new,
        // so that a key frame it would be sent next is where it moves (the other rung has
        // the same one).
        if self.closing_since.is_none()
            && self.seat.is_some()
            && let Some(switch) = self.ladder_turn(window)
        {
            // Out with what it has begun, then over to the other rung.
            if self.flush(tally).is_err() {
                return Turn::Leaves;
            }
            return switch;
        }
        if self.closing_since.is_none() && self.queue.is_empty() {
            self.take_from(hub, window);
            if self.queue.is_empty() && self.last_write.elapsed() > protocol::PING_INTERVAL {
                self.push(Out::Own(frame::whole(frame::OPCODE_PING, &[])));
            }
        }
        self.drop_stale(window.events.now);
        if self.flush(tally).is_err() {
            return Turn::Leaves;
        }
        match self.closing_since {
            Some(since) if self.queue.is_empty() || since.elapsed() > CLOSE_GRACE => {
                self.connection.finish();
                Turn::Leaves
            }
            _ => Turn::Stays,
        }
    }

    /// A viewer whose token has run out is closed; one whose token runs out soon is told,
    /// once per token.
    fn check_expiry(&mut self) {
        let Some(expiry) = &self.connection.expiry else {
            return;
        };
        let expires_ms = expiry.expires_ms.load(Ordering::Acquire);
        let now = unix_millis(SystemTime::now());
        if now >= expires_ms {
            self.span
                .in_scope(|| tracing::debug!("token expired; viewer closed"));
            self.close_now(protocol::CLOSE_TOKEN_EXPIRED, "token expired");
            return;
        }
        let warning = protocol::EXPIRY_WARNING.as_millis() as u64;
        if now + warning >= expires_ms && !expiry.warned.swap(true, Ordering::AcqRel) {
            // Ahead of media already queued: it is news for now.
            let notice = Out::text(&Message::Expiring { expires_ms });
            let at = usize::from(self.written > 0).min(self.queue.len());
            self.queued_bytes += notice.len();
            self.queue.insert(at, notice);
        }
    }

    fn push(&mut self, out: Out) {
        self.queued_bytes += out.len();
        self.queue.push_back(out);
    }

    /// Takes the viewer's next deliveries into its queue.
    fn take_from(&mut self, hub: &Hub, window: &WireWindow) {
        while self.queued_bytes < MAX_BATCH_BYTES {
            let Some(delivery) = self.subscription.next_in(&window.events) else {
                break;
            };
            match delivery {
                Delivery::Init(init) => {
                    if let Some(seat) = self.seat.as_mut() {
                        seat.reference = init
                            .segment
                            .track(init.reference_track)
                            .map(|t| (t.id, t.timescale));
                    }
                    self.push(Out::text(&init_message(&init, hub.timeline())));
                    self.push(Out::Own(frame::whole(
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
                    // Counted once written (`advance`): a notice dropped from the queue
                    // carries its count into the next one.
                    self.span.in_scope(|| {
                        tracing::debug!(fragments = n, "slow viewer moved to the next key frame");
                    });
                    let notice = Message::Skipped { fragments: n }.to_json();
                    self.push(Out::Skipped(
                        frame::whole(frame::OPCODE_TEXT, notice.as_bytes()),
                        n,
                    ));
                }
                Delivery::End => {
                    self.push(Out::text(&Message::End));
                    self.push(Out::Own(frame::close(
                        protocol::CLOSE_NORMAL,
                        "stream ended",
                    )));
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
    /// reach it seconds late. A `skipped` notice not yet begun goes too, its count carried
    /// into the next one: the viewer is told once, right before the key frame it resumes at,
    /// even when the key frame of an earlier skip went stale in the queue as well.
    fn drop_stale(&mut self, now: Instant) {
        let begun = usize::from(self.written > 0);
        let oldest = self.queue.iter().skip(begun).find_map(|out| match out {
            Out::Frame(_, received) => Some(*received),
            Out::Own(_) | Out::Skipped(..) => None,
        });
        if !oldest.is_some_and(|received| self.subscription.is_stale(received, now)) {
            return;
        }
        let mut dropped = 0u64;
        let mut index = 0;
        self.queue.retain(|out| {
            index += 1;
            if index <= begun {
                return true;
            }
            match out {
                Out::Own(_) => true,
                Out::Skipped(_, fragments) => {
                    dropped += fragments;
                    false
                }
                Out::Frame(..) => {
                    dropped += 1;
                    false
                }
            }
        });
        self.queued_bytes = self.queue.iter().map(Out::len).sum();
        self.subscription.skip_to_key(dropped);
    }

    /// Drops what is queued, but for a frame already begun (its end must still go out).
    fn truncate_queue(&mut self) {
        let keep = usize::from(self.written > 0);
        self.queue.truncate(keep);
        self.queued_bytes = self.queue.iter().map(Out::len).sum();
    }

    /// Queues a close frame and nothing after it.
    pub fn close_now(&mut self, code: u16, reason: &str) {
        self.truncate_queue();
        self.push(Out::Own(frame::close(code, reason)));
        self.closing_since.get_or_insert_with(Instant::now);
    }

    /// Writes as much of the queue as the socket takes now. `Err` means the connection is
    /// broken.
    pub fn flush(&mut self, tally: &mut SendTally) -> std::io::Result<()> {
        if self.connection.tls.is_some() {
            return self.flush_tls(tally);
        }
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
            tally.writes += 1;
            self.last_write = Instant::now();
            self.advance(written, tally);
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

    /// [`flush`](Self::flush) through the TLS session: what the session holds goes to the
    /// socket first; then as much of the queue as the session takes is encrypted, and so on
    /// until the socket is full or the queue empty. A frame counts as written once the
    /// session has it.
    fn flush_tls(&mut self, tally: &mut SendTally) -> std::io::Result<()> {
        let connection = self.connection.clone();
        let Some(tls) = &connection.tls else {
            return Ok(());
        };
        let mut session = tls.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while session.wants_write() {
                match session.write_tls(&mut Nonblocking(&connection.tcp)) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(_) => {
                        tally.writes += 1;
                        self.last_write = Instant::now();
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            if self.queue.is_empty() {
                return Ok(());
            }
            let (taken, _) =
                self.write_slices_to(|slices| session.writer().write_vectored(slices))?;
            if taken == 0 {
                return Ok(());
            }
            self.advance(taken, tally);
        }
    }

    /// One vectored write of the queue's front to the socket.
    fn write_slices(&self) -> std::io::Result<(usize, usize)> {
        self.write_slices_to(|slices| self.connection.tcp.try_write_vectored(slices))
    }

    /// One vectored write of the queue's front: own frames, and shared frames as header and
    /// payload; `(written, asked)`.
    fn write_slices_to(
        &self,
        write: impl FnOnce(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<(usize, usize)> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.queue.len().min(MAX_SLICES));
        for out in &self.queue {
            if slices.len() + 2 > MAX_SLICES {
                break;
            }
            match out {
                Out::Own(bytes) | Out::Skipped(bytes, _) => slices.push(IoSlice::new(bytes)),
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
        let written = write(remaining)?;
        Ok((written, asked))
    }

    /// Counts `n` more bytes of the queue as written.
    fn advance(&mut self, mut n: usize, tally: &mut SendTally) {
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
            match self.queue.pop_front() {
                Some(Out::Frame(frame, received)) => {
                    tally.fragments += 1;
                    tally.bytes += frame.payload.len() as u64;
                    // The GOP a viewer joins with is not a delay.
                    if received > self.joined {
                        tally.observe_delay(now.saturating_duration_since(received));
                    }
                }
                Some(Out::Skipped(_, fragments)) => {
                    tally.skips += 1;
                    tally.skipped += fragments;
                }
                Some(Out::Own(_)) | None => {}
            }
        }
    }

    /// Leaves `hub` for another rung: the connection stays.
    pub fn leave_for_rung(&mut self, hub: &Hub) {
        hub.unsubscribe();
    }

    pub fn leave(self, hub: &Hub) {
        self.connection.done.cancel();
        hub.unsubscribe();
        self.span
            .in_scope(|| tracing::debug!(viewers = hub.viewers(), "viewer left"));
    }
}
