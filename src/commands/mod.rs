//! One file per command, each with its own clap `Args`; this file holds what they share.

pub mod check;
pub mod claim;
pub mod generate;
pub mod hook;
pub mod status;
pub mod switchover;
pub mod watch;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::Access;
use crate::config::{Config, HostPort, Master};
use crate::error::{Failure, Outcome};
use crate::lock::{self, MasterLock};
use crate::network::host::HostState;
use crate::policy::{self, Locality, Report};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::resolve::{self, LookupError};
use crate::sentinel;

/// Settings every command gets from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The config file.
    pub config_path: PathBuf,
    /// Say what would change, change nothing.
    pub dry_run: bool,
    /// Read only a config that root owns and nobody else may write (raised privileges).
    pub trusted_config_only: bool,
}

impl Ctx {
    /// Loads the config; any problem is permanent (exit 2). Decision records also go to its
    /// `log_file` from here on.
    pub fn config(&self) -> Outcome<Config> {
        let config = if self.trusted_config_only {
            Config::load_trusted(&self.config_path)
        } else {
            Config::load(&self.config_path)
        }
        .map_err(Failure::permanent)?;
        if let Some(path) = crate::logging::file_path(config.log_file.as_deref()) {
            crate::logging::to_file(&path);
        }
        Ok(config)
    }

    /// Takes the per-master lock, except in dry-run mode and without CAP_NET_ADMIN and CAP_NET_RAW:
    /// such a run can neither change an address nor announce one, so it need not wait, and it must
    /// not stop at a lock folder it may not write before it can say which capability it lacks (or
    /// that nothing needs doing). A run that can announce takes the lock: it must not announce a
    /// VIP that a release under the lock is taking away.
    pub async fn lock(&self, config: &Config, master: &Master) -> Outcome<Option<MasterLock>> {
        let caps = Caps::current();
        if self.dry_run || !(caps.has(CAP_NET_ADMIN) || caps.has(CAP_NET_RAW)) {
            return Ok(None);
        }
        let dir = config.lock_dir.clone().unwrap_or_else(lock::default_dir);
        let name = master.name.clone();
        // The wait is a blocking poll; keep it off the runtime's thread.
        let lock = tokio::task::spawn_blocking(move || MasterLock::acquire(&dir, &name, lock::TIMEOUT))
            .await
            .map_err(|e| Failure::transient(anyhow::anyhow!("lock task failed: {e}")))??;
        tracing::debug!("holding {}", lock.path.display());
        Ok(Some(lock))
    }
}

/// Resolves a master's host and says whether it is this host. A name that does not exist is
/// permanent; a resolver that does not answer is transient.
pub async fn locality_of(addr: &HostPort, host: &HostState, managed: &[IpAddr]) -> Outcome<Locality> {
    let ips = resolve::resolve(&addr.host, resolve::TIMEOUT).await.map_err(|e| match e {
        LookupError::Transient(..) => Failure::transient(e),
        _ => Failure::permanent(e),
    })?;
    Ok(policy::locality(&addr.host, &ips, host, managed))
}

/// Asks the master's sentinels (none configured: `None`), each bounded by the sentinel timeout,
/// until `enough` says the answers so far suffice or every sentinel answered or failed.
pub async fn ask_sentinels(
    config: &Config,
    master: &Master,
    enough: impl FnMut(&[Report], bool) -> bool,
) -> Option<Vec<Report>> {
    if master.sentinels.is_empty() {
        return None;
    }
    let access = match Access::sentinels(config) {
        Ok(a) => a,
        // Unreadable secrets: every sentinel counts as unreachable, and says why.
        Err(f) => return Some(master.sentinels.iter().map(|s| Report::failed(s.clone(), f.to_string())).collect()),
    };
    Some(sentinel::ask(&master.sentinels, &access, &master.name, config.sentinel_timeout, enough).await)
}

/// Every answer a one-shot ask got counts: they are all seconds old at most.
pub const ONE_SHOT_FRESH: Duration = Duration::from_secs(3600);

/// Waits for every sentinel.
pub fn all_of_them(_: &[Report], all_in: bool) -> bool {
    all_in
}
