//! A ladder of renditions from our ffmpeg: every rung's DASH and HLS segments decode with the
//! same frames and key frames at the same times, the audio is the same on every rung;
//! the WebSocket serves the rung asked for; every rung is recorded; and a viewer whose link
//! carries a fifth of the top rung is moved down and back up.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::*;
use common::ws::{self, Msg};
use common::*;
use websocketlivestream::fmp4::InitSegment;

/// The test pattern at 640x360 in three rungs (cheap to encode on two cores).
const LADDER: &str = "[[stream]]\nname = \"tv\"\nsource = \"testsrc\"\nwidth = 640\nheight = 360\n\
preset = \"ultrafast\"\nrenditions = [{height = 360, video_bitrate_kbps = 600}, \
{height = 180, video_bitrate_kbps = 200}, {height = 90, video_bitrate_kbps = 80}]\n";

fn ladder_server() -> TestServer {
    let config = temp_file("ladder.toml", LADDER);
    TestServer::start(&["--config", config.to_str().expect("utf-8")])
}

async fn get(server: &TestServer, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(server.url(path)).await.expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

async fn text(server: &TestServer, path: &str) -> String {
    let (status, body) = get(server, path).await;
    assert_eq!(status, 200, "{path}\n{}", server.log());
    String::from_utf8(body).expect("utf-8")
}

fn attr(text: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = text.find(&key)? + key.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_string())
}

/// Per video Representation of the MPD: its id, height, init and media templates, and the
/// numbers of its segments.
fn video_representations(mpd: &str) -> Vec<(String, u32, String, String, Vec<u64>)> {
    let video = mpd
        .split("<AdaptationSet")
        .find(|set| set.contains("contentType=\"video\""))
        .expect("a video AdaptationSet");
    video
        .split("<Representation")
        .skip(1)
        .map(|rep| {
            let id = attr(rep, "id").expect("id");
            let height = attr(rep, "height")
                .and_then(|h| h.parse().ok())
                .expect("height");
            let template = rep.split("<SegmentTemplate").nth(1).expect("a template");
            let start: u64 = attr(template, "startNumber")
                .and_then(|n| n.parse().ok())
                .expect("startNumber");
            let count = rep.split("<S ").skip(1).map(|s| {
                let s = format!(" {}", s.split("/>").next().unwrap_or_default());
                1 + attr(&s, "r")
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            let count: u64 = count.sum();
            (
                id,
                height,
                attr(template, "initialization").expect("initialization"),
                attr(template, "media").expect("media"),
                (start..start + count).collect(),
            )
        })
        .collect()
}

/// `relative` (an MPD's or playlist's URL) resolved against `base`, a path on the server.
fn resolve(base: &str, relative: &str) -> String {
    if relative.starts_with('/') {
        return relative.to_string();
    }
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for piece in relative.split('/') {
        match piece {
            ".." => {
                parts.pop();
            }
            "." => {}
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// `(key-frame pts times, frames)` of the video, and the audio packets' `(pts, size)`, of an
/// MP4 file as ffprobe reads it.
fn probe(path: &Path) -> (Vec<String>, usize, Vec<(String, String)>) {
    let streams = ffprobe_packets(path, "pts_time,size,flags");
    let mut keys = Vec::new();
    let mut frames = 0;
    let mut audio = Vec::new();
    for (kind, packets) in streams {
        for p in packets {
            // ffprobe's order: pts_time, size, flags.
            match kind.as_str() {
                "video" => {
                    frames += 1;
                    if p[2].starts_with('K') {
                        keys.push(p[0].clone());
                    }
                }
                "audio" => audio.push((p[0].clone(), p[1].clone())),
                _ => {}
            }
        }
    }
    (keys, frames, audio)
}

/// The MPD of `tv` once it lists three video Representations of five segments or more.
async fn three_rung_mpd(server: &TestServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(server, "/dash/tv/manifest.mpd").await;
        if status == 200 {
            let mpd = String::from_utf8(body).expect("utf-8");
            let reps = video_representations(&mpd);
            if reps.len() == 3 && reps.iter().all(|r| r.4.len() >= 5) {
                return mpd;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no three-rung MPD:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn every_rung_has_the_same_frames_and_key_frames_and_shares_the_audio() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let server = ladder_server();
    let mpd = three_rung_mpd(&server).await;
    let reps = video_representations(&mpd);
    let names: Vec<&str> = reps.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["360", "180", "90"], "{mpd}");
    assert!(mpd.matches("contentType=\"audio\"").count() == 1, "{mpd}");
    // The same segment numbers on every rung, the newest of each left out (it may still grow
    // on one and not another), and the first too (the audio that came before a rung's first
    // key frame is not in it, and which came first differs from rung to rung).
    let common: Vec<u64> = reps[0]
        .4
        .iter()
        .copied()
        .filter(|n| reps.iter().all(|r| r.4.contains(n)))
        .collect();
    let numbers = &common[common.len().saturating_sub(4).max(1)..common.len() - 1];
    assert_eq!(numbers.len(), 3, "{common:?}");
    let mut probed = Vec::new();
    for (id, height, init, media, _) in &reps {
        let base = "/dash/tv/manifest.mpd";
        let (status, mut joined) = get(&server, &resolve(base, init)).await;
        assert_eq!(status, 200, "{id}: {init}");
        let parsed = InitSegment::parse(bytes::Bytes::from(joined.clone()), 0).expect("init");
        assert_eq!(parsed.video().map(|v| u32::from(v.height)), Some(*height));
        for n in numbers {
            let path = resolve(base, &media.replace("$Number$", &n.to_string()));
            let (status, body) = get(&server, &path).await;
            assert_eq!(status, 200, "{id}: {path}");
            joined.extend(body);
        }
        // The rung's muxed segments too (video and the shared audio), from its own stream.
        let stream = if id == "360" {
            "tv".to_string()
        } else {
            format!("tv@{id}")
        };
        let mut muxed = get(&server, &format!("/dash/{stream}/init.mp4")).await.1;
        for n in numbers {
            let (status, body) = get(&server, &format!("/dash/{stream}/{n}.m4s")).await;
            assert_eq!(status, 200, "{stream} segment {n}");
            muxed.extend(body);
        }
        let path = temp_media(&format!("rung-{id}.mp4"), &[&muxed]);
        assert_eq!(ffmpeg_decode_errors(&path), None, "rung {id}");
        let video_only = temp_media(&format!("rung-{id}-video.mp4"), &[&joined]);
        assert_eq!(ffmpeg_decode_errors(&video_only), None, "rung {id}");
        probed.push((id.clone(), probe(&path), probe(&video_only)));
    }
    let (_, (keys, frames, audio), (video_keys, video_frames, _)) = &probed[0];
    assert!(*frames >= 90, "{frames} frames in three segments");
    assert!(keys.len() >= 3, "a key frame a segment at least: {keys:?}");
    assert_eq!((video_keys, video_frames), (keys, frames));
    // The audio frame that arrives with a segment's first key frame lands in that segment
    // or the one before, by which came first on each rung: the same audio packets over the
    // stretch every rung's segments cover, and at most a frame more or less at either end.
    let pts = |a: &[(String, String)], i: usize| a[i].0.parse::<f64>().unwrap_or(f64::NAN);
    let from = probed
        .iter()
        .map(|(_, (_, _, a), _)| pts(a, 0))
        .fold(f64::MIN, f64::max);
    let to = probed
        .iter()
        .map(|(_, (_, _, a), _)| pts(a, a.len() - 1))
        .fold(f64::MAX, f64::min);
    let within = |a: &[(String, String)]| -> Vec<(String, String)> {
        a.iter()
            .filter(|(t, _)| t.parse::<f64>().is_ok_and(|t| t >= from && t <= to))
            .cloned()
            .collect()
    };
    let shared = within(audio);
    assert!(
        shared.len() + 2 >= audio.len(),
        "{} of {} audio frames",
        shared.len(),
        audio.len()
    );
    for (id, (k, f, a), (vk, vf, _)) in &probed[1..] {
        assert_eq!((k, f), (keys, frames), "rung {id}: key frames and frames");
        assert_eq!((vk, vf), (keys, frames), "rung {id} through the MPD");
        assert!(
            a.len().abs_diff(audio.len()) <= 2,
            "rung {id}: {} audio frames",
            a.len()
        );
        assert_eq!(within(a), shared, "rung {id}: the audio is the top rung's");
    }
}

#[tokio::test]
async fn hls_lists_a_variant_per_rung_and_each_plays() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let server = ladder_server();
    let deadline = Instant::now() + Duration::from_secs(60);
    let index = loop {
        let (status, body) = get(&server, "/hls/tv/index.m3u8").await;
        let index = String::from_utf8(body).unwrap_or_default();
        if status == 200 && index.matches("#EXT-X-STREAM-INF").count() == 3 {
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "no three variants:\n{index}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // The shared audio: a rendition group, the top rung's audio track.
    let media = index
        .lines()
        .find(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .unwrap_or_else(|| panic!("no audio rendition:\n{index}"));
    assert!(
        media.contains("GROUP-ID=\"audio\"") && media.contains("URI=\"2/live.m3u8\""),
        "{media}"
    );
    for (resolution, uri) in [
        ("640x360", "1/live.m3u8"),
        ("320x180", "../tv@180/1/live.m3u8"),
        ("160x90", "../tv@90/1/live.m3u8"),
        ("audio", "2/live.m3u8"),
    ] {
        if resolution != "audio" {
            let line = index
                .lines()
                .zip(index.lines().skip(1))
                .find(|(_, next)| *next == uri)
                .map(|(line, _)| line)
                .unwrap_or_else(|| panic!("no variant {uri}:\n{index}"));
            assert!(line.contains(&format!("RESOLUTION={resolution}")), "{line}");
            assert!(
                line.contains("CODECS=\"avc1.") && line.contains(",mp4a.40.2\""),
                "{line}"
            );
            assert!(line.contains("AUDIO=\"audio\""), "{line}");
        }
        let path = resolve("/hls/tv/index.m3u8", uri);
        // Two complete segments of that variant, after its init.
        let playlist = loop {
            let playlist = text(&server, &path).await;
            if playlist.lines().filter(|l| l.ends_with(".m4s")).count() >= 2 {
                break playlist;
            }
            assert!(Instant::now() < deadline, "{path}: {playlist}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let map = playlist
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .and_then(|l| l.split('"').next())
            .expect("a map");
        let mut joined = get(&server, &resolve(&path, map)).await.1;
        for segment in playlist.lines().filter(|l| l.ends_with(".m4s")).take(2) {
            let (status, body) = get(&server, &resolve(&path, segment)).await;
            assert_eq!(status, 200, "{segment}");
            joined.extend(body);
        }
        // A part of the playlist too: that track's fragments of it.
        let part = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .filter_map(|l| l.split("URI=\"").nth(1))
            .filter_map(|l| l.split('"').next())
            .next()
            .unwrap_or_else(|| panic!("{uri}: no parts\n{playlist}"));
        let (status, part_bytes) = get(&server, &resolve(&path, part)).await;
        assert_eq!(status, 200, "{uri}: part {part}");
        assert!(!part_bytes.is_empty(), "{uri}: part {part} is empty");
        let file = temp_media(&format!("hls-{resolution}.mp4"), &[&joined]);
        assert_eq!(ffmpeg_decode_errors(&file), None, "{uri}");
        let frames = ffprobe_frames(&file);
        let (kind, at_least) = if resolution == "audio" {
            ("audio", 90)
        } else {
            ("video", 60)
        };
        assert!(
            frames.len() == 1 && frames.iter().any(|(k, n)| k == kind && *n >= at_least),
            "{uri}: one track, {kind}: {frames:?}"
        );
    }
}

#[tokio::test]
async fn the_websocket_serves_the_rung_asked_for() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("ladder-ws.toml", LADDER);
    let recordings = temp_dir("ladder-recordings");
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--record",
        recordings.to_str().expect("utf-8"),
    ]);
    for (asked, height) in [("", 360u16), ("?rendition=180", 180), ("?rendition=90", 90)] {
        let mut socket = ws::connect(&server.ws_url(&format!("/ws/tv{asked}"))).await;
        let (_, init) = ws::expect_init(&mut socket).await;
        let init = InitSegment::parse(init, 0).expect("init");
        assert_eq!(init.video().map(|v| v.height), Some(height), "{asked}");
        assert!(init.audio().is_some(), "{asked}: the shared audio");
        match ws::next(&mut socket, Duration::from_secs(10)).await {
            Some(Msg::Binary(_)) => {}
            other => panic!("{asked}: expected media, got {other:?}"),
        }
    }
    // A rung the ladder does not have: a clear refusal, naming those it has.
    let refused = reqwest::Client::new()
        .get(server.url("/ws/tv?rendition=1080"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 400);
    let body = refused.text().await.expect("body");
    assert!(body.contains("360, 180, 90"), "{body}");
    // The API lists the rungs, and the lower rungs' own streams say whose they are.
    let streams: serde_json::Value = reqwest::get(server.url("/api/streams"))
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let tv = streams
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "tv"))
        .expect("tv");
    let rungs: Vec<&str> = tv["renditions"]
        .as_array()
        .expect("renditions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(rungs, ["360", "180", "90"]);
    let lower = streams
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "tv@180"))
        .expect("tv@180");
    assert_eq!(lower["rendition_of"], "tv");
    // Every rung is recorded, each beside the others.
    let deadline = Instant::now() + Duration::from_secs(30);
    for rung in ["tv", "tv@180", "tv@90"] {
        let dir = recordings.join(rung);
        loop {
            let segments = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().extension().is_some_and(|x| x == "m4s"))
                        .count()
                })
                .unwrap_or(0);
            if segments >= 1 && dir.join("manifest.mpd").exists() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no recording of {rung} in {}:\n{}",
                dir.display(),
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A TCP stream whose reads take at most `rate` bytes a second (0: no limit), as a slow
/// link would: what the server sends beyond that waits in its queue.
struct Throttled {
    inner: tokio::net::TcpStream,
    rate: std::sync::Arc<std::sync::atomic::AtomicU64>,
    budget: f64,
    last: Instant,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for Throttled {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed) as f64;
        if rate == 0.0 {
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        // A tenth of a second's worth at most in one go.
        self.budget = (self.budget + elapsed * rate).min(rate / 10.0);
        if self.budget < 1024.0 {
            let wait = Duration::from_secs_f64((1024.0 - self.budget) / rate);
            let mut sleep = Box::pin(tokio::time::sleep(wait));
            let _ = sleep.as_mut().poll(cx);
            self.sleep = Some(sleep);
            return Poll::Pending;
        }
        let allowed = (self.budget as usize).min(buf.remaining());
        let mut limited = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(allowed));
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                buf.advance(n);
                self.budget -= n as f64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for Throttled {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Milliseconds behind the encoder of a fragment, by its `prft`.
fn lag_ms(bytes: &bytes::Bytes) -> Option<f64> {
    // The prft comes first, before the moof: size(4) type(4) version(1) flags(3) track(4)
    // ntp(8).
    if bytes.get(4..8)? != b"prft" {
        return None;
    }
    let ntp = u64::from_be_bytes(bytes.get(16..24)?.try_into().ok()?);
    let unix_ms = ((ntp >> 32) as f64 - 2_208_988_800.0) * 1000.0
        + ((ntp & 0xffff_ffff) as f64 / 4_294_967_296.0) * 1000.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64()
        * 1000.0;
    Some(now - unix_ms)
}

fn p95(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get((sorted.len() as f64 * 0.95) as usize)
        .or(sorted.last())
        .copied()
        .unwrap_or(f64::INFINITY)
}

#[tokio::test]
async fn a_throttled_viewer_moves_down_keeps_up_and_moves_back_up() {
    if !have_tool("ffmpeg") {
        return;
    }
    // A top rung well above the others, and quiet audio, so the lowest rung (with its
    // per-frame fragment headers, some 60 kbit/s) fits in a fifth of the top one.
    let config = temp_file(
        "ladder-auto.toml",
        "[[stream]]\nname = \"tv\"\nsource = \"testsrc\"\nwidth = 640\nheight = 360\n\
         preset = \"ultrafast\"\naudio_bitrate_kbps = 32\n\
         renditions = [{height = 360, video_bitrate_kbps = 1500}, \
         {height = 180, video_bitrate_kbps = 300}, {height = 90, video_bitrate_kbps = 80}]\n",
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    // The top rung's bitrate, once it has a segment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let top_bps = loop {
        let streams: serde_json::Value = reqwest::get(server.url("/api/streams"))
            .await
            .expect("api")
            .json()
            .await
            .expect("json");
        let bps = streams[0]["renditions"][0]["bitrate_bps"]
            .as_u64()
            .unwrap_or(0);
        let lowest = streams[0]["renditions"][2]["bitrate_bps"]
            .as_u64()
            .unwrap_or(0);
        if bps > 0 && lowest > 0 {
            assert!(
                lowest * 5 < bps,
                "the lowest rung {lowest} fits a fifth of {bps}"
            );
            break bps;
        }
        assert!(Instant::now() < deadline, "no bitrate:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Another viewer, unthrottled, all along.
    let url = server.ws_url("/ws/tv");
    let other = tokio::spawn(async move {
        let mut socket = ws::connect(&url).await;
        let mut lags = Vec::new();
        let until = Instant::now() + Duration::from_secs(25);
        while Instant::now() < until {
            if let Some(Msg::Binary(bytes)) = ws::next(&mut socket, Duration::from_secs(5)).await
                && let Some(lag) = lag_ms(&bytes)
            {
                lags.push(lag);
            }
        }
        lags
    });
    // The throttled one: a small receive buffer, reads at a fifth of the top rung's rate.
    let rate = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(top_bps / 8 / 5));
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("SO_RCVBUF");
    let addr: std::net::SocketAddr = server.addr.parse().expect("addr");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let tcp = tokio::net::TcpStream::from_std(socket.into()).expect("tokio");
    let throttled = Throttled {
        inner: tcp,
        rate: rate.clone(),
        budget: 0.0,
        last: Instant::now(),
        sleep: None,
    };
    let (mut socket, _) =
        tokio_tungstenite::client_async(server.ws_url("/ws/tv?rendition=auto"), throttled)
            .await
            .expect("handshake");
    let started = Instant::now();
    let mut rungs: Vec<(f64, String)> = Vec::new();
    let mut lags: Vec<(f64, f64)> = Vec::new();
    let mut lifted = None;
    let mut back_up = None;
    let until = started + Duration::from_secs(60);
    while Instant::now() < until {
        let at = started.elapsed().as_secs_f64();
        match ws::next(&mut socket, Duration::from_secs(10)).await {
            Some(Msg::Text(text)) if text["type"] == "rendition" => {
                assert_eq!(text["auto"], true, "{text}");
                let name = text["name"].as_str().unwrap_or_default().to_string();
                if lifted.is_some() && name == "360" {
                    back_up = Some(at);
                }
                rungs.push((at, name));
            }
            Some(Msg::Text(_)) => {}
            Some(Msg::Binary(bytes)) => {
                if let Some(lag) = lag_ms(&bytes) {
                    lags.push((at, lag));
                }
            }
            other => panic!("throttled viewer: {other:?}\n{}", server.log()),
        }
        if back_up.is_some() {
            break;
        }
        if lifted.is_none() && at >= 12.0 {
            rate.store(0, std::sync::atomic::Ordering::Relaxed);
            lifted = Some(at);
        }
    }
    eprintln!("rungs: {rungs:?}");
    assert_eq!(
        rungs.first().map(|r| r.1.as_str()),
        Some("360"),
        "{rungs:?}"
    );
    let down = rungs
        .iter()
        .find(|(_, name)| name != "360")
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("never moved down: {rungs:?}\n{}", server.log()));
    assert!(down <= 3.0, "moved down after {down:.1} s: {rungs:?}");
    // Settled: from 6 s to the lift, the lag at the socket stays within a second at p95.
    let settled: Vec<f64> = lags
        .iter()
        .filter(|(at, _)| *at >= 6.0 && lifted.is_none_or(|l| *at < l))
        .map(|(_, lag)| *lag)
        .collect();
    assert!(
        settled.len() >= 30,
        "{} fragments while throttled",
        settled.len()
    );
    let throttled_p95 = p95(&settled);
    eprintln!(
        "throttled viewer's lag p95 {throttled_p95:.0} ms over {} fragments",
        settled.len()
    );
    assert!(throttled_p95 <= 1000.0, "p95 {throttled_p95:.0} ms");
    let back_up = back_up.unwrap_or_else(|| panic!("never moved back up: {rungs:?}"));
    eprintln!(
        "moved down after {down:.1} s, back up {:.1} s after the lift",
        back_up - lifted.unwrap_or(0.0)
    );
    let other = other.await.expect("other viewer");
    let other_p95 = p95(&other);
    eprintln!(
        "the other viewer's lag p95 {other_p95:.0} ms over {} fragments",
        other.len()
    );
    assert!(
        other.len() >= 100 && other_p95 <= 500.0,
        "other viewer p95 {other_p95:.0} ms"
    );
}

/// A relay of the ladder carries every rung: its MPD lists them all, each decodes with the
/// frames and key frames the others have, and its WebSocket serves the rung asked for.
#[tokio::test]
async fn a_relay_carries_every_rung() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let origin = ladder_server();
    let relay_config = temp_file(
        "ladder-relay.toml",
        &format!(
            "[[stream]]\nname = \"tv\"\nsource = \"{}\"\nrenditions = [{{height = 360, \
             video_bitrate_kbps = 600}}, {{height = 180, video_bitrate_kbps = 200}}, \
             {{height = 90, video_bitrate_kbps = 80}}]\n",
            origin.ws_url("/ws/tv")
        ),
    );
    let relay = TestServer::start(&["--config", relay_config.to_str().expect("utf-8")]);
    let mpd = three_rung_mpd(&relay).await;
    let reps = video_representations(&mpd);
    let heights: Vec<u32> = reps.iter().map(|r| r.1).collect();
    assert_eq!(heights, [360, 180, 90], "{mpd}");
    let common: Vec<u64> = reps[0]
        .4
        .iter()
        .copied()
        .filter(|n| reps.iter().all(|r| r.4.contains(n)))
        .collect();
    assert!(
        common.len() >= 3,
        "segments every rung has: {common:?}\n{mpd}"
    );
    let numbers = &common[common.len() - 3..common.len() - 1];
    let mut rungs = Vec::new();
    for (id, height, init, media, _) in &reps {
        let base = "/dash/tv/manifest.mpd";
        let (status, mut joined) = get(&relay, &resolve(base, init)).await;
        assert_eq!(status, 200, "{id}: {init}");
        let parsed = InitSegment::parse(bytes::Bytes::from(joined.clone()), 0).expect("init");
        assert_eq!(parsed.video().map(|v| u32::from(v.height)), Some(*height));
        for n in numbers {
            let path = resolve(base, &media.replace("$Number$", &n.to_string()));
            let (status, body) = get(&relay, &path).await;
            assert_eq!(status, 200, "{id}: {path}");
            joined.extend(body);
        }
        let path = temp_media(&format!("relayed-rung-{id}.mp4"), &[&joined]);
        assert_eq!(ffmpeg_decode_errors(&path), None, "relayed rung {id}");
        let (keys, frames, _) = probe(&path);
        assert!(
            frames >= 45,
            "relayed rung {id}: {frames} frames in two segments"
        );
        rungs.push((id.clone(), keys, frames));
    }
    for (id, keys, frames) in &rungs[1..] {
        assert_eq!(
            (keys, frames),
            (&rungs[0].1, &rungs[0].2),
            "relayed rung {id}: the key frames and frames of the top rung"
        );
    }
    // Its WebSocket serves a lower rung, and its API lists the ladder.
    let mut socket = ws::connect(&relay.ws_url("/ws/tv?rendition=90")).await;
    let (_, init) = ws::expect_init(&mut socket).await;
    let init = InitSegment::parse(init, 0).expect("init");
    assert_eq!(init.video().map(|v| v.height), Some(90));
    match ws::next(&mut socket, Duration::from_secs(10)).await {
        Some(Msg::Binary(_)) => {}
        other => panic!("expected media from the relay's lowest rung, got {other:?}"),
    }
    // A rung the upstream does not have: the relay says why it cannot carry it.
    let wrong = temp_file(
        "ladder-relay-wrong.toml",
        &format!(
            "[[stream]]\nname = \"tv\"\nsource = \"{}\"\nrenditions = [{{height = 360, \
             video_bitrate_kbps = 600}}, {{height = 240, video_bitrate_kbps = 300}}]\n",
            origin.ws_url("/ws/tv")
        ),
    );
    let wrong = TestServer::start(&["--config", wrong.to_str().expect("utf-8")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wrong.log().contains("360, 180, 90") {
        assert!(
            Instant::now() < deadline,
            "the relay did not say which rungs the upstream has:\n{}",
            wrong.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = get(&wrong, "/ws/tv?rendition=360").await;
    assert_ne!(status, 500, "{}", wrong.log());
}

/// An on-demand ladder starts for a viewer of a lower rung, serves every rung, and stops when
/// nobody watches any of them; started again, its rungs' segment numbers still line up.
#[tokio::test]
async fn an_on_demand_ladder_runs_while_any_rung_is_watched() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file(
        "ladder-on-demand.toml",
        &format!("{LADDER}on_demand = true\nidle_timeout_secs = 1\n"),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let state = || async {
        let list: serde_json::Value = reqwest::get(server.url("/api/streams"))
            .await
            .expect("api")
            .json()
            .await
            .expect("json");
        list.as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "tv"))
            .map(|s| s["state"].as_str().unwrap_or_default().to_string())
            .expect("tv listed")
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state().await, "idle");
    assert!(
        ffmpeg_children(server.pid()).is_empty(),
        "ffmpeg runs unwatched"
    );
    for round in 0..2 {
        let mut viewer = ws::connect(&server.ws_url("/ws/tv@90")).await;
        let (_, init) = ws::expect_init(&mut viewer).await;
        let init = InitSegment::parse(init, 0).expect("init");
        assert_eq!(init.video().map(|v| v.height), Some(90), "round {round}");
        assert_eq!(ffmpeg_children(server.pid()).len(), 1, "round {round}");
        // Every rung is served while one is watched, with the same segment numbers.
        let mpd = three_rung_mpd(&server).await;
        let reps = video_representations(&mpd);
        for rep in &reps[1..] {
            assert_eq!(
                rep.4.first(),
                reps[0].4.first(),
                "round {round}: rung {} starts at another number\n{mpd}",
                rep.0
            );
        }
        drop(viewer);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(state().await == "idle" && ffmpeg_children(server.pid()).is_empty()) {
            assert!(
                Instant::now() < deadline,
                "round {round}: still running with nobody watching:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
