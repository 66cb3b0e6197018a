//! TLS on the server's own listener (rustls): the certificate from PEM files, reloaded when
//! the files change (a certbot renewal) without touching open connections, or one made for
//! this machine (`--tls-self-signed`) and kept in a state folder across restarts.
//!
//! The handshake is `tokio-rustls`'; what follows is plain HTTP/1.1 over the TLS stream, and a
//! WebSocket viewer's writes go through its rustls session in the fan-out
//! ([`super::viewer`]). kTLS (the kernel encrypting, which would keep `sendfile`) is not used:
//! this machine's kernel offers no `tls` upper-layer protocol.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CertSource {
    /// PEM files: the chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1).
    Files { cert: PathBuf, key: PathBuf },
    /// A certificate made for `names` (and this machine's own), kept in `dir`.
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// How often the certificate files are looked at for a renewal.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why TLS could not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no certificate (PEM \"BEGIN CERTIFICATE\" expected)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no private key (PEM \"BEGIN PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" expected)", .0.display())]
    NoKey(PathBuf),
    #[error("the certificate and key do not go together: {0}")]
    Mismatch(rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot keep the self-signed certificate in {}: {source}", dir.display())]
    State {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The server's TLS: what accepts connections, and the certificate it presents.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    certificate: Arc<Current>,
}

/// The certificate presented to new connections; swapped on a reload.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads (or makes) the certificate; for files, starts the task that reloads them when
    /// they change, until `shutdown`.
    pub fn start(
        source: &CertSource,
        listen: SocketAddr,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let (cert, key) = match source {
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertSource::SelfSigned { dir, names } => self_signed(dir, names, listen)?,
        };
        let loaded = load(&cert, &key, &provider)?;
        let kind = match source {
            CertSource::Files { .. } => "from files".to_string(),
            CertSource::SelfSigned { dir, .. } => format!("self-signed, kept in {}", dir.display()),
        };
        log_certificate(&format!("TLS certificate ({kind})"), &cert, &loaded);
        let certificate = Arc::new(Current {
            key: RwLock::new(Arc::new(loaded)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Mismatch)?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // HTTP/1.1 alone today; h2 joins this list when the server speaks it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if matches!(source, CertSource::Files { .. }) {
            let watched = certificate.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                tokio::select! {
                    _ = reload_on_change(&cert, &key, &provider, &watched) => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// The SHA-256 fingerprint of the certificate presented now.
    pub fn fingerprint(&self) -> String {
        let key = self
            .certificate
            .key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        key.end_entity_cert()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }
}

/// Reads a chain and its key and checks that they belong together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("private key", key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(TlsError::Mismatch)
}

/// What a file looks like from outside; a change means a reload is due.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Looks at the files every [`RELOAD_EVERY`]; a changed pair that loads replaces the
/// certificate for new connections (open ones keep theirs). A pair caught half-written or
/// not matching is logged and retried, the old certificate staying in use meanwhile.
async fn reload_on_change(cert: &Path, key: &Path, provider: &CryptoProvider, current: &Current) {
    let mut seen = (stamp(cert), stamp(key));
    let mut failed_for = None;
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let now = (stamp(cert), stamp(key));
        if now == seen {
            continue;
        }
        match load(cert, key, provider) {
            Ok(loaded) => {
                log_certificate("TLS certificate reloaded", cert, &loaded);
                *current.key.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                seen = now;
                failed_for = None;
            }
            Err(err) => {
                if failed_for != Some(now) {
                    tracing::warn!(%err, "the certificate files changed but cannot be used; keeping the current certificate");
                    failed_for = Some(now);
                }
            }
        }
    }
}

fn log_certificate(what: &str, path: &Path, key: &CertifiedKey) {
    let Some(leaf) = key.end_entity_cert().ok() else {
        return;
    };
    tracing::info!(
        file = %path.display(),
        sha256 = %fingerprint(leaf),
        spki_sha256 = %spki_hash(leaf).unwrap_or_default(),
        "{what}"
    );
}

/// The SHA-256 of a certificate, as browsers show it: `AB:CD:…`.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The base64 SHA-256 of the certificate's public key (its SubjectPublicKeyInfo): what
/// Chromium's `--ignore-certificate-errors-spki-list` and key pinning take. It stays the same
/// across renewals of the self-signed certificate, which keep their key.
pub fn spki_hash(cert: &[u8]) -> Option<String> {
    let spki = der::subject_public_key_info(cert)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    Some(base64(digest.as_ref()))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Just enough DER to find a certificate's public key.
mod der {
    /// One TLV at the start of `data`: (tag, contents, rest).
    fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = data.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..count] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[count..];
            len
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    /// The whole SubjectPublicKeyInfo element (tag and length included) of an X.509
    /// certificate (RFC 5280 §4.1).
    pub fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
        const SEQUENCE: u8 = 0x30;
        let (tag, certificate, _) = element(cert)?;
        if tag != SEQUENCE {
            return None;
        }
        let (tag, mut tbs, _) = element(certificate)?;
        if tag != SEQUENCE {
            return None;
        }
        // [0] version (optional), serial, signature, issuer, validity, subject, then the key.
        if tbs.first() == Some(&0xa0) {
            tbs = element(tbs)?.2;
        }
        for _ in 0..5 {
            tbs = element(tbs)?.2;
        }
        let (tag, _, rest) = element(tbs)?;
        if tag != SEQUENCE {
            return None;
        }
        Some(&tbs[..tbs.len() - rest.len()])
    }
}

/// The names a certificate for this machine should carry: `localhost`, the host name (and its
/// `.local` for mDNS), loopback, the listening address, and the address of the route out (what
/// a LAN peer most likely reaches us at).
fn machine_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host != "localhost" {
        names.push(host.to_string());
        if !host.contains('.') {
            names.push(format!("{host}.local"));
        }
    }
    let mut addresses: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        "::1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
    ];
    if !listen.ip().is_unspecified() {
        addresses.push(listen.ip());
    }
    // Connecting a UDP socket sends nothing; it asks the kernel which address it would use.
    if let Ok(probe) = std::net::UdpSocket::bind("0.0.0.0:0")
        && probe.connect("192.0.2.1:9").is_ok()
        && let Ok(local) = probe.local_addr()
    {
        addresses.push(local.ip());
    }
    names.extend(addresses.iter().map(IpAddr::to_string));
    names
}

/// The files of the self-signed certificate in `dir`, made now if there are none or if they
/// lack a name asked for. A new certificate keeps the old key, so a browser told to trust the
/// key (its SPKI hash) keeps trusting it.
fn self_signed(
    dir: &Path,
    extra: &[String],
    listen: SocketAddr,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let state = |source| TlsError::State {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(state)?;
    let cert_path = dir.join("self-signed-cert.pem");
    let key_path = dir.join("self-signed-key.pem");
    let names_path = dir.join("self-signed-names.txt");
    let mut wanted = machine_names(listen);
    for name in extra {
        if !wanted.contains(name) {
            wanted.push(name.clone());
        }
    }
    let have: Vec<String> = std::fs::read_to_string(&names_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    if cert_path.exists() && key_path.exists() && wanted.iter().all(|n| have.contains(n)) {
        return Ok((cert_path, key_path));
    }
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem).map_err(|e| {
            TlsError::Generate(format!(
                "the kept key {} is unusable: {e}",
                key_path.display()
            ))
        })?,
        Err(_) => rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?,
    };
    // Names kept before stay in, so a renewal never drops one a viewer used.
    let mut names = have;
    for name in wanted {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "websocketlivestream");
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    // The key first, written private: a crash between the two leaves a key and no
    // certificate, which the next start completes.
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(state)?;
    std::fs::write(&cert_path, cert.pem()).map_err(state)?;
    std::fs::write(&names_path, names.join("\n") + "\n").map_err(state)?;
    tracing::info!(names = %names.join(", "), "made a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// The state folder of `--tls-self-signed` when none is given: `$XDG_STATE_HOME` or
/// `~/.local/state`, then `websocketlivestream`.
pub fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("websocketlivestream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn a_self_signed_certificate_is_kept_and_its_key_survives_new_names() {
        let dir = std::env::temp_dir().join(format!("wsls-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (cert, key) = self_signed(&dir, &[], listen).expect("made");
        let first = load(&cert, &key, &provider()).expect("loads");
        let first_der = first.end_entity_cert().expect("leaf").to_vec();
        let (cert, key) = self_signed(&dir, &[], listen).expect("kept");
        let again = load(&cert, &key, &provider()).expect("loads");
        assert_eq!(
            again.end_entity_cert().expect("leaf").to_vec(),
            first_der,
            "same certificate"
        );
        let (cert, key) = self_signed(&dir, &["cam.example".into()], listen).expect("renewed");
        let renewed = load(&cert, &key, &provider()).expect("loads");
        let renewed_der = renewed.end_entity_cert().expect("leaf").to_vec();
        assert_ne!(renewed_der, first_der, "a new certificate for the new name");
        assert_eq!(
            spki_hash(&renewed_der),
            spki_hash(&first_der),
            "the same key"
        );
        assert_eq!(spki_hash(&first_der).map(|h| h.len()), Some(44));
        let names = std::fs::read_to_string(dir.join("self-signed-names.txt")).expect("names");
        assert!(
            names.contains("cam.example") && names.contains("localhost"),
            "{names}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_certificate_and_a_foreign_key_are_refused() {
        let dir = std::env::temp_dir().join(format!("wsls-tls-mismatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (cert, _key) = self_signed(&dir.join("a"), &[], listen).expect("made");
        let (_cert, other_key) = self_signed(&dir.join("b"), &[], listen).expect("made");
        assert!(matches!(
            load(&cert, &other_key, &provider()),
            Err(TlsError::Mismatch(_))
        ));
        assert!(matches!(
            load(&other_key, &other_key, &provider()),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            load(&cert, &cert, &provider()),
            Err(TlsError::NoKey(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
