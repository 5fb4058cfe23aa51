//! A provider's API (`[masters.NAME.cloud]`) through failovers, cuts and lies: who calls, when,
//! and what becomes of a late answer. The provider here is a fake of its answers only (holder,
//! failure, latency); the wire protocols are tested against moto and the GCP and Hetzner fakes in
//! `tests/lab_cloud.rs`.

use std::time::Duration;

use super::harness::{HostPort, Sim, config, ip, redis, rogue, sentinel};
use super::{failover, settled};
use crate::cloud::{CallError, Delivered};
use crate::daemon::core::{DeliveryOutcome, Effect, Input, Metric};

const MS: Duration = Duration::from_millis(1);

/// The provider as one daemon sees it.
#[derive(Debug)]
pub struct FakeCloud {
    /// The host (1–3) the provider delivers the VIP to; 0: nobody.
    pub holder: u8,
    /// What the daemon asked: (time since start, "deliver" | "check" | "stop").
    pub log: Vec<(Duration, &'static str)>,
    /// Every move fails with this while set.
    pub fail: Option<CallError>,
    /// How long a call takes to answer.
    pub rtt: Duration,
    /// The reassignment race: right after this daemon's next move, another host's move lands.
    pub overtaken_by: Option<u8>,
}

impl Default for FakeCloud {
    fn default() -> FakeCloud {
        FakeCloud { holder: 1, log: Vec::new(), fail: None, rtt: 20 * MS, overtaken_by: None }
    }
}

impl FakeCloud {
    /// Carries out one of the core's provider effects on host `me` at `t`; the answer to deliver.
    pub fn carry(&mut self, me: u8, t: Duration, e: Effect) -> Option<(Duration, Input)> {
        let (master, generation, checked_only) = match e {
            Effect::Deliver { master, generation } => (master, generation, false),
            Effect::CheckDelivery { master, generation } => (master, generation, true),
            Effect::StopDelivery { .. } => {
                self.log.push((t, "stop"));
                return None;
            }
            other => panic!("not a provider effect: {other:?}"),
        };
        self.log.push((t, if checked_only { "check" } else { "deliver" }));
        let outcome = match &self.fail {
            Some(e) if !checked_only => DeliveryOutcome::Failed(e.clone()),
            _ => {
                if !checked_only {
                    self.holder = self.overtaken_by.take().unwrap_or(me);
                }
                let holder = if self.holder == 0 { "nobody".into() } else { format!("eni-host{}", self.holder) };
                DeliveryOutcome::Answered(Delivered {
                    here: self.holder == me,
                    holder,
                    request_ids: vec![format!("req-{generation}")],
                })
            }
        };
        Some((self.rtt, Input::Delivery { master, generation, checked_only, outcome }))
    }

    /// When the daemon asked for `what`.
    pub fn times(&self, what: &str) -> Vec<Duration> {
        self.log.iter().filter(|(_, w)| *w == what).map(|(t, _)| *t).collect()
    }
}

/// A config with an AWS secondary-IP table (checked every `verify_ms`), early claim as asked,
/// and these extra sentinels.
fn cloud_config(extra: &[HostPort], early_claim: bool, verify_ms: u64) -> std::sync::Arc<crate::config::Config> {
    let table = format!(
        "[masters.mymaster.cloud]\nprovider = \"aws\"\nregion = \"us-east-1\"\nverify_every_ms = {verify_ms}\nretry_for_ms = 10000\n"
    );
    config(extra, early_claim, &table)
}

/// The daemon's word on delivery in `vipctl status`.
fn delivery(sim: &Sim) -> String {
    let status = sim.core.status(sim.now);
    status.masters[0].delivery.clone().expect("a master with a cloud table shows its delivery")
}

/// The last `vipctl_vip_delivered` the daemon set.
fn delivered_metric(sim: &Sim) -> Option<bool> {
    sim.effects.iter().rev().find_map(|(_, e)| match e {
        Effect::Metric(Metric::Delivered { delivered, .. }) => Some(*delivered),
        _ => None,
    })
}

fn throttled() -> CallError {
    CallError::new("AssignPrivateIpAddresses", "RequestLimitExceeded", Some("req-x".into()), true)
        .with_code("RequestLimitExceeded")
}

#[test]
fn the_master_binds_then_calls_once_and_only_checks_after() {
    let mut sim = Sim::new(1, cloud_config(&[], false, 30_000));
    sim.cloud.holder = 0;
    sim.run_for(Duration::from_secs(65));
    let bound = sim.vip_log[0].0;
    let calls = sim.cloud.times("deliver");
    assert_eq!(calls.len(), 1, "{:?}", sim.cloud.log);
    assert!(calls[0] >= bound, "called at {:?}, before the VIP was bound at {bound:?}", calls[0]);
    assert_eq!(sim.cloud.times("check").len(), 2, "a check every 30 s: {:?}", sim.cloud.log);
    assert_eq!(sim.cloud.holder, 1);
    assert!(
        delivery(&sim).starts_with("delivered (AWS secondary private IP; the provider names eni-host1"),
        "{}",
        delivery(&sim)
    );
    assert_eq!(delivered_metric(&sim), Some(true));
}

#[test]
fn replicas_never_call() {
    for me in [2, 3] {
        let mut sim = settled(Sim::new(me, cloud_config(&[], true, 1000)));
        sim.run_for(Duration::from_secs(10));
        assert!(sim.cloud.log.is_empty(), "host {me}: {:?}", sim.cloud.log);
        assert_eq!(delivery(&sim), "AWS secondary private IP: not held here");
    }
}

#[test]
fn in_a_failover_the_new_master_calls_and_the_old_one_stops_and_ignores_its_late_answer() {
    // The old master's check is under way (answers in 400 ms) when the failover lets it go.
    let mut old = settled(Sim::new(1, cloud_config(&[], false, 1000)));
    old.run_for(Duration::from_millis(950));
    old.cloud.rtt = 400 * MS;
    let mut new = settled(Sim::new(2, cloud_config(&[], true, 1000)));
    new.run_for(Duration::from_millis(950));
    for sim in [&mut old, &mut new] {
        failover(sim, &sentinel(2), 2, Duration::from_millis(800));
        sim.run_for(Duration::from_secs(3));
    }
    assert!(!old.holding() && new.holding());
    assert_eq!(old.cloud.times("deliver").len(), 1, "the old master called again: {:?}", old.cloud.log);
    let released = old.vip_log.iter().find(|(_, b)| !b).expect("released").0;
    let stop = old.cloud.times("stop");
    assert!(!stop.is_empty() && stop[0] <= released, "stopped at {stop:?}, released at {released:?}");
    assert!(
        old.cloud.log.iter().all(|(t, w)| *t <= stop[0] || *w == "stop"),
        "asked after letting go: {:?}",
        old.cloud.log
    );
    // Its check's answer (here: true) came after the stop and was ignored.
    assert_eq!(delivery(&old), "AWS secondary private IP: not held here");
    assert_eq!(delivered_metric(&old), Some(false));
    // The new master called once it held the VIP (early claim at the promotion).
    let bound = new.vip_log[0].0;
    let calls = new.cloud.times("deliver");
    assert_eq!(calls.len(), 1, "{:?}", new.cloud.log);
    assert!(calls[0] >= bound && calls[0] - bound < 5 * MS, "called {:?} after binding", calls[0] - bound);
    assert_eq!(new.cloud.holder, 2);
    assert!(delivery(&new).starts_with("delivered"), "{}", delivery(&new));
}

#[test]
fn a_holder_cut_off_from_the_majority_never_calls_and_never_takes_the_address_back() {
    let mut sim = settled(Sim::new(1, cloud_config(&[], false, 1000)));
    sim.run_for(Duration::from_secs(1));
    let cut = sim.elapsed();
    sim.sentinels_up(&[sentinel(2), sentinel(3)], false);
    sim.run_for(Duration::from_millis(200));
    // Still bound (the minority timeout has not run out) but no longer this host's to deliver.
    assert!(sim.holding());
    assert!(delivery(&sim).starts_with("bound, not delivered: not this host's to deliver"), "{}", delivery(&sim));
    // The majority fails over to host 2, whose daemon moves the address.
    sim.cloud.holder = 2;
    sim.run_for(Duration::from_secs(3));
    assert!(!sim.holding());
    sim.promote(&redis(2));
    sim.sentinels_name(&redis(2), 1, &[sentinel(1)]);
    sim.sentinels_up(&[sentinel(2), sentinel(3)], true);
    sim.run_for(Duration::from_secs(5));
    let after: Vec<_> = sim.cloud.log.iter().filter(|(t, w)| *t > cut && *w != "stop").collect();
    assert!(after.is_empty(), "called or asked while cut off or after: {after:?}");
    assert_eq!(sim.cloud.holder, 2, "the stale holder took the address back");
}

#[test]
fn a_lying_sentinel_alone_cannot_make_a_replica_call() {
    let mut sim = settled(Sim::new(2, cloud_config(&[rogue()], true, 1000)));
    let liar = sim.sentinels.get_mut(&rogue()).unwrap();
    liar.master = redis(2);
    liar.epoch = 9;
    for kind in
        ["+selected-slave", "+failover-state-send-slaveof-noone", "+failover-state-wait-promotion", "+promoted-slave"]
    {
        sim.replica_event(&rogue(), kind, &redis(2));
        sim.run_for(Duration::from_millis(50));
    }
    sim.event(&rogue(), "+switch-master", &format!("mymaster {} 6379 {} 6379", ip(1), ip(2)));
    sim.run_for(Duration::from_secs(5));
    assert!(!sim.holding());
    assert!(sim.cloud.log.is_empty(), "{:?}", sim.cloud.log);
    assert_eq!(sim.cloud.holder, 1);
}

#[test]
fn the_reassignment_race_is_caught_by_the_question_after_the_call_and_retried() {
    let mut sim = Sim::new(1, cloud_config(&[], false, 30_000));
    sim.cloud.holder = 3;
    sim.cloud.overtaken_by = Some(3);
    sim.run_for(Duration::from_secs(2));
    let calls = sim.cloud.times("deliver");
    assert_eq!(calls.len(), 2, "{:?}", sim.cloud.log);
    assert!(calls[1] - calls[0] >= 200 * MS, "retried {:?} after the first call", calls[1] - calls[0]);
    assert_eq!(sim.cloud.holder, 1);
    assert!(delivery(&sim).starts_with("delivered"), "{}", delivery(&sim));
}

#[test]
fn a_check_that_names_another_holder_calls_again_at_once() {
    let mut sim = settled(Sim::new(1, cloud_config(&[], false, 30_000)));
    sim.run_for(Duration::from_secs(1));
    // A late call of an old holder (in flight when it let go) lands.
    sim.cloud.holder = 3;
    sim.run_for(Duration::from_secs(30));
    let check = *sim.cloud.times("check").first().expect("checked");
    let calls = sim.cloud.times("deliver");
    assert_eq!(calls.len(), 2, "{:?}", sim.cloud.log);
    assert!(
        calls[1] > check && calls[1] - check <= sim.cloud.rtt + MS,
        "called {:?} after the check",
        calls[1] - check
    );
    assert_eq!(sim.cloud.holder, 1);
}

#[test]
fn failures_back_off_within_the_bound_then_wait_for_the_check() {
    let mut sim = Sim::new(1, cloud_config(&[], false, 30_000));
    sim.cloud.holder = 0;
    sim.cloud.fail = Some(throttled());
    sim.run_for(Duration::from_secs(20));
    let calls = sim.cloud.times("deliver");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((4..=8).contains(&calls.len()), "{} calls in 20 s: {gaps:?}", calls.len());
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "the waits do not grow: {gaps:?}");
    assert!(gaps.iter().all(|g| *g <= Duration::from_secs(5) + sim.cloud.rtt + MS), "{gaps:?}");
    let last = *calls.last().expect("called");
    // A retry starts within retry_for (10 s) and waits at most 5 s; then only the check calls.
    assert!(last <= Duration::from_secs(15) + sim.cloud.rtt, "retried past retry_for: {calls:?}");
    let shown = delivery(&sim);
    assert!(
        shown.starts_with("bound, not delivered: AssignPrivateIpAddresses: RequestLimitExceeded (request id req-x)"),
        "{shown}"
    );
    assert_eq!(delivered_metric(&sim), Some(false));
    // The provider recovers: the next check's call delivers.
    sim.cloud.fail = None;
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.cloud.holder, 1);
    assert!(delivery(&sim).starts_with("delivered"), "{}", delivery(&sim));
}

#[test]
fn an_error_only_a_person_can_fix_is_not_hammered() {
    let mut sim = Sim::new(1, cloud_config(&[], false, 30_000));
    let denied = CallError::new("AssignPrivateIpAddresses", "UnauthorizedOperation", Some("req-d".into()), false);
    sim.cloud.fail = Some(denied.with_code("UnauthorizedOperation"));
    sim.run_for(Duration::from_secs(25));
    assert_eq!(sim.cloud.times("deliver").len(), 1, "{:?}", sim.cloud.log);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.cloud.times("deliver").len(), 2, "tried again at the check: {:?}", sim.cloud.log);
}

#[test]
fn an_answer_to_a_stopped_or_older_call_is_ignored() {
    let mut sim = settled(Sim::new(1, cloud_config(&[], false, 30_000)));
    sim.run_for(Duration::from_secs(1));
    let current = sim.core.masters["mymaster"].delivery.generation;
    // An answer of the call before the current one, naming another holder, arrives late.
    let late = Delivered { here: false, holder: "eni-host3".into(), request_ids: vec![] };
    let input = Input::Delivery {
        master: "mymaster".into(),
        generation: current - 1,
        checked_only: true,
        outcome: DeliveryOutcome::Answered(late),
    };
    sim.deliver(MS, input);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.cloud.times("deliver").len(), 1, "a stale answer set off a call: {:?}", sim.cloud.log);
    assert!(delivery(&sim).starts_with("delivered"), "{}", delivery(&sim));
}
