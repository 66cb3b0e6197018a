//! Sources that run ffmpeg (through `ffmpeg-sidecar`): the test pattern, a camera, a file
//! looped in real time, a network URL. ffmpeg encodes low-latency H.264 (and AAC) and hands
//! over each frame on its stdout: with `--ingest auto`, as FLV the moment it is encoded, and
//! our FLV ingest writes the fragments; with `--ingest fmp4`, as ffmpeg's own fragmented MP4
//! (one fragment per frame with a `prft`, each a frame late: the muxer waits for the next
//! frame to know the duration), cut by our splitter.
//!
//! ffmpeg-sidecar's API is synchronous: its pipes are handed to tokio so that reading them never
//! blocks the runtime. ffmpeg's log lines become our log lines. A run that ends for any reason
//! but a stop is restarted with back-off (`supervisor.rs`), its timeline continued. Its
//! command line is built in `args.rs`.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::Duration;

use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use tokio::io::{AsyncBufReadExt, BufReader};

mod args;
mod ladder;

pub use args::{
    EncoderOptions, Ingest, Rendition, arguments, audio_encoder, check_renditions,
    ladder_arguments, muxer, parse_renditions, video_encoder,
};

use super::supervisor::{Restartable, Retry, supervise};
use super::{
    Backoff, Continuity, Demuxer, PipeEnd, Restart, RunEnd, SourceContext, SourceError, SourceSpec,
    read_pipe,
};

/// Whether an ffmpeg program can be started (beside our binary, or on PATH).
pub fn ffmpeg_available() -> bool {
    ffmpeg_sidecar::command::ffmpeg_is_installed()
}

pub const FFMPEG_MISSING: &str = "ffmpeg not found: install it (Debian/Ubuntu: `sudo apt install ffmpeg`, \
macOS: `brew install ffmpeg`, Windows: https://ffmpeg.org/download.html) or put it beside this program";

/// Runs ffmpeg for `spec`, restarting it with back-off until cancelled.
pub async fn run(spec: SourceSpec, opts: EncoderOptions, ctx: SourceContext) {
    if opts.renditions.len() >= 2 {
        return ladder::run(spec, opts, ctx).await;
    }
    let args = arguments(&spec, &opts, opts.ingest);
    tracing::info!(stream = %ctx.stream, source = %spec, "starting ffmpeg: ffmpeg {}", args.join(" "));
    let ffmpeg = Ffmpeg {
        args,
        ingest: opts.ingest,
    };
    supervise(ffmpeg, retry(), Continuity::default(), &ctx).await;
}

/// How an ffmpeg that stopped is run again.
fn retry() -> Retry {
    Retry {
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        cause: Restart::Process,
        lost: "ffmpeg stopped".into(),
        again: "restarting",
    }
}

/// One ffmpeg command line, run again after it fails.
struct Ffmpeg {
    args: Vec<String>,
    ingest: Ingest,
}

impl Restartable for Ffmpeg {
    async fn run_once(&mut self, ctx: &SourceContext, continuity: &mut Continuity) -> RunEnd {
        run_once(&self.args, self.ingest, ctx, continuity).await
    }
}

/// Kills ffmpeg when dropped, so no path out of a run (a panic, a cancelled task) leaves it
/// running.
struct ChildGuard(Option<FfmpegChild>);

impl ChildGuard {
    fn kill(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
        }
    }

    /// Waits for the exit without blocking the runtime.
    async fn wait(&mut self) -> Option<ExitStatus> {
        let mut child = self.0.take()?;
        tokio::task::spawn_blocking(move || child.wait().ok())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts ffmpeg with `args`; how the run ends if it cannot start (no ffmpeg is fatal).
fn spawn(args: &[String]) -> Result<ChildGuard, RunEnd> {
    let mut command = FfmpegCommand::new();
    command.args(args);
    match command.spawn() {
        Ok(child) => Ok(ChildGuard(Some(child))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(RunEnd::Fatal(SourceError::FfmpegMissing))
        }
        Err(err) => Err(RunEnd::Failed(SourceError::io("cannot start ffmpeg", err))),
    }
}

async fn run_once(
    args: &[String],
    ingest: Ingest,
    ctx: &SourceContext,
    continuity: &mut Continuity,
) -> RunEnd {
    let mut child = match spawn(args) {
        Ok(child) => child,
        Err(end) => return end,
    };
    let pipes = child
        .0
        .as_mut()
        .and_then(|inner| Some((inner.take_stdout()?, inner.take_stderr()?)));
    let Some((stdout, stderr)) = pipes else {
        return RunEnd::Failed(SourceError::io(
            "ffmpeg started without pipes",
            std::io::ErrorKind::BrokenPipe.into(),
        ));
    };
    let (mut stdout, stderr) = match (
        tokio::process::ChildStdout::from_std(stdout),
        tokio::process::ChildStderr::from_std(stderr),
    ) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            return RunEnd::Failed(SourceError::io("cannot read ffmpeg", e));
        }
    };
    let log = tokio::spawn(log_stderr(ctx.stream.clone(), stderr));
    let mut demuxer = Some(Demuxer::new(ingest));
    let end = read_pipe(
        &mut stdout,
        "ffmpeg's output",
        &mut demuxer,
        continuity,
        ctx,
    )
    .await;
    child.kill();
    let status = child.wait().await;
    let last_lines = log.await.unwrap_or_default();
    match end {
        PipeEnd::Stopped => RunEnd::Stopped,
        // ffmpeg wrote something we cannot read: restart it.
        PipeEnd::Failed(error) => RunEnd::Failed(error),
        PipeEnd::Closed => RunEnd::Failed(SourceError::FfmpegExited {
            status: status.map_or("unknown status".into(), |s| s.to_string()),
            detail: last_lines.into_iter().collect::<Vec<_>>().join(" | "),
        }),
    }
}

/// Logs ffmpeg's stderr at matching levels and returns its last warning and error lines.
async fn log_stderr(stream: String, stderr: tokio::process::ChildStderr) -> VecDeque<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut last = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        // `-loglevel level+info` prefixes every line with its level.
        let (level, text) = match line.split_once("] ") {
            Some((prefix, text)) if prefix.starts_with('[') => {
                let level = prefix.rsplit('[').next().unwrap_or_default();
                (level.to_string(), text.to_string())
            }
            _ => (String::new(), line.clone()),
        };
        match level.as_str() {
            "fatal" | "error" | "panic" => {
                tracing::error!(stream = %stream, "ffmpeg: {text}");
            }
            "warning" => tracing::warn!(stream = %stream, "ffmpeg: {text}"),
            _ => {
                tracing::debug!(stream = %stream, "ffmpeg: {text}");
                continue;
            }
        }
        last.push_back(text);
        if last.len() > 3 {
            last.pop_front();
        }
    }
    last
}
