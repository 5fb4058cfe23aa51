//! The daemon's settings (`[watch]`), and the `VIPCTL_SOCKET` override.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::bounded::{Bounded, Setting};
use super::error::from_text;

/// Where the daemon's control socket lives unless the config or `VIPCTL_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vipctl/vipctl.sock";
/// The minority timeout when neither the config nor the sentinels say (Sentinel's own default
/// `down-after-milliseconds` is 30 s; most deployments set 5–10 s).
pub const DEFAULT_MINORITY_TIMEOUT: Duration = Duration::from_millis(MinorityTimeoutMs::DEFAULT);

/// Env var overriding `[watch] socket` (one per host when hosts share a filesystem, as in the lab).
pub const SOCKET_ENV: &str = "VIPCTL_SOCKET";

/// The daemon's settings (`[watch]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The Unix socket hooks and `status` talk to.
    pub socket: PathBuf,
    /// Users (names or uids) whose hooks the daemon serves, besides root and its own user; `None`
    /// (not set): the `User=` of whichever sentinel units are installed (redis, valkey).
    pub hook_users: Option<Vec<String>>,
    /// How often the daemon re-checks everything even without events.
    pub reconcile_interval: Duration,
    /// While this host holds VIPs, how often each sentinel gets a PING; one that has not answered
    /// for three of them counts as unreachable at once. Zero: no fast heartbeats.
    pub heartbeat: Duration,
    /// How long a VIP holder may go without reaching a majority of sentinels before it lets go;
    /// `None`: the master's `down-after-milliseconds` as its sentinels report it.
    pub minority_timeout: Option<Duration>,
    /// Periodic re-announcement while holding; zero disables it.
    pub announce_refresh: Duration,
    /// Release the VIPs when the daemon stops (default: keep them; the VIP belongs to the master).
    pub release_on_exit: bool,
    /// Watch for other hosts claiming a held VIP, and re-announce at once when one does.
    pub defend: bool,
    /// Where to serve Prometheus metrics and /healthz; `None`: not at all.
    pub metrics_listen: Option<SocketAddr>,
    /// Claim as soon as the local replica that the leader selected reports role:master.
    pub early_claim: bool,
    /// When the local master's Redis dies (connections refused), ask Sentinel to fail it over at
    /// once instead of after `down-after-milliseconds`.
    pub fail_fast: bool,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            socket: PathBuf::from(DEFAULT_SOCKET),
            hook_users: None,
            reconcile_interval: Bounded::<ReconcileIntervalMs>::default().millis(),
            heartbeat: Bounded::<HeartbeatMs>::default().millis(),
            minority_timeout: None,
            announce_refresh: Bounded::<AnnounceRefreshMs>::default().millis(),
            release_on_exit: false,
            defend: true,
            metrics_listen: None,
            early_claim: false,
            fail_fast: false,
        }
    }
}

/// `reconcile_interval_ms`.
pub(super) enum ReconcileIntervalMs {}
impl Setting for ReconcileIntervalMs {
    const KEY: &'static str = "[watch] reconcile_interval_ms";
    const MIN: u64 = 50;
    const MAX: u64 = 60_000;
    const DEFAULT: u64 = 500;
}

/// `heartbeat_ms`.
pub(super) enum HeartbeatMs {}
impl Setting for HeartbeatMs {
    const KEY: &'static str = "[watch] heartbeat_ms";
    const MIN: u64 = 0;
    const MAX: u64 = 1000;
    const DEFAULT: u64 = 20;
    const NOTE: &'static str = "0 turns fast heartbeats off; ";
}

/// `minority_timeout_ms`; when absent the sentinels' `down-after-milliseconds` applies, and the
/// default is what the daemon uses when they do not say either.
pub(super) enum MinorityTimeoutMs {}
impl Setting for MinorityTimeoutMs {
    const KEY: &'static str = "[watch] minority_timeout_ms";
    const MIN: u64 = 0;
    const MAX: u64 = 600_000;
    const DEFAULT: u64 = 5000;
}

/// `announce_refresh_ms`.
pub(super) enum AnnounceRefreshMs {}
impl Setting for AnnounceRefreshMs {
    const KEY: &'static str = "[watch] announce_refresh_ms";
    const MIN: u64 = 0;
    const MAX: u64 = 3_600_000;
    const DEFAULT: u64 = 0;
}

/// `metrics_listen`, an `ADDRESS:PORT` to bind.
struct MetricsListen(SocketAddr);

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |s| {
            s.parse()
                .map(MetricsListen)
                .map_err(|_| format!("[watch] metrics_listen {s:?} is not ADDRESS:PORT, e.g. \"127.0.0.1:9477\""))
        })
    }
}

/// `[watch]` as written; an absent table reads as an empty one.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    socket: Option<PathBuf>,
    hook_users: Option<Vec<String>>,
    #[serde(default)]
    reconcile_interval_ms: Bounded<ReconcileIntervalMs>,
    #[serde(default)]
    heartbeat_ms: Bounded<HeartbeatMs>,
    minority_timeout_ms: Option<Bounded<MinorityTimeoutMs>>,
    #[serde(default)]
    announce_refresh_ms: Bounded<AnnounceRefreshMs>,
    release_on_exit: Option<bool>,
    defend: Option<bool>,
    metrics_listen: Option<MetricsListen>,
    early_claim: Option<bool>,
    fail_fast: Option<bool>,
}

impl RawWatch {
    /// The settings: serde has checked every value, so only `VIPCTL_SOCKET` is left to apply.
    pub(super) fn into_watch(self) -> Watch {
        let default = Watch::default();
        // VIPCTL_SOCKET wins over the file. Set but empty (or not UTF-8), it still hides the
        // file's socket and the default applies, as it always has.
        let socket = match std::env::var_os(SOCKET_ENV) {
            None => self.socket.unwrap_or(default.socket),
            Some(p) if !p.is_empty() && p.to_str().is_some() => PathBuf::from(p),
            Some(_) => default.socket,
        };
        Watch {
            socket,
            hook_users: self.hook_users,
            reconcile_interval: self.reconcile_interval_ms.millis(),
            heartbeat: self.heartbeat_ms.millis(),
            minority_timeout: self.minority_timeout_ms.map(|m| m.millis()),
            announce_refresh: self.announce_refresh_ms.millis(),
            release_on_exit: self.release_on_exit.unwrap_or(default.release_on_exit),
            defend: self.defend.unwrap_or(default.defend),
            metrics_listen: self.metrics_listen.map(|m| m.0),
            early_claim: self.early_claim.unwrap_or(default.early_claim),
            fail_fast: self.fail_fast.unwrap_or(default.fail_fast),
        }
    }
}
