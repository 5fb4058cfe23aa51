//! Tests of the decision rule: examples for each branch, and properties over random inputs.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::{Announce, Master, Notify, SentinelAddr};
use crate::network::host::{Address, HostState, Interface};

const FRESH: Duration = Duration::from_secs(1);

fn s(n: u8) -> SentinelAddr {
    HostPort { host: format!("198.51.100.{n}"), port: 26379 }
}

fn here() -> HostPort {
    HostPort { host: "198.51.100.11".into(), port: 6379 }
}

fn there() -> HostPort {
    HostPort { host: "198.51.100.12".into(), port: 6379 }
}

fn m(addr: &HostPort, epoch: u64) -> Answer {
    Answer::Master {
        addr: addr.clone(),
        epoch,
        flags: "master".into(),
        down_after_ms: Some(1000),
        failover_timeout_ms: Some(5000),
    }
}

fn ok(n: u8, a: Answer, age_ms: u64) -> Report {
    Report { sentinel: s(n), last: Some((a, Duration::from_millis(age_ms))), down: None }
}

fn down(n: u8) -> Report {
    Report::failed(s(n), "cut off".into())
}

/// The replica on the other host reported role:master after the leader chose it.
fn promoted_there(now: Instant) -> Elsewhere {
    Elsewhere { replica: there(), since: now, epoch: 0, until: now + Duration::from_secs(60) }
}

fn master() -> Master {
    Master {
        name: "m".into(),
        vips: vec!["198.51.100.100/24".parse().unwrap()],
        interface: Some("eth0".into()),
        label: None,
        announce: Announce { rounds: 1, interval: Duration::ZERO },
        sentinels: (11..=13).map(s).collect(),
        mode: crate::config::Mode::default(),
        cloud: None,
        notify: Notify { on_claim: vec![], on_release: vec![], timeout: Duration::from_secs(1) },
    }
}

fn host(holding: bool) -> HostState {
    let mut addresses = vec![Address::new(2, "198.51.100.11".parse().unwrap(), 24)];
    if holding {
        let mut vip = Address::new(2, "198.51.100.100".parse().unwrap(), 24);
        vip.secondary = true;
        addresses.push(vip);
    }
    HostState {
        interfaces: vec![Interface { index: 2, name: "eth0".into(), mac: Some([2, 0, 0, 0, 0, 0x11]), up: true }],
        addresses,
    }
}

fn settings() -> Settings {
    Settings {
        minority_timeout: None,
        minority_default: Duration::from_secs(5),
        announce_refresh: Duration::ZERO,
        role_fresh_for: Duration::from_millis(250),
    }
}

const MANAGED: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 100))];

struct World {
    master: Master,
    host: HostState,
    weighed: Weighed,
    locality: Locality,
    roles: std::collections::BTreeMap<HostPort, RoleSeen>,
    settings: Settings,
    started: Instant,
    now: Instant,
}

impl World {
    fn new(reports: &[Report], holding: bool) -> World {
        let weighed = weigh(reports, FRESH);
        let locality = match weighed.master() {
            Some(a) if *a == here() => Locality::Here,
            Some(_) => Locality::Elsewhere,
            None => Locality::Unknown("no master".into()),
        };
        let now = Instant::now();
        World {
            master: master(),
            host: host(holding),
            weighed,
            locality,
            roles: Default::default(),
            settings: settings(),
            started: now - Duration::from_secs(60),
            now,
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            master: &self.master,
            weighed: &self.weighed,
            locality: self.locality.clone(),
            host: &self.host,
            managed: &MANAGED,
            roles: &self.roles,
            named_vouched: true,
            settings: self.settings,
            started: self.started,
            now: self.now,
        }
    }

    fn decide(&self, memory: &Memory) -> Decision {
        daemon(&self.facts(), memory)
    }

    fn role(mut self, role: Role) -> World {
        self.roles.insert(here(), RoleSeen { addr: here(), role, fenced: None, at: self.now });
        self
    }
}

#[test]
fn newest_epoch_beats_the_majority() {
    // The leader already promoted .12 (epoch 1); the two observers have not heard yet.
    let w = weigh(&[ok(11, m(&here(), 0), 0), ok(12, m(&there(), 1), 0), ok(13, m(&here(), 0), 0)], FRESH);
    assert_eq!(w.verdict, Verdict::Master { addr: there(), epoch: 1, agreeing: 1 });
    assert!(w.majority());
}

#[test]
fn stale_and_down_answers_do_not_count() {
    let w = weigh(&[ok(11, m(&here(), 3), 5000), down(12), ok(13, m(&there(), 2), 10)], FRESH);
    assert_eq!(w.answered, 1);
    assert!(!w.majority());
    assert_eq!(w.master(), Some(&there()));
    let same_epoch = weigh(&[ok(11, m(&here(), 2), 0), ok(12, m(&there(), 2), 0)], FRESH);
    assert_eq!(same_epoch.verdict, Verdict::Conflict { epoch: 2 });
}

#[test]
fn the_minority_clock_starts_at_the_last_majority() {
    // Two sentinels last answered 400 and 900 ms ago; the third never did: the majority of three
    // was last complete 900 ms ago, whenever the loss is noticed.
    let w = weigh(&[ok(11, m(&here(), 1), 400), ok(12, m(&here(), 1), 900), down(13)], Duration::from_millis(500));
    assert_eq!(w.majority_age, Some(Duration::from_millis(900)));
    assert_eq!(w.answered, 1);
}

#[test]
fn minority_timeout_is_the_smallest_down_after_capped() {
    let mut a = m(&here(), 1);
    if let Answer::Master { down_after_ms, .. } = &mut a {
        *down_after_ms = Some(3_600_000);
    }
    let w = weigh(&[ok(11, a.clone(), 0), ok(12, m(&here(), 1), 0)], FRESH);
    assert_eq!(settings().minority_timeout(&w), Duration::from_millis(1000), "smallest wins");
    let huge = weigh(&[ok(11, a, 0)], FRESH);
    assert_eq!(settings().minority_timeout(&huge), MINORITY_TIMEOUT_CAP, "one sentinel cannot switch fencing off");
    let configured = Settings { minority_timeout: Some(Duration::from_secs(60)), ..settings() };
    assert_eq!(configured.minority_timeout(&huge), Duration::from_secs(60), "a configured value is the operator's");
}

#[test]
fn claims_with_a_majority_after_asking_the_local_redis() {
    let world = World::new(&[ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 0), down(13)], false);
    let d = world.decide(&Memory::default());
    assert_eq!(d.act, Act::AskRole(here()));
    let world = world.role(Role::Master);
    let d = world.decide(&Memory::default());
    assert_eq!(d.act, Act::Hold);
    assert_eq!(d.reason.code(), "named_here");
    let replica = World::new(&[ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 0)], false).role(Role::Replica);
    assert_eq!(replica.decide(&Memory::default()).reason.code(), "local_redis_not_master");
    let unknown =
        World::new(&[ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 0)], false).role(Role::Unknown("NOAUTH".into()));
    assert_eq!(unknown.decide(&Memory::default()).act, Act::Hold, "no evidence is no veto");
}

#[test]
fn holding_in_place_does_nothing_unless_a_refresh_is_due() {
    let mut world = World::new(&[ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 0)], true);
    assert_eq!(world.decide(&Memory::default()).act, Act::Nothing);
    world.settings.announce_refresh = Duration::from_secs(10);
    let mut memory = Memory { last_announce: Some(world.now - Duration::from_secs(11)), ..Memory::default() };
    assert_eq!(world.decide(&memory).act, Act::Announce);
    memory.last_announce = Some(world.now);
    assert_eq!(world.decide(&memory).act, Act::Nothing);
}

#[test]
fn named_elsewhere_releases_whatever_the_count() {
    let two = World::new(&[ok(12, m(&there(), 2), 0), ok(13, m(&there(), 2), 0), down(11)], true);
    let d = two.decide(&Memory::default());
    assert_eq!((d.act, d.reason.code()), (Act::Release, "named_elsewhere"));
    // One sentinel alone: the named master must say it is one first (asked: a majority list it).
    let mut world = World::new(&[ok(12, m(&there(), 2), 0), down(11), down(13)], true);
    let d = world.decide(&Memory::default());
    assert_eq!((d.act, d.reason.code()), (Act::AskRole(there()), "uncorroborated"));
    world.roles.insert(there(), RoleSeen { addr: there(), role: Role::Replica, fenced: None, at: world.now });
    assert_eq!(world.decide(&Memory::default()).act, Act::Nothing, "a replica named master by one voice");
    world.roles.insert(there(), RoleSeen { addr: there(), role: Role::Master, fenced: None, at: world.now });
    let d = world.decide(&Memory::default());
    assert_eq!((d.act, d.reason.code()), (Act::Release, "named_elsewhere"));
    let not_holding = World::new(&[ok(12, m(&there(), 2), 0)], false);
    assert_eq!(not_holding.decide(&Memory::default()).act, Act::Nothing);
}

#[test]
fn a_cut_off_holder_lets_go_after_the_minority_timeout() {
    // Only its own sentinel answers, naming it; the others last answered 600 ms ago.
    let reports = [ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 600), ok(13, m(&here(), 1), 600)];
    let mut world = World::new(&reports, true);
    world.weighed = weigh(&reports, Duration::from_millis(500));
    let d = world.decide(&Memory::default());
    assert_eq!(d.act, Act::Nothing);
    assert!(matches!(d.reason, Reason::MinorityHolding { waited_ms: 600, timeout_ms: 1000, .. }), "{:?}", d.reason);
    let later = [ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 1000), ok(13, m(&here(), 1), 1000)];
    world.weighed = weigh(&later, Duration::from_millis(500));
    let d = world.decide(&Memory::default());
    assert_eq!((d.act, d.reason.code()), (Act::Release, "minority_timeout"));
    // Without the VIPs, a minority never claims.
    let mut bare = World::new(&reports, false);
    bare.weighed = weigh(&reports, Duration::from_millis(500));
    assert_eq!(bare.decide(&Memory::default()).reason.code(), "minority_not_claiming");
}

#[test]
fn a_promotion_counts_only_while_its_watch_runs() {
    let watching = Early::Watching { replica: here() };
    assert!(watching.promotion_counts(&here()));
    // After -failover-abort (Idle), for another replica, or once claimed: a late report is stale.
    assert!(!Early::Idle.promotion_counts(&here()));
    assert!(!watching.promotion_counts(&there()));
    let claimed = Early::Claimed { replica: here(), until: Instant::now(), epoch: 1 };
    assert!(!claimed.promotion_counts(&here()));
}

#[test]
fn early_claim_holds_until_confirmed_newer_or_expired() {
    let old = [ok(11, m(&there(), 1), 0), ok(12, m(&there(), 1), 0), ok(13, m(&there(), 1), 0)];
    let world = World::new(&old, false);
    let until = world.now + Duration::from_secs(5);
    let memory = Memory { early: Early::Claimed { replica: here(), until, epoch: 1 }, ..Memory::default() };
    let d = world.decide(&memory);
    assert_eq!(
        (d.act.clone(), d.reason.code()),
        (Act::Hold, "early_claim"),
        "claims without asking: the poll just saw master"
    );
    let holding = World::new(&old, true);
    assert_eq!(holding.decide(&memory).reason.code(), "early_claim_pending");
    // The sentinels confirm: normal rules from then on.
    let confirmed = World::new(&[ok(11, m(&here(), 2), 0), ok(12, m(&here(), 2), 0)], true);
    assert_eq!(confirmed.decide(&memory).reason.code(), "named_here");
    // The grace ends without confirmation: release.
    let expired =
        Memory { early: Early::Claimed { replica: here(), until: holding.now, epoch: 1 }, ..Memory::default() };
    assert_eq!(holding.decide(&expired).act, Act::Release);
}

#[test]
fn conflicts_yield_only_on_evidence() {
    let named_here = [ok(11, m(&here(), 1), 0), ok(12, m(&here(), 1), 0)];
    let world = World::new(&named_here, true);
    let memory = Memory::default();
    assert_eq!(conflict(&world.facts(), &memory, "02:..:12").act, Act::AskRole(here()));
    let master = World::new(&named_here, true).role(Role::Master);
    assert_eq!(conflict(&master.facts(), &memory, "x").act, Act::Announce);
    let slow = World::new(&named_here, true).role(Role::Unknown("no answer within 300 ms".into()));
    assert_eq!(conflict(&slow.facts(), &memory, "x").act, Act::Announce, "a timeout is no evidence");
    let replica = World::new(&named_here, true).role(Role::Replica);
    assert_eq!(conflict(&replica.facts(), &memory, "x").act, Act::Release);
    let gone = World::new(&named_here, true).role(Role::Gone("refused".into()));
    assert_eq!(conflict(&gone.facts(), &memory, "x").act, Act::Release);
    let chosen = Memory { elsewhere: Some(promoted_there(Instant::now())), ..Memory::default() };
    assert_eq!(conflict(&master.facts(), &chosen, "x").act, Act::Release, "the chosen replica reports master");
}

#[test]
fn hook_decides_early_only_when_the_majority_agrees_with_its_arguments() {
    // The cut-off sentinel has not answered: a majority naming the arguments' master is enough.
    let partial = [ok(11, m(&there(), 2), 0), ok(12, m(&there(), 2), 0), Report::failed(s(13), "pending".into())];
    let w = weigh(&partial, FRESH);
    assert!(hook_ready(&w, false, &there()));
    // A majority that still names the old master: wait for the rest (the leader may be missing).
    assert!(!hook_ready(&w, false, &here()));
    // One answer is no majority.
    let one = weigh(&[ok(11, m(&there(), 2), 0), down(12), down(13)], FRESH);
    assert!(!hook_ready(&one, false, &there()));
    assert!(hook_ready(&one, true, &there()), "all in");
}

#[test]
fn hook_refuses_to_act_blind() {
    let none = weigh(&[down(11), down(12), down(13)], FRESH);
    let r = hook_target(Some(&none), &here()).unwrap_err();
    assert!(r.retry && r.reason.code() == "no_sentinel_answered");
    let minority = weigh(&[ok(11, m(&here(), 1), 0), down(12), down(13)], FRESH);
    let r = hook(Some(&minority), &here(), &Locality::Here).unwrap_err();
    assert!(r.retry, "a claim without a majority is retried later");
    assert_eq!(hook(Some(&minority), &there(), &Locality::Elsewhere).unwrap().act, Act::Release);
    assert_eq!(hook(None, &here(), &Locality::Here).unwrap().act, Act::Hold);
    assert_eq!(hook_target(None, &here()).unwrap().0, here());
}

#[test]
fn claims_by_hand_respect_the_sentinels_unless_forced() {
    let w = weigh(&[ok(11, m(&there(), 1), 0), ok(12, m(&there(), 1), 0)], FRESH);
    let r = by_hand(Want::Hold, Some(&w), Some(&Locality::Elsewhere), false).unwrap_err();
    assert!(!r.retry && r.message.contains("--force"));
    assert_eq!(by_hand(Want::Hold, Some(&w), Some(&Locality::Elsewhere), true).unwrap().reason.code(), "forced");
    assert_eq!(by_hand(Want::Release, Some(&w), Some(&Locality::Here), false).unwrap().act, Act::Release);
    assert_eq!(by_hand(Want::Hold, None, None, false).unwrap().act, Act::Hold);
}

fn arb_answer() -> impl Strategy<Value = Option<(Answer, u64)>> {
    prop_oneof![
        Just(None),
        (0u64..4, any::<bool>(), 0u64..3000)
            .prop_map(|(epoch, at_here, age)| { Some((m(&if at_here { here() } else { there() }, epoch), age)) }),
        (0u64..3000).prop_map(|age| Some((Answer::Unknown, age))),
    ]
}

fn arb_reports() -> impl Strategy<Value = Vec<Report>> {
    prop::collection::vec((arb_answer(), any::<bool>()), 3).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (last, is_down))| Report {
                sentinel: s(11 + i as u8),
                last: last.map(|(a, age)| (a, Duration::from_millis(age))),
                down: is_down.then(|| "down".to_string()),
            })
            .collect()
    })
}

fn arb_role() -> impl Strategy<Value = Option<Role>> {
    prop_oneof![
        Just(None),
        Just(Some(Role::Master)),
        Just(Some(Role::Replica)),
        Just(Some(Role::Gone("refused".into()))),
        Just(Some(Role::Unknown("timeout".into()))),
    ]
}

proptest! {
    /// Whatever the sentinels say, the daemon binds only with a majority naming this host and a
    /// local Redis that is not known to be a replica or gone (or within an early claim); it
    /// releases whenever the newest answer names another host; and a holder without a majority
    /// lets go exactly when the minority timeout has passed since the last majority.
    #[test]
    fn daemon_rules_hold(
        reports in arb_reports(),
        holding in any::<bool>(),
        role in arb_role(),
        early in any::<bool>(),
        chosen in any::<bool>(),
    ) {
        let mut world = World::new(&reports, holding);
        if let Some(r) = role.clone() {
            world.roles.insert(here(), RoleSeen { addr: here(), role: r, fenced: None, at: world.now });
        }
        let mut memory = Memory { elsewhere: chosen.then(|| promoted_there(world.now)), ..Memory::default() };
        if early {
            memory.early = Early::Claimed { replica: here(), until: world.now + Duration::from_secs(1), epoch: 3 };
        }
        let early_active = early && world.locality != Locality::Here && world.weighed.epoch() <= 3;
        let d = world.decide(&memory);
        let w = &world.weighed;
        match &d.act {
            Act::Hold => {
                prop_assert!(!holding || d.reason.code() == "early_claim");
                prop_assert!(early_active || (w.majority() && world.locality == Locality::Here));
                // Having given the VIPs to the replica the leader chose, never take them back.
                prop_assert!(!chosen || early_active, "claimed back during a failover toward another host");
                if !early_active {
                    prop_assert!(matches!(role, Some(Role::Master) | Some(Role::Unknown(_))), "claimed with role {role:?}");
                }
            }
            Act::Release => {
                prop_assert!(holding);
                prop_assert!(!early_active);
                let named_elsewhere = world.locality == Locality::Elsewhere;
                let timed_out = !w.majority() && {
                    let waited = w.majority_age.unwrap_or(Duration::MAX).min(world.now - world.started);
                    waited >= world.settings.minority_timeout(w)
                };
                // The replica the leader chose reporting role:master is proof, too.
                prop_assert!((named_elsewhere && w.corroborated()) || timed_out || chosen, "released for {:?}", d.reason);
            }
            Act::AskRole(addr) if *addr == here() => prop_assert!(role.is_none() && !holding),
            Act::AskRole(addr) => {
                // The master one sentinel alone names elsewhere is asked before anything moves.
                prop_assert_eq!(Some(addr), w.master());
                prop_assert!(holding && !w.corroborated() && world.locality == Locality::Elsewhere);
            }
            Act::Announce => prop_assert!(false, "no refresh configured"),
            Act::Nothing => {
                if world.locality == Locality::Elsewhere && holding && !early_active && w.corroborated() {
                    prop_assert!(false, "kept VIPs the sentinels give to another host");
                }
            }
        }
    }

    /// A hook that decides before every sentinel answered does so only with a majority whose
    /// newest answer names the very master of its arguments.
    #[test]
    fn hook_decides_early_only_on_agreement(reports in arb_reports(), to_here in any::<bool>()) {
        let to = if to_here { here() } else { there() };
        let w = weigh(&reports, FRESH);
        if hook_ready(&w, false, &to) {
            prop_assert!(w.majority());
            prop_assert_eq!(w.master(), Some(&to));
        }
    }
}

proptest! {
    /// Defending against a claimant is right when it is a stray host, wrong when the leader just
    /// chose it: with a failover toward another host under way the holder always yields, and
    /// without any evidence it never does.
    #[test]
    fn early_claim_and_defence_agree(
        reports in arb_reports(),
        role in arb_role(),
        chosen in any::<bool>(),
        early in any::<bool>(),
    ) {
        let mut world = World::new(&reports, true);
        if let Some(r) = role.clone() {
            world.roles.insert(here(), RoleSeen { addr: here(), role: r, fenced: None, at: world.now });
        }
        let mut memory = Memory { elsewhere: chosen.then(|| promoted_there(world.now)), ..Memory::default() };
        if early {
            memory.early = Early::Claimed { replica: here(), until: world.now + Duration::from_secs(1), epoch: 3 };
        }
        // Promoted by the leader, ahead of sentinels that still name the old master.
        let early_active = early && world.locality != Locality::Here && world.weighed.epoch() <= 3;
        let d = conflict(&world.facts(), &memory, "02:00:00:00:00:12");
        let evidence = chosen
            || (world.locality == Locality::Elsewhere && !early_active && world.weighed.corroborated())
            || (world.locality == Locality::Here && matches!(role, Some(Role::Replica) | Some(Role::Gone(_))));
        if evidence {
            prop_assert_eq!(d.act, Act::Release, "did not yield: {:?}", d.reason);
        } else {
            prop_assert!(matches!(d.act, Act::Announce | Act::AskRole(_)), "yielded without evidence: {:?}", d.reason);
        }
    }
}

/// A planned switchover as the two daemons see it, before the sentinels catch up (all three
/// still name the old master at epoch 0): the new master, promoted by the leader, defends its
/// early claim; the old master, whose leader chose the other replica, yields and stays out.
#[test]
fn a_switchover_moves_the_vip_once_and_nobody_fights() {
    let stale = [ok(11, m(&there(), 0), 0), ok(12, m(&there(), 0), 0), ok(13, m(&there(), 0), 0)];
    // The new master (here), after its early claim.
    let new = World::new(&stale, true).role(Role::Master);
    let memory = Memory {
        early: Early::Claimed { replica: here(), until: new.now + EARLY_GRACE, epoch: 0 },
        ..Memory::default()
    };
    let d = conflict(&new.facts(), &memory, "02:00:00:00:00:12");
    assert_eq!((d.act, d.reason.code()), (Act::Announce, "defend"), "{}", d.reason);

    // The old master (here again, in its own world): the sentinels name it, the leader chose there.
    let fresh = [ok(11, m(&here(), 0), 0), ok(12, m(&here(), 0), 0), ok(13, m(&here(), 0), 0)];
    let old = World::new(&fresh, true).role(Role::Master);
    let mut memory = Memory { elsewhere: Some(promoted_there(Instant::now())), ..Memory::default() };
    let d = conflict(&old.facts(), &memory, "02:00:00:00:00:12");
    assert_eq!((d.act, d.reason.code()), (Act::Release, "yield"), "{}", d.reason);
    // Released: it does not claim back while the failover runs, though the sentinels name it.
    let released = World::new(&fresh, false).role(Role::Master);
    let d = released.decide(&memory);
    assert_eq!((d.act, d.reason.code()), (Act::Nothing, "failover_elsewhere"), "{}", d.reason);
    // The failover aborted (the daemon forgets it): the VIPs come back.
    memory.elsewhere = None;
    assert_eq!(released.decide(&memory).act, Act::Hold);
}
