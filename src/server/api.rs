//! `/api/streams`, `/api/time` and `/healthz`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::{self, Action};
use crate::manifest::xs_datetime;
use crate::stream::{Status, unix_millis};

#[derive(Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub source: String,
    pub state: &'static str,
    /// Why the stream is restarting or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub mime: Option<String>,
    pub codecs: Option<String>,
    pub width: Option<u16>,
    pub height: Option<u16>,
    pub viewers: u64,
    pub bitrate_bps: u64,
    pub segments: usize,
    /// Who publishes to a `publish` stream now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<PublisherJson>,
    /// A ladder's rungs, top first (`?rendition=NAME` on the WebSocket picks one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<RenditionJson>,
    /// For a lower rung's own stream: the stream whose ladder it is part of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendition_of: Option<String>,
}

#[derive(Serialize)]
pub struct RenditionJson {
    pub name: String,
    /// The stream that serves it (its DASH, HLS and WebSocket paths).
    pub stream: String,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub bitrate_bps: u64,
    pub viewers: u64,
}

#[derive(Serialize)]
pub struct PublisherJson {
    pub address: Option<String>,
    pub protocol: &'static str,
    pub since_ms: u64,
}

pub async fn streams(State(app): State<AppState>) -> Response {
    let list: Vec<StreamInfo> = app
        .streams
        .all()
        .iter()
        .map(|stream| {
            let snapshot = stream.hub.snapshot();
            let init = snapshot.init.as_ref().map(|i| &i.segment);
            let video = init.and_then(|i| i.video());
            StreamInfo {
                name: stream.name.clone(),
                source: stream.source.to_string(),
                state: snapshot.status.as_str(),
                detail: match &snapshot.status {
                    Status::Restarting(why) | Status::Failed(why) => Some(why.clone()),
                    _ => None,
                },
                mime: init.map(|i| i.mime()),
                codecs: init.map(|i| i.codecs()),
                width: video.map(|v| v.width),
                height: video.map(|v| v.height),
                viewers: stream.hub.viewers(),
                bitrate_bps: snapshot.bitrate_bps(),
                segments: snapshot.segments.len(),
                publisher: stream
                    .publish_point
                    .as_ref()
                    .and_then(|p| p.publisher())
                    .map(|p| PublisherJson {
                        address: p.address.map(|a| a.to_string()),
                        protocol: p.protocol,
                        since_ms: p.since_ms,
                    }),
                renditions: stream
                    .renditions
                    .iter()
                    .map(|r| RenditionJson {
                        name: r.name.clone(),
                        stream: r.stream.clone(),
                        height: r.height,
                        video_bitrate_kbps: r.video_bitrate_kbps,
                        bitrate_bps: r.hub.snapshot().bitrate_bps(),
                        viewers: r.hub.viewers(),
                    })
                    .collect(),
                rendition_of: stream.rendition_of.clone(),
            }
        })
        .collect();
    let mut response = Json(list).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The server's clock as `xs:dateTime`: the MPD's UTCTiming (`http-xsdate`) points here, and
/// the player uses it to line its clock up with ours.
pub async fn time() -> Response {
    let mut response = xs_datetime(unix_millis(std::time::SystemTime::now())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/auth`: may the bearer of this token do this? For nginx's `auth_request` (and
/// anything else that asks before serving): 204 yes, 401 no or no valid token, 403 not this
/// stream or action, with the reason in the body.
///
/// The question is `?stream=NAME&action=read|publish|admin`, or, from nginx, the original
/// request's path in `X-Original-URI` (`/dash/NAME/…`, `/hls/NAME/…`, `/ws/NAME`,
/// `/publish/NAME`, `/metrics`). The token is the usual one (`Authorization: Bearer`, or
/// `?token=` here or on the original URI).
pub async fn auth(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    app.auth
        .asked
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let query = query.unwrap_or_default();
    let original = headers
        .get("x-original-uri")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (original_path, original_query) = original.split_once('?').unwrap_or((&original, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let token =
        auth::token_of(&headers, Some(&query)).or_else(|| auth::query_token(original_query));
    let (stream, action) = match (param("stream"), param("action")) {
        (Some(stream), action) => {
            let action = match action.as_deref().map(Action::parse) {
                None => Action::Read,
                Some(Some(action)) => action,
                Some(None) => {
                    return answer(400, "action must be read, publish or admin".into(), None);
                }
            };
            (Some(stream), action)
        }
        (None, _) => match target_of(original_path) {
            Some(target) => target,
            None if original.is_empty() => {
                return answer(
                    400,
                    "ask with ?stream=NAME (or X-Original-URI)".into(),
                    None,
                );
            }
            // A path that names no stream (a page, an asset): nothing to guard.
            None => return answer(204, String::new(), None),
        },
    };
    let result = match (&stream, action) {
        (_, Action::Admin) => app.auth.admin(token.as_deref()).map(|()| None),
        (Some(name), action) => match app.streams.get(name) {
            None => return answer(403, format!("no stream {name}"), None),
            Some(s) => {
                let access = if action == Action::Publish {
                    s.publish
                } else {
                    s.read
                };
                app.auth
                    .allow(access, name, action, token.as_deref())
                    .map(|grant| grant.expires_ms)
            }
        },
        (None, _) => return answer(204, String::new(), None),
    };
    match result {
        Ok(expires_ms) => answer(204, String::new(), expires_ms),
        Err(denied) => answer(denied.status(), denied.to_string(), None),
    }
}

/// The stream and action a request path is about.
fn target_of(path: &str) -> Option<(Option<String>, Action)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next()?;
    let name = |part: Option<&str>| part.filter(|p| !p.is_empty()).map(str::to_string);
    match first {
        "dash" | "hls" | "watch" => Some((Some(name(parts.next())?), Action::Read)),
        "ws" => match parts.next()? {
            "publish" => Some((Some(name(parts.next())?), Action::Publish)),
            stream => Some((Some(name(Some(stream))?), Action::Read)),
        },
        "publish" => Some((Some(name(parts.next())?), Action::Publish)),
        "metrics" => Some((None, Action::Admin)),
        _ => None,
    }
}

fn answer(status: u16, reason: String, expires_ms: Option<u64>) -> Response {
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = if reason.is_empty() {
        String::new()
    } else {
        format!("{reason}\n")
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    // nginx caches the answer itself (proxy_cache_valid); nothing else should.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(ms) = expires_ms
        && let Ok(value) = HeaderValue::from_str(&(ms / 1000).to_string())
    {
        headers.insert("x-token-expires", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_name_their_stream_and_action() {
        let read = |s: &str| Some((Some(s.to_string()), Action::Read));
        assert_eq!(target_of("/dash/cam1/manifest.mpd"), read("cam1"));
        assert_eq!(target_of("/hls/cam1/12.3.m4s"), read("cam1"));
        assert_eq!(target_of("/ws/cam1"), read("cam1"));
        assert_eq!(
            target_of("/ws/publish/cam1"),
            Some((Some("cam1".into()), Action::Publish))
        );
        assert_eq!(
            target_of("/publish/cam1"),
            Some((Some("cam1".into()), Action::Publish))
        );
        assert_eq!(target_of("/metrics"), Some((None, Action::Admin)));
        assert_eq!(target_of("/assets/player.js"), None);
        assert_eq!(target_of("/dash/"), None);
    }
}
