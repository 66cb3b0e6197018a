//! The prototype's small CDN, done properly: relay chains, many streams, on-demand sources,
//! folder ingest, metrics, and an HTTP cache in front.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::{Fragment, InitSegment, TrackKind};

/// Reads a viewer's messages for `secs`, returning the fragments (init messages and segments
/// are checked and dropped; any other message fails the test).
async fn read_fragments<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    init: &InitSegment,
    secs: f64,
) -> Vec<Fragment>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut fragments = Vec::new();
    while Instant::now() < deadline {
        match ws::next(socket, Duration::from_secs(10)).await {
            Some(Msg::Binary(bytes)) => {
                fragments.push(Fragment::parse(bytes, 0, init).expect("a fragment"));
            }
            other => panic!("unexpected message: {other:?}"),
        }
    }
    fragments
}

fn relay_to(upstream: &TestServer, stream: &str) -> String {
    format!("live=ws://{}/ws/{stream}", upstream.addr)
}

#[tokio::test]
async fn a_three_hop_chain_hands_the_edge_the_origins_bytes() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let config = temp_file("origin.toml", &small_testsrc_config("live"));
    let origin = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let intermediate = TestServer::start(&["--stream", &relay_to(&origin, "live")]);
    let edge = TestServer::start(&["--stream", &relay_to(&intermediate, "live")]);

    let mut at_origin = ws::connect(&origin.ws_url("/ws/live")).await;
    let (_, origin_init) = ws::expect_init(&mut at_origin).await;
    let mut at_edge = ws::connect(&edge.ws_url("/ws/live")).await;
    let (message, edge_init) = ws::expect_init(&mut at_edge).await;
    assert_eq!(
        edge_init, origin_init,
        "the edge serves the origin's init, byte for byte"
    );
    assert!(message["timeline"].is_string(), "{message}");
    let init = InitSegment::parse(edge_init.clone(), 0).expect("init");

    let origin_task = {
        let init = init.clone();
        tokio::spawn(async move { read_fragments(&mut at_origin, &init, 6.0).await })
    };
    let edge_fragments = read_fragments(&mut at_edge, &init, 4.0).await;
    let origin_fragments = origin_task.await.expect("origin viewer");
    let by_sequence: HashMap<u32, &Bytes> = origin_fragments
        .iter()
        .map(|f| (f.sequence, &f.bytes))
        .collect();
    let mut compared = 0;
    for fragment in &edge_fragments {
        if let Some(bytes) = by_sequence.get(&fragment.sequence) {
            assert_eq!(
                *bytes, &fragment.bytes,
                "fragment {} differs",
                fragment.sequence
            );
            compared += 1;
        }
    }
    eprintln!(
        "chain: {} fragments at the edge in 4 s, {compared} compared byte for byte with the origin's",
        edge_fragments.len()
    );
    assert!(compared > 100, "only {compared} fragments compared");

    let mut parts: Vec<&[u8]> = vec![&edge_init];
    parts.extend(edge_fragments.iter().map(|f| &f.bytes[..]));
    let file = temp_media("edge.mp4", &parts);
    if let Some(errors) = ffmpeg_decode_errors(&file) {
        panic!("the edge viewer's bytes do not decode: {errors}");
    }
    let video = init.video().expect("video").id;
    let received: u64 = edge_fragments
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| u64::from(r.sample_count))
        .sum();
    let probed = ffprobe_frames(&file);
    eprintln!("chain: edge viewer received {received} video frames; ffprobe decoded {probed:?}");
    assert_eq!(probed[0], ("video".to_string(), received));
}

#[tokio::test]
async fn the_edge_plays_on_while_the_origin_process_is_killed_and_restarted() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("origin.toml", &small_testsrc_config("live"));
    let config = config.to_str().expect("utf-8").to_string();
    let mut origin = TestServer::start(&["--config", &config]);
    let origin_addr = origin.addr.clone();
    let intermediate = TestServer::start(&["--stream", &relay_to(&origin, "live")]);
    let edge = TestServer::start(&["--stream", &relay_to(&intermediate, "live")]);
    let mut viewer = ws::connect(&edge.ws_url("/ws/live")).await;
    let (_, init) = ws::expect_init(&mut viewer).await;
    let init = InitSegment::parse(init, 0).expect("init");
    let video = init.video().expect("video").id;
    let before = read_fragments(&mut viewer, &init, 1.5).await;
    let last_before = before
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.end_time())
        .max()
        .expect("video before");

    origin.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_restarted, _stdin) = TestServer::start_on(&origin_addr, &["--config", &config]);
    let restarted_at = Instant::now();

    // The edge viewer stays connected. When the chain has its upstream back, the edge gets a
    // fresh init, then media that continues the timeline.
    let mut first_after = None;
    let mut reconnect = None;
    let mut fresh_init = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fragments_after = 0;
    while Instant::now() < deadline && fragments_after < 90 {
        match ws::next(&mut viewer, Duration::from_secs(20)).await {
            Some(Msg::Binary(bytes)) => {
                let Ok(fragment) = Fragment::parse(bytes, 0, &init) else {
                    continue; // the init segment after an init message
                };
                let Some(run) = fragment.run(video).copied() else {
                    continue;
                };
                if fresh_init && first_after.is_none() {
                    reconnect = Some(restarted_at.elapsed());
                    first_after = Some(run.decode_time);
                }
                if first_after.is_some() {
                    fragments_after += 1;
                }
            }
            Some(Msg::Text(value)) => {
                assert_eq!(value["type"], "init", "{value}");
                fresh_init = true;
            }
            other => panic!("the edge viewer lost its stream: {other:?}"),
        }
    }
    let reconnect = reconnect.expect("media at the edge after the origin restarted");
    let first_after = first_after.expect("media after");
    assert!(first_after >= last_before, "the edge's timeline went back");
    assert!(
        fragments_after >= 90,
        "only {fragments_after} video fragments after the restart"
    );
    eprintln!(
        "chain: edge media again {:.2} s after the origin restarted; timeline continued at {:.2} s",
        reconnect.as_secs_f64(),
        first_after as f64 / f64::from(init.video().expect("v").timescale)
    );
    assert!(
        intermediate
            .log()
            .contains("the upstream started a new timeline")
    );
    let metrics = http_text(&intermediate, "/metrics").await;
    assert!(
        metric(&metrics, "wsls_upstream_reconnects_total", "live") >= 1.0,
        "{metrics}"
    );
}

async fn http_text(server: &TestServer, path: &str) -> String {
    reqwest::get(server.url(path))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// The value of `name{stream="stream"}` in Prometheus text.
fn metric(text: &str, name: &str, stream: &str) -> f64 {
    let prefix = format!("{name}{{stream=\"{stream}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

/// A WebSocket "upstream" that does what `misbehave` says after the handshake.
async fn fake_upstream(misbehave: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let Ok(n) = tcp.read(&mut request).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&request[..n]).to_string();
                let key = request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Sec-WebSocket-Key: ")
                            .or_else(|| l.strip_prefix("sec-websocket-key: "))
                    })
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.write_all(misbehave).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_sending_garbage_or_oversized_frames_is_cut_off() {
    // An init message, then a binary frame that is no init segment.
    const GARBAGE: &[u8] = b"\x81\x0f{\"type\":\"init\"}\x82\x08garbage!";
    // A binary frame announcing 100 MB.
    const OVERSIZED: &[u8] = b"\x82\x7f\x00\x00\x00\x00\x05\xf5\xe1\x00";
    let garbage = fake_upstream(GARBAGE).await;
    let oversized = fake_upstream(OVERSIZED).await;
    let server = TestServer::start(&[
        "--stream",
        &format!("junk=ws://{garbage}/ws/x"),
        "--stream",
        &format!("huge=ws://{oversized}/ws/x"),
        "--stream",
        "fine=sample",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if log.contains("it sent a broken init segment")
            && log.contains("against the protocol or its size limit")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no cut-off logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = http_text(&server, "/metrics").await;
    assert!(metric(&metrics, "wsls_upstream_reconnects_total", "junk") >= 1.0);
    assert!(metric(&metrics, "wsls_upstream_reconnects_total", "huge") >= 1.0);
    let list: serde_json::Value =
        serde_json::from_str(&http_text(&server, "/api/streams").await).expect("json");
    let fine = list
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == "fine")
        .expect("fine");
    assert_eq!(fine["state"], "live", "{list}");
}

#[tokio::test]
async fn on_demand_sources_and_relays_run_only_while_watched() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file(
        "ondemand.toml",
        "[[stream]]\nname = \"cam\"\nsource = \"testsrc\"\nwidth = 320\nheight = 180\npreset = \"ultrafast\"\non_demand = true\nidle_timeout_secs = 1.5\n\n[[stream]]\nname = \"clip\"\nsource = \"sample\"\n",
    );
    let origin = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let state = |server: &TestServer, name: &'static str| {
        let url = server.url("/api/streams");
        async move {
            let list: serde_json::Value = reqwest::get(url)
                .await
                .expect("GET")
                .json()
                .await
                .expect("json");
            list.as_array()
                .expect("array")
                .iter()
                .find(|s| s["name"] == name)
                .cloned()
                .expect("stream listed")
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&origin, "cam").await["state"], "idle");
    assert!(
        ffmpeg_children(origin.pid()).is_empty(),
        "ffmpeg runs with nobody watching"
    );

    // The first viewer starts it.
    let mut viewer = ws::connect(&origin.ws_url("/ws/cam")).await;
    let started = Instant::now();
    let (_, init) = ws::expect_init(&mut viewer).await;
    eprintln!(
        "on demand: first init {:.2} s after the first viewer",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(state(&origin, "cam").await["state"], "live");
    assert_eq!(ffmpeg_children(origin.pid()).len(), 1);
    let init = InitSegment::parse(init, 0).expect("init");
    assert!(!read_fragments(&mut viewer, &init, 1.0).await.is_empty());

    // The last one leaving stops it, after the idle time.
    drop(viewer);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(state(&origin, "cam").await["state"] == "idle"
        && ffmpeg_children(origin.pid()).is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An on-demand relay pulls from its upstream only while it has viewers.
    let relay_config = temp_file(
        "relay.toml",
        &format!(
            "[[stream]]\nname = \"r\"\nsource = \"ws://{}/ws/clip\"\non_demand = true\nidle_timeout_secs = 1\n",
            origin.addr
        ),
    );
    let relay = TestServer::start(&["--config", relay_config.to_str().expect("utf-8")]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        state(&origin, "clip").await["viewers"],
        0,
        "the idle relay pulls"
    );
    let mut viewer = ws::connect(&relay.ws_url("/ws/r")).await;
    ws::expect_init(&mut viewer).await;
    assert_eq!(state(&origin, "clip").await["viewers"], 1);
    drop(viewer);
    let deadline = Instant::now() + Duration::from_secs(15);
    while state(&origin, "clip").await["viewers"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the relay keeps pulling:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&relay, "r").await["state"], "idle");
}

/// Runs ffmpeg writing into `dir` while a viewer of `dir:` reads; returns what it got.
async fn ingest_folder(ffmpeg_output: &[&str], name: &str) -> (Bytes, Vec<Fragment>) {
    let dir = temp_dir(name);
    let server = TestServer::start(&["--stream", &format!("folder=dir:{}", dir.display())]);
    let mut viewer = ws::connect(&server.ws_url("/ws/folder")).await;
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x180:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
    ]
    .map(String::from)
    .to_vec();
    args.extend(
        ffmpeg_output
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string())),
    );
    let mut ffmpeg = Command::new("ffmpeg").args(&args).spawn().expect("ffmpeg");
    let (_, init) = ws::expect_init(&mut viewer).await;
    let init_segment = InitSegment::parse(init.clone(), 0).expect("init");
    let mut fragments = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = ffmpeg.try_wait().expect("ffmpeg").is_some();
        match ws::next(&mut viewer, Duration::from_secs(3)).await {
            Some(Msg::Binary(bytes)) => {
                if let Ok(f) = Fragment::parse(bytes, 0, &init_segment) {
                    fragments.push(f);
                }
            }
            Some(Msg::Text(value)) => assert_eq!(value["type"], "init", "{value}"),
            Some(Msg::Close(code)) => panic!("closed {code:?}"),
            None if done => break,
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "folder ingest too slow:\n{}",
            server.log()
        );
    }
    assert!(ffmpeg.wait().expect("ffmpeg").success());
    (init, fragments)
}

fn check_decodes(name: &str, init: &Bytes, fragments: &[Fragment]) -> u64 {
    let parsed = InitSegment::parse(init.clone(), 0).expect("init");
    let video = parsed.video().expect("video").id;
    let runs: Vec<_> = fragments.iter().filter_map(|f| f.run(video)).collect();
    for pair in runs.windows(2) {
        assert!(
            pair[1].decode_time >= pair[0].end_time(),
            "{name}: timeline went back"
        );
    }
    let received: u64 = runs.iter().map(|r| u64::from(r.sample_count)).sum();
    let mut parts: Vec<&[u8]> = vec![init];
    parts.extend(fragments.iter().map(|f| &f.bytes[..]));
    let file = temp_media(&format!("{name}.mp4"), &parts);
    if let Some(errors) = ffmpeg_decode_errors(&file) {
        panic!("{name}: does not decode: {errors}");
    }
    let probed = ffprobe_frames(&file);
    eprintln!("folder ({name}): {received} video frames received; ffprobe decoded {probed:?}");
    assert_eq!(probed[0], ("video".to_string(), received));
    received
}

#[tokio::test]
async fn folder_ingest_streams_what_ffmpegs_segment_muxer_writes() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    // Self-contained fMP4 files, each with its init, timestamps starting over in each.
    let (init, fragments) = ingest_folder(
        &[
            "-f",
            "segment",
            "-segment_time",
            "1",
            "-segment_format",
            "mp4",
            "-segment_format_options",
            "movflags=+frag_keyframe+empty_moov+default_base_moof",
            "-reset_timestamps",
            "1",
            "{dir}/part%03d.mp4",
        ],
        "segment",
    )
    .await;
    let received = check_decodes("segment", &init, &fragments);
    assert!(received >= 120, "5 s at 30 fps, got {received} frames");
    let parsed = InitSegment::parse(init, 0).expect("init");
    assert!(parsed.tracks.iter().any(|t| t.kind == TrackKind::Audio));
}

#[tokio::test]
async fn folder_ingest_streams_what_ffmpegs_dash_muxer_writes() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    // An init file and media segment files, the MPD beside them (ignored).
    let (init, fragments) = ingest_folder(
        &[
            "-map",
            "0:v",
            "-f",
            "dash",
            "-seg_duration",
            "1",
            "-use_timeline",
            "1",
            "-init_seg_name",
            "init.m4s",
            "-media_seg_name",
            "seg-$Number%05d$.m4s",
            "{dir}/manifest.mpd",
        ],
        "dash",
    )
    .await;
    let received = check_decodes("dash", &init, &fragments);
    assert!(received >= 120, "5 s at 30 fps, got {received} frames");
}

#[tokio::test]
async fn metrics_count_what_happened_and_every_stream_is_listed() {
    let (server, mut stdin) = TestServer::start_with_stdin(&[
        "--stream",
        "pipe=stdin",
        "--stream",
        "clip=sample",
        "--stream",
        "clip2=sample",
    ]);
    let mut viewer = ws::connect(&server.ws_url("/ws/pipe")).await;
    // What the stream carries, by our own reading of the fixture: every fragment comes in; a
    // viewer there from the start gets every fragment from the first key frame on.
    let data = fixture("av-per-frame.mp4");
    let (init, fragments) = split_whole(&data);
    let video = init.video().expect("video").id;
    let first_key = fragments
        .iter()
        .position(|f| f.starts_with_sync_of(video))
        .expect("a key frame");
    let expected_in = fragments.len() as f64;
    let expected_in_bytes: usize = fragments.iter().map(|f| f.len()).sum();
    let expected_out = (fragments.len() - first_key) as f64;
    let expected_out_bytes: usize = fragments[first_key..].iter().map(|f| f.len()).sum();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).expect("write");
    });
    ws::expect_init(&mut viewer).await;
    let mut received = 0;
    loop {
        match ws::next(&mut viewer, Duration::from_secs(20)).await {
            Some(Msg::Binary(_)) => received += 1,
            Some(Msg::Text(value)) if value["type"] == "end" => break,
            other => panic!("{other:?}"),
        }
    }
    writer.join().expect("writer");
    assert_eq!(received as f64, expected_out);
    drop(viewer);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let text = http_text(&server, "/metrics").await;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(series.starts_with("wsls_"), "unprefixed series {series}");
    }
    assert_eq!(
        metric(&text, "wsls_fragments_in_total", "pipe"),
        expected_in
    );
    assert_eq!(
        metric(&text, "wsls_bytes_in_total", "pipe"),
        expected_in_bytes as f64
    );
    assert_eq!(
        metric(&text, "wsls_fragments_out_total", "pipe"),
        expected_out
    );
    assert_eq!(
        metric(&text, "wsls_bytes_out_total", "pipe"),
        expected_out_bytes as f64
    );
    assert_eq!(metric(&text, "wsls_viewers", "pipe"), 0.0);
    assert_eq!(metric(&text, "wsls_skips_total", "pipe"), 0.0);
    assert_eq!(metric(&text, "wsls_source_restarts_total", "pipe"), 0.0);
    let count = format!("wsls_ingest_to_send_seconds_count{{stream=\"pipe\"}} {expected_out}");
    assert!(text.contains(&count), "{count} missing:\n{text}");
    assert!(text.contains("wsls_build_info{version="), "{text}");

    let list: serde_json::Value =
        serde_json::from_str(&http_text(&server, "/api/streams").await).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["pipe", "clip", "clip2"]);
    let index = http_text(&server, "/").await;
    for name in names {
        assert!(
            index.contains(&format!("href=\"/watch/{name}\"")),
            "{name} not on the index:\n{index}"
        );
    }
}

const NGINX_SECRET: &str = "the nginx test's HS256 secret, 32 bytes+";

fn read_token(stream: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = serde_json::json!({"streams": [stream], "action": "read", "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(NGINX_SECRET.as_bytes()).expect("key"),
    )
    .expect("signing")
}

/// The shipped nginx.conf in front of a stream that needs tokens: segments come from the
/// cache to any authorised player (the cache key leaves the token out), nginx refuses a
/// player without one itself, and it asks the server about each token once, not per segment.
#[tokio::test]
async fn nginx_serves_segments_from_its_cache_on_the_second_request() {
    if !have_tool_with("nginx", "-v") {
        return;
    }
    let server_config = temp_file(
        "nginx-server.toml",
        &format!(
            "jwt_secret = \"{NGINX_SECRET}\"\n[[stream]]\nname = \"clip\"\nsource = \"sample\"\nread = \"token\"\n"
        ),
    );
    let server = TestServer::start(&["--config", server_config.to_str().expect("utf-8")]);
    let token = read_token("clip");
    let other_token = read_token("c*");
    let dir = temp_dir("nginx");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    // nginx's workers drop root; let them write the cache.
    let _ = Command::new("chmod")
        .args(["-R", "0777", dir.to_str().expect("utf-8")])
        .status();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
            .expect("deploy/nginx.conf");
    let config = shipped
        .replace(
            "server 127.0.0.1:8080;",
            &format!("server {};", server.addr),
        )
        .replace("listen 8081;", &format!("listen 127.0.0.1:{port};"))
        .replace(
            "/var/cache/nginx-websocketlivestream",
            cache.to_str().expect("utf-8"),
        );
    assert_ne!(config, shipped);
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config).expect("write config");
    // SIGTERM, not SIGKILL: a killed master leaves its workers behind.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
    let _nginx = Stop(
        Command::new("nginx")
            .args([
                "-p",
                dir.to_str().expect("utf-8"),
                "-c",
                config_path.to_str().expect("utf-8"),
            ])
            .args([
                "-g",
                &format!(
                    "daemon off; pid {}/nginx.pid; error_log {}/error.log;",
                    dir.display(),
                    dir.display()
                ),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    let front = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mpd = loop {
        if let Ok(response) = client
            .get(format!("{front}/dash/clip/manifest.mpd?token={token}"))
            .send()
            .await
            && response.status() == 200
        {
            assert_ne!(
                response.headers()["x-cache-status"],
                "HIT",
                "manifests are never cached"
            );
            break response.text().await.expect("mpd");
        }
        assert!(
            Instant::now() < deadline,
            "nginx or the stream never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let set = &parse_mpd(&mpd)[0];
    // The MPD's templates carry the token.
    let path = format!(
        "/dash/clip/{}",
        fill_template(&set.media, &set.representation, set.start_number)
    );
    assert!(path.ends_with(&format!("?token={token}")), "{path}");
    let bare = path.split('?').next().expect("path").to_string();
    let asked = |server: &TestServer| {
        let url = server.url("/metrics");
        async move {
            let text = reqwest::get(url)
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            metric_value(&text, "wsls_auth_requests_total")
                .unwrap_or_else(|| panic!("no wsls_auth_requests_total in:\n{text}"))
        }
    };
    let asked_before = asked(&server).await;
    let first = client
        .get(format!("{front}{path}"))
        .send()
        .await
        .expect("first");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache-status"], "MISS");
    let first = first.bytes().await.expect("body");
    // Another authorised player, with another token (as a Bearer header): from the cache.
    let second = client
        .get(format!("{front}{bare}"))
        .bearer_auth(&other_token)
        .send()
        .await
        .expect("second");
    assert_eq!(
        second.headers()["x-cache-status"],
        "HIT",
        "the second request comes from the cache"
    );
    assert_eq!(second.bytes().await.expect("body"), first);
    // The same token again, for the next segment and the first one: no new question.
    let asked_after_two = asked(&server).await;
    for number in [set.start_number, set.start_number + 1] {
        let next = fill_template(&set.media, &set.representation, number);
        let response = client
            .get(format!("{front}/dash/clip/{next}"))
            .send()
            .await
            .expect("next");
        assert_eq!(response.status(), 200, "{next}");
    }
    // The first token was asked about with the MPD already: only the second one is new.
    assert_eq!(
        asked_after_two - asked_before,
        1.0,
        "one question per token"
    );
    assert_eq!(asked(&server).await, asked_after_two, "none per segment");
    // No token, a forged one: nginx refuses, nothing from the cache.
    let refused = client
        .get(format!("{front}{bare}"))
        .send()
        .await
        .expect("refused");
    assert_eq!(refused.status(), 401);
    let forged = client
        .get(format!(
            "{front}{bare}?token={}x",
            &token[..token.len() - 1]
        ))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 401);
    let direct = client
        .get(server.url(&path))
        .send()
        .await
        .expect("direct")
        .bytes()
        .await
        .expect("body");
    assert_eq!(direct, first, "the cache serves the server's bytes");
    eprintln!("nginx: {path} MISS then HIT, {} bytes", first.len());
    // The WebSocket works through it too, with its token.
    let mut viewer = ws::connect(&format!("ws://127.0.0.1:{port}/ws/clip?token={token}")).await;
    ws::expect_init(&mut viewer).await;
}
