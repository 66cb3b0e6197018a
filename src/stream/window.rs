//! The segment window of one stream: the init it is cut against, the segments it has
//! completed (the newest `keep` of them), the one still growing, and the parts and track
//! timings within each, as manifests and segment requests read them.
//!
//! No tokio and no clock of its own: the live hub feeds it as fragments arrive, and
//! `package` feeds it a whole file and writes out what it cut.
//!
//! ```text
//! Window ── init (MediaInit) ── segments [Segment …] ── open Segment
//!                                   └ fragments [LiveFragment], parts [Part], tracks [TrackTiming]
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::fmp4::{Fragment, InitSegment, PartInfo, Segmenter, TrackKind};

/// The init segment as the stream serves it.
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
    /// `segment` as the stream serves it, with its per-track inits; `None` without tracks.
    pub fn new(segment: Arc<InitSegment>, generation: u64) -> Option<MediaInit> {
        let reference_track = segment.reference_track()?.id;
        let track_inits = segment
            .tracks
            .iter()
            .filter_map(|t| segment.single_track(t.id).map(|b| (t.id, b)))
            .collect();
        Some(MediaInit {
            segment,
            generation,
            reference_track,
            track_inits,
        })
    }

    pub fn track_init(&self, track_id: u32) -> Option<&Bytes> {
        self.track_inits
            .iter()
            .find(|(id, _)| *id == track_id)
            .map(|(_, bytes)| bytes)
    }
}

/// A fragment as the stream holds it: allocated once, shared by the event ring, the segment
/// window and every viewer's queue.
#[derive(Debug)]
pub struct LiveFragment {
    pub fragment: Fragment,
    /// When the stream received it: viewers measure their lag against this.
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
    /// Bytes per track, kept when the media itself is let go (`Window::write_completed`);
    /// empty while the segment holds its fragments.
    pub track_bytes: Vec<(u32, usize)>,
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

    /// The bytes of one track's fragments in part `part`.
    pub fn part_track_chunks(&self, part: &Part, track_id: u32) -> impl Iterator<Item = &Bytes> {
        self.fragments
            .iter()
            .skip(part.first)
            .take(part.count)
            .filter(move |f| f.fragment.run(track_id).is_some())
            .map(|f| &f.fragment.bytes)
    }

    fn track_timing_mut(&mut self, track_id: u32) -> Option<&mut TrackTiming> {
        self.tracks.iter_mut().find(|t| t.track_id == track_id)
    }

    /// Closes part `part` with its duration.
    fn close_part(&mut self, part: PartInfo) {
        if let Some(p) = self.parts.iter_mut().find(|p| p.info.index == part.index) {
            p.info.duration = part.duration;
        }
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
    /// A `publish` stream with no publisher.
    Waiting,
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
            Status::Waiting => "waiting",
            Status::Ended => "ended",
            Status::Failed(_) => "failed",
        }
    }
}

/// How segments are cut and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cutting {
    /// Target segment duration (DASH and HLS segments).
    pub segment_secs: f64,
    /// Target LL-HLS part duration.
    pub part_secs: f64,
    /// Completed segments kept and listed in manifests.
    pub keep: usize,
}

/// The init and the segments of one stream, as they are cut.
#[derive(Debug)]
pub struct Window {
    cutting: Cutting,
    init: Option<Arc<MediaInit>>,
    segmenter: Option<Segmenter>,
    segments: VecDeque<Arc<Segment>>,
    open: Option<Segment>,
    /// Unix ms of media time 0 of the reference track (DASH `availabilityStartTime`).
    anchor_ms: Option<u64>,
    /// Set by a new, different init; marks the next segment.
    discontinuity: bool,
    discontinuities: u64,
    /// Whether every fragment so far carried one track, so DASH can serve tracks apart.
    single_track_fragments: bool,
    next_number: u64,
}

impl Window {
    /// `first_number` numbers the first segment.
    pub fn new(cutting: Cutting, first_number: u64) -> Self {
        Self {
            cutting,
            init: None,
            segmenter: None,
            segments: VecDeque::new(),
            open: None,
            anchor_ms: None,
            discontinuity: false,
            discontinuities: 0,
            single_track_fragments: true,
            next_number: first_number,
        }
    }

    pub fn init(&self) -> Option<&Arc<MediaInit>> {
        self.init.as_ref()
    }

    /// The number the next segment will have.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Numbers the segments from `next` on, if that is further than they had got.
    pub fn number_from(&mut self, next: u64) {
        self.next_number = self.next_number.max(next);
    }

    /// Forgets everything but the segment numbering, which goes on.
    pub fn reset(&mut self) {
        self.init = None;
        self.segmenter = None;
        self.segments.clear();
        self.open = None;
        self.anchor_ms = None;
        self.discontinuity = false;
        self.single_track_fragments = true;
    }

    /// Installs a new init segment and returns it as served, or `None` for one without
    /// tracks. A different init starts the window over (numbers keep counting); the same one
    /// again (a restarted source) continues the timeline.
    pub fn set_init(&mut self, segment: Arc<InitSegment>) -> Option<Arc<MediaInit>> {
        let same_as_before = self
            .init
            .as_ref()
            .is_some_and(|old| old.segment.bytes == segment.bytes);
        let generation = self.init.as_ref().map_or(1, |old| old.generation + 1);
        let media = Arc::new(MediaInit::new(segment, generation)?);
        if !same_as_before {
            // Different codecs or parameters: segments made before cannot follow on from
            // the new init.
            if self.init.is_some() {
                self.discontinuity = true;
                self.discontinuities += 1;
            }
            self.segments.clear();
            self.open = None;
            self.single_track_fragments = true;
        } else if let Some(open) = self.open.take() {
            // Same init: close what was growing; the next fragment starts a segment.
            self.complete(open);
        }
        self.segmenter = None;
        self.init = Some(media.clone());
        Some(media)
    }

    /// Places a fragment received at `received` (`received_unix_ms` on the wall clock) in
    /// the growing segment, and returns it as shared; `None` before any init.
    pub fn push(
        &mut self,
        fragment: Fragment,
        received: Instant,
        received_unix_ms: u64,
    ) -> Option<Arc<LiveFragment>> {
        let init = self.init.clone()?;
        let key = fragment.starts_with_sync_of(init.reference_track);
        let live = Arc::new(LiveFragment {
            fragment,
            received,
            received_unix_ms,
            key,
        });
        if live.fragment.runs.len() > 1 {
            self.single_track_fragments = false;
        }
        self.place(&init, &live);
        Some(live)
    }

    fn place(&mut self, init: &MediaInit, live: &Arc<LiveFragment>) {
        let Some(reference) = init.segment.track(init.reference_track) else {
            return;
        };
        let cutting = self.cutting;
        let next = self.next_number;
        let segmenter = self.segmenter.get_or_insert_with(|| {
            Segmenter::new(reference, cutting.segment_secs, cutting.part_secs, next)
        });
        let Some(placement) = segmenter.push(&live.fragment) else {
            return;
        };
        if let Some(closed) = placement.closed_segment {
            if let Some(mut open) = self.open.take() {
                open.duration = closed.duration;
                if let Some(part) = placement.closed_part {
                    open.close_part(part);
                }
                self.complete(open);
            }
        } else if let (Some(part), Some(open)) = (placement.closed_part, self.open.as_mut()) {
            open.close_part(part);
        }
        let reference_time = live
            .fragment
            .run(init.reference_track)
            .map(|r| r.decode_time);
        if placement.starts_segment {
            let start = reference_time.unwrap_or(0);
            if self.anchor_ms.is_none() {
                let offset_ms = start.saturating_mul(1000) / u64::from(reference.timescale.max(1));
                self.anchor_ms = Some(live.received_unix_ms.saturating_sub(offset_ms));
            }
            let wall_start_ms = live
                .fragment
                .prft
                .and_then(|p| p.unix_millis())
                .unwrap_or(live.received_unix_ms);
            self.next_number = placement.segment + 1;
            self.open = Some(Segment {
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
                discontinuity: std::mem::take(&mut self.discontinuity),
                complete: false,
                track_bytes: Vec::new(),
            });
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if placement.starts_part {
            open.parts.push(Part {
                info: PartInfo {
                    segment: open.number,
                    index: placement.part,
                    start: reference_time.unwrap_or(open.start),
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
                // To the end of the latest fragment: each fragment's decode time corrects the
                // durations written before it (ffmpeg's frag_every_frame writes a default
                // that is not the frame's; the zero-wait writer a nominal one).
                Some(timing) => {
                    timing.duration = run
                        .end_time()
                        .saturating_sub(timing.start)
                        .max(timing.duration);
                }
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

    /// The input ended: the growing segment is closed with what it has.
    pub fn finish(&mut self) {
        if let Some(mut segmenter) = self.segmenter.take()
            && let (Some((segment, part)), Some(mut open)) = (segmenter.finish(), self.open.take())
        {
            open.duration = segment.duration;
            open.close_part(part);
            self.complete(open);
        }
    }

    fn complete(&mut self, mut open: Segment) {
        if open.duration == 0 {
            open.duration = open
                .tracks
                .iter()
                .find(|t| t.start == open.start)
                .map_or(0, |t| t.duration);
        }
        open.complete = true;
        self.segments.push_back(Arc::new(open));
        while self.segments.len() > self.cutting.keep.max(1) {
            self.segments.pop_front();
        }
    }

    /// Completed segments numbered `from` on, each handed to `write` and then kept without
    /// its media (its timing, parts and sizes stay, for the manifests): how `package` cuts a
    /// file larger than memory. Returns the number to start from next time.
    pub fn write_completed<E>(
        &mut self,
        from: u64,
        mut write: impl FnMut(&MediaInit, &Segment) -> Result<(), E>,
    ) -> Result<u64, E> {
        let Some(init) = self.init.clone() else {
            return Ok(from);
        };
        let mut next = from;
        // Numbers ascend: skip those written before without looking at them.
        let first = self.segments.partition_point(|s| s.number < from);
        for slot in self.segments.range_mut(first..) {
            write(&init, slot)?;
            let mut hollow = (**slot).clone();
            hollow.track_bytes = init
                .segment
                .tracks
                .iter()
                .map(|t| (t.id, slot.track_chunks(t.id).map(Bytes::len).sum()))
                .collect();
            hollow.fragments = hollow
                .fragments
                .iter()
                .map(|f| {
                    Arc::new(LiveFragment {
                        fragment: Fragment {
                            bytes: Bytes::new(),
                            ..f.fragment.clone()
                        },
                        received: f.received,
                        received_unix_ms: f.received_unix_ms,
                        key: f.key,
                    })
                })
                .collect();
            *slot = Arc::new(hollow);
            next = slot.number + 1;
        }
        Ok(next)
    }

    /// A consistent view of the init and the window, with the stream's `status`.
    pub fn snapshot(&self, status: Status) -> Snapshot {
        Snapshot {
            init: self.init.clone(),
            segments: self.segments.iter().cloned().collect(),
            open: self.open.clone().map(Arc::new),
            anchor_ms: self.anchor_ms,
            discontinuities: self.discontinuities,
            single_track_fragments: self.single_track_fragments,
            status,
        }
    }

    /// The number of the newest segment, growing or complete, without copying anything.
    pub fn newest_number(&self) -> Option<u64> {
        self.open
            .as_ref()
            .map(|s| s.number)
            .or_else(|| self.segments.back().map(|s| s.number))
    }

    /// The segment numbered `number`, complete or growing.
    pub fn segment(&self, number: u64) -> Option<Arc<Segment>> {
        if let Some(open) = self.open.as_ref().filter(|s| s.number == number) {
            return Some(Arc::new(open.clone()));
        }
        self.segments.iter().find(|s| s.number == number).cloned()
    }

    /// Video and audio kinds of the current init.
    pub fn track_kinds(&self) -> Vec<TrackKind> {
        self.init
            .as_ref()
            .map(|i| i.segment.tracks.iter().map(|t| t.kind).collect())
            .unwrap_or_default()
    }
}

/// The window at one moment.
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
        self.rate_bps(self.segments.iter().map(|s| s.bytes).sum())
    }

    /// Bitrate of one track over the window.
    pub fn track_bitrate_bps(&self, track_id: u32) -> u64 {
        let bytes = self
            .segments
            .iter()
            .map(
                |s| match s.track_bytes.iter().find(|(id, _)| *id == track_id) {
                    Some((_, bytes)) => *bytes,
                    None => s.track_chunks(track_id).map(Bytes::len).sum(),
                },
            )
            .sum();
        self.rate_bps(bytes)
    }

    /// `bytes` spread over the window's duration.
    fn rate_bps(&self, bytes: usize) -> u64 {
        let secs: f64 = self.segments.iter().map(|s| s.duration_secs()).sum();
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        }
    }

    /// The number of the newest segment, growing or complete.
    pub fn newest_number(&self) -> Option<u64> {
        self.open
            .as_ref()
            .map(|s| s.number)
            .or_else(|| self.segments.last().map(|s| s.number))
    }
}
