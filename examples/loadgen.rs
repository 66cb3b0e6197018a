//! A load generator: N WebSocket viewers against a running server, each checking what it gets,
//! measuring delivery lag, throughput, errors and the server's memory and CPU.
//!
//! ```sh
//! cargo run --release --example loadgen -- --url ws://127.0.0.1:8080/ws/live --viewers 5000 \
//!     --seconds 30 --server-pid $(pgrep -f 'websocketlivestream serve')
//! ```
//!
//! Each viewer speaks just enough WebSocket to read (server frames are not masked) and checks
//! the protocol: the `init` message, the init segment, then fragments in sequence, the first
//! one (and the first after every `skipped`) a key frame. Lag is a fragment's arrival minus
//! the wall clock of its `prft` box (the encoder's), so it spans everything from the encoder's
//! muxer to the viewer. Arrival is when the bytes reached the viewer's socket, as the kernel
//! stamped them (`SO_TIMESTAMPNS`; the newest bytes of each read, so a fragment that came
//! earlier in the same read counts as later): this process runs thousands of viewers on the
//! server's own two cores, and its own delay in reading them is not the server's. That delay
//! is reported too ("when read"). `--protocol flv` reads node-media-server's WebSocket-FLV
//! instead; its lag is then measured as for any stream without `prft`: arrival against the
//! media timeline, relative to the viewer's earliest fragment (`--lag relative` does the same
//! for ours).
//!
//! `wss://` URLs speak TLS (rustls), trusting the CA in `--ca FILE` (the server's self-signed
//! certificate will do); the arrival stamps are still the kernel's, taken before decryption.
//! With TLS, the server's `/metrics` is read from `--metrics HOST:PORT` (its admin listener).
//!
//! Slow viewers (`--slow N --slow-rate 0.1`) read at a tenth of the stream's rate through a
//! small receive buffer; their lag and skips are reported apart from the others'.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;
use websocketlivestream::fmp4::{Fragment, InitSegment, unix_millis_from_ntp};

const USAGE: &str = "usage: loadgen --url ws://HOST:PORT/PATH [--viewers N] [--seconds S] \
[--warmup S] [--ramp N_PER_S] [--slow N] [--slow-rate F] [--server-pid PID] \
[--protocol wsls|flv] [--lag prft|relative] [--threads N] [--max-lag-ms MS] [--max-rss-mb MB] \
[--ca FILE] [--metrics HOST:PORT]";

#[derive(Clone)]
struct Options {
    host: String,
    port: u16,
    path: String,
    viewers: usize,
    seconds: f64,
    warmup: f64,
    ramp: f64,
    slow: usize,
    slow_rate: f64,
    server_pid: Option<u32>,
    flv: bool,
    relative_lag: bool,
    threads: usize,
    /// The bounds a run must hold: the normal viewers' p99 lag and the server's RSS.
    max_lag_ms: u64,
    max_rss_mb: f64,
    /// TLS (a `wss://` URL), trusting this CA.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where `/metrics` is read, when not at the viewers' address.
    metrics: Option<(String, u16)>,
}

/// A client that trusts the CA certificates in `path`.
fn tls_client(path: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("--ca {path}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--ca {path}: {e}"))?;
        roots.add(cert).map_err(|e| format!("--ca {path}: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: f64| -> Result<f64, String> {
        value(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("{name} {v} is not a number"))
        })
    };
    let url = value("--url").ok_or("--url is required")?;
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (None, rest),
        (_, Some(rest)) => {
            let ca = value("--ca").ok_or("a wss:// URL needs --ca FILE")?;
            (Some(tls_client(&ca)?), rest)
        }
        _ => return Err("only ws:// and wss:// URLs are supported".into()),
    };
    let metrics = match value("--metrics") {
        Some(text) => {
            let (host, port) = text.rsplit_once(':').ok_or("--metrics HOST:PORT")?;
            Some((
                host.to_string(),
                port.parse().map_err(|_| "bad --metrics port")?,
            ))
        }
        None => None,
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.rsplit_once(':').ok_or("the URL needs a port")?;
    let protocol = value("--protocol").unwrap_or_else(|| "wsls".into());
    let flv = match protocol.as_str() {
        "wsls" => false,
        "flv" => true,
        other => return Err(format!("unknown protocol {other}")),
    };
    Ok(Options {
        host: host.to_string(),
        port: port.parse().map_err(|_| "bad port")?,
        path: format!("/{path}"),
        viewers: number("--viewers", 100.0)? as usize,
        seconds: number("--seconds", 20.0)?,
        warmup: number("--warmup", 3.0)?,
        ramp: number("--ramp", 1000.0)?,
        slow: number("--slow", 0.0)? as usize,
        slow_rate: number("--slow-rate", 0.1)?,
        server_pid: value("--server-pid").and_then(|v| v.parse().ok()),
        flv,
        relative_lag: flv || value("--lag").as_deref() == Some("relative"),
        threads: number("--threads", 2.0)? as usize,
        max_lag_ms: number("--max-lag-ms", 100.0)? as u64,
        max_rss_mb: number("--max-rss-mb", 500.0)?,
        tls,
        metrics,
    })
}

/// Lag per millisecond, 0 to 60 s, for percentiles.
struct Histogram {
    buckets: Vec<u64>,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; 60_001],
        }
    }

    fn record(&mut self, ms: f64) {
        let index = (ms.max(0.0) as usize).min(self.buckets.len() - 1);
        self.buckets[index] += 1;
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn quantile(&self, q: f64) -> Option<usize> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= target {
                return Some(ms);
            }
        }
        None
    }
}

/// The measured window, in Unix ms: what arrives outside it (the ramp, the warm-up) is not
/// counted. Its end is set when it closes.
struct Window {
    start_ms: AtomicU64,
    end_ms: AtomicU64,
}

impl Window {
    fn contains(&self, ms: f64) -> bool {
        let ms = ms as u64;
        ms >= self.start_ms.load(Ordering::Relaxed) && ms < self.end_ms.load(Ordering::Relaxed)
    }
}

/// Counters shared by every viewer of one group (normal or slow). Viewers count in a
/// [`Tally`] of their own and add it here now and then: thousands of viewers updating shared
/// counters for every fragment would cost the load generator more than the server it measures.
struct Group {
    /// Lag at the viewer's socket (the kernel's receive time).
    lag: std::sync::Mutex<Histogram>,
    /// Lag when this process read it: the socket's plus the load generator's own delay.
    read_lag: std::sync::Mutex<Histogram>,
    connected: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    fragments: AtomicU64,
    bytes: AtomicU64,
    skips: AtomicU64,
    skipped: AtomicU64,
    /// Viewers that have added their last tally after the window closed.
    finished: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Group {
    fn new() -> Self {
        Self {
            lag: std::sync::Mutex::new(Histogram::new()),
            read_lag: std::sync::Mutex::new(Histogram::new()),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            fragments: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            skips: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        }
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }

    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_histogram(&self) -> std::sync::MutexGuard<'_, Histogram> {
        self.read_lag.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One viewer's counts since it last added them to its group's.
#[derive(Default)]
struct Tally {
    lags_ms: Vec<f64>,
    read_lags_ms: Vec<f64>,
    fragments: u64,
    bytes: u64,
    skips: u64,
    skipped: u64,
}

impl Tally {
    /// Added to the group's after this many lags.
    const BATCH: usize = 256;

    fn add_to(&mut self, group: &Group) {
        if !self.lags_ms.is_empty() {
            let mut histogram = group.histogram();
            for ms in self.lags_ms.drain(..) {
                histogram.record(ms);
            }
        }
        if !self.read_lags_ms.is_empty() {
            let mut histogram = group.read_histogram();
            for ms in self.read_lags_ms.drain(..) {
                histogram.record(ms);
            }
        }
        group.fragments.fetch_add(self.fragments, Ordering::Relaxed);
        group.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        group.skips.fetch_add(self.skips, Ordering::Relaxed);
        group.skipped.fetch_add(self.skipped, Ordering::Relaxed);
        *self = Tally {
            lags_ms: std::mem::take(&mut self.lags_ms),
            read_lags_ms: std::mem::take(&mut self.read_lags_ms),
            ..Tally::default()
        };
    }
}

fn now_unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// What a viewer expects next.
enum Expect {
    InitMessage,
    InitSegment,
    KeyFrame,
    InSequence,
}

struct Viewer {
    options: Arc<Options>,
    group: Arc<Group>,
    window: Arc<Window>,
    tally: Tally,
    /// When the bytes being looked at were read (Unix ms).
    read_ms: f64,
    slow: bool,
    expect: Expect,
    init: Option<InitSegment>,
    next_sequence: Option<u32>,
    /// For relative lag: (arrival ms - media ms) at the earliest fragment seen.
    lag_origin: Option<f64>,
    flv_header_seen: bool,
    flv_video_config_seen: bool,
}

/// A viewer's connection: the socket, and its TLS session if it speaks TLS.
struct Connection {
    tcp: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
}

/// Connects and sends the upgrade request.
async fn connect(options: &Options, slow: bool) -> std::io::Result<(Connection, BytesMut)> {
    let address = tokio::net::lookup_host((options.host.as_str(), options.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if slow {
        // A slow reader with a small window, so the server feels it.
        socket.set_recv_buffer_size(16 * 1024)?;
    }
    let mut tcp = socket.connect(address).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        options.path, options.host, options.port
    );
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let Some(client) = &options.tls else {
        tcp.write_all(request.as_bytes()).await?;
        read_head(&mut tcp, &mut buf).await?;
        return Ok((Connection { tcp, tls: None }, buf));
    };
    let name = rustls::pki_types::ServerName::try_from(options.host.clone())
        .map_err(std::io::Error::other)?;
    let mut stream = tokio_rustls::TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await?;
    stream.write_all(request.as_bytes()).await?;
    read_head(&mut stream, &mut buf).await?;
    let (tcp, session) = stream.into_inner();
    Ok((
        Connection {
            tcp,
            tls: Some(Box::new(session)),
        },
        buf,
    ))
}

/// Reads until the end of the HTTP answer's head (what follows stays in `buf`).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<()> {
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// One read of the socket into `buf` (decrypted first, for TLS): bytes off the wire and the
/// kernel's stamp of them. `raw` is a scratch buffer for the encrypted bytes.
fn read_some(
    connection: &mut Connection,
    buf: &mut BytesMut,
    raw: &mut BytesMut,
) -> std::io::Result<(usize, Option<f64>)> {
    use std::io::Read;
    let Connection { tcp, tls } = connection;
    // Through `try_io`, so that tokio forgets the readiness when the socket has nothing.
    let Some(session) = tls.as_mut() else {
        return tcp.try_io(tokio::io::Interest::READABLE, || read_stamped(tcp, buf));
    };
    raw.clear();
    if raw.capacity() < 16 * 1024 {
        raw.reserve(16 * 1024);
    }
    let (n, stamp) = tcp.try_io(tokio::io::Interest::READABLE, || read_stamped(tcp, raw))?;
    let mut input = &raw[..n];
    while !input.is_empty() {
        session.read_tls(&mut input)?;
        session
            .process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut plain = [0u8; 16 * 1024];
        loop {
            match session.reader().read(&mut plain) {
                Ok(0) => return Ok((0, stamp)),
                Ok(m) => buf.extend_from_slice(&plain[..m]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
    }
    Ok((n, stamp))
}

impl Viewer {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        let (mut connection, mut buf) = match connect(&self.options, self.slow).await {
            Ok(connected) => connected,
            Err(err) => {
                self.group.failed.fetch_add(1, Ordering::Relaxed);
                self.group.error(format!("connect: {err}"));
                return;
            }
        };
        let mut raw = BytesMut::new();
        // The HTTP answer first (read whole by `connect`).
        {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                if !head.starts_with("HTTP/1.1 101") {
                    self.group.failed.fetch_add(1, Ordering::Relaxed);
                    self.group.error(format!(
                        "upgrade refused: {}",
                        head.lines().next().unwrap_or("")
                    ));
                    return;
                }
                buf.advance(end + 4);
            }
        }
        self.group.connected.fetch_add(1, Ordering::Relaxed);
        arrival_stamps(&connection.tcp);
        let started = Instant::now();
        let mut read_total = 0u64;
        // What was read with the upgrade answer came now.
        let mut arrival = now_unix_ms();
        self.read_ms = arrival;
        loop {
            while let Some((opcode, payload)) = next_frame(&mut buf) {
                self.on_frame(opcode, payload, arrival);
            }
            if self.tally.lags_ms.len() >= Tally::BATCH {
                self.tally.add_to(&self.group);
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            // No timer per read: the window's end is seen at the next read.
            let read = match connection.tcp.readable().await {
                Ok(()) => read_some(&mut connection, &mut buf, &mut raw),
                Err(err) => Err(err),
            };
            match read {
                Ok((0, _)) => {
                    if !stop.load(Ordering::Relaxed) {
                        self.group.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Ok((n, stamp)) => {
                    self.read_ms = now_unix_ms();
                    arrival = stamp.unwrap_or(self.read_ms);
                    read_total += n as u64;
                    if self.slow {
                        // Read no faster than slow_rate of the stream's bitrate (here: of
                        // 1 Mbit/s, what the benchmark streams).
                        let allowed = self.options.slow_rate * 125_000.0;
                        let due = Duration::from_secs_f64(read_total as f64 / allowed);
                        let elapsed = started.elapsed();
                        if due > elapsed {
                            tokio::time::sleep(due - elapsed).await;
                        }
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    if !stop.load(Ordering::Relaxed) {
                        self.group.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        self.tally.add_to(&self.group);
        self.group.finished.fetch_add(1, Ordering::Relaxed);
    }

    fn on_frame(&mut self, opcode: u8, payload: Bytes, arrival: f64) {
        let counted = self.window.contains(arrival);
        match opcode {
            0x1 => self.on_text(&payload, counted),
            0x2 => {
                if counted {
                    self.tally.bytes += payload.len() as u64;
                }
                if self.options.flv {
                    self.on_flv(payload, arrival, counted);
                } else {
                    self.on_binary(payload, arrival, counted);
                }
            }
            // A close before anything arrived is a refusal, counted by the
            // caller; any later close is the server hanging up on us.
            0x8 if !matches!(self.expect, Expect::InitMessage) => {
                self.group.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn on_text(&mut self, payload: &[u8], counted: bool) {
        let text = String::from_utf8_lossy(payload);
        if text.contains("\"type\":\"init\"") {
            self.expect = Expect::InitSegment;
        } else if text.contains("\"type\":\"skipped\"") {
            if counted {
                self.tally.skips += 1;
            }
            let n = text
                .split("\"fragments\":")
                .nth(1)
                .and_then(|rest| {
                    let digits = rest.trim_start();
                    let end = digits
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(digits.len());
                    digits[..end].parse().ok()
                })
                .unwrap_or(0);
            if counted {
                self.tally.skipped += n;
            }
            self.expect = Expect::KeyFrame;
        } else if !self.options.flv {
            self.group.error(format!("unexpected text {text}"));
        }
    }

    fn on_binary(&mut self, payload: Bytes, arrival: f64, counted: bool) {
        match self.expect {
            Expect::InitMessage => self.group.error("binary before the init message".into()),
            Expect::InitSegment => match InitSegment::parse(payload, 0) {
                Ok(init) => {
                    self.init = Some(init);
                    self.expect = Expect::KeyFrame;
                    self.next_sequence = None;
                }
                Err(err) => self.group.error(format!("init segment: {err}")),
            },
            Expect::KeyFrame | Expect::InSequence => {
                let Some(init) = self.init.as_ref() else {
                    return;
                };
                if counted {
                    self.tally.fragments += 1;
                }
                // The full check where it matters (the first fragment of a run), headers only
                // after that: a viewer must not cost more than the server it measures.
                if let Expect::KeyFrame = self.expect {
                    match Fragment::parse(payload.clone(), 0, init) {
                        Ok(fragment) => {
                            let reference = init.reference_track().map_or(0, |t| t.id);
                            if !fragment.starts_with_sync_of(reference) {
                                self.group
                                    .error("a run did not start at a key frame".into());
                            }
                            self.next_sequence = Some(fragment.sequence.wrapping_add(1));
                            self.expect = Expect::InSequence;
                        }
                        Err(err) => self.group.error(format!("fragment: {err}")),
                    }
                } else if let Some(sequence) = sequence_of(&payload) {
                    if Some(sequence) != self.next_sequence {
                        self.group.error(format!(
                            "fragment {sequence} out of order (expected {:?})",
                            self.next_sequence
                        ));
                    }
                    self.next_sequence = Some(sequence.wrapping_add(1));
                }
                if self.options.relative_lag {
                    if let Some(media_ms) = video_media_ms(&payload, init) {
                        self.record_relative(arrival, media_ms, counted);
                    }
                } else if let Some(wall_ms) = prft_ms(&payload)
                    && counted
                {
                    self.tally.lags_ms.push(arrival - wall_ms);
                    self.tally.read_lags_ms.push(self.read_ms - wall_ms);
                }
            }
        }
    }

    fn record_relative(&mut self, arrival: f64, media_ms: f64, counted: bool) {
        let offset = arrival - media_ms;
        let origin = *self.lag_origin.get_or_insert(offset);
        if offset < origin {
            // An earlier fragment came quicker: the baseline moves.
            self.lag_origin = Some(offset);
        }
        if counted {
            self.tally
                .lags_ms
                .push(offset - self.lag_origin.unwrap_or(offset));
        }
    }

    /// node-media-server's WebSocket-FLV: the FLV header, then tags (ISO 8601 aside, the
    /// Adobe FLV spec, annex E): 11 bytes of header (type, size, timestamp), data, and the
    /// previous tag's size. A viewer checks that video starts at its sequence header and a
    /// key frame, and times video tags against their timestamps.
    fn on_flv(&mut self, payload: Bytes, arrival: f64, counted: bool) {
        let mut data = &payload[..];
        if !self.flv_header_seen {
            if data.starts_with(b"FLV") && data.len() >= 9 {
                self.flv_header_seen = true;
                data = &data[9..];
                if data.len() >= 4 {
                    data = &data[4..];
                }
            } else {
                self.group
                    .error("WebSocket-FLV did not start with the FLV header".into());
                return;
            }
        }
        while data.len() >= 11 {
            let tag_type = data[0] & 0x1f;
            let size =
                usize::from(data[1]) << 16 | usize::from(data[2]) << 8 | usize::from(data[3]);
            let timestamp = u32::from(data[7]) << 24
                | u32::from(data[4]) << 16
                | u32::from(data[5]) << 8
                | u32::from(data[6]);
            let Some(body) = data.get(11..11 + size) else {
                break;
            };
            if tag_type == 9 && body.len() >= 2 {
                let key = body[0] >> 4 == 1;
                let config = body[1] == 0;
                if counted {
                    self.tally.fragments += 1;
                }
                if config {
                    self.flv_video_config_seen = true;
                } else if !self.flv_video_config_seen {
                    self.group.error("video before its sequence header".into());
                } else if let Expect::KeyFrame | Expect::InitMessage | Expect::InitSegment =
                    self.expect
                {
                    if !key {
                        self.group
                            .error("video did not start at a key frame".into());
                    }
                    self.expect = Expect::InSequence;
                }
                if !config {
                    self.record_relative(arrival, f64::from(timestamp), counted);
                }
            }
            data = data.get(11 + size + 4..).unwrap_or(&[]);
        }
    }
}

/// Asks the kernel to stamp what arrives on `tcp` with the time it arrived (Linux's
/// `SO_TIMESTAMPNS`): delivery is timed when the bytes reach the viewer's socket, not when
/// this process, busy with thousands of viewers on the server's own machine, gets round to
/// reading them.
#[cfg(target_os = "linux")]
fn arrival_stamps(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, an int option of the right size.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn arrival_stamps(_tcp: &TcpStream) {}

/// One read into `buf`'s spare room, and when (Unix ms) the kernel received its newest
/// bytes, where it says.
#[cfg(target_os = "linux")]
fn read_stamped(tcp: &TcpStream, buf: &mut BytesMut) -> std::io::Result<(usize, Option<f64>)> {
    use bytes::BufMut;
    use std::os::fd::AsRawFd;
    let spare = buf.chunk_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zero is a valid start.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the iovec points at `buf`'s spare capacity, the control buffer lives on.
    let n = unsafe { libc::recvmsg(tcp.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel wrote `n` bytes there.
    unsafe { buf.advance_mut(n) };
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote, with its own macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let at: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(at.tv_sec as f64 * 1000.0 + at.tv_nsec as f64 / 1e6);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, stamp))
}

#[cfg(not(target_os = "linux"))]
fn read_stamped(tcp: &TcpStream, buf: &mut BytesMut) -> std::io::Result<(usize, Option<f64>)> {
    tcp.try_read_buf(buf).map(|n| (n, None))
}

/// The next complete server frame in `buf`: opcode and payload.
fn next_frame(buf: &mut BytesMut) -> Option<(u8, Bytes)> {
    let first = *buf.first()?;
    let second = *buf.get(1)?;
    let (len, header) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let raw: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(raw) as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    if buf.len() < header + len {
        return None;
    }
    buf.advance(header);
    Some((first & 0x0f, buf.split_to(len).freeze()))
}

/// Top-level boxes: (type, start, end).
fn top_boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], usize, usize)> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let head = data.get(pos..pos + 8)?;
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if size < 8 {
            return None;
        }
        let item = (&head[4..8], pos, pos + size);
        pos += size;
        Some(item)
    })
}

/// The `mfhd` sequence number: moof > mfhd is the moof's first child.
fn sequence_of(data: &[u8]) -> Option<u32> {
    let (_, start, _) = top_boxes(data).find(|(kind, _, _)| *kind == b"moof")?;
    let field = data.get(start + 8 + 12..start + 8 + 16)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

/// The wall clock of the fragment's `prft`, in Unix ms.
fn prft_ms(data: &[u8]) -> Option<f64> {
    let (_, start, _) = top_boxes(data).find(|(kind, _, _)| *kind == b"prft")?;
    let ntp = data.get(start + 16..start + 24)?;
    unix_millis_from_ntp(u64::from_be_bytes(ntp.try_into().ok()?)).map(|ms| ms as f64)
}

/// The decode time of the fragment's video, in ms.
fn video_media_ms(data: &[u8], init: &InitSegment) -> Option<f64> {
    let video = init.video()?;
    let fragment = Fragment::parse(Bytes::copy_from_slice(data), 0, init).ok()?;
    let run = fragment.run(video.id)?;
    Some(run.decode_time as f64 * 1000.0 / f64::from(video.timescale.max(1)))
}

/// A gauge from the server's `/metrics` (a process-wide one, without labels).
fn server_gauge(options: &Options, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let (host, port) = options
        .metrics
        .clone()
        .unwrap_or_else(|| (options.host.clone(), options.port));
    let mut tcp = std::net::TcpStream::connect((host.as_str(), port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A process's resident memory and CPU time at one moment, from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    rss_kb: u64,
    peak_rss_kb: u64,
    cpu_secs: f64,
}

fn process_usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the 14th overall.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(Usage {
        rss_kb: field("VmRSS:")?,
        peak_rss_kb: field("VmHWM:")?,
        cpu_secs: ticks / 100.0,
    })
}

fn report(name: &str, group: &Group, viewers: usize, secs: f64) {
    let histogram = group.histogram();
    let q = |p| {
        histogram
            .quantile(p)
            .map_or("-".to_string(), |ms| ms.to_string())
    };
    println!(
        "{name}: {} connected, {} failed, {} disconnected, {} protocol errors",
        group.connected.load(Ordering::Relaxed),
        group.failed.load(Ordering::Relaxed),
        group.disconnects.load(Ordering::Relaxed),
        group.errors.load(Ordering::Relaxed),
    );
    if let Some(first) = group
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        println!("  first error: {first}");
    }
    let bytes = group.bytes.load(Ordering::Relaxed) as f64;
    println!(
        "  lag ms at the socket (of {} timed fragments): p50 {}  p95 {}  p99 {}  max {}",
        histogram.count(),
        q(0.5),
        q(0.95),
        q(0.99),
        q(1.0)
    );
    let read = group.read_histogram();
    if read.count() > 0 {
        let r = |p| {
            read.quantile(p)
                .map_or("-".to_string(), |ms| ms.to_string())
        };
        println!(
            "  lag ms when read (the load generator's own delay added): p50 {}  p95 {}  p99 {}  max {}",
            r(0.5),
            r(0.95),
            r(0.99),
            r(1.0)
        );
    }
    println!(
        "  throughput: {:.1} Mbit/s in all, {:.0} kbit/s per viewer, {:.0} fragments/s per viewer",
        bytes * 8.0 / secs / 1e6,
        bytes * 8.0 / secs / 1e3 / viewers.max(1) as f64,
        group.fragments.load(Ordering::Relaxed) as f64 / secs / viewers.max(1) as f64
    );
    println!(
        "  skips: {} ({} fragments skipped)",
        group.skips.load(Ordering::Relaxed),
        group.skipped.load(Ordering::Relaxed)
    );
}

/// Whether the run held its bounds, as one line a script can read: every viewer connected and
/// stayed, no protocol error, no normal viewer skipped, the normal viewers' p99 lag and the
/// server's RSS within bounds.
fn verdict(
    options: &Options,
    normal: &Group,
    slow: &Group,
    before: Option<Usage>,
    after: Option<Usage>,
    secs: f64,
) {
    let mut broken = Vec::new();
    let viewers = (options.viewers + options.slow) as u64;
    let connected =
        normal.connected.load(Ordering::Relaxed) + slow.connected.load(Ordering::Relaxed);
    if connected < viewers {
        broken.push(format!("{connected} of {viewers} connected"));
    }
    for (name, group) in [("normal", normal), ("slow", slow)] {
        let failed = group.failed.load(Ordering::Relaxed)
            + group.disconnects.load(Ordering::Relaxed)
            + group.errors.load(Ordering::Relaxed);
        if failed > 0 {
            broken.push(format!(
                "{failed} {name} viewers failed, were cut off or saw errors"
            ));
        }
    }
    let skips = normal.skips.load(Ordering::Relaxed);
    if skips > 0 {
        broken.push(format!("{skips} skips among normal viewers"));
    }
    let p99 = normal.histogram().quantile(0.99);
    match p99 {
        Some(ms) if ms as u64 > options.max_lag_ms => {
            broken.push(format!("p99 lag {ms} ms > {} ms", options.max_lag_ms))
        }
        None => broken.push("no fragment was timed".into()),
        _ => {}
    }
    let rss_mb = after.map(|u| u.rss_kb as f64 / 1024.0);
    if let Some(mb) = rss_mb
        && mb > options.max_rss_mb
    {
        broken.push(format!("RSS {mb:.0} MB > {} MB", options.max_rss_mb));
    }
    let cpu_per_viewer_hour = before
        .zip(after)
        .map(|(b, a)| (a.cpu_secs - b.cpu_secs) / (connected.max(1) as f64 * secs / 3600.0));
    println!(
        "summary: viewers={viewers} held={} p99_ms={} rss_mb={} cpu_s_per_viewer_hour={}",
        if broken.is_empty() { "yes" } else { "no" },
        p99.map_or("-".into(), |ms| ms.to_string()),
        rss_mb.map_or("-".into(), |mb| format!("{mb:.1}")),
        cpu_per_viewer_hour.map_or("-".into(), |c| format!("{c:.3}")),
    );
    if !broken.is_empty() {
        println!("not held: {}", broken.join("; "));
    }
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("error: {err}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let options = Arc::new(options);
    let normal = Arc::new(Group::new());
    let slow = Arc::new(Group::new());
    let stop = Arc::new(AtomicBool::new(false));
    // Nothing is counted until the warm-up is over.
    let measured = Arc::new(Window {
        start_ms: AtomicU64::new(u64::MAX),
        end_ms: AtomicU64::new(u64::MAX),
    });
    let baseline = options.server_pid.and_then(process_usage);
    let mut tasks = Vec::with_capacity(options.viewers + options.slow);
    let total = options.viewers + options.slow;
    let ramp_started = Instant::now();
    for i in 0..total {
        // Slow viewers are spread evenly among the others.
        let every = (total / options.slow.max(1)).max(1);
        let is_slow = options.slow > 0 && i % every == 0 && i / every < options.slow;
        let viewer = Viewer {
            options: options.clone(),
            group: if is_slow {
                slow.clone()
            } else {
                normal.clone()
            },
            window: measured.clone(),
            tally: Tally::default(),
            read_ms: 0.0,
            slow: is_slow,
            expect: if options.flv {
                Expect::KeyFrame
            } else {
                Expect::InitMessage
            },
            init: None,
            next_sequence: None,
            lag_origin: None,
            flv_header_seen: false,
            flv_video_config_seen: false,
        };
        tasks.push(tokio::spawn(viewer.run(stop.clone())));
        let due = Duration::from_secs_f64((i + 1) as f64 / options.ramp.max(1.0));
        if let Some(wait) = due.checked_sub(ramp_started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let connected_in = ramp_started.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let before = options.server_pid.and_then(process_usage);
    let own_before = process_usage(std::process::id());
    measured
        .start_ms
        .store(now_unix_ms() as u64, Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(options.seconds)).await;
    measured
        .end_ms
        .store(now_unix_ms() as u64, Ordering::Relaxed);
    let secs = window.elapsed().as_secs_f64();
    let after = options.server_pid.and_then(process_usage);
    let own_after = process_usage(std::process::id());
    stop.store(true, Ordering::Relaxed);
    // Each viewer adds its last counts at its next read (slow ones read every second or so).
    let connected =
        normal.connected.load(Ordering::Relaxed) + slow.connected.load(Ordering::Relaxed);
    let give_up = Instant::now() + Duration::from_secs(5);
    while normal.finished.load(Ordering::Relaxed) + slow.finished.load(Ordering::Relaxed)
        < connected
        && Instant::now() < give_up
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let n_normal = normal.connected.load(Ordering::Relaxed) as usize;
    let n_slow = slow.connected.load(Ordering::Relaxed) as usize;
    println!(
        "{} viewers ({} slow) against {}:{}{} ({}), ramp {:.1} s, measured {:.1} s",
        options.viewers + options.slow,
        options.slow,
        options.host,
        options.port,
        options.path,
        if options.flv {
            "WebSocket-FLV"
        } else if options.relative_lag {
            "relative lag"
        } else {
            "lag from prft"
        },
        connected_in.as_secs_f64(),
        secs
    );
    report("viewers", &normal, n_normal, secs);
    if options.slow > 0 {
        report("slow viewers", &slow, n_slow, secs);
    }
    if let (Some(baseline), Some(after), Some(before)) = (baseline, after, before) {
        let (rss0, rss1, hwm) = (baseline.rss_kb, after.rss_kb, after.peak_rss_kb);
        let (cpu0, cpu1) = (before.cpu_secs, after.cpu_secs);
        let viewers = (n_normal + n_slow).max(1) as f64;
        println!(
            "server: RSS {:.1} MB (peak {:.1} MB, {:.1} MB before the viewers), {:.1} kB per viewer",
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss0 as f64 / 1024.0,
            rss1.saturating_sub(rss0) as f64 / viewers
        );
        if let Some(bytes) = server_gauge(&options, "wsls_frame_file_bytes") {
            println!(
                "server: {:.1} MB of frames in memory files besides (not in the RSS)",
                bytes / 1e6
            );
        }
        let cpu = cpu1 - cpu0;
        println!(
            "server: {:.2} CPU-s over {:.1} s ({:.0}% of a core), {:.3} CPU-s per viewer-hour",
            cpu,
            secs,
            cpu / secs * 100.0,
            cpu / (viewers * secs / 3600.0)
        );
    }
    if let (Some(own_before), Some(own_after)) = (own_before, own_after) {
        println!(
            "load generator: {:.0}% of a core",
            (own_after.cpu_secs - own_before.cpu_secs) / secs * 100.0
        );
    }
    verdict(&options, &normal, &slow, before, after, secs);
    for task in tasks {
        task.abort();
    }
}
