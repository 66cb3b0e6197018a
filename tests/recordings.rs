//! Recordings, watched: `/api/recordings/{name}` lists what the index on disk holds (at once
//! after a restart), `/recordings/{name}/clip.mp4` cuts a stretch at a key frame with byte
//! ranges, a source that dies leaves a gap between two spans, and the stream's read
//! permission guards all of it.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::Value;

const SECRET: &str = "recordings-test-secret-0123456789";

fn token(stream: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"streams": [stream], "action": "read", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("HS256 key"),
    )
    .expect("signing")
}

/// A config recording the small test pattern `cam` (read needs a token) in 1 s segments.
fn config(record: &Path) -> PathBuf {
    temp_file(
        "recordings.toml",
        &format!(
            "record = \"{}\"\nsegment_duration = 1.0\njwt_secret = \"{SECRET}\"\n{}read = \"token\"\n",
            record.display(),
            small_testsrc_config("cam")
        ),
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(server: &TestServer) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.url(""),
            token: token("cam"),
        }
    }

    async fn get(&self, path: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send().await.expect("request")
    }

    async fn listing(&self) -> Value {
        let response = self.get("/api/recordings/cam", None).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }
}

fn spans(listing: &Value) -> &Vec<Value> {
    listing["spans"].as_array().expect("spans")
}

fn field(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

/// Waits until the listing satisfies `done`, then returns it.
async fn wait_listing(
    client: &Client,
    server: &TestServer,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let listing = client.listing().await;
        if done(&listing) {
            return listing;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {listing}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The types of the top-level boxes of an MP4 file, in order.
fn top_level_boxes(file: &[u8]) -> Vec<String> {
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().expect("4 bytes")) as usize;
        let size = match size {
            1 if at + 16 <= file.len() => {
                u64::from_be_bytes(file[at + 8..at + 16].try_into().expect("8 bytes")) as usize
            }
            0 => file.len() - at,
            n => n,
        };
        boxes.push(String::from_utf8_lossy(&file[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "a box of {size} bytes at {at}");
        at += size;
    }
    assert_eq!(at, file.len(), "the boxes end with the file");
    boxes
}

async fn wait_for_log(server: &TestServer, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "{text:?} not logged:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn needs_ffmpeg() -> bool {
    if have_tool("ffmpeg") && have_tool("ffprobe") {
        return true;
    }
    assert!(!in_ci(), "ffmpeg and ffprobe are needed in CI");
    eprintln!("SKIPPED: ffmpeg or ffprobe not found");
    false
}

#[tokio::test]
async fn a_recording_is_listed_after_a_restart_and_cut_into_clips_at_key_frames() {
    if !needs_ffmpeg() {
        return;
    }
    let record = temp_dir("recordings");
    let config = config(&record);
    let args = ["--config", config.to_str().expect("utf-8")];
    let mut server = TestServer::start(&args);
    let client = Client::new(&server);
    wait_listing(&client, &server, 60, "20 recorded segments", |l| {
        field(l, "segments") >= 20
    })
    .await;
    server.interrupt();

    // Restarted over the folder, it knows what was recorded before it records anything.
    let (server, _stdin) = TestServer::start_on("127.0.0.1:0", &args);
    let client = Client::new(&server);
    let listing = client.listing().await;
    eprintln!("after the restart: {listing}");
    let first = &spans(&listing)[0];
    let (start_ms, end_ms) = (field(first, "start_ms"), field(first, "end_ms"));
    assert!(field(first, "segments") >= 20, "{listing}");
    assert!(
        (19_000..=30_000).contains(&(end_ms - start_ms)),
        "about 20 s recorded: {listing}"
    );
    assert!(
        first["start"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{first}"
    );
    assert!(listing["bytes"].as_u64().is_some_and(|b| b > 100_000));
    assert!(listing["limits"].is_object(), "{listing}");

    // Five seconds from the middle, the start given in Unix seconds, fragmented and as a
    // progressive file.
    let at = (start_ms + 7_300) as f64 / 1000.0;
    let fragmented = format!("/recordings/cam/clip.mp4?start={at:.3}&duration=5");
    for path in [fragmented.clone(), format!("{fragmented}&progressive=1")] {
        let response = client.get(&path, None).await;
        assert_eq!(response.status(), 200, "{path}: {}", server.log());
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "video/mp4");
        assert_eq!(headers["accept-ranges"], "bytes");
        let whole = response.bytes().await.expect("the clip");
        assert_eq!(
            headers["content-length"].to_str().ok(),
            Some(whole.len().to_string().as_str())
        );
        let boxes = top_level_boxes(&whole);
        if path.contains("progressive") {
            assert_eq!(boxes, ["ftyp", "moov", "mdat"], "{path}");
        } else {
            assert!(
                boxes.iter().filter(|b| *b == "moof").count() > 100,
                "{boxes:?}"
            );
        }
        let file = temp_dir("clip").join("clip.mp4");
        std::fs::write(&file, &whole).expect("writing the clip");
        let probed = ffprobe_frames(&file);
        let frames = probed
            .iter()
            .find(|(kind, _)| kind == "video")
            .map_or(0, |(_, n)| *n);
        eprintln!("{path}: {} bytes, {probed:?}", whole.len());
        assert!((120..=180).contains(&frames), "150 ± 30 frames: {probed:?}");
        assert!(
            probed.iter().any(|(kind, n)| kind == "audio" && *n > 150),
            "{probed:?}"
        );
        let packets = ffprobe_packets(&file, "flags");
        let video = &packets
            .iter()
            .find(|(kind, _)| kind == "video")
            .expect("a video stream")
            .1;
        assert!(
            video[0][0].contains('K'),
            "the clip starts at a key frame: {:?}",
            &video[..3]
        );
        if let Some(errors) = ffmpeg_decode_errors(&file) {
            panic!("{path} does not decode cleanly: {errors}");
        }
        // Audio and video start together and last about as long as was asked.
        let times = ffprobe_csv(
            &file,
            &["-show_entries", "stream=codec_type,start_time,duration"],
        );
        let times: Vec<(f64, f64)> = times
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let fields: Vec<f64> = l
                    .split(',')
                    .skip(1)
                    .map(|v| v.trim().parse().unwrap_or(-1.0))
                    .collect();
                (fields[0], fields[1])
            })
            .collect();
        eprintln!("  (start, duration) per stream: {times:?}");
        assert_eq!(times.len(), 2, "{times:?}");
        assert!((times[0].0 - times[1].0).abs() < 0.1, "{times:?}");
        if path.contains("progressive") {
            // Its own timeline from 0, the length of what was cut.
            assert!(times.iter().all(|(s, _)| *s < 0.1), "{times:?}");
            assert!(
                times.iter().all(|(_, d)| (4.5..=6.5).contains(d)),
                "{times:?}"
            );
        }

        // Its second half, by a range request, is exactly those bytes.
        let half = whole.len() / 2;
        let response = client.get(&path, Some(&format!("bytes={half}-"))).await;
        assert_eq!(response.status(), 206);
        assert_eq!(
            response.headers()["content-range"].to_str().ok(),
            Some(format!("bytes {half}-{}/{}", whole.len() - 1, whole.len()).as_str())
        );
        let second = response.bytes().await.expect("the second half");
        assert!(second == whole[half..], "the range differs from the clip");
        let response = client.get(&path, Some("bytes=100-199")).await;
        assert_eq!(response.status(), 206);
        assert!(response.bytes().await.expect("bytes") == whole[100..200]);
        let response = client
            .get(&path, Some(&format!("bytes={}-", whole.len())))
            .await;
        assert_eq!(response.status(), 416);
    }
    let path = fragmented;

    // The same stretch as manifests over the recording's files, the token given once on the
    // manifest's URL and carried on to every file: ffprobe reads every frame of its segments.
    let token = client.token.clone();
    let end = at + 5.0;
    for manifest in ["dash/cam/manifest.mpd", "hls/cam/index.m3u8"] {
        let url = server.url(&format!(
            "/{manifest}?token={token}&start={at:.3}&end={end:.3}"
        ));
        let text = reqwest::get(&url)
            .await
            .expect("request")
            .text()
            .await
            .expect("text");
        assert!(text.contains("/recordings/cam/"), "{text}");
        if manifest.ends_with("m3u8") {
            assert!(
                text.contains("#EXT-X-ENDLIST"),
                "a stretch that ended: {text}"
            );
        } else {
            assert!(text.contains("type=\"static\""), "{text}");
        }
        let probed = ffprobe_frames(Path::new(&url));
        eprintln!("{manifest} of 5 s: {probed:?}");
        let frames = probed
            .iter()
            .find(|(kind, _)| kind == "video")
            .map_or(0, |(_, n)| *n);
        // Whole segments of 1 s: from the one the start falls in to the one the end does.
        assert!((150..=200).contains(&frames), "{manifest}: {probed:?}");
    }
    let response = client
        .get(
            &format!("/dash/cam/manifest.mpd?start={end}&end={at}"),
            None,
        )
        .await;
    assert_eq!(response.status(), 400);
    let response = client
        .get("/hls/cam/index.m3u8?start=1000&end=2000", None)
        .await;
    assert_eq!(response.status(), 404);
    let response = client
        .get("/recordings/cam/..%2Fsegments.jsonl", None)
        .await;
    assert_eq!(response.status(), 404);
    let response = client.get("/recordings/cam/segments.jsonl", None).await;
    assert_eq!(response.status(), 404);

    // The span's own start, in RFC 3339, percent-encoded as a browser would.
    let rfc = first["start"].as_str().expect("start").replace(':', "%3A");
    let response = client
        .get(
            &format!("/recordings/cam/clip.mp4?start={rfc}&duration=2"),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("bytes").len() > 10_000);

    // Outside what is kept: 404 with the spans there are; malformed: 400.
    let response = client
        .get("/recordings/cam/clip.mp4?start=1000&duration=5", None)
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON");
    assert!(!spans(&body).is_empty(), "{body}");
    for bad in [
        "start=yesterday&duration=5",
        "start=2026-13-01T00:00:00Z&duration=5",
        &format!("start={at}&duration=-1"),
        &format!("start={at}"),
        "duration=5",
    ] {
        let response = client
            .get(&format!("/recordings/cam/clip.mp4?{bad}"), None)
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }

    // Segments removed (as rotation would) while a long clip is being sent: the answer ends
    // short of its Content-Length, the server logs it and serves on.
    let long = format!(
        "/recordings/cam/clip.mp4?start={:.3}&duration=15",
        (start_ms + 2_000) as f64 / 1000.0
    );
    let mut response = client.get(&long, None).await;
    assert_eq!(response.status(), 200);
    let promised: usize = response.headers()["content-length"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    let dir = record.join("cam");
    for entry in std::fs::read_dir(&dir).expect("the folder").flatten() {
        if entry.path().extension().is_some_and(|e| e == "m4s") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut got = 0usize;
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => break "the whole body",
            Err(_) => break "a cut",
        }
    };
    eprintln!("clip with its segments removed: {got} of {promised} bytes, then {ended}");
    assert!(
        got < promised && ended == "a cut",
        "{got} of {promised}: {ended}"
    );
    wait_for_log(&server, "while it was sent").await;
    assert_eq!(client.get("/api/recordings/cam", None).await.status(), 200);

    // The stream's read permission guards its recording.
    let anonymous = reqwest::get(server.url("/api/recordings/cam"))
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let anonymous = reqwest::get(server.url(&path)).await.expect("request");
    assert_eq!(anonymous.status(), 401);
    let response = client.get("/api/recordings/nosuch", None).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_source_that_dies_leaves_a_gap_between_two_spans() {
    if !needs_ffmpeg() {
        return;
    }
    let record = temp_dir("recordings-gap");
    let config = config(&record);
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let client = Client::new(&server);
    wait_listing(&client, &server, 60, "4 recorded segments", |l| {
        field(l, "segments") >= 4
    })
    .await;
    let children = ffmpeg_children(server.pid());
    assert!(!children.is_empty(), "no ffmpeg under the server");
    for pid in children {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let listing = wait_listing(&client, &server, 60, "a second span", |l| {
        spans(l).len() >= 2 && field(&spans(l)[1], "segments") >= 3
    })
    .await;
    eprintln!("after ffmpeg was killed: {listing}");
    let (a, b) = (&spans(&listing)[0], &spans(&listing)[1]);
    assert!(field(a, "segments") >= 4, "{listing}");
    assert!(
        field(b, "start_ms") >= field(a, "end_ms") + 500,
        "the spans are apart: {listing}"
    );
    // From the second span on, with no end: an EVENT playlist, still growing.
    let response = client
        .get(
            &format!(
                "/hls/cam/index.m3u8?start={}",
                field(b, "start_ms") as f64 / 1000.0
            ),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let playlist = response.text().await.expect("text");
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !playlist.contains("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    // A clip asked for in the gap is a 404 naming both spans.
    let gap = (field(a, "end_ms") + field(b, "start_ms")) / 2;
    let response = client
        .get(
            &format!(
                "/recordings/cam/clip.mp4?start={}&duration=1",
                gap as f64 / 1000.0
            ),
            None,
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON");
    assert!(spans(&body).len() >= 2, "{body}");
}
