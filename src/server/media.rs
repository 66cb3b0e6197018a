//! The DASH and HLS routes: manifests, init segments, segments and parts, all served from the
//! hub's shared fragment buffers without copying them.
//!
//! Complete segments and parts are immutable (`Cache-Control: public, max-age=…, immutable`);
//! manifests are not (`no-cache`), so any HTTP cache or CDN can sit in front. A segment or part
//! still being built is streamed as it grows (chunked transfer), fragment by fragment.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;

use super::auth::{self, Action};
use super::pages::urlencode;
use super::{ApiError, AppState};
use crate::manifest::{dash, hls};
use crate::stream::manifests::{self, HlsUris};
use crate::stream::{Access, Hub, Segment, Stream, unix_millis};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const MPD_TYPE: &str = "application/dash+xml";
const M3U8_TYPE: &str = "application/vnd.apple.mpegurl";
const SEGMENT_TYPE: &str = "video/iso.segment";
const INIT_TYPE: &str = "video/mp4";

/// How long a growing segment or part may take to make progress before its response ends.
const GROWTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The stream `name` if the request may read it, noted as wanted: asking for its media keeps
/// an on-demand source running. With it, what manifests append to the URLs they list: the
/// request's token (`?token=…`) on a stream that needs one, so that players which cannot set
/// headers carry it to every segment.
fn stream(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Arc<Stream>, String), ApiError> {
    let stream = app.streams.get(name).ok_or(ApiError::NotFound("stream"))?;
    let token = auth::token_of(headers, query);
    app.auth
        .allow(stream.read, name, Action::Read, token.as_deref())
        .map_err(ApiError::Denied)?;
    stream.hub.touch();
    let carried = match (stream.read, token) {
        (Access::Token, Some(token)) => format!("?token={}", urlencode(&token)),
        _ => String::new(),
    };
    Ok((stream, carried))
}

fn respond(
    body: Body,
    content_type: &'static str,
    cache: &'static str,
    len: Option<usize>,
) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    response
}

/// Which fragments of a segment a response carries.
#[derive(Clone, Copy)]
enum Selection {
    All,
    Track(u32),
    Part(u32),
    TrackPart(u32, u32),
}

impl Selection {
    /// The selected fragments so far, and whether there will be no more.
    fn pick(self, segment: &Segment) -> (Vec<Bytes>, bool) {
        match self {
            Selection::All => (segment.chunks().cloned().collect(), segment.complete),
            Selection::Track(track) => (
                segment.track_chunks(track).cloned().collect(),
                segment.complete,
            ),
            Selection::Part(index) => match segment.part(index) {
                Some(part) => (
                    segment.part_chunks(part).cloned().collect(),
                    segment.complete || part.info.duration > 0,
                ),
                None => (Vec::new(), segment.complete),
            },
            Selection::TrackPart(track, index) => match segment.part(index) {
                Some(part) => (
                    segment.part_track_chunks(part, track).cloned().collect(),
                    segment.complete || part.info.duration > 0,
                ),
                None => (Vec::new(), segment.complete),
            },
        }
    }
}

/// Streams the selected fragments of segment `number` as they arrive, until it is complete.
fn growing_body(hub: Arc<Hub>, number: u64, selection: Selection) -> Body {
    let chunks = stream::unfold((hub, 0usize, false), move |(hub, sent, done)| async move {
        if done {
            return None;
        }
        let deadline = tokio::time::Instant::now() + GROWTH_TIMEOUT;
        // `None` inside: the segment left the window, or is complete with nothing more.
        let (chunks, complete) = hub
            .wait_for(deadline, |hub| {
                let Some(segment) = hub.segment(number) else {
                    return Some(None);
                };
                let (chunks, complete) = selection.pick(&segment);
                if chunks.len() > sent {
                    Some(Some((chunks, complete)))
                } else if complete {
                    Some(None)
                } else {
                    None
                }
            })
            .await??;
        let mut out = bytes::BytesMut::new();
        for chunk in &chunks[sent..] {
            out.extend_from_slice(chunk);
        }
        Some((
            Ok::<_, Infallible>(out.freeze()),
            (hub, chunks.len(), complete),
        ))
    });
    Body::from_stream(chunks)
}

/// Waits for segment `number` if it is the next one to start: a low-latency DASH client asks
/// for a segment as its first fragment is due (the MPD lists it ahead), which may be a moment
/// before it arrives.
async fn await_next_segment(hub: &Arc<Hub>, number: u64) -> Result<(), ApiError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs_f64(hub.config().segment_secs.max(1.0));
    hub.wait_for(deadline, |hub| {
        // Asked on every fragment while it waits: the newest number, nothing copied. One
        // already gone from the window is the caller's 404.
        let newest = hub.newest_number();
        if newest.is_some_and(|newest| number <= newest) {
            return Some(Ok(()));
        }
        if newest.is_none_or(|newest| number != newest + 1) {
            return Some(Err(ApiError::NotFound("segment")));
        }
        None
    })
    .await
    .unwrap_or(Err(ApiError::Timeout("the segment")))
}

/// Serves a segment (or a track or part of one): whole if complete, growing if not.
fn serve_segment(hub: &Arc<Hub>, number: u64, selection: Selection) -> Result<Response, ApiError> {
    let segment = hub.segment(number).ok_or(ApiError::NotFound("segment"))?;
    if let Selection::Part(index) = selection
        && segment.part(index).is_none()
    {
        return Err(ApiError::NotFound("part"));
    }
    let (chunks, complete) = selection.pick(&segment);
    if complete {
        let len = chunks.iter().map(Bytes::len).sum();
        let body = Body::from_stream(stream::iter(chunks.into_iter().map(Ok::<_, Infallible>)));
        return Ok(respond(body, SEGMENT_TYPE, IMMUTABLE, Some(len)));
    }
    let mut response = respond(
        growing_body(hub.clone(), number, selection),
        SEGMENT_TYPE,
        "no-cache",
        None,
    );
    // A proxy in front (nginx) passes each fragment on as it comes, rather than buffering.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn parse_number(file: &str, suffix: &str) -> Result<u64, ApiError> {
    file.strip_suffix(suffix)
        .and_then(|n| n.parse().ok())
        .ok_or(ApiError::NotFound("file"))
}

/// The absolute URL of `/api/time` as the client reached us.
fn time_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v == "https" || *v == "http")
        .unwrap_or("http");
    Some(format!("{scheme}://{host}/api/time"))
}

pub async fn dash_manifest(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if super::recordings::asks_for_stretch(query.as_deref()) {
        return super::recordings::dash_stretch(&app, &name, &headers, query.as_deref()).await;
    }
    let (stream, carried) = stream(&app, &name, &headers, query.as_deref())?;
    let snapshot = stream.hub.snapshot();
    let now = unix_millis(SystemTime::now());
    let mut mpd = manifests::dash_mpd(
        &snapshot,
        stream.hub.config(),
        time_url(&headers).into_iter().collect(),
        now,
        true,
    )
    .ok_or_else(|| ApiError::NotLive(name.clone()))?;
    if stream.renditions.len() > 1 {
        add_rungs(&mut mpd, &stream, &headers, now);
    }
    if !carried.is_empty() {
        for set in mpd.periods.iter_mut().flat_map(|p| &mut p.adaptation_sets) {
            for r in std::iter::once(&mut set.representation).chain(&mut set.alternatives) {
                r.initialization.push_str(&carried);
                r.media.push_str(&carried);
            }
        }
    }
    Ok(respond(
        Body::from(dash::render(&mpd)),
        MPD_TYPE,
        "no-cache",
        None,
    ))
}

/// A ladder's MPD: its video AdaptationSet gets a Representation per rung, named by the rung
/// (`720`, `360`), each with its own timeline and its files at its own stream's paths
/// (`../NAME@360/1/…`); the audio, which every rung shares, is the top rung's.
fn add_rungs(mpd: &mut dash::Mpd, stream: &Stream, headers: &HeaderMap, now: u64) {
    let named = |mut r: dash::Representation, rung: &crate::stream::Rung, prefix: &str| {
        let id = r.id.clone();
        let place =
            |template: &str| format!("{prefix}{}", template.replace("$RepresentationID$", &id));
        r.initialization = place(&r.initialization);
        r.media = place(&r.media);
        r.id = rung.name.clone();
        r
    };
    // Each lower rung's MPD, made from its own window (not live yet: left out).
    let lower: Vec<(&crate::stream::Rung, dash::Mpd)> = stream
        .renditions
        .iter()
        .skip(1)
        .filter_map(|rung| {
            let snapshot = rung.hub.snapshot();
            let times = time_url(headers).into_iter().collect();
            Some((
                rung,
                manifests::dash_mpd(&snapshot, rung.hub.config(), times, now, true)?,
            ))
        })
        .collect();
    let top = &stream.renditions[0];
    for (index, period) in mpd.periods.iter_mut().enumerate() {
        for set in &mut period.adaptation_sets {
            if set.content_type != "video" {
                continue;
            }
            set.representation = named(set.representation.clone(), top, "");
            for (rung, rung_mpd) in &lower {
                let found = rung_mpd
                    .periods
                    .get(index)
                    .into_iter()
                    .flat_map(|p| &p.adaptation_sets)
                    .find(|s| s.content_type == "video");
                if let Some(found) = found {
                    let prefix = format!("../{}/", rung.stream);
                    set.alternatives
                        .push(named(found.representation.clone(), rung, &prefix));
                }
            }
        }
    }
}

pub async fn dash_file(
    State(app): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (stream, _) = stream(&app, &name, &headers, query.as_deref())?;
    if file == "init.mp4" {
        let init = stream.hub.snapshot().init.ok_or(ApiError::NotLive(name))?;
        let bytes = init.segment.bytes.clone();
        let len = bytes.len();
        // The init changes when the source restarts with new parameters: not immutable.
        return Ok(respond(Body::from(bytes), INIT_TYPE, "no-cache", Some(len)));
    }
    let number = parse_number(&file, ".m4s")?;
    await_next_segment(&stream.hub, number).await?;
    serve_segment(&stream.hub, number, Selection::All)
}

pub async fn dash_track_file(
    State(app): State<AppState>,
    Path((name, track, file)): Path<(String, u32, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (stream, _) = stream(&app, &name, &headers, query.as_deref())?;
    if file == "init.mp4" {
        let init = stream.hub.snapshot().init.ok_or(ApiError::NotLive(name))?;
        let bytes = init
            .track_init(track)
            .cloned()
            .ok_or(ApiError::NotFound("track"))?;
        let len = bytes.len();
        return Ok(respond(Body::from(bytes), INIT_TYPE, "no-cache", Some(len)));
    }
    let number = parse_number(&file, ".m4s")?;
    await_next_segment(&stream.hub, number).await?;
    serve_segment(&stream.hub, number, Selection::Track(track))
}

pub async fn hls_multivariant(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if super::recordings::asks_for_stretch(query.as_deref()) {
        return super::recordings::hls_stretch(&app, &name, &headers, query.as_deref()).await;
    }
    let (stream, carried) = stream(&app, &name, &headers, query.as_deref())?;
    let snapshot = stream.hub.snapshot();
    let body = if stream.renditions.len() > 1 {
        // A variant per rung, each its video's playlist (`TRACK/live.m3u8`, the top rung's
        // beside this one, the others' at their own streams), the shared audio the top's.
        let snapshots: Vec<_> = stream.renditions.iter().map(|r| r.hub.snapshot()).collect();
        let refs: Vec<&crate::stream::Snapshot> = snapshots.iter().collect();
        let uri = |rung: usize, track: u32| {
            if rung == 0 {
                format!("{track}/live.m3u8{carried}")
            } else {
                format!(
                    "../{}/{track}/live.m3u8{carried}",
                    stream.renditions[rung].stream
                )
            }
        };
        manifests::hls_ladder(&refs, &uri)
    } else {
        manifests::hls_multivariant(&snapshot, &format!("live.m3u8{carried}"))
    }
    .ok_or_else(|| ApiError::NotLive(name.clone()))?;
    Ok(respond(Body::from(body), M3U8_TYPE, "no-cache", None))
}

/// How far ahead of the live edge a blocking reload may ask (RFC 8216bis §6.2.5.2: a server
/// answers 400 to a request more than two segments ahead).
const MAX_SEGMENTS_AHEAD: u64 = 2;

pub async fn hls_media(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    media_playlist(&app, name, None, &headers, raw, &query).await
}

/// `/hls/{name}/{track}/live.m3u8`: the media playlist of one track (a ladder's video of a
/// rung, or its shared audio), its segments and init the DASH Representation's, its parts
/// that track's fragments of each part.
pub async fn hls_track_media(
    State(app): State<AppState>,
    Path((name, track)): Path<(String, u32)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    media_playlist(&app, name, Some(track), &headers, raw, &query).await
}

async fn media_playlist(
    app: &AppState,
    name: String,
    track: Option<u32>,
    headers: &HeaderMap,
    raw: Option<String>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (stream, carried) = stream(app, &name, headers, raw.as_deref())?;
    let hub = &stream.hub;
    let wanted_msn = match query.get("_HLS_msn") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest("_HLS_msn is not a number".into()))?,
        ),
        None => None,
    };
    let wanted_part = match query.get("_HLS_part") {
        Some(_) if wanted_msn.is_none() => {
            return Err(ApiError::BadRequest("_HLS_part without _HLS_msn".into()));
        }
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| ApiError::BadRequest("_HLS_part is not a number".into()))?,
        ),
        None => None,
    };
    let snapshot = match wanted_msn {
        None => hub.snapshot(),
        Some(msn) => {
            let timeout = Duration::from_secs_f64(hub.config().segment_secs * 3.0);
            let deadline = tokio::time::Instant::now() + timeout;
            hub.wait_for(deadline, |hub| {
                let snapshot = hub.snapshot();
                if let Some(newest) = snapshot.newest_number()
                    && msn > newest + MAX_SEGMENTS_AHEAD
                {
                    return Some(Err(ApiError::BadRequest(format!(
                        "_HLS_msn={msn} is too far ahead of the live edge ({newest})"
                    ))));
                }
                reached(&snapshot, msn, wanted_part).then_some(Ok(snapshot))
            })
            .await
            .unwrap_or(Err(ApiError::Timeout("the requested part")))?
        }
    };
    let encoded = urlencode(&name);
    let base = match track {
        Some(track) => {
            if snapshot
                .init
                .as_ref()
                .and_then(|i| i.segment.track(track))
                .is_none()
            {
                return Err(ApiError::NotFound("track"));
            }
            format!("/dash/{encoded}/{track}/")
        }
        None => format!("/dash/{encoded}/"),
    };
    let map = format!("{base}init.mp4");
    let segment_prefix = base;
    let uris = HlsUris {
        map: &map,
        segment_prefix: &segment_prefix,
        part_prefix: "",
        query: &carried,
    };
    let playlist = manifests::hls_media(&snapshot, hub.config(), &uris, hls::PlaylistKind::Live)
        .ok_or_else(|| ApiError::NotLive(name.clone()))?;
    Ok(respond(
        Body::from(hls::media(&playlist)),
        M3U8_TYPE,
        "no-cache",
        None,
    ))
}

/// Whether the playlist in `snapshot` already holds segment `msn` (and its part `part`).
fn reached(snapshot: &crate::stream::Snapshot, msn: u64, part: Option<u32>) -> bool {
    match part {
        // Part requests are answered once that part (or a later one) is complete.
        Some(part) => manifests::last_part(snapshot).is_some_and(|(s, p)| (s, p) >= (msn, part)),
        // A segment request: that segment is complete.
        None => snapshot.segments.last().is_some_and(|s| s.number >= msn),
    }
}

pub async fn hls_part(
    State(app): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    part(&app, name, None, file, &headers, query).await
}

/// `/hls/{name}/{track}/{n}.{p}.m4s`: one track's fragments of a part.
pub async fn hls_track_part(
    State(app): State<AppState>,
    Path((name, track, file)): Path<(String, u32, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    part(&app, name, Some(track), file, &headers, query).await
}

async fn part(
    app: &AppState,
    name: String,
    track: Option<u32>,
    file: String,
    headers: &HeaderMap,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let (stream, _) = stream(app, &name, headers, query.as_deref())?;
    let stem = file
        .strip_suffix(".m4s")
        .ok_or(ApiError::NotFound("file"))?;
    let (number, part) = stem
        .split_once('.')
        .and_then(|(n, p)| Some((n.parse::<u64>().ok()?, p.parse::<u32>().ok()?)))
        .ok_or(ApiError::NotFound("part"))?;
    let hub = &stream.hub;
    // The part a playlist hints at may not have started yet: wait for it briefly.
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs_f64((hub.config().part_secs * 3.0).max(1.0));
    hub.wait_for(deadline, |hub| {
        if hub.segment(number).is_some_and(|s| s.part(part).is_some()) {
            return Some(Ok(()));
        }
        let snapshot = hub.snapshot();
        let hinted = snapshot.open.as_ref().is_some_and(|s| {
            s.number == number && s.parts.len() as u32 == part
                || s.number + 1 == number && part == 0
        });
        (!hinted).then_some(Err(ApiError::NotFound("part")))
    })
    .await
    .unwrap_or(Err(ApiError::Timeout("the part")))?;
    let selection = match track {
        Some(track) => Selection::TrackPart(track, part),
        None => Selection::Part(part),
    };
    serve_segment(hub, number, selection)
}
