//! Access control against the real server: tokens (JWT, HS256 and ES256 from a public key or
//! a JWKS) refused for every reason with the right status or close code, a valid one playing
//! over WebSocket, DASH and HLS (the manifests carry it to every URL), `/api/auth` as nginx
//! asks it, the admin token on `/metrics`, and a token that runs out while watching, renewed
//! or not.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::server::*;
use common::ws::{Msg, Socket, expect_init, next};
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "an HS256 secret of at least thirty-two bytes";
const OTHER_SECRET: &str = "another HS256 secret, thirty-two bytes or more";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key"),
    )
    .expect("signing")
}

fn es256(claims: serde_json::Value, key: &rcgen::KeyPair, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("EC key");
    jsonwebtoken::encode(&header, &claims, &key).expect("signing")
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

fn read_claims(streams: &[&str], exp: u64) -> serde_json::Value {
    serde_json::json!({"streams": streams, "action": "read", "exp": exp})
}

/// Two EC keys (one as a PEM public key, one in a JWKS as kid "k1") and a server with the
/// HS256 secret too, the admin token, a public stream and two that need tokens.
struct Fixture {
    server: TestServer,
    pem_key: rcgen::KeyPair,
    jwks_key: rcgen::KeyPair,
}

fn fixture() -> Fixture {
    let pem_key = rcgen::KeyPair::generate().expect("key");
    let jwks_key = rcgen::KeyPair::generate().expect("key");
    let public_pem = temp_file("auth-ec.pem", &pem_key.public_key_pem());
    let point = jwks_key.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": base64url(&point[1..33]), "y": base64url(&point[33..]),
    }]});
    let jwks_path = temp_file("auth-jwks.json", &jwks.to_string());
    let config = temp_file(
        "auth.toml",
        &format!(
            "jwt_secret = \"{SECRET}\"\nadmin_token = \"{ADMIN}\"\njwt_public_key = \"{}\"\njwks = \"{}\"\n\n\
             [[stream]]\nname = \"open\"\nsource = \"sample\"\n\n\
             [[stream]]\nname = \"cam1\"\nsource = \"sample\"\nread = \"token\"\n\n\
             [[stream]]\nname = \"cam2\"\nsource = \"sample\"\nread = \"token\"\n",
            public_pem.display(),
            jwks_path.display()
        ),
    );
    let server = TestServer::start(&["--config", config.to_str().expect("utf-8")]);
    Fixture {
        server,
        pem_key,
        jwks_key,
    }
}

async fn connect(url: &str) -> Socket {
    common::ws::connect(url).await
}

/// What a viewer gets first: a close code, or `None` when it is let in (its init comes).
async fn refused_with(url: &str) -> Option<u16> {
    let mut socket = connect(url).await;
    match next(&mut socket, Duration::from_secs(10)).await {
        Some(Msg::Close(code)) => code,
        Some(Msg::Text(value)) if value["type"] == "init" => None,
        other => panic!("{url}: neither a close nor the init: {other:?}"),
    }
}

async fn status(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> u16 {
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn wait_for_segments(server: &TestServer, client: &reqwest::Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = client
            .get(server.url("/api/streams"))
            .send()
            .await
            .expect("streams")
            .json()
            .await
            .expect("JSON");
        let ready = list
            .as_array()
            .is_some_and(|l| l.iter().all(|s| s["segments"].as_u64() >= Some(1)));
        if ready {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no segments: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason_and_nothing_is_served() {
    let f = fixture();
    let server = &f.server;
    let client = reqwest::Client::new();
    wait_for_segments(server, &client).await;
    let in_an_hour = now() + 3600;
    let forged = hs256(read_claims(&["cam1"], in_an_hour), OTHER_SECRET);
    let expired = hs256(read_claims(&["cam1"], now() - 10), SECRET);
    let other_stream = hs256(read_claims(&["cam2"], in_an_hour), SECRET);
    let publish_only = hs256(
        serde_json::json!({"streams": ["cam*"], "action": "publish", "exp": in_an_hour}),
        SECRET,
    );
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(read_claims(&["cam1"], in_an_hour).to_string().as_bytes())
    );
    let no_exp = hs256(
        serde_json::json!({"streams": ["cam1"], "action": "read"}),
        SECRET,
    );
    let cases: [(&str, Option<&str>, u16, u16); 7] = [
        ("missing", None, 401, 4401),
        ("wrong signature", Some(&forged), 401, 4401),
        ("expired", Some(&expired), 401, 4410),
        ("wrong stream", Some(&other_stream), 403, 4403),
        ("wrong action", Some(&publish_only), 403, 4403),
        ("alg none", Some(&unsigned), 401, 4401),
        ("no expiry", Some(&no_exp), 401, 4401),
    ];
    for (case, token, http, close) in cases {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        assert_eq!(
            refused_with(&server.ws_url(&format!("/ws/cam1{query}"))).await,
            Some(close),
            "{case}: WebSocket"
        );
        for path in [
            "/dash/cam1/manifest.mpd",
            "/dash/cam1/init.mp4",
            "/hls/cam1/index.m3u8",
            "/hls/cam1/live.m3u8",
        ] {
            assert_eq!(
                status(&client, &server.url(&format!("{path}{query}")), None).await,
                http,
                "{case}: {path} with ?token="
            );
            assert_eq!(
                status(&client, &server.url(path), token).await,
                http,
                "{case}: {path} with Bearer"
            );
        }
        let asked = client
            .get(server.url("/api/auth"))
            .header("x-original-uri", format!("/dash/cam1/5.m4s{query}"))
            .send()
            .await
            .expect("auth");
        assert_eq!(asked.status().as_u16(), http, "{case}: /api/auth");
    }
    let missing = client
        .get(server.url("/dash/cam1/manifest.mpd"))
        .send()
        .await
        .expect("manifest");
    assert_eq!(
        missing
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let segment_body = missing.text().await.expect("body");
    assert!(
        !segment_body.contains("<MPD"),
        "nothing served: {segment_body}"
    );
    // A read token used to publish is refused; a publish token is not a read token.
    let read = hs256(read_claims(&["cam1"], in_an_hour), SECRET);
    let ask = |stream: &str, action: &str, token: &str| {
        let url = server.url(&format!("/api/auth?stream={stream}&action={action}"));
        let client = client.clone();
        let token = token.to_string();
        async move { status(&client, &url, Some(&token)).await }
    };
    assert_eq!(ask("cam1", "publish", &read).await, 403);
    assert_eq!(ask("cam1", "read", &read).await, 204);
    assert_eq!(ask("cam1", "publish", &publish_only).await, 204);
    assert_eq!(ask("nosuch", "read", &read).await, 403);
    // Counted by reason.
    let metrics = client
        .get(server.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for reason in [
        "token_missing",
        "token_invalid",
        "token_expired",
        "token_forbidden",
    ] {
        let series = format!("wsls_refused_requests_total{{reason=\"{reason}\"}}");
        let count = common::metric_value(&metrics, &series);
        assert!(count > Some(0.0), "{reason}: {metrics}");
    }
}

#[tokio::test]
async fn a_valid_token_plays_everywhere_and_the_manifests_carry_it() {
    let f = fixture();
    let server = &f.server;
    let client = reqwest::Client::new();
    wait_for_segments(server, &client).await;
    let exp = now() + 3600;
    let tokens = [
        ("HS256", hs256(read_claims(&["cam*"], exp), SECRET)),
        (
            "ES256 (PEM key)",
            es256(read_claims(&["cam1"], exp), &f.pem_key, None),
        ),
        (
            "ES256 (JWKS, kid)",
            es256(read_claims(&["cam1"], exp), &f.jwks_key, Some("k1")),
        ),
    ];
    for (kind, token) in &tokens {
        let mut socket = connect(&server.ws_url(&format!("/ws/cam1?token={token}"))).await;
        expect_init(&mut socket).await;
        let Some(Msg::Binary(_)) = next(&mut socket, Duration::from_secs(10)).await else {
            panic!("{kind}: no media");
        };
    }
    let wrong_kid = es256(read_claims(&["cam1"], exp), &f.jwks_key, Some("k2"));
    assert_eq!(
        refused_with(&server.ws_url(&format!("/ws/cam1?token={wrong_kid}"))).await,
        Some(4401)
    );
    // The public stream needs nothing.
    assert_eq!(refused_with(&server.ws_url("/ws/open")).await, None);
    assert_eq!(
        status(&client, &server.url("/dash/open/manifest.mpd"), None).await,
        200
    );

    // DASH: the MPD's templates carry the token; following them works without a header.
    let token = &tokens[0].1;
    let mpd = client
        .get(server.url("/dash/cam1/manifest.mpd"))
        .bearer_auth(token)
        .send()
        .await
        .expect("MPD")
        .text()
        .await
        .expect("text");
    let carried = format!("?token={token}");
    assert!(
        mpd.contains(&format!(
            "media=\"$RepresentationID$/$Number$.m4s{carried}\""
        )),
        "{mpd}"
    );
    let sets = common::parse_mpd(&mpd);
    let set = &sets[0];
    let number = set.start_number;
    let init = common::fill_template(&set.initialization, &set.representation, number);
    let media = common::fill_template(&set.media, &set.representation, number);
    for file in [init, media] {
        assert!(file.ends_with(&carried), "{file}");
        let url = server.url(&format!("/dash/cam1/{file}"));
        assert_eq!(status(&client, &url, None).await, 200, "{url}");
        let bare = url.trim_end_matches(&carried).to_string();
        assert_eq!(status(&client, &bare, None).await, 401, "{bare}");
    }
    // HLS: the multivariant playlist and every URI of the media playlist carry it.
    let multivariant = client
        .get(server.url(&format!("/hls/cam1/index.m3u8{carried}")))
        .send()
        .await
        .expect("playlist")
        .text()
        .await
        .expect("text");
    assert!(
        multivariant.contains(&format!("live.m3u8{carried}")),
        "{multivariant}"
    );
    let playlist = client
        .get(server.url(&format!("/hls/cam1/live.m3u8{carried}")))
        .send()
        .await
        .expect("playlist")
        .text()
        .await
        .expect("text");
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(!uris.is_empty(), "{playlist}");
    assert!(uris.iter().all(|u| u.ends_with(&carried)), "{playlist}");
    assert!(
        playlist.contains(&format!("init.mp4{carried}\"")),
        "{playlist}"
    );
    let segment = uris[0];
    let url = server.url(&format!("/hls/cam1/{segment}"));
    let url = if segment.starts_with('/') {
        server.url(segment)
    } else {
        url
    };
    assert_eq!(status(&client, &url, None).await, 200, "{url}");
}

#[tokio::test]
async fn the_admin_token_guards_metrics() {
    let f = fixture();
    let server = &f.server;
    let client = reqwest::Client::new();
    let url = server.url("/metrics");
    assert_eq!(status(&client, &url, None).await, 401);
    assert_eq!(status(&client, &url, Some("admin-token-wrong")).await, 401);
    let read = hs256(read_claims(&["*"], now() + 60), SECRET);
    assert_eq!(
        status(&client, &url, Some(&read)).await,
        401,
        "a read token"
    );
    let admin_jwt = hs256(
        serde_json::json!({"action": "admin", "exp": now() + 60}),
        SECRET,
    );
    assert_eq!(status(&client, &url, Some(&admin_jwt)).await, 200);
    assert_eq!(status(&client, &url, Some(ADMIN)).await, 200);
    assert_eq!(
        status(
            &client,
            &server.url(&format!("/metrics?token={ADMIN}")),
            None
        )
        .await,
        200
    );
    // The admin token reads any stream too.
    assert_eq!(
        refused_with(&server.ws_url(&format!("/ws/cam2?token={ADMIN}"))).await,
        None
    );
    let asked = client
        .get(server.url("/api/auth"))
        .header("x-original-uri", "/metrics")
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("auth");
    assert_eq!(asked.status().as_u16(), 204);
    // Tokens never reach the log.
    assert!(!server.log().contains(ADMIN), "{}", server.log());
}

/// Reads until a text message of `kind`, or panics after `within`.
async fn until_text(socket: &mut Socket, kind: &str, within: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        match next(socket, Duration::from_secs(10)).await {
            Some(Msg::Text(value)) if value["type"] == kind => return value,
            Some(Msg::Close(code)) => panic!("closed ({code:?}) before {kind}"),
            None => panic!("the socket went before {kind}"),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} in time");
    }
}

#[tokio::test]
async fn a_token_that_runs_out_closes_the_viewer_unless_it_is_renewed() {
    let f = fixture();
    let server = &f.server;
    let short = now() + 3;
    let token = hs256(read_claims(&["cam1"], short), SECRET);
    let url = server.ws_url(&format!("/ws/cam1?token={token}"));
    let mut kept = connect(&url).await;
    let mut lapsed = connect(&url).await;
    // Less than the warning time is left: both are told at once.
    let warned = until_text(&mut kept, "expiring", Duration::from_secs(5)).await;
    assert_eq!(warned["expires_ms"], short * 1000);
    let renewal = hs256(read_claims(&["cam1"], now() + 600), SECRET);
    let message = serde_json::json!({"type": "token", "token": renewal}).to_string();
    kept.send(Message::text(message)).await.expect("send");
    let renewed = until_text(&mut kept, "renewed", Duration::from_secs(5)).await;
    assert!(
        renewed["expires_ms"].as_u64() > Some(short * 1000),
        "{renewed}"
    );
    // The one not renewed is closed at its expiry with the documented code.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        match next(&mut lapsed, Duration::from_secs(10)).await {
            Some(Msg::Close(code)) => break code,
            None => panic!("the socket went without a close frame"),
            _ => assert!(std::time::Instant::now() < deadline, "never closed"),
        }
    };
    assert_eq!(code, Some(4410));
    assert!(now() >= short, "closed before the token ran out");
    // The renewed one plays on past the first expiry.
    let mut media_after = 0;
    while media_after < 30 {
        match next(&mut kept, Duration::from_secs(10)).await {
            Some(Msg::Binary(_)) if now() > short + 1 => media_after += 1,
            Some(Msg::Close(code)) => panic!("the renewed viewer was closed ({code:?})"),
            None => panic!("the renewed viewer lost its socket"),
            _ => {}
        }
    }
    // A renewal that is not valid closes with its reason.
    let bad = hs256(read_claims(&["cam2"], now() + 600), SECRET);
    let message = serde_json::json!({"type": "token", "token": bad}).to_string();
    kept.send(Message::text(message)).await.expect("send");
    let code = loop {
        match next(&mut kept, Duration::from_secs(10)).await {
            Some(Msg::Close(code)) => break code,
            None => panic!("no close frame"),
            _ => {}
        }
    };
    assert_eq!(code, Some(4403));
}

/// RS256 and PS256 tokens checked against an RSA public key (`--jwt-public-key`); an HS256
/// token "signed" with that public key as its secret (the old algorithm-confusion attack) is
/// refused, as no shared secret is configured.
#[tokio::test]
async fn rsa_tokens_are_checked_against_the_public_key_and_confusion_is_refused() {
    let private = common::fixture("rsa-test-key.pem");
    let public = common::fixture_path("rsa-test-public.pem");
    let server = TestServer::start(&[
        "--stream",
        "cam=sample",
        "--read",
        "token",
        "--jwt-public-key",
        public.to_str().expect("utf-8"),
    ]);
    let key = EncodingKey::from_rsa_pem(&private).expect("RSA key");
    let claims = read_claims(&["cam"], now() + 600);
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("signing");
        assert_eq!(
            refused_with(&server.ws_url(&format!("/ws/cam?token={token}"))).await,
            None,
            "{alg:?}"
        );
    }
    let public_pem = std::fs::read_to_string(&public).expect("public key");
    let confused = hs256(claims, &public_pem);
    assert_eq!(
        refused_with(&server.ws_url(&format!("/ws/cam?token={confused}"))).await,
        Some(4401)
    );
}
