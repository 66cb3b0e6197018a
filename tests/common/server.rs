//! The real binary, started on port 0 and talked to as a client would.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub struct TestServer {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http`, or `https` when the server said it listens with TLS.
    pub scheme: &'static str,
    log: Arc<Mutex<String>>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_websocketlivestream");

impl TestServer {
    /// Starts `websocketlivestream serve ARGS --listen 127.0.0.1:0` and waits for its address.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_stdin(args).0
    }

    /// Like `start`, with the server's standard input to write to.
    pub fn start_with_stdin(args: &[&str]) -> (Self, ChildStdin) {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts the server listening on `listen` (to restart one on the port it had).
    pub fn start_on(listen: &str, args: &[&str]) -> (Self, ChildStdin) {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--listen", listen])
            .env("RUST_LOG", "info,websocketlivestream=debug,tower_http=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the server binary");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (scheme, marker) in [
                    ("http", "listening on http://"),
                    ("https", "listening on https://"),
                ] {
                    if let Some(rest) = line.split(marker).nth(1) {
                        let addr: String = rest.chars().take_while(|c| *c != '/').collect();
                        let _ = tx.send((scheme, addr));
                    }
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (scheme, addr) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not report its address; log:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        (
            Self {
                child,
                addr,
                scheme,
                log,
            },
            stdin,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.scheme == "https" { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit, as a user stopping the server would.
    pub fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ffmpeg processes the server started (its children).
pub fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string(), "ffmpeg"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A small test pattern, cheap to encode on two cores: `[[stream]]` config text.
pub fn small_testsrc_config(name: &str) -> String {
    format!(
        "[[stream]]\nname = \"{name}\"\nsource = \"testsrc\"\nwidth = 320\nheight = 180\nfps = 30\nvideo_bitrate_kbps = 300\npreset = \"ultrafast\"\n"
    )
}

/// Writes `text` to a fresh temp file and returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing temp file");
    path
}

/// A fresh, empty temp directory unique to this test process and name.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wsls-test-{}-{}-{}",
        std::process::id(),
        name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("creating temp dir");
    dir
}

/// The status of `GET path` on `addr`, by hand: enough for tests that wait without a runtime.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A field of the newest log line that holds `line_has`: `name=value` up to the next space,
/// terminal colours stripped.
pub fn log_field(log: &str, line_has: &str, name: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains(line_has))?;
    let plain: String = strip_ansi(line);
    let rest = plain.split(&format!("{name}=")).nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// `text` without its terminal colour codes.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `HOST:PORT` a server with `--rtmp-listen` logged for its RTMP publishers.
pub fn rtmp_address(server: &TestServer) -> String {
    strip_ansi(&server.log())
        .split("RTMP publishers on rtmp://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the RTMP address in the log")
        .to_string()
}
