//! `PUT`/`POST /publish/{name}`: a publisher pushes FLV or fragmented MP4 in the request body
//! (`ffmpeg … -f flv -method PUT http://host/publish/NAME`, `curl -T - …`) to a stream whose
//! source is `publish`. The answer comes when the body ends, or when the publisher is cut off,
//! with the reason.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use tokio::sync::oneshot;

use super::auth::{self, Action};
use super::limits::AddressSlot;
use super::{ApiError, AppState};
use crate::source::SourceError;
use crate::source::publish::{Publisher, PublisherInfo, now_ms};

pub async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let stream = app
        .streams
        .get(&name)
        .cloned()
        .ok_or(ApiError::NotFound("stream"))?;
    let token = auth::token_of(request.headers(), query.as_deref());
    app.auth
        .allow(stream.publish, &name, Action::Publish, token.as_deref())
        .map_err(ApiError::Denied)?;
    let Some(point) = stream.publish_point.clone() else {
        return Err(ApiError::Conflict(format!(
            "stream {name} is not fed by publishers (its source is {})",
            stream.source
        )));
    };
    let address = request
        .extensions()
        .get::<Arc<AddressSlot>>()
        .map(|slot| slot.address());
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let (done, answer) = oneshot::channel();
    let publisher = Publisher {
        input: Box::new(tokio_util::io::StreamReader::new(body)),
        info: PublisherInfo {
            address,
            protocol: "http",
            since_ms: now_ms(),
        },
        done,
    };
    point
        .offer(publisher)
        .map_err(|refused| ApiError::Conflict(format!("stream {name}: {refused}")))?;
    let Ok(published) = answer.await else {
        return Err(ApiError::Busy(format!(
            "stream {name} stopped taking its publisher"
        )));
    };
    let status = match &published.error {
        None => StatusCode::OK,
        Some(SourceError::Publisher(_)) => StatusCode::CONFLICT,
        Some(SourceError::Io { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut => {
            StatusCode::REQUEST_TIMEOUT
        }
        Some(_) => StatusCode::BAD_REQUEST,
    };
    let text = match &published.error {
        None => format!("published {} bytes to {name}\n", published.bytes),
        Some(error) => format!("cut off after {} bytes: {error}\n", published.bytes),
    };
    let mut response = (status, Body::from(text)).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
