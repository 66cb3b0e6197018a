//! Helpers shared by the integration tests: fixtures, external tools, and splitting.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use websocketlivestream::fmp4::{Fragment, InitSegment, Splitter, Unit};

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Bytes {
    let path = fixture_path(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

/// The fragmented fixtures, made by `tests/fixtures/make.sh`.
pub const FRAGMENTED: &[&str] = &[
    "av-per-frame.mp4",
    "video-per-gop.mp4",
    "hevc.mp4",
    "audio-only.mp4",
];

/// Whether we run in CI, where a missing tool is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether `tool` can be run. In CI a missing tool fails the test; elsewhere the test is
/// skipped with a loud message.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        if in_ci() {
            panic!("{tool} is required in CI (CI is set) but was not found on PATH");
        }
        eprintln!("\n*** SKIPPING: {tool} not found on PATH; install it to run this test ***\n");
    }
    found
}

/// Frames per stream as ffprobe decodes them: `(codec_type, frames)` in stream order.
pub fn ffprobe_frames(path: &Path) -> Vec<(String, u64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split(',');
            let kind = fields.next().unwrap_or_default().to_string();
            let frames = fields
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("ffprobe line without a frame count: {line}"));
            (kind, frames)
        })
        .collect()
}

/// Decodes `path` fully with ffmpeg and returns stderr if it reported any error.
pub fn ffmpeg_decode_errors(path: &Path) -> Option<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() && stderr.trim().is_empty() {
        None
    } else {
        Some(stderr)
    }
}

/// Splits `data`, fed in chunks of the given sizes (cycled), into units.
pub fn split_chunked(data: &Bytes, chunk_sizes: &[usize]) -> Vec<Unit> {
    let mut splitter = Splitter::default();
    let mut units = Vec::new();
    let mut pos = 0;
    let mut sizes = chunk_sizes.iter().cycle();
    while pos < data.len() {
        let size = (*sizes.next().unwrap_or(&data.len())).max(1);
        let end = (pos + size).min(data.len());
        splitter.feed(data.slice(pos..end));
        pos = end;
        while let Some(unit) = splitter.poll().expect("fixture splits cleanly") {
            units.push(unit);
        }
    }
    splitter.finish().expect("fixture ends at a unit boundary");
    units
}

pub fn split_whole(data: &Bytes) -> (std::sync::Arc<InitSegment>, Vec<Fragment>) {
    let mut init = None;
    let mut fragments = Vec::new();
    for unit in split_chunked(data, &[data.len()]) {
        match unit {
            Unit::Init(i) => init = Some(i),
            Unit::Fragment(f) => fragments.push(f),
        }
    }
    (init.expect("an init segment"), fragments)
}
