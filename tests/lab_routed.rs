//! Routed VIPs (`mode = "routed"`) in the routed lab: the hosts sit in subnets of their own behind
//! a router running FRR; each host's BGP speaker (BIRD, or FRR) announces the VIP host routes that
//! vipctl binds on lo. These tests follow the route on the router's forwarding table, which is
//! what the client's packets really take, and write through it from the client's own subnet.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Both VIPs bound on `host` alone, and the router forwards both host routes to it alone.
fn held_and_routed(lab: &Lab, host: &str) -> Option<()> {
    let one = vec![host.to_string()];
    let bound = lab.holders(lab.vip4()) == one && lab.holders(lab.vip6()) == one;
    (bound && lab.routed_to(lab.vip4()) == one && lab.routed_to(lab.vip6()) == one).then_some(())
}

/// The checks about the speaker all passed, and one of them says `expect`.
fn speaker_checks_pass(lab: &Lab, host: &str, expect: &str) -> Option<()> {
    let checks = lab.speaker_checks(host);
    (checks.iter().all(|(s, _)| s == "ok") && checks.iter().any(|(_, c)| c.contains(expect))).then_some(())
}

/// kill -9 of the master's redis: the route follows the new master, the client's writes follow
/// the route (IPv4 and IPv6), and a daemon stopped by SIGTERM leaves the VIP and its route alone.
fn kill_moves_the_route(speaker: &'static str) {
    let name = format!("routed-kill-{speaker}");
    let lab = Lab::up(&name, LabOptions { hook: true, routed: Some(speaker), ..LabOptions::default() });
    let mut daemons = lab.watch_all(&lab.config());
    lab.wait("the VIPs bound on h1 and routed to it", Duration::from_secs(10), || held_and_routed(&lab, "h1"));
    lab.wait("check on h1: sessions up, VIPs announced", Duration::from_secs(10), || {
        speaker_checks_pass(&lab, "h1", "is bound here and announced to")
    });
    lab.wait("check on h2: sessions up, nothing announced", Duration::from_secs(10), || {
        speaker_checks_pass(&lab, "h2", "not bound here and not announced")
    });

    let mut w = lab.writer(lab.vip4(), Duration::from_secs(60));
    lab.wait("writes through the routed VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));

    let fault = unix_ms();
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let new_master = lab.wait_promotion();
    lab.wait("both VIPs bound on the new master and routed to it alone", Duration::from_secs(10), || {
        held_and_routed(&lab, new_master)
    });
    let routed = unix_ms();
    let claim = lab.wait("the new master's daemon or hook to log its claim", Duration::from_secs(5), || {
        lab.watch_records(new_master).into_iter().chain(lab.hook_records(new_master)).find(|r| r.is("claim") && r.ok())
    });
    let back = lab.wait("a write through the VIP after the move", Duration::from_secs(10), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > routed).map(|l| l.at_ms)
    });
    w.stop();
    let mut v6 = lab.writer(lab.vip6(), Duration::from_millis(500));
    lab.wait("a write through the IPv6 VIP", Duration::from_secs(5), || v6.lines().iter().any(|l| l.ok).then_some(()));
    v6.stop();
    // Polled every ~20 ms through `ip route` on the router: an upper bound on the route's lag.
    // The router's update log splits it: the host's part ends when the UPDATE arrives.
    let bound = record_ms(&claim);
    let update = lab.router_received_ms(lab.ip_of(new_master), &format!("{}/32", lab.vip4()), bound.saturating_sub(50));
    eprintln!(
        "[{name}] fault -> bind {} ms; bind -> UPDATE at the router {}; bind -> route on the router <= {} ms; \
         first write after the move at +{} ms",
        bound.saturating_sub(fault),
        update.map_or("not logged".into(), |u| format!("{} ms", u as i128 - bound as i128)),
        routed.saturating_sub(bound),
        back - fault
    );
    lab.wait("check on the new master: its VIPs announced", Duration::from_secs(10), || {
        speaker_checks_pass(&lab, new_master, "is bound here and announced to")
    });
    lab.wait("check on h1: nothing announced any more", Duration::from_secs(10), || {
        speaker_checks_pass(&lab, "h1", "not bound here and not announced")
    });

    // systemctl stop (SIGTERM, release_on_exit = false): the VIP and its route stay.
    let i = lab.hosts().iter().position(|h| *h == new_master).unwrap();
    assert!(daemons[i].stop().is_some_and(|s| s.success()), "the daemon did not exit cleanly on SIGTERM");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        held_and_routed(&lab, new_master).unwrap_or_else(|| {
            panic!("the VIP or its route left {new_master} after its daemon stopped: {:?}", lab.routes())
        });
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn bird_hosts_route_follows_a_failover() {
    kill_moves_the_route("bird");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn frr_hosts_route_follows_a_failover() {
    kill_moves_the_route("frr");
}

/// The master's host is cut off (its link drops every packet, carrier up): the router withdraws
/// its route (BFD), the majority promotes a replica whose route takes over, the cut-off host lets
/// go by itself, and once the link heals and its BGP session is back it announces nothing.
#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn cut_off_master_is_withdrawn_and_announces_nothing_after_the_heal() {
    let lab = Lab::up("routed-cut", LabOptions { hook: true, routed: Some("bird"), ..LabOptions::default() });
    let _daemons = lab.watch_all(&lab.config());
    lab.wait("the VIPs bound on h1 and routed to it", Duration::from_secs(10), || held_and_routed(&lab, "h1"));

    let cut = Instant::now();
    let cut_ms = unix_ms();
    lab.cut("h1", true);
    lab.wait("the router to withdraw h1's route", Duration::from_secs(5), || {
        (!lab.routed_to(lab.vip4()).contains(&"h1".to_string())).then_some(())
    });
    let withdrawn = cut.elapsed();
    // BFD noticed it, not the 3 s hold timer that backs it up.
    let bfd_down = format!("sent to neighbor {} 6/10 (Cease/BFD Down)", lab.ip_of("h1"));
    lab.wait("the router's log to say BFD ended h1's session", Duration::from_secs(2), || {
        lab.router_log().contains(&bfd_down).then_some(())
    });
    let new_master = lab.wait("the majority to promote a replica", Duration::from_secs(30), || {
        ["h2", "h3"].into_iter().find(|h| lab.routed_to(lab.vip4()) == [h.to_string()])
    });
    let rerouted = cut.elapsed();
    lab.wait("h1 to let go of the VIPs while cut off", Duration::from_secs(10), || {
        (!lab.holders(lab.vip4()).contains(&"h1".to_string()) && !lab.holders(lab.vip6()).contains(&"h1".to_string()))
            .then_some(())
    });
    let release = lab
        .watch_records("h1")
        .into_iter()
        .find(|r| r.is("release") && record_ms(r) > cut_ms)
        .unwrap_or_else(|| panic!("no release record on h1 after the cut:\n{}", lab.watch_log("h1")));
    assert_eq!(release.s("reason_code"), "minority_timeout", "h1 let go for another reason:\n{}", lab.watch_log("h1"));
    eprintln!(
        "[routed-cut] h1's route withdrawn {} ms after the cut; route to {new_master} at {} ms; h1 let go at {} ms",
        withdrawn.as_millis(),
        rerouted.as_millis(),
        record_ms(&release) - cut_ms
    );

    let down = lab.speaker_checks("h1");
    assert!(
        down.iter().any(|(s, c)| s == "fail" && c.contains("tor4 is not established")),
        "h1's BGP session should be down while its link is cut: {down:?}"
    );

    // Heal. h1's session comes back (connect retry 5 s); the router must never route to h1 again,
    // nor even hold a path from it (the router keeps the older of two paths, so a re-announcement
    // from h1 would not show in its forwarding table).
    lab.cut("h1", false);
    let healed = Instant::now();
    let mut seen: Vec<Vec<String>> = Vec::new();
    let mut paths_from_h1 = Vec::new();
    let mut session_back = None;
    let prefixes = [format!("{}/32", lab.vip4()), format!("{}/128", lab.vip6())];
    let h1_addrs = [lab.ip_of("h1").to_string(), lab.ip6_of("h1").to_string()];
    while healed.elapsed() < Duration::from_secs(20) {
        for vip in [lab.vip4(), lab.vip6()] {
            let r = lab.routed_to(vip);
            if !seen.contains(&r) {
                seen.push(r);
            }
        }
        for prefix in &prefixes {
            let from_h1: Vec<String> = lab.router_paths(prefix).into_iter().filter(|p| h1_addrs.contains(p)).collect();
            if !from_h1.is_empty() {
                paths_from_h1.push((healed.elapsed(), prefix.clone(), from_h1));
            }
        }
        if session_back.is_none()
            && lab.speaker_checks("h1").iter().any(|(s, c)| s == "ok" && c.contains("tor4 is established"))
        {
            session_back = Some(healed.elapsed());
        }
        // Watch a while longer once the session is back: an announcement would follow at once.
        if session_back.is_some_and(|t| healed.elapsed() > t + Duration::from_secs(2)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let session_back = session_back.unwrap_or_else(|| panic!("h1's BGP session did not come back in 20 s"));
    assert_eq!(seen, [vec![new_master.to_string()]], "after the heal the router must route to {new_master} alone");
    assert!(paths_from_h1.is_empty(), "after the heal the router had paths from h1: {paths_from_h1:?}");
    // The check above can see a path: the new master's is there.
    assert!(
        lab.router_paths(&prefixes[0]).contains(&lab.ip_of(new_master).to_string()),
        "the router shows no BGP path from {new_master}: {:?}",
        lab.speaker("rt", &["-c", &format!("show bgp ipv4 unicast {} json", prefixes[0])])
    );
    held_and_routed(&lab, new_master).expect("both VIPs on the new master, routed to it alone");
    speaker_checks_pass(&lab, "h1", "not bound here and not announced")
        .unwrap_or_else(|| panic!("check on h1 after the heal: {:?}", lab.speaker_checks("h1")));
    eprintln!("[routed-cut] h1's session back {} ms after the heal; no route to h1 since", session_back.as_millis());

    let mut w = lab.writer(lab.vip4(), Duration::from_secs(2));
    lab.wait("the client to write through the VIP", Duration::from_secs(5), || {
        w.lines().iter().any(|l| l.ok).then_some(())
    });
    w.stop();
}

/// `vipctl check` catches a speaker that announces a VIP the host does not hold (here a static
/// route BIRD exports), which would send clients to a replica.
#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn check_catches_a_replica_that_announces_the_vip() {
    let lab = Lab::up("routed-check", LabOptions { routed: Some("bird"), ..LabOptions::default() });
    let _daemons = lab.watch_all(&lab.config());
    lab.wait("the VIPs bound on h1 and routed to it", Duration::from_secs(10), || held_and_routed(&lab, "h1"));
    lab.wait("check on h2 to pass", Duration::from_secs(10), || {
        speaker_checks_pass(&lab, "h2", "not bound here and not announced")
    });

    // h2's BIRD, misconfigured: a static route for the VIP, exported like the VIPs.
    let conf = lab.dir.join("h2/bird-host.conf");
    let good = std::fs::read_to_string(&conf).unwrap();
    let filter = "if proto = \"vips\" && net ~ VIPS4";
    assert!(good.contains(filter), "the example's export filter changed: update this test");
    let bad = good.replace(filter, "if net ~ VIPS4")
        + &format!("\nprotocol static rogue {{ ipv4; route {}/32 blackhole; }}\n", lab.vip4());
    std::fs::write(&conf, bad).unwrap();
    let out = lab.speaker("h2", &["configure"]);
    assert!(out.status.success() && text(&out).contains("Reconfigured"), "birdc configure: {}", text(&out));

    let failed = lab.wait("check on h2 to report the announcement", Duration::from_secs(10), || {
        lab.speaker_checks("h2").into_iter().find(|(s, c)| s == "fail" && c.contains("though it is not bound here"))
    });
    assert!(failed.1.contains(&format!("{}/32", lab.vip4())), "{failed:?}");
    // The one before it (h1) still wins at the router, which prefers the older route.
    assert_eq!(lab.routed_to(lab.vip4()), ["h1"], "{:?}", lab.speaker("rt", &["-c", "show bgp ipv4 unicast"]));
}
