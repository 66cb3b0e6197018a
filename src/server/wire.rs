//! The bytes every viewer of a stream is sent: each fragment framed once as a WebSocket
//! binary frame, shared by all of them.
//!
//! A server frame is not masked (RFC 6455 §5.1), so a fragment's frame is the same bytes for
//! every viewer. On Linux those bytes are also written once into an append-only memory file
//! (`memfd`), fragment after fragment, so that a viewer's whole backlog is one contiguous
//! range of it: one `sendfile` puts it on the socket, and the kernel hands the file's pages to
//! the socket instead of copying them (measured on this project's 2-core machine, 8 KiB
//! writes to 1,000 loopback sockets: 9.7 µs per `write`, 8.9 µs per `sendfile`; 32 KiB:
//! 12.6 against 9.2). A page the kernel still holds for a socket must never change, so the
//! file is never written twice at one offset: it is filled in chunks, and a chunk is closed
//! once no frame refers to it (pages still queued on a socket live on until sent).
//! Elsewhere, or where `memfd_create` is refused, frames go out as vectored writes of the
//! shared header and payload.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::frame::{self, Header};
use crate::stream::{Event, EventWindow, Hub};

/// One fragment as a binary frame: its header and the payload every viewer shares.
#[derive(Debug)]
pub struct Frame {
    pub header: Header,
    pub payload: Bytes,
    /// Where the same bytes lie in the memory file, when they do.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub file: Option<file::Span>,
}

impl Frame {
    /// A frame of `payload` that is not in the memory file.
    pub fn new(payload: Bytes) -> Self {
        Self {
            header: Header::new(frame::OPCODE_BINARY, payload.len()),
            payload,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            file: None,
        }
    }

    /// Header and payload together.
    pub fn len(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }
}

/// The hub's events, in step with its ring, each fragment with its frame.
pub struct Wire {
    /// The number of `entries[0]`.
    first: u64,
    entries: VecDeque<(Event, Option<Arc<Frame>>)>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    file: file::Appender,
}

/// Events from one number on, and the frames of those that are fragments.
pub struct WireWindow {
    pub events: EventWindow,
    frames: Vec<Option<Arc<Frame>>>,
}

impl WireWindow {
    /// The frame of fragment number `number`.
    pub fn frame(&self, number: u64) -> Option<&Arc<Frame>> {
        let offset = usize::try_from(number.checked_sub(self.events.first)?).ok()?;
        self.frames.get(offset)?.as_ref()
    }
}

impl Wire {
    pub fn new() -> Self {
        Self {
            first: 0,
            entries: VecDeque::new(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            file: file::Appender::new(),
        }
    }

    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Frames what the hub added since the last call, lets go of what it no longer holds,
    /// and returns the events (with frames) from number `from` on, taken at `now`.
    pub fn window(&mut self, hub: &Hub, from: u64, now: Instant) -> WireWindow {
        let new = hub.events_since(self.end(), now);
        if new.first != self.end() {
            // The hub let events go that were never framed: nobody can be sent them now.
            self.entries.clear();
            self.first = new.first;
        }
        for event in new.events {
            let frame = match &event {
                Event::Fragment(fragment) => Some(Arc::new(self.frame(&fragment.fragment.bytes))),
                Event::Init(_) | Event::End => None,
            };
            self.entries.push_back((event, frame));
        }
        while self.first < new.oldest && self.entries.pop_front().is_some() {
            self.first += 1;
        }
        let from = from.max(self.first);
        let skip = usize::try_from(from - self.first).unwrap_or(usize::MAX);
        let (events, frames) = self.entries.iter().skip(skip).cloned().unzip();
        WireWindow {
            events: EventWindow {
                first: from,
                oldest: self.first,
                events,
                now: new.now,
            },
            frames,
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn frame(&mut self, payload: &Bytes) -> Frame {
        let mut frame = Frame::new(payload.clone());
        frame.file = self.file.append(frame.header.as_bytes(), payload);
        frame
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn frame(&mut self, payload: &Bytes) -> Frame {
        Frame::new(payload.clone())
    }
}

/// Bytes of frames held in memory files (none where there are none).
pub fn file_bytes() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return file::held_bytes();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    0
}

/// The memory file: chunks of it, and sending ranges of them.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod file {
    use std::io::IoSlice;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A chunk holds this much unless one frame needs more.
    const CHUNK_BYTES: u64 = 2 << 20;

    /// Set once `sendfile` has failed in a way that says it cannot work here: every frame then
    /// goes out as a vectored write.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

    /// Bytes written into chunks still open, every stream's: memory outside the process's
    /// RSS (the pages are not mapped), so `/metrics` says it.
    static HELD: AtomicU64 = AtomicU64::new(0);

    pub fn held_bytes() -> u64 {
        HELD.load(Ordering::Relaxed)
    }

    /// One memory file, filled from the start and never written twice at one offset.
    #[derive(Debug)]
    pub struct Chunk {
        pub(super) fd: OwnedFd,
        written: AtomicU64,
    }

    impl Drop for Chunk {
        fn drop(&mut self) {
            HELD.fetch_sub(*self.written.get_mut(), Ordering::Relaxed);
        }
    }

    /// A frame's bytes in a chunk.
    #[derive(Debug, Clone)]
    pub struct Span {
        pub chunk: Arc<Chunk>,
        pub offset: u64,
    }

    impl Span {
        /// Whether `next` starts where this span's `len` bytes end, in the same chunk.
        pub fn continues_with(&self, len: usize, next: &Span) -> bool {
            Arc::ptr_eq(&self.chunk, &next.chunk) && self.offset + len as u64 == next.offset
        }
    }

    /// Sends `len` bytes of `chunk` from `offset` to `socket`, the kernel taking the file's
    /// pages as they are. `Unsupported` if this system cannot: from then on [`usable`] says
    /// no.
    pub fn send(
        socket: &impl AsFd,
        chunk: &Chunk,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        let mut at = offset;
        rustix::fs::sendfile(socket, &chunk.fd, Some(&mut at), len).map_err(|errno| {
            if errno != rustix::io::Errno::INVAL && errno != rustix::io::Errno::NOSYS {
                return std::io::Error::from(errno);
            }
            if !UNSUPPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(%errno, "sendfile from a memory file refused: frames are written instead");
            }
            std::io::Error::new(std::io::ErrorKind::Unsupported, errno)
        })
    }

    /// Whether frames may go out with [`send`].
    pub fn usable() -> bool {
        !UNSUPPORTED.load(Ordering::Relaxed)
    }

    /// Where the next frame goes.
    pub struct Appender {
        current: Option<(Arc<Chunk>, u64, u64)>,
        failed: bool,
    }

    impl Appender {
        pub fn new() -> Self {
            Self {
                current: None,
                failed: false,
            }
        }

        /// Writes a frame's header and payload at the end of the current chunk (a new one if
        /// it is full); `None` if memory files cannot be had here.
        pub fn append(&mut self, header: &[u8], payload: &[u8]) -> Option<Span> {
            if self.failed || !usable() {
                return None;
            }
            let len = (header.len() + payload.len()) as u64;
            match self.try_append(header, payload, len) {
                Ok(span) => Some(span),
                Err(err) => {
                    self.failed = true;
                    self.current = None;
                    tracing::warn!(%err, "no memory file for the stream's frames: they are written instead");
                    None
                }
            }
        }

        fn try_append(&mut self, header: &[u8], payload: &[u8], len: u64) -> std::io::Result<Span> {
            let fits = self
                .current
                .as_ref()
                .is_some_and(|(_, used, capacity)| used + len <= *capacity);
            if !fits {
                let fd = rustix::fs::memfd_create(
                    "websocketlivestream-frames",
                    rustix::fs::MemfdFlags::CLOEXEC,
                )?;
                let chunk = Chunk {
                    fd,
                    written: AtomicU64::new(0),
                };
                self.current = Some((Arc::new(chunk), 0, CHUNK_BYTES.max(len)));
            }
            let Some((chunk, used, _)) = self.current.as_mut() else {
                return Err(std::io::Error::other("no chunk"));
            };
            let offset = *used;
            let mut written = 0usize;
            let total = len as usize;
            while written < total {
                let mut slices = [IoSlice::new(header), IoSlice::new(payload)];
                let mut remaining = &mut slices[..];
                IoSlice::advance_slices(&mut remaining, written);
                let n = rustix::io::pwritev(&chunk.fd, remaining, offset + written as u64)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                written += n;
            }
            *used += len;
            chunk.written.fetch_add(len, Ordering::Relaxed);
            HELD.fetch_add(len, Ordering::Relaxed);
            Ok(Span {
                chunk: chunk.clone(),
                offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Splitter, Unit};
    use crate::stream::HubConfig;

    /// A hub with the fixture's init, and the fixture's fragments.
    fn hub_and_fragments() -> (Hub, Vec<crate::fmp4::Fragment>) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/av-per-frame.mp4"
        );
        let data = Bytes::from(std::fs::read(path).expect("fixture"));
        let mut splitter = Splitter::default();
        splitter.feed(data);
        let hub = Hub::new(HubConfig::default(), 1);
        let mut fragments = Vec::new();
        while let Some(unit) = splitter.poll().expect("the fixture splits") {
            match unit {
                Unit::Init(init) => hub.set_init(init),
                Unit::Fragment(fragment) => fragments.push(fragment),
            }
        }
        (hub, fragments)
    }

    /// A frame's bytes, header and payload, as a viewer gets them.
    fn expected(frame: &Frame) -> Vec<u8> {
        [frame.header.as_bytes(), &frame.payload[..]].concat()
    }

    #[test]
    fn every_fragment_gets_its_frame_and_the_window_starts_where_asked() {
        let (hub, fragments) = hub_and_fragments();
        for fragment in &fragments {
            hub.push(fragment.clone(), Instant::now());
        }
        let pushed = fragments.len();
        let mut wire = Wire::new();
        let window = wire.window(&hub, 0, Instant::now());
        // The init event, then one frame per fragment, in order.
        assert_eq!(window.events.first, 0);
        assert_eq!(window.events.events.len(), pushed + 1);
        assert!(window.frame(0).is_none(), "the init has no frame");
        for number in 1..=pushed as u64 {
            let frame = window.frame(number).expect("a fragment's frame");
            let crate::stream::Event::Fragment(fragment) =
                window.events.get(number).expect("event")
            else {
                panic!("event {number} is not a fragment");
            };
            assert_eq!(frame.payload, fragment.fragment.bytes);
            assert_eq!(frame.len(), expected(frame).len());
        }
        let later = wire.window(&hub, 10, Instant::now());
        assert_eq!(later.events.first, 10);
        assert_eq!(later.events.events.len(), pushed + 1 - 10);
        assert!(Arc::ptr_eq(
            later.frame(10).expect("frame"),
            window.frame(10).expect("frame")
        ));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_memory_file_holds_each_frame_back_to_back_and_never_rewrites_it() {
        // Enough fragments to fill more than one chunk, taken in as they come: the ring
        // lets the oldest go, the frames kept here keep their chunks.
        let (hub, fragments) = hub_and_fragments();
        let mut wire = Wire::new();
        let mut frames: Vec<Arc<Frame>> = Vec::new();
        let mut next = 0;
        let mut oldest = 0;
        for _ in 0..40 {
            for fragment in &fragments {
                hub.push(fragment.clone(), Instant::now());
            }
            let window = wire.window(&hub, next, Instant::now());
            assert_eq!(window.events.first, next, "nothing was left out");
            for number in window.events.first..window.events.end() {
                frames.extend(window.frame(number).cloned());
            }
            next = window.events.end();
            oldest = window.events.oldest;
        }
        let mut previous: Option<Arc<Frame>> = None;
        let mut chunks = 0;
        let mut checked = 0;
        for (number, frame) in frames.iter().enumerate() {
            let span = frame.file.as_ref().expect("a memfd here");
            let mut read = vec![0u8; frame.len()];
            let n = rustix::io::pread(&span.chunk.fd, &mut read, span.offset).expect("pread");
            assert_eq!(n, frame.len());
            assert_eq!(read, expected(frame), "frame {number}");
            match &previous {
                Some(prev) => {
                    let prev_span = prev.file.as_ref().expect("span");
                    if !prev_span.continues_with(prev.len(), span) {
                        // Only a new chunk breaks the run, and it starts at 0.
                        assert!(!Arc::ptr_eq(&prev_span.chunk, &span.chunk));
                        assert_eq!(span.offset, 0);
                        chunks += 1;
                    }
                }
                None => chunks += 1,
            }
            previous = Some(frame.clone());
            checked += 1;
        }
        assert!(checked > 1000, "{checked} frames checked");
        let held: usize = frames.iter().map(|f| f.len()).sum();
        assert!(
            file_bytes() >= held as u64,
            "memory files hold {} bytes, the frames kept {held}",
            file_bytes()
        );
        assert!(
            chunks >= 2,
            "{chunks} chunks: the test never crossed a chunk boundary"
        );
        // The ring kept at most its capacity; the wire follows it.
        assert!(oldest > 0, "the ring let the oldest events go");
    }
}
