//! Limits at the door, before a request reaches a route: how long a client may take to send
//! its request headers (a slow-headers or idle client holds no task forever), how large they
//! may be, and how many connections one address may hold at once. Each refusal is counted
//! for `/metrics`, as are viewers refused by the viewer limits (`ws.rs`).
//!
//! A connection's place in its address's count is an [`AddressSlot`]; a WebSocket viewer
//! carries it on after the upgrade, so a viewer counts for as long as it watches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits, from the command line and the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A client that has not sent a request's whole header by then is disconnected (also
    /// between requests on a kept-alive connection).
    pub header_timeout: Duration,
    /// Request headers larger than this are answered 431.
    pub max_header_bytes: usize,
    /// Connections (viewers included) one client address may hold at once; more are answered
    /// 429. `None`: no limit (many viewers may share one address behind NAT).
    pub max_connections_per_address: Option<u32>,
    /// Manifest and playlist requests one address may make per second (a burst of twice as
    /// many, at least 10, is let through); more are answered 429. `None`: no limit (behind a
    /// proxy, every request comes from its address).
    pub manifest_requests_per_sec: Option<f64>,
}

/// The least `max_header_bytes` can be: hyper's smallest read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections_per_address: None,
            manifest_requests_per_sec: None,
        }
    }
}

/// Why a connection was refused or cut, for `/metrics`.
#[derive(Debug, Default)]
pub struct Refusals {
    pub too_many_from_address: AtomicU64,
    pub header_timeout: AtomicU64,
    pub header_too_large: AtomicU64,
    /// WebSocket viewers over a stream's or the server's viewer limit (503).
    pub viewer_limit: AtomicU64,
    /// TLS handshakes that failed (a client that does not trust the certificate, or speaks
    /// plain HTTP to the TLS port).
    pub tls_handshake: AtomicU64,
}

impl Refusals {
    /// `(reason label, count)` for each kind.
    pub fn read(&self) -> [(&'static str, u64); 5] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("address_limit", load(&self.too_many_from_address)),
            ("header_timeout", load(&self.header_timeout)),
            ("header_too_large", load(&self.header_too_large)),
            ("viewer_limit", load(&self.viewer_limit)),
            ("tls_handshake", load(&self.tls_handshake)),
        ]
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct AddressCounts {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place in its address's count, given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    counts: Arc<AddressCounts>,
    address: IpAddr,
}

impl AddressCounts {
    /// A place for one more connection from `address`, or `None` when it holds `max` already.
    pub fn admit(self: &Arc<Self>, address: IpAddr, max: Option<u32>) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            address,
        })
    }

    #[cfg(test)]
    fn open(&self, address: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address).copied().unwrap_or(0)
    }
}

impl AddressSlot {
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

/// A token bucket per client address.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    refused: AtomicU64,
}

/// Addresses remembered before the full buckets (idle addresses) are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

impl RateLimit {
    pub fn new(per_sec: Option<f64>) -> Self {
        Self {
            per_sec,
            burst: per_sec.map_or(0.0, |r| (r * 2.0).max(10.0)),
            buckets: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `address` may make one more request now.
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        let Some(rate) = self.per_sec else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&address) {
            let burst = self.burst;
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = buckets.entry(address).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// What a refused connection is told before it is closed: a whole HTTP/1.1 response.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 39\r\nconnection: close\r\n\r\n\
too many connections from your address\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_places_back_when_connections_go() {
        let counts = Arc::new(AddressCounts::default());
        let one: IpAddr = "127.0.0.1".parse().expect("address");
        let two: IpAddr = "127.0.0.2".parse().expect("address");
        let a = counts.admit(one, Some(2)).expect("first");
        let b = counts.admit(one, Some(2)).expect("second");
        assert!(counts.admit(one, Some(2)).is_none(), "over the limit");
        assert!(counts.admit(two, Some(2)).is_some(), "another address");
        drop(a);
        assert_eq!(counts.open(one), 1);
        let _c = counts.admit(one, Some(2)).expect("a place came back");
        drop(b);
        assert!(counts.admit(one, None).is_some(), "no limit");
    }

    #[test]
    fn a_rate_limit_lets_a_burst_through_then_refills() {
        let limit = RateLimit::new(Some(5.0));
        let one: IpAddr = "127.0.0.1".parse().expect("address");
        let two: IpAddr = "127.0.0.2".parse().expect("address");
        let start = Instant::now();
        let allowed = (0..20).filter(|_| limit.allow(one, start)).count();
        assert_eq!(allowed, 10, "the burst");
        assert!(
            limit.allow(two, start),
            "another address has its own bucket"
        );
        assert!(
            limit.allow(one, start + Duration::from_millis(200)),
            "one more after 0.2 s"
        );
        assert!(!limit.allow(one, start + Duration::from_millis(200)));
        assert_eq!(limit.refused(), 11);
        assert!(RateLimit::new(None).allow(one, start));
    }

    #[test]
    fn the_refusal_is_a_whole_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
