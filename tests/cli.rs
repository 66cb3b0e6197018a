//! The command line as a user meets it: `package`, `probe`, and every way to get it wrong.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};

use common::server::{BIN, temp_dir};
use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running the binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn package_writes_segments_and_a_static_mpd_that_ffprobe_decodes() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let out_dir = temp_dir("package");
    let input = fixture_path("av-per-frame.mp4");
    let out = run(&[
        "package",
        input.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--segment-duration",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("wrote 2 segments"), "{said}");

    // init.mp4 and the numbered segments, joined, decode to every frame of the input.
    let mut joined = std::fs::read(out_dir.join("init.mp4")).expect("init.mp4");
    let mut number = 1;
    while let Ok(segment) = std::fs::read(out_dir.join(format!("{number}.m4s"))) {
        joined.extend_from_slice(&segment);
        number += 1;
    }
    assert_eq!(number - 1, 2, "two one-second segments from two seconds");
    let file = out_dir.join("joined.mp4");
    std::fs::write(&file, &joined).expect("write");
    let input_frames = ffprobe_frames(&input);
    let output_frames = ffprobe_frames(&file);
    eprintln!("package: input {input_frames:?}, output {output_frames:?}");
    assert_eq!(output_frames[0], input_frames[0], "video frames");
    if let Some(errors) = ffmpeg_decode_errors(&file) {
        panic!("packaged output does not decode: {errors}");
    }

    // The MPD is static, lists both tracks, and ffmpeg's own DASH reader plays it.
    let mpd = std::fs::read_to_string(out_dir.join("manifest.mpd")).expect("manifest.mpd");
    assert!(
        mpd.contains("type=\"static\"") && mpd.contains("mediaPresentationDuration="),
        "{mpd}"
    );
    let sets = parse_mpd(&mpd);
    assert_eq!(sets.len(), 2);
    assert!(
        sets.iter()
            .all(|s| s.timeline.len() == 2 && s.start_number == 1)
    );
    let via_mpd = ffprobe_frames(&out_dir.join("manifest.mpd"));
    eprintln!("package: via the MPD {via_mpd:?}");
    assert!(
        via_mpd.contains(&input_frames[0]),
        "video frames through the MPD: {via_mpd:?}"
    );
    let playlist = std::fs::read_to_string(out_dir.join("index.m3u8")).expect("index.m3u8");
    assert!(
        playlist.contains("#EXT-X-ENDLIST") && playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""),
        "{playlist}"
    );
}

#[test]
fn package_takes_a_progressive_mp4_and_refuses_one_without_media() {
    // plain.mp4: one second of 64x64 video, its samples listed in the moov (more in
    // tests/package_progressive.rs).
    let out_dir = temp_dir("package-plain");
    let out = run(&[
        "package",
        fixture_path("plain.mp4").to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wrote 1 segments"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Only an ftyp: nothing to package, said in one line.
    let empty = temp_dir("package-empty").join("ftyp-only.mp4");
    std::fs::write(&empty, b"\0\0\0\x10ftypisom\0\0\0\0").expect("write");
    let out = run(&[
        "package",
        empty.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no init segment"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn probe_prints_the_box_tree() {
    let out = run(&["probe", fixture_path("hevc.mp4").to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "ftyp size=",
        "hvc1 size=",
        "hvcC size=",
        "profile=1",
        "moof size=",
        "trun size=",
        // What package would cut, after the tree.
        "package --segment-duration 2:",
        "track 1 Video hvc1.",
        "key frames:",
        "segments: ",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // A progressive file: its tracks, key frames and segments from its sample tables.
    let out = run(&["probe", fixture_path("plain.mp4").to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("track 1 Video avc1.f4000a 64x64 timescale 10240 1.000 s")
            && text.contains("segments: 1"),
        "{text}"
    );
}

#[test]
fn mistakes_get_one_clear_line_and_a_failing_exit() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    for (args, expect) in [
        (vec!["--bogus"], "unexpected argument"),
        (vec!["--stream", "x=/no/such/file.mp4"], "no such file"),
        (
            vec!["--stream", "x=gopher://host"],
            "unsupported URL scheme",
        ),
        (vec!["--listen", "256.1.1.1:80"], "invalid --listen address"),
        (
            vec!["--listen", &busy_addr, "--stream", "s=sample"],
            "cannot listen on",
        ),
        (
            vec!["--config", "/no/such/config.toml"],
            "cannot read config",
        ),
        (
            vec!["--stream", "s=sample", "--record", "/dev/null/recordings"],
            "cannot record stream s to /dev/null/recordings/s",
        ),
        (vec!["probe", "/no/such/file.mp4"], "cannot read"),
        (vec!["--renditions", "360:400"], "give two rungs or more"),
        (
            vec!["--renditions", "180:150,360:400"],
            "from the highest to the lowest",
        ),
        (vec!["--renditions", "360x400"], "each rung is HEIGHT:KBPS"),
        (
            vec!["--stream", "s=sample", "--renditions", "360:400,180:150"],
            "renditions need a source ffmpeg encodes",
        ),
        (
            vec!["package", "/no/such.mp4", "--out", "/tmp/x"],
            "cannot read",
        ),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?} must print one line: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    drop(busy);
}

#[test]
fn help_and_version_succeed() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "--stream",
        "--config",
        "--segment-duration",
        "--window",
        "--record",
        "--ingest",
        "package",
        "probe",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    assert!(run(&["--version"]).status.success());
}
