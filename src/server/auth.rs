//! Who may do what: per stream, reading (`read = "token"`) and publishing need a JWT whose
//! claims name the stream and the action; admin routes need the admin token (or a JWT with
//! the `admin` action).
//!
//! A token's claims (JSON Web Token, RFC 7519):
//!
//! ```json
//! {"streams": ["cam*", "lobby"], "action": "read", "exp": 1796300000}
//! ```
//!
//! - `streams`: names or patterns, `*` matching any run of characters;
//! - `action`: `"read"`, `"publish"` or `"admin"`, or a list of them;
//! - `exp`: required, in seconds since 1970; checked with no leeway unless configured.
//!
//! Signatures: HS256/384/512 with a shared secret, RS256/384/512 and PS256/384/512 with an RSA
//! public key, ES256/384 with an EC public key, or any of a JWKS file's keys (chosen by `kid`).
//! `alg: none` is never accepted. A token is taken from `Authorization: Bearer …` or, for
//! browsers and players that cannot set headers, from `?token=`. Tokens are never logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::protocol;
use crate::stream::Access;

/// What a request wants to do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Publish,
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Publish => "publish",
            Action::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Action::Read),
            "publish" => Some(Action::Publish),
            "admin" => Some(Action::Admin),
            _ => None,
        }
    }
}

/// A key that signs tokens, as the config names it.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HS256/384/512.
    Secret(Vec<u8>),
    /// An RSA or EC public key, PEM.
    PublicKeyPem(Vec<u8>),
    /// A JWKS document (`{"keys": […]}`).
    Jwks(String),
}

/// Access control as resolved from the command line and the config file.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub keys: Vec<KeySource>,
    /// The static admin token (`Authorization: Bearer` or `?token=`).
    pub admin_token: Option<String>,
    /// Required `iss` and `aud`, if set.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp`.
    pub leeway_secs: u64,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWT secret is empty")]
    EmptySecret,
    #[error("the JWT public key is neither an RSA nor an EC public key in PEM")]
    PublicKey,
    #[error("the JWKS is not usable: {0}")]
    Jwks(String),
    #[error(
        "streams {0} need tokens, but no key to check them is set (jwt_secret, jwt_public_key or jwks)"
    )]
    NoKeys(String),
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a token is needed (Authorization: Bearer, or ?token=)")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token does not allow {action} on stream {stream}")]
    NotAllowed {
        stream: String,
        action: &'static str,
    },
    #[error("the admin token is needed")]
    NotAdmin,
}

impl Denied {
    /// 401 asks for a (new) token; 403 says this one will not do.
    pub fn status(&self) -> u16 {
        match self {
            Denied::Missing | Denied::Invalid(_) | Denied::Expired | Denied::NotAdmin => 401,
            Denied::NotAllowed { .. } => 403,
        }
    }

    /// The WebSocket close code a viewer refused for this reason gets.
    pub fn close_code(&self) -> u16 {
        match self {
            Denied::Missing | Denied::Invalid(_) | Denied::NotAdmin => protocol::CLOSE_UNAUTHORIZED,
            Denied::Expired => protocol::CLOSE_TOKEN_EXPIRED,
            Denied::NotAllowed { .. } => protocol::CLOSE_FORBIDDEN,
        }
    }

    /// The label of `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "token_missing",
            Denied::Invalid(_) => "token_invalid",
            Denied::Expired => "token_expired",
            Denied::NotAllowed { .. } => "token_forbidden",
            Denied::NotAdmin => "admin_token",
        }
    }
}

/// What a token said, once verified.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    streams: Vec<String>,
    #[serde(default)]
    action: Actions,
    exp: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Actions {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Actions {
    fn allows(&self, action: Action) -> bool {
        match self {
            Actions::None => false,
            Actions::One(one) => one == action.as_str(),
            Actions::Many(many) => many.iter().any(|a| a == action.as_str()),
        }
    }
}

/// A request let through: until when (Unix ms), if a token was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub expires_ms: Option<u64>,
}

/// Refusals by reason, for `/metrics`.
#[derive(Debug, Default)]
pub struct Refused {
    counts: [AtomicU64; 5],
}

const REASONS: [&str; 5] = [
    "token_missing",
    "token_invalid",
    "token_expired",
    "token_forbidden",
    "admin_token",
];

impl Refused {
    pub fn count(&self, denied: &Denied) {
        if let Some(i) = REASONS.iter().position(|r| *r == denied.reason()) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .zip(&self.counts)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
    }
}

/// The server's access control.
pub struct Auth {
    keys: Vec<Key>,
    admin_token: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    pub refused: Refused,
    /// Questions to `/api/auth` (nginx's `auth_request`), for `/metrics`.
    pub asked: AtomicU64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("admin_token", &self.admin_token.is_some())
            .finish()
    }
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

impl Auth {
    pub fn new(settings: &AuthSettings) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for source in &settings.keys {
            match source {
                KeySource::Secret(secret) => {
                    if secret.is_empty() {
                        return Err(KeyError::EmptySecret);
                    }
                    keys.push(Key {
                        kid: None,
                        key: DecodingKey::from_secret(secret).map_err(|_| KeyError::EmptySecret)?,
                        algorithms: HMAC.to_vec(),
                    });
                }
                KeySource::PublicKeyPem(pem) => {
                    let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                        (key, RSA.to_vec())
                    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                        (key, EC.to_vec())
                    } else {
                        return Err(KeyError::PublicKey);
                    };
                    keys.push(Key {
                        kid: None,
                        key,
                        algorithms,
                    });
                }
                KeySource::Jwks(text) => {
                    let set: jsonwebtoken::jwk::JwkSet =
                        serde_json::from_str(text).map_err(|e| KeyError::Jwks(e.to_string()))?;
                    for jwk in &set.keys {
                        let key = DecodingKey::from_jwk(jwk)
                            .map_err(|e| KeyError::Jwks(e.to_string()))?;
                        let algorithms = match &jwk.algorithm {
                            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => RSA.to_vec(),
                            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => EC.to_vec(),
                            jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
                            _ => continue,
                        };
                        keys.push(Key {
                            kid: jwk.common.key_id.clone(),
                            key,
                            algorithms,
                        });
                    }
                    if set.keys.is_empty() {
                        return Err(KeyError::Jwks("it holds no keys".into()));
                    }
                }
            }
        }
        Ok(Self {
            keys,
            admin_token: settings.admin_token.clone().filter(|t| !t.is_empty()),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
            refused: Refused::default(),
            asked: AtomicU64::new(0),
        })
    }

    /// Whether tokens can be checked at all.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Checks a token's signature and expiry and returns its claims.
    fn verify(&self, token: &str) -> Result<Claims, Denied> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Denied::Invalid(format!("unreadable header ({e})")))?;
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| match (&k.kid, &header.kid) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(Denied::Invalid(format!(
                "signed with {:?}, which no configured key takes",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_secs;
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = Denied::Invalid("no key verifies its signature".into());
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match err.kind() {
                        ErrorKind::ExpiredSignature => return Err(Denied::Expired),
                        ErrorKind::InvalidSignature => {
                            Denied::Invalid("its signature does not verify".into())
                        }
                        ErrorKind::Json(e) => Denied::Invalid(format!("its claims: {e}")),
                        ErrorKind::MissingRequiredClaim(c) => {
                            Denied::Invalid(format!("it has no {c} claim"))
                        }
                        other => Denied::Invalid(format!("{other:?}")),
                    };
                }
            }
        }
        Err(last)
    }

    /// Whether `token` lets its bearer do `action` on `stream`, whose access is `access`.
    pub fn allow(
        &self,
        access: Access,
        stream: &str,
        action: Action,
        token: Option<&str>,
    ) -> Result<Grant, Denied> {
        if access == Access::Public {
            return Ok(Grant { expires_ms: None });
        }
        let result = self.check_token(stream, action, token);
        if let Err(denied) = &result {
            self.refused.count(denied);
        }
        result
    }

    fn check_token(
        &self,
        stream: &str,
        action: Action,
        token: Option<&str>,
    ) -> Result<Grant, Denied> {
        let token = token.ok_or(Denied::Missing)?;
        if self.is_admin_token(token) {
            return Ok(Grant { expires_ms: None });
        }
        let claims = self.verify(token)?;
        let named = claims.streams.iter().any(|p| matches_pattern(p, stream));
        if !named || !claims.action.allows(action) {
            return Err(Denied::NotAllowed {
                stream: stream.to_string(),
                action: action.as_str(),
            });
        }
        Ok(Grant {
            expires_ms: Some(claims.exp.saturating_mul(1000)),
        })
    }

    fn is_admin_token(&self, token: &str) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|admin| constant_time_eq(admin.as_bytes(), token.as_bytes()))
    }

    /// Whether `token` is the admin token, or a JWT with the `admin` action.
    pub fn admin(&self, token: Option<&str>) -> Result<(), Denied> {
        let result = match token {
            Some(token) if self.is_admin_token(token) => Ok(()),
            Some(token) if self.has_keys() => match self.verify(token) {
                Ok(claims) if claims.action.allows(Action::Admin) => Ok(()),
                Ok(_) => Err(Denied::NotAdmin),
                Err(denied) => Err(denied),
            },
            _ => Err(Denied::NotAdmin),
        };
        if let Err(denied) = &result {
            self.refused.count(denied);
        }
        result
    }
}

/// Compares without leaking, through timing, how much of a secret matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters (none included); everything else itself.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, rest) = parts.split_first().unwrap_or((&"", &[]));
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// The request's token: `Authorization: Bearer …`, else `?token=` from the query `query`.
pub fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    bearer.or_else(|| query.and_then(query_token))
}

/// `token` from a query string, percent-decoded.
pub fn query_token(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
        .filter(|t| !t.is_empty())
}

/// A query value, percent-decoded (`+` a space; a `%` not followed by two hex digits kept).
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A viewer's token, for as long as it watches: when it runs out, and what checks a renewal.
pub struct Expiry {
    pub auth: Arc<Auth>,
    pub stream: String,
    pub access: Access,
    /// Unix ms.
    pub expires_ms: AtomicU64,
    /// The `expiring` notice has gone out for this expiry.
    pub warned: std::sync::atomic::AtomicBool,
}

impl Expiry {
    pub fn new(auth: Arc<Auth>, stream: String, access: Access, expires_ms: u64) -> Self {
        Self {
            auth,
            stream,
            access,
            expires_ms: AtomicU64::new(expires_ms),
            warned: Default::default(),
        }
    }

    /// A new token sent on the socket: the expiry it brings, or why it is refused.
    pub fn renew(&self, token: &str) -> Result<u64, Denied> {
        let grant = self
            .auth
            .allow(self.access, &self.stream, Action::Read, Some(token))?;
        let expires = grant.expires_ms.unwrap_or(u64::MAX);
        self.expires_ms.store(expires, Ordering::Release);
        self.warned.store(false, Ordering::Release);
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars() {
        assert!(matches_pattern("cam*", "cam1"));
        assert!(matches_pattern("cam*", "cam"));
        assert!(matches_pattern("*", "anything"));
        assert!(matches_pattern("site-*-hd", "site-lobby-hd"));
        assert!(matches_pattern("lobby", "lobby"));
        assert!(!matches_pattern("lobby", "lobby2"));
        assert!(!matches_pattern("cam*", "webcam"));
        assert!(!matches_pattern("*-hd", "lobby-sd"));
        assert!(!matches_pattern("a*b*c", "acb"));
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of(&headers, Some("a=1&token=x%2Ey")),
            Some("x.y".into())
        );
        assert_eq!(token_of(&headers, Some("token=")), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("header"));
        assert_eq!(token_of(&headers, Some("token=q")), Some("abc".into()));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn the_admin_token_is_compared_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
    }
}
