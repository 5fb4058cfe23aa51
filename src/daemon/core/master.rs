//! One master as the core knows it, and the one decision per master per input: the failover state
//! is brought up to date, the VIP rule ([`policy::daemon`]) decides, and the decision becomes
//! effects. Also the answers that come back for a master: roles, carried-out jobs, conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::failover;
use super::hooks::HookWait;
use super::{Core, Effect, Job, Metric, Now};
use crate::config::HostPort;
use crate::network::defend::{self, Conflict};
use crate::policy::{self, Act, Decision, Locality, Reason, RoleSeen, Weighed};
use crate::record::{self, Record};

/// The core's named timers, per master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A holder without a majority lets go when it runs out.
    Minority,
    /// An early claim stops holding against older answers.
    EarlyGrace,
    /// A fence, a selection, a pending event or a proven failover ends, or a promoted replica is
    /// asked again.
    Failover,
    /// A delegated hook is answered whatever the sentinels said.
    HookWait,
    /// Held VIPs are announced again (`announce_refresh_ms`).
    Refresh,
    /// Fail-fast: replica lists are awaited no longer, or the next sentinel is asked.
    FailFast,
    /// The provider's API is called again, or asked who holds the VIPs.
    Delivery,
}

impl Timer {
    /// Its name in triggers and logs.
    pub fn name(self) -> &'static str {
        match self {
            Timer::Minority => "minority",
            Timer::EarlyGrace => "early-grace",
            Timer::Failover => "failover",
            Timer::HookWait => "hook-wait",
            Timer::Refresh => "refresh",
            Timer::FailFast => "fail-fast",
            Timer::Delivery => "cloud",
        }
    }
}

/// When each timer runs out.
#[derive(Debug, Default)]
pub(super) struct Timers(BTreeMap<Timer, Instant>);

impl Timers {
    pub(super) fn set(&mut self, t: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.0.insert(t, at),
            None => self.0.remove(&t),
        };
    }

    /// Forgets a timer that ran out.
    pub fn clear(&mut self, t: Timer) {
        self.0.remove(&t);
    }

    /// The earliest.
    pub fn next(&self) -> Option<Instant> {
        self.0.values().min().copied()
    }

    /// Those that have run out by `now`.
    pub fn due(&self, now: Instant) -> Vec<Timer> {
        self.0.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect()
    }
}

/// What the core knows and remembers about one master.
#[derive(Debug, Default)]
pub(super) struct MasterState {
    /// What the VIP rule reads.
    pub memory: policy::Memory,
    /// What Redis instances said of their role when last asked: the local one, a named master.
    pub roles: BTreeMap<HostPort, RoleSeen>,
    /// Redis instances being asked for their role now.
    asking: BTreeSet<HostPort>,
    /// A conflict waiting for the local Redis's role.
    pending_conflict: Option<Conflict>,
    /// The reason of the last decision.
    pub belief: Option<Reason>,
    /// The sentinels' view at the last decision.
    pub weighed: Option<Weighed>,
    /// Whether any of its VIPs is bound here (from the latest address dump).
    pub holding: bool,
    /// The job being carried out.
    pub in_flight: Option<Act>,
    /// The last change made.
    pub last_change: Option<Record>,
    /// Changes made.
    pub transitions: u64,
    /// Claims on held VIPs from other MACs.
    pub conflicts: u64,
    /// The last job's error.
    pub last_error: Option<String>,
    /// The last fence step's error.
    pub fence_error: Option<String>,
    /// The last event and when it came (it explains the decisions that follow).
    pub last_event: Option<(String, Instant)>,
    /// Delegated hooks waiting for the job under way: (token, trigger).
    pub waiters: Vec<(u64, String)>,
    /// What made the core ask the local Redis for its role.
    role_trigger: Option<String>,
    /// Delegated hooks waiting for fresh answers.
    pub hook_waits: Vec<HookWait>,
    /// Failovers in progress as the sentinels tell them.
    pub failover: failover::State,
    /// The timers.
    pub timers: Timers,
    /// The local Redis watched for a refused connection.
    local_watch: Option<HostPort>,
    /// Fail-fast's count of refusals and the failover it asked for.
    pub fail_fast: super::fail_fast::State,
    /// The provider API's calls for the VIPs (`[masters.NAME.cloud]`).
    pub delivery: super::delivery::State,
}

impl Core {
    /// What a decision about `name` rests on now; `None` before the first address dump.
    pub(super) fn now_for(&mut self, name: &str, now: Instant) -> Option<Now> {
        let master = self.config.masters.get(name)?.clone();
        let host = self.host.clone()?;
        let weighed = policy::weigh(&self.reports(&master, now), self.settings.fresh_for);
        let locality = match weighed.master() {
            Some(addr) => self.locality(&addr.host.clone(), now),
            None => Locality::Unknown("no master named".into()),
        };
        let named_vouched = weighed.master().is_some_and(|a| self.vouched(&master, a));
        Some(Now { master, weighed, locality, named_vouched, host, at: now })
    }

    /// One decision for one master, on what is known now.
    pub(super) fn decide(&mut self, name: &str, trigger: &str, now: Instant) {
        let Some(n) = self.now_for(name, now) else { return };
        let w = &n.weighed;
        self.effects.push(Effect::Metric(Metric::Sentinels {
            master: name.to_string(),
            answered: w.answered,
            configured: w.configured,
        }));
        self.update_failover(name, &n);
        self.fail_fast_settle(name, &n);
        self.local_watch(name, &n);
        let st = self.masters.get_mut(name).expect("configured");
        let facts = n.facts(&self.managed, &st.roles, self.settings.policy, self.started);
        let decision = policy::daemon(&facts, &st.memory);
        // Log a change of belief, not every round of the same one.
        if st.belief.as_ref().map(Reason::code) != Some(decision.reason.code()) {
            tracing::info!("master `{name}`: {} ({})", decision.reason, w.summary());
        }
        let ms = |v: u64| Duration::from_millis(v);
        let minority = match &decision.reason {
            Reason::MinorityHolding { waited_ms, timeout_ms, .. } => {
                Some(now + ms(timeout_ms.saturating_sub(*waited_ms)))
            }
            _ => None,
        };
        let grace = match &decision.reason {
            Reason::EarlyClaimPending { left_ms, .. } => Some(now + ms(*left_ms)),
            _ => None,
        };
        st.timers.set(Timer::Minority, minority);
        st.timers.set(Timer::EarlyGrace, grace);
        st.belief = Some(decision.reason.clone());
        st.weighed = Some(w.clone());
        let sentinels = w.summary();
        match decision.act {
            Act::Hold | Act::Release | Act::Announce => {
                self.dispatch(name, decision, trigger, record::Event::Decision, None, Some(sentinels));
            }
            Act::AskRole(addr) => {
                let st = self.masters.get_mut(name).expect("configured");
                st.role_trigger.get_or_insert_with(|| trigger.to_string());
                self.ask_role(name, addr);
            }
            Act::Nothing => {}
        }
        self.rearm(name, now);
    }

    /// Sets the timers that follow from the master's state, and takes the provider API's next step.
    pub(super) fn rearm(&mut self, name: &str, now: Instant) {
        self.delivery_step(name, now);
        let failover = self.failover_deadline(name);
        let refresh = self.settings.policy.announce_refresh;
        let st = self.masters.get_mut(name).expect("configured");
        st.timers.set(Timer::Failover, failover);
        st.timers.set(Timer::HookWait, st.hook_waits.iter().map(|w| w.deadline).min());
        st.timers.set(Timer::FailFast, st.fail_fast.deadline());
        let refresh_at = (!refresh.is_zero() && st.holding && st.in_flight.is_none())
            .then(|| st.memory.last_announce.map_or(now, |t| t + refresh));
        st.timers.set(Timer::Refresh, refresh_at);
    }

    /// While this host holds the VIPs for its own Redis (with fail-fast: while a majority names
    /// its Redis master), that Redis is watched: a refused connection is known within a
    /// millisecond, not at the next probe.
    fn local_watch(&mut self, name: &str, n: &Now) {
        let fail_fast = self.settings.fail_fast && n.weighed.majority();
        let st = self.masters.get_mut(name).expect("configured");
        let want = match (n.weighed.master(), &st.fail_fast.asked) {
            // A failover asked for its death runs: the Redis is watched until it settles, for
            // when it comes back.
            (_, Some(a)) => Some(a.redis.clone()),
            (Some(addr), None) if (st.holding || fail_fast) && n.locality == Locality::Here => Some(addr.clone()),
            _ => None,
        };
        if want == st.local_watch || self.settings.dry_run {
            return;
        }
        st.local_watch = want.clone();
        // A new watch starts a new count: refusals seen by an old one may be long past.
        st.fail_fast = super::fail_fast::State { asked: st.fail_fast.asked.take(), ..Default::default() };
        let master = name.to_string();
        self.effects.push(match want {
            Some(redis) => Effect::WatchLocal { master, redis },
            None => Effect::UnwatchLocal { master },
        });
    }

    /// Hands a decision to the applier, unless the same one is already under way.
    pub(super) fn dispatch(
        &mut self,
        name: &str,
        d: Decision,
        trigger: &str,
        event: record::Event,
        detail: Option<String>,
        sentinels: Option<String>,
    ) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.in_flight.as_ref() == Some(&d.act) {
            return;
        }
        if self.settings.dry_run {
            if st.belief.as_ref() != Some(&d.reason) || st.in_flight.is_none() {
                tracing::info!("dry run: would {:?} `{name}`: {}", d.act, d.reason);
            }
            return;
        }
        st.in_flight = Some(d.act.clone());
        let job = Job {
            master: name.to_string(),
            act: d.act,
            reason: d.reason,
            trigger: trigger.to_string(),
            sentinels,
            event,
            detail,
        };
        self.effects.push(Effect::Apply(Box::new(job)));
    }

    /// Asks the Redis at `addr` for its role, unless that question is under way.
    pub(super) fn ask_role(&mut self, name: &str, addr: HostPort) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.asking.insert(addr.clone()) {
            self.effects.push(Effect::AskRole { master: name.to_string(), addr });
        }
    }

    /// A Redis answered `ROLE` (or did not).
    pub(super) fn role_seen(&mut self, name: &str, seen: RoleSeen, now: Instant) {
        let Some(st) = self.masters.get_mut(name) else { return };
        st.asking.remove(&seen.addr);
        tracing::debug!("master `{name}`: the Redis at {} is {}", seen.addr, seen.role);
        if st.memory.elsewhere.as_ref().is_some_and(|e| e.replica == seen.addr) {
            st.roles.insert(seen.addr.clone(), seen);
            self.decide(name, "the promoted replica answered ROLE", now);
            return;
        }
        let st = self.masters.get_mut(name).expect("configured");
        if seen.fenced == Some(true) && seen.role == crate::local_redis::Role::Master && st.failover.fence.is_none() {
            // Lifted at the next decision, if a majority names this host and no failover runs.
            st.failover.stale_mark = Some(seen.addr.clone());
        }
        st.roles.insert(seen.addr.clone(), seen);
        let trigger = match st.role_trigger.take() {
            Some(t) => format!("{t}; then the local Redis answered ROLE"),
            None => "the local Redis answered ROLE".to_string(),
        };
        if let Some(c) = st.pending_conflict.take() {
            self.answer_conflict(name, c, now);
        }
        self.decide(name, &trigger, now);
    }

    /// The applier carried out a job (or failed to).
    pub(super) fn applied(&mut self, a: super::Applied, now: Instant) {
        let name = a.job.master.clone();
        let Some(st) = self.masters.get_mut(&name) else { return };
        if st.in_flight.as_ref() == Some(&a.job.act) {
            st.in_flight = None;
        }
        if a.record.frames > 0 {
            st.memory.last_announce = Some(now);
        }
        if a.changed {
            st.transitions += 1;
            st.last_change = Some(a.record.clone());
        }
        st.last_error = a.record.error.clone();
        let waiters: Vec<_> = st.waiters.drain(..).collect();
        for (token, trigger) in waiters {
            self.answer_hook(&name, token, trigger);
        }
        self.rearm(&name, now);
    }

    /// Another MAC claims a VIP of ours.
    pub(super) fn conflict(&mut self, c: Conflict, now: Instant) {
        let Some(name) =
            self.config.masters.values().find(|m| m.vips.iter().any(|v| v.addr == c.vip)).map(|m| m.name.clone())
        else {
            return;
        };
        // A frame from one of this host's own interfaces (a bond, a second NIC on the segment) is no conflict.
        if self.host.as_ref().is_some_and(|h| h.interfaces.iter().any(|i| i.mac == Some(c.mac))) {
            return;
        }
        let st = self.masters.get_mut(&name).expect("configured");
        if !st.holding {
            return;
        }
        st.conflicts += 1;
        self.effects.push(Effect::Metric(Metric::Conflict { master: name.clone() }));
        self.answer_conflict(&name, c, now);
    }

    fn answer_conflict(&mut self, name: &str, c: Conflict, now: Instant) {
        let Some(n) = self.now_for(name, now) else { return };
        let st = self.masters.get_mut(name).expect("configured");
        let facts = n.facts(&self.managed, &st.roles, self.settings.policy, self.started);
        let claimant = defend::mac_string(&c.mac);
        let decision = policy::conflict(&facts, &st.memory, &claimant);
        let detail = Some(format!("{} claimed by {claimant} on {} (conflict #{})", c.vip, c.ifname, st.conflicts));
        match decision.act {
            Act::AskRole(addr) => {
                st.pending_conflict = Some(c);
                self.ask_role(name, addr);
            }
            Act::Nothing => {}
            _ => {
                // A defence re-announces even when a claim is under way: the claimant must be answered now.
                if decision.act == Act::Announce {
                    st.in_flight = None;
                }
                let sentinels = Some(n.weighed.summary());
                self.dispatch(name, decision, "conflict", record::Event::Conflict, detail, sentinels);
            }
        }
    }
}
