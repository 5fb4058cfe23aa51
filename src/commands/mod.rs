//! One file per command; this file holds what they share.

pub mod check;
pub mod claim;
pub mod generate;
pub mod hook;
pub mod status;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, Master};
use crate::error::{Failure, Outcome};
use crate::host::HostState;
use crate::lock::{self, MasterLock};
use crate::lookup::{self, LookupError};
use crate::sentinel::{self, View};

/// How long a run waits for another run on the same master before giving up (transiently).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every command gets from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The config file.
    pub config_path: PathBuf,
    /// Say what would change, change nothing.
    pub dry_run: bool,
}

impl Ctx {
    /// Loads the config; any problem is permanent (exit 2).
    pub fn config(&self) -> Outcome<Config> {
        Config::load(&self.config_path).map_err(Failure::permanent)
    }

    /// Takes the per-master lock, except in dry-run mode (which changes nothing, so need not wait).
    pub fn lock(&self, config: &Config, master: &Master) -> Outcome<Option<MasterLock>> {
        if self.dry_run {
            return Ok(None);
        }
        let dir = config.lock_dir.clone().unwrap_or_else(lock::default_dir);
        let lock = MasterLock::acquire(&dir, &master.name, LOCK_TIMEOUT)?;
        tracing::debug!("holding {}", lock.path.display());
        Ok(Some(lock))
    }
}

/// The addresses vipctl manages (every VIP in the config): never counted as the host's own.
pub fn managed(config: &Config) -> Vec<IpAddr> {
    config.all_vips().map(|v| v.addr).collect()
}

/// Resolves a master host and says whether it is this host.
pub fn is_this_host(master_host: &str, host: &HostState, managed: &[IpAddr]) -> Outcome<bool> {
    let ips = lookup::resolve(master_host).map_err(|e| match e {
        LookupError::Transient(..) => Failure::transient(e),
        _ => Failure::permanent(e),
    })?;
    if ips.iter().all(|ip| ip.is_loopback()) {
        // Debian's /etc/hosts maps the host's own name to 127.0.1.1: that names no host.
        return Err(Failure::permanent(anyhow::anyhow!(
            "`{master_host}` resolves only to loopback here ({}); put its real address in /etc/hosts or DNS",
            ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(ips.iter().any(|ip| host.is_local(*ip, managed)))
}

/// Asks the master's sentinels, if it has any.
pub async fn ask_sentinels(config: &Config, master: &Master) -> Option<View> {
    if master.sentinels.is_empty() {
        return None;
    }
    Some(sentinel::ask_all(&master.sentinels, &access(config), &master.name, config.sentinel_timeout).await)
}

/// Credentials and TLS for the sentinels, as configured.
pub fn access(config: &Config) -> sentinel::Access {
    sentinel::Access { auth: config.sentinel_auth.clone(), tls: config.sentinel_tls.clone() }
}
