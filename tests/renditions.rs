//! A ladder of renditions from our ffmpeg: every rung's DASH and HLS segments decode with the
//! same frames and key frames at the same times, the audio is the same on every rung, and
//! the WebSocket serves the rung asked for.

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

#[tokio::test]
async fn every_rung_has_the_same_frames_and_key_frames_and_shares_the_audio() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let server = ladder_server();
    // Three complete segments on every rung.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mpd = loop {
        let (status, body) = get(&server, "/dash/tv/manifest.mpd").await;
        if status == 200 {
            let mpd = String::from_utf8(body).expect("utf-8");
            let reps = video_representations(&mpd);
            if reps.len() == 3 && reps.iter().all(|r| r.4.len() >= 4) {
                break mpd;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no three-rung MPD:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let reps = video_representations(&mpd);
    let names: Vec<&str> = reps.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["360", "180", "90"], "{mpd}");
    assert!(mpd.matches("contentType=\"audio\"").count() == 1, "{mpd}");
    // The same segment numbers on every rung, the newest of each left out (it may still grow
    // on one and not another).
    let common: Vec<u64> = reps[0]
        .4
        .iter()
        .copied()
        .filter(|n| reps.iter().all(|r| r.4.contains(n)))
        .collect();
    let numbers = &common[common.len().saturating_sub(4)..common.len() - 1];
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
    for (id, (k, f, a), (vk, vf, _)) in &probed[1..] {
        assert_eq!((k, f), (keys, frames), "rung {id}: key frames and frames");
        assert_eq!((vk, vf), (keys, frames), "rung {id} through the MPD");
        assert_eq!(a, audio, "rung {id}: the audio is the top rung's");
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
    for (resolution, uri) in [
        ("640x360", "live.m3u8"),
        ("320x180", "../tv@180/live.m3u8"),
        ("160x90", "../tv@90/live.m3u8"),
    ] {
        let line = index
            .lines()
            .zip(index.lines().skip(1))
            .find(|(_, next)| *next == uri)
            .map(|(line, _)| line)
            .unwrap_or_else(|| panic!("no variant {uri}:\n{index}"));
        assert!(line.contains(&format!("RESOLUTION={resolution}")), "{line}");
        assert!(line.contains("CODECS=\"avc1."), "{line}");
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
        let file = temp_media(&format!("hls-{resolution}.mp4"), &[&joined]);
        assert_eq!(ffmpeg_decode_errors(&file), None, "{uri}");
        let frames = ffprobe_frames(&file);
        assert!(
            frames.iter().any(|(k, n)| k == "video" && *n >= 60)
                && frames.iter().any(|(k, _)| k == "audio"),
            "{uri}: {frames:?}"
        );
    }
}

#[tokio::test]
async fn the_websocket_serves_the_rung_asked_for() {
    if !have_tool("ffmpeg") {
        return;
    }
    let config = temp_file("ladder-ws.toml", LADDER);
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
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
}
