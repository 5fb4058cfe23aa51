//! Fail-fast (`[watch] fail_fast`): when the master's Redis dies on a live host, ask Sentinel to
//! fail it over at once instead of waiting `down-after-milliseconds` for it to notice.
//!
//! The rules, and why:
//! - **Death, not slowness.** Only refused connections count, several over about 100 ms with
//!   none accepted between ([`Refusals::dead`]): the kernel refuses only when nothing listens. A
//!   Redis stopped with SIGSTOP, busy forking or loading still has its listening socket (the
//!   kernel accepts for it), and a cut link times out; both are Sentinel's to judge.
//! - **Only on the master's own host, with a majority.** A majority of the sentinels must name
//!   this host's Redis master now; a host that cannot see a majority may be the side a failover
//!   already left behind, so it asks nothing.
//! - **Never on top of a failover.** While any sentinel reports a failover in progress (a planned
//!   switchover included), or one was asked for this death already, nothing is asked.
//! - **Only when Sentinel can promote someone.** A majority of the sentinels, in lists given since
//!   the death began, must list a replica they would promote (link up, recently seen, priority
//!   not 0). Otherwise the failover would abort or promote a replica that missed writes.
//!
//! What happens next is Sentinel's own failover, followed as always (early claim on the promoted
//! host, fence and demotion here); the daemon lets go of the VIPs at the trigger
//! ([`crate::daemon`]'s core, `fail_fast.rs`).

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Refused connections that make a death, at the least.
pub const DEATH_REFUSALS: u32 = 3;
/// The time they must span: a Redis restarted faster than this (a crash loop caught by systemd in
/// a few ms is not one) is no death, and Sentinel decides as before.
pub const DEATH_SPAN: Duration = Duration::from_millis(100);
/// How long the daemon waits for a majority's fresh replica lists once the death began.
pub const LISTS_WAIT: Duration = Duration::from_secs(1);

/// Connections to the local Redis refused in a row (none accepted between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// The first.
    pub first: Instant,
    /// The latest.
    pub last: Instant,
    /// How many.
    pub count: u32,
}

impl Refusals {
    /// One refusal at `at`, after these.
    pub fn add(this: Option<Refusals>, at: Instant) -> Refusals {
        match this {
            Some(r) => Refusals { first: r.first, last: at.max(r.last), count: r.count.saturating_add(1) },
            None => Refusals { first: at, last: at, count: 1 },
        }
    }

    /// The time they span.
    pub fn span(&self) -> Duration {
        self.last.saturating_duration_since(self.first)
    }

    /// Enough refusals over enough time: the Redis is dead, not restarting or slow.
    pub fn dead(&self) -> bool {
        self.count >= DEATH_REFUSALS && self.span() >= DEATH_SPAN
    }
}

/// What the rule reads.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The refusals so far.
    pub refusals: Refusals,
    /// A majority of the sentinels answered recently.
    pub majority: bool,
    /// More than half of the configured sentinels name this host's Redis master, at the newest epoch.
    pub named_here: bool,
    /// What tells of a failover in progress, if anything does.
    pub failover_running: Option<String>,
    /// How many replicas a majority list as ones they would promote, in lists given since the
    /// death began; `None` while a majority has not given one since.
    pub promotable: Option<usize>,
    /// A failover was asked for this master recently (this death, or one before it that the
    /// sentinels have not settled yet).
    pub asked_before: bool,
    /// Now.
    pub now: Instant,
}

/// Why fail-fast asks for no failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// This host cannot see a majority of the sentinels.
    NoMajority,
    /// A failover (or a planned switchover) is in progress already.
    FailoverRunning {
        /// What tells.
        what: String,
    },
    /// No replica that a majority of the sentinels would promote.
    NoPromotableReplica,
    /// A majority of the sentinels gave no replica list within [`LISTS_WAIT`].
    NoReplicaLists,
    /// A failover was asked for this master already; the sentinels have not settled it.
    AskedBefore,
    /// Every sentinel of the majority was asked, and none started a failover.
    NoneStarted {
        /// What the last one said.
        last: String,
    },
}

impl Refusal {
    /// A stable name, for metrics and records.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoMajority => "no_majority",
            Refusal::FailoverRunning { .. } => "failover_running",
            Refusal::NoPromotableReplica => "no_promotable_replica",
            Refusal::NoReplicaLists => "no_replica_lists",
            Refusal::AskedBefore => "asked_before",
            Refusal::NoneStarted { .. } => "none_started",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoMajority => f.write_str("this host cannot see a majority of the sentinels"),
            Refusal::FailoverRunning { what } => write!(f, "a failover is in progress already ({what})"),
            Refusal::NoPromotableReplica => {
                f.write_str("no replica that a majority of the sentinels would promote (in sync, seen recently)")
            }
            Refusal::NoReplicaLists => {
                write!(f, "a majority of the sentinels gave no replica list within {} ms", LISTS_WAIT.as_millis())
            }
            Refusal::AskedBefore => {
                f.write_str("a failover was asked for already and the sentinels have not settled it")
            }
            Refusal::NoneStarted { last } => {
                write!(f, "every sentinel of the majority was asked and none started a failover (last: {last})")
            }
        }
    }
}

/// What the rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a death here (yet): nothing to do.
    NotDead,
    /// A death, and a majority's fresh replica lists are awaited.
    Wait,
    /// Ask the sentinels to fail over; `replicas` could be promoted.
    Trigger {
        /// Promotable replicas.
        replicas: usize,
    },
    /// A death, and no failover is asked, for this reason.
    Refuse(Refusal),
}

/// The rule: whether this death of the local master's Redis should start a failover now.
pub fn decide(f: &Facts) -> Verdict {
    if !f.refusals.dead() {
        return Verdict::NotDead;
    }
    if !f.majority {
        return Verdict::Refuse(Refusal::NoMajority);
    }
    if !f.named_here {
        // Not this host's master (any more): not a death fail-fast acts on.
        return Verdict::NotDead;
    }
    if let Some(what) = &f.failover_running {
        return Verdict::Refuse(Refusal::FailoverRunning { what: what.clone() });
    }
    if f.asked_before {
        return Verdict::Refuse(Refusal::AskedBefore);
    }
    match f.promotable {
        None if f.now.saturating_duration_since(f.refusals.first) >= LISTS_WAIT => {
            Verdict::Refuse(Refusal::NoReplicaLists)
        }
        None => Verdict::Wait,
        Some(0) => Verdict::Refuse(Refusal::NoPromotableReplica),
        Some(n) => Verdict::Trigger { replicas: n },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(refusals: &[u64]) -> Facts {
        let t0 = Instant::now();
        let mut r = None;
        for ms in refusals {
            r = Some(Refusals::add(r, t0 + Duration::from_millis(*ms)));
        }
        let refusals = r.expect("at least one refusal");
        Facts {
            refusals,
            majority: true,
            named_here: true,
            failover_running: None,
            promotable: Some(2),
            asked_before: false,
            now: refusals.last,
        }
    }

    #[test]
    fn a_death_is_refusals_over_time_not_a_burst() {
        assert_eq!(decide(&facts(&[0, 1, 2, 3, 4, 5])), Verdict::NotDead, "a burst within 5 ms");
        assert_eq!(decide(&facts(&[0, 150])), Verdict::NotDead, "two refusals");
        assert_eq!(decide(&facts(&[0, 50, 99])), Verdict::NotDead, "under 100 ms");
        assert_eq!(decide(&facts(&[0, 50, 100])), Verdict::Trigger { replicas: 2 });
    }

    #[test]
    fn every_condition_refuses_with_its_reason() {
        let dead = [0, 25, 50, 75, 100];
        let mut f = facts(&dead);
        f.majority = false;
        assert_eq!(decide(&f), Verdict::Refuse(Refusal::NoMajority));
        let mut f = facts(&dead);
        f.named_here = false;
        assert_eq!(decide(&f), Verdict::NotDead);
        let mut f = facts(&dead);
        f.failover_running = Some("failover_in_progress".into());
        assert!(matches!(decide(&f), Verdict::Refuse(Refusal::FailoverRunning { .. })));
        let mut f = facts(&dead);
        f.asked_before = true;
        assert_eq!(decide(&f), Verdict::Refuse(Refusal::AskedBefore));
        let mut f = facts(&dead);
        f.promotable = Some(0);
        assert_eq!(decide(&f), Verdict::Refuse(Refusal::NoPromotableReplica));
    }

    #[test]
    fn replica_lists_are_awaited_for_a_bounded_time() {
        let mut f = facts(&[0, 50, 100]);
        f.promotable = None;
        assert_eq!(decide(&f), Verdict::Wait);
        f.now = f.refusals.first + LISTS_WAIT;
        assert_eq!(decide(&f), Verdict::Refuse(Refusal::NoReplicaLists));
    }
}
