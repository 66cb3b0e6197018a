//! `package INPUT --out DIR`: a fragmented MP4 file into DASH segments with a static MPD (and
//! an HLS playlist), by the same splitter, segmenter and manifests as the live server.
//!
//! ```text
//! DIR/init.mp4  DIR/{n}.m4s          all tracks together (HLS, ffmpeg, most players)
//! DIR/{track}/init.mp4  {n}.m4s      one track each (the MPD: DASH-IF IOP wants one
//!                                    component per Representation)
//! DIR/manifest.mpd  DIR/index.m3u8
//! ```

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::fmp4::{self, Splitter, Unit};
use crate::manifest::{dash, hls};
use crate::stream::manifests::{self, HlsUris};
use crate::stream::{HubConfig, Status, Window, concat, unix_millis};

/// Why `package` could not write its output.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("--segment-duration {0} is out of range (0.5 to 30 seconds)")]
    SegmentDuration(f64),
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Fmp4 {
        path: PathBuf,
        #[source]
        source: fmp4::Error,
    },
    #[error("{} holds more than one init segment; package one stream at a time", .0.display())]
    SeveralInits(PathBuf),
    #[error("{}: the init segment has no tracks", .0.display())]
    NoTracks(PathBuf),
    #[error("{} has no init segment", .0.display())]
    NoInit(PathBuf),
    #[error("{} has no media fragments", .0.display())]
    NoMedia(PathBuf),
    #[error("no complete segment to describe")]
    NothingToDescribe,
}

/// What `package` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Packaged {
    pub segments: usize,
    pub duration_secs: f64,
    pub tracks: usize,
}

pub fn package(input: &Path, out: &Path, segment_secs: f64) -> Result<Packaged, PackageError> {
    if !(0.5..=30.0).contains(&segment_secs) {
        return Err(PackageError::SegmentDuration(segment_secs));
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { what, path, source }
    };
    let broken = |source| PackageError::Fmp4 {
        path: input.to_path_buf(),
        source,
    };
    let data = std::fs::read(input).map_err(io("read", input))?;
    let config = HubConfig {
        segment_secs,
        window: usize::MAX,
        ..HubConfig::default()
    };
    let mut window = Window::new(config.cutting(), 1);
    let mut splitter = Splitter::default();
    splitter.feed(Bytes::from(data));
    let mut inits = 0;
    loop {
        match splitter.poll() {
            Ok(Some(Unit::Init(init))) => {
                inits += 1;
                if inits > 1 {
                    return Err(PackageError::SeveralInits(input.to_path_buf()));
                }
                if window.set_init(init).is_none() {
                    return Err(PackageError::NoTracks(input.to_path_buf()));
                }
            }
            Ok(Some(Unit::Fragment(fragment))) => {
                // A file has no arrival times: every fragment counts as received now.
                window.push(fragment, Instant::now(), unix_millis(SystemTime::now()));
            }
            Ok(None) => break,
            Err(err) => return Err(broken(err)),
        }
    }
    splitter.finish().map_err(broken)?;
    window.finish();
    let snapshot = window.snapshot(Status::Ended);
    let init = snapshot
        .init
        .as_ref()
        .ok_or_else(|| PackageError::NoInit(input.to_path_buf()))?;
    if snapshot.segments.is_empty() {
        return Err(PackageError::NoMedia(input.to_path_buf()));
    }

    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).map_err(io("write", path));
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    write(&out.join("init.mp4"), &init.segment.bytes)?;
    for (track, bytes) in &init.track_inits {
        let dir = out.join(track.to_string());
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        write(&dir.join("init.mp4"), bytes)?;
    }
    for segment in &snapshot.segments {
        let name = format!("{}.m4s", segment.number);
        write(&out.join(&name), &concat(segment.chunks()))?;
        for (track, _) in &init.track_inits {
            let bytes = concat(segment.track_chunks(*track));
            write(&out.join(track.to_string()).join(&name), &bytes)?;
        }
    }
    let mpd = manifests::dash_mpd(&snapshot, &config, Vec::new(), 0, false)
        .ok_or(PackageError::NothingToDescribe)?;
    write(&out.join("manifest.mpd"), dash::render(&mpd).as_bytes())?;
    let uris = HlsUris {
        map: "init.mp4",
        segment_prefix: "",
        part_prefix: "",
        query: "",
    };
    let playlist = manifests::hls_media(&snapshot, &config, &uris, hls::PlaylistKind::Finished)
        .ok_or(PackageError::NothingToDescribe)?;
    write(&out.join("index.m3u8"), hls::media(&playlist).as_bytes())?;
    Ok(Packaged {
        segments: snapshot.segments.len(),
        duration_secs: snapshot.segments.iter().map(|s| s.duration_secs()).sum(),
        tracks: init.segment.tracks.len(),
    })
}
