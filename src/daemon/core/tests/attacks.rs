//! One lying sentinel among honest ones: what it tried against vipctl 0.1.0, and what it gets now.

use std::time::Duration;

use proptest::prelude::*;

use super::harness::{HostPort, Sim, config, ip, redis, rogue, sentinel};
use super::{failover, settled};
use crate::daemon::core::Effect;
use crate::policy::Act;

/// A rogue in the list beside the three honest sentinels (four configured: three make a majority).
fn with_rogue(me: u8, early_claim: bool) -> Sim {
    settled(Sim::new(me, config(&[rogue()], early_claim, "")))
}

/// The healthy master's fence on a forged selection lasts at most this (a quarter of down-after).
const BOUND: Duration = Duration::from_millis(250);

#[test]
fn a_forged_selection_fences_the_healthy_master_briefly_and_only_once() {
    let mut sim = with_rogue(1, false);
    for _ in 0..10 {
        sim.replica_event(&rogue(), "+selected-slave", &redis(2));
        sim.run_for(Duration::from_millis(400));
    }
    sim.run_for(Duration::from_secs(1));
    let fenced = sim.fenced_for(&redis(1));
    assert!(fenced > Duration::ZERO && fenced <= BOUND + Duration::from_millis(2), "fenced {fenced:?}");
    assert_eq!(sim.fence_log.iter().filter(|(_, _, on)| *on).count(), 1, "fenced again: {:?}", sim.fence_log);
    assert!(sim.holding(), "the master gave the VIP up");
    assert_eq!(sim.decisions(), [(Act::Hold, "named_here")]);
    assert!(!sim.redis_steps().iter().any(|(code, _)| *code == "demote"));
}

#[test]
fn a_forged_selection_and_a_forged_claim_do_not_make_the_master_yield() {
    let mut sim = with_rogue(1, false);
    sim.replica_event(&rogue(), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_millis(5));
    // One gratuitous ARP from host 2's MAC, as 0.1.0 met it with a yield and 30 s out.
    sim.claim_from(2);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.holding());
    let d = sim.decisions();
    assert!(d.contains(&(Act::Announce, "defend")), "{d:?}");
    assert!(!d.iter().any(|(a, _)| *a == Act::Release), "{d:?}");
    assert!(sim.core.masters["mymaster"].memory.elsewhere.is_none());
}

#[test]
fn a_forged_abort_does_not_lift_the_fence_of_an_honest_switchover() {
    for after_promotion in [false, true] {
        let mut sim = with_rogue(1, false);
        let leader = sentinel(2);
        sim.replica_event(&leader, "+selected-slave", &redis(2));
        sim.run_for(Duration::from_millis(100));
        sim.promote(&redis(2));
        sim.replica_event(&leader, "+failover-state-wait-promotion", &redis(2));
        if after_promotion {
            sim.run_for(Duration::from_millis(800));
            sim.sentinels.get_mut(&leader).unwrap().master = redis(2);
            sim.sentinels.get_mut(&leader).unwrap().epoch = 1;
            sim.replica_event(&leader, "+promoted-slave", &redis(2));
        }
        sim.run_for(Duration::from_millis(20));
        sim.event(&rogue(), "-failover-abort-not-elected", &format!("master mymaster {} 6379", ip(1)));
        sim.run_for(Duration::from_millis(500));
        assert!(sim.redis[&redis(1)].fenced, "the forged abort lifted the fence (after promotion: {after_promotion})");
        // The rest of the failover: the old master is demoted, never writable in between.
        sim.sentinels_name(&redis(2), 1, &[rogue()]);
        sim.run_for(Duration::from_secs(1));
        let steps = sim.redis_steps();
        assert!(!steps.iter().any(|(code, _)| *code == "lift_fence"), "{steps:?}");
        assert!(steps.iter().any(|(code, _)| *code == "demote"), "{steps:?}");
        assert_eq!(sim.fence_log.len(), 2, "fenced once, then demoted: {:?}", sim.fence_log);
    }
}

#[test]
fn a_forged_abort_from_a_relay_of_the_leader_keeps_the_fence() {
    // The rogue relays the leader's own events, so the fence may rest on the rogue's copy first.
    let mut sim = with_rogue(1, false);
    sim.replica_event(&rogue(), "+selected-slave", &redis(2));
    sim.replica_event(&sentinel(2), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_millis(100));
    sim.promote(&redis(2));
    sim.run_for(Duration::from_millis(20));
    sim.event(&rogue(), "-failover-abort-not-elected", &format!("master mymaster {} 6379", ip(1)));
    sim.run_for(Duration::from_millis(500));
    assert!(sim.redis[&redis(1)].fenced);
    let steps: Vec<&str> = sim.redis_steps().iter().map(|s| s.0).collect();
    assert_eq!(steps, ["fence_writes"], "lifted and fenced again, which may reach Redis in either order");
}

#[test]
fn a_forged_abort_does_not_stop_the_early_claim_of_the_new_master() {
    let mut sim = with_rogue(2, true);
    sim.replica_event(&rogue(), "+selected-slave", &redis(2));
    sim.replica_event(&sentinel(2), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_millis(50));
    sim.event(&rogue(), "-failover-abort-not-elected", &format!("master mymaster {} 6379", ip(1)));
    sim.run_for(Duration::from_millis(50));
    sim.promote(&redis(2));
    sim.run_for(Duration::from_millis(20));
    assert!(sim.holding(), "{:?}", sim.decisions());
    assert_eq!(sim.decisions()[0], (Act::Hold, "early_claim"));
}

#[test]
fn credentials_go_only_to_replicas_a_majority_lists() {
    let mut sim = with_rogue(1, true);
    // A port an unprivileged local user listens on, named as the selected replica on this host.
    let trap = HostPort { host: ip(1), port: 7777 };
    for kind in ["+selected-slave", "+failover-state-wait-promotion", "+promoted-slave"] {
        sim.replica_event(&rogue(), kind, &trap);
    }
    // And a fake replica elsewhere that only the rogue lists.
    let fake = HostPort { host: ip(3), port: 7777 };
    sim.sentinels.get_mut(&rogue()).unwrap().replicas.push(fake.clone());
    sim.run_for(Duration::from_millis(600));
    sim.replica_event(&rogue(), "+selected-slave", &fake);
    sim.run_for(Duration::from_secs(2));
    let touched: Vec<_> = sim.contacted.iter().filter(|(r, _)| r.port == 7777).collect();
    assert!(touched.is_empty(), "contacted {touched:?}");
    assert!(sim.fence_log.is_empty(), "fenced toward a replica nobody else lists");
}

#[test]
fn events_count_only_for_masters_their_sentinel_serves() {
    // The rogue is configured for another master only; its events about mymaster are ignored.
    let other = format!(
        "[masters.other]\nvips = [\"198.51.100.101/24\"]\ninterface = \"eth0\"\nsentinels = [\"{}\"]\n",
        rogue()
    );
    let mut sim = settled(Sim::new(1, config(&[], false, &other)));
    sim.replica_event(&rogue(), "+selected-slave", &redis(2));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.fence_log.is_empty(), "{:?}", sim.fence_log);
    let nudged_for_mymaster = sim
        .effects
        .iter()
        .any(|(_, e)| matches!(e, Effect::Nudge { sentinels, .. } if sentinels.contains(&sentinel(1))));
    assert!(!nudged_for_mymaster || sim.effects.iter().all(|(_, e)| !matches!(e, Effect::Watch { .. })));
    assert!(sim.core.masters["mymaster"].failover.selections.is_empty());
}

#[test]
fn a_lying_leader_alone_cannot_demote_the_master() {
    // The rogue names host 2 master at a newer epoch and publishes the whole failover: the fence
    // rests on its word and runs out; no demotion without a majority at the newer epoch.
    let mut sim = with_rogue(1, false);
    let r = sim.sentinels.get_mut(&rogue()).unwrap();
    r.master = redis(2);
    r.epoch = 7;
    for kind in ["+selected-slave", "+failover-state-wait-promotion", "+promoted-slave"] {
        sim.replica_event(&rogue(), kind, &redis(2));
    }
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.redis[&redis(1)].state, super::harness::Redis::Master);
    assert!(!sim.redis_steps().iter().any(|(code, _)| *code == "demote"));
    assert!(sim.fenced_for(&redis(1)) <= BOUND + Duration::from_millis(2));
    assert!(sim.holding(), "let go on one sentinel's newer epoch: {:?}", sim.decisions());
}

#[test]
fn one_sentinel_naming_another_master_at_a_huge_epoch_moves_no_vip() {
    let lie = |sim: &mut Sim| {
        let r = sim.sentinels.get_mut(&rogue()).unwrap();
        r.master = redis(2);
        r.epoch = 1_000_000;
    };
    // The holder asks the named master, which says it is a replica: it keeps the VIP.
    let mut holder = with_rogue(1, false);
    lie(&mut holder);
    holder.run_for(Duration::from_secs(3));
    assert!(holder.holding(), "{:?}", holder.decisions());
    assert!(holder.contacted.iter().any(|(r, what)| *r == redis(2) && what == "ROLE"));
    // The named host asks its own Redis, a replica: it claims nothing.
    let mut named = with_rogue(2, true);
    lie(&mut named);
    named.run_for(Duration::from_secs(3));
    assert!(!named.holding() && named.decisions().is_empty(), "{:?}", named.decisions());
    // An address no majority lists is not even asked.
    let mut trap = with_rogue(1, false);
    let r = trap.sentinels.get_mut(&rogue()).unwrap();
    r.master = HostPort { host: ip(3), port: 7777 };
    r.epoch = 1_000_000;
    trap.run_for(Duration::from_secs(3));
    assert!(trap.holding());
    assert!(!trap.contacted.iter().any(|(r, _)| r.port == 7777), "{:?}", trap.contacted);
}

#[test]
fn a_real_failover_is_still_followed_with_a_rogue_in_the_list() {
    let mut sim = with_rogue(1, false);
    failover(&mut sim, &sentinel(3), 2, Duration::from_millis(800));
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.holding());
    assert_eq!(sim.redis[&redis(1)].state, super::harness::Redis::Replica(redis(2)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Whatever a lying sentinel publishes, and whenever, while no replica is promoted: the master
    /// keeps its VIP, is never demoted, and its writes are fenced for one bound at most.
    #[test]
    fn a_liar_alone_moves_nothing(events in prop::collection::vec((0usize..8, 0u8..4, 0u64..600), 1..24)) {
        let mut sim = with_rogue(1, true);
        let kinds = [
            "+selected-slave", "+failover-state-wait-promotion", "+promoted-slave", "+switch-master",
            "-failover-abort-not-elected", "+failover-end", "+odown", "+sdown",
        ];
        for (k, target, gap) in events {
            let r = match target { 0 => redis(1), 1 => redis(2), 2 => redis(3), _ => HostPort { host: ip(2), port: 7777 } };
            let kind = kinds[k];
            if kind == "+switch-master" {
                sim.event(&rogue(), kind, &format!("mymaster {} 6379 {} {}", ip(1), r.host, r.port));
            } else if kind.starts_with('-') || kind.starts_with("+failover-end") || kind.ends_with("down") {
                sim.event(&rogue(), kind, &format!("master mymaster {} 6379", ip(1)));
            } else {
                sim.replica_event(&rogue(), kind, &r);
            }
            if target < 4 && gap % 3 == 0 {
                sim.claim_from(target.clamp(2, 3));
            }
            sim.run_for(Duration::from_millis(gap));
        }
        sim.run_for(Duration::from_secs(1));
        prop_assert!(sim.holding(), "{:?}", sim.decisions());
        prop_assert_eq!(sim.redis[&redis(1)].state.clone(), super::harness::Redis::Master);
        prop_assert!(sim.fenced_for(&redis(1)) <= BOUND + Duration::from_millis(2), "fenced {:?}", sim.fenced_for(&redis(1)));
        prop_assert!(!sim.contacted.iter().any(|(r, _)| r.port == 7777));
    }
}
