//! Turning the host part of a Sentinel address (an IP, possibly unbracketed IPv6, or a host name
//! with `announce-hostnames yes`) into IP addresses, telling "no such name" from "DNS hiccup".
//!
//! The system resolver (`getaddrinfo`, so /etc/hosts and nsswitch apply) can block for many
//! seconds when a DNS server does not answer. It runs on a blocking thread with a time limit, and
//! the daemon keeps a [`Cache`] so that its decisions never wait for it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dns_lookup::{AddrInfoHints, LookupErrorKind};

/// Why a host could not be turned into addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Neither an IP address nor a syntactically valid host name.
    #[error("`{0}` is neither an IP address nor a host name")]
    Invalid(String),
    /// A valid name that does not resolve.
    #[error(
        "host name `{0}` does not resolve to any address; check Sentinel's announce-hostnames setting and /etc/hosts or DNS"
    )]
    NotFound(String),
    /// The resolver failed in a way that may pass.
    #[error("cannot resolve `{0}` right now: {1}")]
    Transient(String, String),
}

/// Parses an IP address, accepting IPv6 with or without brackets.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.parse().ok()
}

/// True for RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks syntax only: an IP address or a host name.
pub fn check_syntax(host: &str) -> Result<(), LookupError> {
    if parse_ip(host).is_some() || is_host_name(host) { Ok(()) } else { Err(LookupError::Invalid(host.to_string())) }
}

/// How long a name may take to resolve.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves `host` to its addresses within `timeout` (an IP address resolves to itself at once).
pub async fn resolve(host: &str, timeout: Duration) -> Result<Vec<IpAddr>, LookupError> {
    if let Some(ip) = parse_ip(host) {
        return Ok(vec![ip]);
    }
    check_syntax(host)?;
    let name = host.to_string();
    // A hung lookup keeps its blocking thread until the resolver gives up; nobody waits for it.
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || resolve_blocking(&name))).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(LookupError::Transient(host.to_string(), format!("lookup task failed: {e}"))),
        Err(_) => Err(LookupError::Transient(host.to_string(), format!("no answer within {} ms", timeout.as_millis()))),
    }
}

/// Resolves `host` to its addresses, blocking (an IP address resolves to itself, without any lookup).
pub fn resolve_blocking(host: &str) -> Result<Vec<IpAddr>, LookupError> {
    if let Some(ip) = parse_ip(host) {
        return Ok(vec![ip]);
    }
    check_syntax(host)?;
    let hints = AddrInfoHints { socktype: libc::SOCK_STREAM, ..AddrInfoHints::default() };
    let iter = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|e| match e.kind() {
        LookupErrorKind::NoName | LookupErrorKind::NoData => LookupError::NotFound(host.to_string()),
        _ => LookupError::Transient(host.to_string(), std::io::Error::from(e).to_string()),
    })?;
    let mut out: Vec<IpAddr> = iter.filter_map(Result::ok).map(|ai| ai.sockaddr.ip()).collect();
    out.sort_unstable();
    out.dedup();
    if out.is_empty() { Err(LookupError::NotFound(host.to_string())) } else { Ok(out) }
}

/// How long a resolved name is trusted before it is looked up again.
const TTL_OK: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered before it is tried again.
const TTL_FAILED: Duration = Duration::from_secs(2);

/// The daemon's names: answers with their age, and which lookups are under way. An expired answer
/// is still served while its refresh runs, so a resolver outage never hides a known address.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<String, (Result<Vec<IpAddr>, LookupError>, Instant)>,
    in_flight: HashSet<String>,
}

impl Cache {
    /// What is known of `host` now: IP addresses answer themselves; names come from the cache.
    pub fn get(&self, host: &str) -> Option<Result<Vec<IpAddr>, LookupError>> {
        if let Some(ip) = parse_ip(host) {
            return Some(Ok(vec![ip]));
        }
        if check_syntax(host).is_err() {
            return Some(Err(LookupError::Invalid(host.to_string())));
        }
        self.entries.get(host).map(|(r, _)| r.clone())
    }

    /// True when `host` should be looked up now (unknown or expired, and no lookup under way); the
    /// caller then starts one and reports it with [`Cache::put`].
    pub fn start_lookup(&mut self, host: &str, now: Instant) -> bool {
        if parse_ip(host).is_some() || check_syntax(host).is_err() || self.in_flight.contains(host) {
            return false;
        }
        let due = match self.entries.get(host) {
            None => true,
            Some((r, at)) => now.saturating_duration_since(*at) >= if r.is_ok() { TTL_OK } else { TTL_FAILED },
        };
        if due {
            self.in_flight.insert(host.to_string());
        }
        due
    }

    /// Records a lookup's result. A failure does not replace a known answer that has not been
    /// refuted: the name vanishing from DNS is told by NotFound, not by a timeout.
    pub fn put(&mut self, host: &str, result: Result<Vec<IpAddr>, LookupError>, now: Instant) {
        self.in_flight.remove(host);
        if matches!(result, Err(LookupError::Transient(..))) && matches!(self.entries.get(host), Some((Ok(_), _))) {
            if let Some((_, at)) = self.entries.get_mut(host) {
                // Keep the address; try again after the failure interval.
                *at = now - TTL_OK + TTL_FAILED;
            }
            return;
        }
        self.entries.insert(host.to_string(), (result, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_in_every_form() {
        assert_eq!(parse_ip("198.51.100.12"), Some("198.51.100.12".parse().unwrap()));
        assert_eq!(parse_ip("2001:db8::12"), Some("2001:db8::12".parse().unwrap()));
        assert_eq!(parse_ip("[2001:db8::12]"), Some("2001:db8::12".parse().unwrap()));
        assert_eq!(resolve_blocking("198.51.100.12").unwrap().len(), 1);
    }

    #[test]
    fn names_and_garbage() {
        assert!(is_host_name("redis-2.example.net"));
        assert!(is_host_name("localhost"));
        assert!(!is_host_name("not an ip"));
        assert!(!is_host_name("-bad"));
        assert!(!is_host_name("a..b"));
        assert!(matches!(resolve_blocking("no_such host!"), Err(LookupError::Invalid(_))));
        assert!(resolve_blocking("localhost").is_ok());
        // RFC 6761 reserves .invalid: it must never resolve.
        assert!(matches!(
            resolve_blocking("vipctl-test.invalid"),
            Err(LookupError::NotFound(_)) | Err(LookupError::Transient(..))
        ));
    }

    #[test]
    fn cache_serves_known_answers_through_outages() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        assert_eq!(c.get("198.51.100.12").unwrap().unwrap().len(), 1);
        assert!(!c.start_lookup("198.51.100.12", t0), "IP addresses need no lookup");
        assert!(c.get("redis-1.lab").is_none());
        assert!(c.start_lookup("redis-1.lab", t0));
        assert!(!c.start_lookup("redis-1.lab", t0), "one lookup at a time per name");
        let ip: IpAddr = "198.51.100.11".parse().unwrap();
        c.put("redis-1.lab", Ok(vec![ip]), t0);
        assert!(!c.start_lookup("redis-1.lab", t0 + Duration::from_secs(1)));
        assert!(c.start_lookup("redis-1.lab", t0 + TTL_OK));
        // The resolver times out: the known address stays.
        c.put("redis-1.lab", Err(LookupError::Transient("redis-1.lab".into(), "timeout".into())), t0 + TTL_OK);
        assert_eq!(c.get("redis-1.lab").unwrap().unwrap(), vec![ip]);
        assert!(c.start_lookup("redis-1.lab", t0 + TTL_OK + TTL_FAILED));
        // The name is gone: that is an answer.
        c.put("redis-1.lab", Err(LookupError::NotFound("redis-1.lab".into())), t0 + TTL_OK + TTL_FAILED);
        assert!(c.get("redis-1.lab").unwrap().is_err());
    }
}
