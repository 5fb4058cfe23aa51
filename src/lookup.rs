//! Turning the host part of a Sentinel address (an IP, possibly unbracketed IPv6, or a host name
//! with `announce-hostnames yes`) into IP addresses, telling "no such name" from "DNS hiccup".

use std::net::IpAddr;

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

/// Resolves `host` to its addresses (an IP address resolves to itself, without any lookup).
pub fn resolve(host: &str) -> Result<Vec<IpAddr>, LookupError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_in_every_form() {
        assert_eq!(parse_ip("198.51.100.12"), Some("198.51.100.12".parse().unwrap()));
        assert_eq!(parse_ip("2001:db8::12"), Some("2001:db8::12".parse().unwrap()));
        assert_eq!(parse_ip("[2001:db8::12]"), Some("2001:db8::12".parse().unwrap()));
        assert_eq!(resolve("198.51.100.12").unwrap().len(), 1);
    }

    #[test]
    fn names_and_garbage() {
        assert!(is_host_name("redis-2.example.net"));
        assert!(is_host_name("localhost"));
        assert!(!is_host_name("not an ip"));
        assert!(!is_host_name("-bad"));
        assert!(!is_host_name("a..b"));
        assert!(matches!(resolve("no_such host!"), Err(LookupError::Invalid(_))));
        assert!(resolve("localhost").is_ok());
        // RFC 6761 reserves .invalid: it must never resolve.
        assert!(matches!(
            resolve("vipctl-test.invalid"),
            Err(LookupError::NotFound(_)) | Err(LookupError::Transient(..))
        ));
    }
}
