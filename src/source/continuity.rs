//! Keeps a source's timeline whole:
//! - across runs: when a source comes back (ffmpeg restarted, a relay reconnected), its
//!   fragments continue where the previous run ended. A source that starts its timeline over
//!   is shifted past the end, every track by the same wall time, and renumbered; a relay whose
//!   upstream kept its timeline resends the newest group of pictures, whose overlap with what
//!   we already have is dropped, and passes through byte for byte;
//! - within a run: a sample whose duration the encoder wrote as 0 gets the track's frame
//!   interval (seen from ffmpeg's fMP4 muxer in some input layouts; Chromium's MSE then shows
//!   about one frame a second). The next fragment's `tfdt` absorbs the estimate's error.
//!
//! A fragment that needs none of this passes through untouched, without a copy.

use bytes::Bytes;

use crate::fmp4::rewriter::{self, DurationFill, Rewrite, TrackShift};
use crate::fmp4::{Fragment, InitSegment};

/// How a source's runs relate to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Each run starts its timeline over (ffmpeg, stdin).
    #[default]
    Restart,
    /// Runs continue one timeline (a relay's upstream), starting somewhat before where the
    /// previous run stopped.
    Resume,
}

/// A relay's new run on the same upstream timeline starts at most this much before the
/// previous end (it resends its newest group of pictures); further back is not an overlap.
const OVERLAP_SECS: f64 = 10.0;

/// What the current run does to its fragments, decided by its first one.
#[derive(Debug, Clone)]
enum Run {
    /// Continues (or jumps forward from) what came before: nothing to change.
    PassThrough,
    /// Starts before what came before ended, having started over: shift past it.
    Shift(Vec<TrackShift>),
    /// Resends what we already have: drop that, pass the rest.
    SkipOverlap,
}

#[derive(Debug, Default)]
pub struct Continuity {
    policy: Policy,
    /// Per track: id, timescale, end of the last sample so far (after shifting).
    ends: Vec<(u32, u32, u64)>,
    timescales: Vec<(u32, u32)>,
    run: Option<Run>,
    next_sequence: u32,
    /// The init of the previous run, and whether this run's differs.
    last_init: Option<Bytes>,
    init_changed: bool,
    /// A relay's upstream said its timeline is not the one of the previous run.
    timeline_changed: bool,
    /// Per track: the last fragment's first decode time and sample count, and the newest
    /// estimate of one sample's duration.
    cadence: Vec<Cadence>,
    /// The track whose end a shifted run continues from (else the latest end of any).
    lead: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Cadence {
    track_id: u32,
    last_decode_time: u64,
    last_samples: u32,
    interval: u32,
}

impl Continuity {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Runs that start over continue exactly where `track` ended, the other tracks shifted by
    /// the same wall time: a looped file's video is seamless, and a track that runs longer
    /// than it overlaps the next pass by that much (MSE trims what an append overlaps).
    pub fn lead_by(&mut self, track: u32) {
        self.lead = Some(track);
    }

    /// A new run of the source begins.
    pub fn restart(&mut self) {
        self.run = None;
        self.timeline_changed = false;
        self.cadence.clear();
    }

    /// For [`Policy::Resume`]: the upstream's timeline is another than the previous run's (it
    /// restarted), so this run must be shifted, not de-duplicated.
    pub fn timeline_changed(&mut self) {
        self.timeline_changed = true;
    }

    pub fn on_init(&mut self, init: &InitSegment) {
        self.timescales = init.tracks.iter().map(|t| (t.id, t.timescale)).collect();
        self.init_changed = self
            .last_init
            .as_ref()
            .is_some_and(|last| *last != init.bytes);
        self.last_init = Some(init.bytes.clone());
    }

    fn timescale(&self, track: u32) -> u32 {
        self.timescales
            .iter()
            .find(|(id, _)| *id == track)
            .map_or(1, |(_, ts)| (*ts).max(1))
    }

    /// Where the timeline of `track` ends so far.
    pub fn end_of(&self, track: u32) -> Option<u64> {
        self.ends
            .iter()
            .find(|(id, _, _)| *id == track)
            .map(|(_, _, end)| *end)
    }

    /// The fragment as it continues the timeline, or `None` for one we already have.
    pub fn apply(&mut self, fragment: Fragment) -> Result<Option<Fragment>, crate::fmp4::Error> {
        let run = match &self.run {
            Some(run) => run.clone(),
            None => {
                let run = self.decide(&fragment);
                self.run = Some(run.clone());
                run
            }
        };
        if let Run::SkipOverlap = run {
            let have_it = fragment.runs.iter().all(|r| {
                self.end_of(r.track_id)
                    .is_some_and(|end| r.decode_time < end)
            });
            if have_it {
                return Ok(None);
            }
        }
        let fills: Vec<DurationFill> = fragment
            .runs
            .iter()
            .filter(|run| run.duration == 0 && run.sample_count > 0)
            .filter_map(|run| {
                let cadence = self.cadence.iter().find(|c| c.track_id == run.track_id)?;
                Some(DurationFill {
                    track_id: run.track_id,
                    duration: cadence.interval,
                })
            })
            .filter(|fill| fill.duration > 0)
            .collect();
        let shifts = match &run {
            Run::Shift(shifts) => Some(shifts.as_slice()),
            _ => None,
        };
        let fragment = if shifts.is_some() || !fills.is_empty() {
            rewriter::apply(
                fragment,
                &Rewrite {
                    shifts: shifts.unwrap_or(&[]),
                    sequence: shifts.map(|_| self.next_sequence),
                    fill_durations: &fills,
                },
            )?
        } else {
            fragment
        };
        self.next_sequence = fragment.sequence.wrapping_add(1);
        self.observe_cadence(&fragment);
        for run in &fragment.runs {
            let timescale = self.timescale(run.track_id);
            match self.ends.iter_mut().find(|(id, _, _)| *id == run.track_id) {
                Some((_, ts, end)) => {
                    *ts = timescale;
                    *end = (*end).max(run.end_time());
                }
                None => self.ends.push((run.track_id, timescale, run.end_time())),
            }
        }
        Ok(Some(fragment))
    }

    /// What to do with a run, from its first fragment.
    fn decide(&self, first: &Fragment) -> Run {
        if self.ends.is_empty() {
            return Run::PassThrough;
        }
        let led = |track: u32| self.lead.is_none_or(|lead| lead == track);
        let lead_known = self
            .lead
            .is_some_and(|lead| self.ends.iter().any(|(id, _, _)| *id == lead))
            && first.runs.iter().any(|r| led(r.track_id));
        let previous_end = self
            .ends
            .iter()
            .filter(|(id, _, _)| !lead_known || led(*id))
            .map(|(_, ts, end)| *end as f64 / f64::from((*ts).max(1)))
            .fold(0.0, f64::max);
        let run_start = first
            .runs
            .iter()
            .filter(|r| !lead_known || led(r.track_id))
            .map(|r| r.decode_time as f64 / f64::from(self.timescale(r.track_id)))
            .fold(f64::INFINITY, f64::min);
        if !run_start.is_finite() || run_start >= previous_end {
            return Run::PassThrough;
        }
        if self.policy == Policy::Resume
            && !self.init_changed
            && !self.timeline_changed
            && previous_end - run_start <= OVERLAP_SECS
        {
            return Run::SkipOverlap;
        }
        let shift_secs = previous_end - run_start;
        Run::Shift(
            self.timescales
                .iter()
                .map(|(track_id, ts)| TrackShift {
                    track_id: *track_id,
                    ticks: (shift_secs * f64::from(*ts)).round() as i64,
                })
                .collect(),
        )
    }

    /// Learns each track's sample interval: from the distance between consecutive fragments,
    /// or from the first fragment's own duration until there are two.
    fn observe_cadence(&mut self, fragment: &Fragment) {
        for run in &fragment.runs {
            let per_sample = |ticks: u64, samples: u32| {
                u32::try_from(ticks / u64::from(samples.max(1))).unwrap_or(0)
            };
            match self.cadence.iter_mut().find(|c| c.track_id == run.track_id) {
                Some(cadence) => {
                    if run.decode_time > cadence.last_decode_time {
                        let interval = per_sample(
                            run.decode_time - cadence.last_decode_time,
                            cadence.last_samples,
                        );
                        if interval > 0 {
                            cadence.interval = interval;
                        }
                    }
                    cadence.last_decode_time = run.decode_time;
                    cadence.last_samples = run.sample_count;
                }
                None => self.cadence.push(Cadence {
                    track_id: run.track_id,
                    last_decode_time: run.decode_time,
                    last_samples: run.sample_count,
                    interval: per_sample(run.duration, run.sample_count),
                }),
            }
        }
    }
}
