//! When this host's Redis refuses writes ([`crate::fence`]): so that it acknowledges none that a
//! failover would throw away, and none on the side of a partition that cannot see the majority.
//!
//! Three causes, each with its rules and typed reasons (the third, a Redis that came back during
//! a failover fail-fast asked for, is placed by [`super::fail_fast`]):
//! - **A selection**: a sentinel chose another host's replica while a majority still names this
//!   host master. Resting on that one voice, the fence lasts [`single_voice_bound`], well below
//!   `down-after-milliseconds`, and a sentinel's selection fences once. Evidence no sentinel can
//!   forge (the chosen replica reporting role:master) confirms it for [`FENCE_BOUND`]. It is lifted
//!   early only by the sentinel that placed it (its abort; another live selection of the same
//!   failover keeps it) or by a majority naming this host at a newer epoch.
//! - **Doubt**: this host holds the VIPs for its Redis and can no longer see a majority of the
//!   sentinels (heartbeats tell within ~3 × `heartbeat_ms`). The majority may be failing it over
//!   at this very moment; every write acknowledged from now on could be discarded. The fence
//!   stays while the doubt lasts, past the minority timeout (when the VIPs go), and is lifted as
//!   soon as a majority answers again and names this host.
//!
//! Either becomes a demotion when a majority names another master at a newer epoch: the Redis
//! becomes its replica first, then takes writes again, which then meet READONLY. The fence refuses
//! writes and stalls nothing, so no fence, however long, makes Sentinel see a healthy master down.

use std::time::{Duration, Instant};

use super::{Core, Effect, Metric, Now};
use crate::config::{HostPort, SentinelAddr};
use crate::fence::Step;
use crate::policy::{Locality, Reason, Weighed};
use crate::record::{self, Actor, Change, Record};

/// How long a fence lasts once evidence no sentinel can forge confirms the failover: long enough
/// for the sentinels to agree on the new master (a hello period or two), short enough that a
/// failover vipctl lost track of costs seconds of refused writes, not minutes.
pub const FENCE_BOUND: Duration = Duration::from_secs(10);

/// How long a fence may last on one sentinel's word: a quarter of the smallest
/// `down-after-milliseconds` the sentinels report, between 100 ms and 1 s (250 ms when none did).
/// The leader sends `SLAVEOF NO ONE` one timer tick (≤ ~200 ms) after `+selected-slave`, and the
/// chosen replica's own role:master then confirms the fence in a millisecond.
pub fn single_voice_bound(w: &Weighed) -> Duration {
    w.down_after
        .map_or(Duration::from_millis(250), |d| (d / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

/// Why the fence is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cause {
    /// `by` chose `toward`, a replica on another host.
    Selection {
        /// The sentinel whose selection placed it.
        by: SentinelAddr,
        /// The replica the failover goes to.
        toward: HostPort,
    },
    /// This holder cannot see a majority of the sentinels.
    Doubt,
    /// The Redis came back as a master during the failover fail-fast asked for its death.
    CameBack,
}

/// The write fence on this host's Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fence {
    /// The Redis fenced.
    pub redis: HostPort,
    /// Why.
    pub cause: Cause,
    /// When it was placed.
    pub since: Instant,
    /// The newest epoch the sentinels reported then.
    pub epoch: u64,
    /// When it ends unless confirmed, lifted or turned into a demotion; `None`: while its cause
    /// lasts.
    pub until: Option<Instant>,
    /// Evidence no sentinel can forge backs it.
    pub confirmed: bool,
}

impl Fence {
    /// One line for `vipctl status`.
    pub fn describe(&self, now: Instant) -> String {
        let why = match &self.cause {
            Cause::Selection { by, toward } => format!("sentinel {by} chose {toward}"),
            Cause::Doubt => "no majority of the sentinels answers".to_string(),
            Cause::CameBack => "it came back during the failover asked for its death".to_string(),
        };
        let left =
            self.until.map_or(String::new(), |u| format!(", {} ms left", u.saturating_duration_since(now).as_millis()));
        let proof = if self.confirmed { ", confirmed" } else { "" };
        format!(
            "{} refuses writes for {} ms: {why}{proof}{left}",
            self.redis,
            now.saturating_duration_since(self.since).as_millis()
        )
    }
}

impl Core {
    /// Places, confirms, lifts or turns into a demotion the fence of `name`'s Redis, on what the
    /// sentinels say now. `verdict`: the newest master, its epoch, whether a majority agree.
    pub(super) fn fence_rules(&mut self, name: &str, n: &Now, verdict: Option<&(HostPort, u64, bool)>) {
        let now = n.at;
        let w = &n.weighed;
        let st = self.masters.get_mut(name).expect("configured");
        let here_master = verdict.filter(|_| n.locality == Locality::Here && w.majority()).map(|v| v.0.clone());
        if st.holding && here_master.is_some() {
            st.failover.local_master = here_master.clone();
        } else if w.majority() && n.locality == Locality::Elsewhere {
            st.failover.local_master = None;
        }
        let doubt = st.holding && !w.majority() && st.failover.local_master.is_some();
        let proven = st.memory.elsewhere.is_some();
        let Some(f) = st.failover.fence.clone() else {
            if doubt {
                let redis = st.failover.local_master.clone().expect("checked");
                let reason =
                    Reason::FenceOnDoubt { redis: redis.to_string(), answered: w.answered, configured: w.configured };
                self.place(
                    name,
                    Fence { redis, cause: Cause::Doubt, since: now, epoch: w.epoch(), until: None, confirmed: false },
                    reason,
                );
                return;
            }
            if let Some(redis) = here_master {
                let stale = st.failover.stale_mark.take();
                let chosen = st.failover.selections.iter_mut().find(|(_, s)| !s.here && (proven || !s.fenced));
                if let Some((by, sel)) = chosen {
                    sel.fenced = true;
                    let bound = if proven { FENCE_BOUND } else { single_voice_bound(w) };
                    let evidence = if proven {
                        format!("{} reports role:master", sel.replica)
                    } else {
                        format!("the word of sentinel {by} alone")
                    };
                    let reason = Reason::FenceWrites {
                        redis: redis.to_string(),
                        toward: sel.replica.to_string(),
                        bound_ms: bound.as_millis() as u64,
                        evidence,
                    };
                    let cause = Cause::Selection { by: by.clone(), toward: sel.replica.clone() };
                    let fence = Fence {
                        redis,
                        cause,
                        since: now,
                        epoch: w.epoch(),
                        until: Some(now + bound),
                        confirmed: proven,
                    };
                    self.place(name, fence, reason);
                } else if stale.as_ref() == Some(&redis) && st.failover.selections.is_empty() {
                    // A mark an earlier run left (a crash), or that Sentinel's CONFIG REWRITE wrote
                    // into redis.conf: the majority names this host and no failover is under way.
                    let why = "a fence left behind by an earlier run, and no failover is under way".to_string();
                    let reason = Reason::LiftFence { redis: redis.to_string(), why };
                    self.redis(name, redis, reason, vec![Step::Lift], false);
                }
            }
            return;
        };
        match verdict {
            Some((to, epoch, true)) if n.locality == Locality::Elsewhere && *epoch > f.epoch => {
                // Replica first, then writes again: they then meet READONLY, never an ack.
                st.failover.fence = None;
                let reason = Reason::Demote { redis: f.redis.to_string(), to: to.to_string() };
                self.redis(name, f.redis, reason, vec![Step::ReplicaOf(to.clone()), Step::Lift], false);
            }
            Some((_, epoch, _)) if n.locality == Locality::Here && w.majority() && f.cause == Cause::Doubt => {
                self.lift(name, format!("a majority of the sentinels answer again and name this host (epoch {epoch})"));
            }
            Some((_, epoch, _)) if n.locality == Locality::Here && w.majority() && *epoch > f.epoch => {
                self.lift(name, format!("the sentinels name this host at a newer epoch ({epoch})"));
            }
            _ if f.until.is_some_and(|u| now >= u) && doubt => {
                // Its own bound is up, but the majority is out of sight now: it stays, on doubt.
                let fence = st.failover.fence.as_mut().expect("matched");
                fence.cause = Cause::Doubt;
                fence.until = None;
                let reason =
                    Reason::FenceOnDoubt { redis: f.redis.to_string(), answered: w.answered, configured: w.configured };
                let r = Record::new(record::Event::Fence, Actor::Watch, name, Change::None, &reason);
                self.effects.push(Effect::Record(Box::new(r)));
            }
            _ if f.until.is_some_and(|u| now >= u) => {
                let why = match &f.cause {
                    _ if f.confirmed => {
                        tracing::warn!(
                            "master `{name}`: the write fence ran out before a majority of the sentinels named a new master"
                        );
                        format!("it ran out ({} ms) before a majority named a new master", FENCE_BOUND.as_millis())
                    }
                    Cause::Selection { by, .. } => format!(
                        "it rested on the word of sentinel {by} alone, and nothing confirmed it within {} ms",
                        f.until.expect("matched").saturating_duration_since(f.since).as_millis()
                    ),
                    Cause::Doubt => "its cause is gone".to_string(),
                    Cause::CameBack => "the failover asked for its death did not happen; left to Sentinel".to_string(),
                };
                self.lift(name, why);
            }
            _ if !f.confirmed && proven && matches!(f.cause, Cause::Selection { .. }) => {
                let fence = st.failover.fence.as_mut().expect("matched");
                fence.confirmed = true;
                fence.until = Some(fence.since + FENCE_BOUND);
                let evidence = format!("{} reports role:master", st.memory.elsewhere.as_ref().expect("proven").replica);
                let reason = Reason::FenceConfirmed {
                    redis: f.redis.to_string(),
                    evidence,
                    bound_ms: FENCE_BOUND.as_millis() as u64,
                };
                let mut r = Record::new(record::Event::Fence, Actor::Watch, name, Change::None, &reason);
                r.detail = Some(format!("placed {} ms before", now.saturating_duration_since(f.since).as_millis()));
                self.effects.push(Effect::Record(Box::new(r)));
            }
            _ => {}
        }
    }

    pub(super) fn place(&mut self, name: &str, fence: Fence, reason: Reason) {
        let redis = fence.redis.clone();
        self.masters.get_mut(name).expect("configured").failover.fence = Some(fence);
        self.effects.push(Effect::Metric(Metric::Fence { master: name.to_string() }));
        self.redis(name, redis, reason, vec![Step::Fence], true);
    }

    /// The sentinel whose selection placed the fence takes its word back: another sentinel's live
    /// selection of a replica elsewhere (the same failover, seen through another sentinel) keeps
    /// the fence; otherwise it is lifted. Never a lift and a new fence at once. A fence on doubt
    /// is no sentinel's to take back.
    pub(super) fn fence_loses(&mut self, name: &str, sentinel: &SentinelAddr, why: String) {
        let st = self.masters.get_mut(name).expect("configured");
        if !matches!(&st.failover.fence, Some(Fence { cause: Cause::Selection { by, .. }, .. }) if by == sentinel) {
            return;
        }
        let other = st
            .failover
            .selections
            .iter()
            .find(|(s, sel)| *s != sentinel && !sel.here)
            .map(|(s, sel)| (s.clone(), sel.replica.clone()));
        match (other, st.failover.fence.as_mut()) {
            (Some((by, toward)), Some(f)) => {
                tracing::info!("master `{name}`: the fence stays on the word of sentinel {by} ({why})");
                f.cause = Cause::Selection { by, toward };
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

    pub(super) fn redis(
        &mut self,
        name: &str,
        redis: HostPort,
        reason: Reason,
        steps: Vec<Step>,
        only_if_master: bool,
    ) {
        if self.settings.dry_run {
            let what = steps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", then ");
            tracing::info!("dry run: would {what} on {redis} for `{name}`: {reason}");
            return;
        }
        self.effects.push(Effect::Redis { master: name.to_string(), redis, reason, steps, only_if_master });
    }
}
