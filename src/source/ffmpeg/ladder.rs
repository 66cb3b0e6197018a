//! A ladder of renditions from one ffmpeg: one decode, a scaler and an H.264 encoder per rung,
//! the audio encoded once, each on its own FLV output so that no rung waits for another's
//! muxing (`args::ladder_arguments`). The outputs come back over loopback TCP: ffmpeg connects
//! to a listener of ours per output, made for each run.
//!
//! Each rung is a stream of its own for the rest of the server (its hub, window, manifests,
//! recording, relay): its FLV ingest is fed that rung's video tags and the shared audio's, so
//! its fragments carry both tracks, the audio's samples the same on every rung. Rung 0 (the
//! top) is reported as the stream's own events, the others as [`SourceEvent::Rendition`].
//! Every rung has its own [`Continuity`], so a restart of ffmpeg continues each timeline.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::super::supervisor::{Restartable, supervise};
use super::super::{Continuity, RunEnd, SourceContext, SourceError, SourceEvent, SourceSpec};
use super::{EncoderOptions, ladder_arguments, log_stderr};
use crate::flv::{self, FlvReader, Header, TagKind};
use crate::fmp4::Unit;
use crate::source::flv_ingest::FlvIngest;

/// How long ffmpeg has to connect to every output after it starts (it opens them before
/// reading its input).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the ladder's ffmpeg, restarting it with back-off until cancelled.
pub async fn run(spec: SourceSpec, opts: EncoderOptions, ctx: SourceContext) {
    let rungs = opts.renditions.len();
    tracing::info!(
        stream = %ctx.stream,
        source = %spec,
        rungs = %opts
            .renditions
            .iter()
            .map(|r| format!("{}p@{}k", r.height, r.video_bitrate_kbps))
            .collect::<Vec<_>>()
            .join(" "),
        "encoding a ladder of renditions"
    );
    let ladder = Ladder {
        spec,
        opts,
        continuities: (0..rungs).map(|_| Continuity::default()).collect(),
    };
    // Each rung keeps its own continuity; the supervisor's is not used.
    supervise(ladder, super::retry(), Continuity::default(), &ctx).await;
}

struct Ladder {
    spec: SourceSpec,
    opts: EncoderOptions,
    continuities: Vec<Continuity>,
}

impl Restartable for Ladder {
    async fn run_once(&mut self, ctx: &SourceContext, _continuity: &mut Continuity) -> RunEnd {
        for continuity in &mut self.continuities {
            continuity.restart();
        }
        run_once(&self.spec, &self.opts, &mut self.continuities, ctx).await
    }
}

/// What a connection reader hands over: a tag of output `output`, or how it ended.
enum Read {
    Tag(usize, flv::Tag),
    Closed(usize),
    Failed(SourceError),
}

async fn run_once(
    spec: &SourceSpec,
    opts: &EncoderOptions,
    continuities: &mut [Continuity],
    ctx: &SourceContext,
) -> RunEnd {
    let rungs = opts.renditions.len();
    let outputs = rungs + usize::from(opts.audio);
    let mut listeners = Vec::with_capacity(outputs);
    for _ in 0..outputs {
        match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listeners.push(listener),
            Err(err) => {
                return RunEnd::Failed(SourceError::io("cannot listen for ffmpeg's outputs", err));
            }
        }
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_default()
        })
        .collect();
    let audio_url = opts.audio.then(|| urls[rungs].as_str());
    let args = ladder_arguments(spec, opts, &urls[..rungs], audio_url);
    tracing::debug!(stream = %ctx.stream, "starting ffmpeg: ffmpeg {}", args.join(" "));
    let mut child = match super::spawn(&args) {
        Ok(child) => child,
        Err(end) => return end,
    };
    let stderr = child
        .0
        .as_mut()
        .and_then(|inner| inner.take_stderr())
        .and_then(|e| tokio::process::ChildStderr::from_std(e).ok());
    let Some(stderr) = stderr else {
        return RunEnd::Failed(SourceError::io(
            "ffmpeg started without its error pipe",
            std::io::ErrorKind::BrokenPipe.into(),
        ));
    };
    let log = tokio::spawn(log_stderr(ctx.stream.clone(), stderr));
    let end = serve_outputs(listeners, rungs, opts.audio, continuities, ctx).await;
    child.kill();
    let status = child.wait().await;
    let last_lines = log.await.unwrap_or_default();
    match end {
        Ok(()) => RunEnd::Stopped,
        Err(Some(error)) => RunEnd::Failed(error),
        Err(None) => RunEnd::Failed(SourceError::FfmpegExited {
            status: status.map_or("unknown status".into(), |s| s.to_string()),
            detail: last_lines.into_iter().collect::<Vec<_>>().join(" | "),
        }),
    }
}

/// Accepts ffmpeg's connection to every output, then turns their tags into each rung's
/// events until one closes (`Err(None)`: ffmpeg ended), breaks (`Err(Some)`), or the source is
/// told to stop (`Ok`).
async fn serve_outputs(
    listeners: Vec<TcpListener>,
    rungs: usize,
    audio: bool,
    continuities: &mut [Continuity],
    ctx: &SourceContext,
) -> Result<(), Option<SourceError>> {
    let mut connections = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.iter().enumerate() {
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()) => accepted,
            _ = ctx.cancel.cancelled() => return Ok(()),
        };
        match accepted {
            Ok(Ok((socket, _))) => connections.push(socket),
            Ok(Err(err)) => {
                return Err(Some(SourceError::io(
                    format!("accepting ffmpeg's output {i}"),
                    err,
                )));
            }
            // ffmpeg died before opening its outputs: its own last lines say why.
            Err(_) => return Err(None),
        }
    }
    drop(listeners);
    let (tx, mut rx) = mpsc::channel(256);
    let mut readers = tokio::task::JoinSet::new();
    for (i, socket) in connections.into_iter().enumerate() {
        readers.spawn(read_output(i, socket, tx.clone()));
    }
    drop(tx);
    let announced = Header { audio, video: true };
    let mut ingests: Vec<FlvIngest> = (0..rungs).map(|_| FlvIngest::for_tags(announced)).collect();
    loop {
        let read = tokio::select! {
            read = rx.recv() => read,
            _ = ctx.cancel.cancelled() => return Ok(()),
        };
        let (output, tag) = match read {
            Some(Read::Tag(output, tag)) => (output, tag),
            Some(Read::Closed(output)) => {
                tracing::debug!(stream = %ctx.stream, output, "an output of ffmpeg closed");
                return Err(None);
            }
            None => return Err(None),
            Some(Read::Failed(error)) => return Err(Some(error)),
        };
        let arrived = SystemTime::now();
        // A rung's own output carries its video (and the muxer's metadata); the audio output
        // goes to every rung.
        let targets = if output < rungs {
            if tag.kind == TagKind::Audio {
                continue;
            }
            output..output + 1
        } else {
            if tag.kind != TagKind::Audio {
                continue;
            }
            0..rungs
        };
        for rung in targets {
            let units = ingests[rung].take_tag(tag.clone(), arrived).map_err(Some)?;
            for unit in units {
                if !forward(rung, unit, &mut continuities[rung], ctx).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Sends one rung's unit on through its continuity; `Ok(false)` when the stream is gone.
async fn forward(
    rung: usize,
    unit: Unit,
    continuity: &mut Continuity,
    ctx: &SourceContext,
) -> Result<bool, Option<SourceError>> {
    let unit = match unit {
        Unit::Init(init) => {
            continuity.on_init(&init);
            Unit::Init(init)
        }
        Unit::Fragment(fragment) => match continuity.apply(fragment) {
            Ok(Some(fragment)) => Unit::Fragment(fragment),
            Ok(None) => return Ok(true),
            Err(err) => return Err(Some(SourceError::Timeline(err))),
        },
    };
    let event = match (rung, unit) {
        (0, Unit::Init(init)) => SourceEvent::Init(init),
        (0, Unit::Fragment(fragment)) => SourceEvent::Fragment(fragment),
        (rung, unit) => SourceEvent::Rendition { rung, unit },
    };
    Ok(ctx.send(event).await)
}

/// Reads one output's FLV as it comes, tag by tag.
async fn read_output(output: usize, mut socket: TcpStream, tx: mpsc::Sender<Read>) {
    let _ = socket.set_nodelay(true);
    let mut reader = FlvReader::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(Read::Closed(output)).await;
                return;
            }
            Ok(_) => {}
            Err(err) => {
                let error = SourceError::io(format!("reading ffmpeg's output {output}"), err);
                let _ = tx.send(Read::Failed(error)).await;
                return;
            }
        }
        reader.feed(buf.split().freeze());
        loop {
            match reader.poll() {
                Ok(Some(tag)) => {
                    if tx.send(Read::Tag(output, tag)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let _ = tx.send(Read::Failed(SourceError::Flv(err))).await;
                    return;
                }
            }
        }
    }
}
