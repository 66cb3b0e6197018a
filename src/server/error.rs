//! The one error type at the HTTP edge: one mapping from kind to status, no internals in
//! responses, the cause logged inside the request's span.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Something named in the request is not there (404), said in full.
    #[error("{0}")]
    Missing(String),
    #[error("stream {0} has no media yet")]
    NotLive(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("waited too long for {0}")]
    Timeout(&'static str),
    /// At a viewer limit.
    #[error("{0}; try again later")]
    Busy(String),
    /// Refused by access control (401 or 403).
    #[error("{0}")]
    Denied(super::auth::Denied),
    /// The request clashes with the state of things (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests from one address (429).
    #[error("{0}")]
    TooMany(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::NotLive(_) | ApiError::Timeout(_) | ApiError::Busy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Denied(denied) => {
                StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN)
            }
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                "internal error\n".to_string()
            }
            other => format!("{other}\n"),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3.
            let value = match &self {
                ApiError::Denied(super::auth::Denied::Missing) => "Bearer",
                ApiError::Denied(super::auth::Denied::Expired) => {
                    "Bearer error=\"invalid_token\", error_description=\"expired\""
                }
                _ => "Bearer error=\"invalid_token\"",
            };
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        response
    }
}
