//! The one decision rule of vipctl. The hook, `claim`/`release` and the daemon all decide here, from
//! plain data: the master's config, the sentinels' latest answers and their ages, this host's
//! addresses, the local Redis's role if known, and (for the daemon) what it remembers of the
//! master. Nothing here does I/O or reads a clock: the caller passes `now`. What the caller must
//! learn before a decision can be made (a role, a name) comes back as an [`Act`] to carry out.
//!
//! The rules, and why:
//! - The newest config epoch wins, not the head count: during a failover the leader already names
//!   the promoted replica while the others still name the old master (see [`weigh`]).
//! - Letting go needs no majority; claiming does. A host cut off from most sentinels cannot know
//!   whether the majority has failed over, so it never claims, and a holder lets go once it has
//!   been without a majority for the minority timeout. That clock starts at the last moment a
//!   majority answered, not when the loss was noticed.
//! - The minority timeout defaults to the smallest `down-after-milliseconds` the sentinels report,
//!   capped, so that the cut-off holder is gone before the majority can promote anyone, and so that
//!   no single sentinel can switch fencing off by reporting a huge value.
//! - Before binding, the local Redis gets the last word: a VIP on a Redis that says it is a
//!   replica, or that nothing listens for, serves no one.
//! - A claimant is yielded to only on positive evidence: the sentinels name another master, the
//!   leader chose another host's replica, or the local Redis is a replica or gone. A timeout is no
//!   evidence (a Redis forking for BGSAVE answers late).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{HostPort, Master};
use crate::local_redis::Role;
use crate::network::host::HostState;
pub use crate::network::plan::Want;
use crate::network::plan::{self, Action};
pub use crate::sentinel::Report;
use crate::sentinel::{Answer, MasterAddr};

/// The longest minority timeout derived from the sentinels (Sentinel's own default
/// `down-after-milliseconds`). A configured `minority_timeout_ms` may be longer.
pub const MINORITY_TIMEOUT_CAP: Duration = Duration::from_secs(30);
/// How long an early claim holds against sentinels that still name the old master.
pub const EARLY_GRACE: Duration = Duration::from_secs(10);

/// The conclusion drawn from the sentinels' answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The newest answer: the master at the highest config epoch.
    Master {
        /// Address.
        addr: MasterAddr,
        /// Its config epoch.
        epoch: u64,
        /// How many sentinels report exactly this master at this epoch.
        agreeing: usize,
    },
    /// Sentinels at the same highest epoch disagree; this should not happen, so trust nobody.
    Conflict {
        /// The epoch they disagree at.
        epoch: u64,
    },
    /// No sentinel answered with a master.
    NoMaster,
}

/// The answers of one master's sentinels, weighed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighed {
    /// What the fresh answers say.
    pub verdict: Verdict,
    /// Sentinels whose answer is fresh (a master or "unknown master").
    pub answered: usize,
    /// Sentinels configured.
    pub configured: usize,
    /// How long ago a majority of the sentinels had last answered (the age of the answer that
    /// completed the most recent majority); `None` when a majority never answered.
    pub majority_age: Option<Duration>,
    /// The smallest `down-after-milliseconds` any sentinel reported, fresh or not.
    pub down_after: Option<Duration>,
}

impl Weighed {
    /// How long the master has been without a majority: since the last round that had one, and
    /// never longer than `since_start` (how long the asker has been asking).
    pub fn minority_for(&self, since_start: Duration) -> Duration {
        self.majority_age.map_or(since_start, |age| age.min(since_start))
    }

    /// True when more than half of the configured sentinels answered recently.
    pub fn majority(&self) -> bool {
        self.answered * 2 > self.configured
    }

    /// A short human summary, e.g. `198.51.100.12:6379 (epoch 1; 3 of 3 sentinels answered)`.
    pub fn summary(&self) -> String {
        let (n, r) = (self.configured, self.answered);
        match &self.verdict {
            Verdict::Master { addr, epoch, agreeing } => {
                format!("{addr} (epoch {epoch}; {r} of {n} sentinels answered, {agreeing} at that epoch)")
            }
            Verdict::Conflict { epoch } => format!("conflicting masters at epoch {epoch} ({r}/{n} reachable)"),
            Verdict::NoMaster => format!("no master known ({r}/{n} reachable)"),
        }
    }

    /// The master the verdict names, if it names one.
    pub fn master(&self) -> Option<&MasterAddr> {
        match &self.verdict {
            Verdict::Master { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// The newest epoch the sentinels reported (0 when none).
    pub fn epoch(&self) -> u64 {
        match &self.verdict {
            Verdict::Master { epoch, .. } | Verdict::Conflict { epoch } => *epoch,
            Verdict::NoMaster => 0,
        }
    }
}

/// Weighs the sentinels' answers: the highest config epoch among the fresh answers wins.
///
/// Sentinel elects a leader per epoch with a majority of votes, and every sentinel adopts the
/// config of the highest epoch it hears of; epochs only grow. The highest epoch is therefore the
/// newest decision Sentinel has made, which is exactly how the sentinels reconcile among themselves.
pub fn weigh(reports: &[Report], fresh_for: Duration) -> Weighed {
    let fresh: Vec<&Answer> = reports.iter().filter_map(|r| r.fresh(fresh_for)).collect();
    let masters: Vec<(&MasterAddr, u64)> = fresh
        .iter()
        .filter_map(|a| match a {
            Answer::Master { addr, epoch, .. } => Some((addr, *epoch)),
            Answer::Unknown => None,
        })
        .collect();
    let verdict = match masters.iter().map(|(_, e)| *e).max() {
        None => Verdict::NoMaster,
        Some(top) => {
            let newest: Vec<&MasterAddr> = masters.iter().filter(|(_, e)| *e == top).map(|(a, _)| *a).collect();
            if newest.iter().any(|a| *a != newest[0]) {
                Verdict::Conflict { epoch: top }
            } else {
                Verdict::Master { addr: newest[0].clone(), epoch: top, agreeing: newest.len() }
            }
        }
    };
    let need = reports.len() / 2 + 1;
    // Ages of the last successful answers, newest first: the `need`-th one completed the most
    // recent majority. A sentinel known to be down still answered at that time.
    let mut ages: Vec<Duration> = reports.iter().filter_map(|r| r.last.as_ref().map(|(_, age)| *age)).collect();
    ages.sort_unstable();
    let down_after = reports
        .iter()
        .filter_map(|r| match &r.last {
            Some((Answer::Master { down_after_ms: Some(ms), .. }, _)) => Some(Duration::from_millis(*ms)),
            _ => None,
        })
        .min();
    Weighed {
        verdict,
        answered: fresh.len(),
        configured: reports.len(),
        majority_age: ages.get(need.saturating_sub(1)).copied(),
        down_after,
    }
}

/// Whether an address (as the sentinels or the hook's arguments name it) is this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// One of this host's own addresses.
    Here,
    /// Another host.
    Elsewhere,
    /// Cannot tell (the name does not resolve yet, or only to loopback): decide nothing on it.
    Unknown(String),
}

/// Says whether `ips` (what a master's host resolved to) name this host. The VIPs themselves and
/// loopback never count: a bound VIP would vouch for itself, and every host has 127.0.0.1.
pub fn locality(host_name: &str, ips: &[IpAddr], host: &HostState, managed: &[IpAddr]) -> Locality {
    if !ips.is_empty() && ips.iter().all(IpAddr::is_loopback) {
        // Debian's /etc/hosts maps the host's own name to 127.0.1.1: that names no host.
        return Locality::Unknown(format!(
            "`{host_name}` resolves only to loopback here ({}); put its real address in /etc/hosts or DNS",
            ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    if ips.iter().any(|ip| host.is_local(*ip, managed)) { Locality::Here } else { Locality::Elsewhere }
}

/// Why a decision was made: the typed reason that every decision record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The newest sentinel answer names this host, and a majority answered.
    NamedHere {
        /// The master as named.
        master: String,
        /// Its epoch.
        epoch: u64,
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// The newest sentinel answer names another host.
    NamedElsewhere {
        /// The master as named.
        master: String,
        /// Its epoch.
        epoch: u64,
    },
    /// A majority answered, but none knows a master by that name.
    NoMasterKnown {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// Sentinels at one epoch name different masters.
    SentinelsConflict {
        /// That epoch.
        epoch: u64,
    },
    /// Too few sentinels answered to claim.
    MinorityNotClaiming {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// A holder without a majority, within its minority timeout.
    MinorityHolding {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
        /// Since the last majority.
        waited_ms: u64,
        /// The minority timeout in force.
        timeout_ms: u64,
    },
    /// A holder without a majority for the minority timeout: this host is on the minority side.
    MinorityTimeout {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
        /// Since the last majority.
        waited_ms: u64,
        /// The minority timeout in force.
        timeout_ms: u64,
    },
    /// The local Redis must be asked for its role before the VIPs are bound here.
    AskingLocalRedis {
        /// The Redis asked.
        redis: String,
    },
    /// The sentinels name this host, but its Redis is not serving as master.
    LocalRedisNotMaster {
        /// The Redis asked.
        redis: String,
        /// What it said.
        role: String,
    },
    /// Early claim: the local replica that the leader selected reports role:master.
    EarlyClaim {
        /// The replica.
        replica: String,
    },
    /// After an early claim, holding until the sentinels confirm, publish a newer epoch or abort.
    EarlyClaimPending {
        /// The replica.
        replica: String,
        /// Left of the grace period.
        left_ms: u64,
    },
    /// Periodic re-announcement while holding.
    Refresh,
    /// The master's host name does not resolve (yet).
    Unresolved {
        /// The name.
        host: String,
        /// Why.
        why: String,
    },
    /// The VIPs cannot be placed on this host (no interface for them, …).
    Unplaceable {
        /// What is wrong, with the fix.
        error: String,
    },
    /// No sentinels are configured: the hook acts on its arguments.
    HookArguments {
        /// The new master as the hook's arguments name it.
        to: String,
    },
    /// No sentinel answered the hook.
    NoSentinelAnswered {
        /// Sentinels configured.
        configured: usize,
    },
    /// A person asked for it.
    ByHand,
    /// A person claimed against the sentinels' word (`--force`).
    Forced {
        /// The master the sentinels name.
        master: String,
    },
    /// Another host claimed a held VIP while this host has the better claim: re-announce.
    Defend {
        /// The claimant's MAC.
        claimant: String,
        /// What the local Redis said, if asked.
        role: String,
    },
    /// Another host claimed a held VIP, and there is evidence it should have it.
    Yield {
        /// The claimant's MAC.
        claimant: String,
        /// The evidence.
        evidence: String,
    },
    /// The sentinels still name this host, but the leader chose another host's replica and this
    /// host gave the VIPs up to it: claiming them back would only fight the failover.
    FailoverElsewhere {
        /// The replica chosen.
        toward: String,
    },
    /// The daemon stops with `release_on_exit`.
    Stopping,
    /// The leader chose another host's replica: this host's Redis stops acknowledging writes.
    FenceWrites {
        /// The Redis paused.
        redis: String,
        /// The replica chosen.
        toward: String,
    },
    /// A majority of the sentinels name the new master: the fenced Redis becomes its replica.
    Demote {
        /// The local Redis.
        redis: String,
        /// The new master.
        to: String,
    },
    /// The failover aborted: the fenced Redis takes writes again.
    LiftFence {
        /// The local Redis.
        redis: String,
        /// Why.
        why: String,
    },
}

impl Reason {
    /// The variant's name, e.g. `minority_timeout`: what changes when the belief changes.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NamedHere { .. } => "named_here",
            Reason::NamedElsewhere { .. } => "named_elsewhere",
            Reason::NoMasterKnown { .. } => "no_master_known",
            Reason::SentinelsConflict { .. } => "sentinels_conflict",
            Reason::MinorityNotClaiming { .. } => "minority_not_claiming",
            Reason::MinorityHolding { .. } => "minority_holding",
            Reason::MinorityTimeout { .. } => "minority_timeout",
            Reason::AskingLocalRedis { .. } => "asking_local_redis",
            Reason::LocalRedisNotMaster { .. } => "local_redis_not_master",
            Reason::EarlyClaim { .. } => "early_claim",
            Reason::EarlyClaimPending { .. } => "early_claim_pending",
            Reason::Refresh => "refresh",
            Reason::Unresolved { .. } => "unresolved",
            Reason::Unplaceable { .. } => "unplaceable",
            Reason::HookArguments { .. } => "hook_arguments",
            Reason::NoSentinelAnswered { .. } => "no_sentinel_answered",
            Reason::ByHand => "by_hand",
            Reason::Forced { .. } => "forced",
            Reason::Defend { .. } => "defend",
            Reason::Yield { .. } => "yield",
            Reason::FailoverElsewhere { .. } => "failover_elsewhere",
            Reason::Stopping => "stopping",
            Reason::FenceWrites { .. } => "fence_writes",
            Reason::Demote { .. } => "demote",
            Reason::LiftFence { .. } => "lift_fence",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NamedHere { master, epoch, answered, configured } => {
                write!(f, "the sentinels name this host ({master}, epoch {epoch}; {answered} of {configured} answered)")
            }
            Reason::NamedElsewhere { master, epoch } => {
                write!(f, "the sentinels name another host ({master}, epoch {epoch})")
            }
            Reason::NoMasterKnown { answered, configured } => write!(
                f,
                "the sentinels know no master by that name ({answered} of {configured} answered); changing nothing"
            ),
            Reason::SentinelsConflict { epoch } => {
                write!(f, "sentinels at epoch {epoch} name different masters; changing nothing")
            }
            Reason::MinorityNotClaiming { answered, configured } => {
                write!(f, "only {answered} of {configured} sentinels answered; not claiming without a majority")
            }
            Reason::MinorityHolding { answered, configured, waited_ms, timeout_ms } => write!(
                f,
                "only {answered} of {configured} sentinels answered for {waited_ms} ms; holding until minority_timeout_ms {timeout_ms}"
            ),
            Reason::MinorityTimeout { answered, configured, waited_ms, timeout_ms } => write!(
                f,
                "only {answered} of {configured} sentinels answered for {waited_ms} ms (minority_timeout_ms {timeout_ms}): \
                 this host is on the minority side"
            ),
            Reason::AskingLocalRedis { redis } => write!(f, "asking the local Redis at {redis} for its role first"),
            Reason::LocalRedisNotMaster { redis, role } => write!(
                f,
                "the sentinels name this host, but its Redis at {redis} does not serve as master ({role}); not claiming"
            ),
            Reason::EarlyClaim { replica } => write!(
                f,
                "early claim: local replica {replica}, selected by the leader, reports role:master; sentinel confirmation pending"
            ),
            Reason::EarlyClaimPending { replica, left_ms } => write!(
                f,
                "holding the early claim for {replica} until the sentinels confirm ({left_ms} ms of grace left)"
            ),
            Reason::Refresh => f.write_str("periodic re-announcement (announce_refresh_ms)"),
            Reason::Unresolved { host, why } => write!(f, "cannot tell whether {host} is this host: {why}"),
            Reason::Unplaceable { error } => f.write_str(error),
            Reason::HookArguments { to } => {
                write!(f, "no sentinels configured: acting on the hook's arguments (to {to})")
            }
            Reason::NoSentinelAnswered { configured } => {
                write!(f, "none of {configured} sentinels answered: not acting on arguments that may be hours old")
            }
            Reason::ByHand => f.write_str("asked for by hand"),
            Reason::Forced { master } => write!(f, "claimed by hand with --force although the sentinels name {master}"),
            Reason::Defend { claimant, role } => {
                write!(f, "defending against a claim by {claimant} (the Redis here: {role})")
            }
            Reason::Yield { claimant, evidence } => write!(f, "yielding to a claim by {claimant}: {evidence}"),
            Reason::FailoverElsewhere { toward } => write!(
                f,
                "the leader chose {toward}, a replica on another host, and the VIPs went to it: not claiming them back \
                 while that failover runs"
            ),
            Reason::Stopping => f.write_str("stopping with release_on_exit"),
            Reason::FenceWrites { redis, toward } => write!(
                f,
                "the leader chose {toward}, a replica on another host: writes on {redis} paused so that it acknowledges none \
                 that the failover would lose"
            ),
            Reason::Demote { redis, to } => write!(
                f,
                "a majority of the sentinels name {to} at the newest epoch: {redis} becomes its replica and its paused \
                 writes are refused (READONLY)"
            ),
            Reason::LiftFence { redis, why } => write!(f, "writes on {redis} resume: {why}"),
        }
    }
}

/// What the caller should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Bind the VIPs here (or move them to the right interface) and announce them.
    Hold,
    /// Unbind them here.
    Release,
    /// They are in place: announce them again.
    Announce,
    /// Ask the Redis at this address for its role, then decide again.
    AskRole(HostPort),
    /// Change nothing.
    Nothing,
}

/// A decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub act: Act,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    fn new(act: Act, reason: Reason) -> Decision {
        Decision { act, reason }
    }
}

/// The local Redis's role as last asked, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSeen {
    /// The Redis asked.
    pub addr: HostPort,
    /// What it said.
    pub role: Role,
    /// When it said it.
    pub at: Instant,
}

/// Early claim, as the daemon remembers it per master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Early {
    /// Nothing going on.
    #[default]
    Idle,
    /// Polling the local replica that the leader selected.
    Watching {
        /// The replica.
        replica: HostPort,
    },
    /// The local replica reported role:master and the VIPs were claimed for it.
    Claimed {
        /// The replica.
        replica: HostPort,
        /// Hold against older sentinel answers until then.
        until: Instant,
        /// The newest epoch the sentinels reported at the claim.
        epoch: u64,
    },
}

impl Early {
    /// Whether a report that `replica` now says role:master still counts: only while the watch
    /// for that very replica runs. A failover abort or a later selection ended it, and a report
    /// already on its way must not claim after that.
    pub fn promotion_counts(&self, replica: &HostPort) -> bool {
        matches!(self, Early::Watching { replica: r } if r == replica)
    }
}

/// What the daemon remembers of one master between decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Early claim state.
    pub early: Early,
    /// When the VIPs were last announced.
    pub last_announce: Option<Instant>,
    /// The leader chose a replica on another host, and the failover has not ended or aborted.
    pub failover_elsewhere: Option<HostPort>,
    /// Writes on this host's Redis are paused for a failover toward another host.
    pub fence: Option<Fence>,
}

/// A pause of this host's Redis during a failover toward another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The Redis paused.
    pub redis: HostPort,
    /// The replica the leader chose.
    pub toward: HostPort,
    /// When the pause runs out by itself.
    pub until: Instant,
}

/// How long writes stay paused at most when the leader chose another host's replica: long enough
/// for the sentinels to agree on the new master (a hello period or two), short enough that an
/// aborted failover that vipctl missed costs seconds, not minutes.
pub const FENCE_BOUND: Duration = Duration::from_secs(10);

/// The leader chose `chosen` (not this host's) for promotion while the sentinels name this host's
/// Redis as the master: from now on every write it acknowledges is lost when it resyncs from the
/// new master, so it must acknowledge none. Returns the Redis to pause.
pub fn fence(f: &Facts<'_>, memory: &Memory, chosen: &Locality) -> Option<HostPort> {
    if *chosen != Locality::Elsewhere || f.locality != Locality::Here || memory.fence.is_some() {
        return None;
    }
    f.weighed.master().cloned()
}

/// A fenced Redis becomes a replica of the new master as soon as a majority of the sentinels
/// agree on that master at the newest epoch, instead of staying a writable master until Sentinel
/// converts it (~10 s later). Returns (the local Redis, the new master).
pub fn demote(f: &Facts<'_>, memory: &Memory) -> Option<(HostPort, HostPort)> {
    let fence = memory.fence.as_ref()?;
    let w = f.weighed;
    match &w.verdict {
        Verdict::Master { addr, agreeing, .. }
            if f.locality == Locality::Elsewhere && *agreeing * 2 > w.configured && f.now < fence.until =>
        {
            Some((fence.redis.clone(), addr.clone()))
        }
        _ => None,
    }
}

/// The daemon's settings that bear on decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `[watch] minority_timeout_ms`, when set.
    pub minority_timeout: Option<Duration>,
    /// When neither the config nor the sentinels say.
    pub minority_default: Duration,
    /// `[watch] announce_refresh_ms` (zero: off).
    pub announce_refresh: Duration,
    /// How old a local role answer may be and still count.
    pub role_fresh_for: Duration,
}

impl Settings {
    /// The minority timeout in force: configured, else the smallest down-after the sentinels
    /// report (capped), else the default.
    pub fn minority_timeout(&self, weighed: &Weighed) -> Duration {
        self.minority_timeout
            .or(weighed.down_after.map(|d| d.min(MINORITY_TIMEOUT_CAP)))
            .unwrap_or(self.minority_default)
    }
}

/// Everything the daemon knows about one master at one moment.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The master's config.
    pub master: &'a Master,
    /// Its sentinels' answers, weighed.
    pub weighed: &'a Weighed,
    /// Whether the verdict's master is this host (`Unknown` when there is no verdict).
    pub locality: Locality,
    /// This host's interfaces and addresses.
    pub host: &'a HostState,
    /// Every configured VIP (never counted as this host's own address).
    pub managed: &'a [IpAddr],
    /// The local Redis's role, when asked.
    pub role: Option<&'a RoleSeen>,
    /// Settings.
    pub settings: Settings,
    /// When the daemon started: the minority clock of a master that never had a majority.
    pub started: Instant,
    /// Now.
    pub now: Instant,
}

impl Facts<'_> {
    /// Whether any of the master's VIPs is bound here.
    pub fn holding(&self) -> bool {
        self.master.vips.iter().any(|v| self.host.bound(v.addr).next().is_some())
    }

    /// What binding here would change (empty: in place), or why it cannot be done.
    fn hold_plan(&self) -> Result<Vec<Action>, String> {
        plan::plan(self.master, Want::Hold, self.host, self.managed).map_err(|e| e.to_string())
    }

    fn fresh_role(&self, addr: &HostPort) -> Option<&Role> {
        self.role
            .filter(|r| &r.addr == addr && self.now.saturating_duration_since(r.at) <= self.settings.role_fresh_for)
            .map(|r| &r.role)
    }
}

/// The replica of an early claim that still holds: the sentinels have not caught up with the
/// promotion yet (no answer names this host, none is newer than the claim) and its grace lasts.
fn early_claim_holds<'m>(f: &Facts<'_>, memory: &'m Memory) -> Option<&'m HostPort> {
    match &memory.early {
        Early::Claimed { replica, until, epoch }
            if f.locality != Locality::Here && f.weighed.epoch() <= *epoch && f.now < *until =>
        {
            Some(replica)
        }
        _ => None,
    }
}

/// The daemon's decision for one master.
pub fn daemon(f: &Facts<'_>, memory: &mut Memory) -> Decision {
    let w = f.weighed;
    // An early claim holds against sentinels that have not caught up yet, within its grace.
    if let Some(replica) = early_claim_holds(f, memory) {
        let Early::Claimed { until, .. } = &memory.early else { unreachable!("early_claim_holds: Claimed") };
        let left_ms = until.saturating_duration_since(f.now).as_millis() as u64;
        let replica = replica.to_string();
        let placing = f.hold_plan().is_ok_and(|a| a.iter().any(Action::changes_addresses));
        let reason =
            if placing { Reason::EarlyClaim { replica } } else { Reason::EarlyClaimPending { replica, left_ms } };
        return hold(f, memory, reason, None);
    }
    if matches!(memory.early, Early::Claimed { .. }) {
        memory.early = Early::Idle;
    }
    let verdict_master = match &w.verdict {
        Verdict::Master { addr, epoch, .. } => Some((addr, *epoch)),
        _ => None,
    };
    match (&f.locality, verdict_master) {
        (Locality::Elsewhere, Some((addr, epoch))) => {
            release(f, Reason::NamedElsewhere { master: addr.to_string(), epoch })
        }
        // Gave the VIPs to the replica the leader chose: not back while that failover runs.
        (Locality::Here, Some(_)) if !f.holding() && memory.failover_elsewhere.is_some() => {
            let toward = memory.failover_elsewhere.as_ref().map(ToString::to_string).unwrap_or_default();
            Decision::new(Act::Nothing, Reason::FailoverElsewhere { toward })
        }
        (Locality::Here, Some((addr, epoch))) if w.majority() => {
            let reason =
                Reason::NamedHere { master: addr.to_string(), epoch, answered: w.answered, configured: w.configured };
            hold(f, memory, reason, Some(addr))
        }
        (Locality::Unknown(why), Some((addr, _))) if w.majority() => {
            Decision::new(Act::Nothing, Reason::Unresolved { host: addr.host.clone(), why: why.clone() })
        }
        _ if w.majority() => match &w.verdict {
            Verdict::Conflict { epoch } => Decision::new(Act::Nothing, Reason::SentinelsConflict { epoch: *epoch }),
            _ => Decision::new(Act::Nothing, Reason::NoMasterKnown { answered: w.answered, configured: w.configured }),
        },
        _ => minority(f),
    }
}

/// Without a majority: never claim; a holder lets go once the minority timeout has passed since
/// the last majority.
fn minority(f: &Facts<'_>) -> Decision {
    let w = f.weighed;
    if !f.holding() {
        return Decision::new(
            Act::Nothing,
            Reason::MinorityNotClaiming { answered: w.answered, configured: w.configured },
        );
    }
    let since_start = f.now.saturating_duration_since(f.started);
    let waited = w.minority_for(since_start);
    let timeout = f.settings.minority_timeout(w);
    let (waited_ms, timeout_ms) = (waited.as_millis() as u64, timeout.as_millis() as u64);
    let (answered, configured) = (w.answered, w.configured);
    if waited >= timeout {
        release(f, Reason::MinorityTimeout { answered, configured, waited_ms, timeout_ms })
    } else {
        Decision::new(Act::Nothing, Reason::MinorityHolding { answered, configured, waited_ms, timeout_ms })
    }
}

fn release(f: &Facts<'_>, reason: Reason) -> Decision {
    Decision::new(if f.holding() { Act::Release } else { Act::Nothing }, reason)
}

/// Wants the VIPs here: binds when something is missing (after the local Redis confirms, when
/// `serving` names it), re-announces when a refresh is due.
fn hold(f: &Facts<'_>, memory: &Memory, reason: Reason, serving: Option<&MasterAddr>) -> Decision {
    let actions = match f.hold_plan() {
        Ok(a) => a,
        Err(error) => return Decision::new(Act::Nothing, Reason::Unplaceable { error }),
    };
    if actions.iter().any(Action::changes_addresses) {
        if let Some(addr) = serving {
            match f.fresh_role(addr) {
                None => {
                    return Decision::new(
                        Act::AskRole(addr.clone()),
                        Reason::AskingLocalRedis { redis: addr.to_string() },
                    );
                }
                Some(role) if role.is_not_master() => {
                    return Decision::new(
                        Act::Nothing,
                        Reason::LocalRedisNotMaster { redis: addr.to_string(), role: role.to_string() },
                    );
                }
                Some(_) => {}
            }
        }
        return Decision::new(Act::Hold, reason);
    }
    let refresh = f.settings.announce_refresh;
    if !refresh.is_zero() && memory.last_announce.is_none_or(|t| f.now.saturating_duration_since(t) >= refresh) {
        return Decision::new(Act::Announce, Reason::Refresh);
    }
    Decision::new(Act::Nothing, reason)
}

/// The daemon's answer to another host claiming one of the master's held VIPs (`claimant`: its
/// MAC). Defend by re-announcing, unless there is positive evidence that the claimant should have
/// it; ask the local Redis first when its role is not fresh.
pub fn conflict(f: &Facts<'_>, memory: &Memory, claimant: &str) -> Decision {
    let claimant = claimant.to_string();
    if !f.holding() {
        return Decision::new(Act::Nothing, Reason::Yield { claimant, evidence: "the VIPs are not held here".into() });
    }
    if let Some(replica) = &memory.failover_elsewhere {
        let evidence = format!("the leader chose {replica}, a replica on another host");
        return Decision::new(Act::Release, Reason::Yield { claimant, evidence });
    }
    // Promoted by the leader, ahead of the sentinels' answers: the claimant is the old master (or a
    // stray), whatever those still say.
    if let Some(replica) = early_claim_holds(f, memory) {
        let role = format!("{replica}, promoted by the leader; early claim ahead of the sentinels");
        return Decision::new(Act::Announce, Reason::Defend { claimant, role });
    }
    if f.locality == Locality::Elsewhere
        && let Some(addr) = f.weighed.master()
    {
        let evidence = format!("the sentinels name {addr} (epoch {})", f.weighed.epoch());
        return Decision::new(Act::Release, Reason::Yield { claimant, evidence });
    }

    let Some(serving) = f.weighed.master().filter(|_| f.locality == Locality::Here) else {
        // Holding without a verdict naming this host (minority, early claim): nothing to ask.
        return Decision::new(Act::Announce, Reason::Defend { claimant, role: "not asked".into() });
    };
    match f.fresh_role(serving) {
        None => Decision::new(Act::AskRole(serving.clone()), Reason::AskingLocalRedis { redis: serving.to_string() }),
        Some(role) if role.is_not_master() => {
            let evidence = format!("the Redis here at {serving} is {role}");
            Decision::new(Act::Release, Reason::Yield { claimant, evidence })
        }
        Some(role) => Decision::new(Act::Announce, Reason::Defend { claimant, role: role.to_string() }),
    }
}

/// Why a short-lived command refuses to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A retry may succeed (exit 1); otherwise exit 2.
    pub retry: bool,
    /// Why.
    pub reason: Reason,
    /// A sentence for the operator: what failed and what to do.
    pub message: String,
}

/// Whether the hook has heard enough to decide, before every sentinel answered.
///
/// It has when every sentinel answered (or failed), or when a majority answered and the newest of
/// their answers names the very master of the hook's own arguments. That is safe: the arguments
/// are the calling sentinel's config at the call, the majority's newest answer agrees with it, and
/// a config newer than both can only come from a later failover, which makes every sentinel call
/// the hook again once it learns of it; those calls queue behind this one on the master's lock and
/// then act on the newer config. A sentinel that is cut off is never waited for.
pub fn hook_ready(weighed: &Weighed, all_in: bool, to: &HostPort) -> bool {
    all_in || (weighed.majority() && weighed.master() == Some(to))
}

/// Whom the hook compares with this host's addresses: the newest sentinel answer, or its own
/// arguments when no sentinels are configured.
pub fn hook_target(weighed: Option<&Weighed>, to: &HostPort) -> Result<(HostPort, Option<Reason>), Refusal> {
    let Some(w) = weighed else {
        return Ok((to.clone(), Some(Reason::HookArguments { to: to.to_string() })));
    };
    match &w.verdict {
        Verdict::Master { addr, .. } => Ok((addr.clone(), None)),
        _ if w.answered == 0 => Err(Refusal {
            retry: true,
            reason: Reason::NoSentinelAnswered { configured: w.configured },
            message: format!(
                "none of the {} sentinels answered; not acting on arguments that may be hours old (Sentinel retries the hook)",
                w.configured
            ),
        }),
        Verdict::Conflict { epoch } => Err(Refusal {
            retry: true,
            reason: Reason::SentinelsConflict { epoch: *epoch },
            message: format!("the sentinels disagree ({}); not acting, retry", w.summary()),
        }),
        Verdict::NoMaster => Err(Refusal {
            retry: w.answered < w.configured,
            reason: Reason::NoMasterKnown { answered: w.answered, configured: w.configured },
            message: format!(
                "the sentinels that answered do not monitor this master ({}); check `sentinels` in the config",
                w.summary()
            ),
        }),
    }
}

/// The hook's decision once it knows whether the target is this host. Claiming needs a majority
/// of the sentinels (as in the daemon); releasing never waits for one.
pub fn hook(weighed: Option<&Weighed>, target: &HostPort, locality: &Locality) -> Result<Decision, Refusal> {
    match locality {
        Locality::Elsewhere => Ok(Decision::new(
            Act::Release,
            Reason::NamedElsewhere { master: target.to_string(), epoch: weighed.map_or(0, Weighed::epoch) },
        )),
        Locality::Here => match weighed {
            None => Ok(Decision::new(Act::Hold, Reason::HookArguments { to: target.to_string() })),
            Some(w) if w.majority() => Ok(Decision::new(
                Act::Hold,
                Reason::NamedHere {
                    master: target.to_string(),
                    epoch: w.epoch(),
                    answered: w.answered,
                    configured: w.configured,
                },
            )),
            Some(w) => Err(Refusal {
                retry: true,
                reason: Reason::MinorityNotClaiming { answered: w.answered, configured: w.configured },
                message: format!(
                    "only {} of {} sentinels answered: not claiming without a majority (Sentinel retries the hook)",
                    w.answered, w.configured
                ),
            }),
        },
        Locality::Unknown(why) => Err(Refusal {
            retry: false,
            reason: Reason::Unresolved { host: target.host.clone(), why: why.clone() },
            message: why.clone(),
        }),
    }
}

/// `vipctl claim` / `vipctl release`: what a person asked for, unless the sentinels contradict a
/// claim (which would put the VIPs on two hosts) and `force` is not given. `locality` is that of
/// the master the sentinels name, when they name one.
pub fn by_hand(
    want: Want,
    weighed: Option<&Weighed>,
    locality: Option<&Locality>,
    force: bool,
) -> Result<Decision, Refusal> {
    let act = match want {
        Want::Hold => Act::Hold,
        Want::Release => Act::Release,
    };
    match (want, weighed.and_then(Weighed::master), locality) {
        (Want::Hold, Some(addr), Some(Locality::Elsewhere)) if force => {
            Ok(Decision::new(act, Reason::Forced { master: addr.to_string() }))
        }
        (Want::Hold, Some(addr), Some(Locality::Elsewhere)) => Err(Refusal {
            retry: false,
            reason: Reason::NamedElsewhere { master: addr.to_string(), epoch: weighed.map_or(0, Weighed::epoch) },
            message: format!(
                "sentinels say the master is {addr} ({}), not this host: claiming here would put the VIP on two hosts; use --force to claim anyway",
                weighed.map(Weighed::summary).unwrap_or_default()
            ),
        }),
        (Want::Hold, Some(addr), Some(Locality::Unknown(why))) if !force => Err(Refusal {
            retry: true,
            reason: Reason::Unresolved { host: addr.host.clone(), why: why.clone() },
            message: format!("cannot tell whether {addr} is this host: {why}; use --force to claim anyway"),
        }),
        _ => Ok(Decision::new(act, Reason::ByHand)),
    }
}

#[cfg(test)]
mod tests;
