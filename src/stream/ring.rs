//! The numbered event ring of one stream and each viewer's place in it.
//!
//! Every event (init, fragment, end) gets the next number. The ring reaches back at least to
//! the newest key frame, which is where a new viewer starts. Whoever sends takes the ring's
//! events in one go ([`EventWindow`]) and walks each viewer's [`Subscription`] over them,
//! without holding the stream's lock; a viewer that falls behind is moved to the next key
//! frame, so a slow viewer cannot slow the source or anyone else.
//!
//! No tokio and no clock of its own: times are passed in.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::window::{LiveFragment, MediaInit};

/// How many events the ring keeps (more while the newest GOP needs them). A viewer further
/// behind has lost them and is skipped to the next key frame; the maximum viewer lag skips
/// it long before that.
const RING_CAPACITY: usize = 1024;

/// A GOP larger than this is not cached: late joiners wait for the next key frame instead of
/// the server holding unbounded memory for a source that never sends one.
const MAX_GOP_BYTES: usize = 32 << 20;

/// What the stream sends every viewer, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Init(Arc<MediaInit>),
    Fragment(Arc<LiveFragment>),
    End,
}

/// Every viewer's events, oldest first, numbered.
#[derive(Debug, Default)]
pub struct Ring {
    events: VecDeque<Event>,
    /// The number of `events[0]`.
    first: u64,
    /// The number of the newest GOP's first fragment, while that GOP is cached (the ring
    /// keeps it): a new viewer starts there.
    gop_start: Option<u64>,
    gop_bytes: usize,
}

impl Ring {
    /// The number the next event gets.
    fn head(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// Lets every event go; numbers go on, so that a viewer's place never points at a later
    /// event.
    pub fn clear(&mut self) {
        self.first = self.head();
        self.events.clear();
        self.forget_gop();
    }

    fn forget_gop(&mut self) {
        self.gop_start = None;
        self.gop_bytes = 0;
    }

    /// A new init: media before it is no GOP to start from.
    pub fn push_init(&mut self, init: Arc<MediaInit>) {
        self.forget_gop();
        self.append(Event::Init(init));
    }

    /// A fragment: a key frame starts the cached GOP.
    pub fn push_fragment(&mut self, fragment: Arc<LiveFragment>) {
        if fragment.key {
            self.gop_start = Some(self.head());
            self.gop_bytes = 0;
        }
        if self.gop_start.is_some() {
            self.gop_bytes += fragment.fragment.len();
            if self.gop_bytes > MAX_GOP_BYTES {
                self.forget_gop();
            }
        }
        self.append(Event::Fragment(fragment));
    }

    pub fn push_end(&mut self) {
        self.append(Event::End);
    }

    /// Adds an event and lets the oldest go, keeping the cached GOP.
    fn append(&mut self, event: Event) {
        self.events.push_back(event);
        let keep_from = self.gop_start.unwrap_or(u64::MAX);
        while self.events.len() > RING_CAPACITY && self.first < keep_from {
            self.events.pop_front();
            self.first += 1;
        }
    }

    /// A new viewer of the stream whose init is `init`: that init and the GOP so far, then
    /// everything live, skipping to a key frame when a fragment is older than `max_lag`.
    pub fn subscribe(&self, init: Option<Arc<MediaInit>>, max_lag: Duration) -> Subscription {
        let head = self.head();
        let start = init.as_ref().and(self.gop_start);
        Subscription {
            init,
            next: start.unwrap_or(head),
            backlog_end: head,
            resume: None,
            waiting_for_key: start.is_none(),
            skipping: false,
            skipped: 0,
            max_lag,
            ended: false,
        }
    }

    /// A viewer switching to this stream (another rung of its ladder) at the key frame that
    /// starts at `key_secs` of media (in the reference track's time): the init, then that GOP
    /// if it is the newest cached here, else nothing until the next key frame. Never media
    /// from before the switch: the viewer's timeline goes on from where it was.
    pub fn subscribe_at_key(
        &self,
        init: Option<Arc<MediaInit>>,
        max_lag: Duration,
        key_secs: Option<f64>,
    ) -> Subscription {
        let head = self.head();
        let at_key = init.as_ref().zip(self.gop_start).and_then(|(init, start)| {
            let offset = usize::try_from(start.checked_sub(self.first)?).ok()?;
            let Some(Event::Fragment(fragment)) = self.events.get(offset) else {
                return None;
            };
            let track = init.segment.track(init.reference_track)?;
            let run = fragment.fragment.run(track.id)?;
            let secs = run.decode_time as f64 / f64::from(track.timescale.max(1));
            // Within a millisecond: the rungs' times come from the same FLV timestamps.
            key_secs
                .is_some_and(|k| (k - secs).abs() < 0.001)
                .then_some(start)
        });
        Subscription {
            init,
            next: at_key.unwrap_or(head),
            backlog_end: head,
            resume: None,
            waiting_for_key: true,
            skipping: false,
            skipped: 0,
            max_lag,
            ended: false,
        }
    }

    /// The events from number `first` on (or from the oldest, if that is later), taken at
    /// `now`.
    pub fn since(&self, first: u64, now: Instant) -> EventWindow {
        let from = first.max(self.first);
        let skip = usize::try_from(from - self.first).unwrap_or(usize::MAX);
        EventWindow {
            first: from,
            oldest: self.first,
            events: self.events.iter().skip(skip).cloned().collect(),
            now,
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

/// One viewer's place in the stream's events: the init it joined with, the GOP, then live.
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

    /// The next event in `window`, if it is a fragment that starts a GOP: where a viewer can
    /// move to another rung without a gap.
    pub fn next_key<'w>(&self, window: &'w EventWindow) -> Option<&'w Arc<LiveFragment>> {
        if self.init.is_some() || self.resume.is_some() || self.skipping || self.ended {
            return None;
        }
        match window.get(self.next)? {
            Event::Fragment(fragment) if fragment.key => Some(fragment),
            _ => None,
        }
    }

    /// Whether a fragment the stream took at `received` is too old to send at `now`.
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
