//! The `stdin` source: an fMP4 byte stream on standard input, from any encoder, no ffmpeg
//! started. When the input ends, so does the stream.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::{Continuity, SourceContext, SourceEvent, forward_units};
use crate::fmp4::Splitter;

/// FLV files start with these bytes (Adobe FLV spec, "The FLV header").
const FLV_SIGNATURE: &[u8] = b"FLV";

pub async fn run(ctx: SourceContext) {
    let mut stdin = tokio::io::stdin();
    let mut splitter = Splitter::default();
    let mut continuity = Continuity::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut first = true;
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
                break splitter
                    .finish()
                    .err()
                    .map(|e| format!("standard input ended inside a box: {e}"));
            }
            Ok(_) => {
                if first {
                    first = false;
                    if buf.starts_with(FLV_SIGNATURE) {
                        break Some(
                            "FLV on standard input is not read yet; pipe fragmented MP4 \
                             (ffmpeg ... -f mp4 -movflags empty_moov+default_base_moof+frag_every_frame -)"
                                .into(),
                        );
                    }
                }
                splitter.feed(buf.split().freeze());
                match forward_units(&mut splitter, &mut continuity, &ctx).await {
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
