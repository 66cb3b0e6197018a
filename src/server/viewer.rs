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
    /// The shard's.
    wake: Arc<Notify>,
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
            wake,
        }
    }

    pub fn send_control(&self, frame: Bytes) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
        self.has_control.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Sends `frame` (a close) and nothing more.
    pub fn close_with(&self, frame: Bytes) {
        self.closing.store(true, Ordering::Release);
        self.send_control(frame);
    }

    pub fn gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Wakes the shard (the TLS session has something of its own to send).
    pub fn wake(&self) {
        self.wake.notify_one();
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
        }
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

    pub fn leave(self, hub: &Hub) {
        self.connection.done.cancel();
        hub.unsubscribe();
        self.span
            .in_scope(|| tracing::debug!(viewers = hub.viewers(), "viewer left"));
    }
}
