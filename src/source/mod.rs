//! Where a stream's bytes come from: ffmpeg (test pattern, camera, file, URL), standard input,
//! the bundled sample clip. Every source hands the stream the same thing, init segments and
//! fragments, and keeps its timeline continuous when it restarts, so viewers play on.
//!
//! Sources know nothing of viewers or HTTP; they report through a channel of
//! [`SourceEvent`]s.

mod continuity;
pub mod ffmpeg;
pub mod flv_ingest;
mod folder;
mod relay;
mod sample;
mod spec;
mod stdin;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fmp4::{Fragment, InitSegment, Splitter, Unit};

pub use continuity::{Continuity, Policy};
pub use ffmpeg::{EncoderOptions, Ingest};
pub use spec::{SourceSpec, SpecError};

/// What a source reports.
#[derive(Debug)]
pub enum SourceEvent {
    Init(Arc<InitSegment>),
    Fragment(Fragment),
    /// The source broke and will try again after `retry_in`.
    Restarting {
        reason: String,
        retry_in: Duration,
        cause: Restart,
    },
    /// The source will produce nothing more (end of input, or a fault retrying cannot fix).
    Finished {
        reason: Option<String>,
    },
}

/// What a restart starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A process we run (ffmpeg).
    Process,
    /// A connection to an upstream server (a relay).
    Upstream,
}

/// Why one run of a source ended.
pub(crate) enum RunEnd {
    /// Told to stop.
    Stopped,
    /// Worth another try.
    Failed(String),
    /// No retry can help.
    Fatal(String),
}

/// The sending half a source writes to, with the token that tells it to stop.
#[derive(Clone)]
pub struct SourceContext {
    pub stream: String,
    pub events: mpsc::Sender<SourceEvent>,
    pub cancel: CancellationToken,
}

impl SourceContext {
    /// Sends an event; `false` when the stream is gone and the source should stop.
    pub async fn send(&self, event: SourceEvent) -> bool {
        tokio::select! {
            sent = self.events.send(event) => sent.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }
}

/// Runs a source until it finishes or is cancelled.
pub async fn run(spec: SourceSpec, encoder: EncoderOptions, ctx: SourceContext) {
    match spec {
        SourceSpec::Sample => sample::run(ctx).await,
        SourceSpec::Stdin => stdin::run(ctx).await,
        SourceSpec::Relay(url) => relay::run(url, ctx).await,
        SourceSpec::Dir(path) => folder::run(path, ctx).await,
        other => ffmpeg::run(other, encoder, ctx).await,
    }
}

/// What turns a source's bytes into init segments and fragments: our splitter for fMP4, or
/// the FLV ingest that writes the fragments itself.
pub(crate) enum Demuxer {
    Fmp4(Splitter),
    Flv(Box<flv_ingest::FlvIngest>),
}

/// FLV streams start with these bytes (Adobe FLV spec, "The FLV header").
const FLV_SIGNATURE: &[u8] = b"FLV";

impl Demuxer {
    pub fn new(ingest: Ingest) -> Self {
        match ingest {
            Ingest::Auto => Demuxer::Flv(Box::default()),
            Ingest::Fmp4 => Demuxer::Fmp4(Splitter::default()),
        }
    }

    /// The demuxer for a stream that begins with `start`: FLV by its signature, else fMP4.
    pub fn for_start(start: &[u8]) -> Self {
        if start.starts_with(FLV_SIGNATURE) {
            Demuxer::Flv(Box::default())
        } else {
            Demuxer::Fmp4(Splitter::default())
        }
    }

    /// Takes a chunk; what it completes comes out. An error when the input is broken.
    pub fn feed(&mut self, chunk: bytes::Bytes, arrived: SystemTime) -> Result<Vec<Unit>, String> {
        match self {
            Demuxer::Fmp4(splitter) => {
                splitter.feed(chunk);
                let mut units = Vec::new();
                loop {
                    match splitter.poll() {
                        Ok(Some(unit)) => units.push(unit),
                        Ok(None) => return Ok(units),
                        Err(err) => return Err(format!("broken fMP4 input: {err}")),
                    }
                }
            }
            Demuxer::Flv(flv) => flv.feed(chunk, arrived),
        }
    }

    /// The input is over: an error if it ended inside a box or tag.
    pub fn finish(&mut self) -> Result<(), String> {
        match self {
            Demuxer::Fmp4(splitter) => splitter
                .finish()
                .map_err(|e| format!("the input ended inside a box: {e}")),
            Demuxer::Flv(flv) => flv.finish(),
        }
    }
}

/// Feeds a chunk to `demuxer` and forwards what comes out through `continuity`. `Ok(false)`
/// when the stream is gone; an error message when the input is broken.
pub(crate) async fn forward_chunk(
    demuxer: &mut Demuxer,
    chunk: bytes::Bytes,
    continuity: &mut Continuity,
    ctx: &SourceContext,
) -> Result<bool, String> {
    let units = demuxer.feed(chunk, SystemTime::now())?;
    for unit in units {
        let event = match unit {
            Unit::Init(init) => {
                continuity.on_init(&init);
                SourceEvent::Init(init)
            }
            Unit::Fragment(fragment) => match continuity.apply(fragment) {
                Ok(Some(fragment)) => SourceEvent::Fragment(fragment),
                Ok(None) => continue,
                Err(err) => return Err(format!("cannot continue the timeline: {err}")),
            },
        };
        if !ctx.send(event).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Exponential back-off between restarts, reset after a run that lasted.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The delay before the next attempt, with up to 25% of jitter so that many streams
    /// failing together do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.as_millis() as u64 / 4;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
        base + Duration::from_millis(if jitter > 0 { nanos % jitter } else { 0 })
    }

    /// A run that lasted this long was healthy: start again from the shortest delay.
    pub fn succeeded_after(&mut self, ran_for: Duration) {
        if ran_for >= self.max {
            self.next = self.min;
        }
    }
}
