//! Groups fragments into segments that start at a sync sample of the reference track and last
//! about the target duration (DASH segments, HLS segments), and each segment into parts of
//! whole fragments no longer than a part target (LL-HLS parts).
//!
//! It decides boundaries only; where fragments are kept is the caller's business. Times are in
//! the reference track's timescale, taken from `tfdt`, so a segment's duration is the distance
//! to the next segment's start and the timeline has no gaps.

use super::{Fragment, Track};

/// A finished segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub number: u64,
    /// Decode time of the first reference sample.
    pub start: u64,
    pub duration: u64,
}

/// A finished part of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    pub segment: u64,
    pub index: u32,
    pub start: u64,
    pub duration: u64,
    /// Starts with a sync sample, so a player may start decoding here.
    pub independent: bool,
}

/// Where one fragment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The segment the fragment belongs to.
    pub segment: u64,
    /// Its part within that segment.
    pub part: u32,
    /// The fragment begins a new segment (and so a new part).
    pub starts_segment: bool,
    /// The fragment begins a new part.
    pub starts_part: bool,
    /// The segment this fragment's arrival completed.
    pub closed_segment: Option<SegmentInfo>,
    /// The part this fragment's arrival completed.
    pub closed_part: Option<PartInfo>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    number: u64,
    start: u64,
    /// End of the reference track's samples so far.
    end: u64,
    part: u32,
    part_start: u64,
    part_independent: bool,
}

#[derive(Debug, Clone)]
pub struct Segmenter {
    reference: u32,
    timescale: u32,
    segment_target: u64,
    part_target: u64,
    next_number: u64,
    open: Option<Open>,
}

impl Segmenter {
    /// Segments of about `segment_secs` and parts of at most `part_secs` (where fragments are
    /// short enough), numbered from `first_number`.
    pub fn new(reference: &Track, segment_secs: f64, part_secs: f64, first_number: u64) -> Self {
        let ticks = |secs: f64| (secs * f64::from(reference.timescale)).ceil().max(1.0) as u64;
        Self {
            reference: reference.id,
            timescale: reference.timescale,
            segment_target: ticks(segment_secs),
            part_target: ticks(part_secs),
            next_number: first_number,
            open: None,
        }
    }

    pub fn reference_track(&self) -> u32 {
        self.reference
    }

    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    /// The part target in the reference timescale.
    pub fn part_target(&self) -> u64 {
        self.part_target
    }

    /// The number the next segment will get.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Places a fragment; `None` before the first sync sample, when no segment can start.
    pub fn push(&mut self, fragment: &Fragment) -> Option<Placement> {
        let reference = fragment.run(self.reference).copied();
        let Some(mut open) = self.open else {
            let run = reference.filter(|r| r.starts_with_sync)?;
            let open = Open {
                number: self.next_number,
                start: run.decode_time,
                end: run.end_time(),
                part: 0,
                part_start: run.decode_time,
                part_independent: true,
            };
            self.next_number += 1;
            self.open = Some(open);
            return Some(Placement {
                segment: open.number,
                part: 0,
                starts_segment: true,
                starts_part: true,
                closed_segment: None,
                closed_part: None,
            });
        };
        let Some(run) = reference else {
            return Some(Placement {
                segment: open.number,
                part: open.part,
                starts_segment: false,
                starts_part: false,
                closed_segment: None,
                closed_part: None,
            });
        };
        let elapsed = run.decode_time.saturating_sub(open.start);
        // "About" the target: a key frame a little early (within 10%) still closes it.
        if run.starts_with_sync && elapsed.saturating_mul(10) >= self.segment_target * 9 {
            let closed_part = Self::part_info(&open, run.decode_time);
            let closed_segment = SegmentInfo {
                number: open.number,
                start: open.start,
                duration: elapsed,
            };
            let next = Open {
                number: self.next_number,
                start: run.decode_time,
                end: run.end_time(),
                part: 0,
                part_start: run.decode_time,
                part_independent: true,
            };
            self.next_number += 1;
            self.open = Some(next);
            return Some(Placement {
                segment: next.number,
                part: 0,
                starts_segment: true,
                starts_part: true,
                closed_segment: Some(closed_segment),
                closed_part: Some(closed_part),
            });
        }
        let mut closed_part = None;
        let mut starts_part = false;
        // A part may not grow past its target: this fragment starts the next one instead.
        if run.end_time().saturating_sub(open.part_start) > self.part_target
            && run.decode_time > open.part_start
        {
            closed_part = Some(Self::part_info(&open, run.decode_time));
            open.part += 1;
            open.part_start = run.decode_time;
            open.part_independent = run.starts_with_sync;
            starts_part = true;
        }
        open.end = open.end.max(run.end_time());
        self.open = Some(open);
        Some(Placement {
            segment: open.number,
            part: open.part,
            starts_segment: false,
            starts_part,
            closed_segment: None,
            closed_part,
        })
    }

    /// Closes the open segment at the end of the stream.
    pub fn finish(&mut self) -> Option<(SegmentInfo, PartInfo)> {
        let open = self.open.take()?;
        Some((
            SegmentInfo {
                number: open.number,
                start: open.start,
                duration: open.end.saturating_sub(open.start),
            },
            Self::part_info(&open, open.end),
        ))
    }

    fn part_info(open: &Open, end: u64) -> PartInfo {
        PartInfo {
            segment: open.number,
            index: open.part,
            start: open.part_start,
            duration: end.saturating_sub(open.part_start),
            independent: open.part_independent,
        }
    }
}
