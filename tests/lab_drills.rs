//! Fault drills: the faults operators meet, each ending with the VIP on exactly the current master.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn decisions(lab: &Lab) -> usize {
    lab.hosts().into_iter().map(|h| lab.watch_records(h).iter().filter(|r| r.s("event") == "decision").count()).sum()
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn old_master_cut_off_with_its_sentinel_dead_is_cleaned_up_on_heal() {
    let lab = Lab::up("drill-dead-sentinel", LabOptions { hook: true, ..LabOptions::default() });
    // A minority timeout longer than the drill, so that only the heal can trigger the cleanup.
    let cfg = lab.config_with("drill.toml", "[watch]\nminority_timeout_ms = 600000\n");
    let _d = lab.watch_all_until_on(&cfg, "h1");

    assert!(lab.sh(&["signal-sentinel", "h1", "KILL"]).status.success());
    assert!(lab.sh(&["link", "h1", "down"]).status.success());
    let new_master = lab.wait("the majority to fail over and claim", Duration::from_secs(30), || {
        ["h2", "h3"].into_iter().find(|h| lab.holders(lab.vip4()).contains(&h.to_string()))
    });
    // Two holders now: h1 cannot hear anything, and its sentinel is dead, so no hook runs there.
    assert!(lab.holders(lab.vip4()).contains(&"h1".to_string()), "h1 let go without a reason: {:?}", lab.vips());

    let healed = Instant::now();
    assert!(lab.sh(&["link", "h1", "up"]).status.success());
    lab.wait("h1's daemon to let go after the heal", Duration::from_secs(5), || lab.only_on(new_master));
    eprintln!("[drill-dead-sentinel] duplicate holders ended {} ms after the heal", healed.elapsed().as_millis());
    let mut w = lab.writer(lab.vip4(), Duration::from_secs(2));
    lab.wait("a write through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    w.stop();
    assert_eq!(lab.neigh(lab.vip4()), lab.mac_of(new_master));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn interface_down_and_up_on_the_master_brings_the_vip_back() {
    let lab = Lab::up("drill-ifdown", LabOptions::default());
    let _d = lab.watch_all_until_on(&lab.config(), "h1");
    lab.ip("h1", &["link", "set", "eth0", "down"]);
    // Linux drops IPv6 addresses with the link (unless keep_addr_on_down). Well below Sentinel's
    // down-after (1 s) and the minority timeout: a longer cut is a failover, another drill.
    std::thread::sleep(Duration::from_millis(400));
    lab.ip("h1", &["link", "set", "eth0", "up"]);
    let up = Instant::now();
    lab.wait("both VIPs back on h1", Duration::from_secs(5), || lab.only_on("h1"));
    eprintln!("[drill-ifdown] VIPs back {} ms after the link came up", up.elapsed().as_millis());
    let mut w = lab.writer(lab.vip4(), Duration::from_secs(2));
    lab.wait("a write through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    w.stop();
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn redis_restarted_on_the_master_without_a_failover_changes_nothing() {
    let lab = Lab::up("drill-redis-restart", LabOptions { hook: true, ..LabOptions::default() });
    let _d = lab.watch_all_until_on(&lab.config(), "h1");
    std::thread::sleep(Duration::from_millis(600)); // let the start-up decisions be logged
    let before = decisions(&lab);
    // Faster than down-after-milliseconds (1 s): Sentinel sees no failure worth a failover.
    assert!(lab.sh(&["kill-redis", "h1", "TERM"]).status.success());
    // Start it again as soon as the old process is gone.
    lab.wait("redis on h1 to restart", Duration::from_millis(800), || {
        lab.sh(&["start-redis", "h1"]).status.success().then_some(())
    });
    let seen = lab.holders_during(lab.vip4(), Duration::from_secs(4));
    assert_eq!(seen, [vec!["h1".to_string()]], "the VIP moved on a plain restart");
    assert_eq!(lab.master().as_deref(), Some(lab.ip_of("h1")), "Sentinel failed over after all; the drill is void");
    assert_eq!(decisions(&lab), before, "a plain Redis restart made the daemons change something");
}
