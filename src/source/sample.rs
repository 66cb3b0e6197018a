//! The `sample` source: the clip in `res/`, embedded in the binary, looped forever in real
//! time by shifting each pass's decode times past the previous one. It needs no ffmpeg, so a
//! fresh machine always has something to play.
//!
//! Each video fragment gets a `prft` with the wall clock at which it is sent, so players can
//! measure their latency from this source as from a live encoder.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::{SourceContext, SourceError, SourceEvent};
use crate::fmp4::rewriter::{self, TrackShift};
use crate::fmp4::{Fragment, InitSegment, Prft, Splitter, Unit};

pub static SAMPLE_MP4: &[u8] = include_bytes!("../../res/sample.mp4");

/// The clip, split once.
pub struct Clip {
    pub init: Arc<InitSegment>,
    pub fragments: Vec<Fragment>,
    /// Length of one pass, in the reference track's timescale.
    pub duration: u64,
    pub reference_timescale: u32,
}

impl Clip {
    pub fn parse(bytes: Bytes) -> Result<Self, SourceError> {
        let mut splitter = Splitter::default();
        splitter.feed(bytes);
        let mut init = None;
        let mut fragments = Vec::new();
        while let Some(unit) = splitter.poll().map_err(SourceError::Fmp4)? {
            match unit {
                Unit::Init(i) => init = Some(i),
                Unit::Fragment(f) => fragments.push(f),
            }
        }
        let init = init.ok_or(SourceError::Unusable("the sample has no init segment"))?;
        let reference = init
            .reference_track()
            .ok_or(SourceError::Unusable("the sample has no tracks"))?;
        let runs = fragments.iter().filter_map(|f| f.run(reference.id));
        let start = runs.clone().map(|r| r.decode_time).min().unwrap_or(0);
        let end = runs.map(|r| r.end_time()).max().unwrap_or(0);
        if end <= start {
            return Err(SourceError::Unusable("the sample has no media"));
        }
        Ok(Self {
            duration: end - start,
            reference_timescale: reference.timescale,
            init,
            fragments,
        })
    }

    /// The shift of pass `pass` for every track: the same wall time, in each timescale.
    fn shifts(&self, pass: u64) -> Vec<TrackShift> {
        self.init
            .tracks
            .iter()
            .map(|t| {
                let ticks = u128::from(pass) * u128::from(self.duration) * u128::from(t.timescale)
                    / u128::from(self.reference_timescale.max(1));
                TrackShift {
                    track_id: t.id,
                    ticks: i64::try_from(ticks).unwrap_or(i64::MAX),
                }
            })
            .collect()
    }

    /// Seconds from the clip's start at which a fragment is due.
    fn due_secs(&self, fragment: &Fragment) -> f64 {
        fragment
            .runs
            .first()
            .and_then(|run| {
                let track = self.init.track(run.track_id)?;
                Some(run.decode_time as f64 / f64::from(track.timescale.max(1)))
            })
            .unwrap_or(0.0)
    }
}

pub async fn run(ctx: SourceContext) {
    let clip = match Clip::parse(Bytes::from_static(SAMPLE_MP4)) {
        Ok(clip) => clip,
        Err(error) => {
            // The clip is built into the binary; this only happens to a broken build.
            tracing::error!(stream = %ctx.stream, "bundled sample unusable: {error}");
            ctx.send(SourceEvent::Finished { error: Some(error) }).await;
            return;
        }
    };
    tracing::info!(
        stream = %ctx.stream,
        codecs = %clip.init.codecs(),
        "playing the bundled sample clip in a loop"
    );
    if !ctx.send(SourceEvent::Init(clip.init.clone())).await {
        return;
    }
    let video = clip.init.video().map(|t| t.id);
    let pass_secs = clip.duration as f64 / f64::from(clip.reference_timescale.max(1));
    let started = Instant::now();
    let mut sequence: u32 = 1;
    for pass in 0u64.. {
        let shifts = clip.shifts(pass);
        for fragment in &clip.fragments {
            let due = started
                + Duration::from_secs_f64(pass as f64 * pass_secs + clip.due_secs(fragment));
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = ctx.cancel.cancelled() => return,
            }
            let Ok(mut out) = rewriter::rewrite(fragment.clone(), &shifts, Some(sequence)) else {
                tracing::error!(stream = %ctx.stream, "sample decode times overflowed; stopping");
                return;
            };
            sequence = sequence.wrapping_add(1);
            if let Some(run) = video.and_then(|v| out.run(v).copied()) {
                let prft = Prft::at(run.track_id, run.decode_time, SystemTime::now());
                match rewriter::set_prft(out, &prft) {
                    Ok(with_prft) => out = with_prft,
                    Err(err) => {
                        tracing::error!(stream = %ctx.stream, "cannot stamp the sample: {err}");
                        return;
                    }
                }
            }
            if !ctx.send(SourceEvent::Fragment(out)).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_clip_is_short_has_audio_and_video_and_loops_evenly() {
        assert!(SAMPLE_MP4.len() < 2 << 20, "sample is over 2 MB");
        let clip = Clip::parse(Bytes::from_static(SAMPLE_MP4)).expect("sample parses");
        assert!(clip.init.video().is_some() && clip.init.audio().is_some());
        let secs = clip.duration as f64 / f64::from(clip.reference_timescale);
        assert!((3.0..=10.0).contains(&secs), "{secs} s");
        // Every track spans the same time, so looping does not drift audio against video.
        for track in &clip.init.tracks {
            let runs = clip.fragments.iter().filter_map(|f| f.run(track.id));
            let span = runs.clone().map(|r| r.end_time()).max().unwrap_or(0)
                - runs.map(|r| r.decode_time).min().unwrap_or(0);
            let track_secs = span as f64 / f64::from(track.timescale);
            assert!(
                (track_secs - secs).abs() < 0.001,
                "track {} lasts {track_secs}",
                track.id
            );
        }
        let shifted = clip.shifts(3);
        let audio = clip.init.audio().expect("audio");
        let audio_shift = shifted
            .iter()
            .find(|s| s.track_id == audio.id)
            .expect("shift");
        assert!((audio_shift.ticks as f64 / f64::from(audio.timescale) - 3.0 * secs).abs() < 0.001);
    }
}
