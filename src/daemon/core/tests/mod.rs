//! Sequences of events played through the core in virtual time ([`harness::Sim`]): the failovers
//! the lab tests run for real (kill, partition, switchover, abort, early claim), and the attacks
//! of a lying sentinel.

mod attacks;
mod cloud;
mod fail_fast;
mod harness;
mod sequences;

use std::time::Duration;

use harness::{HostPort, Sim, redis};

/// Lets the daemon settle: it claims the VIP if its host runs the master.
fn settled(mut sim: Sim) -> Sim {
    sim.run_for(Duration::from_millis(600));
    sim
}

/// An honest `SENTINEL FAILOVER` (or a failover after a failure) led by `leader` toward host
/// `to`'s replica, as Sentinel runs it: the selection, `SLAVEOF NO ONE` one timer tick later, the
/// leader noticing the promotion at its next INFO poll (`promote_seen` later), the others
/// learning from its hello a few milliseconds after that.
fn failover(sim: &mut Sim, leader: &HostPort, to: u8, promote_seen: Duration) {
    let r = redis(to);
    sim.replica_event(leader, "+selected-slave", &r);
    sim.replica_event(leader, "+failover-state-send-slaveof-noone", &r);
    sim.run_for(Duration::from_millis(100));
    sim.promote(&r);
    sim.replica_event(leader, "+failover-state-wait-promotion", &r);
    sim.run_for(promote_seen);
    let l = sim.sentinels.get_mut(leader).expect("a configured sentinel");
    l.master = r.clone();
    l.epoch = 1;
    sim.replica_event(leader, "+promoted-slave", &r);
    sim.run_for(Duration::from_millis(5));
    sim.sentinels_name(&r, 1, &[]);
    let all: Vec<HostPort> = sim.sentinels.keys().cloned().collect();
    for s in &all {
        sim.event(s, "+switch-master", &format!("mymaster {} 6379 {} 6379", harness::ip(1), harness::ip(to)));
    }
    sim.run_for(Duration::from_millis(50));
}
