//! Keeps a source's timeline whole:
//! - across restarts: the first fragment after a restart is shifted to start where the
//!   previous run ended, every track by the same wall time, and fragments are renumbered to
//!   keep counting, so players see one unbroken stream;
//! - within a run: a sample whose duration the encoder wrote as 0 gets the track's frame
//!   interval. ffmpeg's fMP4 muxer does that for every live video frame after the first, and
//!   Chromium's MSE then shows about one frame a second. The next fragment's `tfdt` absorbs
//!   the estimate's error.
//!
//! A fragment that needs neither passes through untouched, without a copy.

use crate::fmp4::rewriter::{self, DurationFill, Rewrite, TrackShift};
use crate::fmp4::{Fragment, InitSegment};

#[derive(Debug, Default)]
pub struct Continuity {
    /// Per track: id, timescale, end of the last sample so far (after shifting).
    ends: Vec<(u32, u32, u64)>,
    timescales: Vec<(u32, u32)>,
    /// The shift in force for this run, once its first fragment has fixed it.
    shifts: Option<Vec<TrackShift>>,
    /// Whether any earlier run produced media.
    continued: bool,
    next_sequence: u32,
    /// Per track: the last fragment's first decode time and sample count, and the newest
    /// estimate of one sample's duration.
    cadence: Vec<Cadence>,
}

#[derive(Debug, Clone, Copy)]
struct Cadence {
    track_id: u32,
    last_decode_time: u64,
    last_samples: u32,
    interval: u32,
}

impl Continuity {
    /// A new run of the source begins (ffmpeg restarted, the relay reconnected).
    pub fn restart(&mut self) {
        self.shifts = None;
        self.continued = !self.ends.is_empty();
        self.cadence.clear();
    }

    pub fn on_init(&mut self, init: &InitSegment) {
        self.timescales = init.tracks.iter().map(|t| (t.id, t.timescale)).collect();
    }

    fn timescale(&self, track: u32) -> u32 {
        self.timescales
            .iter()
            .find(|(id, _)| *id == track)
            .map_or(1, |(_, ts)| (*ts).max(1))
    }

    /// Shifts and renumbers a fragment of the current run as needed.
    pub fn apply(&mut self, fragment: Fragment) -> Result<Fragment, crate::fmp4::Error> {
        if self.shifts.is_none() {
            self.shifts = Some(if self.continued {
                self.shifts_for(&fragment)
            } else {
                Vec::new()
            });
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
        let shifts = self.shifts.as_deref().filter(|_| self.continued);
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
        Ok(fragment)
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

    /// The shift that puts this run's first fragment at the end of everything before it.
    fn shifts_for(&self, first: &Fragment) -> Vec<TrackShift> {
        let previous_end = self
            .ends
            .iter()
            .map(|(_, ts, end)| *end as f64 / f64::from((*ts).max(1)))
            .fold(0.0, f64::max);
        let run_start = first
            .runs
            .iter()
            .map(|r| r.decode_time as f64 / f64::from(self.timescale(r.track_id)))
            .fold(f64::INFINITY, f64::min);
        let run_start = if run_start.is_finite() {
            run_start
        } else {
            0.0
        };
        let shift_secs = previous_end - run_start;
        self.timescales
            .iter()
            .map(|(track_id, ts)| TrackShift {
                track_id: *track_id,
                ticks: (shift_secs * f64::from(*ts)).round() as i64,
            })
            .collect()
    }
}
