//! TLS on the server's own listener: https and wss with a self-signed certificate kept across
//! restarts, certificate files renewed under a playing viewer, relays over wss with a private
//! CA, the plain-HTTP redirect with ACME challenges, and slow handshakes dropped. Clients are
//! real: curl, ffprobe, tokio-tungstenite over rustls.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::*;
use common::ws::{Msg, Socket, expect_init, next};
use common::*;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A client that trusts the certificates in these PEM texts and nothing else.
fn client_trusting(pems: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a usable root");
        }
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn wss_connect(url: &str, client: &Arc<rustls::ClientConfig>) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(client.clone())),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    socket
}

/// The leaf certificate the server at `addr` presents to a new connection.
async fn presented(addr: &str, client: &Arc<rustls::ClientConfig>) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = ServerName::try_from("localhost").ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

/// Media frames a viewer gets within `within`, after its init.
async fn media_frames(socket: &mut Socket, count: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut seen = 0;
    while seen < count && Instant::now() < deadline {
        match next(socket, Duration::from_secs(5)).await {
            Some(Msg::Binary(_)) => seen += 1,
            Some(Msg::Text(_)) => {}
            Some(Msg::Close(code)) => panic!("the viewer was closed ({code:?})"),
            None => break,
        }
    }
    seen
}

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("running curl");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn wait_for_fragment(server: &TestServer, ca: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (body, _) = curl(&[
            "--cacert",
            ca.to_str().expect("utf-8"),
            &server.url("/api/streams"),
        ]);
        if body.contains("\"segments\":") && !body.contains("\"segments\":0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no segment over https: {body}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn https_and_wss_with_a_self_signed_certificate_kept_across_restarts() {
    if !have_tool_with("curl", "--version") || !have_tool("ffprobe") {
        return;
    }
    let state = temp_dir("tls-state");
    let state_arg = state.to_str().expect("utf-8");
    let args = [
        "--stream",
        "live=sample",
        "--tls-self-signed",
        "--state-dir",
        state_arg,
    ];
    let server = TestServer::start(&args);
    assert_eq!(server.scheme, "https", "log:\n{}", server.log());
    let ca = state.join("self-signed-cert.pem");
    let ca_arg = ca.to_str().expect("utf-8");
    let fingerprint =
        log_field(&server.log(), "TLS certificate (self-signed", "sha256").expect("fingerprint");
    let spki =
        log_field(&server.log(), "TLS certificate (self-signed", "spki_sha256").expect("SPKI hash");
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert_eq!(spki.len(), 44, "{spki}");
    wait_for_fragment(&server, &ca);

    // curl trusts it through --cacert, and refuses it without.
    let (body, err) = curl(&["--cacert", ca_arg, &server.url("/api/streams")]);
    assert!(body.contains("\"name\":\"live\""), "{body} {err}");
    let (_, err) = curl(&[&server.url("/api/streams")]);
    assert!(err.contains("certificate"), "curl without the CA: {err}");
    // ffprobe reads the DASH stream over https.
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-ca_file", ca_arg, "-tls_verify", "1"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
        .arg(server.url("/dash/live/manifest.mpd"))
        .output()
        .expect("running ffprobe");
    let probed = String::from_utf8_lossy(&out.stdout);
    assert!(
        probed.contains("h264") && probed.contains("aac"),
        "ffprobe over https: {probed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A viewer over wss gets the init and media.
    let pem = std::fs::read(&ca).expect("certificate");
    let client = client_trusting(&[&pem]);
    runtime().block_on(async {
        let mut socket = wss_connect(&server.ws_url("/ws/live"), &client).await;
        let (init, segment) = expect_init(&mut socket).await;
        assert!(
            init["codecs"].as_str().is_some_and(|c| c.contains("avc1")),
            "{init}"
        );
        assert!(segment.len() > 100);
        assert!(media_frames(&mut socket, 10, Duration::from_secs(15)).await >= 10);
    });
    // Plain HTTP on the TLS port is a failed handshake, counted.
    let _ = http_status(&server.addr, "/");
    let (metrics, _) = curl(&["--cacert", ca_arg, &server.url("/metrics")]);
    let refused = metric_value(
        &metrics,
        "wsls_refused_connections_total{reason=\"tls_handshake\"}",
    );
    assert!(refused >= Some(1.0), "{metrics}");
    drop(server);

    // Restarted over the same state folder: the same certificate.
    let again = TestServer::start(&args);
    let fingerprint_again =
        log_field(&again.log(), "TLS certificate (self-signed", "sha256").expect("fingerprint");
    assert_eq!(fingerprint_again, fingerprint, "log:\n{}", again.log());
    assert!(
        !again.log().contains("made a self-signed"),
        "made anew: {}",
        again.log()
    );
}

#[test]
fn a_relay_pulls_over_wss_trusting_a_private_ca() {
    let state = temp_dir("tls-origin");
    let origin = TestServer::start(&[
        "--stream",
        "live=sample",
        "--tls-self-signed",
        "--state-dir",
        state.to_str().expect("utf-8"),
    ]);
    let ca = state.join("self-signed-cert.pem");
    let port = origin.addr.rsplit(':').next().expect("port");
    let upstream = format!("live=wss://localhost:{port}/ws/live");
    let edge = TestServer::start(&[
        "--stream",
        &upstream,
        "--upstream-ca",
        ca.to_str().expect("utf-8"),
    ]);
    // Without the CA, the upstream's certificate is refused, and the log says so.
    let stranger = TestServer::start(&["--stream", &upstream]);
    runtime().block_on(async {
        let mut socket = common::ws::connect(&edge.ws_url("/ws/live")).await;
        let (init, _) = expect_init(&mut socket).await;
        assert!(
            init["codecs"].as_str().is_some_and(|c| c.contains("avc1")),
            "{init}"
        );
        assert!(
            media_frames(&mut socket, 10, Duration::from_secs(15)).await >= 10,
            "edge log:\n{}",
            edge.log()
        );
    });
    assert!(
        edge.log().contains("connected to upstream"),
        "{}",
        edge.log()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !stranger.log().contains("UnknownIssuer") {
        assert!(
            Instant::now() < deadline,
            "no certificate error logged:\n{}",
            stranger.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A certificate for `localhost` signed by itself: (certificate PEM, key PEM).
fn make_certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn renewed_certificate_files_serve_new_connections_while_a_viewer_stays() {
    let dir = temp_dir("tls-renew");
    let (cert_a, key_a) = make_certificate();
    let (cert_b, key_b) = make_certificate();
    let cert_path = dir.join("fullchain.pem");
    let key_path = dir.join("privkey.pem");
    std::fs::write(&cert_path, &cert_a).expect("cert");
    std::fs::write(&key_path, &key_a).expect("key");
    let server = TestServer::start(&[
        "--stream",
        "live=sample",
        "--tls-cert",
        cert_path.to_str().expect("utf-8"),
        "--tls-key",
        key_path.to_str().expect("utf-8"),
    ]);
    let client = client_trusting(&[cert_a.as_bytes(), cert_b.as_bytes()]);
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("PEM")
            .to_vec()
    };
    runtime().block_on(async {
        assert_eq!(presented(&server.addr, &client).await, Some(der(&cert_a)));
        let mut socket = wss_connect(&server.ws_url("/ws/live"), &client).await;
        expect_init(&mut socket).await;
        assert!(media_frames(&mut socket, 5, Duration::from_secs(15)).await >= 5);
        // As certbot renews: the key, then the chain (a reload may see them mismatched).
        std::fs::write(&key_path, &key_b).expect("key");
        std::fs::write(&cert_path, &cert_b).expect("cert");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // The viewer keeps reading meanwhile, so its socket never backs up.
            assert!(media_frames(&mut socket, 3, Duration::from_secs(5)).await >= 3);
            if presented(&server.addr, &client).await == Some(der(&cert_b)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new certificate was not picked up:\n{}",
                server.log()
            );
        }
        // The viewer that came before the renewal plays on.
        assert!(
            media_frames(&mut socket, 30, Duration::from_secs(15)).await >= 30,
            "log:\n{}",
            server.log()
        );
    });
    assert!(
        server.log().contains("TLS certificate reloaded"),
        "{}",
        server.log()
    );
}

#[test]
fn the_http_listener_redirects_to_https_and_serves_acme_challenges() {
    if !have_tool_with("curl", "--version") {
        return;
    }
    let state = temp_dir("tls-redirect");
    let webroot = temp_dir("tls-webroot");
    let challenges = webroot.join(".well-known/acme-challenge");
    std::fs::create_dir_all(&challenges).expect("challenge dir");
    std::fs::write(challenges.join("tok-EN_1"), "tok-EN_1.thumbprint").expect("challenge");
    let server = TestServer::start(&[
        "--stream",
        "live=sample",
        "--tls-self-signed",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--http-redirect",
        "127.0.0.1:0",
        "--acme-dir",
        webroot.to_str().expect("utf-8"),
    ]);
    let log = strip_ansi(&server.log());
    let plain = log
        .split("redirecting http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the redirect listener's address")
        .to_string();
    let (head, _) = curl(&["-I", &format!("http://{plain}/watch/live?player=mse")]);
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    let port = server.addr.rsplit(':').next().expect("port");
    let location = format!("location: https://127.0.0.1:{port}/watch/live?player=mse");
    assert!(head.to_lowercase().contains(&location), "{head}");
    let (body, _) = curl(&[&format!(
        "http://{plain}/.well-known/acme-challenge/tok-EN_1"
    )]);
    assert_eq!(body, "tok-EN_1.thumbprint");
    let (missing, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{plain}/.well-known/acme-challenge/nope"),
    ]);
    assert_eq!(missing, "404");
}

#[test]
fn a_client_that_never_starts_its_handshake_is_dropped_while_a_viewer_plays() {
    let state = temp_dir("tls-slow");
    let config = temp_file("tls-slow.toml", "header_timeout_secs = 1\n");
    let server = TestServer::start(&[
        "--stream",
        "live=sample",
        "--tls-self-signed",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let pem = std::fs::read(state.join("self-signed-cert.pem")).expect("certificate");
    let client = client_trusting(&[&pem]);
    runtime().block_on(async {
        let mut socket = wss_connect(&server.ws_url("/ws/live"), &client).await;
        expect_init(&mut socket).await;
        use tokio::io::AsyncReadExt;
        let mut silent = tokio::net::TcpStream::connect(&server.addr)
            .await
            .expect("connect");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a silent client was not dropped: {read:?}"
        );
        // The viewer came before it and plays through it.
        assert!(media_frames(&mut socket, 30, Duration::from_secs(15)).await >= 30);
    });
}
