//! Writes stop where the majority cannot see them: the case from Jepsen's Redis Sentinel analysis,
//! a master cut off from the other Redis hosts (their sentinels and replicas) while its clients
//! still reach it. Every write it acknowledges then is thrown away when it rejoins as a replica;
//! vipctl fences it the moment its heartbeats say the majority is gone. And no false alarms:
//! sentinels restarted one at a time, one lost for good, one that answers slowly, fence nothing.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn fences(lab: &Lab, host: &str) -> Vec<Rec> {
    lab.watch_records(host).into_iter().filter(|r| r.s("reason_code").starts_with("fence")).collect()
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_master_cut_off_from_the_majority_but_not_its_clients_loses_at_most_a_few_writes() {
    let lab = Lab::up("doubt-partial", LabOptions::default());
    let cfg = lab.config_with("early.toml", "[watch]\nearly_claim = true\n");
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    let w = lab.writer(lab.vip4(), Duration::from_secs(40));
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    cut_h1_and_count_lost(&lab, w, "doubt-partial");
}

/// The same cut in the first moments after the daemon's claim, before its first full question
/// since: the heartbeats must already be fast then (a soak round lost 72 writes when they were
/// not; the fix is in src/daemon/sentinels.rs, `Handle::fast`).
#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_master_cut_off_just_after_its_daemon_claimed_loses_at_most_a_few_writes() {
    let lab = Lab::up("doubt-early", LabOptions::default());
    let cfg = lab.config_with("early.toml", "[watch]\nearly_claim = true\n");
    // The writer first: its first acknowledged write comes right after the claim.
    let w = lab.writer(lab.vip4(), Duration::from_secs(40));
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    cut_h1_and_count_lost(&lab, w, "doubt-early");
}

/// Cuts h1 off from the other Redis hosts (not from the client), heals after the failover, and
/// asserts the fence on doubt came and at most a few acknowledged writes were lost.
fn cut_h1_and_count_lost(lab: &Lab, mut w: Writer, tag: &str) {
    let cut = unix_ms();
    assert!(lab.sh(&["isolate", "h1", "on"]).status.success());
    let new_master = lab.wait("the majority to promote a replica", Duration::from_secs(15), || {
        lab.master_per("h2").filter(|m| m != "h1")
    });
    lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(&new_master));
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.sh(&["isolate", "h1", "off"]).status.success());
    lab.wait("h1's daemon to make its Redis a replica", Duration::from_secs(15), || {
        lab.watch_records("h1").into_iter().find(|r| r.s("reason_code") == "demote")
    });
    let healed = unix_ms();
    lab.wait("a write after the heal", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > healed).map(|_| ())
    });
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let fence =
        fences(lab, "h1").into_iter().find(|r| r.s("reason_code") == "fence_on_doubt").expect("fenced on doubt");
    let fenced_after = record_ms(&fence).saturating_sub(cut);
    eprintln!(
        "[{tag}] fenced {fenced_after} ms after the cut; lost {lost} acknowledged writes; longest gap {} ms",
        longest_write_gap_ms(&lines)
    );
    assert!(fence.ok(), "{fence}");
    // 100 writes a second: at most the ones acknowledged before the heartbeats told.
    assert!(lost <= 10, "lost {lost}: {at:?}");
    assert!(lab.only_on(&new_master).is_some(), "{:?}", lab.vips());
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn sentinels_restarted_lost_or_slow_one_at_a_time_never_fence() {
    let lab = Lab::up("doubt-false-alarms", LabOptions::default());
    let _daemons = lab.watch_all_until_on(&lab.config(), "h1");
    let mut w = lab.writer(lab.vip4(), Duration::from_secs(40));
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    // A rolling restart, one sentinel at a time, each back before the next.
    for h in ["h3", "h2", "h1"] {
        assert!(lab.sh(&["signal-sentinel", h, "TERM"]).status.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(lab.sh(&["start-sentinel", h]).status.success());
        std::thread::sleep(Duration::from_millis(1500));
    }
    // One slow sentinel: stopped 200 ms out of every 500 ms for 5 s (answers late, within its
    // timeout of 500 ms).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert!(lab.sh(&["signal-sentinel", "h2", "STOP"]).status.success());
        std::thread::sleep(Duration::from_millis(200));
        assert!(lab.sh(&["signal-sentinel", "h2", "CONT"]).status.success());
        std::thread::sleep(Duration::from_millis(300));
    }
    // One lost for good.
    assert!(lab.sh(&["signal-sentinel", "h3", "KILL"]).status.success());
    std::thread::sleep(Duration::from_secs(5));
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let gap = longest_write_gap_ms(&lines);
    let fenced = fences(&lab, "h1");
    eprintln!("[doubt-false-alarms] fences {}; lost {lost}; longest gap {gap} ms", fenced.len());
    assert!(fenced.is_empty(), "writes were fenced without a fault worth it: {fenced:?}");
    assert_eq!(lost, 0, "{at:?}");
    assert!(lab.only_on("h1").is_some(), "{:?}", lab.vips());
    assert!(gap < 200, "writes stopped for {gap} ms");
}
