//! The config file: which VIPs belong to which Redis master, and how to reach the sentinels.
//!
//! One file serves every host. Every mistake is reported with the file, the line and the fix, and a
//! config with any mistake is refused whole: vipctl never acts on half a config.
//!
//! Values are checked as serde reads them, by the types of the file's shape (`Raw*` next to each
//! public type); what needs several values at once (a VIP under one master only, a routed master's
//! rules, an announcement schedule's length) is checked while the public types are built.

mod addr;
mod announce;
mod auth;
mod bounded;
mod cloud;
mod error;
mod master;
mod tls;
mod watch;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use addr::{HostPort, SentinelAddr};
pub use announce::{Announce, DEFAULT_INTERVAL_MS, DEFAULT_ROUNDS};
pub use auth::{AuthSpec, Secret};
pub use cloud::{Cloud, DEFAULT_METADATA, Provider, Timeouts};
pub use error::ConfigError;
pub use master::{Master, Mode, Notify};
pub use tls::TlsSpec;
pub use watch::{DEFAULT_MINORITY_TIMEOUT, DEFAULT_SOCKET, SOCKET_ENV, Watch};

use addr::{SentinelEntry, unique_sentinels};
use announce::RawAnnounce;
use auth::RawAuth;
use bounded::{Bounded, Setting};
use error::Lines;
use master::RawMaster;
use tls::RawTls;
use watch::RawWatch;

use crate::network::vip::Vip;

/// Where the config is read from when neither `--config` nor `VIPCTL_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/vipctl/vipctl.toml";

/// Default time to wait for one sentinel's answer.
pub const DEFAULT_SENTINEL_TIMEOUT_MS: u64 = 500;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Masters by name, in name order.
    pub masters: BTreeMap<String, Master>,
    /// How long to wait for each sentinel.
    pub sentinel_timeout: Duration,
    /// Credentials for the sentinels, if they need any.
    pub sentinel_auth: Option<AuthSpec>,
    /// TLS to the sentinels (their `tls-port`), if configured.
    pub sentinel_tls: Option<TlsSpec>,
    /// Credentials for the local Redis (its `ROLE`, early claim), if it needs any.
    pub redis_auth: Option<AuthSpec>,
    /// TLS to the local Redis (a TLS-only Redis), if configured.
    pub redis_tls: Option<TlsSpec>,
    /// A file that gets one line per decision, besides syslog.
    pub log_file: Option<PathBuf>,
    /// Where per-master lock files live.
    pub lock_dir: Option<PathBuf>,
    /// Settings of the `vipctl watch` daemon (and of hooks that hand work to it).
    pub watch: Watch,
}

/// `sentinel_timeout_ms`: capped so that a hook (lock + sentinels + announcements) stays far from
/// Sentinel's 60 s kill.
enum SentinelTimeoutMs {}
impl Setting for SentinelTimeoutMs {
    const KEY: &'static str = "sentinel_timeout_ms";
    const MIN: u64 = 1;
    const MAX: u64 = 5_000;
    const DEFAULT: u64 = DEFAULT_SENTINEL_TIMEOUT_MS;
}

/// The file as written: its top-level keys and tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sentinels: Vec<Spanned<SentinelEntry>>,
    #[serde(default)]
    sentinel_timeout_ms: Bounded<SentinelTimeoutMs>,
    sentinel_auth: Option<RawAuth>,
    sentinel_tls: Option<RawTls>,
    redis_auth: Option<RawAuth>,
    redis_tls: Option<RawTls>,
    log_file: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    announce: Option<RawAnnounce>,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    masters: BTreeMap<String, RawMaster>,
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        Config::parse(path, &text)
    }

    /// Like [`Config::load`], for a process with raised privileges: the file must be owned by root
    /// and writable by nobody else (it is opened without following a symlink, then checked).
    pub fn load_trusted(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let read = |error| ConfigError::Read { path: path.to_path_buf(), error };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(ConfigError::Whole {
                path: path.to_path_buf(),
                message: format!(
                    "must be a regular file owned by root and writable by root only (owner uid {}, mode {:o}) when \
                     vipctl runs with raised privileges; `chown root: {p}; chmod 644 {p}`",
                    meta.uid(),
                    meta.mode() & 0o7777,
                    p = path.display()
                ),
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read)?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let lines = Lines { path, text };
        // Every value is checked here, at its own line; what follows checks values together.
        let raw: RawConfig = toml::from_str(text).map_err(|e| lines.toml(&e))?;
        let sentinels = unique_sentinels(&lines, &raw.sentinels)?;
        let announce = announce::resolve(&lines, raw.announce, announce::DEFAULT_ANNOUNCE)?;
        let auth = |a: Option<RawAuth>, table| a.map(|a| a.into_spec(&lines, table)).transpose();
        let tls = |t: Option<RawTls>, table| t.map(|t| t.into_spec(&lines, table)).transpose();
        let sentinel_auth = auth(raw.sentinel_auth, "sentinel_auth")?;
        let sentinel_tls = tls(raw.sentinel_tls, "sentinel_tls")?;
        let redis_auth = auth(raw.redis_auth, "redis_auth")?;
        let redis_tls = tls(raw.redis_tls, "redis_tls")?;
        let masters = master::build_all(&lines, raw.masters, &master::Defaults { sentinels: &sentinels, announce })?;
        Ok(Config {
            path: path.to_path_buf(),
            masters,
            sentinel_timeout: raw.sentinel_timeout_ms.millis(),
            sentinel_auth,
            sentinel_tls,
            redis_auth,
            redis_tls,
            log_file: raw.log_file,
            lock_dir: raw.lock_dir,
            watch: raw.watch.into_watch(),
        })
    }

    /// The master to act on for `claim`/`release`: the one named, or the only one.
    pub fn pick_master(&self, name: Option<&str>) -> Result<&Master, String> {
        match name {
            Some(n) => self.master(n),
            None if self.masters.len() == 1 => Ok(self.masters.values().next().expect("one master")),
            None => Err(format!(
                "config {} names {} masters ({}): say which one",
                self.path.display(),
                self.masters.len(),
                self.masters.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The master called `name`, or an error that lists the known ones.
    pub fn master(&self, name: &str) -> Result<&Master, String> {
        self.masters.get(name).ok_or_else(|| {
            format!(
                "master `{name}` is not in config {} (it has: {}); add a [masters.{name}] table or fix the name in sentinel.conf",
                self.path.display(),
                self.masters.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Every VIP of every master: addresses vipctl manages and so never counts as the host's own.
    pub fn all_vips(&self) -> impl Iterator<Item = &Vip> {
        self.masters.values().flat_map(|m| m.vips.iter())
    }

    /// The addresses vipctl manages (every VIP in the config): never counted as the host's own.
    pub fn managed(&self) -> Vec<IpAddr> {
        self.all_vips().map(|v| v.addr).collect()
    }
}

#[cfg(test)]
mod tests;
