//! `/api/streams`, `/api/time` and `/healthz`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
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
}

pub async fn streams(State(app): State<AppState>) -> Response {
    let list: Vec<StreamInfo> = app
        .streams
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
