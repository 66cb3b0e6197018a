//! The pages and assets of `public/`, embedded in the binary: the index of streams, the player
//! page of one stream, and the scripts and styles they load.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

use super::{ApiError, AppState};

#[derive(RustEmbed)]
#[folder = "public/"]
struct Public;

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn template(name: &str) -> Result<String, ApiError> {
    let file =
        Public::get(name).ok_or_else(|| ApiError::Internal(format!("{name} not embedded")))?;
    String::from_utf8(file.data.into_owned())
        .map_err(|_| ApiError::Internal(format!("{name} is not UTF-8")))
}

pub async fn index(State(app): State<AppState>) -> Result<Html<String>, ApiError> {
    let mut items = String::new();
    // A ladder's lower rungs are watched through it (the page picks the rung).
    for stream in app
        .streams
        .all()
        .into_iter()
        .filter(|s| s.rendition_of.is_none())
    {
        let snapshot = stream.hub.snapshot();
        let name = escape(&stream.name);
        let detail = snapshot
            .init
            .as_ref()
            .map(|init| {
                let size = init
                    .segment
                    .video()
                    .map(|v| format!(" {}x{}", v.width, v.height))
                    .unwrap_or_default();
                let rungs: Vec<&str> = stream.renditions.iter().map(|r| r.name.as_str()).collect();
                let ladder = if rungs.is_empty() {
                    String::new()
                } else {
                    format!(", renditions {}", rungs.join("/"))
                };
                format!("{}{size}{ladder}", init.segment.codecs())
            })
            .unwrap_or_default();
        items.push_str(&format!(
            "<li><a href=\"/watch/{}\">{name}</a> <span class=\"state {state}\">{state}</span> <span class=\"detail\">{}</span></li>\n",
            escape(&urlencode(&stream.name)),
            escape(&detail),
            state = snapshot.status.as_str(),
        ));
    }
    Ok(Html(
        template("index.html")?.replace("<!--STREAMS-->", &items),
    ))
}

pub async fn watch(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let Some(stream) = app.streams.get(&name) else {
        return Err(ApiError::NotFound("stream"));
    };
    // The page shows a timeline only for a recorded stream (no listing asked for, and
    // refused, otherwise).
    let recorded = if stream.recording.is_some() {
        "true"
    } else {
        "false"
    };
    Ok(Html(
        stream_page("watch.html", &name)?
            .0
            .replace("{{recorded}}", recorded),
    ))
}

/// `/publish/{name}`: the page that publishes the browser's camera and microphone; with
/// `publish = "any"`, for a name no stream has yet too (publishing makes it).
pub async fn publish(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let may_make = app.streams.makes_new() && crate::stream::valid_name(&name);
    if app.streams.get(&name).is_none() && !may_make {
        return Err(ApiError::NotFound("stream"));
    }
    stream_page("publish.html", &name)
}

/// A page template for stream `name`.
fn stream_page(file: &str, name: &str) -> Result<Html<String>, ApiError> {
    Ok(Html(template(file)?.replace("{{name}}", &escape(name))))
}

pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    // Templates are served rendered, not raw.
    if path.ends_with(".html") {
        return Err(ApiError::NotFound("asset"));
    }
    let file = Public::get(&path).ok_or(ApiError::NotFound("asset"))?;
    let mime = match path.rsplit('.').next() {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Percent-encodes a path segment.
pub fn urlencode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_encodes_paths() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(urlencode("cam 1/ä"), "cam%201%2F%C3%A4");
    }

    #[test]
    fn the_templates_are_embedded_with_their_markers() {
        let index = template("index.html").expect("index.html");
        assert!(index.contains("<!--STREAMS-->"));
        let watch = template("watch.html").expect("watch.html");
        assert!(watch.contains("{{name}}"));
        assert!(watch.contains("data-recorded=\"{{recorded}}\""));
    }
}
