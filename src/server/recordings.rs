//! Recordings, read back: `/api/recordings/{name}` lists what a stream's recording holds
//! (its spans in wall-clock time, sizes, the rotation limits), and
//! `/recordings/{name}/clip.mp4?start=T&duration=D` serves one MP4 of a stretch, cut at the
//! key frame at or before `start`, with byte ranges: fragmented, or with `progressive=1` one
//! `moov` listing every sample ahead of one `mdat` (for phones and editors).
//!
//! Both need the stream's read permission, as its live media does, and neither starts an
//! on-demand source. A clip is answered from the segment files as they are on disk: its init,
//! its first and last segments cut to the stretch (in memory), and the segments between them
//! streamed from their files. A segment that rotation removes while a clip is being sent
//! ends the answer short (the connection closes before its `Content-Length`), logged.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::auth::{self, Action};
use super::{ApiError, AppState};
use crate::fmp4::flatten::flatten;
use crate::fmp4::{DEFAULT_MAX_BOX_SIZE, Fragment, InitSegment, Splitter, Unit};
use crate::manifest::{parse_datetime, xs_datetime};
use crate::stream::archive::{Entry, Span, spans};
use crate::stream::record::Stretch;
use crate::stream::{Recorded, Stream};

/// The longest clip served at once.
const MAX_CLIP_SECS: f64 = 3600.0;

/// The longest progressive clip: it is put together in memory, its `moov` first.
const MAX_PROGRESSIVE_SECS: f64 = 900.0;

#[derive(Serialize)]
struct RecordingJson {
    name: String,
    segments: usize,
    bytes: u64,
    limits: LimitsJson,
    spans: Vec<SpanJson>,
}

#[derive(Serialize)]
struct LimitsJson {
    max_bytes: Option<u64>,
    max_age_secs: Option<f64>,
}

#[derive(Serialize)]
struct SpanJson {
    start: String,
    end: String,
    start_ms: u64,
    end_ms: u64,
    duration_secs: f64,
    segments: u64,
    bytes: u64,
}

impl From<&Span> for SpanJson {
    fn from(span: &Span) -> SpanJson {
        SpanJson {
            start: xs_datetime(span.start_ms),
            end: xs_datetime(span.end_ms),
            start_ms: span.start_ms,
            end_ms: span.end_ms,
            duration_secs: span.end_ms.saturating_sub(span.start_ms) as f64 / 1000.0,
            segments: span.segments,
            bytes: span.bytes,
        }
    }
}

/// The recorded stream `name`, if the request may read it.
fn recorded(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Arc<Stream>, ApiError> {
    let stream = app.streams.get(name).ok_or(ApiError::NotFound("stream"))?;
    let token = auth::token_of(headers, query);
    app.auth
        .allow(stream.read, name, Action::Read, token.as_deref())
        .map_err(ApiError::Denied)?;
    if stream.recording.is_none() {
        return Err(ApiError::NotFound(
            "recording of this stream (it is not recorded)",
        ));
    }
    Ok(stream)
}

pub async fn list(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let stream = recorded(&app, &name, &headers, query.as_deref())?;
    let Some(recording) = stream.recording.as_ref() else {
        return Err(ApiError::NotFound("recording"));
    };
    let entries = recording.archive.entries();
    let json = RecordingJson {
        name: name.clone(),
        segments: entries.len(),
        bytes: entries.iter().map(|e| e.bytes).sum(),
        limits: LimitsJson {
            max_bytes: recording.config.max_bytes,
            max_age_secs: recording.config.max_age.map(|a| a.as_secs_f64()),
        },
        spans: spans(entries.iter()).iter().map(SpanJson::from).collect(),
    };
    drop(entries);
    let mut response = Json(json).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A time outside what is kept: 404, with the spans that are.
fn outside(what: String, spans: &[Span]) -> Response {
    #[derive(Serialize)]
    struct Outside {
        error: String,
        spans: Vec<SpanJson>,
    }
    let body = Outside {
        error: what,
        spans: spans.iter().map(SpanJson::from).collect(),
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// One piece of a clip: bytes at hand, or a whole segment file.
enum Piece {
    Memory(Bytes),
    File { path: PathBuf, len: u64 },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Memory(bytes) => bytes.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

pub async fn clip(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let stream = recorded(&app, &name, &headers, query.as_deref())?;
    let Some(recording) = stream.recording.as_ref() else {
        return Err(ApiError::NotFound("recording"));
    };
    let params: Vec<(String, String)> = url_pairs(query.as_deref().unwrap_or_default());
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let start_text = param("start").ok_or_else(|| {
        ApiError::BadRequest("give the clip's start: ?start=2026-12-01T10:00:00Z".into())
    })?;
    let start_ms = parse_time(start_text)?;
    let duration_text = param("duration").ok_or_else(|| {
        ApiError::BadRequest("give the clip's duration in seconds: &duration=10".into())
    })?;
    let duration_secs: f64 = duration_text
        .parse()
        .ok()
        .filter(|d: &f64| d.is_finite() && *d > 0.0 && *d <= MAX_CLIP_SECS)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "duration {duration_text:?}: a number of seconds above 0, at most {MAX_CLIP_SECS}"
            ))
        })?;
    let progressive = param("progressive").is_some_and(|v| v != "0");
    if progressive && duration_secs > MAX_PROGRESSIVE_SECS {
        return Err(ApiError::BadRequest(format!(
            "a progressive clip is made in memory: at most {MAX_PROGRESSIVE_SECS} s (a fragmented one, without progressive=1, may be {MAX_CLIP_SECS} s)"
        )));
    }
    let end_ms = start_ms.saturating_add((duration_secs * 1000.0) as u64);
    // The segments of the stretch: from the one `start` falls in, while they follow on
    // without a gap and with the same init.
    let chosen: Vec<Entry> = {
        let entries = recording.archive.entries();
        let first = entries
            .iter()
            .rposition(|e| e.wall_start_ms <= start_ms)
            .filter(|&i| entries[i].wall_end_ms() > start_ms);
        let Some(first) = first else {
            let spans = spans(entries.iter());
            return Ok(outside(
                format!(
                    "nothing was recorded of {name} at {}",
                    xs_datetime(start_ms)
                ),
                &spans,
            ));
        };
        let mut chosen = vec![entries[first].clone()];
        for entry in entries.iter().skip(first + 1) {
            let last = chosen.last().unwrap_or(entry);
            if entry.wall_start_ms >= end_ms || !last.followed_by(entry) || entry.init != last.init
            {
                break;
            }
            chosen.push(entry.clone());
        }
        chosen
    };
    let dir = recording.archive.dir().to_path_buf();
    let pieces =
        tokio::task::spawn_blocking(move || cut(&dir, &chosen, start_ms, end_ms, progressive))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let total: u64 = pieces.iter().map(Piece::len).sum();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(text) => match byte_range(text, total) {
            Ok(range) => range,
            Err(()) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        },
    };
    let (from, to) = range.unwrap_or((0, total));
    let mut response = Response::new(Body::from_stream(send(pieces, from, to)));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(to - from));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {from}-{}/{total}", to - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// Whether a manifest request asks for a stretch of the recording (`?start=` or `?end=`)
/// rather than the live stream.
pub fn asks_for_stretch(query: Option<&str>) -> bool {
    url_pairs(query.unwrap_or_default())
        .iter()
        .any(|(k, _)| k == "start" || k == "end")
}

/// The recorded segments from `?start=` (default: the first kept) to `?end=` (default: the
/// last), and whether the stretch is open (no end asked, and it reaches what is being
/// recorded now).
fn stretch_entries(
    recording: &Recorded,
    name: &str,
    query: Option<&str>,
) -> Result<(Vec<Entry>, bool), Box<Response>> {
    let params = url_pairs(query.unwrap_or_default());
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let time = |key: &str| param(key).map(parse_time).transpose();
    let (start_ms, end_ms) = match (time("start"), time("end")) {
        (Ok(start), Ok(end)) => (start.unwrap_or(0), end),
        (Err(err), _) | (_, Err(err)) => return Err(Box::new(err.into_response())),
    };
    if end_ms.is_some_and(|end| end <= start_ms) {
        return Err(Box::new(
            ApiError::BadRequest("the stretch's end must come after its start".into())
                .into_response(),
        ));
    }
    let entries = recording.archive.entries();
    let end = end_ms.unwrap_or(u64::MAX);
    let mut within = entries
        .iter()
        .filter(|e| e.wall_end_ms() > start_ms && e.wall_start_ms < end);
    let chosen: Vec<Entry> = within
        .by_ref()
        .take(MAX_STRETCH_SEGMENTS)
        .cloned()
        .collect();
    // More than a manifest lists at once: an open-ended stretch is cut (a player asks again
    // from where it ends); one with an end is refused.
    let cut_short = within.next().is_some();
    if cut_short && end_ms.is_some() {
        return Err(Box::new(
            ApiError::BadRequest(format!(
                "a stretch of at most {MAX_STRETCH_SEGMENTS} segments: ask for a shorter one, or leave out the end"
            ))
            .into_response(),
        ));
    }
    if chosen.is_empty() {
        let spans = spans(entries.iter());
        let to = end_ms.map_or_else(|| "on".to_string(), |e| format!("to {}", xs_datetime(e)));
        return Err(Box::new(outside(
            format!(
                "nothing was recorded of {name} from {} {to}",
                xs_datetime(start_ms)
            ),
            &spans,
        )));
    }
    let now = crate::stream::unix_millis(std::time::SystemTime::now());
    let open = end_ms.is_none()
        && !cut_short
        && entries.back().map(|e| e.number) == chosen.last().map(|e| e.number)
        && chosen
            .last()
            .is_some_and(|e| now.saturating_sub(e.wall_end_ms()) < OPEN_FOR_MS);
    Ok((chosen, open))
}

/// The most segments a stretch's manifest lists (six hours of 1 s segments).
const MAX_STRETCH_SEGMENTS: usize = 21_600;

/// A recording still counts as being recorded when its last segment ended this recently.
const OPEN_FOR_MS: u64 = 10_000;

/// What manifests of a stretch append to the files they list: the request's token, on a
/// stream that needs one.
fn carried(stream: &Stream, headers: &HeaderMap, query: Option<&str>) -> String {
    match (stream.read, auth::token_of(headers, query)) {
        (crate::stream::Access::Token, Some(token)) => {
            format!("?token={}", super::pages::urlencode(&token))
        }
        _ => String::new(),
    }
}

/// The stretch's manifest made by `make` from its segments (off the runtime's threads: it
/// reads their inits).
async fn stretch_manifest(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    content_type: &'static str,
    make: impl FnOnce(&Stretch, &str, bool) -> String + Send + 'static,
) -> Result<Response, ApiError> {
    let stream = recorded(app, name, headers, query)?;
    let Some(recording) = stream.recording.as_ref() else {
        return Err(ApiError::NotFound("recording"));
    };
    let (chosen, open) = match stretch_entries(recording, name, query) {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    let dir = recording.archive.dir().to_path_buf();
    let prefix = format!("/recordings/{}/", super::pages::urlencode(name));
    let carried = carried(&stream, headers, query);
    let body = tokio::task::spawn_blocking(move || {
        let stretch = Stretch::new(&dir, &chosen).map_err(ApiError::Internal)?;
        Ok::<_, ApiError>(make(&stretch, &prefix, open).replace("$CARRIED$", &carried))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `/dash/{name}/manifest.mpd?start=T&end=T`: a static MPD of the recorded stretch.
pub async fn dash_stretch(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    stretch_manifest(
        app,
        name,
        headers,
        query,
        "application/dash+xml",
        |stretch, prefix, _| {
            let mut mpd = stretch.mpd(prefix);
            for set in mpd.periods.iter_mut().flat_map(|p| &mut p.adaptation_sets) {
                for r in std::iter::once(&mut set.representation).chain(&mut set.alternatives) {
                    r.initialization.push_str("$CARRIED$");
                    r.media.push_str("$CARRIED$");
                }
            }
            crate::manifest::dash::render(&mpd)
        },
    )
    .await
}

/// `/hls/{name}/index.m3u8?start=T&end=T`: a media playlist of the recorded stretch, an
/// `EVENT` playlist while it is still being recorded, else finished.
pub async fn hls_stretch(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    stretch_manifest(
        app,
        name,
        headers,
        query,
        "application/vnd.apple.mpegurl",
        |stretch, prefix, open| {
            let mut playlist = stretch.playlist(prefix, open);
            playlist.map_uri.push_str("$CARRIED$");
            for segment in &mut playlist.segments {
                segment.uri.push_str("$CARRIED$");
                if let Some(map) = segment.map_uri.as_mut() {
                    map.push_str("$CARRIED$");
                }
            }
            crate::manifest::hls::media(&playlist)
        },
    )
    .await
}

/// `/recordings/{name}/{file}`: a recorded init (`init.mp4`, `init-N.mp4`) or segment
/// (`N.m4s`), as a stretch's manifest lists them.
pub async fn file(
    State(app): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    serve_file(&app, &name, None, &file, &headers, query.as_deref()).await
}

/// `/recordings/{name}/{track}/{file}`: the same, of one track.
pub async fn track_file(
    State(app): State<AppState>,
    Path((name, track, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if track.is_empty() || !track.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::NotFound("track"));
    }
    serve_file(&app, &name, Some(&track), &file, &headers, query.as_deref()).await
}

/// Which recorded file `name` is: its content type, or `None` for a name the recorder does
/// not write (nothing else in the folder is served).
fn recorded_kind(name: &str) -> Option<&'static str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if name.strip_suffix(".m4s").is_some_and(digits) {
        return Some("video/iso.segment");
    }
    let init = name.strip_suffix(".mp4")?;
    (init == "init" || init.strip_prefix("init-").is_some_and(digits)).then_some("video/mp4")
}

async fn serve_file(
    app: &AppState,
    name: &str,
    track: Option<&str>,
    file: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let stream = recorded(app, name, headers, query)?;
    let Some(recording) = stream.recording.as_ref() else {
        return Err(ApiError::NotFound("recording"));
    };
    let content_type = recorded_kind(file).ok_or(ApiError::NotFound("recorded file"))?;
    let mut path = recording.archive.dir().to_path_buf();
    if let Some(track) = track {
        path.push(track);
    }
    path.push(file);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::Missing(format!(
                "{file} is not in the recording of {name} (rotated away?)"
            )));
        }
        Err(err) => return Err(ApiError::Internal(format!("{}: {err}", path.display()))),
    };
    let len = bytes.len();
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // A recorded file does not change; rotation may remove it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    Ok(response)
}

/// A time given as RFC 3339 (`2026-12-01T10:00:00Z`) or Unix seconds (`1796119200.5`).
fn parse_time(text: &str) -> Result<u64, ApiError> {
    if let Some(ms) = parse_datetime(text) {
        return Ok(ms);
    }
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{text:?} is not a time: give RFC 3339 (2026-12-01T10:00:00Z) or Unix seconds"
            ))
        })
}

/// The query's `key=value` pairs, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (auth::percent_decode(k), auth::percent_decode(v))
        })
        .collect()
}

/// A single `Range: bytes=…` over `total` bytes as `[from, to)`; `Ok(None)` for a form
/// answered with the whole (several ranges); `Err` when it cannot be satisfied.
fn byte_range(text: &str, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| ())?;
        if suffix == 0 {
            return Err(());
        }
        (total.saturating_sub(suffix), total)
    } else {
        let from: u64 = a.parse().map_err(|_| ())?;
        let to = if b.is_empty() {
            total
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(total)
        };
        (from, to)
    };
    if range.0 >= range.1 {
        return Err(());
    }
    Ok(Some(range))
}

/// The clip's pieces: the init, the first and last segments cut to `[start_ms, end_ms)` at
/// fragment boundaries (from the key frame at or before the start), whole files between.
fn cut(
    dir: &std::path::Path,
    chosen: &[Entry],
    start_ms: u64,
    end_ms: u64,
    progressive: bool,
) -> Result<Vec<Piece>, ApiError> {
    let gone = |what: String| ApiError::Missing(format!("{what} is no longer recorded"));
    let Some(first) = chosen.first() else {
        return Err(ApiError::NotFound("segment"));
    };
    let init_bytes =
        std::fs::read(dir.join(&first.init)).map_err(|e| gone(format!("{} ({e})", first.init)))?;
    let init = Arc::new(
        InitSegment::parse(Bytes::from(init_bytes.clone()), 0)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", first.init)))?,
    );
    let reference = init
        .reference_track()
        .map(|t| t.id)
        .ok_or_else(|| ApiError::Internal(format!("{} has no tracks", first.init)))?;
    let mut pieces = vec![Piece::Memory(Bytes::from(init_bytes))];
    // A progressive file lists every sample before its media: all of it is read first.
    let mut all = Vec::new();
    let last_index = chosen.len() - 1;
    for (i, entry) in chosen.iter().enumerate() {
        let path = dir.join(format!("{}.m4s", entry.number));
        let media_at = |ms: u64| {
            let into = ms.saturating_sub(entry.wall_start_ms);
            entry.start + into * u64::from(entry.timescale) / 1000
        };
        let from = (i == 0).then(|| media_at(start_ms));
        let to = (i == last_index && end_ms < entry.wall_end_ms()).then(|| media_at(end_ms));
        if from.is_none() && to.is_none() && !progressive {
            let len = std::fs::metadata(&path)
                .map_err(|e| gone(format!("segment {} ({e})", entry.number)))?
                .len();
            pieces.push(Piece::File { path, len });
            continue;
        }
        let bytes =
            std::fs::read(&path).map_err(|e| gone(format!("segment {} ({e})", entry.number)))?;
        let fragments = fragments_of(Bytes::from(bytes), &init)
            .map_err(|e| ApiError::Internal(format!("segment {}: {e}", entry.number)))?;
        // From the last fragment starting with a key frame at or before the start.
        let begin = match from {
            None => 0,
            Some(at) => fragments
                .iter()
                .rposition(|f| {
                    f.starts_with_sync_of(reference)
                        && f.run(reference).is_some_and(|r| r.decode_time <= at)
                })
                .unwrap_or(0),
        };
        // Up to the first fragment of the reference track at or after the end.
        let finish = match to {
            None => fragments.len(),
            Some(at) => fragments
                .iter()
                .position(|f| f.run(reference).is_some_and(|r| r.decode_time >= at))
                .unwrap_or(fragments.len()),
        };
        let kept = fragments.get(begin..finish.max(begin)).unwrap_or_default();
        if progressive {
            all.extend_from_slice(kept);
        } else {
            pieces.extend(kept.iter().map(|f| Piece::Memory(f.bytes.clone())));
        }
    }
    if progressive {
        let flat = flatten(&init, &all)
            .map_err(|e| ApiError::Internal(format!("a progressive clip: {e}")))?;
        return Ok(std::iter::once(flat.head)
            .chain(flat.media)
            .map(Piece::Memory)
            .collect());
    }
    Ok(pieces)
}

/// A segment file's fragments, in order.
fn fragments_of(bytes: Bytes, init: &Arc<InitSegment>) -> crate::fmp4::Result<Vec<Fragment>> {
    let mut splitter = Splitter::with_init(DEFAULT_MAX_BOX_SIZE, init.clone());
    splitter.feed(bytes);
    let mut fragments = Vec::new();
    while let Some(unit) = splitter.poll()? {
        if let Unit::Fragment(fragment) = unit {
            fragments.push(fragment);
        }
    }
    splitter.finish()?;
    Ok(fragments)
}

/// Bytes `[from, to)` of the pieces, files read in 64 KiB pieces as they are sent.
fn send(
    pieces: Vec<Piece>,
    from: u64,
    to: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    async_stream_like(move |tx| async move {
        let mut at = 0u64;
        for piece in pieces {
            let len = piece.len();
            let (start, end) = (at, at + len);
            at = end;
            if end <= from || start >= to {
                continue;
            }
            let skip = from.saturating_sub(start);
            let take = to.min(end) - start - skip;
            match piece {
                Piece::Memory(bytes) => {
                    let slice = bytes.slice(skip as usize..(skip + take) as usize);
                    if tx.send(Ok(slice)).await.is_err() {
                        return;
                    }
                }
                Piece::File { path, .. } => {
                    let opened = tokio::fs::File::open(&path).await;
                    let mut file = match opened {
                        Ok(file) => file,
                        Err(err) => {
                            tracing::warn!(file = %path.display(), "a clip's segment went (rotated away?) while it was sent: {err}");
                            let _ = tx.send(Err(err)).await;
                            return;
                        }
                    };
                    if let Err(err) = file.seek(std::io::SeekFrom::Start(skip)).await {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                    let mut left = take;
                    while left > 0 {
                        let mut buf = vec![0u8; left.min(crate::stream::IO_PIECE as u64) as usize];
                        match file.read_exact(&mut buf).await {
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(file = %path.display(), "a clip's segment was cut short while it was sent: {err}");
                                let _ = tx.send(Err(err)).await;
                                return;
                            }
                        }
                        left -= buf.len() as u64;
                        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
}

/// A stream of what `produce` sends into its channel (two pieces in flight at most).
fn async_stream_like<F, Fut>(produce: F) -> impl futures_util::Stream<Item = std::io::Result<Bytes>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(produce(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok(Some((0, 100))));
        assert_eq!(byte_range("bytes=500-", 1000), Ok(Some((500, 1000))));
        assert_eq!(byte_range("bytes=-100", 1000), Ok(Some((900, 1000))));
        assert_eq!(byte_range("bytes=900-5000", 1000), Ok(Some((900, 1000))));
        assert_eq!(byte_range("bytes=0-1,5-9", 1000), Ok(None));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(()));
        assert_eq!(byte_range("bytes=x-", 1000), Err(()));
        assert_eq!(byte_range("bytes=-0", 1000), Err(()));
    }

    #[test]
    fn query_values_are_decoded() {
        let pairs = url_pairs("start=2026-12-01T10%3A00%3A00%2B01%3A00&duration=5");
        assert_eq!(pairs[0].1, "2026-12-01T10:00:00+01:00");
        assert_eq!(pairs[1], ("duration".into(), "5".into()));
        assert_eq!(url_pairs("start=%zz%&x=%é%4")[0].1, "%zz%");
        assert_eq!(url_pairs("start=%zz%&x=%é%4")[1].1, "%é%4");
    }
}
