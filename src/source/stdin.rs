//! The `stdin` source: a byte stream on standard input from any encoder, no ffmpeg started:
//! fragmented MP4 for our splitter, or FLV (each frame as it is encoded, no wait) for the FLV
//! ingest, told apart by the first bytes. When the input ends, so does the stream.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::{Continuity, Demuxer, SourceContext, SourceEvent, forward_chunk};

pub async fn run(ctx: SourceContext) {
    let mut stdin = tokio::io::stdin();
    let mut demuxer: Option<Demuxer> = None;
    let mut continuity = Continuity::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            read = stdin.read_buf(&mut buf) => read,
            _ = ctx.cancel.cancelled() => return,
        };
        match read {
            Ok(0) => {
                break match demuxer.as_mut() {
                    Some(d) => d.finish().err(),
                    None => None,
                };
            }
            Ok(_) => {
                // Three bytes tell FLV from fMP4 (whose first box size starts with zeros).
                if demuxer.is_none() && buf.len() < 3 {
                    continue;
                }
                let demuxer = demuxer.get_or_insert_with(|| {
                    let chosen = Demuxer::for_start(&buf);
                    let kind = if matches!(chosen, Demuxer::Flv(_)) {
                        "FLV"
                    } else {
                        "fMP4"
                    };
                    tracing::info!(stream = %ctx.stream, "standard input carries {kind}");
                    chosen
                });
                match forward_chunk(demuxer, buf.split().freeze(), &mut continuity, &ctx).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(reason) => break Some(reason),
                }
            }
            Err(err) => break Some(format!("reading standard input: {err}")),
        }
    };
    match &reason {
        Some(reason) => tracing::error!(stream = %ctx.stream, "stdin source stopped: {reason}"),
        None => tracing::info!(stream = %ctx.stream, "standard input ended"),
    }
    ctx.send(SourceEvent::Finished { reason }).await;
}
