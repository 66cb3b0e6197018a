//! The `file:` source: an MP4 file plays as it is (our reader, no ffmpeg, no re-encode),
//! looped in real time on one unbroken timeline; other files go through ffmpeg.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::{Fragment, InitSegment};

/// Init and fragments from a viewer of `path`, until `secs` of video have arrived.
async fn watch(server: &TestServer, path: &str, secs: f64) -> (Bytes, Vec<Fragment>) {
    let mut socket = ws::connect(&server.ws_url(path)).await;
    let (_, init_bytes) = ws::expect_init(&mut socket).await;
    let init = InitSegment::parse(init_bytes.clone(), 0).expect("init parses");
    let video = init.video().expect("a video track").clone();
    let mut fragments = Vec::new();
    let mut covered = 0u64;
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 20.0);
    while (covered as f64) < secs * f64::from(video.timescale) {
        assert!(
            Instant::now() < deadline,
            "media too slow: {covered} ticks\n{}",
            server.log()
        );
        match ws::next(&mut socket, Duration::from_secs(10)).await {
            Some(Msg::Binary(bytes)) => {
                let fragment = Fragment::parse(bytes, 0, &init).expect("a fragment");
                if let Some(run) = fragment.run(video.id) {
                    covered += run.duration;
                }
                fragments.push(fragment);
            }
            Some(Msg::Text(_)) => {}
            other => panic!("unexpected message: {other:?}\n{}", server.log()),
        }
    }
    (init_bytes, fragments)
}

/// The video stream's packets as `(size, key)`, and their decode times, as ffprobe reads.
fn video_packets(path: &std::path::Path) -> (Vec<(u64, bool)>, Vec<i64>) {
    // ffprobe writes the fields in its own order: dts, size, flags.
    let streams = ffprobe_packets(path, "dts,size,flags");
    let (_, packets) = streams
        .iter()
        .find(|(kind, _)| kind == "video")
        .expect("a video stream");
    let sizes = packets
        .iter()
        .map(|p| (p[1].parse().expect("size"), p[2].starts_with('K')))
        .collect();
    let dts = packets.iter().map(|p| p[0].parse().expect("dts")).collect();
    (sizes, dts)
}

#[tokio::test]
async fn an_mp4_plays_as_it_is_looped_on_one_timeline_without_ffmpeg() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    // Two seconds with B-frames and AAC: progressive with the moov at the end (ffmpeg's
    // default layout), and fragmented at key frames.
    for (name, movflags) in [
        ("looped.mp4", None),
        (
            "looped-fragmented.mp4",
            Some("frag_keyframe+empty_moov+default_base_moof"),
        ),
    ] {
        plays_as_it_is(name, movflags).await;
    }
}

async fn plays_as_it_is(name: &str, movflags: Option<&str>) {
    let mut output = vec!["-bf", "2"];
    output.extend(
        movflags
            .map(|flags| ["-movflags", flags])
            .into_iter()
            .flatten(),
    );
    let clip = testsrc_clip(name, 2, true, &output);
    let (input, _) = video_packets(&clip);
    assert!(input.len() >= 60, "{} input frames", input.len());
    let source = format!("clip=file:{}", clip.display());
    let server = TestServer::start(&["--stream", &source]);
    // Past two loops.
    let (init, fragments) = watch(&server, "/ws/clip", 5.0).await;
    assert!(
        server.log().contains("playing the file as it is"),
        "{}",
        server.log()
    );
    assert!(
        ffmpeg_children(server.pid()).is_empty(),
        "no ffmpeg for an MP4 we read"
    );

    let mut parts: Vec<&[u8]> = vec![&init];
    parts.extend(fragments.iter().map(|f| &f.bytes[..]));
    let watched = temp_media("file-source.mp4", &parts);
    assert_eq!(ffmpeg_decode_errors(&watched), None);
    let (output, dts) = video_packets(&watched);
    assert!(output.len() >= 150, "{} frames watched", output.len());
    // The frames are the file's own, byte for byte in size and key flag, starting at one of
    // its key frames and wrapping around at its end.
    assert!(output[0].1, "a viewer starts at a key frame");
    let start = (0..input.len())
        .find(|&i| (0..output.len()).all(|k| output[k] == input[(i + k) % input.len()]))
        .unwrap_or_else(|| {
            panic!(
                "the watched frames are not the file's, looped:\nfile {:?}\nwatched {:?}",
                &input[..10],
                &output[..10]
            )
        });
    assert!(input[start].1);
    // One timeline: every decode time a frame after the last, across the loops too.
    let steps: Vec<i64> = dts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|s| *s == steps[0] && *s > 0),
        "decode-time steps: {steps:?}"
    );
    let audio = ffprobe_frames(&watched);
    let audio_frames = audio
        .iter()
        .find(|(kind, _)| kind == "audio")
        .map(|(_, n)| *n);
    // 48 kHz AAC: 1024 samples a frame, 46.9 a second; the viewer joined a few behind.
    assert!(
        audio_frames.is_some_and(|n| n as f64 >= 4.0 * 46.9),
        "audio frames {audio_frames:?}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_mp4_is_re_encoded_by_ffmpeg() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let clip = testsrc_clip("looped.mkv", 2, false, &[]);
    let source = format!("clip=file:{}", clip.display());
    let server = TestServer::start(&["--stream", &source]);
    let (init, fragments) = watch(&server, "/ws/clip", 1.0).await;
    let log = server.log();
    assert!(log.contains("ffmpeg re-encodes the file"), "{log}");
    assert!(log.contains("not an MP4 we read"), "{log}");
    let mut parts: Vec<&[u8]> = vec![&init];
    parts.extend(fragments.iter().map(|f| &f.bytes[..]));
    let watched = temp_media("file-source-mkv.mp4", &parts);
    assert_eq!(ffmpeg_decode_errors(&watched), None);
    let frames = ffprobe_frames(&watched);
    assert!(
        frames.iter().any(|(kind, n)| kind == "video" && *n >= 30),
        "{frames:?}"
    );
}
