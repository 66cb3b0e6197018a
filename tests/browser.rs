//! Real browsers against the real server: headless Chromium (driven by playwright-core from
//! npm, scripts in tests/browser/) and headless Firefox (through geckodriver's WebDriver).
//! With `CI` set, a missing browser, Node.js or geckodriver fails these tests; elsewhere they
//! are skipped with a loud message.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

/// One browser at a time: two software decoders at once on two cores skew every figure.
static SERIAL: Mutex<()> = Mutex::new(());

fn found(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn missing(what: &str) -> bool {
    if in_ci() {
        panic!("{what} is required in CI (CI is set) but was not found");
    }
    eprintln!("\n*** SKIPPING: {what} not found; install it to run this browser test ***\n");
    true
}

/// Node.js with the npm packages of tests/browser installed (once per test run), and Chromium.
fn chromium_ready() -> bool {
    if !found("node", "--version") {
        return !missing("Node.js");
    }
    if !["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|c| found(c, "--version"))
        && std::env::var("CHROMIUM").is_err()
    {
        return !missing("Chromium (Debian package chromium)");
    }
    node_modules_ready()
}

/// Runs a scenario script; returns its RESULT, or panics with its FAIL and the server's log.
fn scenario(server: &TestServer, script: &str, extra: &[&str]) -> serde_json::Value {
    let url = server.url("");
    let mut args = vec![script, "--url", url.trim_end_matches('/')];
    args.extend_from_slice(extra);
    let out = Command::new("node")
        .args(&args)
        .current_dir(browser_dir())
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))
        && out.status.success()
    {
        eprintln!("{script}: {line}");
        return serde_json::from_str(line).expect("RESULT is JSON");
    }
    panic!(
        "{script} failed:\n{stdout}\n{stderr}\n--- server log ---\n{}",
        server.log()
    );
}

fn testsrc_server() -> TestServer {
    testsrc_server_with(&[])
}

/// The test pattern at 640x360, with `extra` server arguments (`--ingest fmp4`).
fn testsrc_server_with(extra: &[&str]) -> TestServer {
    testsrc_server_configured("", extra, None)
}

/// The test pattern at 640x360; `settings` go at the top of its config file, and `token`
/// is what the wait for its first segment needs, if the stream needs one.
fn testsrc_server_configured(settings: &str, extra: &[&str], token: Option<&str>) -> TestServer {
    let config = temp_file(
        "browser.toml",
        &format!(
            "{settings}[[stream]]\nname = \"live\"\nsource = \"testsrc\"\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n"
        ),
    );
    let mut args = vec!["--config", config.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    // Wait for a complete segment, so a browser's first seconds are not spent on ffmpeg's
    // start-up, and a player's first manifest request is not answered "not yet".
    let deadline = Instant::now() + Duration::from_secs(30);
    let manifest = match token {
        Some(token) => format!("/dash/live/manifest.mpd?token={token}"),
        None => "/dash/live/manifest.mpd".to_string(),
    };
    while http_status(&server.addr, &manifest) != Some(200) {
        assert!(Instant::now() < deadline, "no MPD; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// `/watch/live?player=PLAYER` plays, runs `expect`, measures a latency and comes back from a
/// hidden tab; with WebCodecs, sound is decoded and, once turned on, in sync with the picture.
fn plays_the_watch_page(player: &str, expect: &str) -> serde_json::Value {
    plays_the_watch_page_with(player, expect, &[])
}

fn plays_the_watch_page_with(
    player: &str,
    expect: &str,
    server_args: &[&str],
) -> serde_json::Value {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server_with(server_args);
    let result = scenario(
        &server,
        "watch.mjs",
        &["--stream", "live", "--player", player, "--expect", expect],
    );
    assert!(
        result["firstFrameMs"].as_f64().unwrap_or(f64::MAX) <= 5000.0,
        "{result}"
    );
    assert!(
        result["advanced"].as_f64().unwrap_or(0.0) >= 3.0,
        "{result}"
    );
    assert!(result["latencyMs"].as_f64().is_some(), "{result}");
    assert_eq!(result["stats"]["mode"], expect, "{result}");
    result
}

#[test]
fn chromium_plays_the_watch_page_with_webcodecs() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let result = plays_the_watch_page("webcodecs", "webcodecs");
    let sync = result["sound"]["avSyncMs"]
        .as_array()
        .expect("A/V sync samples");
    assert!(
        sync.iter()
            .all(|ms| ms.as_f64().is_some_and(|ms| ms.abs() <= 40.0)),
        "{result}"
    );
    assert!(result["sound"]["decoded"].as_u64() > Some(100), "{result}");
}

#[test]
fn chromium_plays_the_watch_page_with_mse() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    plays_the_watch_page("mse", "mse");
}

/// The same pages fed by ffmpeg's own fMP4 (`--ingest fmp4`) instead of the FLV ingest.
#[test]
fn chromium_plays_both_players_with_the_fmp4_ingest() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    for player in ["webcodecs", "mse"] {
        plays_the_watch_page_with(player, player, &["--ingest", "fmp4"]);
    }
}

#[test]
fn chromium_auto_picks_webcodecs_where_it_decodes_the_stream() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    plays_the_watch_page("auto", "webcodecs");
}

#[test]
fn chromium_auto_falls_back_to_mse_without_webcodecs_or_its_codec() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let result = scenario(&server, "fallback.mjs", &["--stream", "live"]);
    for case in ["no VideoDecoder", "codec refused"] {
        assert_eq!(result[case]["mode"], "mse", "{result}");
    }
}

fn recovers_from_a_source_restart(player: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let pid = server.pid().to_string();
    let result = scenario(
        &server,
        "restart.mjs",
        &["--stream", "live", "--server-pid", &pid, "--player", player],
    );
    assert!(result["generation"].as_u64() >= Some(2), "{result}");
    assert_eq!(result["mode"], player, "{result}");
}

#[test]
fn chromium_webcodecs_recovers_without_a_reload_when_the_source_restarts() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    recovers_from_a_source_restart("webcodecs");
}

#[test]
fn chromium_mse_recovers_without_a_reload_when_the_source_restarts() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    recovers_from_a_source_restart("mse");
}

#[test]
fn chromium_webcodecs_reports_bad_media_in_the_page_and_plays_on() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let result = scenario(
        &server,
        "corrupt.mjs",
        &["--stream", "live", "--player", "webcodecs"],
    );
    assert!(
        result["shown"]
            .as_str()
            .is_some_and(|s| s.contains("Unreadable media")),
        "{result}"
    );
    assert_eq!(result["mode"], "webcodecs", "{result}");
}

/// One packet as ffprobe reads it: pts, dts, size, key frame.
type Packet = (i64, i64, u64, bool);

/// Per stream as ffprobe reads `path`: (codec_type, packets).
fn packets(path: &Path) -> Vec<(String, Vec<Packet>)> {
    ffprobe_packets(path, "pts,dts,size,flags")
        .into_iter()
        .map(|(kind, packets)| {
            let packets = packets
                .iter()
                .map(|p| {
                    let [pts, dts, size, flags] = &p[..] else {
                        panic!("unexpected ffprobe packet fields {p:?}");
                    };
                    (
                        pts.parse().expect("pts"),
                        dts.parse().expect("dts"),
                        size.parse().expect("size"),
                        flags.starts_with('K'),
                    )
                })
                .collect();
            (kind, packets)
        })
        .collect()
}

#[test]
fn chromium_demuxes_our_fragments_as_ffprobe_reads_them() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let get = |path: String| {
        runtime.block_on(async {
            reqwest::get(server.url(&path))
                .await
                .and_then(|r| r.error_for_status())
                .expect("GET")
                .bytes()
                .await
                .expect("body")
        })
    };
    let mpd = String::from_utf8(get("/dash/live/manifest.mpd".into()).to_vec()).expect("utf-8");
    let sets = parse_mpd(&mpd);
    let number = sets[0].start_number + sets[0].timeline.len() as u64 - 1;
    let init = get("/dash/live/init.mp4".into());
    let segment = get(format!("/dash/live/{number}.m4s"));
    let number = number.to_string();
    let result = scenario(
        &server,
        "demux.mjs",
        &["--stream", "live", "--segment", &number],
    );

    for (set, track) in sets
        .iter()
        .zip(result["tracks"].as_array().expect("tracks"))
    {
        assert_eq!(track["codec"], set.codecs.as_str(), "{result}");
        assert!(track["descriptionBytes"].as_u64() > Some(0), "{result}");
    }
    assert_eq!(result["supported"]["video"], true, "{result}");
    assert_eq!(result["supported"]["audio"], true, "{result}");
    assert!(
        result["damage"]["counts"]["Mp4Error"].as_u64() > Some(100),
        "{result}"
    );

    let path = temp_media("demuxed.mp4", &[&init, &segment]);
    for (kind, packets) in packets(&path) {
        let ours = &result["samples"][kind.as_str()];
        let column = |name: &str| ours[name].as_array().expect("a list").clone();
        let (pts, dts, sizes, keys) = (
            column("pts"),
            column("dts"),
            column("sizes"),
            column("keys"),
        );
        assert_eq!(
            packets.len(),
            sizes.len(),
            "{kind}: ffprobe and fmp4.js count samples apart"
        );
        assert!(packets.len() > 10, "{kind}: only {} samples", packets.len());
        for (i, (p, d, size, key)) in packets.iter().enumerate() {
            assert_eq!(sizes[i].as_u64(), Some(*size), "{kind} sample {i} size");
            assert_eq!(dts[i].as_i64(), Some(*d), "{kind} sample {i} dts");
            assert_eq!(pts[i].as_i64(), Some(*p), "{kind} sample {i} pts");
            assert_eq!(keys[i].as_bool(), Some(*key), "{kind} sample {i} key flag");
        }
        eprintln!("{kind}: {} samples match ffprobe", packets.len());
    }
}

/// dash.js or hls.js (from npm) plays the server's DASH or HLS in its low-latency mode, from
/// a stream that needs a token: given once on the manifest's URL, the server carries it on
/// to every segment and part.
fn third_party_player_plays(player: &str) -> serde_json::Value {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let token = read_token(&["live"], unix_now() + 3600);
    let server = testsrc_server_configured(
        &format!("jwt_secret = \"{TOKEN_SECRET}\"\nread = \"token\"\n"),
        &[],
        Some(&token),
    );
    let result = scenario(
        &server,
        "dash.mjs",
        &["--stream", "live", "--player", player, "--token", &token],
    );
    assert!(
        result["advanced"].as_f64().unwrap_or(0.0) >= 3.5,
        "{result}"
    );
    assert_eq!(
        result["lowLatency"], true,
        "{player} not in low-latency mode: {result}"
    );
    assert!(result["frameLatencyMs"].as_f64().is_some(), "{result}");
    result
}

#[test]
fn dash_js_plays_the_live_mpd_in_low_latency_mode() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    third_party_player_plays("dash");
}

#[test]
fn hls_js_plays_the_ll_hls_playlists_in_low_latency_mode() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let result = third_party_player_plays("hls");
    assert!(result["parts"].as_u64() > Some(0), "{result}");
}

/// The sample clip over plain http and over https (self-signed, also named `wsls.test`):
/// (plain server, TLS server, the TLS certificate's SPKI hash).
fn plain_and_tls_servers() -> (TestServer, TestServer, String) {
    let plain = TestServer::start(&["--stream", "live=sample"]);
    let state = temp_dir("browser-tls");
    let config = temp_file("browser-tls.toml", "tls_names = [\"wsls.test\"]\n");
    let tls = TestServer::start(&[
        "--stream",
        "live=sample",
        "--tls-self-signed",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let spki = log_field(&tls.log(), "TLS certificate", "spki_sha256").expect("SPKI hash");
    (plain, tls, spki)
}

fn port(server: &TestServer) -> &str {
    server.addr.rsplit(':').next().expect("port")
}

/// A page reached by name is a secure context over https alone: `auto` picks MSE over http
/// (and says why) and WebCodecs over https, the certificate trusted by its SPKI hash.
#[test]
fn chromium_auto_picks_mse_over_http_and_webcodecs_over_https() {
    if !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plain, tls, spki) = plain_and_tls_servers();
    let http = format!("http://wsls.test:{}", port(&plain));
    let https = format!("https://wsls.test:{}", port(&tls));
    let result = scenario(
        &tls,
        "tls.mjs",
        &["--http", &http, "--https", &https, "--spki", &spki],
    );
    assert_eq!(result["http"]["secure"], false, "{result}");
    assert_eq!(result["https"]["secure"], true, "{result}");
    assert_eq!(result["https"]["mode"], "webcodecs", "{result}");
}

const TOKEN_SECRET: &str = "the browser tests' HS256 secret, 32 bytes";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A read token for `streams` until `exp`, signed with [`TOKEN_SECRET`].
fn read_token(streams: &[&str], exp: u64) -> String {
    let claims = serde_json::json!({"streams": streams, "action": "read", "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()).expect("key"),
    )
    .expect("signing")
}

/// The watch page with tokens: good plays, missing and expired are shown and not retried, a
/// token running out is renewed through the page (or ends with the expiry message).
#[test]
fn chromium_watch_page_takes_a_token_shows_refusals_and_renews() {
    if !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = temp_file(
        "browser-token.toml",
        &format!(
            "jwt_secret = \"{TOKEN_SECRET}\"\n[[stream]]\nname = \"cam\"\nsource = \"sample\"\nread = \"token\"\n"
        ),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let now = unix_now();
    let short_exp = now + 8;
    let result = scenario(
        &server,
        "token.mjs",
        &[
            "--stream",
            "cam",
            "--good",
            &read_token(&["cam"], now + 3600),
            "--expired",
            &read_token(&["cam"], now - 60),
            "--short",
            &read_token(&["cam"], short_exp),
            "--renewal",
            &read_token(&["cam"], now + 3600),
            "--shortExp",
            &short_exp.to_string(),
        ],
    );
    assert!(
        result["renewed"]["advanced"].as_f64() >= Some(1.0),
        "{result}"
    );
    assert!(
        result["lapsed"]
            .as_str()
            .is_some_and(|s| s.contains("expired")),
        "{result}"
    );
}

/// Chromium's fake camera published from `/publish/cam` (WebCodecs, H.264 and AAC or Opus over
/// `/ws/publish/cam`) while another window watches with each player; meanwhile a viewer of our
/// own records the stream, which ffprobe decodes.
#[test]
fn chromium_publishes_its_camera_while_another_window_watches() {
    if !have_tool("ffprobe") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = temp_file(
        "browser-publish.toml",
        "[[stream]]\nname = \"cam\"\nsource = \"publish\"\npublish = \"public\"\n",
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let url = server.ws_url("/ws/cam");
    let recorder = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let mut socket = common::ws::connect(&url).await;
                let (_, init) = common::ws::expect_init(&mut socket).await;
                let mut media = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(4);
                while Instant::now() < deadline {
                    match common::ws::next(&mut socket, Duration::from_secs(5)).await {
                        Some(common::ws::Msg::Binary(bytes)) => media.push(bytes),
                        Some(common::ws::Msg::Text(_)) => {}
                        _ => break,
                    }
                }
                (init, media)
            })
    });
    let result = scenario(&server, "publish.mjs", &["--stream", "cam"]);
    assert!(
        result["webcodecs"]["advanced"].as_f64() >= Some(1.5),
        "{result}"
    );
    assert!(result["mse"]["advanced"].as_f64() >= Some(1.5), "{result}");
    let (init, media) = recorder.join().expect("recorder");
    let path = temp_media("browser-published.mp4", &[&init, &media.concat()]);
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let probed = String::from_utf8_lossy(&out.stdout).to_string();
    let video_frames = probed
        .lines()
        .find_map(|l| l.strip_prefix("h264,"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(video_frames >= Some(60), "ffprobe: {probed}");
    assert!(
        probed
            .lines()
            .any(|l| l.starts_with("opus,") || l.starts_with("aac,")),
        "ffprobe: {probed}"
    );
}

/// geckodriver on a free port, killed when dropped.
struct Gecko {
    child: Child,
    base: String,
}

impl Drop for Gecko {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn firefox_binary() -> Option<&'static str> {
    ["firefox-esr", "firefox"]
        .into_iter()
        .find(|f| found(f, "--version"))
}

async fn webdriver(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = client
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    let value: serde_json::Value = response.json().await.expect("WebDriver answers JSON");
    if value["value"]["error"].is_string() {
        panic!("WebDriver {url}: {}", value["value"]);
    }
    value["value"].clone()
}

#[test]
fn firefox_plays_the_watch_page() {
    // The lock is held outside the runtime: one browser at a time.
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            if !have_tool("ffmpeg") {
                return;
            }
            firefox_scenario(&testsrc_server(), &["mse", "webcodecs"]).await
        });
}

/// Firefox over https, its certificate (self-signed) accepted through WebDriver.
#[test]
fn firefox_plays_the_watch_page_over_https() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let (_plain, tls, _) = plain_and_tls_servers();
            assert!(tls.url("").starts_with("https://"));
            firefox_scenario(&tls, &["webcodecs"]).await
        });
}

/// The watch page in headless Firefox with each of `players`.
async fn firefox_scenario(server: &TestServer, players: &[&str]) {
    let Some(firefox) = firefox_binary() else {
        missing("Firefox (Debian package firefox-esr)");
        return;
    };
    if !found("geckodriver", "--version") {
        missing("geckodriver (cargo install geckodriver)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let gecko = Gecko {
        child: Command::new("geckodriver")
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting geckodriver"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get(format!("{}/status", gecko.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "geckodriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = webdriver(
        &client,
        reqwest::Method::POST,
        &format!("{}/session", gecko.base),
        serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "firefox",
            "acceptInsecureCerts": true,
            "moz:firefoxOptions": {
                "binary": firefox,
                "args": ["-headless"],
                "prefs": {"media.autoplay.default": 0}
            }
        }}}),
    )
    .await;
    let id = session["sessionId"]
        .as_str()
        .expect("session id")
        .to_string();
    let session_url = format!("{}/session/{id}", gecko.base);
    let state = |client: reqwest::Client, url: String| async move {
        webdriver(
            &client,
            reqwest::Method::POST,
            &format!("{url}/execute/sync"),
            serde_json::json!({"script": "const v = document.querySelector('video'); \
                return {time: window.wslive ? window.wslive.position() : 0, error: v.error && v.error.code, \
                banner: document.getElementById('error').hidden ? null : document.getElementById('error').textContent, \
                stats: window.wslive && window.wslive.stats()};", "args": []}),
        )
        .await
    };
    // Firefox has MSE, and WebCodecs decoders for H.264 and AAC.
    for &player in players {
        webdriver(
            &client,
            reqwest::Method::POST,
            &format!("{session_url}/url"),
            serde_json::json!({"url": server.url(&format!("/watch/live?player={player}"))}),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            let s = state(client.clone(), session_url.clone()).await;
            if s["time"].as_f64().unwrap_or(0.0) > 0.0 && !s["stats"]["joinMs"].is_null() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "Firefox never played with {player}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        let later = state(client.clone(), session_url.clone()).await;
        let advanced =
            later["time"].as_f64().unwrap_or(0.0) - first["time"].as_f64().unwrap_or(0.0);
        eprintln!("Firefox, {player}: {later}");
        assert!(
            advanced >= 3.0,
            "Firefox ({player}) advanced {advanced} s in 4 s: {later}"
        );
        assert_eq!(later["stats"]["mode"], player, "{later}");
        assert!(
            later["error"].is_null() && later["banner"].is_null(),
            "{later}"
        );
        assert!(
            later["stats"]["latencyMs"].is_number(),
            "no latency in Firefox ({player}): {later}"
        );
    }
    let _ = client.delete(&session_url).send().await;
}

/// dash.js and hls.js play to its end what `package` wrote from an everyday file (progressive,
/// B-frames with their edit list, AAC), in the live profile (DASH and HLS) and the on-demand
/// one (byte ranges of one file per track), with every frame decoded.
#[test]
fn dash_js_and_hls_js_play_what_package_wrote_to_the_end() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let input = temp_dir("packaged-in").join("everyday.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
        ])
        .args(["-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&input)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not write the input");
    // The same six seconds written by other muxers: mediabunny (progressive), mux.js (a
    // track a moof, from MPEG-TS), mp4box.js (its segmenter's per-track moofs), and
    // GStreamer's mp4mux.
    let ts = temp_dir("packaged-in").join("everyday.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not write the TS");
    let muxed = temp_dir("packaged-muxers");
    let out = Command::new("node")
        .arg("muxers.mjs")
        .arg("--input-mp4")
        .arg(&input)
        .arg("--input-ts")
        .arg(&ts)
        .arg("--out")
        .arg(&muxed)
        .current_dir(browser_dir())
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "muxers.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut inputs = vec![("ffmpeg", input.clone())];
    for (muxer, file) in [
        ("mediabunny", "mediabunny-moov-last.mp4"),
        ("mux.js", "muxjs.mp4"),
        ("mp4box.js", "mp4box-segmented.mp4"),
    ] {
        let path = muxed.join(file);
        assert!(path.exists(), "muxers.mjs wrote no {file}");
        inputs.push((muxer, path));
    }
    if have_tool_with("gst-launch-1.0", "--version") {
        let path = temp_dir("packaged-in").join("gst-mp4mux.mp4");
        let pipeline = format!(
            "videotestsrc num-buffers=180 ! video/x-raw,width=640,height=360,framerate=30/1 ! \
             x264enc key-int-max=30 bframes=2 ! h264parse ! mp4mux name=mux ! filesink \
             location={} audiotestsrc num-buffers=282 ! audio/x-raw,rate=48000 ! voaacenc ! \
             aacparse ! mux.",
            path.display()
        );
        let out = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .output()
            .expect("gst-launch-1.0");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        inputs.push(("GStreamer mp4mux", path));
    }
    let mut plays = Vec::new();
    for (muxer, path) in &inputs {
        plays.push((*muxer, path.clone(), "live", "manifest.mpd", "dash"));
        plays.push((*muxer, path.clone(), "live", "index.m3u8", "hls"));
    }
    plays.push(("ffmpeg", input.clone(), "onDemand", "manifest.mpd", "dash"));
    plays.push(("ffmpeg", input.clone(), "onDemand", "index.m3u8", "hls"));
    for (n, (muxer, input, profile, manifest, player)) in plays.into_iter().enumerate() {
        let out_dir = temp_dir("packaged-out").join(format!("{n}-{profile}-{player}"));
        let packaged = Command::new(BIN)
            .args(["package", input.to_str().expect("utf-8"), "--out"])
            .arg(&out_dir)
            .args(["--profile", profile])
            .output()
            .expect("package");
        assert!(
            packaged.status.success(),
            "{muxer}: {}",
            String::from_utf8_lossy(&packaged.stderr)
        );
        let out = Command::new("node")
            .args(["packaged.mjs", "--dir"])
            .arg(&out_dir)
            .args(["--manifest", manifest, "--player", player])
            .current_dir(browser_dir())
            .output()
            .expect("running node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| {
                panic!(
                    "{player} on the {profile} profile of {muxer}'s file failed:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        eprintln!("packaged.mjs {muxer} {player} {profile}: {line}");
        let result: serde_json::Value = serde_json::from_str(line).expect("RESULT is JSON");
        let duration = result["duration"].as_f64().unwrap_or(0.0);
        assert!(
            (duration - 6.0).abs() < 0.2 && result["currentTime"].as_f64() >= Some(duration - 0.2),
            "{muxer} {player} {profile}: {result}"
        );
        // 180 frames in the file; at 4x a few may be dropped, none may go undecoded.
        assert!(
            result["decodedFrames"].as_u64() >= Some(175),
            "{muxer} {player} {profile}: {result}"
        );
        if profile == "onDemand" {
            assert!(
                result["ranged"].as_u64() >= Some(2),
                "byte ranges: {result}"
            );
        }
    }
}

/// A three-rung ladder of the test pattern, its first segment there.
fn ladder_server() -> TestServer {
    let config = temp_file(
        "ladder-browser.toml",
        "[[stream]]\nname = \"tv\"\nsource = \"testsrc\"\nwidth = 640\nheight = 360\n\
         preset = \"ultrafast\"\naudio_bitrate_kbps = 32\n\
         renditions = [{height = 360, video_bitrate_kbps = 800}, \
         {height = 180, video_bitrate_kbps = 250}, {height = 90, video_bitrate_kbps = 100}]\n",
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&server.addr, "/dash/tv@90/manifest.mpd") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "no ladder; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

fn chromium_switches_rungs_on_the_same_socket(player: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = ladder_server();
    let result = scenario(
        &server,
        "rendition.mjs",
        &[
            "--stream",
            "tv",
            "--player",
            player,
            "--rungs",
            "360,180,90",
        ],
    );
    assert_eq!(result["player"], player, "{result}");
    assert!(result["renditionChanges"].as_u64() >= Some(3), "{result}");
}

#[test]
fn chromium_webcodecs_switches_rungs_on_the_same_socket() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    chromium_switches_rungs_on_the_same_socket("webcodecs");
}

#[test]
fn chromium_mse_switches_rungs_on_the_same_socket() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    chromium_switches_rungs_on_the_same_socket("mse");
}

#[test]
fn dash_js_and_hls_js_play_a_ladder() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = ladder_server();
    // Each plays the top rung, then plays on while the page's network carries less than the
    // top rung (200 kbit/s against some 900; the lowest rung with the audio is some 180).
    for player in ["dash", "hls"] {
        let result = scenario(
            &server,
            "dash.mjs",
            &[
                "--stream",
                "tv",
                "--player",
                player,
                "--throttle-kbps",
                "200",
            ],
        );
        assert!(
            result["advanced"].as_f64().unwrap_or(0.0) >= 3.5,
            "{player}: {result}"
        );
        assert_eq!(result["throttled"]["before"], 360, "{player}: {result}");
        // Each moves its downloads to a lower rung within the 25 s (dash.js measuring its
        // chunked downloads by the data that came: see players.mjs). The picture follows
        // once what was buffered of the top rung has played, which a stalling player may not
        // reach within the 25 s: `lowest` (the picture's) is reported, not required.
        assert!(
            result["throttled"]["lowestChosen"].as_u64() < Some(360),
            "{player} never switched down: {result}"
        );
        assert!(
            result["throttled"]["advanced"].as_f64() > Some(10.0),
            "{player} stalled while throttled: {result}"
        );
    }
}

/// The test pattern, recorded in 1 s segments into a fresh folder named after `name`.
fn recording_testsrc_server(name: &str) -> TestServer {
    let record = temp_dir(name);
    testsrc_server_configured(
        &format!(
            "record = \"{}\"\nsegment_duration = 1.0\n",
            record.display()
        ),
        &[],
        None,
    )
}

/// A recorded stretch's manifests (`?start=&end=` on the live routes) play in dash.js and
/// hls.js from the recording's files, for as long as the stretch.
#[test]
fn dash_js_and_hls_js_play_a_recorded_stretch() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = recording_testsrc_server("browser-record");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listing = |server: &TestServer| -> serde_json::Value {
        runtime.block_on(async {
            reqwest::get(server.url("/api/recordings/live"))
                .await
                .and_then(|r| r.error_for_status())
                .expect("GET the listing")
                .json()
                .await
                .expect("JSON")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let span = loop {
        let listing = listing(&server);
        let span = listing["spans"][0].clone();
        let secs = span["duration_secs"].as_f64().unwrap_or(0.0);
        if secs >= 12.0 {
            break span;
        }
        assert!(
            Instant::now() < deadline,
            "12 s not recorded: {listing}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let start = span["start_ms"].as_u64().expect("start_ms") + 2_000;
    let query = format!(
        "start={:.3}&end={:.3}",
        start as f64 / 1000.0,
        (start + 8_000) as f64 / 1000.0
    );
    for player in ["dash", "hls"] {
        let result = scenario(
            &server,
            "dash.mjs",
            &["--stream", "live", "--player", player, "--query", &query],
        );
        assert!(
            result["advanced"].as_f64().unwrap_or(0.0) >= 3.5,
            "{player}: {result}"
        );
        let duration = result["duration"].as_f64().unwrap_or(0.0);
        assert!(
            (7.0..=10.5).contains(&duration),
            "{player}: a stretch of 8 s (whole segments): {result}"
        );
        assert!(
            result["startedAt"].as_f64().unwrap_or(f64::MAX) < 3.0,
            "{player} plays the stretch from its start: {result}"
        );
    }
}

/// The live page rewound on its timeline: WebCodecs and MSE play the recording from 10 s
/// back (about 10 s behind the camera, advancing), come back live with the Live button, and
/// a page opened with `?at=` starts on the recording.
#[test]
fn chromium_rewinds_the_live_page_and_returns_live() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = recording_testsrc_server("browser-timeshift");
    // Enough recorded to go 10 s back (and a little more for the later seeks).
    std::thread::sleep(Duration::from_secs(14));
    for player in ["webcodecs", "mse"] {
        let result = scenario(
            &server,
            "timeshift.mjs",
            &["--stream", "live", "--player", player, "--seeks", "10"],
        );
        assert_eq!(result["mode"], player, "{result}");
        assert!(result["seekMedianMs"].as_f64().is_some(), "{result}");
    }
}
