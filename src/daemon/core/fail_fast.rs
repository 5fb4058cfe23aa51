//! Fail-fast in the core (`[watch] fail_fast`): the local watch's refused connections are counted,
//! the rule ([`policy::fail_fast`]) decides once per death, and the daemon asks one sentinel of the
//! majority for `SENTINEL FAILOVER`, the next one when none starts within [`START_BOUND`].
//!
//! After asking, the daemon waits for the sentinels to settle: a majority naming another master
//! at a newer epoch, or Sentinel's failover timeout.
//! Until then it asks nothing again and the VIPs are not served from this host
//! ([`Reason::FailingOver`]): a local Redis that comes back as a master (systemd's restart, maybe
//! empty, maybe with an old data set) must not take a single write, and the port it opens would
//! race any fence. It is fenced and made a replica the moment it answers
//! ([`Reason::CameBackReplica`]), so that no replica syncs its data set.

use std::time::{Duration, Instant};

use super::failover::failover_timeout;
use super::fencing::{Cause, Fence};
use super::{Core, Effect, Metric, Now};
use crate::config::{HostPort, SentinelAddr};
use crate::fence::Step;
use crate::policy::fail_fast::{self, Refusal, Refusals, Verdict};
use crate::policy::{Locality, Reason, Verdict as Named};
use crate::record::{self, Actor, Change, Record};
use crate::sentinel::Answer;

/// How long a sentinel that accepted `SENTINEL FAILOVER` has to select a replica before the next
/// one of the majority is asked. Sentinel's leader selects at its next timer tick (≤ ~200 ms).
pub const START_BOUND: Duration = Duration::from_secs(1);
/// How long a failover asked for keeps the VIPs off this host at most, if the sentinels never
/// settle it: a forced failover that works is through in seconds, and past this the usual rules
/// (which never claim for a Redis that is dead or a replica) are safe again.
pub const SETTLE_BOUND: Duration = Duration::from_secs(30);
/// After failed steps on a Redis that came back, the wait before they are sent again.
const REDO_AFTER: Duration = Duration::from_millis(100);

/// What a sentinel answered to `SENTINEL FAILOVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskOutcome {
    /// `+OK`: it says it started the failover.
    Accepted,
    /// An error reply (`-NOGOODSLAVE`, `-INPROG`, …), with its text.
    Refused(String),
    /// No answer (a timeout, a broken connection): it may have started.
    Unknown(String),
}

/// A failover fail-fast asked for.
#[derive(Debug, Clone)]
pub(super) struct Asked {
    /// The dead Redis.
    pub redis: HostPort,
    /// The refusals that made its death.
    pub refusals: Refusals,
    /// The replicas a majority would promote, then.
    pub candidates: Vec<HostPort>,
    /// The newest epoch the sentinels reported then.
    pub epoch: u64,
    /// The sentinels of the majority, in the order they are asked.
    pub order: Vec<SentinelAddr>,
    /// How many of them were asked.
    pub asked: usize,
    /// When the one asked last must have started by (its selection seen), else the next is asked.
    pub retry_at: Option<Instant>,
    /// A failover is seen running (`-INPROG`, a sentinel's failover flag): nobody else is asked.
    pub started: bool,
    /// Steps on the Redis that came back failed (it may still be loading): they are sent again then.
    pub redo_at: Option<Instant>,
    /// When it is over at the latest: Sentinel's failover timeout after it was asked, at most
    /// [`SETTLE_BOUND`].
    pub until: Instant,
    /// The local Redis accepted connections again since.
    pub back: bool,
}

/// What the core follows of fail-fast, per master.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Refused connections in a row, since the last one accepted.
    pub refusals: Option<Refusals>,
    /// This death was decided on (a trigger or a refusal): once per death.
    pub decided: bool,
    /// Fresh replica lists are awaited until then.
    pub lists_until: Option<Instant>,
    /// The failover asked for, until the sentinels settle it.
    pub asked: Option<Asked>,
}

impl State {
    /// When the core wants to look again.
    pub fn deadline(&self) -> Option<Instant> {
        let wait = self.lists_until.filter(|_| !self.decided);
        let asked =
            self.asked.as_ref().map(|a| [a.retry_at, a.redo_at].into_iter().flatten().fold(a.until, Instant::min));
        [wait, asked].into_iter().flatten().min()
    }
}

impl Core {
    /// The local watch tried a connection: refused, or accepted.
    pub(super) fn local_probe(&mut self, name: &str, refused: bool, now: Instant) {
        if !self.settings.fail_fast {
            return;
        }
        let Some(st) = self.masters.get_mut(name) else { return };
        let ff = &mut st.fail_fast;
        if refused {
            // Gone again: the next time it answers, it is fenced again (a crash loop).
            if let Some(a) = ff.asked.as_mut() {
                a.back = false;
            }
            let first = ff.refusals.is_none();
            ff.refusals = Some(Refusals::add(ff.refusals, now));
            if first {
                // Fresh replica lists: the rule weighs only lists given since the death began.
                let sentinels = self.config.masters[name].sentinels.clone();
                self.effects.push(Effect::Nudge { sentinels, replicas: true });
            }
            self.fail_fast_rules(name, now);
        } else {
            ff.refusals = None;
            ff.decided = false;
            ff.lists_until = None;
            let back = ff.asked.as_mut().is_some_and(|a| !std::mem::replace(&mut a.back, true));
            if back {
                self.came_back(name, now);
            }
        }
        self.rearm(name, now);
    }

    /// Applies the rule to the death under way, if one is and it was not decided on yet.
    pub(super) fn fail_fast_rules(&mut self, name: &str, now: Instant) {
        let st = &self.masters[name];
        let (Some(refusals), false) = (st.fail_fast.refusals, st.fail_fast.decided) else { return };
        let Some(n) = self.now_for(name, now) else { return };
        let candidates = self.promotable_since(&n.master, refusals.first);
        let facts = fail_fast::Facts {
            refusals,
            majority: n.weighed.majority(),
            named_here: n.locality == Locality::Here && majority_names(&n.weighed),
            failover_running: self.failover_running(name, &n),
            promotable: candidates.as_ref().map(Vec::len),
            asked_before: self.masters[name].fail_fast.asked.is_some(),
            now,
        };
        let Some(redis) = n.weighed.master().cloned() else { return };
        let verdict = fail_fast::decide(&facts);
        self.masters.get_mut(name).expect("configured").fail_fast.lists_until =
            (verdict == Verdict::Wait).then(|| refusals.first + fail_fast::LISTS_WAIT);
        match verdict {
            Verdict::NotDead | Verdict::Wait => {}
            Verdict::Trigger { .. } => {
                let order = majority_naming(self, &n);
                let until = now + failover_timeout(&n.weighed).min(SETTLE_BOUND);
                let st = self.masters.get_mut(name).expect("configured");
                st.fail_fast.decided = true;
                st.fail_fast.asked = Some(Asked {
                    redis,
                    refusals,
                    candidates: candidates.unwrap_or_default(),
                    epoch: n.weighed.epoch(),
                    order,
                    asked: 0,
                    retry_at: None,
                    started: false,
                    redo_at: None,
                    until,
                    back: false,
                });
                self.masters.get_mut(name).expect("configured").memory.failing_over = true;
                self.ask_next(name, now);
                self.decide(name, "fail-fast asked for a failover", now);
            }
            Verdict::Refuse(refusal) => {
                self.masters.get_mut(name).expect("configured").fail_fast.decided = true;
                self.fail_fast_refused(name, &redis.to_string(), refusal);
            }
        }
    }

    /// Asks the next sentinel of the majority (the caller checked there is one).
    fn ask_next(&mut self, name: &str, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        let Some(a) = st.fail_fast.asked.as_mut() else { return };
        let Some(sentinel) = a.order.get(a.asked).cloned() else { return };
        a.asked += 1;
        a.retry_at = Some(now + START_BOUND);
        let reason = Reason::FailFast {
            redis: a.redis.to_string(),
            refusals: a.refusals.count,
            span_ms: a.refusals.span().as_millis() as u64,
            replicas: a.candidates.len(),
            sentinel: sentinel.to_string(),
        };
        tracing::warn!("master `{name}`: {reason}");
        let r = Record::new(record::Event::Decision, Actor::Watch, name, Change::None, &reason);
        self.effects.push(Effect::Record(Box::new(r)));
        self.effects.push(Effect::Metric(Metric::FailFast { master: name.to_string(), outcome: "trigger" }));
        self.effects.push(Effect::AskFailover { master: name.to_string(), sentinel });
    }

    fn fail_fast_refused(&mut self, name: &str, redis: &str, refusal: Refusal) {
        let outcome = refusal.code();
        let reason = Reason::FailFastRefused { redis: redis.to_string(), refusal };
        tracing::warn!("master `{name}`: {reason}");
        let r = Record::new(record::Event::Decision, Actor::Watch, name, Change::None, &reason);
        self.effects.push(Effect::Record(Box::new(r)));
        self.effects.push(Effect::Metric(Metric::FailFast { master: name.to_string(), outcome }));
    }

    /// A sentinel answered `SENTINEL FAILOVER`.
    pub(super) fn failover_asked(&mut self, name: &str, sentinel: &SentinelAddr, outcome: AskOutcome, now: Instant) {
        let Some(st) = self.masters.get_mut(name) else { return };
        let Some(a) = st.fail_fast.asked.as_mut() else { return };
        if a.order.get(a.asked.wrapping_sub(1)) != Some(sentinel) {
            return;
        }
        match outcome {
            // Its word alone: the failover must show (a selection, a sentinel's failover flag)
            // within the bound, or the next one is asked. Its flag is asked for at once: between
            // full questions (seconds apart with heartbeats) the last answer predates the +OK.
            AskOutcome::Accepted => {
                tracing::info!("master `{name}`: sentinel {sentinel} accepted SENTINEL FAILOVER");
                self.effects.push(Effect::Nudge { sentinels: vec![sentinel.clone()], replicas: false });
            }
            // Another sentinel leads a failover already: it started.
            AskOutcome::Refused(e) if e.starts_with("INPROG") => {
                tracing::info!("master `{name}`: sentinel {sentinel}: a failover is in progress ({e})");
                a.started = true;
                a.retry_at = None;
            }
            AskOutcome::Refused(e) => {
                tracing::warn!("master `{name}`: sentinel {sentinel} refused SENTINEL FAILOVER: {e}");
                self.retry_or_give_up(name, e, now);
            }
            // It may have started: the next one is asked only if nothing tells so within the bound
            // (two forced failovers at once would race each other).
            AskOutcome::Unknown(e) => {
                tracing::warn!("master `{name}`: sentinel {sentinel} did not answer SENTINEL FAILOVER: {e}");
                self.effects.push(Effect::Nudge { sentinels: vec![sentinel.clone()], replicas: false });
            }
        }
        self.decide(name, &format!("sentinel {sentinel} answered SENTINEL FAILOVER"), now);
    }

    /// The one asked last started nothing in time (or refused): ask the next, or give up.
    fn retry_or_give_up(&mut self, name: &str, last: String, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        let Some(a) = st.fail_fast.asked.as_ref() else { return };
        let redis = a.redis.to_string();
        if a.asked < a.order.len() {
            self.ask_next(name, now);
            return;
        }
        // Left to Sentinel, as without fail-fast. A Redis that came back stays a replica, fenced
        // until its bound: its data set may be empty, the replicas hold the writes, and Sentinel
        // fails over a master that reports itself a replica.
        st.fail_fast.asked = None;
        st.memory.failing_over = false;
        self.fail_fast_refused(name, &redis, Refusal::NoneStarted { last });
    }

    /// Steps on the Redis that came back failed: they are sent again shortly.
    pub(super) fn steps_failed(&mut self, name: &str, now: Instant) {
        let Some(st) = self.masters.get_mut(name) else { return };
        let came_back = matches!(&st.failover.fence, Some(Fence { cause: Cause::CameBack, .. }));
        if let Some(a) = st.fail_fast.asked.as_mut().filter(|a| a.back && came_back) {
            a.redo_at = Some(now + REDO_AFTER);
        }
    }

    /// Settles a failover fail-fast asked for, on what the core knows now; runs at every decision.
    pub(super) fn fail_fast_settle(&mut self, name: &str, n: &Now) {
        let now = n.at;
        let st = self.masters.get_mut(name).expect("configured");
        let Some(a) = st.fail_fast.asked.as_mut() else {
            st.memory.failing_over = false;
            return;
        };
        let moved = n.locality == Locality::Elsewhere && majority_names(&n.weighed) && n.weighed.epoch() > a.epoch;
        if moved || now >= a.until {
            st.fail_fast.asked = None;
            st.memory.failing_over = false;
            return;
        }
        st.memory.failing_over = true;
        let selected = !st.failover.selections.is_empty() || st.memory.elsewhere.is_some();
        let redo = a.redo_at.is_some_and(|r| now >= r);
        if redo {
            a.redo_at = None;
        }
        let retry = a.retry_at.is_some_and(|r| now >= r);
        if selected || a.started || retry {
            a.retry_at = None;
        }
        let running = !a.started && !selected && retry && self.failover_running(name, n).is_some();
        if running {
            self.masters.get_mut(name).expect("configured").fail_fast.asked.as_mut().expect("above").started = true;
        } else if retry && !selected && !self.masters[name].fail_fast.asked.as_ref().is_some_and(|a| a.started) {
            let last = format!("no replica selected within {} ms", START_BOUND.as_millis());
            self.retry_or_give_up(name, last, now);
        }
        if redo {
            self.came_back(name, now);
        }
    }

    /// The local Redis accepts connections again while the failover asked for its death runs.
    fn came_back(&mut self, name: &str, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        let Some(a) = st.fail_fast.asked.as_ref() else { return };
        let (redis, until, epoch) = (a.redis.clone(), Some(a.until), a.epoch);
        // Where its data should come from: the leader's choice, else a replica a majority would
        // promote. Either way not a source for the other replicas: a replica whose own link is
        // down refuses their SYNC (NOMASTERLINK), so they keep their data.
        let chosen = st.failover.selections.values().find(|s| !s.here).map(|s| s.replica.clone());
        let Some(source) = chosen.or_else(|| a.candidates.first().cloned()) else { return };
        st.memory.failing_over = true;
        let reason = Reason::CameBackReplica { redis: redis.to_string(), source: source.to_string() };
        tracing::warn!("master `{name}`: {reason}");
        let fence = Fence { redis: redis.clone(), cause: Cause::CameBack, since: now, epoch, until, confirmed: false };
        st.failover.fence = Some(fence);
        st.fail_fast.asked.as_mut().expect("above").redo_at = None;
        self.effects.push(Effect::Metric(Metric::Fence { master: name.to_string() }));
        self.redis(name, redis.clone(), reason, vec![Step::Fence, Step::ReplicaOf(source)], true);
        self.ask_role(name, redis);
    }

    /// What tells of a failover of `name` in progress, if anything does.
    fn failover_running(&self, name: &str, n: &Now) -> Option<String> {
        let st = &self.masters[name];
        if let Some((by, sel)) = st.failover.selections.iter().next() {
            return Some(format!("sentinel {by} chose {}", sel.replica));
        }
        if let Some(e) = &st.memory.elsewhere {
            return Some(format!("{} was promoted", e.replica));
        }
        self.reports(&n.master, n.at).iter().find_map(|r| match r.fresh(self.settings.fresh_for) {
            Some(Answer::Master { flags, .. }) if flags.split(',').any(|f| f == "failover_in_progress") => {
                Some(format!("sentinel {} reports failover_in_progress", r.sentinel))
            }
            _ => None,
        })
    }
}

/// Whether more than half of the configured sentinels name the verdict's master at its epoch: a
/// newer epoch that fewer report (a leader's first word, or a lie) triggers nothing.
fn majority_names(w: &crate::policy::Weighed) -> bool {
    matches!(&w.verdict, Named::Master { agreeing, .. } if agreeing * 2 > w.configured)
}

/// The sentinels whose fresh answer names the verdict's master, in the config's order.
fn majority_naming(core: &Core, n: &Now) -> Vec<SentinelAddr> {
    let Named::Master { addr, epoch, .. } = &n.weighed.verdict else { return Vec::new() };
    core.reports(&n.master, n.at)
        .into_iter()
        .filter(|r| {
            matches!(r.fresh(core.settings.fresh_for), Some(Answer::Master { addr: a, epoch: e, .. }) if a == addr && e == epoch)
        })
        .map(|r| r.sentinel)
        .collect()
}
