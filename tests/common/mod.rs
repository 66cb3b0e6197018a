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
    have_tool_with(tool, "-version")
}

/// Like [`have_tool`], for tools that print their version with another flag.
pub fn have_tool_with(tool: &str, version_flag: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_flag)
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

/// The folder of the Node.js scripts and their npm packages.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Node.js, with every npm package that `tests/browser/package.json` names installed (by
/// `npm ci`, once per test binary, when one is missing). In CI a failure to get them fails;
/// elsewhere a missing Node.js skips the test loudly.
pub fn node_modules_ready() -> bool {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    if !have_tool_with("node", "--version") {
        return false;
    }
    let ready = READY.get_or_init(|| {
        let dir = browser_dir();
        let manifest = std::fs::read_to_string(dir.join("package.json"))
            .map_err(|e| format!("reading tests/browser/package.json: {e}"))?;
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).map_err(|e| format!("package.json: {e}"))?;
        let names: Vec<String> = manifest["dependencies"]
            .as_object()
            .map(|deps| deps.keys().cloned().collect())
            .unwrap_or_default();
        if names.iter().all(|name| {
            dir.join("node_modules")
                .join(name)
                .join("package.json")
                .exists()
        }) {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("running npm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match ready {
        Ok(()) => true,
        Err(e) => panic!("{e}"),
    }
}

/// The value of the Prometheus series `series` (name and labels, as written) in `text`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// ffprobe's CSV for `path` with these options; panics with its errors if it fails.
pub fn ffprobe_csv(path: &Path, options: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(options)
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Frames per stream as ffprobe decodes them: `(codec_type, frames)` in stream order.
pub fn ffprobe_frames(path: &Path) -> Vec<(String, u64)> {
    let csv = ffprobe_csv(
        path,
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
        ],
    );
    csv.lines()
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

/// Per stream as ffprobe reads `path`: its codec_type and, for each packet, the `fields` asked
/// for (ffprobe packet entries, such as `pts,dts,size,flags`), as text.
pub fn ffprobe_packets(path: &Path, fields: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut streams: Vec<(String, Vec<Vec<String>>)> =
        ffprobe_csv(path, &["-show_entries", "stream=codec_type"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|kind| (kind.trim().to_string(), Vec::new()))
            .collect();
    let entries = format!("packet=stream_index,{fields}");
    // A packet with side data (AAC's skipped priming samples) is followed by an empty line.
    for line in ffprobe_csv(path, &["-show_entries", &entries])
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let mut values = line.split(',').map(|v| v.trim().to_string());
        let index: usize = values
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("an ffprobe packet line without a stream: {line}"));
        streams
            .get_mut(index)
            .unwrap_or_else(|| panic!("ffprobe names stream {index} it did not list"))
            .1
            .push(values.collect());
    }
    streams
}

/// A few seconds of the 320x180 test pattern in H.264 (x264 ultrafast, zerolatency, a key
/// frame a second, no B-frames) and, with `audio`, a sine in AAC from a second lavfi input,
/// written by ffmpeg with the `output` options to a fresh file `name`.
pub fn testsrc_clip(name: &str, secs: u32, audio: bool, output: &[&str]) -> PathBuf {
    let path = server::temp_dir("clip").join(name);
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=30"]);
    if audio {
        command.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    command
        .args(["-t", &secs.to_string(), "-map", "0:v"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "30", "-bf", "0"]);
    if audio {
        command.args(["-map", "1:a", "-c:a", "aac", "-b:a", "64k"]);
    }
    let status = command
        .args(output)
        .arg(&path)
        .status()
        .expect("running ffmpeg");
    assert!(status.success(), "ffmpeg could not write {name}");
    path
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

pub mod server;
pub mod ws;

/// One AdaptationSet of an MPD, as the tests need it.
#[derive(Debug, Clone)]
pub struct MpdSet {
    pub content_type: String,
    pub representation: String,
    pub codecs: String,
    pub timescale: u64,
    pub start_number: u64,
    pub presentation_time_offset: u64,
    pub initialization: String,
    pub media: String,
    /// (t, d) per segment, `r` expanded.
    pub timeline: Vec<(u64, u64)>,
}

fn attr(text: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = text.find(&key)? + key.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_string())
}

/// A small MPD reader: enough to fetch what an MPD lists.
pub fn parse_mpd(text: &str) -> Vec<MpdSet> {
    text.split("<AdaptationSet")
        .skip(1)
        .map(|set| {
            let set = set.split("</AdaptationSet>").next().unwrap_or_default();
            let rep = set.split("<Representation").nth(1).unwrap_or_default();
            let template = set.split("<SegmentTemplate").nth(1).unwrap_or_default();
            let mut timeline = Vec::new();
            let mut next = 0u64;
            for s in set.split("<S ").skip(1) {
                let s = s.split("/>").next().unwrap_or_default();
                let s = format!(" {s}");
                let t = attr(&s, "t").and_then(|v| v.parse().ok()).unwrap_or(next);
                let d: u64 = attr(&s, "d").and_then(|v| v.parse().ok()).expect("S@d");
                let r: u64 = attr(&s, "r").and_then(|v| v.parse().ok()).unwrap_or(0);
                for i in 0..=r {
                    timeline.push((t + i * d, d));
                }
                next = t + (r + 1) * d;
            }
            MpdSet {
                content_type: attr(set, "contentType").unwrap_or_default(),
                representation: attr(rep, "id").unwrap_or_default(),
                codecs: attr(rep, "codecs").unwrap_or_default(),
                timescale: attr(template, "timescale")
                    .and_then(|v| v.parse().ok())
                    .expect("timescale"),
                start_number: attr(template, "startNumber")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                presentation_time_offset: attr(template, "presentationTimeOffset")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                initialization: attr(template, "initialization").expect("initialization"),
                media: attr(template, "media").expect("media"),
                timeline,
            }
        })
        .collect()
}

/// Fills a DASH template.
pub fn fill_template(template: &str, representation: &str, number: u64) -> String {
    template
        .replace("$RepresentationID$", representation)
        .replace("$Number$", &number.to_string())
}

/// Writes bytes to a temp file named `name` and returns its path.
pub fn temp_media(name: &str, parts: &[&[u8]]) -> PathBuf {
    let dir = server::temp_dir("media");
    let path = dir.join(name);
    let mut all = Vec::new();
    for part in parts {
        all.extend_from_slice(part);
    }
    std::fs::write(&path, all).expect("writing media");
    path
}

/// Samples of each track in fMP4 bytes, by our own parse: `(track kind, samples)`.
pub fn sample_counts(data: &Bytes) -> Vec<(websocketlivestream::fmp4::TrackKind, u64)> {
    let (init, fragments) = split_whole(data);
    init.tracks
        .iter()
        .map(|t| {
            let n = fragments
                .iter()
                .filter_map(|f| f.run(t.id))
                .map(|r| u64::from(r.sample_count))
                .sum();
            (t.kind, n)
        })
        .collect()
}
