//! The `SOURCE` part of `--stream NAME=SOURCE`, parsed and checked before anything starts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a stream comes from (see SPEC.md, "Sources").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// ffmpeg's lavfi test pattern with a sine tone.
    TestSrc,
    /// The platform camera, optionally a named device.
    Webcam(Option<String>),
    /// A media file, looped in real time.
    File(PathBuf),
    /// Anything ffmpeg reads from the network.
    Url(String),
    /// fMP4 on standard input.
    Stdin,
    /// The clip bundled in the binary, looped.
    Sample,
    /// Another websocketlivestream server's stream.
    Relay(String),
    /// A folder an external encoder writes fragments or segments to.
    Dir(PathBuf),
    /// Whoever publishes to the stream (`PUT`/`POST /publish/NAME`).
    Publish,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty source")]
    Empty,
    #[error("no such file: {0}")]
    MissingFile(String),
    #[error("unsupported URL scheme in {0:?} (use rtsp, rtmp, srt, http, https or ws)")]
    UnknownScheme(String),
}

impl SourceSpec {
    /// Whether this source runs ffmpeg (a file may not: `file::route` decides when it starts).
    pub fn needs_ffmpeg(&self) -> bool {
        matches!(
            self,
            SourceSpec::TestSrc | SourceSpec::Webcam(_) | SourceSpec::File(_) | SourceSpec::Url(_)
        )
    }
}

impl FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        match s {
            "testsrc" => return Ok(SourceSpec::TestSrc),
            "webcam" => return Ok(SourceSpec::Webcam(None)),
            "stdin" | "-" => return Ok(SourceSpec::Stdin),
            "sample" => return Ok(SourceSpec::Sample),
            "publish" => return Ok(SourceSpec::Publish),
            _ => {}
        }
        if let Some(device) = s.strip_prefix("webcam:") {
            return Ok(SourceSpec::Webcam(Some(device.to_string())));
        }
        if let Some(path) = s.strip_prefix("dir:") {
            let path = PathBuf::from(path);
            if !path.is_dir() {
                return Err(SpecError::MissingFile(path.display().to_string()));
            }
            return Ok(SourceSpec::Dir(path));
        }
        if s.starts_with("ws://") || s.starts_with("wss://") {
            return Ok(SourceSpec::Relay(s.to_string()));
        }
        for scheme in [
            "rtsp://", "rtsps://", "rtmp://", "rtmps://", "srt://", "http://", "https://",
            "udp://", "rtp://",
        ] {
            if s.starts_with(scheme) {
                return Ok(SourceSpec::Url(s.to_string()));
            }
        }
        let path = s.strip_prefix("file:").unwrap_or(s);
        if path.contains("://") {
            return Err(SpecError::UnknownScheme(s.to_string()));
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(SpecError::MissingFile(path.display().to_string()));
        }
        Ok(SourceSpec::File(path))
    }
}

/// A URL as it may be shown (the API, logs): a password in it and the value of a `token=`
/// parameter are replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            out.replace_range(start..scheme_end + 3 + at, "***");
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("token", _)) => "token=***".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::TestSrc => f.write_str("testsrc"),
            SourceSpec::Webcam(None) => f.write_str("webcam"),
            SourceSpec::Webcam(Some(device)) => write!(f, "webcam:{device}"),
            SourceSpec::File(path) => write!(f, "file:{}", path.display()),
            SourceSpec::Url(url) | SourceSpec::Relay(url) => f.write_str(&redact(url)),
            SourceSpec::Stdin => f.write_str("stdin"),
            SourceSpec::Sample => f.write_str("sample"),
            SourceSpec::Dir(path) => write!(f, "dir:{}", path.display()),
            SourceSpec::Publish => f.write_str("publish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_hide_passwords_and_tokens() {
        assert_eq!(
            redact("wss://origin:8443/ws/live?token=abc.def&x=1"),
            "wss://origin:8443/ws/live?token=***&x=1"
        );
        assert_eq!(
            redact("rtsp://admin:hunter2@cam.local/stream"),
            "rtsp://admin:***@cam.local/stream"
        );
        assert_eq!(
            redact("ws://origin:8080/ws/live"),
            "ws://origin:8080/ws/live"
        );
        assert_eq!(
            SourceSpec::Relay("ws://o/ws/a?token=t".into()).to_string(),
            "ws://o/ws/a?token=***"
        );
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("testsrc".parse(), Ok(SourceSpec::TestSrc));
        assert_eq!("webcam".parse(), Ok(SourceSpec::Webcam(None)));
        assert_eq!(
            "webcam:/dev/video2".parse(),
            Ok(SourceSpec::Webcam(Some("/dev/video2".into())))
        );
        assert_eq!("stdin".parse(), Ok(SourceSpec::Stdin));
        assert_eq!("sample".parse(), Ok(SourceSpec::Sample));
        assert_eq!(
            "rtsp://cam/stream".parse(),
            Ok(SourceSpec::Url("rtsp://cam/stream".into()))
        );
        assert_eq!(
            "ws://origin:8080/ws/live".parse(),
            Ok(SourceSpec::Relay("ws://origin:8080/ws/live".into()))
        );
        let manifest = env!("CARGO_MANIFEST_DIR");
        let cargo = format!("{manifest}/Cargo.toml");
        assert_eq!(
            format!("file:{cargo}").parse(),
            Ok(SourceSpec::File(cargo.clone().into()))
        );
        assert_eq!(cargo.parse(), Ok(SourceSpec::File(cargo.clone().into())));
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert_eq!(
            "/no/such/file.mp4".parse::<SourceSpec>(),
            Err(SpecError::MissingFile("/no/such/file.mp4".into()))
        );
        assert_eq!(
            "gopher://x".parse::<SourceSpec>(),
            Err(SpecError::UnknownScheme("gopher://x".into()))
        );
        assert_eq!("  ".parse::<SourceSpec>(), Err(SpecError::Empty));
    }
}
