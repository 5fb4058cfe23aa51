//! Planned switchovers: `vipctl switchover`, and a plain `SENTINEL FAILOVER` with the daemons
//! running. Sentinel 7 alone leaves the old master writable after the promotion, and every write it
//! acknowledges then is lost; with vipctl none is.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

fn role_of(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, Path::new("/usr/bin/redis-cli"), &["-h", lab.ip_of(host), "-p", "6379", "ROLE"], &[]);
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string()
}

/// The VIP moved once: since `from_ms` the old master's daemon never claimed it back and the new
/// master's never yielded it (a fight shows as claim/yield pairs every announcement round, with
/// the VIP on both hosts in turn).
fn moved_once(lab: &Lab, new_master: &str, from_ms: u128) {
    let after =
        |h: &str| -> Vec<Rec> { lab.watch_records(h).into_iter().filter(|r| record_ms(r) >= from_ms).collect() };
    let reclaims: Vec<Rec> = after("h1").into_iter().filter(|r| r.is("claim")).collect();
    assert!(reclaims.is_empty(), "h1 claimed the VIP back during the switchover: {reclaims:?}");
    let yields: Vec<Rec> = after(new_master).into_iter().filter(|r| r.s("reason_code") == "yield").collect();
    assert!(yields.is_empty(), "{new_master} yielded the VIP during the switchover: {yields:?}");
}

/// Daemons with early claim on every host, the VIP on h1, a client writing through it.
fn setup(lab: &Lab) -> (Vec<Daemon>, Writer) {
    let cfg = lab.config_with("early.toml", "[watch]\nearly_claim = true\n");
    let daemons: Vec<Daemon> = lab.watch_all_until_on(&cfg, "h1");
    let w = lab.writer(lab.vip4(), Duration::from_secs(40));
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    (daemons, w)
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn vipctl_switchover_loses_no_acknowledged_write() {
    let lab = Lab::up("switchover-vipctl", LabOptions::default());
    let (_daemons, mut w) = setup(&lab);
    std::thread::sleep(Duration::from_millis(500));
    let start = unix_ms();
    let out = lab.vipctl("h2", &["switchover", "--to", "h3.lab"]);
    let timeline = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("[switchover-vipctl] timeline:\n{timeline}");
    assert!(out.status.success(), "{}", text(&out));
    for step in
        ["writes fenced", "caught up", "SENTINEL FAILOVER ordered", "reports role:master", "reaches", "is a replica of"]
    {
        assert!(timeline.contains(step), "no `{step}` in the timeline:\n{timeline}");
    }
    lab.wait("the VIP on h3 only", Duration::from_secs(3), || lab.only_on("h3"));
    assert_eq!(role_of(&lab, "h1"), "slave", "the old master is a replica");
    // The client goes on writing through the VIP, and lost nothing.
    let moved = unix_ms();
    lab.wait("a write after the switchover", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > moved).map(|_| ())
    });
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let gap = longest_write_gap_ms(&lines);
    eprintln!("[switchover-vipctl] lost {lost} acknowledged writes; longest gap {gap} ms");
    assert_eq!(lost, 0, "acknowledged writes lost: {at:?}");
    let records = lab.hook_records("h2");
    assert!(records.iter().any(|r| r.s("actor") == "switchover" && r.ok()), "{records:?}");
    moved_once(&lab, "h3", start);
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn sentinel_failover_with_the_daemons_fences_and_demotes_the_old_master() {
    let lab = Lab::up("switchover-sentinel", LabOptions::default());
    let (_daemons, mut w) = setup(&lab);
    std::thread::sleep(Duration::from_millis(500));
    let start = unix_ms();
    let out = lab.exec(
        "h2",
        Path::new("/usr/bin/redis-cli"),
        &["-h", lab.ip_of("h2"), "-p", "26379", "SENTINEL", "FAILOVER", "mymaster"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", text(&out));
    let new_master = lab.wait_promotion().to_string();
    lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(&new_master));
    // h1's daemon paused its Redis when the leader chose another replica, and made it a replica
    // once the sentinels agreed, long before Sentinel's own conversion (~10 s).
    let fence = lab.wait("h1's daemon to pause its Redis", Duration::from_secs(5), || {
        lab.watch_records("h1").into_iter().find(|r| r.s("reason_code") == "fence_writes")
    });
    assert!(fence.ok(), "{fence}");
    let demote = lab.wait("h1's daemon to demote its Redis", Duration::from_secs(8), || {
        lab.watch_records("h1").into_iter().find(|r| r.s("reason_code") == "demote")
    });
    assert!(demote.ok(), "{demote}");
    assert_eq!(role_of(&lab, "h1"), "slave");
    let moved = unix_ms();
    lab.wait("a write after the failover", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > moved).map(|_| ())
    });
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    eprintln!("[switchover-sentinel] lost {lost} acknowledged writes; longest gap {} ms", longest_write_gap_ms(&lines));
    // The leader's SLAVEOF NO ONE and the pause race: a write or two may be acknowledged between.
    assert!(lost <= 2, "acknowledged writes lost: {lost} {at:?}");
    moved_once(&lab, &new_master, start);
}
