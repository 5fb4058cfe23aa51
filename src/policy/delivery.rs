//! The rule for a provider's API (`[masters.NAME.cloud]`): who calls it, when, and when again.
//!
//! - Only the host the VIP rule holds the VIPs on, for a majority's verdict or an early claim,
//!   calls the API to move them to itself. A host letting go only releases locally: the next
//!   holder's call takes the address over, and a host cut off from the sentinels never calls, so
//!   a stale holder cannot take the address back.
//! - After every call the provider is asked who holds the VIPs; a call is not a delivery until
//!   that answer names this host. A failure is retried with doubling back-off for `retry_for`,
//!   then at every check. An error only a person can fix (a permission) waits for the check.
//! - A delivered VIP is checked every `verify_every`: a late call of an old holder (one in flight
//!   when it let go) is undone within that period.

use std::time::{Duration, Instant};

use super::Reason;

/// The first retry comes this soon after a failure…
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// …and the wait doubles up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// The bounds of the rule, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Failed deliveries are retried with back-off for this long.
    pub retry_for: Duration,
    /// A delivered VIP is checked this often.
    pub verify_every: Duration,
}

/// What is known of one master's delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not delivering: this host does not hold the VIPs on a majority's word.
    #[default]
    Idle,
    /// A call (move, then ask who holds) is under way.
    Calling,
    /// A question (who holds) is under way.
    Checking,
    /// The provider named this host at `at`.
    Delivered {
        /// When.
        at: Instant,
    },
    /// The last call failed, or the provider named another holder.
    Failed {
        /// The first failure of this run of failures.
        first: Instant,
        /// The last one.
        at: Instant,
        /// Calls failed in a row.
        attempts: u32,
        /// Whether another try may help (otherwise only a person can fix it).
        retryable: bool,
    },
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Move the VIPs here through the API, then ask who holds them.
    Call,
    /// Ask who holds them.
    Check,
    /// Stop whatever is under way and forget it: this host no longer holds them.
    Stop,
    /// Nothing now; decide again at this moment, if any.
    Wait(Option<Instant>),
}

/// Whether this host may move the VIPs to itself: they are bound here and the last decision holds
/// them for a majority's verdict (or an early claim of the leader's choice), and no release is
/// under way. Holding on through a minority's wait, a failover elsewhere or a hand claim is not
/// enough.
pub fn entitled(belief: Option<&Reason>, holding: bool, releasing: bool) -> bool {
    holding
        && !releasing
        && matches!(
            belief,
            Some(
                Reason::NamedHere { .. }
                    | Reason::EarlyClaim { .. }
                    | Reason::EarlyClaimPending { .. }
                    | Reason::Refresh
            )
        )
}

/// The step for `phase` at `now`.
pub fn step(entitled: bool, phase: Phase, now: Instant, s: Schedule) -> Step {
    match (entitled, phase) {
        (false, Phase::Idle) => Step::Wait(None),
        (false, _) => Step::Stop,
        (true, Phase::Idle) => Step::Call,
        // The I/O bounds both by the config's timeouts, and always answers.
        (true, Phase::Calling | Phase::Checking) => Step::Wait(None),
        (true, Phase::Delivered { at }) => {
            let due = at + s.verify_every;
            if now >= due { Step::Check } else { Step::Wait(Some(due)) }
        }
        (true, Phase::Failed { first, at, attempts, retryable }) => {
            let due = retry_at(first, at, attempts, retryable, s);
            if now >= due { Step::Call } else { Step::Wait(Some(due)) }
        }
    }
}

/// When a failed delivery is tried again.
pub fn retry_at(first: Instant, at: Instant, attempts: u32, retryable: bool, s: Schedule) -> Instant {
    if !retryable || at.saturating_duration_since(first) >= s.retry_for {
        return at + s.verify_every;
    }
    let wait = FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_RETRY);
    at + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schedule = Schedule { retry_for: Duration::from_secs(10), verify_every: Duration::from_secs(30) };

    fn named() -> Reason {
        Reason::NamedHere { master: "198.51.100.11:6379".into(), epoch: 3, answered: 3, configured: 3 }
    }

    #[test]
    fn only_a_majority_holder_is_entitled() {
        assert!(entitled(Some(&named()), true, false));
        assert!(entitled(Some(&Reason::EarlyClaim { replica: "r".into() }), true, false));
        assert!(!entitled(Some(&named()), false, false), "not bound here");
        assert!(!entitled(Some(&named()), true, true), "a release is under way");
        let minority = Reason::MinorityHolding { answered: 1, configured: 3, waited_ms: 100, timeout_ms: 5000 };
        assert!(!entitled(Some(&minority), true, false), "a minority's holder never calls");
        assert!(!entitled(Some(&Reason::FailoverElsewhere { toward: "x".into() }), true, false));
        assert!(!entitled(Some(&Reason::ByHand), true, false));
        assert!(!entitled(None, true, false));
    }

    #[test]
    fn calls_once_then_checks_every_period() {
        let t = Instant::now();
        assert_eq!(step(true, Phase::Idle, t, S), Step::Call);
        assert_eq!(step(true, Phase::Calling, t, S), Step::Wait(None));
        let d = Phase::Delivered { at: t };
        assert_eq!(step(true, d, t + Duration::from_secs(29), S), Step::Wait(Some(t + S.verify_every)));
        assert_eq!(step(true, d, t + S.verify_every, S), Step::Check);
    }

    #[test]
    fn letting_go_stops_at_once_and_never_calls() {
        let t = Instant::now();
        for p in [Phase::Calling, Phase::Checking, Phase::Delivered { at: t }] {
            assert_eq!(step(false, p, t, S), Step::Stop);
        }
        let f = Phase::Failed { first: t, at: t, attempts: 3, retryable: true };
        assert_eq!(step(false, f, t + Duration::from_secs(60), S), Step::Stop);
        assert_eq!(step(false, Phase::Idle, t, S), Step::Wait(None));
    }

    #[test]
    fn retries_double_within_the_bound_then_wait_for_the_check() {
        let t = Instant::now();
        let at = |n: u32, since: u64| retry_at(t, t + Duration::from_millis(since), n, true, S) - t;
        assert_eq!(at(1, 0), Duration::from_millis(200));
        assert_eq!(at(2, 200), Duration::from_millis(600));
        assert_eq!(at(3, 600), Duration::from_millis(1400));
        assert_eq!(at(9, 5000), Duration::from_millis(10_000), "capped at 5 s");
        assert_eq!(at(12, 10_000), Duration::from_secs(40), "past retry_for: at the next check");
        let f = Phase::Failed { first: t, at: t, attempts: 1, retryable: false };
        assert_eq!(
            step(true, f, t + Duration::from_secs(1), S),
            Step::Wait(Some(t + S.verify_every)),
            "a permission error waits for the check"
        );
    }
}
