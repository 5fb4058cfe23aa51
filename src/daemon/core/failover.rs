//! What sentinels tell of a failover in progress, weighed so that no single voice steers vipctl.
//!
//! The evidence rules, each with its typed reason:
//! - An event counts only from a sentinel configured for its master, and only when it names a
//!   replica (host and port) that a majority of the master's sentinels list ([`Core::vouched`]).
//!   An event naming an unlisted replica waits briefly for fresh replica lists, then is dropped.
//!   Every event is a reason to ask all sentinels again.
//! - One sentinel's selection of another host's replica ([`Selection`]) fences this host's Redis
//!   while the majority still names it master: a lossless switchover needs that. Resting on one
//!   voice, the fence lasts [`single_voice_bound`] at most, well below `down-after-milliseconds`;
//!   the fence refuses writes and stalls nothing ([`crate::fence`]), so Sentinel never sees a
//!   healthy master as down. Evidence no sentinel can forge confirms it for [`FENCE_BOUND`]: the
//!   chosen replica itself reporting role:master (polled here), or a majority naming a newer epoch.
//!   It is lifted by the sentinel that started the failover (its abort), by a majority naming this
//!   host at a newer epoch, or by its bound; it turns into a demotion when a majority names the new
//!   master at a newer epoch.
//! - The chosen replica reporting role:master is also what makes the holder let go at once and stay
//!   out ([`policy::Elsewhere`]), until a majority names another master or this host at a newer
//!   epoch, the promoted replica is seen to be no master any more, or the failover timeout passes.
//! - Early claim polls only a vouched replica, and credentials go nowhere else.
//! - A sentinel whose selection ends without any proof (expired, aborted, replaced by another) is
//!   not believed again for that master for twice the failover timeout: Sentinel itself starts no
//!   new failover of a master sooner, so only a liar loses by it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Core, Effect, Metric, Now};
use crate::config::{HostPort, SentinelAddr};
use crate::fence::Step;
use crate::local_redis::Role;
use crate::policy::{self, Early, Elsewhere, Locality, Reason, RoleSeen, Verdict, Weighed};
use crate::record::{self, Actor, Change, Record};
use crate::sentinel::events;

/// How long a fence lasts once evidence no sentinel can forge confirms the failover: long enough
/// for the sentinels to agree on the new master (a hello period or two), short enough that a
/// failover vipctl lost track of costs seconds of refused writes, not minutes.
pub const FENCE_BOUND: Duration = Duration::from_secs(10);
/// How long a selection is watched for its promotion.
pub const SELECTION_WINDOW: Duration = Duration::from_secs(15);
/// How long an event naming a replica that the sentinels do not (yet) list waits for their lists.
const PENDING_WINDOW: Duration = Duration::from_secs(1);
/// How often a promoted replica is asked again while the sentinels still name this host.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Sentinel's default `failover-timeout`, when no sentinel reported one.
const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a fence may last on one sentinel's word: a quarter of the smallest
/// `down-after-milliseconds` the sentinels report, between 100 ms and 1 s (250 ms when none did).
/// The leader sends `SLAVEOF NO ONE` one timer tick (≤ ~200 ms) after `+selected-slave`, and the
/// chosen replica's own role:master then confirms the fence in a millisecond.
pub fn single_voice_bound(w: &Weighed) -> Duration {
    w.down_after
        .map_or(Duration::from_millis(250), |d| (d / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

fn failover_timeout(w: &Weighed) -> Duration {
    w.failover_timeout.unwrap_or(DEFAULT_FAILOVER_TIMEOUT)
}

/// One sentinel's word that it leads a failover toward `replica`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selection {
    /// The replica chosen (one a majority lists).
    pub replica: HostPort,
    /// It is this host's.
    pub here: bool,
    /// When the word came.
    pub at: Instant,
    /// It has fenced this host's Redis once (it may not again on its own word).
    pub fenced: bool,
    /// The replica reported role:master: proven.
    pub promoted: bool,
}

/// The write fence on this host's Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fence {
    /// The Redis fenced.
    pub redis: HostPort,
    /// The replica the failover goes to.
    pub toward: HostPort,
    /// The sentinel whose selection placed it.
    pub by: SentinelAddr,
    /// When it was placed.
    pub since: Instant,
    /// The newest epoch the sentinels reported then.
    pub epoch: u64,
    /// When it ends unless confirmed, lifted or turned into a demotion.
    pub until: Instant,
    /// Evidence no sentinel can forge backs it.
    pub confirmed: bool,
}

/// What the core follows of failovers of one master.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The latest selection of each sentinel.
    pub selections: BTreeMap<SentinelAddr, Selection>,
    /// Events naming a replica not (yet) listed by a majority: (sentinel, replica, when).
    pub pending: Vec<(SentinelAddr, HostPort, Instant)>,
    /// The fence on this host's Redis, when one is placed.
    pub fence: Option<Fence>,
    /// Replicas being polled for role:master.
    pub watching: BTreeSet<HostPort>,
    /// Sentinels not believed for this master until then.
    pub distrusted: BTreeMap<SentinelAddr, Instant>,
    /// When the promoted replica is asked again, while the sentinels still name this host.
    pub recheck_at: Option<Instant>,
    /// This host's Redis was asked for its role since the daemon started (a fence an earlier run
    /// left behind is lifted then).
    pub probed: bool,
}

/// Event kinds that name the replica a leader chose.
const SELECTS: &[&str] =
    &["+selected-slave", "+failover-state-send-slaveof-noone", "+failover-state-wait-promotion", "+promoted-slave"];
/// Event kinds that end a sentinel's failover normally.
const ENDS: &[&str] = &["+failover-end", "+failover-end-for-timeout", "+switch-master"];

impl Core {
    /// An event from `sentinel`: a reason to ask every sentinel of its masters again, and news of a
    /// failover for the masters this sentinel is configured for.
    pub(super) fn event(&mut self, sentinel: &SentinelAddr, event: events::Event, now: Instant) {
        tracing::debug!("event {} from sentinel {sentinel} about {:?} {:?}", event.kind, event.master, event.instance);
        let served = self.served_by(sentinel);
        let targets: Vec<String> = match &event.master {
            Some(m) if served.contains(m) => vec![m.clone()],
            Some(m) => {
                tracing::debug!("ignoring {} about `{m}` from sentinel {sentinel}: not configured for it", event.kind);
                return;
            }
            None => served,
        };
        let mut ask: BTreeSet<SentinelAddr> = BTreeSet::new();
        for m in &targets {
            ask.extend(self.config.masters[m].sentinels.iter().cloned());
        }
        let replicas = SELECTS.contains(&event.kind.as_str()) || event.kind.contains("slave");
        self.effects.push(Effect::Nudge { sentinels: ask.into_iter().collect(), replicas });
        let what = format!("event {} from sentinel {sentinel}", event.kind);
        for m in &targets {
            self.observe(m, sentinel, &event, now);
            self.masters.get_mut(m).expect("configured").last_event = Some((what.clone(), now));
            self.decide(m, &what, now);
        }
    }

    fn observe(&mut self, name: &str, sentinel: &SentinelAddr, event: &events::Event, now: Instant) {
        let kind = event.kind.as_str();
        if kind.starts_with("-failover-abort") {
            self.aborted(name, sentinel, kind, now);
        } else if ENDS.contains(&kind) {
            self.end_selection(name, sentinel, now);
        } else if SELECTS.contains(&kind)
            && let Some((host, port)) = event.instance.clone()
        {
            let replica = HostPort { host, port };
            let st = self.masters.get_mut(name).expect("configured");
            if st.failover.distrusted.get(sentinel).is_some_and(|until| now < *until) {
                tracing::info!(
                    "master `{name}`: not believing {kind} from sentinel {sentinel}: its last selection came to nothing"
                );
                return;
            }
            st.failover.pending.retain(|(s, _, _)| s != sentinel);
            st.failover.pending.push((sentinel.clone(), replica, now));
            self.retry_pending(name, now);
        }
    }

    /// Accepts the pending events whose replica a majority now lists; drops old ones.
    pub(super) fn retry_pending(&mut self, name: &str, now: Instant) {
        let master = self.config.masters[name].clone();
        let pending = std::mem::take(&mut self.masters.get_mut(name).expect("configured").failover.pending);
        let mut keep = Vec::new();
        for (sentinel, replica, at) in pending {
            if !self.vouched(&master, &replica) {
                if now.saturating_duration_since(at) < PENDING_WINDOW {
                    keep.push((sentinel, replica, at));
                } else {
                    tracing::warn!(
                        "master `{name}`: sentinel {sentinel} named {replica} for promotion, but a majority of the \
                         sentinels do not list it as a replica: ignored"
                    );
                }
                continue;
            }
            match self.locality(&replica.host.clone(), now) {
                Locality::Unknown(_) if now.saturating_duration_since(at) < PENDING_WINDOW => {
                    keep.push((sentinel, replica, at));
                }
                Locality::Unknown(why) => tracing::warn!("master `{name}`: cannot place {replica}: {why}; ignored"),
                l => self.accept(name, &sentinel, replica, l == Locality::Here, now),
            }
        }
        self.masters.get_mut(name).expect("configured").failover.pending.extend(keep);
    }

    fn accept(&mut self, name: &str, sentinel: &SentinelAddr, replica: HostPort, here: bool, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.failover.selections.get(sentinel).is_some_and(|s| s.replica == replica) {
            return;
        }
        if st.failover.selections.contains_key(sentinel)
            || st.failover.distrusted.get(sentinel).is_some_and(|t| now < *t)
        {
            // A leader chooses once per failover: a second choice is no failover Sentinel runs.
            tracing::warn!(
                "master `{name}`: sentinel {sentinel} chose {replica} in the middle of its failover: ignored"
            );
            self.end_selection(name, sentinel, now);
            return;
        }
        st.failover.selections.insert(
            sentinel.clone(),
            Selection { replica: replica.clone(), here, at: now, fenced: false, promoted: false },
        );
        if here {
            // This host's replica is chosen: a failover toward another host is not under way.
            st.memory.elsewhere = None;
            if self.settings.early_claim && !self.settings.dry_run && st.memory.early == Early::Idle {
                tracing::info!(
                    "early claim for `{name}`: the leader selected this host's replica {replica}; watching it"
                );
                st.memory.early = Early::Watching { replica: replica.clone() };
                self.watch(name, replica);
            }
        }
    }

    /// `sentinel` ended its failover normally, or its selection is replaced or timed out.
    fn end_selection(&mut self, name: &str, sentinel: &SentinelAddr, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        let Some(sel) = st.failover.selections.remove(sentinel) else { return };
        if !sel.promoted {
            let w = st.weighed.as_ref().map_or(DEFAULT_FAILOVER_TIMEOUT, failover_timeout);
            st.failover.distrusted.insert(sentinel.clone(), now + w * 2);
            if st.failover.fence.as_ref().is_some_and(|f| f.by == *sentinel && !f.confirmed) {
                let why = format!(
                    "sentinel {sentinel}, on whose word alone it rested, ended its failover without a promotion"
                );
                self.fence_loses(name, sentinel, why);
            }
        }
        let st = self.masters.get_mut(name).expect("configured");
        let still_chosen = st.failover.selections.values().any(|s| s.replica == sel.replica);
        if !still_chosen && matches!(&st.memory.early, Early::Watching { replica } if *replica == sel.replica) {
            st.memory.early = Early::Idle;
        }
        self.unwatch_unless_chosen(name, &sel.replica);
    }

    /// `sentinel` aborted its failover: what rested on its word ends.
    fn aborted(&mut self, name: &str, sentinel: &SentinelAddr, kind: &str, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        st.failover.pending.retain(|(s, _, _)| s != sentinel);
        let replica = st.failover.selections.get(sentinel).map(|s| s.replica.clone());
        // Another sentinel choosing the same replica (the leader, whose events this one relays)
        // keeps the failover on.
        let others = |r: &HostPort| st.failover.selections.iter().any(|(s, sel)| s != sentinel && sel.replica == *r);
        if let Some(r) = &replica
            && !others(r)
            && matches!(&st.memory.early, Early::Claimed { replica, .. } if replica == r)
        {
            // The failover is off: an early claim must not hold out any longer.
            st.memory.early = Early::Idle;
        }
        if st.failover.fence.as_ref().is_some_and(|f| f.by == *sentinel) {
            let why = format!("the failover aborted ({kind} from sentinel {sentinel}, which started it)");
            self.fence_loses(name, sentinel, why);
        }
        self.end_selection(name, sentinel, now);
    }

    fn watch(&mut self, name: &str, replica: HostPort) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.failover.watching.insert(replica.clone()) {
            self.effects.push(Effect::Watch { master: name.to_string(), replica });
        }
    }

    fn unwatch_unless_chosen(&mut self, name: &str, replica: &HostPort) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.failover.selections.values().any(|s| s.replica == *replica) {
            return;
        }
        if st.failover.watching.remove(replica) {
            self.effects.push(Effect::Unwatch { master: name.to_string(), replica: replica.clone() });
        }
    }

    /// A watched replica reports role:master: evidence no sentinel can forge.
    pub(super) fn promoted(&mut self, name: &str, replica: HostPort, polls: u32, now: Instant) {
        let Some(st) = self.masters.get_mut(name) else { return };
        if !st.failover.watching.remove(&replica) {
            tracing::info!("master `{name}`: {replica} reports role:master, but its watch has ended");
            return;
        }
        let mut here = None;
        for sel in st.failover.selections.values_mut().filter(|s| s.replica == replica) {
            sel.promoted = true;
            here = Some(sel.here);
        }
        let epoch = st.weighed.as_ref().map_or(0, Weighed::epoch);
        match here {
            None => {}
            Some(true) => {
                if !st.memory.early.promotion_counts(&replica) {
                    return;
                }
                st.memory.early = Early::Claimed { replica: replica.clone(), until: now + policy::EARLY_GRACE, epoch };
                let seen = RoleSeen { addr: replica.clone(), role: Role::Master, fenced: None, at: now };
                st.roles.insert(replica.clone(), seen);
                self.decide(name, &format!("early claim: {replica} reports role:master after {polls} polls"), now);
            }
            Some(false) => {
                let until = now + st.weighed.as_ref().map_or(DEFAULT_FAILOVER_TIMEOUT, failover_timeout);
                st.memory.elsewhere = Some(Elsewhere { replica: replica.clone(), since: now, epoch, until });
                st.failover.recheck_at = Some(now + RECHECK_EVERY);
                tracing::info!(
                    "master `{name}`: {replica}, chosen by the leader, reports role:master after {polls} polls"
                );
                self.decide(name, &format!("{replica} reports role:master"), now);
            }
        }
    }

    /// Selections and pending events that have outlived their windows.
    pub(super) fn expire_failover(&mut self, name: &str, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        let old: Vec<SentinelAddr> = st
            .failover
            .selections
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.at) >= SELECTION_WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        for s in old {
            self.end_selection(name, &s, now);
        }
        self.retry_pending(name, now);
    }

    /// Brings the failover state up to date with what the sentinels say now, before the VIP rule
    /// decides: the proven failover's end, the early claim's end, the fence, the watches.
    pub(super) fn update_failover(&mut self, name: &str, n: &Now) {
        let now = n.at;
        let w = &n.weighed;
        let verdict = match &w.verdict {
            Verdict::Master { addr, epoch, agreeing } => Some((addr.clone(), *epoch, *agreeing * 2 > w.configured)),
            _ => None,
        };
        let st = self.masters.get_mut(name).expect("configured");
        if let Some(e) = &st.memory.elsewhere {
            let newer = verdict.as_ref().is_some_and(|(_, epoch, agreed)| *agreed && *epoch > e.epoch);
            // Asked since the promotion (a recheck), not the poll that saw it.
            let not_master = st.roles.get(&e.replica).is_some_and(|r| r.at > e.since && r.role != Role::Master);
            let why = if now >= e.until {
                Some("the failover timeout passed".to_string())
            } else if newer {
                Some("a majority of the sentinels name a master at a newer epoch".to_string())
            } else if not_master && n.locality == Locality::Here && w.majority() {
                Some(format!("{} is no longer a master, and the sentinels still name this host", e.replica))
            } else {
                None
            };
            if let Some(why) = why {
                tracing::info!("master `{name}`: the failover toward {} is over: {why}", e.replica);
                st.memory.elsewhere = None;
                st.failover.recheck_at = None;
            } else if st.failover.recheck_at.is_some_and(|t| now >= t) {
                st.failover.recheck_at = Some(now + RECHECK_EVERY);
                if n.locality == Locality::Here {
                    let addr = e.replica.clone();
                    self.ask_role(name, addr);
                }
            }
        }
        let st = self.masters.get_mut(name).expect("configured");
        if matches!(st.memory.early, Early::Claimed { .. }) {
            let facts = n.facts(&self.managed, &st.roles, self.settings.policy, self.started);
            if policy::early_claim_holds(&facts, &st.memory).is_none() {
                st.memory.early = Early::Idle;
            }
        }
        self.fence_rules(name, n, verdict.as_ref());
        // The chosen replica on another host is watched while this host holds the VIPs or its
        // Redis is the master: its role:master is what confirms the fence and lets go of the VIPs.
        let st = self.masters.get_mut(name).expect("configured");
        let concerned = st.holding || n.locality == Locality::Here;
        let elsewhere: Vec<HostPort> =
            st.failover.selections.values().filter(|s| !s.here && !s.promoted).map(|s| s.replica.clone()).collect();
        if concerned {
            for r in elsewhere {
                self.watch(name, r);
            }
        }
        // A fence an earlier run left behind is lifted once no failover is under way.
        let st = self.masters.get_mut(name).expect("configured");
        if !st.failover.probed
            && n.locality == Locality::Here
            && w.majority()
            && let Some((addr, _, _)) = &verdict
        {
            st.failover.probed = true;
            self.ask_role(name, addr.clone());
        }
    }

    fn fence_rules(&mut self, name: &str, n: &Now, verdict: Option<&(HostPort, u64, bool)>) {
        let now = n.at;
        let w = &n.weighed;
        let st = self.masters.get_mut(name).expect("configured");
        let proven = st.memory.elsewhere.is_some();
        match st.failover.fence.clone() {
            None => {
                let Some((redis, _, _)) = verdict.filter(|_| n.locality == Locality::Here && w.majority()) else {
                    return;
                };
                let Some((by, sel)) = st.failover.selections.iter_mut().find(|(_, s)| !s.here && (proven || !s.fenced))
                else {
                    return;
                };
                sel.fenced = true;
                let bound = if proven { FENCE_BOUND } else { single_voice_bound(w) };
                let evidence = if proven {
                    format!("{} reports role:master", sel.replica)
                } else {
                    format!("the word of sentinel {by} alone")
                };
                let fence = Fence {
                    redis: redis.clone(),
                    toward: sel.replica.clone(),
                    by: by.clone(),
                    since: now,
                    epoch: w.epoch(),
                    until: now + bound,
                    confirmed: proven,
                };
                let reason = Reason::FenceWrites {
                    redis: redis.to_string(),
                    toward: fence.toward.to_string(),
                    bound_ms: bound.as_millis() as u64,
                    evidence,
                };
                st.failover.fence = Some(fence);
                self.effects.push(Effect::Metric(Metric::Fence { master: name.to_string() }));
                self.redis(name, redis.clone(), reason, vec![Step::Fence], true);
            }
            Some(f) => {
                match verdict {
                    Some((to, epoch, true)) if n.locality == Locality::Elsewhere && *epoch > f.epoch => {
                        // Replica first, then writes again: they then meet READONLY, never an ack.
                        st.failover.fence = None;
                        let reason = Reason::Demote { redis: f.redis.to_string(), to: to.to_string() };
                        self.redis(name, f.redis, reason, vec![Step::ReplicaOf(to.clone()), Step::Lift], false);
                    }
                    Some((_, epoch, _)) if n.locality == Locality::Here && w.majority() && *epoch > f.epoch => {
                        self.lift(name, format!("the sentinels name this host at a newer epoch ({epoch})"));
                    }
                    _ if now >= f.until => {
                        let why = if f.confirmed {
                            tracing::warn!(
                                "master `{name}`: the write fence ran out before a majority of the sentinels named a new master"
                            );
                            format!("it ran out ({} ms) before a majority named a new master", FENCE_BOUND.as_millis())
                        } else {
                            format!(
                                "it rested on the word of sentinel {} alone, and nothing confirmed it within {} ms",
                                f.by,
                                f.until.saturating_duration_since(f.since).as_millis()
                            )
                        };
                        self.lift(name, why);
                    }
                    _ if !f.confirmed && proven => {
                        let fence = st.failover.fence.as_mut().expect("matched");
                        fence.confirmed = true;
                        fence.until = fence.since + FENCE_BOUND;
                        let evidence =
                            format!("{} reports role:master", st.memory.elsewhere.as_ref().expect("proven").replica);
                        let reason = Reason::FenceConfirmed {
                            redis: f.redis.to_string(),
                            evidence,
                            bound_ms: FENCE_BOUND.as_millis() as u64,
                        };
                        let mut r = Record::new(record::Event::Fence, Actor::Watch, name, Change::None, &reason);
                        r.detail =
                            Some(format!("placed {} ms before", now.saturating_duration_since(f.since).as_millis()));
                        self.effects.push(Effect::Record(Box::new(r)));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The sentinel whose selection placed the fence takes its word back: another sentinel's live
    /// selection of a replica elsewhere (the same failover, seen through another sentinel) keeps
    /// the fence; otherwise it is lifted. Never a lift and a new fence at once: their steps could
    /// reach Redis in either order.
    fn fence_loses(&mut self, name: &str, sentinel: &SentinelAddr, why: String) {
        let st = self.masters.get_mut(name).expect("configured");
        let other = st.failover.selections.iter().find(|(s, sel)| *s != sentinel && !sel.here).map(|(s, _)| s.clone());
        match (other, st.failover.fence.as_mut()) {
            (Some(other), Some(f)) => {
                tracing::info!("master `{name}`: the fence stays on the word of sentinel {other} ({why})");
                f.by = other;
            }
            _ => self.lift(name, why),
        }
    }

    /// Lifts the fence on this host's Redis, if one is placed.
    fn lift(&mut self, name: &str, why: String) {
        let st = self.masters.get_mut(name).expect("configured");
        let Some(f) = st.failover.fence.take() else { return };
        let reason = Reason::LiftFence { redis: f.redis.to_string(), why };
        self.redis(name, f.redis, reason, vec![Step::Lift], false);
    }

    /// A fence mark found on this host's Redis while this run holds none and no failover is under
    /// way: left by an earlier run (a crash) or written into redis.conf by Sentinel's CONFIG REWRITE.
    pub(super) fn stale_fence(&mut self, name: &str, redis: HostPort) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.failover.fence.is_some() || !st.failover.selections.is_empty() {
            return;
        }
        let why = "a fence left behind by an earlier run, and no failover is under way".to_string();
        let reason = Reason::LiftFence { redis: redis.to_string(), why };
        self.redis(name, redis, reason, vec![Step::Lift], false);
    }

    fn redis(&mut self, name: &str, redis: HostPort, reason: Reason, steps: Vec<Step>, only_if_master: bool) {
        if self.settings.dry_run {
            tracing::info!("dry run: would {} on {redis} for `{name}`: {reason}", steps_text(&steps));
            return;
        }
        self.effects.push(Effect::Redis { master: name.to_string(), redis, reason, steps, only_if_master });
    }

    /// When the failover state wants to be looked at again.
    pub(super) fn failover_deadline(&self, name: &str) -> Option<Instant> {
        let st = &self.masters[name];
        let f = &st.failover;
        [
            f.fence.as_ref().map(|f| f.until),
            f.selections.values().map(|s| s.at + SELECTION_WINDOW).min(),
            f.pending.iter().map(|(_, _, at)| *at + PENDING_WINDOW).min(),
            st.memory.elsewhere.as_ref().map(|e| e.until),
            f.recheck_at.filter(|_| st.memory.elsewhere.is_some()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn steps_text(steps: &[Step]) -> String {
    steps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", then ")
}
