//! `/metrics` in the Prometheus text format (version 0.0.4), written from the hubs' counters:
//! per stream, viewers, fragments and bytes in and out, skips, restarts, reconnects, the
//! ingest bitrate and the time from ingest to send.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::stream::{SEND_DELAY_BUCKETS, Status};

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let streams: Vec<_> = app.streams.iter().collect();
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
        .map(|stream| {
            let c = &stream.hub.counters;
            let load =
                |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
            let snapshot = stream.hub.snapshot();
            [
                f64::from(u8::from(snapshot.status == Status::Live)),
                load(&c.viewers),
                load(&c.fragments_in),
                load(&c.bytes_in),
                load(&c.fragments_out),
                load(&c.bytes_out),
                load(&c.socket_writes),
                load(&c.skips),
                load(&c.skipped_fragments),
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
    let name = "wsls_ingest_to_send_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a fragment entering the hub to its bytes written to a viewer.\n# TYPE {name} histogram"
    );
    for stream in &streams {
        let (counts, sum) = stream.hub.counters.send_delay.read();
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
