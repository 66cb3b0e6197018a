//! The real binary on port 0, with a real ffmpeg, talked to as viewers and players would.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::{Fragment, InitSegment, TrackKind};
use websocketlivestream::stream::manifests::EXPECTED_SEGMENTS;

/// Collects media from a viewer until `secs` of the reference track have arrived.
async fn collect_media(socket: &mut ws::Socket, init: &InitSegment, secs: f64) -> Vec<Fragment> {
    let reference = init.reference_track().expect("a track");
    let mut fragments = Vec::new();
    let mut covered = 0u64;
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 20.0);
    while (covered as f64) < secs * f64::from(reference.timescale) {
        assert!(Instant::now() < deadline, "media too slow: {covered} ticks");
        match ws::next(socket, Duration::from_secs(10)).await {
            Some(Msg::Binary(bytes)) => {
                let fragment =
                    Fragment::parse(bytes, 0, init).expect("each binary frame is a fragment");
                if let Some(run) = fragment.run(reference.id) {
                    covered += run.duration;
                }
                fragments.push(fragment);
            }
            other => panic!("unexpected message while collecting media: {other:?}"),
        }
    }
    fragments
}

fn video_samples(init: &InitSegment, fragments: &[Fragment]) -> u64 {
    let video = init.video().expect("video").id;
    fragments
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| u64::from(r.sample_count))
        .sum()
}

#[tokio::test]
async fn a_viewer_gets_init_then_key_frame_first_media_that_ffprobe_decodes() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let config = temp_file("ws.toml", &small_testsrc_config("live"));
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let mut socket = ws::connect(&server.ws_url("/ws/live")).await;
    let (message, init_bytes) = ws::expect_init(&mut socket).await;
    let init = InitSegment::parse(init_bytes.clone(), 0).expect("init parses");
    // The message describes the init it precedes: H.264 and AAC-LC, 320x180.
    let codecs = init.codecs();
    assert!(
        codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
        "{codecs}"
    );
    assert_eq!(message["codecs"], codecs.as_str(), "{message}");
    assert_eq!(message["mime"], format!("video/mp4; codecs=\"{codecs}\""));
    assert_eq!(
        (message["width"].as_u64(), message["height"].as_u64()),
        (Some(320), Some(180))
    );
    let served_init = reqwest::get(server.url("/dash/live/init.mp4"))
        .await
        .expect("GET init")
        .bytes()
        .await
        .expect("init body");
    assert_eq!(
        served_init, init_bytes,
        "the WebSocket init is the DASH init, byte for byte"
    );

    let fragments = collect_media(&mut socket, &init, 3.0).await;
    let video = init.video().expect("video").id;
    let first_video = fragments
        .iter()
        .find(|f| f.run(video).is_some())
        .expect("video");
    assert!(
        first_video.starts_with_sync_of(video),
        "media must start at a key frame"
    );
    assert!(
        fragments
            .iter()
            .all(|f| f.runs.iter().all(|r| r.duration > 0)),
        "every sample has a duration (MSE drops frames without one)"
    );

    let mut parts: Vec<&[u8]> = vec![&init_bytes];
    parts.extend(fragments.iter().map(|f| &f.bytes[..]));
    let file = temp_media("viewer.mp4", &parts);
    if let Some(errors) = ffmpeg_decode_errors(&file) {
        panic!("ffmpeg could not decode what the viewer got: {errors}");
    }
    let probed = ffprobe_frames(&file);
    let expected = video_samples(&init, &fragments);
    eprintln!("WebSocket viewer: {expected} video frames received, ffprobe decoded {probed:?}");
    assert_eq!(probed[0], ("video".to_string(), expected));
    assert!(
        expected >= 85,
        "3 s at 30 fps is about 90 frames, got {expected}"
    );
}

#[tokio::test]
async fn dash_mpd_lists_segments_that_ffprobe_decodes_per_track_and_muxed() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let config = temp_file("dash.toml", &small_testsrc_config("cam"));
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--segment-duration",
        "1",
    ]);
    let client = reqwest::Client::new();
    // Wait for three complete segments.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mpd, sets) = loop {
        assert!(
            Instant::now() < deadline,
            "no MPD with 3 segments; log:\n{}",
            server.log()
        );
        let response = client
            .get(server.url("/dash/cam/manifest.mpd"))
            .send()
            .await
            .expect("GET mpd");
        if response.status().is_success() {
            assert_eq!(response.headers()["content-type"], "application/dash+xml");
            assert_eq!(response.headers()["cache-control"], "no-cache");
            let text = response.text().await.expect("mpd body");
            let sets = parse_mpd(&text);
            if sets
                .iter()
                .all(|s| s.timeline.len() >= 3 + EXPECTED_SEGMENTS)
            {
                break (text, sets);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Right away, while the first of them is still being built: the segments the MPD lists
    // ahead are each answered as they grow, fragment by fragment, and the bytes are those of
    // the segment once complete.
    let first_ahead = sets[0].start_number + (sets[0].timeline.len() - EXPECTED_SEGMENTS) as u64;
    // The segments the MPD lists ahead: each is answered as it grows, fragment by fragment,
    // and the bytes are those of the segment once complete.
    for ahead in 0..EXPECTED_SEGMENTS as u64 {
        let number = first_ahead + ahead;
        let mut response = client
            .get(server.url(&format!("/dash/cam/{number}.m4s")))
            .send()
            .await
            .expect("GET");
        assert!(
            response.status().is_success(),
            "{number}: {}",
            response.status()
        );
        let growing = response.headers().get("content-length").is_none();
        let mut grown = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            grown.extend_from_slice(&chunk);
            chunks += 1;
        }
        let again = client
            .get(server.url(&format!("/dash/cam/{number}.m4s")))
            .send()
            .await
            .expect("GET");
        assert!(
            again.headers()["cache-control"]
                .to_str()
                .expect("ascii")
                .contains("immutable")
        );
        let whole = again.bytes().await.expect("body");
        assert_eq!(
            Bytes::from(grown),
            whole,
            "segment {number} grew into other bytes"
        );
        eprintln!("segment {number}: answered growing: {growing}, in {chunks} chunks");
        assert!(
            growing && chunks > 1,
            "segment {number} came whole, not as it grew"
        );
    }

    for needle in [
        "type=\"dynamic\"",
        "availabilityStartTime=",
        "publishTime=",
        "minimumUpdatePeriod=",
        "timeShiftBufferDepth=",
        "suggestedPresentationDelay=",
        "urn:mpeg:dash:utc:http-xsdate:2014",
        "<SegmentTimeline>",
        // Low-latency DASH: the newest segment may be fetched as it grows.
        "http://www.dashif.org/guidelines/low-latency-live-v5",
        "availabilityTimeOffset=",
        "availabilityTimeComplete=\"false\"",
        "<ServiceDescription id=\"0\">",
        "<Latency target=",
    ] {
        assert!(mpd.contains(needle), "MPD lacks {needle}:\n{mpd}");
    }
    let time = client
        .get(server.url("/api/time"))
        .send()
        .await
        .expect("time")
        .text()
        .await
        .expect("body");
    assert!(
        time.ends_with('Z') && time.len() == 24,
        "xs:dateTime, got {time}"
    );
    assert_eq!(sets.len(), 2, "one AdaptationSet per track:\n{mpd}");
    let video = sets
        .iter()
        .find(|s| s.content_type == "video")
        .expect("video set");
    assert!(video.codecs.starts_with("avc1."), "{}", video.codecs);
    let audio = sets
        .iter()
        .find(|s| s.content_type == "audio")
        .expect("audio set");
    assert_eq!(audio.codecs, "mp4a.40.2");
    assert_eq!(video.start_number, audio.start_number);

    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(&path).send().await.expect("GET");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            (
                response.headers().clone(),
                response.bytes().await.expect("body"),
            )
        }
    };
    // The timeline ends with the segment being built and the next one.
    let complete = video.timeline.len() - EXPECTED_SEGMENTS;
    let numbers: Vec<u64> = (0..complete as u64)
        .map(|i| video.start_number + i)
        .collect();
    for set in [video, audio] {
        let (_, init) = get(server.url(&format!(
            "/dash/cam/{}",
            fill_template(&set.initialization, &set.representation, 0)
        )))
        .await;
        let mut parts = vec![init.clone()];
        for number in &numbers {
            let (headers, segment) = get(server.url(&format!(
                "/dash/cam/{}",
                fill_template(&set.media, &set.representation, *number)
            )))
            .await;
            assert!(
                headers["cache-control"]
                    .to_str()
                    .expect("ascii")
                    .contains("immutable")
            );
            parts.push(segment);
        }
        let refs: Vec<&[u8]> = parts.iter().map(|b| &b[..]).collect();
        let file = temp_media(&format!("{}.mp4", set.content_type), &refs);
        if let Some(errors) = ffmpeg_decode_errors(&file) {
            panic!("{} track does not decode: {errors}", set.content_type);
        }
        let joined: Vec<u8> = refs.concat();
        let ours = sample_counts(&Bytes::from(joined));
        assert_eq!(ours.len(), 1, "a per-track init has one track");
        let probed = ffprobe_frames(&file);
        eprintln!(
            "DASH {}: {} segments, {:?} samples, ffprobe {:?}",
            set.content_type,
            numbers.len(),
            ours,
            probed
        );
        if set.content_type == "video" {
            assert_eq!(probed, vec![("video".to_string(), ours[0].1)]);
        }
        // The timeline says how long each segment is; the segments agree.
        let timeline_ticks: u64 = set
            .timeline
            .iter()
            .take(numbers.len())
            .map(|(_, d)| d)
            .sum();
        let secs = timeline_ticks as f64 / set.timescale as f64;
        assert!(
            (secs - numbers.len() as f64).abs() < 0.6,
            "{} s for {} one-second segments",
            secs,
            numbers.len()
        );
    }

    // The muxed segment is every track's fragments together, in order.
    let (_, muxed) = get(server.url(&format!("/dash/cam/{}.m4s", numbers[0]))).await;
    let (_, muxed_init) = get(server.url("/dash/cam/init.mp4")).await;
    let muxed_file: Vec<u8> = [&muxed_init[..], &muxed[..]].concat();
    let counts = sample_counts(&Bytes::from(muxed_file));
    assert!(counts.iter().any(|(k, n)| *k == TrackKind::Video && *n > 0));
    assert!(counts.iter().any(|(k, n)| *k == TrackKind::Audio && *n > 0));

    // Gone from the window, or not yet made: 404.
    let missing = client
        .get(server.url("/dash/cam/1.m4s"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let future = client
        .get(server.url(&format!(
            "/dash/cam/{}.m4s",
            numbers[numbers.len() - 1] + 100
        )))
        .send()
        .await
        .expect("GET");
    assert_eq!(future.status(), 404);
}

#[tokio::test]
async fn hls_playlists_use_the_dash_files_and_block_until_a_part_exists() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("hls.toml", &small_testsrc_config("live"));
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let playlist = loop {
        assert!(
            Instant::now() < deadline,
            "no playlist; log:\n{}",
            server.log()
        );
        let response = client
            .get(server.url("/hls/live/live.m3u8"))
            .send()
            .await
            .expect("GET");
        if response.status().is_success() {
            let text = response.text().await.expect("body");
            if text.contains("#EXTINF") {
                break text;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for needle in [
        "#EXT-X-VERSION:9",
        "#EXT-X-MAP:URI=\"/dash/live/init.mp4\"",
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        ",INDEPENDENT=YES",
    ] {
        assert!(
            playlist.contains(needle),
            "playlist lacks {needle}:\n{playlist}"
        );
    }
    let multivariant = client
        .get(server.url("/hls/live/index.m3u8"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(multivariant.contains("CODECS=\"avc1."), "{multivariant}");
    assert!(multivariant.contains("FRAME-RATE=30.000"), "{multivariant}");
    assert!(
        multivariant.contains("RESOLUTION=320x180"),
        "{multivariant}"
    );

    // ffmpeg reads the live playlists as any HLS client would, and decodes its frames.
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-read_intervals", "%+3", "-count_frames"])
        .args([
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(server.url("/hls/live/index.m3u8"))
        .output()
        .expect("running ffprobe");
    let probed = String::from_utf8_lossy(&probe.stdout).to_string();
    let fields: Vec<&str> = probed
        .trim()
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .collect();
    eprintln!("ffprobe of the live HLS playlist, 3 s: {fields:?}");
    assert_eq!(fields.get(..2), Some(&["320", "180"][..]), "{probed}");
    let frames: u64 = fields.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(
        (88..=92).contains(&frames),
        "{frames} frames in 3 s of 30 fps: {probed}"
    );

    // A segment listed in the playlist is the DASH file; its parts, joined, are the same bytes.
    let uri = playlist
        .lines()
        .find(|l| l.starts_with("/dash/live/"))
        .expect("a segment URI");
    let number: u64 = uri
        .trim_start_matches("/dash/live/")
        .trim_end_matches(".m4s")
        .parse()
        .expect("number");
    let segment = client
        .get(server.url(uri))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    let mut joined = Vec::new();
    for part in 0.. {
        let response = client
            .get(server.url(&format!("/hls/live/{number}.{part}.m4s")))
            .send()
            .await
            .expect("GET");
        if response.status() == 404 {
            break;
        }
        joined.extend_from_slice(&response.bytes().await.expect("part"));
    }
    assert_eq!(Bytes::from(joined), segment, "parts make up the segment");

    // Blocking reload: the next part is answered as soon as it exists...
    let (msn, part) = next_part(&playlist);
    let started = Instant::now();
    let response = client
        .get(server.url(&format!(
            "/hls/live/live.m3u8?_HLS_msn={msn}&_HLS_part={part}"
        )))
        .send()
        .await
        .expect("GET");
    assert!(response.status().is_success());
    let blocked = response.text().await.expect("body");
    let waited = started.elapsed();
    assert!(
        blocked.contains(&format!("{msn}.{part}.m4s\""))
            && !blocked.contains(&format!("PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{part}.m4s\"")),
        "the answer lists part {msn}.{part} as complete:\n{blocked}"
    );
    eprintln!("blocking reload for {msn}.{part} answered after {waited:?}");
    // ...and one far in the future is refused.
    let far = client
        .get(server.url(&format!(
            "/hls/live/live.m3u8?_HLS_msn={}&_HLS_part=0",
            msn + 50
        )))
        .send()
        .await
        .expect("GET");
    assert_eq!(far.status(), 400);
}

/// The part a playlist's preload hint names.
fn next_part(playlist: &str) -> (u64, u32) {
    let hint = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .expect("preload hint");
    let uri = hint
        .split("URI=\"")
        .nth(1)
        .expect("uri")
        .trim_end_matches('"');
    let stem = uri.trim_end_matches(".m4s");
    let (msn, part) = stem.split_once('.').expect("msn.part");
    (msn.parse().expect("msn"), part.parse().expect("part"))
}

#[tokio::test]
async fn pages_api_and_errors_without_ffmpeg() {
    let server = TestServer::start(&["--stream", "clip=sample"]);
    let client = reqwest::Client::new();
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");

    let deadline = Instant::now() + Duration::from_secs(20);
    let streams = loop {
        let list: serde_json::Value = client
            .get(server.url("/api/streams"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        if list[0]["segments"].as_u64().unwrap_or(0) >= 1 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let clip = &streams[0];
    assert_eq!(clip["name"], "clip");
    assert_eq!(clip["source"], "sample");
    assert_eq!(clip["state"], "live");
    assert_eq!(clip["codecs"], "avc1.64001f,mp4a.40.2");
    assert_eq!(
        (clip["width"].as_u64(), clip["height"].as_u64()),
        (Some(1280), Some(720))
    );
    for key in ["mime", "viewers", "bitrate_bps", "segments"] {
        assert!(!clip[key].is_null(), "{key} missing: {clip}");
    }
    assert!(
        clip["bitrate_bps"].as_u64().unwrap_or(0) > 100_000,
        "{clip}"
    );

    let index = client
        .get(server.url("/"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(index.contains("href=\"/watch/clip\""), "{index}");
    let watch = client
        .get(server.url("/watch/clip"))
        .send()
        .await
        .expect("GET");
    assert_eq!(watch.status(), 200);
    let watch = watch.text().await.expect("body");
    assert!(watch.contains("data-stream=\"clip\""), "{watch}");
    let script = client
        .get(server.url("/assets/watch.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );

    for (path, status) in [
        ("/watch/nope", 404),
        ("/ws/nope", 404),
        ("/dash/nope/manifest.mpd", 404),
        ("/dash/clip/x.m4s", 404),
        ("/hls/clip/live.m3u8?_HLS_msn=abc", 400),
        ("/hls/clip/live.m3u8?_HLS_part=1", 400),
        ("/assets/nope.js", 404),
    ] {
        let response = client.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), status, "{path}");
    }
    // Media answers, errors included, are readable from other sites' players.
    let not_found = client
        .get(server.url("/dash/clip/1.m4s"))
        .send()
        .await
        .expect("GET");
    assert_eq!(not_found.headers()["access-control-allow-origin"], "*");
    // A page from another site may not open our sockets.
    let request = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(server.ws_url("/ws/clip"))
        .header("Host", &server.addr)
        .header("Origin", "http://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .expect("request");
    let refused = tokio_tungstenite::connect_async(request).await;
    assert!(refused.is_err(), "cross-origin upgrade must be refused");
}

#[tokio::test]
async fn garbage_on_stdin_fails_that_stream_only() {
    let (server, mut stdin) =
        TestServer::start_with_stdin(&["--stream", "good=sample", "--stream", "bad=stdin"]);
    use std::io::Write;
    stdin
        .write_all(
            b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\xde\xad\xbe\xefgarbage garbage garbage",
        )
        .expect("write stdin");
    stdin.flush().expect("flush");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = client
            .get(server.url("/api/streams"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        let bad = list
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["name"] == "bad")
            .expect("bad")
            .clone();
        let good = list
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["name"] == "good")
            .expect("good")
            .clone();
        if bad["state"] == "failed" && good["segments"].as_u64().unwrap_or(0) >= 1 {
            assert!(
                bad["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("broken fMP4 input"),
                "{bad}"
            );
            assert_eq!(good["state"], "live");
            break;
        }
        assert!(Instant::now() < deadline, "{list}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .log()
            .contains("stdin source stopped: broken fMP4 input"),
        "{}",
        server.log()
    );
    // The other stream still serves viewers.
    let mut socket = ws::connect(&server.ws_url("/ws/good")).await;
    let (_, init) = ws::expect_init(&mut socket).await;
    let init = InitSegment::parse(init, 0).expect("init");
    let fragments = collect_media(&mut socket, &init, 1.0).await;
    assert!(!fragments.is_empty());
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        200
    );
}

#[tokio::test]
async fn an_fmp4_stream_on_stdin_is_served_and_its_end_closes_viewers() {
    let (server, mut stdin) = TestServer::start_with_stdin(&["--stream", "pipe=stdin"]);
    let mut socket = ws::connect(&server.ws_url("/ws/pipe")).await;
    let data = fixture("av-per-frame.mp4");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // Slowly enough that the viewer is connected before the end.
        for chunk in data.chunks(4096) {
            stdin.write_all(chunk).expect("write");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (message, _) = ws::expect_init(&mut socket).await;
    let (fixture_init, _) = split_whole(&fixture("av-per-frame.mp4"));
    assert_eq!(message["codecs"], fixture_init.codecs().as_str());
    let mut media = 0;
    let end = loop {
        match ws::next(&mut socket, Duration::from_secs(20)).await {
            Some(Msg::Binary(_)) => media += 1,
            Some(Msg::Text(value)) => break value,
            other => panic!("unexpected {other:?}"),
        }
    };
    writer.join().expect("writer");
    assert_eq!(end["type"], "end");
    assert!(media > 10, "got {media} fragments");
    match ws::next(&mut socket, Duration::from_secs(5)).await {
        Some(Msg::Close(code)) => assert_eq!(code, Some(1000)),
        other => panic!("expected close 1000, got {other:?}"),
    }
}

#[tokio::test]
async fn an_flv_stream_on_stdin_is_written_into_fragments_that_decode_with_its_frames() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    // What `ffmpeg … -f flv - | websocketlivestream --stream cam=stdin` gets: each frame as it
    // is encoded, no fMP4 muxer waiting for the next one.
    let clip = testsrc_clip("clip.flv", 3, true, &["-f", "flv"]);
    let (server, mut stdin) = TestServer::start_with_stdin(&["--stream", "cam=stdin"]);
    let mut socket = ws::connect(&server.ws_url("/ws/cam")).await;
    let data = std::fs::read(&clip).expect("clip");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for chunk in data.chunks(4096) {
            stdin.write_all(chunk).expect("write");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (message, init) = ws::expect_init(&mut socket).await;
    assert_eq!(message["codecs"], "avc1.42c00d,mp4a.40.2", "{message}");
    let mut parts = vec![init];
    loop {
        match ws::next(&mut socket, Duration::from_secs(20)).await {
            Some(Msg::Binary(bytes)) => parts.push(bytes),
            Some(Msg::Text(value)) => {
                assert_eq!(value["type"], "end", "{value}");
                break;
            }
            other => panic!("unexpected {other:?}\n{}", server.log()),
        }
    }
    writer.join().expect("writer");
    assert!(
        server.log().contains("standard input carries FLV"),
        "{}",
        server.log()
    );
    let refs: Vec<&[u8]> = parts.iter().map(|b| &b[..]).collect();
    let file = temp_media("from-stdin-flv.mp4", &refs);
    let ours = ffprobe_frames(&file);
    eprintln!(
        "FLV on stdin: ffprobe {ours:?}, input {:?}",
        ffprobe_frames(&clip)
    );
    // Every video frame; audio from the first key frame on, as every viewer starts there
    // (ffmpeg writes the first sound a moment before the first picture).
    let input = ffprobe_frames(&clip);
    assert_eq!(ours[0], input[0]);
    assert_eq!(ours[1].0, "audio");
    assert!(input[1].1 - ours[1].1 <= 1, "{ours:?} of {input:?}");
    if let Some(errors) = ffmpeg_decode_errors(&file) {
        panic!("does not decode cleanly: {errors}");
    }
}

#[tokio::test]
async fn a_slow_viewer_is_moved_to_a_key_frame_and_others_play_on() {
    let server = TestServer::start(&["--stream", "clip=sample"]);
    // A viewer with a tiny receive buffer that stops reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("rcvbuf");
    let tcp = socket
        .connect(server.addr.parse().expect("addr"))
        .await
        .expect("connect");
    let (mut slow, _) = tokio_tungstenite::client_async(server.ws_url("/ws/clip"), tcp)
        .await
        .expect("slow viewer");
    let mut normal = ws::connect(&server.ws_url("/ws/clip")).await;
    let (_, init) = ws::expect_init(&mut slow).await;
    let init = InitSegment::parse(init, 0).expect("init");
    ws::expect_init(&mut normal).await;

    // The normal viewer reads for 6 s while the slow one reads nothing.
    let normal_task = tokio::spawn(async move {
        let mut sequences = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            match ws::next(&mut normal, Duration::from_secs(5)).await {
                Some(Msg::Binary(bytes)) => sequences.push(bytes),
                Some(Msg::Text(value)) => panic!("the normal viewer was told {value}"),
                other => panic!("normal viewer: {other:?}"),
            }
        }
        sequences
    });
    let normal_fragments = normal_task.await.expect("normal viewer");
    // Now the slow viewer reads: somewhere a skip, then a key frame.
    let video = init.video().expect("video").id;
    let deadline = Instant::now() + Duration::from_secs(20);
    let skipped = loop {
        assert!(
            Instant::now() < deadline,
            "the slow viewer was never skipped\n{}",
            server.log()
        );
        match ws::next(&mut slow, Duration::from_secs(10)).await {
            Some(Msg::Text(value)) if value["type"] == "skipped" => break value,
            Some(Msg::Binary(_)) => continue,
            other => panic!("slow viewer: {other:?}"),
        }
    };
    assert!(skipped["fragments"].as_u64().unwrap_or(0) > 0, "{skipped}");
    let after = match ws::next(&mut slow, Duration::from_secs(10)).await {
        Some(Msg::Binary(bytes)) => Fragment::parse(bytes, 0, &init).expect("fragment"),
        other => panic!("after skipped: {other:?}"),
    };
    assert!(
        after.starts_with_sync_of(video),
        "after a skip comes a key frame"
    );

    // The normal viewer got every fragment, in order, at the source's pace.
    let sequences: Vec<u32> = normal_fragments
        .iter()
        .map(|b| {
            Fragment::parse(b.clone(), 0, &init)
                .expect("fragment")
                .sequence
        })
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps: {sequences:?}"
    );
    assert!(
        sequences.len() > 200,
        "6 s of video and audio fragments, got {}",
        sequences.len()
    );
}

#[tokio::test]
async fn a_restarted_ffmpeg_gives_viewers_a_fresh_init_and_a_continuous_timeline() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("restart.toml", &small_testsrc_config("live"));
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let mut socket = ws::connect(&server.ws_url("/ws/live")).await;
    let (_, init) = ws::expect_init(&mut socket).await;
    let init = InitSegment::parse(init, 0).expect("init");
    let video = init.video().expect("video").id;
    let before = collect_media(&mut socket, &init, 1.0).await;
    let last_before = before
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.end_time())
        .max()
        .expect("video");

    let children = ffmpeg_children(server.pid());
    assert_eq!(children.len(), 1, "one ffmpeg per stream");
    std::process::Command::new("kill")
        .arg("-9")
        .arg(children[0].to_string())
        .status()
        .expect("kill");

    // The socket stays open; a new init comes, then media that continues the timeline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(Instant::now() < deadline, "no new init\n{}", server.log());
        match ws::next(&mut socket, Duration::from_secs(20)).await {
            Some(Msg::Text(value)) if value["type"] == "init" => break value,
            Some(Msg::Binary(_)) => continue,
            other => panic!("while waiting for a new init: {other:?}"),
        }
    };
    assert!(message["generation"].as_u64() >= Some(2), "{message}");
    let Some(Msg::Binary(init2)) = ws::next(&mut socket, Duration::from_secs(5)).await else {
        panic!("new init segment expected");
    };
    let init2 = InitSegment::parse(init2, 0).expect("init");
    let after = collect_media(&mut socket, &init2, 1.0).await;
    let first_after = after
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.decode_time)
        .min()
        .expect("video");
    assert!(
        first_after >= last_before,
        "decode times went back after the restart: {first_after} < {last_before}"
    );
    let gap = (first_after - last_before) as f64 / f64::from(init2.video().expect("v").timescale);
    assert!(gap < 0.2, "the timeline jumped {gap} s");
    assert!(server.log().contains("ffmpeg stopped"), "{}", server.log());
    let list: serde_json::Value = reqwest::get(server.url("/api/streams"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["state"], "live");
}

#[test]
fn ctrl_c_stops_the_server_and_its_ffmpeg() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("stop.toml", &small_testsrc_config("live"));
    let mut server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ffmpeg_children(server.pid()).is_empty() {
        assert!(Instant::now() < deadline, "ffmpeg never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let children = ffmpeg_children(server.pid());
    let status = server.interrupt().expect("the server exits after Ctrl-C");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    for child in children {
        let alive = std::path::Path::new(&format!("/proc/{child}")).exists();
        assert!(!alive, "ffmpeg {child} outlived the server");
    }
    assert!(server.log().contains("stopped"), "{}", server.log());
}

/// Connects and expects the upgrade to be refused with 503 and a message naming `reason`.
async fn expect_busy(url: &str, reason: &str) {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(url).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 503, "{url}");
            let body = response.body().as_deref().unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            assert!(body.contains(reason), "{url}: body {body:?}");
        }
        Err(other) => panic!("{url}: expected 503, got {other}"),
        Ok(_) => panic!("{url}: expected 503, the viewer was admitted"),
    }
}

#[tokio::test]
async fn viewer_limits_per_stream_and_per_server_answer_503_and_free_up() {
    let config = temp_file(
        "limits.toml",
        "max_viewers = 3\n\
         [[stream]]\nname = \"one\"\nsource = \"sample\"\nmax_viewers = 1\n\
         [[stream]]\nname = \"many\"\nsource = \"sample\"\n",
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let one_url = server.ws_url("/ws/one");
    let many_url = server.ws_url("/ws/many");

    let mut first = ws::connect(&one_url).await;
    ws::expect_init(&mut first).await;
    expect_busy(&one_url, "stream one has its maximum of 1 viewers").await;

    let mut others = Vec::new();
    for _ in 0..2 {
        let mut socket = ws::connect(&many_url).await;
        ws::expect_init(&mut socket).await;
        others.push(socket);
    }
    expect_busy(&many_url, "the server has its maximum of 3 viewers").await;
    // A refused viewer takes no place: the count is still 3, not 4.
    expect_busy(&many_url, "the server has its maximum of 3 viewers").await;

    // The viewers admitted play on.
    for socket in &mut others {
        match ws::next(socket, Duration::from_secs(5)).await {
            Some(Msg::Binary(_)) => {}
            other => panic!("an admitted viewer should get media, got {other:?}"),
        }
    }

    // When the stream-limited viewer leaves, both its stream and the server have room again.
    first.close(None).await.expect("close");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    // A try before the server has seen the close is refused, and counted, too.
    let mut refused_retries = 0;
    let mut again = loop {
        match tokio_tungstenite::connect_async(&one_url).await {
            Ok((socket, _)) => break socket,
            Err(_) if Instant::now() < deadline => {
                refused_retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the freed place was never given back: {err}"),
        }
    };
    ws::expect_init(&mut again).await;
    // ... and the server-wide count is at its maximum again.
    expect_busy(&many_url, "the server has its maximum of 3 viewers").await;
    // Every refusal was counted.
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.lines().any(|l| l
            == format!(
                "wsls_refused_connections_total{{reason=\"viewer_limit\"}} {}",
                4 + refused_retries
            )),
        "{refused_retries} retries\n{metrics}"
    );
}

/// A raw WebSocket client: the handshake by hand, so it can send what a library would not.
fn raw_viewer(addr: &str, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("the upgrade answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Reads server frames until a close frame; its status code.
fn read_until_close(tcp: &mut std::net::TcpStream) -> Option<u16> {
    use std::io::Read;
    loop {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                tcp.read_exact(&mut ext).ok()?;
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                tcp.read_exact(&mut ext).ok()?;
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        tcp.read_exact(&mut payload).ok()?;
        if head[0] & 0x0f == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

#[tokio::test]
async fn viewers_are_answered_and_closed_as_rfc_6455_asks() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut server = TestServer::start(&["--stream", "live=sample"]);
    let url = server.ws_url("/ws/live");

    // A ping is answered with its payload, between the media.
    let mut pinging = ws::connect(&url).await;
    ws::expect_init(&mut pinging).await;
    pinging
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .expect("ping");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no pong");
        match tokio::time::timeout(Duration::from_secs(10), pinging.next()).await {
            Ok(Some(Ok(Message::Pong(payload)))) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Ok(Some(Ok(Message::Binary(_)))) => {}
            other => panic!("expected media then a pong, got {other:?}"),
        }
    }

    // A close is echoed with the viewer's code, and the connection ends.
    pinging.close(None).await.expect("close");
    let mut echoed = false;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(10), pinging.next()).await
    {
        match message {
            Ok(Message::Close(_)) => echoed = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(echoed, "the server did not answer the close");

    // An unmasked frame breaks the protocol: close 1002.
    let addr = server.addr.clone();
    let code = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut tcp = raw_viewer(&addr, "/ws/live");
        tcp.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
        read_until_close(&mut tcp)
    })
    .await
    .expect("raw viewer");
    assert_eq!(code, Some(1002));

    // Viewers still there when the server stops are told it is going away.
    let addr = server.addr.clone();
    let staying = std::thread::spawn(move || read_until_close(&mut raw_viewer(&addr, "/ws/live")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches("viewer joined").count() < 3 {
        assert!(Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = server.interrupt().expect("the server stops");
    assert!(status.success(), "{}", server.log());
    assert_eq!(staying.join().expect("viewer"), Some(1001));
}

/// Sends `request` on a fresh connection from the local address `local` (any port) and
/// returns what came back, and whether the server closed the connection, within `wait`.
fn exchange_from(local: &str, addr: &str, request: &[u8], wait: Duration) -> (String, bool) {
    use std::io::{Read, Write};
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: std::net::SocketAddr = format!("{local}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind");
    let remote: std::net::SocketAddr = addr.parse().expect("address");
    socket.connect(&remote.into()).expect("connect");
    let mut tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    tcp.write_all(request).expect("request");
    let mut answer = Vec::new();
    let closed = tcp.read_to_end(&mut answer).is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// [`exchange_from`] off the runtime's threads.
async fn exchange(local: &str, addr: &str, request: Vec<u8>, wait: Duration) -> (String, bool) {
    let (local, addr) = (local.to_string(), addr.to_string());
    tokio::task::spawn_blocking(move || exchange_from(&local, &addr, &request, wait))
        .await
        .expect("the exchange ran")
}

/// The bundled sample as stream `clip`, with `config` as the config file.
fn sample_server_with(config: &str) -> TestServer {
    let config = temp_file("limits.toml", config);
    TestServer::start(&[
        "--stream",
        "clip=sample",
        "--config",
        config.to_str().expect("utf-8"),
    ])
}

/// The value of the `/metrics` line that starts with `series`, asked from `local`.
fn metric_from(local: &str, addr: &str, series: &str) -> Option<f64> {
    let (text, _) = exchange_from(
        local,
        addr,
        &get_request("/metrics"),
        Duration::from_secs(10),
    );
    metric_value(&text, series)
}

#[tokio::test]
async fn slow_idle_and_oversized_requests_are_dropped_while_a_viewer_plays_on() {
    let server = sample_server_with("header_timeout_secs = 1\n");
    let addr = server.addr.clone();
    let mut viewer = ws::connect(&server.ws_url("/ws/clip")).await;
    ws::expect_init(&mut viewer).await;

    // Half a request header, then nothing; and a connection that sends nothing at all.
    let wait = Duration::from_secs(15);
    let half = b"GET /healthz HTTP/1.1\r\nHost: test\r\n".to_vec();
    let (slow, idle) = tokio::join!(
        exchange("127.0.0.1", &addr, half, wait),
        exchange("127.0.0.1", &addr, Vec::new(), wait)
    );
    let (slow_answer, slow_closed) = slow;
    assert!(
        slow_closed,
        "a slow-headers client is disconnected: {slow_answer:?}"
    );
    assert!(!slow_answer.contains(" 200 "), "{slow_answer:?}");
    assert!(idle.1, "an idle client is disconnected");

    // A header over the limit is answered 431.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (answer, _) = exchange("127.0.0.1", &addr, huge.into_bytes(), wait).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // The viewer played on through all of it.
    match ws::next(&mut viewer, Duration::from_secs(5)).await {
        Some(Msg::Binary(_)) => {}
        other => panic!("the viewer should still get media, got {other:?}"),
    }
    let refused = |reason: &str| format!("wsls_refused_connections_total{{reason=\"{reason}\"}}");
    let (timeouts, large) = {
        let (addr, timeouts, large) = (
            addr.clone(),
            refused("header_timeout"),
            refused("header_too_large"),
        );
        tokio::task::spawn_blocking(move || {
            (
                metric_from("127.0.0.1", &addr, &timeouts),
                metric_from("127.0.0.1", &addr, &large),
            )
        })
        .await
        .expect("metrics")
    };
    assert!(
        timeouts.is_some_and(|n| n >= 2.0),
        "{timeouts:?}\n{}",
        server.log()
    );
    assert_eq!(large, Some(1.0), "{}", server.log());
}

#[tokio::test]
async fn connections_over_an_address_limit_are_refused_while_other_addresses_are_served() {
    let server = sample_server_with("max_connections_per_address = 2\n");
    let addr = server.addr.clone();
    let wait = Duration::from_secs(10);
    // Two viewers from 127.0.0.1 hold both of its places.
    let mut first = ws::connect(&server.ws_url("/ws/clip")).await;
    ws::expect_init(&mut first).await;
    let mut second = ws::connect(&server.ws_url("/ws/clip")).await;
    ws::expect_init(&mut second).await;

    // A viewer from another address.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let tcp = socket
        .connect(addr.parse().expect("server address"))
        .await
        .expect("connect");
    let (mut elsewhere, _) = tokio_tungstenite::client_async(server.ws_url("/ws/clip"), tcp)
        .await
        .expect("handshake from 127.0.0.2");
    ws::expect_init(&mut elsewhere).await;

    let (answer, closed) = exchange("127.0.0.1", &addr, get_request("/healthz"), wait).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(closed, "the refused connection is closed");

    // 2,000 more from the full address, at once: each refused and closed, while the viewer
    // from the other address reads on.
    let flood: Vec<_> = (0..2000)
        .map(|_| exchange("127.0.0.1", &addr, get_request("/healthz"), wait))
        .collect();
    let reading = async {
        let mut media = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Msg::Binary(_)) = ws::next(&mut elsewhere, Duration::from_secs(5)).await {
                media += 1;
            }
        }
        media
    };
    let (answers, media) = tokio::join!(futures_util::future::join_all(flood), reading);
    let refused_now = answers
        .iter()
        .filter(|(answer, closed)| answer.starts_with("HTTP/1.1 429") && *closed)
        .count();
    assert_eq!(
        refused_now, 2000,
        "every one of the flood is refused and closed"
    );
    assert!(
        media >= 30,
        "the other address's viewer got {media} fragments in 5 s"
    );

    // Another address is served, and sees the refusal counted.
    let (answer, _) = exchange("127.0.0.2", &addr, get_request("/healthz"), wait).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let refused = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            metric_from(
                "127.0.0.2",
                &addr,
                "wsls_refused_connections_total{reason=\"address_limit\"}",
            )
        })
        .await
        .expect("metrics")
    };
    assert_eq!(refused, Some(2001.0), "{}", server.log());

    // The viewers play on; when one leaves, its address has a place again.
    match ws::next(&mut second, Duration::from_secs(5)).await {
        Some(Msg::Binary(_)) => {}
        other => panic!("an admitted viewer should get media, got {other:?}"),
    }
    first.close(None).await.expect("close");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, _) = exchange("127.0.0.1", &addr, get_request("/healthz"), wait).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place never came back: {answer:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn manifest_requests_over_the_rate_are_answered_429_and_counted() {
    let server = sample_server_with("manifest_requests_per_sec = 1\n");
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let response = client
            .get(server.url("/hls/clip/index.m3u8"))
            .send()
            .await
            .expect("playlist");
        statuses.push(response.status().as_u16());
    }
    // A burst of 10 (at least), then 429 until the bucket refills at 1 a second.
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!((3..=5).contains(&refused), "{statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s != 429), "{statuses:?}");
    // Segments are not limited.
    let segment = client
        .get(server.url("/dash/clip/init.mp4"))
        .send()
        .await
        .expect("init");
    assert_ne!(segment.status().as_u16(), 429);
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted = metric_value(
        &metrics,
        "wsls_refused_requests_total{reason=\"manifest_rate\"}",
    );
    assert_eq!(counted, Some(refused as f64), "{metrics}");
}
