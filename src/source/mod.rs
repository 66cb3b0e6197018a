//! Where a stream's bytes come from: ffmpeg (test pattern, camera, file, URL), standard input,
//! an MP4 file read as it is (`file.rs`), the bundled sample clip, another server of ours (a relay), a folder an encoder writes to.
//! Every source hands the stream the same thing, init segments and fragments, and keeps its
//! timeline continuous when it restarts, so viewers play on.
//!
//! Sources know nothing of viewers, HTTP or the command line; they report through a channel
//! of [`SourceEvent`]s. What they share: the demuxers (`Demuxer`), one loop that reads a
//! pipe into them (`read_pipe`), and one supervisor that runs a source again after it fails
//! (`supervisor.rs`).

mod continuity;
mod error;
pub mod ffmpeg;
pub mod file;
pub mod flv_ingest;
mod folder;
pub mod publish;
mod relay;
mod sample;
mod spec;
mod stdin;
mod supervisor;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fmp4::{Fragment, InitSegment, Splitter, Unit};

pub use continuity::{Continuity, Policy};
pub use error::SourceError;
pub use ffmpeg::{EncoderOptions, Ingest};
pub use spec::{SourceSpec, SpecError};
pub use supervisor::Backoff;

/// What a source reports.
#[derive(Debug)]
pub enum SourceEvent {
    Init(Arc<InitSegment>),
    Fragment(Fragment),
    /// An init or fragment of a ladder's lower rung `rung` (1 and on; rung 0, the top, is the
    /// stream's own `Init` and `Fragment`).
    Rendition {
        rung: usize,
        unit: Unit,
    },
    /// A ladder's lower rung `rung` broke (a relay's connection for it), and is being tried
    /// again; the other rungs go on.
    RungDown {
        rung: usize,
        error: SourceError,
    },
    /// The source broke and will try again after `retry_in`.
    Restarting {
        error: SourceError,
        retry_in: Duration,
        cause: Restart,
    },
    /// Waiting for a publisher (a `publish` source between publishers).
    Waiting,
    /// The source will produce nothing more: its input is over (`None`), or a fault retrying
    /// cannot fix.
    Finished {
        error: Option<SourceError>,
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
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// Told to stop, or the stream is gone.
    Stopped,
    /// Worth another try.
    Failed(SourceError),
    /// No retry can help.
    Fatal(SourceError),
}

/// The sending half a source writes to, with the token that tells it to stop.
#[derive(Clone)]
pub struct SourceContext {
    pub stream: String,
    pub events: mpsc::Sender<SourceEvent>,
    pub cancel: CancellationToken,
    /// A private CA (PEM file) that `wss://` upstreams may be signed by.
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Where publishers come in, for a `publish` source.
    pub publish: Option<Arc<publish::PublishPoint>>,
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
        SourceSpec::Relay(url) => relay::run(url, encoder.renditions, ctx).await,
        SourceSpec::Dir(path) => folder::run(path, ctx).await,
        SourceSpec::Publish => match ctx.publish.clone() {
            Some(point) => publish::run(point, ctx).await,
            None => {
                let error = SourceError::Publisher("no place for publishers was made".into());
                ctx.send(SourceEvent::Finished { error: Some(error) }).await;
            }
        },
        SourceSpec::File(path) => file::run(path, encoder, ctx).await,
        other => ffmpeg::run(other, encoder, ctx).await,
    }
}

/// What turns a source's bytes into init segments and fragments: our splitter for fMP4, or
/// the FLV ingest that writes the fragments itself.
pub(crate) enum Demuxer {
    Fmp4(Box<Splitter>),
    Flv(Box<flv_ingest::FlvIngest>),
}

/// FLV streams start with these bytes (Adobe FLV spec, "The FLV header").
const FLV_SIGNATURE: &[u8] = b"FLV";

impl Demuxer {
    pub fn new(ingest: Ingest) -> Self {
        match ingest {
            Ingest::Auto => Demuxer::Flv(Box::default()),
            Ingest::Fmp4 => Demuxer::Fmp4(Box::default()),
        }
    }

    /// The demuxer for a stream that begins with `start`: FLV by its signature, else fMP4.
    pub fn for_start(start: &[u8]) -> Self {
        if start.starts_with(FLV_SIGNATURE) {
            Demuxer::Flv(Box::default())
        } else {
            Demuxer::Fmp4(Box::default())
        }
    }

    /// Takes a chunk; what it completes comes out. An error when the input is broken.
    pub fn feed(
        &mut self,
        chunk: bytes::Bytes,
        arrived: SystemTime,
    ) -> Result<Vec<Unit>, SourceError> {
        match self {
            Demuxer::Fmp4(splitter) => {
                splitter.feed(chunk);
                let mut units = Vec::new();
                loop {
                    match splitter.poll() {
                        Ok(Some(unit)) => units.push(unit),
                        Ok(None) => return Ok(units),
                        Err(err) => return Err(SourceError::Fmp4(err)),
                    }
                }
            }
            Demuxer::Flv(flv) => flv.feed(chunk, arrived),
        }
    }

    /// The input is over: an error if it ended inside a box or tag.
    pub fn finish(&mut self) -> Result<(), SourceError> {
        match self {
            Demuxer::Fmp4(splitter) => splitter.finish().map_err(SourceError::EndsInsideBox),
            Demuxer::Flv(flv) => flv.finish(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Demuxer::Fmp4(_) => "fMP4",
            Demuxer::Flv(_) => "FLV",
        }
    }
}

/// Feeds a chunk to `demuxer` and forwards what comes out through `continuity`. `Ok(false)`
/// when the stream is gone; an error when the input is broken.
pub(crate) async fn forward_chunk(
    demuxer: &mut Demuxer,
    chunk: bytes::Bytes,
    continuity: &mut Continuity,
    ctx: &SourceContext,
) -> Result<bool, SourceError> {
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
                Err(err) => return Err(SourceError::Timeline(err)),
            },
        };
        if !ctx.send(event).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How reading a pipe ([`read_pipe`]) ended.
#[derive(Debug)]
pub(crate) enum PipeEnd {
    /// Told to stop, or the stream is gone.
    Stopped,
    /// The pipe closed; whether it closed inside a box or tag is the demuxer's to say.
    Closed,
    Failed(SourceError),
}

/// Reads `pipe` (`what` names it in errors and logs) in chunks as they come, through
/// `demuxer` (chosen by the first bytes if `None`: FLV by its signature, else fMP4) and
/// `continuity` to the stream, until it closes, breaks or the source is told to stop.
pub(crate) async fn read_pipe(
    pipe: &mut (impl AsyncRead + Unpin),
    what: &str,
    demuxer: &mut Option<Demuxer>,
    continuity: &mut Continuity,
    ctx: &SourceContext,
) -> PipeEnd {
    /// Reads ask for at least this much room, in steps of `READ_CHUNK`.
    const MIN_ROOM: usize = 16 * 1024;
    const READ_CHUNK: usize = 64 * 1024;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < MIN_ROOM {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            read = pipe.read_buf(&mut buf) => read,
            _ = ctx.cancel.cancelled() => return PipeEnd::Stopped,
        };
        match read {
            Ok(0) => return PipeEnd::Closed,
            Ok(_) => {}
            Err(err) => return PipeEnd::Failed(SourceError::io(format!("reading {what}"), err)),
        }
        // Three bytes tell FLV from fMP4 (whose first box size starts with zeros).
        if demuxer.is_none() && buf.len() < FLV_SIGNATURE.len() {
            continue;
        }
        let demuxer = demuxer.get_or_insert_with(|| {
            let chosen = Demuxer::for_start(&buf);
            tracing::info!(stream = %ctx.stream, "{what} carries {}", chosen.name());
            chosen
        });
        match forward_chunk(demuxer, buf.split().freeze(), continuity, ctx).await {
            Ok(true) => {}
            Ok(false) => return PipeEnd::Stopped,
            Err(err) => return PipeEnd::Failed(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demuxers_say_what_broke_as_a_kind() {
        // A box that claims 4 bytes, below its own 8-byte header.
        let mut fmp4 = Demuxer::for_start(b"\0\0\0\x04moof");
        assert!(matches!(fmp4, Demuxer::Fmp4(_)));
        let err = fmp4
            .feed(
                bytes::Bytes::from_static(b"\0\0\0\x04moof"),
                SystemTime::now(),
            )
            .expect_err("an impossible box size");
        assert!(
            matches!(&err, SourceError::Fmp4(e) if e.kind == crate::fmp4::ErrorKind::BadSize { size: 4 }),
            "{err}"
        );

        let mut cut = Demuxer::new(Ingest::Fmp4);
        let units = cut
            .feed(
                bytes::Bytes::from_static(b"\0\0\0\x10ftyp"),
                SystemTime::now(),
            )
            .expect("half a box is not an error yet");
        assert!(units.is_empty());
        assert!(matches!(cut.finish(), Err(SourceError::EndsInsideBox(_))));

        let mut flv = Demuxer::for_start(b"FLV");
        assert!(matches!(flv, Demuxer::Flv(_)));
        let err = flv
            .feed(
                bytes::Bytes::from_static(b"FLV\x02\x05\0\0\0\x09\0\0\0\0"),
                SystemTime::now(),
            )
            .expect_err("FLV version 2");
        assert!(
            matches!(err, SourceError::Flv(crate::flv::Error::Version(2))),
            "{err}"
        );
    }
}
