//! A WebSocket viewer for tests.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
pub enum Msg {
    Text(serde_json::Value),
    Binary(Bytes),
    Close(Option<u16>),
}

pub async fn connect(url: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    socket
}

/// The next text, binary or close message; `None` on timeout or when the socket is gone.
pub async fn next<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    timeout: Duration,
) -> Option<Msg>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(timeout, socket.next()).await.ok()??;
        match message {
            Ok(Message::Text(text)) => {
                let value = serde_json::from_str(text.as_str()).expect("text messages are JSON");
                return Some(Msg::Text(value));
            }
            Ok(Message::Binary(bytes)) => return Some(Msg::Binary(bytes)),
            Ok(Message::Close(frame)) => return Some(Msg::Close(frame.map(|f| f.code.into()))),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads the `init` text and the init segment that every viewer gets first.
pub async fn expect_init<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
) -> (serde_json::Value, Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A ladder's viewer is first told its rung.
    let init = loop {
        match next(socket, Duration::from_secs(20)).await {
            Some(Msg::Text(text)) if text["type"] == "rendition" => continue,
            Some(Msg::Text(init)) => break init,
            other => panic!("the first message must be the init text, got {other:?}"),
        }
    };
    assert_eq!(init["type"], "init", "{init}");
    let Some(Msg::Binary(segment)) = next(socket, Duration::from_secs(5)).await else {
        panic!("the init text must be followed by the init segment");
    };
    (init, segment)
}
