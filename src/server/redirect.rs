//! The plain-HTTP listener beside a TLS one (`--http-redirect ADDR`): every request is sent to
//! the same path over https, but ACME's HTTP-01 challenges (`/.well-known/acme-challenge/…`),
//! which certbot's `--webroot` writes into a folder, are served from that folder.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Clone)]
struct Redirect {
    https_port: u16,
    /// certbot's webroot: challenges are under `.well-known/acme-challenge/` in it.
    acme_dir: Option<Arc<PathBuf>>,
}

pub fn router(https_port: u16, acme_dir: Option<PathBuf>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(to_https)
        .with_state(Redirect {
            https_port,
            acme_dir: acme_dir.map(Arc::new),
        })
}

/// An ACME token is base64url (RFC 8555 §8.3): nothing else is looked up on disk.
fn plain_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn challenge(
    State(redirect): State<Redirect>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let Some(dir) = &redirect.acme_dir else {
        return to_https(State(redirect), request).await;
    };
    if !plain_token(&token) {
        return (StatusCode::NOT_FOUND, "no such challenge\n").into_response();
    }
    let path = dir.join(".well-known/acme-challenge").join(&token);
    match tokio::fs::read(&path).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

/// 308 (the method and body stay) to the same host and path over https.
async fn to_https(State(redirect): State<Redirect>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
    let Some(host) = host else {
        return (
            StatusCode::BAD_REQUEST,
            "a Host header is needed to know where to redirect\n",
        )
            .into_response();
    };
    let authority = match redirect.https_port {
        443 => host.host().to_string(),
        port if host.host().contains(':') && !host.host().starts_with('[') => {
            format!("[{}]:{port}", host.host())
        }
        port => format!("{}:{port}", host.host()),
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let target = Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(path)
        .build();
    match target
        .ok()
        .and_then(|t| HeaderValue::from_str(&t.to_string()).ok())
    {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
            "this server is reached over https\n",
        )
            .into_response(),
        None => (StatusCode::BAD_REQUEST, "cannot redirect this request\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_base64url_tokens_are_looked_up() {
        assert!(plain_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!plain_token("../../etc/passwd"));
        assert!(!plain_token("a.b"));
        assert!(!plain_token(""));
    }
}
