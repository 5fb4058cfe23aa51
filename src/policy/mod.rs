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
//! - No single voice moves anything. An event from one sentinel is a reason to ask again; what it
//!   tells of a failover in progress is weighed by the daemon's core (`daemon::core::failover`), and
//!   only evidence no sentinel can forge reaches these rules as [`Memory::elsewhere`]: the replica
//!   the leader chose, one a majority of the sentinels list, reporting role:master itself.
//! - A claimant is yielded to only on such evidence: the sentinels' newest answer names another
//!   master, the chosen replica reports role:master, or the local Redis is a replica or gone. A
//!   timeout is no evidence (a Redis forking for BGSAVE answers late).

use std::collections::BTreeMap;
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

pub mod delivery;
pub mod fail_fast;
mod hook;
mod reason;

pub use hook::{Refusal, by_hand, hook, hook_ready, hook_target};
pub use reason::Reason;

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
    /// The smallest `failover-timeout` any sentinel reported, fresh or not.
    pub failover_timeout: Option<Duration>,
}

impl Weighed {
    /// How long the master has been without a majority: since the last round that had one, and
    /// never longer than `since_start` (how long the asker has been asking).
    pub fn minority_for(&self, since_start: Duration) -> Duration {
        self.majority_age.map_or(since_start, |age| age.min(since_start))
    }

    /// False when the verdict rests on one sentinel's answer alone, others configured: a newer
    /// epoch that only one sentinel reports may be Sentinel's newest decision (the leader of a
    /// failover names the promoted replica first), or a lie. It moves nothing by itself.
    pub fn corroborated(&self) -> bool {
        match &self.verdict {
            Verdict::Master { agreeing, .. } => *agreeing >= 2 || self.configured <= 1,
            _ => true,
        }
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
            // At the newest epoch the master most of them name wins; a tie trusts nobody. So one
            // sentinel that repeats the newest epoch with another master cannot veto the others.
            let newest: Vec<&MasterAddr> = masters.iter().filter(|(_, e)| *e == top).map(|(a, _)| *a).collect();
            let count = |a: &MasterAddr| newest.iter().filter(|b| **b == a).count();
            let best = newest.iter().copied().max_by_key(|a| count(a)).expect("at least one at the top epoch");
            if newest.iter().any(|a| *a != best && count(a) == count(best)) {
                Verdict::Conflict { epoch: top }
            } else {
                Verdict::Master { addr: best.clone(), epoch: top, agreeing: count(best) }
            }
        }
    };
    let need = reports.len() / 2 + 1;
    // Ages of the last successful answers, newest first: the `need`-th one completed the most
    // recent majority. A sentinel known to be down still answered at that time.
    let mut ages: Vec<Duration> = reports.iter().filter_map(|r| r.last.as_ref().map(|(_, age)| *age)).collect();
    ages.sort_unstable();
    // The smallest, so that no single sentinel can stretch a bound by reporting a huge value.
    let smallest = |pick: fn(&Answer) -> Option<u64>| {
        reports.iter().filter_map(|r| r.last.as_ref().and_then(|(a, _)| pick(a))).min().map(Duration::from_millis)
    };
    let down_after = smallest(|a| match a {
        Answer::Master { down_after_ms, .. } => *down_after_ms,
        Answer::Unknown => None,
    });
    let failover_timeout = smallest(|a| match a {
        Answer::Master { failover_timeout_ms, .. } => *failover_timeout_ms,
        Answer::Unknown => None,
    });
    Weighed {
        verdict,
        answered: fresh.len(),
        configured: reports.len(),
        majority_age: ages.get(need.saturating_sub(1)).copied(),
        down_after,
        failover_timeout,
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
    /// Whether a write fence ([`crate::fence`]) is set there; `None`: not asked, or not told.
    pub fenced: Option<bool>,
    /// When it said it.
    pub at: Instant,
}

/// Early claim, as the daemon remembers it per master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Early {
    /// Nothing going on.
    #[default]
    Idle,
    /// Polling the local replica that the leader selected (one a majority of the sentinels list).
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

/// A failover toward another host, proven: the replica the leader chose (one a majority of the
/// sentinels list) reported role:master itself, which no sentinel can forge. This host lets go of
/// the VIPs and does not claim them back while it lasts, though the sentinels may still name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    /// The promoted replica.
    pub replica: HostPort,
    /// When it reported role:master.
    pub since: Instant,
    /// The newest config epoch the sentinels reported then.
    pub epoch: u64,
    /// When it ends at the latest: Sentinel's failover timeout after it began.
    pub until: Instant,
}

/// What the daemon remembers of one master between decisions. Only the daemon's core changes it;
/// the rules here read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Early claim state.
    pub early: Early,
    /// When the VIPs were last announced.
    pub last_announce: Option<Instant>,
    /// A proven failover toward another host.
    pub elsewhere: Option<Elsewhere>,
    /// Fail-fast asked for a failover of the local Redis, which died: the VIPs are not served
    /// from this host until the sentinels settle it (a Redis restarted meanwhile may be empty).
    pub failing_over: bool,
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
    /// What Redis instances said of their role when last asked, by address.
    pub roles: &'a BTreeMap<HostPort, RoleSeen>,
    /// The verdict's master is a replica that a majority of the sentinels list: it may be asked.
    pub named_vouched: bool,
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

    /// The local Redis's role at `addr`, when asked recently enough to count.
    pub fn fresh_role(&self, addr: &HostPort) -> Option<&Role> {
        self.roles
            .get(addr)
            .filter(|r| self.now.saturating_duration_since(r.at) <= self.settings.role_fresh_for)
            .map(|r| &r.role)
    }
}

/// The replica of an early claim that still holds: the sentinels have not caught up with the
/// promotion yet (no answer names this host, none is newer than the claim) and its grace lasts.
pub fn early_claim_holds<'m>(f: &Facts<'_>, memory: &'m Memory) -> Option<&'m HostPort> {
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
pub fn daemon(f: &Facts<'_>, memory: &Memory) -> Decision {
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
    let verdict_master = match &w.verdict {
        Verdict::Master { addr, epoch, .. } => Some((addr, *epoch)),
        _ => None,
    };
    if let (Locality::Elsewhere, Some((addr, epoch))) = (&f.locality, verdict_master) {
        let reason = Reason::NamedElsewhere { master: addr.to_string(), epoch };
        return match uncorroborated(f, addr) {
            None => release(f, reason),
            Some(d) => d,
        };
    }
    // The replica the leader chose reports role:master itself: the failover happened, whatever the
    // sentinels still say. Let go at once (a router keeps the older route, so the outage ends with
    // this withdrawal), and do not claim back while that failover runs.
    if let Some(e) = &memory.elsewhere {
        let replica = e.replica.to_string();
        return if f.holding() {
            Decision::new(Act::Release, Reason::PromotedElsewhere { replica })
        } else {
            Decision::new(Act::Nothing, Reason::FailoverElsewhere { toward: replica })
        };
    }
    if memory.failing_over && f.locality == Locality::Here {
        let redis = verdict_master.map_or_else(String::new, |(a, _)| a.to_string());
        let act = if f.holding() { Act::Release } else { Act::Nothing };
        return Decision::new(act, Reason::FailingOver { redis });
    }
    match (&f.locality, verdict_master) {
        // A dead Redis behind a held VIP keeps it (routed too) until the promotion, just above: its
        // host refuses connections at once, while an address that leads nowhere leaves clients to
        // time out (a router rate-limits its unreachables), which costs more than the wait.
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

/// A verdict naming another host that rests on one sentinel's answer: let go only once that
/// master itself says it is one (asked when a majority list it as a replica, so that a liar cannot
/// make vipctl send credentials anywhere). `None` when the verdict is corroborated, or when that
/// master says it is one.
fn uncorroborated(f: &Facts<'_>, addr: &MasterAddr) -> Option<Decision> {
    if f.weighed.corroborated() || !f.holding() {
        return None;
    }
    let reason = Reason::Uncorroborated { master: addr.to_string(), epoch: f.weighed.epoch() };
    match f.fresh_role(addr) {
        Some(Role::Master) => None,
        None if f.named_vouched => Some(Decision::new(Act::AskRole(addr.clone()), reason)),
        _ => Some(Decision::new(Act::Nothing, reason)),
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
    // Only evidence no single sentinel can forge counts: an event naming another host's replica is
    // a reason to look, never to give the VIPs away.
    if let Some(e) = &memory.elsewhere {
        let evidence = format!("{}, the replica the leader chose, reports role:master", e.replica);
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
        if let Some(d) = uncorroborated(f, addr) {
            return match d.act {
                Act::AskRole(_) => d,
                _ => Decision::new(Act::Announce, Reason::Defend { claimant, role: d.reason.to_string() }),
            };
        }
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

#[cfg(test)]
mod tests;
