//! Host-and-port addresses ([`HostPort`]), and the sentinel lists of the file.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::error::{ConfigError, Lines, from_text};

/// A host (IP address, unbracketed, or name) and a port: a sentinel's address as written in the
/// config, a master's as Sentinel reports it, an endpoint in the hook's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct HostPort {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(|| format!("`{s}` is not [ADDRESS]:PORT"))?;
            (h.to_string(), p)
        } else {
            let (h, p) =
                s.rsplit_once(':').ok_or_else(|| format!("`{s}` has no port: write HOST:PORT, e.g. `{s}:26379`"))?;
            if h.contains(':') {
                return Err(format!("`{s}`: put an IPv6 address in brackets, e.g. `[{h}]:{p}`"));
            }
            (h.to_string(), p)
        };
        if host.is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{s}`: port `{port}` is not 1–65535"))?;
        Ok(HostPort { host, port })
    }

    /// The address, when the host is written as an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// A sentinel's address (`host:port`, `[v6]:port`).
pub type SentinelAddr = HostPort;

/// One entry of a `sentinels` list, parsed as it is read.
pub(super) struct SentinelEntry(SentinelAddr);

impl<'de> Deserialize<'de> for SentinelEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |s| SentinelAddr::parse(s).map(SentinelEntry).map_err(|m| format!("sentinel address {m}")))
    }
}

/// The addresses of a `sentinels` list, refusing one listed twice.
pub(super) fn unique_sentinels(
    lines: &Lines<'_>,
    list: &[Spanned<SentinelEntry>],
) -> Result<Vec<SentinelAddr>, ConfigError> {
    let mut out: Vec<SentinelAddr> = Vec::new();
    for entry in list {
        let a = &entry.get_ref().0;
        if out.contains(a) {
            return Err(lines.err(
                entry.span(),
                format!("sentinel {a} is listed twice: remove one (a duplicate would count twice in the majority)"),
            ));
        }
        out.push(a.clone());
    }
    Ok(out)
}
