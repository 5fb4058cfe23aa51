//! TLS to the sentinels and to Redis (`[sentinel_tls]`, `[redis_tls]`).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Lines};

/// TLS settings for connections to the sentinels or to Redis: the files, read when connecting.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// CA bundle that signed the servers' certificates; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when the servers want mutual TLS (`tls-auth-clients yes`).
    pub client: Option<(PathBuf, PathBuf)>,
    /// The table it came from (`sentinel_tls`, `redis_tls`), for messages.
    pub table: &'static str,
}

/// A TLS table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
}

impl RawTls {
    /// The settings, with both halves of a client certificate or neither.
    pub(super) fn into_spec(self, lines: &Lines<'_>, table: &'static str) -> Result<TlsSpec, ConfigError> {
        let client = match (self.cert_file, self.key_file) {
            (Some(c), Some(k)) => Some((c.into_inner(), k.into_inner())),
            (None, None) => None,
            (Some(f), None) | (None, Some(f)) => {
                return Err(lines.err(
                    f.span(),
                    format!("{table} needs both cert_file and key_file for a client certificate, or neither"),
                ));
            }
        };
        Ok(TlsSpec { ca_file: self.ca_file, client, table })
    }
}
