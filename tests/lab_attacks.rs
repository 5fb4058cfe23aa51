//! One lying sentinel among honest ones, for real: a rogue (examples/rogue_sentinel.rs) relays a
//! real sentinel and lies when told. It must not be able to block writes for long, cause a
//! failover through a fence, lift the fence of a real switchover, pick a switchover's target, or
//! receive anything meant for a replica. Every test counts lost acknowledged writes.

mod support;

use std::time::Duration;

use support::*;

/// Sentinel-log lines that mean the healthy master was seen down or failed over.
fn failover_lines(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for h in lab.hosts() {
        let log = std::fs::read_to_string(lab.dir.join(h).join("sentinel.log")).unwrap_or_default();
        out.extend(
            log.lines()
                .filter(|l| l.contains("+sdown master") || l.contains("+odown") || l.contains("+switch-master"))
                .map(|l| format!("{h}: {l}")),
        );
    }
    out
}

/// The master named by the three real sentinels, as a host name (h1 h2 h3).
fn real_master(lab: &Lab) -> String {
    lab.master().and_then(|m| lab.host_of(&m).map(str::to_string)).unwrap_or_default()
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_forged_selection_blocks_writes_only_briefly_and_causes_no_failover() {
    let lab = Lab::up("attack-selection", LabOptions::default());
    let rogue_addr = format!("{}:26380", lab.ip_of("h3"));
    let rogue = lab.rogue("h3", &rogue_addr, &lab.sentinel_addr("h3"));
    let real: Vec<String> = lab.hosts().iter().map(|h| lab.sentinel_addr(h)).collect();
    let cfg = lab.config_with_sentinels(
        "rogue.toml",
        &[&real[0], &real[1], &real[2], &rogue_addr],
        "[watch]\nearly_claim = true\n",
    );
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    let mut w = lab.writer(lab.vip4(), Duration::from_secs(12));
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    lab.wait("the daemon on h1 to follow the rogue", Duration::from_secs(10), || {
        (rogue.publish("rogue-probe", "-") >= 3).then_some(())
    });
    let before = failover_lines(&lab);
    // The leader's events for a failover toward h2, all forged, twice over.
    let payload = format!("slave {0}:6379 {0} 6379 @ mymaster {1} 6379", lab.ip_of("h2"), lab.ip_of("h1"));
    for _ in 0..2 {
        rogue.publish("+selected-slave", &payload);
        rogue.publish("+failover-state-wait-promotion", &payload);
        std::thread::sleep(Duration::from_millis(1500));
    }
    // With 0.1.0 the pause blocked Sentinel's PINGs and the sentinels failed h1 over ~2.4 s later.
    std::thread::sleep(Duration::from_secs(4));
    w.stop();
    assert_eq!(failover_lines(&lab), before, "the fence made Sentinel see the healthy master as down");
    assert_eq!(real_master(&lab), "h1", "a failover happened");
    assert!(lab.only_on("h1").is_some(), "the VIP left the master: {:?}", lab.vips());
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let gap = longest_write_gap_ms(&lines);
    eprintln!("[attack-selection] lost {lost} acknowledged writes; longest gap {gap} ms");
    assert_eq!(lost, 0, "{at:?}");
    // One fence, on one voice: a quarter of down-after (250 ms), plus the writer's 10 ms cadence.
    assert!(gap <= 400, "writes stopped for {gap} ms");
    let h1 = lab.watch_records("h1");
    let fences: Vec<&Rec> = h1.iter().filter(|r| r.s("reason_code") == "fence_writes").collect();
    assert_eq!(fences.len(), 1, "{fences:?}");
    assert!(h1.iter().any(|r| r.s("reason_code") == "lift_fence"), "the fence was not lifted");
    assert!(!h1.iter().any(|r| r.is("release") || r.s("reason_code") == "demote"), "{h1:?}");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_forged_abort_during_a_real_switchover_loses_no_acknowledged_write() {
    for trigger in ["+failover-state-wait-promotion", "+promoted-slave"] {
        let lab = Lab::up("attack-abort", LabOptions::default());
        // In front of h2's sentinel, which will lead: it relays the leader's own events.
        let rogue_addr = format!("{}:26380", lab.ip_of("h2"));
        let rogue = lab.rogue("h2", &rogue_addr, &lab.sentinel_addr("h2"));
        let real: Vec<String> = lab.hosts().iter().map(|h| lab.sentinel_addr(h)).collect();
        let cfg = lab.config_with_sentinels(
            "rogue.toml",
            &[&real[0], &real[1], &real[2], &rogue_addr],
            "[watch]\nearly_claim = true\n",
        );
        let _daemons = lab.watch_all_until_on(&cfg, "h1");
        let mut via_vip = lab.writer(lab.vip4(), Duration::from_secs(20));
        // A client that kept a connection to the old master's own address: it lost 979 writes.
        let mut direct = lab.writer(lab.ip_of("h1"), Duration::from_secs(20));
        lab.wait("writes", Duration::from_secs(5), || {
            (via_vip.lines().iter().any(|l| l.ok) && direct.lines().iter().any(|l| l.ok)).then_some(())
        });
        lab.wait("the daemons to follow the rogue", Duration::from_secs(10), || {
            (rogue.publish("rogue-probe", "-") >= 3).then_some(())
        });
        let abort = format!("master mymaster {} 6379", lab.ip_of("h1"));
        rogue.on(trigger, 20, "-failover-abort-not-elected", &abort);
        let out = lab.redis_cli("h2", &lab.sentinel_addr("h2"), &["SENTINEL", "FAILOVER", "mymaster"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", text(&out));
        let new_master = lab.wait_promotion().to_string();
        lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(&new_master));
        lab.wait("h1's daemon to demote its Redis", Duration::from_secs(10), || {
            lab.watch_records("h1").into_iter().find(|r| r.s("reason_code") == "demote")
        });
        std::thread::sleep(Duration::from_secs(2));
        via_vip.stop();
        direct.stop();
        assert!(rogue.stats().get("injected") >= 1, "the forged abort was never sent:\n{}", rogue.log());
        for (what, w) in [("through the VIP", &via_vip), ("to h1's own address", &direct)] {
            let lines = w.lines();
            let (lost, at) = lost_writes(&lines);
            eprintln!(
                "[attack-abort after {trigger}] {what}: lost {lost}; longest gap {} ms",
                longest_write_gap_ms(&lines)
            );
            assert_eq!(lost, 0, "{what}, forged abort after {trigger}: {at:?}");
        }
        let lifted: Vec<Rec> =
            lab.watch_records("h1").into_iter().filter(|r| r.s("reason_code") == "lift_fence").collect();
        assert!(lifted.is_empty(), "the forged abort lifted the fence: {lifted:?}");
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_switchover_believes_no_single_sentinel_and_no_replica_about_itself() {
    let lab = Lab::up("attack-switchover", LabOptions::default());
    // The rogue replaces h3's sentinel in the list (one of three), and lists an impostor replica
    // with the best priority and a huge offset; the impostor answers like a replica of h1.
    let rogue_addr = format!("{}:26380", lab.ip_of("h3"));
    let fake_addr = format!("{}:7777", lab.ip_of("h3"));
    let master = format!("{}:6379", lab.ip_of("h1"));
    let rogue = lab.rogue_with(
        "h3",
        &rogue_addr,
        &lab.sentinel_addr("h3"),
        &[&format!("replica mymaster {} 7777 priority 1", lab.ip_of("h3"))],
    );
    let fake = lab.fake_replica("h3", &fake_addr, &master);
    let cfg = lab.config_with_sentinels(
        "swapped.toml",
        &[&lab.sentinel_addr("h1"), &lab.sentinel_addr("h2"), &rogue_addr],
        "[watch]\nearly_claim = true\n",
    );
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    let mut w = lab.writer(lab.vip4(), Duration::from_secs(40));
    lab.wait("writes through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    let run = |args: &[&str]| {
        let mut full = vec!["--config", cfg.to_str().unwrap(), "switchover"];
        full.extend_from_slice(args);
        lab.exec("h2", &vipctl_bin(), &full, &[])
    };
    // Named by hand: refused, and nothing changes.
    let out = run(&["--to", &fake_addr]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("majority"), "{}", text(&out));
    assert_eq!(real_master(&lab), "h1");
    // Left to choose: a real replica, never the impostor with the best priority.
    let out = run(&[]);
    eprintln!("[attack-switchover] {}", text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let new_master = real_master(&lab);
    assert!(new_master == "h2" || new_master == "h3", "the sentinels name {new_master}");
    lab.wait("the VIP on the new master only", Duration::from_secs(5), || lab.only_on(&new_master));
    let stats = fake.stats();
    for cmd in ["role", "info", "ping", "replicaof", "slaveof", "config", "client"] {
        assert_eq!(stats.forwarded(cmd), 0, "vipctl sent {cmd} to the impostor: {}\n{}", stats.raw, fake.log());
    }
    assert!(stats.auth_users().is_empty(), "credentials reached the impostor: {}", stats.raw);
    let moved = unix_ms();
    lab.wait("a write after the switchover", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > moved).map(|_| ())
    });
    w.stop();
    let (lost, at) = lost_writes(&w.lines());
    eprintln!(
        "[attack-switchover] lost {lost} acknowledged writes; longest gap {} ms",
        longest_write_gap_ms(&w.lines())
    );
    assert_eq!(lost, 0, "{at:?}");
    assert!(rogue.stats().get("rewritten") >= 1, "the rogue never lied:\n{}", rogue.log());
}
