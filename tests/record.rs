//! `--record DIR`: what the server keeps on disk plays with ffmpeg after the server is gone,
//! whether it stopped cleanly, was killed, or rotated its oldest segments away; a folder that
//! cannot be written never costs a live viewer.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::TrackKind;

/// The `.m4s` files in `dir`, by number.
fn segment_files(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".m4s")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    numbers.sort_unstable();
    numbers
}

/// The segment URIs a playlist lists, as numbers.
fn listed(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_suffix(".m4s")?.parse().ok())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `done` holds, or panics with `what` and the server's log.
fn wait_for(server: &TestServer, secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Video samples in the init and segments the playlist at `dir` lists, by our own reading.
fn video_samples_listed(dir: &Path, numbers: &[u64]) -> u64 {
    let mut all = std::fs::read(dir.join("init.mp4")).expect("init.mp4");
    for n in numbers {
        all.extend(std::fs::read(dir.join(format!("{n}.m4s"))).expect("a listed segment"));
    }
    sample_counts(&Bytes::from(all))
        .into_iter()
        .find(|(kind, _)| *kind == TrackKind::Video)
        .map_or(0, |(_, n)| n)
}

fn video_frames(probed: &[(String, u64)]) -> u64 {
    probed
        .iter()
        .find(|(kind, _)| kind == "video")
        .map_or(0, |(_, n)| *n)
}

/// A few seconds of 320x180 video and AAC as ffmpeg writes fMP4 for us, with its frame count.
fn input_clip(secs: u32) -> (PathBuf, u64) {
    let path = testsrc_clip(
        "clip.mp4",
        secs,
        true,
        &[
            "-f",
            "mp4",
            "-movflags",
            "empty_moov+default_base_moof+frag_every_frame",
            "-write_prft",
            "wallclock",
        ],
    );
    let frames = video_frames(&ffprobe_frames(&path));
    assert!(
        frames >= u64::from(secs) * 29,
        "{frames} frames in the clip"
    );
    (path, frames)
}

#[tokio::test]
async fn a_recording_plays_after_the_stream_ends_with_every_frame_it_was_fed() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let (clip, frames) = input_clip(6);
    let record = temp_dir("record");
    let (mut server, mut stdin) = TestServer::start_with_stdin(&[
        "--stream",
        "cam=stdin",
        "--record",
        record.to_str().expect("utf-8"),
        "--segment-duration",
        "1",
        "--window",
        "100",
    ]);
    let dir = record.join("cam");
    let bytes = std::fs::read(&clip).expect("clip");
    // A viewer watches while it is recorded, to see the live side untouched.
    let mut viewer = ws::connect(&server.ws_url("/ws/cam")).await;
    stdin.write_all(&bytes).expect("feeding stdin");
    drop(stdin);
    let (_, _) = ws::expect_init(&mut viewer).await;
    let mut got_media = false;
    while let Some(msg) = ws::next(&mut viewer, Duration::from_secs(10)).await {
        match msg {
            Msg::Binary(_) => got_media = true,
            Msg::Close(code) => {
                assert_eq!(code, Some(1000));
                break;
            }
            Msg::Text(_) => {}
        }
    }
    assert!(got_media, "the live viewer got no media");
    wait_for(&server, 20, "the finished playlist", || {
        read(&dir.join("index.m3u8")).contains("#EXT-X-ENDLIST")
    });

    let playlist = read(&dir.join("index.m3u8"));
    for needle in [
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(playlist.contains(needle), "{needle} missing:\n{playlist}");
    }
    assert!(!playlist.contains("#EXT-X-PART"), "{playlist}");
    let numbers = listed(&playlist);
    assert_eq!(numbers, segment_files(&dir), "the playlist lists the files");
    let mpd = read(&dir.join("manifest.mpd"));
    assert!(mpd.contains("type=\"static\""), "{mpd}");
    assert!(mpd.contains("mediaPresentationDuration="), "{mpd}");
    server.interrupt();

    // After the server: ffmpeg plays both manifests, every frame it was fed.
    let from_playlist = ffprobe_frames(&dir.join("index.m3u8"));
    let from_mpd = ffprobe_frames(&dir.join("manifest.mpd"));
    eprintln!(
        "fed {frames} video frames in {} segments; ffprobe: playlist {from_playlist:?}, MPD {from_mpd:?}",
        numbers.len()
    );
    assert_eq!(video_frames(&from_playlist), frames, "{from_playlist:?}");
    assert_eq!(video_frames(&from_mpd), frames, "{from_mpd:?}");
    assert!(
        from_playlist.iter().any(|(k, n)| k == "audio" && *n > 0),
        "{from_playlist:?}"
    );
    assert_eq!(video_samples_listed(&dir, &numbers), frames);
    if let Some(errors) = ffmpeg_decode_errors(&dir.join("index.m3u8")) {
        panic!("the recording does not decode cleanly: {errors}");
    }
}

/// A server recording the small test pattern `cam` in 1 s segments, and the stream's folder.
fn recording_testsrc(name: &str) -> (TestServer, PathBuf) {
    let record = temp_dir(name);
    let config = temp_file(&format!("{name}.toml"), &small_testsrc_config("cam"));
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--record",
        record.to_str().expect("utf-8"),
        "--segment-duration",
        "1",
    ]);
    (server, record.join("cam"))
}

#[test]
fn a_recording_cut_off_by_sigkill_plays_up_to_its_last_complete_segment() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let (mut server, dir) = recording_testsrc("killed");
    wait_for(&server, 30, "three recorded segments", || {
        listed(&read(&dir.join("index.m3u8"))).len() >= 3
    });
    server.kill();

    let playlist = read(&dir.join("index.m3u8"));
    assert!(
        !playlist.contains("#EXT-X-ENDLIST") && playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT"),
        "a killed recording is still an event:\n{playlist}"
    );
    // The manifests name only whole files; a segment in progress at the kill is not listed.
    let mpd = read(&dir.join("manifest.mpd"));
    let set = &parse_mpd(&mpd)[0];
    let numbers: Vec<u64> = (0..set.timeline.len() as u64)
        .map(|i| set.start_number + i)
        .collect();
    assert!(numbers.len() >= 3, "{mpd}");
    for n in &numbers {
        assert!(
            dir.join(format!("{n}.m4s")).is_file(),
            "{n}.m4s listed, not on disk"
        );
    }
    let ours = video_samples_listed(&dir, &numbers);
    let probed = ffprobe_frames(&dir.join("manifest.mpd"));
    eprintln!(
        "killed after {} segments: {ours} video samples listed, ffprobe of the MPD {probed:?}",
        numbers.len()
    );
    assert_eq!(video_frames(&probed), ours, "{probed:?}");
    if let Some(errors) = ffmpeg_decode_errors(&dir.join("manifest.mpd")) {
        panic!("the killed recording does not decode cleanly: {errors}");
    }
}

#[test]
fn a_recording_rotates_its_oldest_segments_away_by_age() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let record = temp_dir("rotate");
    let config = temp_file(
        "rotate.toml",
        &format!(
            "record = \"{}\"\nrecord_max_age_secs = 2.5\nsegment_duration = 1.0\n{}",
            record.display(),
            small_testsrc_config("cam")
        ),
    );
    let mut server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let dir = record.join("cam");
    let mut first_seen = None;
    wait_for(&server, 40, "the oldest segments rotated away", || {
        let numbers = listed(&read(&dir.join("index.m3u8")));
        if first_seen.is_none() {
            first_seen = numbers.first().copied();
        }
        numbers.len() >= 2 && first_seen.is_some_and(|f| numbers[0] > f + 3)
    });
    server.interrupt();
    let playlist = read(&dir.join("index.m3u8"));
    let numbers = listed(&playlist);
    assert_eq!(
        numbers,
        segment_files(&dir),
        "the files are what the playlist lists"
    );
    assert!(
        (2..=5).contains(&numbers.len()),
        "about 2.5 s of 1 s segments kept: {numbers:?}"
    );
    assert!(
        !playlist.contains("PLAYLIST-TYPE:EVENT"),
        "a rotating playlist is no EVENT:\n{playlist}"
    );
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(
        playlist.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", numbers[0])),
        "{playlist}"
    );
    let probed = ffprobe_frames(&dir.join("index.m3u8"));
    assert_eq!(
        video_frames(&probed),
        video_samples_listed(&dir, &numbers),
        "{probed:?}"
    );
}

#[tokio::test]
async fn a_folder_that_breaks_is_logged_and_costs_no_viewer() {
    if !have_tool("ffmpeg") {
        return;
    }
    let (server, dir) = recording_testsrc("broken");
    wait_for(&server, 30, "a recorded segment", || {
        !segment_files(&dir).is_empty()
    });
    // The folder turns into a file: every write fails from now on (as root, too, which a
    // read-only folder would not stop).
    std::fs::remove_dir_all(&dir).expect("removing the folder");
    std::fs::write(&dir, b"not a folder").expect("a file in its place");
    let mut viewer = ws::connect(&server.ws_url("/ws/cam")).await;
    let (_, _) = ws::expect_init(&mut viewer).await;
    let started = Instant::now();
    let mut fragments = 0;
    while started.elapsed() < Duration::from_secs(3) {
        match ws::next(&mut viewer, Duration::from_secs(5)).await {
            Some(Msg::Binary(_)) => fragments += 1,
            Some(Msg::Text(_)) => {}
            other => panic!("the viewer was cut off: {other:?}\n{}", server.log()),
        }
    }
    assert!(fragments > 60, "{fragments} fragments in 3 s");
    wait_for(&server, 10, "the error in the log", || {
        server.log().contains("recording: cannot")
    });
}
