//! What sentinels tell of a failover in progress, weighed so that no single voice steers vipctl.
//!
//! The evidence rules, each with its typed reason (the fence's own are in [`super::fencing`]):
//! - An event counts only from a sentinel configured for its master, and only when it names a
//!   replica (host and port) that a majority of the master's sentinels list ([`Core::vouched`]).
//!   An event naming an unlisted replica waits briefly for fresh replica lists, then is dropped.
//!   Every event is a reason to ask all sentinels again.
//! - One sentinel's selection of another host's replica ([`Selection`]) fences this host's Redis
//!   briefly; the chosen replica itself reporting role:master (polled here) confirms it.
//! - That promotion is also what makes the holder let go at once and stay out
//!   ([`policy::Elsewhere`]), until a majority names another master or this host at a newer
//!   epoch, the promoted replica is seen to be no master any more, or the failover timeout passes.
//! - Early claim polls only a vouched replica, and credentials go nowhere else.
//! - A sentinel whose selection ends without any proof (expired, aborted, replaced by another) is
//!   not believed again for that master for twice the failover timeout: Sentinel itself starts no
//!   new failover of a master sooner, so only a liar loses by it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::fencing::Fence;
use super::{Core, Effect, Now};
use crate::config::{HostPort, SentinelAddr};
use crate::local_redis::Role;
use crate::policy::{self, Early, Elsewhere, Locality, RoleSeen, Verdict, Weighed};
use crate::sentinel::events;

/// How long a selection is watched for its promotion.
pub const SELECTION_WINDOW: Duration = Duration::from_secs(15);
/// How long an event naming a replica that the sentinels do not (yet) list waits for their lists.
const PENDING_WINDOW: Duration = Duration::from_secs(1);
/// How often a promoted replica is asked again while the sentinels still name this host.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Sentinel's default `failover-timeout`, when no sentinel reported one.
pub(super) const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);

pub(super) fn failover_timeout(w: &Weighed) -> Duration {
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

/// What the core follows of failovers of one master.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The latest selection of each sentinel.
    pub selections: BTreeMap<SentinelAddr, Selection>,
    /// Events naming a replica not (yet) listed by a majority: (sentinel, replica, when).
    pub pending: Vec<(SentinelAddr, HostPort, Instant)>,
    /// The fence on this host's Redis, when one is placed.
    pub fence: Option<Fence>,
    /// This host's Redis, as a majority last named it master while this host held the VIPs: the
    /// one to fence when the majority goes out of sight.
    pub local_master: Option<HostPort>,
    /// A fence mark a `ROLE` probe found on this Redis while this run held no fence.
    pub stale_mark: Option<HostPort>,
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
            if st.failover.fence.as_ref().is_some_and(|f| !f.confirmed) {
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
        if st.failover.fence.is_some() {
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
            tracing::info!("master `{name}`: no failover chooses {replica} any more; stopped watching it");
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

    /// When the failover state wants to be looked at again.
    pub(super) fn failover_deadline(&self, name: &str) -> Option<Instant> {
        let st = &self.masters[name];
        let f = &st.failover;
        [
            f.fence.as_ref().and_then(|f| f.until),
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
