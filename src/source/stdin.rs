//! The `stdin` source: a byte stream on standard input from any encoder, no ffmpeg started:
//! fragmented MP4 for our splitter, or FLV (each frame as it is encoded, no wait) for the FLV
//! ingest, told apart by the first bytes. When the input ends, so does the stream.

use super::{Continuity, PipeEnd, SourceContext, SourceEvent, read_pipe};

pub async fn run(ctx: SourceContext) {
    let mut demuxer = None;
    let mut continuity = Continuity::default();
    let end = read_pipe(
        &mut tokio::io::stdin(),
        "standard input",
        &mut demuxer,
        &mut continuity,
        &ctx,
    )
    .await;
    let error = match end {
        PipeEnd::Stopped => return,
        PipeEnd::Failed(error) => Some(error),
        PipeEnd::Closed => demuxer.as_mut().and_then(|d| d.finish().err()),
    };
    match &error {
        Some(error) => tracing::error!(stream = %ctx.stream, "stdin source stopped: {error}"),
        None => tracing::info!(stream = %ctx.stream, "standard input ended"),
    }
    ctx.send(SourceEvent::Finished { error }).await;
}
