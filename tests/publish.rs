//! Publishing over HTTP (`PUT`/`POST /publish/NAME`) to a `source = "publish"` stream, with
//! real publishers: ffmpeg (`-f flv -method PUT`) and curl (`-T` an fMP4 file); a viewer's
//! bytes decoded by ffprobe; a publisher killed and another coming back under a connected
//! viewer; one publisher at a time (or takeover); tokens; garbage, an oversized box and a
//! stall cut off with their reasons while the stream stays for the next publisher.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::{Fragment, InitSegment};

/// An HS256 token signed with `secret` for `streams` and `action`, valid for ten minutes.
fn token_for(secret: &str, streams: &[&str], action: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"streams": streams, "action": action, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("signing")
}

fn publish_server(extra: &str) -> TestServer {
    let config = temp_file(
        "publish.toml",
        &format!("[[stream]]\nname = \"cam\"\nsource = \"publish\"\n{extra}"),
    );
    TestServer::start(&["--config", config.to_str().expect("utf-8")])
}

fn state(server: &TestServer) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &server.url("/api/streams")])
        .output()
        .expect("curl");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list[0].clone()
}

fn wait_for_state(server: &TestServer, wanted: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = state(server);
        if s["state"] == wanted {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "never {wanted}: {s}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ffmpeg publishing `clip` in real time as FLV over HTTP PUT (looped if `looped`).
fn ffmpeg_publish(clip: &std::path::Path, url: &str, looped: bool) -> std::process::Child {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-re"]);
    if looped {
        command.args(["-stream_loop", "-1"]);
    }
    command
        .arg("-i")
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", "-method", "PUT", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

/// curl PUTting `file`: (status, body).
fn curl_put(url: &str, file: &std::path::Path, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", "-T"])
        .arg(file)
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// What a viewer got, until `until` says stop: each fragment with the init it follows.
async fn watch(
    server: &TestServer,
    mut until: impl FnMut(usize) -> bool,
    within: Duration,
) -> (Vec<(Bytes, Bytes)>, usize) {
    let mut socket = ws::connect(&server.ws_url("/ws/cam")).await;
    let (_, mut init) = ws::expect_init(&mut socket).await;
    let mut fragments = Vec::new();
    let mut inits = 1;
    let deadline = Instant::now() + within;
    while !until(fragments.len()) && Instant::now() < deadline {
        match ws::next(&mut socket, Duration::from_secs(10)).await {
            Some(Msg::Binary(bytes)) => {
                if bytes.get(4..8) == Some(b"ftyp") {
                    inits += 1;
                    init = bytes;
                } else {
                    fragments.push((init.clone(), bytes));
                }
            }
            Some(Msg::Text(value)) => assert_ne!(value["type"], "end", "the stream ended"),
            Some(Msg::Close(code)) => panic!("the viewer was closed ({code:?})"),
            None => break,
        }
    }
    (fragments, inits)
}

/// What a viewer saw across a handover from one publisher to the next.
struct Handover<T> {
    /// Each fragment with the init it follows.
    fragments: Vec<(Bytes, Bytes)>,
    inits: usize,
    /// Fragments the viewer had when the first publisher was killed.
    before: usize,
    /// What `second` returned.
    second: T,
}

/// Watches stream `cam` while `first` publishes; once the viewer has 20 fragments, `first`
/// is killed (SIGKILL, mid-stream) and, half a second later, `second` publishes. The watch
/// ends `settle` after `second` has returned.
async fn watch_across_handover<T: Send + 'static>(
    server: &TestServer,
    mut first: std::process::Child,
    second: impl FnOnce() -> T + Send + 'static,
    settle: Duration,
) -> Handover<T> {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let second_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handover = {
        let second_done = second_done.clone();
        std::thread::spawn(move || {
            let _ = seen_rx.recv_timeout(Duration::from_secs(10));
            let _ = first.kill();
            let _ = first.wait();
            std::thread::sleep(Duration::from_millis(500));
            let answer = second();
            second_done.store(true, std::sync::atomic::Ordering::SeqCst);
            answer
        })
    };
    let mut at_kill = None;
    let mut done_at = None;
    let (fragments, inits) = watch(
        server,
        |n| {
            if n >= 20 && at_kill.is_none() {
                at_kill = Some(n);
                let _ = seen_tx.send(());
            }
            if second_done.load(std::sync::atomic::Ordering::SeqCst) {
                // What the second publisher sent reaches the viewer within a moment.
                let since = *done_at.get_or_insert_with(Instant::now);
                return since.elapsed() > settle;
            }
            false
        },
        Duration::from_secs(20),
    )
    .await;
    Handover {
        fragments,
        inits,
        before: at_kill.expect("the first publisher was seen"),
        second: handover.join().expect("the handover thread"),
    }
}

#[tokio::test]
async fn ffmpeg_publishes_over_http_put_and_a_viewer_gets_every_frame() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") || !have_tool_with("curl", "--version") {
        return;
    }
    let clip = testsrc_clip("publish.flv", 3, true, &["-f", "flv"]);
    let server = publish_server("publish = \"public\"\n");
    assert_eq!(state(&server)["state"], "waiting");
    // The viewer comes first and waits for the publisher.
    let viewer = {
        let url = server.ws_url("/ws/cam");
        tokio::spawn(async move {
            let mut socket = ws::connect(&url).await;
            let (_, init) = ws::expect_init(&mut socket).await;
            let mut media = Vec::new();
            while let Some(Msg::Binary(bytes)) = ws::next(&mut socket, Duration::from_secs(3)).await
            {
                media.push(bytes);
            }
            (init, media)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = ffmpeg_publish(&clip, &server.url("/publish/cam"), false);
    let live = tokio::task::spawn_blocking({
        let url = server.url("/api/streams");
        move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let out = Command::new("curl")
                    .args(["-sS", &url])
                    .output()
                    .expect("curl");
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                if text.contains("\"publisher\":{") || Instant::now() > deadline {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
    .await
    .expect("state");
    assert!(live.contains("\"protocol\":\"http\""), "{live}");
    assert!(live.contains("\"state\":\"live\""), "{live}");
    let status = tokio::task::spawn_blocking(move || {
        let status = publisher.wait().expect("ffmpeg");
        let mut err = String::new();
        if let Some(mut e) = publisher.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    })
    .await
    .expect("ffmpeg");
    assert!(status.0.success(), "ffmpeg's PUT failed: {}", status.1);
    let (init, media) = viewer.await.expect("viewer");
    let path = temp_media("published.mp4", &[&init, &media.concat()]);
    let frames = ffprobe_frames(&path);
    assert_eq!(
        frames,
        vec![
            ("video".to_string(), 90),
            ("audio".to_string(), frames[1].1)
        ],
        "the viewer decodes every frame sent"
    );
    assert!(frames[1].1 > 100, "{frames:?}");
    assert_eq!(wait_for_state(&server, "waiting")["state"], "waiting");
    let metrics = Command::new("curl")
        .args(["-sS", &server.url("/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("wsls_publishes_total{stream=\"cam\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_publisher_killed_and_another_coming_back_play_on_under_one_viewer() {
    if !have_tool("ffmpeg") || !have_tool_with("curl", "--version") {
        return;
    }
    let clip = testsrc_clip("loop.flv", 2, true, &["-f", "flv"]);
    let fmp4 = testsrc_clip(
        "publish-frag.mp4",
        2,
        true,
        &[
            "-movflags",
            "empty_moov+default_base_moof+frag_keyframe",
            "-frag_duration",
            "100000",
            "-f",
            "mp4",
        ],
    );
    let server = publish_server("publish = \"public\"\n");
    let first = ffmpeg_publish(&clip, &server.url("/publish/cam"), true);
    wait_for_state(&server, "live");
    let url = server.url("/publish/cam");
    // The second publisher: curl, an fMP4 file, all at once.
    let Handover {
        fragments,
        inits,
        before,
        second: (status, body),
    } = watch_across_handover(
        &server,
        first,
        move || curl_put(&url, &fmp4, &[]),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("published "), "{body}");
    assert!(
        fragments.len() >= before + 20,
        "{} fragments, {before} before the kill\n{}",
        fragments.len(),
        server.log()
    );
    // One timeline: video decode times (in seconds, each in its init's timescale) only go
    // forward, across both publishers.
    let times: Vec<f64> = fragments
        .iter()
        .filter_map(|(init, fragment)| {
            let init = InitSegment::parse(init.clone(), 0).ok()?;
            let video = init.video()?;
            let fragment = Fragment::parse(fragment.clone(), 0, &init).ok()?;
            let run = fragment.run(video.id)?;
            Some(run.decode_time as f64 / f64::from(video.timescale))
        })
        .collect();
    assert!(times.len() >= 20, "{times:?}");
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    eprintln!(
        "{} fragments, {inits} inits, over two publishers",
        fragments.len()
    );
}

#[tokio::test]
async fn one_publisher_at_a_time_unless_the_stream_takes_over() {
    if !have_tool("ffmpeg") || !have_tool_with("curl", "--version") {
        return;
    }
    let clip = testsrc_clip("busy.flv", 2, false, &["-f", "flv"]);
    let server = publish_server("publish = \"public\"\n");
    let mut first = ffmpeg_publish(&clip, &server.url("/publish/cam"), true);
    wait_for_state(&server, "live");
    let (status, body) = curl_put(&server.url("/publish/cam"), &clip, &[]);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already has a publisher"), "{body}");
    assert_eq!(state(&server)["state"], "live", "the first one plays on");
    let _ = first.kill();
    let _ = first.wait();

    let server = publish_server("publish = \"public\"\ntakeover = true\n");
    let mut first = ffmpeg_publish(&clip, &server.url("/publish/cam"), true);
    wait_for_state(&server, "live");
    let second = {
        let url = server.url("/publish/cam");
        let clip = clip.clone();
        std::thread::spawn(move || {
            let mut child = ffmpeg_publish(&clip, &url, false);
            child.wait().expect("ffmpeg").success()
        })
    };
    // The first is cut off (ffmpeg sees its PUT fail and exits); the second publishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the first publisher was not cut off"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        second.join().expect("second"),
        "the second publisher's PUT failed"
    );
    assert!(
        server.log().contains("another publisher took over"),
        "{}",
        server.log()
    );
}

#[test]
fn publishing_needs_a_publish_token_where_one_is_required() {
    if !have_tool("ffmpeg") || !have_tool_with("curl", "--version") {
        return;
    }
    const SECRET: &str = "the publish test's HS256 secret, 32 bytes";
    let token = |action: &str| token_for(SECRET, &["cam"], action);
    let config = temp_file(
        "publish-token.toml",
        &format!("jwt_secret = \"{SECRET}\"\n[[stream]]\nname = \"cam\"\nsource = \"publish\"\n"),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let clip = testsrc_clip("tokened.flv", 1, false, &["-f", "flv"]);
    let url = server.url("/publish/cam");
    let (status, _) = curl_put(&url, &clip, &[]);
    assert_eq!(status, 401, "no token");
    let (status, _) = curl_put(&format!("{url}?token={}", token("read")), &clip, &[]);
    assert_eq!(status, 403, "a read token");
    let bearer = format!("Authorization: Bearer {}", token("publish"));
    let (status, body) = curl_put(&url, &clip, &["-H", &bearer]);
    assert_eq!(status, 200, "a publish token: {body}");
    let (status, _) = curl_put(&server.url("/publish/nosuch"), &clip, &["-H", &bearer]);
    assert_eq!(status, 404);
}

/// Sends `head` then `body` as a request with a Content-Length of `declared`, and reads the
/// answer (waiting up to `wait`).
fn raw_put(addr: &str, body: &[u8], declared: usize, wait: Duration) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    write!(
        tcp,
        "PUT /publish/cam HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\n\r\n"
    )
    .expect("head");
    tcp.write_all(body).expect("body");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).to_string()
}

#[test]
fn garbage_oversized_boxes_and_stalls_are_cut_off_with_their_reason() {
    if !have_tool("ffmpeg") || !have_tool_with("curl", "--version") {
        return;
    }
    let server = publish_server("publish = \"public\"\n");
    let wait = Duration::from_secs(20);
    // Not FLV, not a box.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let answer = raw_put(&server.addr, &garbage, garbage.len(), wait);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("cut off after"), "{answer}");
    // A box that says it is 100 MB.
    let mut huge = (100u32 << 20).to_be_bytes().to_vec();
    huge.extend_from_slice(b"mdat");
    huge.extend_from_slice(&[0; 1024]);
    let answer = raw_put(&server.addr, &huge, 200 << 20, wait);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Half a stream, then nothing: cut off after the stall timeout.
    let clip = std::fs::read(testsrc_clip("stall.flv", 1, false, &["-f", "flv"])).expect("clip");
    let started = Instant::now();
    let answer = raw_put(&server.addr, &clip[..clip.len() / 2], clip.len(), wait);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(9), "cut off early");
    // The stream waits for the next publisher, which plays.
    wait_for_state(&server, "waiting");
    let whole = testsrc_clip("after.flv", 1, false, &["-f", "flv"]);
    let (status, body) = curl_put(&server.url("/publish/cam"), &whole, &[]);
    assert_eq!(status, 200, "{body}");
    let log = server.log();
    assert!(log.contains("publisher cut off"), "{log}");
}

/// A publish stream with an RTMP listener: the server, and `rtmp://ADDR/live`.
fn rtmp_server(extra: &str) -> (TestServer, String) {
    let config = temp_file(
        "rtmp.toml",
        &format!("[[stream]]\nname = \"cam\"\nsource = \"publish\"\n{extra}"),
    );
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--rtmp-listen",
        "127.0.0.1:0",
    ]);
    let addr = rtmp_address(&server);
    (server, format!("rtmp://{addr}/live"))
}

/// ffmpeg publishing `clip` in real time over RTMP to `url`.
fn ffmpeg_rtmp(clip: &std::path::Path, url: &str, looped: bool) -> std::process::Child {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-re"]);
    if looped {
        command.args(["-stream_loop", "-1"]);
    }
    command
        .arg("-i")
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

/// A viewer connected before the publisher: the init and every fragment until the stream
/// goes quiet for 3 s.
fn viewer_until_quiet(server: &TestServer) -> tokio::task::JoinHandle<(Bytes, Vec<Bytes>)> {
    let url = server.ws_url("/ws/cam");
    tokio::spawn(async move {
        let mut socket = ws::connect(&url).await;
        let (_, init) = ws::expect_init(&mut socket).await;
        let mut media = Vec::new();
        while let Some(Msg::Binary(bytes)) = ws::next(&mut socket, Duration::from_secs(3)).await {
            media.push(bytes);
        }
        (init, media)
    })
}

#[tokio::test]
async fn ffmpeg_publishes_over_rtmp_and_a_viewer_gets_every_frame() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let clip = testsrc_clip("rtmp.flv", 3, true, &["-f", "flv"]);
    let (server, rtmp) = rtmp_server("publish = \"public\"\n");
    let viewer = viewer_until_quiet(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = ffmpeg_rtmp(&clip, &format!("{rtmp}/cam"), false);
    let ok = tokio::task::spawn_blocking(move || publisher.wait().expect("ffmpeg").success())
        .await
        .expect("ffmpeg");
    assert!(ok, "ffmpeg's RTMP publish failed\n{}", server.log());
    let (init, media) = viewer.await.expect("viewer");
    let path = temp_media("rtmp-published.mp4", &[&init, &media.concat()]);
    let frames = ffprobe_frames(&path);
    assert_eq!(frames[0], ("video".to_string(), 90), "{frames:?}");
    assert!(frames[1].1 > 100, "{frames:?}");
    assert!(
        strip_ansi(&server.log()).contains("protocol=\"rtmp\""),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn an_rtmp_publisher_killed_mid_stream_comes_back_under_the_same_viewer() {
    if !have_tool("ffmpeg") {
        return;
    }
    let clip = testsrc_clip("rtmp-loop.flv", 2, true, &["-f", "flv"]);
    let (server, rtmp) = rtmp_server("publish = \"public\"\n");
    let url = format!("{rtmp}/cam");
    let first = ffmpeg_rtmp(&clip, &url, true);
    wait_for_state(&server, "live");
    let Handover {
        fragments,
        before,
        second,
        ..
    } = watch_across_handover(
        &server,
        first,
        move || {
            ffmpeg_rtmp(&clip, &url, false)
                .wait()
                .expect("ffmpeg")
                .success()
        },
        Duration::from_secs(1),
    )
    .await;
    assert!(second, "the second RTMP publish failed");
    // The second publisher's two seconds: 60 video frames and their audio.
    assert!(
        fragments.len() >= before + 100,
        "{} fragments, {before} before the kill\n{}",
        fragments.len(),
        server.log()
    );
    assert!(
        server.log().contains("publisher cut off"),
        "{}",
        server.log()
    );
}

#[test]
fn rtmp_publishing_takes_a_token_in_the_stream_key_and_refuses_garbage() {
    if !have_tool("ffmpeg") {
        return;
    }
    const SECRET: &str = "the RTMP test's HS256 secret, 32 bytes ok";
    let token = |action: &str| token_for(SECRET, &["cam"], action);
    let config = temp_file(
        "rtmp-token.toml",
        &format!("jwt_secret = \"{SECRET}\"\n[[stream]]\nname = \"cam\"\nsource = \"publish\"\n"),
    );
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--rtmp-listen",
        "127.0.0.1:0",
    ]);
    let rtmp = format!("rtmp://{}/live", rtmp_address(&server));
    let clip = testsrc_clip("rtmp-token.flv", 1, false, &["-f", "flv"]);
    let publish = |key: &str| {
        ffmpeg_rtmp(&clip, &format!("{rtmp}/{key}"), false)
            .wait()
            .expect("ffmpeg")
            .success()
    };
    assert!(!publish("cam"), "no token");
    assert!(
        !publish(&format!("cam?token={}", token("read"))),
        "a read token"
    );
    assert!(!publish("nosuch"), "an unknown stream");
    assert!(
        publish(&format!("cam?token={}", token("publish"))),
        "{}",
        server.log()
    );
    // Garbage on the RTMP port: the connection is dropped, the server carries on.
    let addr = rtmp.trim_start_matches("rtmp://").trim_end_matches("/live");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = tcp.write_all(&[0x42; 4096]);
    let mut buf = [0u8; 8192];
    let mut closed = false;
    for _ in 0..10 {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the garbage connection was not closed");
    assert!(
        publish(&format!("cam?token={}", token("publish"))),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("RTMP publisher refused"), "{log}");
}

/// GStreamer's `rtmp2sink`, an RTMP client independent of ffmpeg, publishes 90 frames (H.264
/// from x264enc, AAC from voaacenc, muxed by flvmux); a viewer decodes all of them.
#[tokio::test]
async fn gstreamer_publishes_over_rtmp_and_a_viewer_gets_every_frame() {
    if !have_tool("ffprobe") || !have_tool_with("gst-launch-1.0", "--version") {
        return;
    }
    let (server, rtmp) = rtmp_server("publish = \"public\"\n");
    let viewer = viewer_until_quiet(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let location = format!("location={rtmp}/cam");
    let pipeline = [
        "-q",
        "videotestsrc",
        "num-buffers=90",
        "is-live=true",
        "!",
        "video/x-raw,width=320,height=240,framerate=30/1",
        "!",
        "x264enc",
        "tune=zerolatency",
        "key-int-max=30",
        "!",
        "h264parse",
        "!",
        "flvmux",
        "name=mux",
        "streamable=true",
        "!",
        "rtmp2sink",
        &location,
        "audiotestsrc",
        "is-live=true",
        "num-buffers=140",
        "!",
        "audioconvert",
        "!",
        "voaacenc",
        "!",
        "aacparse",
        "!",
        "mux.",
    ]
    .map(str::to_string);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("gst-launch-1.0")
            .args(&pipeline)
            .output()
            .expect("gst-launch-1.0")
    })
    .await
    .expect("gstreamer");
    assert!(
        out.status.success(),
        "GStreamer failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let (init, media) = viewer.await.expect("viewer");
    let path = temp_media("gst-published.mp4", &[&init, &media.concat()]);
    let frames = ffprobe_frames(&path);
    assert_eq!(frames[0], ("video".to_string(), 90), "{frames:?}");
    assert!(
        frames.iter().any(|(kind, n)| kind == "audio" && *n > 50),
        "{frames:?}"
    );
}

/// The browser publisher's socket, spoken by a test client: refusals and bad framing close
/// it with their codes, a second publisher is refused while the first holds the stream.
#[tokio::test]
async fn the_publisher_socket_closes_with_the_code_of_each_refusal() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    const SECRET: &str = "the socket test's HS256 secret, 32 bytes!";
    let config = temp_file(
        "publish-socket.toml",
        &format!(
            "jwt_secret = \"{SECRET}\"\n[[stream]]\nname = \"cam\"\nsource = \"publish\"\npublish = \"public\"\n\
             [[stream]]\nname = \"guarded\"\nsource = \"publish\"\n\
             [[stream]]\nname = \"clip\"\nsource = \"sample\"\n"
        ),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let closed_with = |path: &str| {
        let url = server.ws_url(path);
        async move {
            let mut socket = ws::connect(&url).await;
            loop {
                match ws::next(&mut socket, Duration::from_secs(10)).await {
                    Some(Msg::Close(code)) => return code,
                    Some(_) => {}
                    None => return None,
                }
            }
        }
    };
    assert_eq!(
        closed_with("/ws/publish/guarded").await,
        Some(4401),
        "no token"
    );
    assert_eq!(
        closed_with("/ws/publish/clip").await,
        Some(4404),
        "not a publish stream"
    );
    // The first publisher holds the stream; a second is refused.
    let mut first = ws::connect(&server.ws_url("/ws/publish/cam")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&server)["publisher"].is_null() {
        assert!(
            Instant::now() < deadline,
            "the first publisher never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed_with("/ws/publish/cam").await, Some(4409), "busy");
    // It gets stats, then bad framing closes it with 4400.
    match ws::next(&mut first, Duration::from_secs(5)).await {
        Some(Msg::Text(value)) => assert_eq!(value["type"], "stats", "{value}"),
        other => panic!("no stats: {other:?}"),
    }
    first
        .send(Message::Binary(vec![9, 1, 2, 3].into()))
        .await
        .expect("send");
    let code = loop {
        match ws::next(&mut first, Duration::from_secs(10)).await {
            Some(Msg::Close(code)) => break code,
            Some(_) => {}
            None => panic!("no close frame"),
        }
    };
    assert_eq!(code, Some(4400));
    wait_for_state(&server, "waiting");
}

/// RTMPS: ffmpeg publishes over RTMP in TLS (`--rtmps-listen`, the server's self-signed
/// certificate); a viewer gets the frames.
#[tokio::test]
async fn ffmpeg_publishes_over_rtmps() {
    if !have_tool("ffmpeg") {
        return;
    }
    let state_dir = temp_dir("rtmps-state");
    let config = temp_file(
        "rtmps.toml",
        "[[stream]]\nname = \"cam\"\nsource = \"publish\"\npublish = \"public\"\n",
    );
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--tls-self-signed",
        "--state-dir",
        state_dir.to_str().expect("utf-8"),
        "--rtmps-listen",
        "127.0.0.1:0",
    ]);
    let addr = strip_ansi(&server.log())
        .split("RTMP publishers on rtmps://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the RTMPS address in the log")
        .to_string();
    let clip = testsrc_clip("rtmps.flv", 2, true, &["-f", "flv"]);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(&clip)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmps://{addr}/live/cam"),
            ])
            .output()
            .expect("ffmpeg")
    })
    .await
    .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg over RTMPS: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let log = strip_ansi(&server.log());
    assert!(log.contains("protocol=\"rtmp\""), "{log}");
    assert!(log.contains("RTMP publisher finished"), "{log}");
    // The self-signed certificate is the server's own: curl is told to take it.
    let metrics = Command::new("curl")
        .args(["-sSk", &server.url("/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let fragments = metric_value(&metrics, "wsls_fragments_in_total{stream=\"cam\"}");
    assert!(fragments > Some(60.0), "{metrics}");
}

/// `publish = "any"`: the bearer of a publish token may publish to a new name it names, which
/// makes a stream that viewers can then watch; nobody else makes streams.
#[tokio::test]
async fn with_publish_any_a_publish_token_makes_a_new_stream() {
    if !have_tool("ffmpeg") || !have_tool_with("curl", "--version") {
        return;
    }
    const SECRET: &str = "the on-the-fly test's HS256 secret, 32 b!";
    let token = |streams: &[&str]| token_for(SECRET, streams, "publish");
    let config = temp_file(
        "publish-any.toml",
        &format!(
            "jwt_secret = \"{SECRET}\"\npublish = \"any\"\n[[stream]]\nname = \"clip\"\nsource = \"sample\"\n"
        ),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let clip = testsrc_clip("any.flv", 2, true, &["-f", "flv"]);
    let url = |name: &str| server.url(&format!("/publish/{name}"));
    let (status, _) = curl_put(&url("newcam"), &clip, &[]);
    assert_eq!(status, 401, "no token makes no stream");
    let (status, _) = curl_put(
        &format!("{}?token={}", url("other"), token(&["new*"])),
        &clip,
        &[],
    );
    assert_eq!(status, 403, "a token for other names");
    let names = |server: &TestServer| {
        let out = Command::new("curl")
            .args(["-sS", &server.url("/api/streams")])
            .output()
            .expect("curl");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let names: Vec<String> = list
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|s| s["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        names
    };
    assert_eq!(
        names(&server),
        vec!["clip".to_string()],
        "refusals made nothing"
    );
    // A publisher with a token for new* makes newcam; a viewer watches it meanwhile.
    let mut publisher = ffmpeg_publish(
        &clip,
        &format!("{}?token={}", url("newcam"), token(&["new*"])),
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !names(&server).contains(&"newcam".to_string()) {
        assert!(
            Instant::now() < deadline,
            "no stream newcam:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut viewer = ws::connect(&server.ws_url("/ws/newcam")).await;
    let (init, _) = ws::expect_init(&mut viewer).await;
    assert!(
        init["codecs"].as_str().is_some_and(|c| c.contains("avc1")),
        "{init}"
    );
    match ws::next(&mut viewer, Duration::from_secs(5)).await {
        Some(Msg::Binary(_)) => {}
        other => panic!("no media on the new stream: {other:?}"),
    }
    let ok = tokio::task::spawn_blocking(move || publisher.wait().expect("ffmpeg").success())
        .await
        .expect("ffmpeg");
    assert!(ok, "{}", server.log());
    // It stays, waiting for its next publisher.
    assert_eq!(
        names(&server),
        vec!["clip".to_string(), "newcam".to_string()]
    );
    let out = Command::new("curl")
        .args(["-sS", &server.url("/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("wsls_viewers{stream=\"newcam\"}"),
        "{metrics}"
    );
}
