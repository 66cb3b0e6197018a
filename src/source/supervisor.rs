//! One supervisor for every source that runs something which can fail and be tried again
//! (ffmpeg, a relay's connection): it runs the source, reports each failure to the stream
//! with the delay before the next try (exponential, jittered, reset after a run that
//! lasted), waits, and stops at once when cancelled. A fault no retry can help ends the
//! source with that error. It keeps the source's timeline (`Continuity`) across runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Continuity, Restart, RunEnd, SourceContext, SourceEvent};

/// A source the supervisor can run again.
pub(crate) trait Restartable {
    /// One run, until it ends, its fragments passed through `continuity`.
    async fn run_once(&mut self, ctx: &SourceContext, continuity: &mut Continuity) -> RunEnd;
}

/// How failures are retried and told.
pub(crate) struct Retry {
    pub backoff: Backoff,
    pub cause: Restart,
    /// "ffmpeg stopped", "upstream ws://… lost": the start of the warning logged for a
    /// failure.
    pub lost: String,
    /// "restarting", "dialling again": its end.
    pub again: &'static str,
}

/// Runs `source` until it is stopped, its stream is gone, or it fails for good; each run
/// continues the timeline of the one before through `continuity`.
pub(crate) async fn supervise(
    mut source: impl Restartable,
    mut retry: Retry,
    mut continuity: Continuity,
    ctx: &SourceContext,
) {
    loop {
        let started = Instant::now();
        let error = match source.run_once(ctx, &mut continuity).await {
            RunEnd::Stopped => return,
            RunEnd::Fatal(error) => {
                tracing::error!(stream = %ctx.stream, "{error}");
                ctx.send(SourceEvent::Finished { error: Some(error) }).await;
                return;
            }
            RunEnd::Failed(error) => error,
        };
        if ctx.cancel.is_cancelled() {
            return;
        }
        retry.backoff.succeeded_after(started.elapsed());
        let retry_in = retry.backoff.next_delay();
        tracing::warn!(
            stream = %ctx.stream,
            retry_in_ms = retry_in.as_millis() as u64,
            "{}: {error}; {}",
            retry.lost,
            retry.again
        );
        let event = SourceEvent::Restarting {
            error,
            retry_in,
            cause: retry.cause,
        };
        if !ctx.send(event).await {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry_in) => {}
            _ = ctx.cancel.cancelled() => return,
        }
        continuity.restart();
    }
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
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
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
