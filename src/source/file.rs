//! The `file:` source for an MP4 file, progressive or fragmented, whose codecs browsers play
//! (H.264, HEVC, AV1; AAC, Opus): read by the same code as `package` ([`read_units`]), no
//! ffmpeg and no re-encoding, one fragment per video frame, sent in real time and looped
//! forever. Each pass starts the file's timeline over; [`Continuity`] shifts it past the
//! previous pass, so players see one unbroken stream. Other files (Matroska, MPEG-TS, an MP4
//! of other codecs) and files asked to be scaled (`--width`/`--height`) go to ffmpeg, which
//! re-encodes them ([`route`] says which and why, and the log repeats it).
//!
//! The file is read on a blocking thread, a pass at a time, a few fragments ahead of the
//! clock: memory stays at the `moov`'s sample tables and a handful of frames, whatever the
//! file's size. A file replaced between passes is read anew (a new init if it differs); one
//! that breaks partway plays up to the break, then loops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::{Continuity, EncoderOptions, SourceContext, SourceError, SourceEvent, SourceSpec};
use crate::fmp4::rewriter;
use crate::fmp4::{InitSegment, Prft, TrackKind, Unit};
use crate::package::{PackageError, read_units};

/// How a file is played.
#[derive(Debug)]
pub enum Route {
    /// By our reader, as it is.
    AsItIs(Arc<InitSegment>),
    /// Through ffmpeg, for the reason given.
    Ffmpeg(String),
}

/// Codecs (the start of their codecs string) that pass through to browsers as they are.
const PASSED: &[&str] = &["avc1", "avc3", "hvc1", "hev1", "av01", "mp4a.40", "opus"];

/// Every progressive sample becomes its own fragment: each frame leaves when it is due, as
/// from the zero-wait ingest.
const PER_FRAME: Option<f64> = Some(0.0);

/// How many fragments the reader runs ahead of the clock.
const READ_AHEAD: usize = 16;

/// Whether `path` plays as it is, or goes through ffmpeg (and why). Reads the file's header
/// and `moov` (blocking).
pub fn route(path: &Path, encoder: &EncoderOptions) -> Route {
    if encoder.width.is_some() || encoder.height.is_some() {
        return Route::Ffmpeg("--width/--height ask for it to be scaled".into());
    }
    if !encoder.renditions.is_empty() {
        return Route::Ffmpeg("its renditions are encoded from it".into());
    }
    let mut init = None;
    let read = read_units(path, PER_FRAME, &mut |unit| {
        if let Unit::Init(i) = unit {
            init = Some(i);
        }
        Err(PackageError::Stopped)
    });
    let init = match (read, init) {
        (_, Some(init)) => init,
        (Err(PackageError::Stopped) | Ok(()), None) => {
            return Route::Ffmpeg("it has no MP4 init segment".into());
        }
        (Err(err), None) => return Route::Ffmpeg(format!("it is not an MP4 we read ({err})")),
    };
    for track in &init.tracks {
        let codec = track.codec.as_deref().unwrap_or("");
        match track.kind {
            TrackKind::Video | TrackKind::Audio if PASSED.iter().any(|p| codec.starts_with(p)) => {}
            TrackKind::Video | TrackKind::Audio => {
                let codec = if codec.is_empty() {
                    "of a codec we do not describe"
                } else {
                    codec
                };
                return Route::Ffmpeg(format!(
                    "its {:?} track {} is {codec}, which browsers may not play",
                    track.kind, track.id
                ));
            }
            TrackKind::Other(handler) => {
                return Route::Ffmpeg(format!(
                    "its track {} is neither video nor audio ({handler})",
                    track.id
                ));
            }
        }
    }
    if init.tracks.is_empty() {
        return Route::Ffmpeg("it has no tracks".into());
    }
    Route::AsItIs(init)
}

/// Plays `path` as it is when it can ([`route`]), else through ffmpeg.
pub async fn run(path: PathBuf, encoder: EncoderOptions, ctx: SourceContext) {
    let probe = path.clone();
    let opts = encoder.clone();
    let route = tokio::task::spawn_blocking(move || route(&probe, &opts))
        .await
        .unwrap_or_else(|err| Route::Ffmpeg(format!("reading it failed: {err}")));
    match route {
        Route::AsItIs(init) => {
            tracing::info!(
                stream = %ctx.stream,
                file = %path.display(),
                codecs = %init.codecs(),
                "playing the file as it is, looped"
            );
            play(path, ctx).await;
        }
        Route::Ffmpeg(why) => {
            tracing::info!(
                stream = %ctx.stream,
                file = %path.display(),
                "ffmpeg re-encodes the file: {why}"
            );
            super::ffmpeg::run(SourceSpec::File(path), encoder, ctx).await;
        }
    }
}

/// One pass over the file: its units, read on a blocking thread, and how the read ended.
fn read_pass(path: PathBuf) -> (mpsc::Receiver<Unit>, tokio::task::JoinHandle<PackageError>) {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        let read = read_units(&path, PER_FRAME, &mut |unit| {
            tx.blocking_send(unit).map_err(|_| PackageError::Stopped)
        });
        match read {
            Ok(()) => PackageError::Stopped,
            Err(err) => err,
        }
    });
    (rx, reader)
}

async fn play(path: PathBuf, ctx: SourceContext) {
    let mut continuity = Continuity::default();
    // The wall clock and the (shifted) media time it was at: every fragment is due when the
    // clock has moved on as far as its media time, across passes, so nothing drifts.
    let mut clock: Option<(Instant, f64)> = None;
    let mut init: Option<Arc<InitSegment>> = None;
    for pass in 1u64.. {
        continuity.restart();
        let (mut units, reader) = read_pass(path.clone());
        let mut sent = 0usize;
        loop {
            let unit = tokio::select! {
                unit = units.recv() => unit,
                _ = ctx.cancel.cancelled() => return,
            };
            let Some(unit) = unit else { break };
            match unit {
                Unit::Init(new) => {
                    continuity.on_init(&new);
                    if let Some(lead) = new.reference_track() {
                        continuity.lead_by(lead.id);
                    }
                    let changed = init.as_ref().is_none_or(|old| old.bytes != new.bytes);
                    if changed {
                        if init.is_some() {
                            tracing::info!(stream = %ctx.stream, pass, "the file changed: a new init");
                        }
                        init = Some(new.clone());
                        if !ctx.send(SourceEvent::Init(new)).await {
                            return;
                        }
                    }
                }
                Unit::Fragment(fragment) => {
                    let Some(current) = init.clone() else {
                        continue;
                    };
                    let mut fragment = match continuity.apply(fragment) {
                        Ok(Some(fragment)) => fragment,
                        Ok(None) => continue,
                        Err(err) => {
                            let error = SourceError::Timeline(err);
                            tracing::error!(stream = %ctx.stream, "file source stopped: {error}");
                            ctx.send(SourceEvent::Finished { error: Some(error) }).await;
                            return;
                        }
                    };
                    let Some(run) = fragment.runs.first().copied() else {
                        continue;
                    };
                    let scale = current.track(run.track_id).map_or(1, |t| t.timescale);
                    let at = run.decode_time as f64 / f64::from(scale.max(1));
                    let (wall, media) = *clock.get_or_insert((Instant::now(), at));
                    let due = wall + Duration::from_secs_f64((at - media).max(0.0));
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = ctx.cancel.cancelled() => return,
                    }
                    // Video leaves stamped with the wall clock, as from a live encoder.
                    if let Some(video) = current.video().and_then(|v| fragment.run(v.id).copied()) {
                        let prft = Prft::at(video.track_id, video.decode_time, SystemTime::now());
                        if let Ok(stamped) = rewriter::set_prft(fragment.clone(), &prft) {
                            fragment = stamped;
                        }
                    }
                    if !ctx.send(SourceEvent::Fragment(fragment)).await {
                        return;
                    }
                    sent += 1;
                }
            }
        }
        let ended = reader.await.unwrap_or_else(|err| PackageError::Io {
            what: "read",
            path: path.clone(),
            source: std::io::Error::other(err.to_string()),
        });
        match ended {
            PackageError::Stopped if sent > 0 => {
                tracing::debug!(stream = %ctx.stream, pass, fragments = sent, "the file ended; again");
            }
            PackageError::Stopped => {
                let error = SourceError::Package(PackageError::NoMedia(path.clone()));
                tracing::error!(stream = %ctx.stream, "file source stopped: {error}");
                ctx.send(SourceEvent::Finished { error: Some(error) }).await;
                return;
            }
            err if sent > 0 => {
                tracing::warn!(
                    stream = %ctx.stream,
                    pass,
                    "the file broke after {sent} fragments ({err}); playing it again from the start"
                );
            }
            err => {
                let error = SourceError::Package(err);
                tracing::error!(stream = %ctx.stream, "file source stopped: {error}");
                ctx.send(SourceEvent::Finished { error: Some(error) }).await;
                return;
            }
        }
    }
}
