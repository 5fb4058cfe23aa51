//! The failovers of the lab tests, as the old master's and the new master's daemons see them.

use std::time::Duration;

use super::harness::{Redis, Sim, config, redis, sentinel};
use super::{failover, settled};
use crate::fence::Step;
use crate::policy::Act;

const MS: Duration = Duration::from_millis(1);

/// When the VIP was released on this host, after the start.
fn released_at(sim: &Sim) -> Option<Duration> {
    sim.vip_log.iter().find(|(_, bound)| !bound).map(|(t, _)| *t)
}

#[test]
fn the_master_claims_once_its_redis_says_master() {
    let sim = settled(Sim::new(1, config(&[], false, "")));
    assert!(sim.holding());
    assert_eq!(sim.decisions(), [(Act::Hold, "named_here")]);
    assert!(sim.contacted.iter().any(|(r, what)| *r == redis(1) && what == "ROLE"), "asked its Redis first");
}

#[test]
fn a_planned_switchover_fences_lets_go_at_the_promotion_and_demotes_on_agreement() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    let start = sim.elapsed();
    failover(&mut sim, &sentinel(2), 2, Duration::from_millis(800));
    sim.run_for(Duration::from_millis(200));
    // Fenced at the selection, before the promotion 100 ms later.
    let (t, r, on) = sim.fence_log[0].clone();
    assert!(on && r == redis(1) && t - start < 2 * MS, "fenced at {:?}", t - start);
    // Let go within a few milliseconds of the promotion (by the watch of the chosen replica), not
    // at the leader's notice 800 ms later.
    let released = released_at(&sim).expect("released");
    let promoted = start + Duration::from_millis(100);
    assert!(
        released >= promoted && released - promoted < 5 * MS,
        "released {:?} after the promotion",
        released - promoted
    );
    // Stayed out, though the sentinels still named this host, and became a replica once a
    // majority named the new master; the fence lasted until then (no write acknowledged).
    assert!(!sim.holding());
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)));
    let steps = sim.redis_steps();
    assert_eq!(steps.first().map(|s| s.0), Some("fence_writes"), "{steps:?}");
    assert!(
        steps.iter().any(|(code, s)| *code == "demote" && *s == [Step::ReplicaOf(redis(2)), Step::Lift]),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|(code, _)| *code == "lift_fence"), "lifted before the demotion: {steps:?}");
    assert!(!sim.redis[&redis(1)].fenced);
    let claims = sim.decisions().iter().filter(|(a, _)| *a == Act::Hold).count();
    assert_eq!(claims, 1, "claimed back during the failover: {:?}", sim.decisions());
}

#[test]
fn early_claim_binds_at_the_promotion_and_holds_until_the_sentinels_catch_up() {
    let mut sim = settled(Sim::new(2, config(&[], true, "")));
    assert!(!sim.holding());
    let start = sim.elapsed();
    failover(&mut sim, &sentinel(2), 2, Duration::from_millis(800));
    let (t, bound) = sim.vip_log[0];
    let promoted = start + Duration::from_millis(100);
    assert!(bound && t >= promoted && t - promoted < 5 * MS, "bound {:?} after the promotion", t - promoted);
    assert_eq!(sim.decisions()[0], (Act::Hold, "early_claim"));
    // The old master's last announcements meet a defence, not a yield.
    sim.claim_from(1);
    sim.run_for(Duration::from_millis(10));
    assert!(sim.holding());
    sim.run_for(Duration::from_secs(2));
    assert!(sim.holding(), "{:?}", sim.decisions());
    assert!(!sim.decisions().iter().any(|(a, _)| *a == Act::Release));
}

#[test]
fn a_killed_master_keeps_its_l2_vip_until_the_promotion_and_lets_go_then() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(1200));
    // On one segment a dead Redis behind the VIP answers clients at once (connection refused),
    // which beats a silent address: the VIP stays until the failover.
    assert!(sim.holding());
    let start = sim.elapsed();
    failover(&mut sim, &sentinel(3), 2, Duration::from_millis(800));
    let released = released_at(&sim).expect("released");
    assert!(released - start < Duration::from_millis(110), "released {:?} after the selection", released - start);
    assert!(sim.fence_log.is_empty(), "a dead Redis needs no fence");
}

#[test]
fn a_killed_routed_master_keeps_its_route_until_the_promotion_and_withdraws_it_then() {
    let text = format!(
        "sentinels = [\"{}\", \"{}\", \"{}\"]\n[masters.mymaster]\nmode = \"routed\"\nvips = [\"198.51.100.100/32\"]\ninterface = \"eth0\"\n",
        sentinel(1),
        sentinel(2),
        sentinel(3)
    );
    let cfg = std::sync::Arc::new(crate::config::Config::parse(std::path::Path::new("r.toml"), &text).unwrap());
    let mut sim = settled(Sim::new(1, cfg));
    assert!(sim.holding());
    sim.kill(&redis(1));
    sim.run_for(Duration::from_millis(1200));
    // Clients routed here get a refusal at once; without the route they would time out (a router
    // rate-limits its ICMP unreachables): the route stays until the promotion.
    assert!(sim.holding(), "{:?}", sim.decisions());
    let start = sim.elapsed();
    failover(&mut sim, &sentinel(3), 2, Duration::from_millis(800));
    let released = released_at(&sim).expect("released");
    let promoted = start + Duration::from_millis(100);
    assert!(
        released >= promoted && released - promoted < 5 * MS,
        "withdrawn {:?} after the promotion",
        released - promoted
    );
}

#[test]
fn a_cut_off_master_lets_go_after_the_minority_timeout() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    let start = sim.elapsed();
    for n in 2..=3 {
        sim.sentinels.get_mut(&sentinel(n)).unwrap().up = false;
    }
    sim.run_for(Duration::from_secs(2));
    let released = released_at(&sim).expect("released");
    // The clock runs from the last majority (down-after 1000 ms), whenever the loss is noticed.
    assert!(released - start <= Duration::from_millis(1100), "released {:?} after the cut", released - start);
    assert!(sim.decisions().contains(&(Act::Release, "minority_timeout")));
}

#[test]
fn an_abort_before_the_promotion_lifts_the_fence_and_stops_the_early_claim() {
    let mut old = settled(Sim::new(1, config(&[], false, "")));
    let mut new = settled(Sim::new(2, config(&[], true, "")));
    for sim in [&mut old, &mut new] {
        sim.replica_event(&sentinel(2), "+selected-slave", &redis(2));
        sim.run_for(Duration::from_millis(50));
        sim.event(&sentinel(2), "-failover-abort-slave-timeout", "master mymaster 198.51.100.11 6379");
        sim.run_for(Duration::from_millis(5));
        // A promotion after the abort (Sentinel converts it back later) must not be followed.
        sim.promote(&redis(2));
        sim.run_for(Duration::from_secs(1));
    }
    assert!(old.holding() && !new.holding());
    assert_eq!(old.redis_steps().iter().map(|s| s.0).collect::<Vec<_>>(), ["fence_writes", "lift_fence"]);
    assert!(old.fenced_for(&redis(1)) < Duration::from_millis(60));
    assert!(new.decisions().is_empty(), "{:?}", new.decisions());
}

/// When the fence went on and off: (time since start, on).
fn fence_changes(sim: &Sim) -> Vec<(Duration, bool)> {
    sim.fence_log.iter().map(|(t, _, on)| (*t, *on)).collect()
}

#[test]
fn a_master_cut_off_from_the_majority_fences_at_once_and_is_demoted_after_the_heal() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    let cut = sim.elapsed();
    sim.sentinels_up(&[sentinel(2), sentinel(3)], false);
    sim.run_for(Duration::from_millis(100));
    // Fenced as soon as the heartbeats tell, before anything else changes.
    let changes = fence_changes(&sim);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].1 && changes[0].0 - cut <= super::harness::SILENCE + 2 * MS,
        "fenced {:?} after the cut",
        changes[0].0 - cut
    );
    assert!(sim.holding(), "the VIP goes only at the minority timeout");
    assert_eq!(sim.redis_steps()[0].0, "fence_on_doubt");
    // The minority timeout lets the VIP go; the fence stays.
    sim.run_for(Duration::from_millis(1200));
    assert!(!sim.holding());
    assert!(sim.redis[&redis(1)].fenced, "the fence went with the VIP");
    // The majority failed over meanwhile; after the heal the old master follows the new one.
    sim.promote(&redis(2));
    sim.sentinels_name(&redis(2), 1, &[sentinel(1)]);
    sim.sentinels_up(&[sentinel(2), sentinel(3)], true);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.redis[&redis(1)].state, Redis::Replica(redis(2)));
    assert!(!sim.redis[&redis(1)].fenced);
    assert!(sim.redis_steps().iter().any(|(c, s)| *c == "demote" && *s == [Step::ReplicaOf(redis(2)), Step::Lift]));
}

#[test]
fn a_short_loss_of_the_majority_fences_and_lifts_without_moving_the_vip() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    sim.sentinels_up(&[sentinel(2), sentinel(3)], false);
    sim.run_for(Duration::from_millis(300));
    sim.sentinels_up(&[sentinel(2), sentinel(3)], true);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.holding());
    let changes = fence_changes(&sim);
    assert_eq!(changes.iter().map(|c| c.1).collect::<Vec<_>>(), [true, false], "{changes:?}");
    let fenced = sim.fenced_for(&redis(1));
    assert!(fenced < Duration::from_millis(300), "fenced {fenced:?}");
    assert_eq!(sim.decisions(), [(Act::Hold, "named_here")]);
}

#[test]
fn one_sentinel_lost_or_restarted_one_at_a_time_never_fences() {
    let mut sim = settled(Sim::new(1, config(&[], false, "")));
    // A rolling restart: each sentinel away 800 ms, back before the next goes.
    for n in 1..=3 {
        sim.sentinels_up(&[sentinel(n)], false);
        sim.run_for(Duration::from_millis(800));
        sim.sentinels_up(&[sentinel(n)], true);
        sim.run_for(Duration::from_millis(400));
    }
    // One gone for good.
    sim.sentinels_up(&[sentinel(3)], false);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.fence_log.is_empty(), "{:?}", sim.fence_log);
    assert!(sim.holding());
    assert_eq!(sim.decisions(), [(Act::Hold, "named_here")]);
}

#[test]
fn a_replica_host_cut_off_fences_nothing() {
    // The daemon on host 2 holds nothing: a loss of the majority there is no doubt about writes.
    let mut sim = settled(Sim::new(2, config(&[], false, "")));
    sim.sentinels_up(&[sentinel(1), sentinel(3)], false);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.effects.iter().all(|(_, e)| !matches!(e, crate::daemon::core::Effect::Redis { .. })));
}
