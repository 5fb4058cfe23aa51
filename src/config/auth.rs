//! Credentials for the sentinels and for Redis (`[sentinel_auth]`, `[redis_auth]`).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Lines};

/// Credentials (AUTH) for the sentinels or for Redis. The password is read only when a connection
/// needs it: a hook that hands its call to the daemon never touches a secret.
#[derive(Clone)]
pub struct AuthSpec {
    /// ACL user, when not the default user.
    pub username: Option<String>,
    /// The password, or the file it is in.
    pub password: Secret,
    /// The table it came from (`sentinel_auth`, `redis_auth`), for messages.
    pub table: &'static str,
}

/// A password written in the config, or the file that holds it.
#[derive(Clone)]
pub enum Secret {
    /// In the config itself.
    Inline(String),
    /// In this file (one line).
    File(PathBuf),
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = match &self.password {
            Secret::Inline(_) => "<redacted>".to_string(),
            Secret::File(p) => format!("file {}", p.display()),
        };
        f.debug_struct("AuthSpec").field("username", &self.username).field("password", &password).finish()
    }
}

/// An auth table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    username: Option<String>,
    password: Option<String>,
    password_file: Option<Spanned<PathBuf>>,
}

impl RawAuth {
    /// The credentials, with exactly one of `password` and `password_file`.
    pub(super) fn into_spec(self, lines: &Lines<'_>, table: &'static str) -> Result<AuthSpec, ConfigError> {
        let password = match (self.password, self.password_file) {
            (Some(_), Some(f)) => {
                return Err(lines.err(f.span(), format!("{table} has both password and password_file: keep one")));
            }
            (Some(p), None) => Secret::Inline(p),
            (None, Some(f)) => Secret::File(f.into_inner()),
            (None, None) => return Err(lines.whole(format!("{table} needs password or password_file"))),
        };
        Ok(AuthSpec { username: self.username, password, table })
    }
}
