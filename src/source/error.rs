//! What can go wrong with a source, as one type: which part failed and on what (the file, the
//! folder, the upstream URL, the program), wrapping the box code's and the FLV reader's own
//! errors (kind, byte offset, box path) unchanged. The stream's name is in the log span of
//! every source, so it is not repeated here.

use std::path::PathBuf;

use crate::{flv, fmp4};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The fMP4 bytes are broken (the splitter's error).
    #[error("broken fMP4 input: {0}")]
    Fmp4(#[source] fmp4::Error),
    /// The input ended inside a box.
    #[error("the input ended inside a box: {0}")]
    EndsInsideBox(#[source] fmp4::Error),
    /// The FLV bytes are broken, or end inside a tag.
    #[error("broken FLV input: {0}")]
    Flv(#[from] flv::Error),
    /// FLV carries a codec the zero-wait ingest does not write fragments for.
    #[error("FLV {what} in {found}: the FLV ingest carries {expected} (fMP4 input carries more)")]
    FlvCodec {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    /// A codec configuration (an FLV sequence header) that cannot be used.
    #[error("FLV {what}: {why}")]
    CodecConfig { what: &'static str, why: String },
    /// What we wrote from the input does not read back: a bug of ours, said plainly.
    #[error("our own {what} does not read back: {source}")]
    OwnOutput {
        what: &'static str,
        #[source]
        source: fmp4::Error,
    },
    /// The rewriter cannot move the timeline on (a time out of range).
    #[error("cannot continue the timeline: {0}")]
    Timeline(#[source] fmp4::Error),
    /// Reading or starting something failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// No ffmpeg to run.
    #[error("{}", super::ffmpeg::FFMPEG_MISSING)]
    FfmpegMissing,
    /// ffmpeg ended (by itself, or its output ended); its last warnings say why.
    #[error("ffmpeg exited ({status}){}", detail_suffix(.detail))]
    FfmpegExited { status: String, detail: String },
    /// The folder of a `dir:` source cannot be watched.
    #[error("cannot watch {}: {source}", .dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the folder watcher stopped")]
    WatcherStopped,
    /// A relay's upstream cannot be reached, or its connection broke or closed.
    #[error("{0}")]
    Upstream(String),
    /// A relay's upstream broke the protocol and was cut off.
    #[error("cut off: {0}")]
    CutOff(String),
    /// A publisher that went, was cut off, or sent nothing usable.
    #[error("{0}")]
    Publisher(String),
    /// A file the `file:` source reads itself cannot be read.
    #[error("{0}")]
    Package(#[source] crate::package::PackageError),
    /// A source whose media cannot be used at all (the bundled sample).
    #[error("{0}")]
    Unusable(&'static str),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl SourceError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SourceError::Io {
            what: what.into(),
            source,
        }
    }
}
