//! Fail-fast in virtual time: the local master's Redis is killed on the host that holds the VIP,
//! and the daemon asks a sentinel of the majority to fail it over, or says why not.

use std::time::Duration;

use super::harness::{Redis, Sim, config, redis, sentinel};
use super::{failover, settled};
use crate::daemon::core::{AskOutcome, Effect, Metric};

const MS: Duration = Duration::from_millis(1);

fn fail_fast(on: bool) -> Sim {
    settled(Sim::new(1, config(&[], false, &format!("fail_fast = {on}"))))
}

/// The fail-fast metric outcomes, in order.
fn outcomes(sim: &Sim) -> Vec<&'static str> {
    sim.effects
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::Metric(Metric::FailFast { outcome, .. }) => Some(*outcome),
            _ => None,
        })
        .collect()
}

fn asked(sim: &Sim) -> Vec<(Duration, String)> {
    sim.failover_asks.iter().map(|(t, s)| (*t, s.to_string())).collect()
}

#[test]
fn a_killed_master_is_failed_over_about_100_ms_after_its_death_and_once() {
    let mut sim = fail_fast(true);
    assert!(sim.holding());
    let killed = sim.elapsed();
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(300));
    let asks = asked(&sim);
    assert_eq!(asks.len(), 1, "{asks:?}");
    let after = asks[0].0 - killed;
    assert!(after >= 100 * MS && after < 115 * MS, "asked {after:?} after the kill");
    assert_eq!(asks[0].1, sentinel(1).to_string(), "the first sentinel of the majority");
    assert_eq!(outcomes(&sim), ["trigger"]);
    let records = sim.records();
    let (_, why) = records.iter().find(|(code, _)| code == "fail_fast").expect("a decision record");
    assert!(why.contains("refused") && why.contains("2 replica"), "{why}");
    // Let go at once: a Redis restarted before the promotion must not be served.
    assert!(!sim.holding());
    assert!(sim.decisions().iter().any(|(_, code)| *code == "failing_over"), "{:?}", sim.decisions());
    failover(&mut sim, &sentinel(1), 2, Duration::from_millis(800));
    sim.run_for(Duration::from_secs(5));
    assert!(!sim.holding());
    assert_eq!(asked(&sim).len(), 1, "asked again: {:?}", asked(&sim));
}

#[test]
fn without_fail_fast_a_death_is_left_to_sentinel() {
    let mut sim = fail_fast(false);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_secs(2));
    assert!(asked(&sim).is_empty());
    assert!(outcomes(&sim).is_empty());
}

#[test]
fn a_redis_restarted_within_100_ms_is_no_death() {
    let mut sim = fail_fast(true);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(80));
    sim.restart(&redis(1));
    sim.run_for(Duration::from_secs(2));
    assert!(asked(&sim).is_empty(), "{:?}", asked(&sim));
    assert!(outcomes(&sim).is_empty(), "{:?}", outcomes(&sim));
    assert!(sim.holding(), "{:?}", sim.decisions());
}

#[test]
fn no_replica_sentinel_would_promote_means_no_failover_asked() {
    let mut sim = fail_fast(true);
    sim.unpromotable = vec![redis(2), redis(3)];
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(500));
    assert!(asked(&sim).is_empty());
    assert_eq!(outcomes(&sim), ["no_promotable_replica"]);
    assert!(sim.records().iter().any(|(code, _)| code == "fail_fast_refused"));
}

#[test]
fn one_healthy_replica_listed_by_a_majority_is_enough() {
    let mut sim = fail_fast(true);
    sim.unpromotable = vec![redis(3)];
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(300));
    assert_eq!(asked(&sim).len(), 1);
}

#[test]
fn a_host_that_cannot_see_a_majority_asks_nothing() {
    let mut sim = fail_fast(true);
    sim.sentinels_up(&[sentinel(2), sentinel(3)], false);
    sim.run_for(Duration::from_millis(100));
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(500));
    assert!(asked(&sim).is_empty());
    assert_eq!(outcomes(&sim), ["no_majority"]);
}

#[test]
fn a_failover_in_progress_is_not_asked_for_again() {
    let mut sim = fail_fast(true);
    sim.replica_event(&sentinel(2), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_millis(5));
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(300));
    assert!(asked(&sim).is_empty());
    assert_eq!(outcomes(&sim), ["failover_running"]);
}

#[test]
fn a_refusal_passes_to_the_next_sentinel_and_all_refusing_leaves_it_to_sentinel() {
    let mut sim = fail_fast(true);
    sim.failover_reply = AskOutcome::Refused("NOGOODSLAVE No suitable replica to promote".into());
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(500));
    let order: Vec<String> = asked(&sim).into_iter().map(|(_, s)| s).collect();
    assert_eq!(order, [sentinel(1), sentinel(2), sentinel(3)].map(|s| s.to_string()));
    assert_eq!(outcomes(&sim), ["trigger", "trigger", "trigger", "none_started"]);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(asked(&sim).len(), 3, "asked again for the same death");
}

/// What the edge answers for a sentinel in TILT (it is not sent `SENTINEL FAILOVER`).
fn tilt() -> AskOutcome {
    AskOutcome::Refused(crate::sentinel::tilt::Tilt::Since(Some(3)).to_string())
}

#[test]
fn a_sentinel_in_tilt_is_passed_over_at_once_and_the_next_starts_it() {
    let mut sim = fail_fast(true);
    sim.failover_reply_of = vec![(sentinel(1), tilt())];
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(200));
    let asks = asked(&sim);
    assert_eq!(
        asks.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        [sentinel(1), sentinel(2)].map(|s| s.to_string())
    );
    // Not after the 1 s bound for a selection: TILT is known at once.
    assert!(asks[1].0 - asks[0].0 < Duration::from_millis(50), "{asks:?}");
    sim.replica_event(&sentinel(2), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(asked(&sim).len(), 2, "{:?}", asked(&sim));
    assert_eq!(outcomes(&sim), ["trigger", "trigger"]);
}

#[test]
fn every_sentinel_in_tilt_leaves_it_to_sentinel_and_says_tilt() {
    let mut sim = fail_fast(true);
    sim.failover_reply = tilt();
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(500));
    assert_eq!(asked(&sim).len(), 3);
    assert_eq!(outcomes(&sim), ["trigger", "trigger", "trigger", "none_started"]);
    let said = sim.records().into_iter().find(|(code, _)| code == "fail_fast_refused").unwrap_or_default().1;
    assert!(said.contains("none started") && said.contains("TILT"), "{:?}", sim.records());
    // Not asked again: after TILT, Sentinel fails the dead master over on its own, and a forced
    // failover asked then would race it.
    sim.run_for(Duration::from_secs(40));
    assert_eq!(asked(&sim).len(), 3, "asked again for the same death");
    assert!(!sim.holding());
}

#[test]
fn an_accepted_failover_that_selects_no_one_in_time_passes_to_the_next() {
    let mut sim = fail_fast(true);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(200));
    sim.run_for(Duration::from_millis(1000));
    let asks = asked(&sim);
    assert_eq!(asks.len(), 2, "{asks:?}");
    let gap = asks[1].0 - asks[0].0;
    assert!(gap >= Duration::from_secs(1) && gap < Duration::from_millis(1010), "{gap:?}");
    // The second one starts it: the third is not asked.
    let r = redis(2);
    sim.replica_event(&sentinel(2), "+selected-slave", &r);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(asked(&sim).len(), 2, "{:?}", asked(&sim));
}

#[test]
fn an_accepted_failover_flagged_but_slow_to_select_is_not_asked_of_another() {
    // Sentinel flags the failover as it replies +OK; its selection comes at its next timer tick,
    // later than 1 s on a stalled machine. Asking the next then would start a second forced
    // failover racing the first. Full questions far apart (heartbeats make them 5 s apart; none
    // falls within this test's window), PINGs vouching between.
    let mut sim = fail_fast(true);
    sim.flag_on_accept = true;
    sim.answer_round = Duration::from_secs(60);
    sim.run_for(Duration::from_secs(2));
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(3000));
    assert_eq!(asked(&sim).len(), 1, "{:?}", asked(&sim));
    assert_eq!(outcomes(&sim), ["trigger"]);
    sim.replica_event(&sentinel(1), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(asked(&sim).len(), 1, "{:?}", asked(&sim));
}

#[test]
fn a_redis_back_during_the_failover_is_fenced_not_served_and_asks_nothing_again() {
    let mut sim = fail_fast(true);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(150));
    assert_eq!(asked(&sim).len(), 1);
    sim.restart(&redis(1));
    sim.run_for(Duration::from_millis(20));
    assert!(sim.redis[&redis(1)].fenced, "the Redis that came back takes writes");
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)), "the other replicas may sync from it");
    assert!(!sim.holding(), "the VIP is served from a Redis that came back empty: {:?}", sim.decisions());
    assert!(sim.redis_steps().iter().any(|(code, _)| *code == "came_back_replica"), "{:?}", sim.redis_steps());
    // It dies again: the same failover runs, nothing is asked again.
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(300));
    assert_eq!(asked(&sim).len(), 1);
    assert_eq!(outcomes(&sim), ["trigger", "asked_before"]);
    sim.restart(&redis(1));
    sim.run_for(Duration::from_millis(20));
    assert!(!sim.holding());
    // The failover completes: the Redis becomes the new master's replica, never claimed here.
    failover(&mut sim, &sentinel(1), 2, Duration::from_millis(800));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)));
    assert!(!sim.redis[&redis(1)].fenced, "demoted, then writes meet READONLY instead of a fence");
    assert!(!sim.holding());
}

#[test]
fn ten_quiet_minutes_ask_nothing() {
    let mut sim = fail_fast(true);
    sim.run_for(Duration::from_secs(600));
    assert!(asked(&sim).is_empty());
    assert!(outcomes(&sim).is_empty());
    assert!(sim.holding());
}

#[test]
fn one_sentinel_naming_this_host_cannot_make_its_dead_replica_trigger_a_failover() {
    // Host 2's Redis is a replica; one sentinel lies that it is the master, at a newer epoch.
    let mut sim = settled(Sim::new(2, config(&[], false, "fail_fast = true")));
    sim.sentinels_name(&redis(2), 5, &[sentinel(1), sentinel(2)]);
    sim.run_for(Duration::from_millis(600));
    sim.kill(&redis(2));
    sim.run_for(Duration::from_secs(2));
    assert!(asked(&sim).is_empty(), "{:?}", asked(&sim));
    assert!(outcomes(&sim).is_empty(), "{:?}", outcomes(&sim));
}

#[test]
fn a_redis_back_from_a_failover_no_sentinel_starts_stays_a_replica_and_unserved() {
    let mut sim = fail_fast(true);
    sim.failover_reply = AskOutcome::Unknown("no answer within 300 ms".into());
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(150));
    sim.restart(&redis(1));
    sim.run_for(Duration::from_secs(4));
    assert_eq!(outcomes(&sim), ["trigger", "trigger", "trigger", "none_started"]);
    // Its data set may be empty; the replicas hold the writes. Sentinel fails over a master that
    // reports itself a replica; meanwhile nothing is served from it.
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)));
    sim.run_for(Duration::from_secs(30));
    assert!(!sim.holding(), "{:?}", sim.decisions());
    let claims = sim.decisions().iter().filter(|(a, _)| *a == crate::policy::Act::Hold).count();
    assert_eq!(claims, 1, "claimed again: {:?}", sim.decisions());
}

#[test]
fn a_redis_in_a_crash_loop_is_fenced_each_time_it_comes_back() {
    let mut sim = fail_fast(true);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(150));
    sim.restart(&redis(1));
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)));
    // systemd restarts it again: it forgot REPLICAOF and the fence (neither is in redis.conf).
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(50));
    sim.restart(&redis(1));
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)), "the second comeback is a master");
    assert!(sim.redis[&redis(1)].fenced);
    assert_eq!(asked(&sim).len(), 1);
}

#[test]
fn no_answer_waits_for_evidence_before_asking_the_next_sentinel() {
    let mut sim = fail_fast(true);
    sim.failover_reply = AskOutcome::Unknown("no answer within 300 ms".into());
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(600));
    assert_eq!(asked(&sim).len(), 1, "a second forced failover may race the first");
    sim.run_for(Duration::from_millis(600));
    assert_eq!(asked(&sim).len(), 2);
}

#[test]
fn one_sentinel_naming_the_new_master_does_not_end_the_failover_here() {
    let mut sim = fail_fast(true);
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(150));
    sim.restart(&redis(1));
    sim.run_for(Duration::from_millis(20));
    // One sentinel (a liar, or the leader's first word) names another master at a newer epoch.
    sim.sentinels_name(&redis(3), 1, &[sentinel(2), sentinel(3)]);
    sim.run_for(Duration::from_secs(2));
    assert!(!sim.holding(), "{:?}", sim.decisions());
    assert!(sim.redis[&redis(1)].fenced);
}
