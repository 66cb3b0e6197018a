//! Real browsers against the real server: headless Chromium (driven by playwright-core from
//! npm, scripts in tests/browser/) and headless Firefox (through geckodriver's WebDriver).
//! With `CI` set, a missing browser, Node.js or geckodriver fails these tests; elsewhere they
//! are skipped with a loud message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

/// One browser at a time: two software decoders at once on two cores skew every figure.
static SERIAL: Mutex<()> = Mutex::new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

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
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
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
    let ready = READY.get_or_init(|| {
        let dir = browser_dir();
        if dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("running npm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match ready {
        Ok(()) => true,
        Err(e) => panic!("{e}"),
    }
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
    let config = temp_file(
        "browser.toml",
        "[[stream]]\nname = \"live\"\nsource = \"testsrc\"\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n",
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    // Wait for a complete segment, so a browser's first seconds are not spent on ffmpeg's
    // start-up, and a player's first manifest request is not answered "not yet".
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&server.addr, "/dash/live/manifest.mpd") != Some(200) {
        assert!(Instant::now() < deadline, "no MPD; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

#[test]
fn chromium_plays_the_watch_page_and_comes_back_from_a_hidden_tab() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let result = scenario(&server, "watch.mjs", &["--stream", "live"]);
    assert!(
        result["firstFrameMs"].as_f64().unwrap_or(f64::MAX) <= 5000.0,
        "{result}"
    );
    assert!(
        result["advanced"].as_f64().unwrap_or(0.0) >= 3.0,
        "{result}"
    );
    assert!(result["latencyMs"].as_f64().is_some(), "{result}");
}

#[test]
fn chromium_recovers_without_a_reload_when_the_source_restarts() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let pid = server.pid().to_string();
    let result = scenario(
        &server,
        "restart.mjs",
        &["--stream", "live", "--server-pid", &pid],
    );
    assert!(result["generation"].as_u64() >= Some(2), "{result}");
}

#[test]
fn dash_js_plays_the_live_mpd() {
    if !have_tool("ffmpeg") || !chromium_ready() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = testsrc_server();
    let result = scenario(
        &server,
        "dash.mjs",
        &["--stream", "live", "--player", "dash"],
    );
    assert!(
        result["advanced"].as_f64().unwrap_or(0.0) >= 3.5,
        "{result}"
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
        .block_on(firefox_scenario());
}

async fn firefox_scenario() {
    if !have_tool("ffmpeg") {
        return;
    }
    let Some(firefox) = firefox_binary() else {
        missing("Firefox (Debian package firefox-esr)");
        return;
    };
    if !found("geckodriver", "--version") {
        missing("geckodriver (cargo install geckodriver)");
        return;
    }
    let server = testsrc_server();
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
    webdriver(
        &client,
        reqwest::Method::POST,
        &format!("{session_url}/url"),
        serde_json::json!({"url": server.url("/watch/live")}),
    )
    .await;
    let state = |client: reqwest::Client, url: String| async move {
        webdriver(
            &client,
            reqwest::Method::POST,
            &format!("{url}/execute/sync"),
            serde_json::json!({"script": "const v = document.querySelector('video'); \
                return {time: v.currentTime, error: v.error && v.error.code, \
                banner: document.getElementById('error').hidden ? null : document.getElementById('error').textContent, \
                stats: window.wslive && window.wslive.stats()};", "args": []}),
        )
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let s = state(client.clone(), session_url.clone()).await;
        if s["time"].as_f64().unwrap_or(0.0) > 0.0 && !s["stats"]["joinMs"].is_null() {
            break s;
        }
        assert!(Instant::now() < deadline, "Firefox never played: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = state(client.clone(), session_url.clone()).await;
    let _ = client.delete(&session_url).send().await;
    let advanced = later["time"].as_f64().unwrap_or(0.0) - first["time"].as_f64().unwrap_or(0.0);
    eprintln!("Firefox: {later}");
    assert!(
        advanced >= 3.0,
        "Firefox advanced {advanced} s in 4 s: {later}"
    );
    assert!(
        later["error"].is_null() && later["banner"].is_null(),
        "{later}"
    );
    assert!(
        later["stats"]["latencyMs"].is_number(),
        "no latency in Firefox: {later}"
    );
}
