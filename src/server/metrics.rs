//! `/metrics` in the Prometheus text format (version 0.0.4): per stream, from its hub's
//! counters (viewers, fragments and bytes in, restarts, reconnects, the ingest bitrate) and
//! its fan-out's ([`SendCounters`]: fragments and bytes out, writes, skips, the time from
//! ingest to send).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::stream::Status;

/// Upper bounds (seconds) of the ingest-to-send histogram's buckets.
pub const SEND_DELAY_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// How long fragments wait between entering the hub and being written to a viewer's socket.
#[derive(Debug, Default)]
pub struct SendDelay {
    /// Counts per bucket of [`SEND_DELAY_BUCKETS`], then the overflow.
    buckets: [AtomicU64; SEND_DELAY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl SendDelay {
    /// The bucket `delay` falls in: an index of [`SEND_DELAY_BUCKETS`], or its length for the
    /// overflow.
    pub fn bucket(delay: Duration) -> usize {
        let secs = delay.as_secs_f64();
        SEND_DELAY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(SEND_DELAY_BUCKETS.len())
    }

    /// Adds counts gathered elsewhere: per bucket of [`SEND_DELAY_BUCKETS`] and the overflow,
    /// and their sum.
    fn add(&self, buckets: &[u64; SEND_DELAY_BUCKETS.len() + 1], sum: Duration) {
        for (bucket, n) in self.buckets.iter().zip(buckets) {
            if *n > 0 {
                bucket.fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(sum.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts per bucket (not cumulative; the last is the overflow), and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// What one stream's fan-out wrote to its viewers.
#[derive(Debug, Default)]
pub struct SendCounters {
    pub fragments_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Batches written to viewers' sockets: fragments out per write shows batching at work.
    pub socket_writes: AtomicU64,
    pub skips: AtomicU64,
    pub skipped_fragments: AtomicU64,
    pub send_delay: SendDelay,
}

/// Counts a shard gathers during a walk over its viewers and adds to the stream's
/// [`SendCounters`] once, rather than touching shared counters per fragment and viewer.
#[derive(Default)]
pub struct SendTally {
    pub fragments: u64,
    pub bytes: u64,
    pub writes: u64,
    pub skips: u64,
    pub skipped: u64,
    delay_buckets: [u64; SEND_DELAY_BUCKETS.len() + 1],
    delay_sum: Duration,
}

impl SendTally {
    pub fn flush(&mut self, into: &SendCounters) {
        into.fragments_out
            .fetch_add(self.fragments, Ordering::Relaxed);
        into.bytes_out.fetch_add(self.bytes, Ordering::Relaxed);
        into.socket_writes.fetch_add(self.writes, Ordering::Relaxed);
        into.skips.fetch_add(self.skips, Ordering::Relaxed);
        into.skipped_fragments
            .fetch_add(self.skipped, Ordering::Relaxed);
        into.send_delay.add(&self.delay_buckets, self.delay_sum);
        *self = SendTally::default();
    }

    pub fn observe_delay(&mut self, delay: Duration) {
        if let Some(bucket) = self.delay_buckets.get_mut(SendDelay::bucket(delay)) {
            *bucket += 1;
        }
        self.delay_sum += delay;
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let streams = app.streams.all();
    let fanouts: Vec<_> = streams.iter().filter_map(|s| app.fanout(&s.name)).collect();
    let sent: Vec<&SendCounters> = fanouts.iter().map(|f| f.counters()).collect();
    let families: [(&str, &str, &str); 14] = [
        (
            "wsls_stream_up",
            "gauge",
            "1 while the stream has media, else 0.",
        ),
        ("wsls_viewers", "gauge", "WebSocket viewers connected."),
        (
            "wsls_fragments_in_total",
            "counter",
            "Fragments received from the source.",
        ),
        (
            "wsls_bytes_in_total",
            "counter",
            "Bytes received from the source.",
        ),
        (
            "wsls_fragments_out_total",
            "counter",
            "Fragments written to WebSocket viewers.",
        ),
        (
            "wsls_bytes_out_total",
            "counter",
            "Media bytes written to WebSocket viewers.",
        ),
        (
            "wsls_socket_writes_total",
            "counter",
            "Batches written to viewers' sockets (a system call or a few each).",
        ),
        (
            "wsls_skips_total",
            "counter",
            "Times a slow viewer was moved to the next key frame.",
        ),
        (
            "wsls_skipped_fragments_total",
            "counter",
            "Fragments slow viewers did not get.",
        ),
        (
            "wsls_source_restarts_total",
            "counter",
            "Times the source process was restarted.",
        ),
        (
            "wsls_upstream_reconnects_total",
            "counter",
            "Times a relay dialled its upstream again.",
        ),
        (
            "wsls_ingest_bitrate_bps",
            "gauge",
            "Ingest bitrate over the segment window.",
        ),
        ("wsls_segments", "gauge", "Complete segments in the window."),
        (
            "wsls_timeline_seconds",
            "gauge",
            "Media time of the newest segment's end.",
        ),
    ];
    // One snapshot per stream, every family's value read from it.
    let values: Vec<[f64; 14]> = streams
        .iter()
        .zip(&sent)
        .map(|(stream, sent)| {
            let c = &stream.hub.counters;
            let load =
                |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
            let snapshot = stream.hub.snapshot();
            [
                f64::from(u8::from(snapshot.status == Status::Live)),
                load(&c.viewers),
                load(&c.fragments_in),
                load(&c.bytes_in),
                load(&sent.fragments_out),
                load(&sent.bytes_out),
                load(&sent.socket_writes),
                load(&sent.skips),
                load(&sent.skipped_fragments),
                load(&c.source_restarts),
                load(&c.upstream_reconnects),
                snapshot.bitrate_bps() as f64,
                snapshot.segments.len() as f64,
                snapshot.segments.last().map_or(0.0, |s| {
                    (s.start + s.duration) as f64 / f64::from(s.timescale.max(1))
                }),
            ]
        })
        .collect();
    for (index, (name, kind, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (stream, row) in streams.iter().zip(&values) {
            let _ = writeln!(
                out,
                "{name}{{stream=\"{}\"}} {}",
                label(&stream.name),
                row[index]
            );
        }
    }
    let publishing: Vec<_> = streams
        .iter()
        .filter_map(|s| Some((label(&s.name), s.publish_point.as_ref()?)))
        .collect();
    for (name, help, kind, read) in [
        (
            "wsls_publishes_total",
            "Publishers taken by a publish stream.",
            "counter",
            (|p| p.publishes.load(Ordering::Relaxed) as f64)
                as fn(&crate::source::publish::PublishPoint) -> f64,
        ),
        (
            "wsls_publishes_refused_total",
            "Publishers refused because the stream had one.",
            "counter",
            |p| p.refused.load(Ordering::Relaxed) as f64,
        ),
        (
            "wsls_publisher_connected",
            "1 while a publisher publishes.",
            "gauge",
            |p| f64::from(u8::from(p.publisher().is_some())),
        ),
    ] {
        if publishing.is_empty() {
            break;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (stream, point) in &publishing {
            let _ = writeln!(out, "{name}{{stream=\"{stream}\"}} {}", read(point));
        }
    }
    let name = "wsls_ingest_to_send_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a fragment entering the hub to its bytes written to a viewer.\n# TYPE {name} histogram"
    );
    for (stream, sent) in streams.iter().zip(&sent) {
        let (counts, sum) = sent.send_delay.read();
        let stream_label = label(&stream.name);
        let mut cumulative = 0;
        for (bound, count) in SEND_DELAY_BUCKETS.iter().zip(&counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{stream=\"{stream_label}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += counts.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_bucket{{stream=\"{stream_label}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(out, "{name}_sum{{stream=\"{stream_label}\"}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{stream=\"{stream_label}\"}} {cumulative}"
        );
    }
    let name = "wsls_refused_connections_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections refused or cut at the door, by reason.\n# TYPE {name} counter"
    );
    for (reason, count) in app.refusals.read() {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {count}");
    }
    let name = "wsls_refused_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests and viewers refused by access control or rate limits, by reason.\n# TYPE {name} counter"
    );
    for (reason, count) in app.auth.refused.read() {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP wsls_auth_requests_total Questions to /api/auth (a proxy's auth_request).\n# TYPE wsls_auth_requests_total counter\nwsls_auth_requests_total {}",
        app.auth.asked.load(std::sync::atomic::Ordering::Relaxed)
    );
    let limited = app.manifest_rate.refused();
    let _ = writeln!(out, "{name}{{reason=\"manifest_rate\"}} {limited}");
    let _ = writeln!(
        out,
        "# HELP wsls_frame_file_bytes WebSocket frames held in memory files for sendfile (not in the RSS).\n# TYPE wsls_frame_file_bytes gauge\nwsls_frame_file_bytes {}",
        super::wire::file_bytes()
    );
    let _ = writeln!(
        out,
        "# HELP wsls_uptime_seconds Seconds since the server started.\n# TYPE wsls_uptime_seconds gauge\nwsls_uptime_seconds {}",
        app.started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "# HELP wsls_build_info The running version.\n# TYPE wsls_build_info gauge\nwsls_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
