//! `package INPUT --out DIR`: a fragmented MP4 file into DASH segments with a static MPD (and
//! an HLS playlist), by the same splitter, segmenter and manifests as the live server.
//!
//! ```text
//! DIR/init.mp4  DIR/{n}.m4s          all tracks together (HLS, ffmpeg, most players)
//! DIR/{track}/init.mp4  {n}.m4s      one track each (the MPD: DASH-IF IOP wants one
//!                                    component per Representation)
//! DIR/manifest.mpd  DIR/index.m3u8
//! ```

use std::path::Path;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::fmp4::{Splitter, Unit};
use crate::manifest::{dash, hls};
use crate::stream::manifests::{self, HlsUris};
use crate::stream::{HubConfig, Status, Window, concat, unix_millis};

/// What `package` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Packaged {
    pub segments: usize,
    pub duration_secs: f64,
    pub tracks: usize,
}

pub fn package(input: &Path, out: &Path, segment_secs: f64) -> Result<Packaged, String> {
    if !(0.5..=30.0).contains(&segment_secs) {
        return Err(format!(
            "--segment-duration {segment_secs} is out of range (0.5 to 30 seconds)"
        ));
    }
    let data = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
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
                    return Err(format!(
                        "{} holds more than one init segment; package one stream at a time",
                        input.display()
                    ));
                }
                if window.set_init(init).is_none() {
                    return Err(format!(
                        "{}: the init segment has no tracks",
                        input.display()
                    ));
                }
            }
            Ok(Some(Unit::Fragment(fragment))) => {
                // A file has no arrival times: every fragment counts as received now.
                window.push(fragment, Instant::now(), unix_millis(SystemTime::now()));
            }
            Ok(None) => break,
            Err(err) => return Err(format!("{}: {err}", input.display())),
        }
    }
    splitter
        .finish()
        .map_err(|err| format!("{}: {err}", input.display()))?;
    window.finish();
    let snapshot = window.snapshot(Status::Ended);
    let init = snapshot
        .init
        .as_ref()
        .ok_or_else(|| format!("{} has no init segment", input.display()))?;
    if snapshot.segments.is_empty() {
        return Err(format!("{} has no media fragments", input.display()));
    }

    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write(&out.join("init.mp4"), &init.segment.bytes)?;
    for (track, bytes) in &init.track_inits {
        let dir = out.join(track.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
        .ok_or("no complete segment to describe")?;
    write(&out.join("manifest.mpd"), dash::render(&mpd).as_bytes())?;
    let uris = HlsUris {
        map: "init.mp4",
        segment_prefix: "",
        part_prefix: "",
    };
    let playlist = manifests::hls_media(&snapshot, &config, &uris, hls::PlaylistKind::Finished)
        .ok_or("no complete segment to list")?;
    write(&out.join("index.m3u8"), hls::media(&playlist).as_bytes())?;
    Ok(Packaged {
        segments: snapshot.segments.len(),
        duration_secs: snapshot.segments.iter().map(|s| s.duration_secs()).sum(),
        tracks: init.segment.tracks.len(),
    })
}
