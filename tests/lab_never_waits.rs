//! The daemon never waits: not for a sentinel that is cut off, not for a resolver that does not
//! answer, not for announcement rounds of a VIP it no longer holds; and it acts on what is true
//! now (a restarted daemon defends at once; an aborted failover is not claimed).

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_partition_moves_the_vip_without_waiting_for_the_cut_off_sentinel() {
    let lab = Lab::up("never-waits-partition", LabOptions::default());
    // A long sentinel timeout: a decision that waited for the cut-off sentinel would take 3 s.
    let cfg = lab.config_with("partition.toml", "sentinel_timeout_ms = 3000\n");
    let _daemons = lab.watch_all_until_on(&cfg, "h1");

    assert!(lab.sh(&["link", "h1", "down"]).status.success());
    let new_master = lab.wait("the majority's new master to hold the VIP alone", Duration::from_secs(30), || {
        ["h2", "h3"].into_iter().find(|h| lab.only_on(h).is_some())
    });
    let claim = lab.wait("the new master's claim record", Duration::from_secs(5), || {
        lab.watch_records(new_master).into_iter().find(|r| r.is("claim") && r.ok())
    });
    let promoted = ["h2", "h3"]
        .iter()
        .filter_map(|h| redis_log_ms(&lab.dir.join(h).join("sentinel.log"), "+promoted-slave"))
        .min()
        .expect("a sentinel logged +promoted-slave");
    let lag = record_ms(&claim) as i128 - promoted as i128;
    eprintln!("[never-waits-partition] VIP bound on {new_master} {lag} ms after +promoted-slave; {claim}");
    // Sentinel logs in milliseconds; the claim cannot precede the promotion by more than that.
    assert!(lag >= -2, "claimed before the promotion: {lag} ms");
    assert!(lag < 1500, "the claim waited {lag} ms after +promoted-slave: it waited for the cut-off sentinel");
    assert!(claim.s("trigger").contains("sentinel"), "{claim}");

    assert!(lab.sh(&["link", "h1", "up"]).status.success());
    let seen = lab.holders_during(lab.vip4(), Duration::from_secs(2));
    assert_eq!(seen, [vec![new_master.to_string()]], "h1 came back into the picture after the heal");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_restarted_daemon_on_the_master_answers_a_rogue_claim() {
    let lab = Lab::up("never-waits-restart", LabOptions::default());
    let mut daemons = lab.watch_all_until_on(&lab.config(), "h1");
    // A package upgrade restarts the daemon: the new one changes nothing, so it must learn what it
    // holds from the addresses, not from a change it made.
    daemons[0].kill();
    daemons[0] = lab.watch("h1", &lab.config());
    std::thread::sleep(Duration::from_millis(300));
    let records = lab.watch_records("h1");
    let start = records.iter().rposition(|r| r.s("event") == "start").expect("a start record");
    assert!(records[start..].iter().all(|r| r.s("event") != "decision"), "the restarted daemon changed something");

    // The client talks to the VIP, so that it has a neighbour entry for announcements to correct.
    let mut w = lab.writer(lab.vip4(), Duration::from_millis(500));
    lab.wait("a write through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    w.stop();
    assert_eq!(lab.neigh(lab.vip4()), lab.mac_of("h1"));

    let out = lab.vipctl("h2", &["claim", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let conflict = lab.wait("the restarted daemon to answer the claim", Duration::from_secs(3), || {
        lab.watch_records("h1").into_iter().skip(start).find(|r| r.s("event") == "conflict")
    });
    assert!(conflict.s("detail").contains(lab.mac_of("h2")) && conflict.ok(), "{conflict}");
    lab.wait("the client's ARP entry back on h1", Duration::from_secs(3), || {
        (lab.neigh(lab.vip4()) == lab.mac_of("h1")).then_some(())
    });
    lab.wait("the VIP on h1 only", Duration::from_secs(3), || lab.only_on("h1"));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_release_cancels_the_announcement_rounds_still_to_come() {
    let lab = Lab::up("never-waits-rounds", LabOptions::default());
    // Fifteen seconds of announcement rounds after every claim: a failover lands in the middle.
    let cfg = lab.config_with("rounds.toml", "[announce]\nrounds = 50\ninterval_ms = 300\n");
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    let capture = lab.capture("cl");
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let new_master = lab.wait_promotion();
    lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(new_master));
    let release = lab.wait("h1's release record", Duration::from_secs(5), || {
        lab.watch_records("h1").into_iter().find(|r| r.is("release") && r.ok())
    });
    // Several more round intervals.
    std::thread::sleep(Duration::from_millis(1500));
    let frames = capture.stop();
    let released = record_ms(&release);
    let h1 = lab.mac_of("h1");
    let vips = [lab.vip4(), lab.vip6()];
    let from_h1: Vec<&Seen> =
        frames.iter().filter(|f| f.mac == h1 && vips.contains(&f.addr.to_string().as_str())).collect();
    assert!(from_h1.iter().any(|f| f.at_ms < released), "h1's rounds were not running before the release: {frames:?}");
    // The record is written right after the addresses are gone; a frame sent just before can be
    // seen a moment later.
    let late: Vec<&&Seen> = from_h1.iter().filter(|f| f.at_ms > released + 20).collect();
    assert!(late.is_empty(), "h1 announced a VIP after releasing it ({release}): {late:?}");
    eprintln!(
        "[never-waits-rounds] {} frames from h1 before its release, none after",
        from_h1.iter().filter(|f| f.at_ms <= released).count()
    );
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn early_claim_stops_when_the_failover_aborts() {
    // The replicas ignore Sentinel's SLAVEOF NO ONE (renamed), so the failover aborts after
    // failover-timeout; then the selected replica is promoted by hand. An early claim still
    // watching it would claim the VIP for a promotion Sentinel gave up on.
    let rename = "rename-command SLAVEOF VIPCTL_TEST_SLAVEOF\nrename-command REPLICAOF VIPCTL_TEST_REPLICAOF";
    let lab = Lab::up("never-waits-abort", LabOptions { replica_conf: Some(rename.into()), ..LabOptions::default() });
    let cfg = lab.config_with("early.toml", "[watch]\nearly_claim = true\n");
    let _daemons = lab.watch_all_until_on(&cfg, "h1");
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());

    let sentinel_log = |h: &str| std::fs::read_to_string(lab.dir.join(h).join("sentinel.log")).unwrap_or_default();
    let selected = lab.wait("the leader to select a replica", Duration::from_secs(20), || {
        lab.hosts().into_iter().find_map(|h| {
            let log = sentinel_log(h);
            let line = log.lines().find(|l| l.contains("+selected-slave"))?;
            // "+selected-slave slave IP:PORT IP PORT @ mymaster …"
            let ip = line.split_whitespace().skip_while(|w| *w != "+selected-slave").nth(3)?.to_string();
            lab.host_of(&ip).map(str::to_string)
        })
    });
    lab.wait("the selected replica's daemon to watch it", Duration::from_secs(5), || {
        std::fs::read_to_string(lab.dir.join(&selected).join("watch.out"))
            .unwrap_or_default()
            .contains("watching it")
            .then_some(())
    });
    lab.wait("the failover to abort", Duration::from_secs(20), || {
        lab.hosts().iter().any(|h| sentinel_log(h).contains("-failover-abort")).then_some(())
    });
    // The daemon hears of the abort a moment after the sentinel logs it (a busy machine: later):
    // the promotion by hand comes after it stopped watching, or the test would race the event.
    lab.wait("the selected replica's daemon to stop watching it", Duration::from_secs(5), || {
        std::fs::read_to_string(lab.dir.join(&selected).join("watch.out"))
            .unwrap_or_default()
            .contains("stopped watching it")
            .then_some(())
    });
    let promote = lab.exec(
        &selected,
        std::path::Path::new("/usr/bin/redis-cli"),
        &["-h", lab.ip_of(&selected), "-p", "6379", "VIPCTL_TEST_REPLICAOF", "NO", "ONE"],
        &[],
    );
    assert!(String::from_utf8_lossy(&promote.stdout).contains("OK"), "{}", text(&promote));
    let seen = lab.holders_during(lab.vip4(), Duration::from_millis(1500));
    let early: Vec<Rec> = lab
        .hosts()
        .into_iter()
        .flat_map(|h| lab.watch_records(h))
        .filter(|r| r.s("reason_code") == "early_claim")
        .collect();
    assert!(early.is_empty(), "claimed for an aborted failover: {early:?}");
    assert!(!seen.iter().any(|s| s.contains(&selected)), "the VIP went to {selected}: {seen:?}");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_resolver_that_never_answers_freezes_nothing() {
    // Sentinels announce host names; the daemons resolve through a DNS server that reads every
    // query and answers none (while the sentinels themselves use the lab's /etc/hosts).
    let lab = Lab::up("never-waits-resolver", LabOptions { hostnames: true, ..LabOptions::default() });
    let dns = lab.udp_sink("cl", 53);
    std::fs::write(
        lab.dir.join("resolv.conf"),
        format!("nameserver {}\noptions timeout:5 attempts:3\n", lab.ip_of("cl")),
    )
    .unwrap();
    std::fs::write(lab.dir.join("nsswitch.conf"), "hosts: dns\n").unwrap();
    let wrapper = lab.dir.join("blind-resolver.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# Runs the rest with a resolver that never answers.\nset -e\n\
             mount --bind {0}/resolv.conf /etc/resolv.conf\nmount --bind {0}/nsswitch.conf /etc/nsswitch.conf\nexec \"$@\"\n",
            lab.dir.display()
        ),
    )
    .unwrap();
    let w = wrapper.to_str().unwrap();
    let via = ["unshare", "--mount", "--propagation", "private", "/bin/sh", w];
    let cfg = lab.config_with("resolver.toml", "[watch]\nmetrics_listen = \"127.0.0.1:9477\"\n");
    let _daemon = lab.watch_via("h1", &cfg, &via);
    std::thread::sleep(Duration::from_secs(3));
    assert!(dns.received() > 0, "the daemon never asked the DNS server: the test proves nothing");

    for _ in 0..3 {
        let t = Instant::now();
        let mut args: Vec<&str> = via.to_vec();
        let bin = vipctl_bin();
        let c = cfg.to_str().unwrap();
        let socket = lab.socket("h1");
        args.extend([bin.to_str().unwrap(), "--config", c, "status"]);
        let out =
            lab.exec("h1", std::path::Path::new("/usr/bin/env"), &args, &[("VIPCTL_SOCKET", socket.to_str().unwrap())]);
        let took = t.elapsed();
        let s = String::from_utf8_lossy(&out.stdout);
        eprintln!("[never-waits-resolver] status answered in {} ms", took.as_millis());
        assert!(out.status.success() && s.contains("daemon:   "), "status did not reach the daemon: {}", text(&out));
        // The resolver would take 15 s; status gives names 500 ms.
        assert!(took < Duration::from_secs(2), "status took {took:?} with a hung resolver");
        let health = lab.http_get("h1", 9477, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "healthz: {health}");
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn the_hook_in_a_partition_decides_without_the_cut_off_sentinel() {
    let lab = Lab::up("never-waits-hook", LabOptions { hook: true, ..LabOptions::default() });
    // A long sentinel timeout: a hook that waited for the cut-off sentinel would take 3 s.
    let cfg = lab.config_with("hook.toml", "sentinel_timeout_ms = 3000\n");
    std::fs::copy(&cfg, lab.config()).unwrap();
    let out = lab.vipctl("h1", &["claim"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.sh(&["link", "h1", "down"]).status.success());
    let new_master = lab.wait("the majority to fail over (the hooks alone)", Duration::from_secs(30), || {
        ["h2", "h3"].into_iter().find(|h| lab.holders(lab.vip4()).contains(&h.to_string()))
    });
    let claim = lab.wait("the new master's hook to record its claim", Duration::from_secs(10), || {
        lab.hook_records(new_master).into_iter().find(|r| r.s("actor") == "hook" && r.is("claim") && r.ok())
    });
    eprintln!("[never-waits-hook] {claim}");
    // The claiming call's own time: its announcement rounds (3 × 100 ms apart) plus the decision.
    let elapsed = claim.f("elapsed_ms").unwrap_or(f64::MAX);
    assert!(elapsed < 1500.0, "the hook took {elapsed} ms: it waited for the cut-off sentinel ({claim})");
    assert!(lab.sh(&["link", "h1", "up"]).status.success());
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_hook_that_no_sentinel_answers_asks_to_be_retried_and_changes_nothing() {
    let lab = Lab::up("never-waits-no-sentinel", LabOptions::default());
    let out = lab.vipctl("h1", &["claim"]);
    assert!(out.status.success(), "{}", text(&out));
    for h in lab.hosts() {
        assert!(lab.sh(&["signal-sentinel", h, "STOP"]).status.success());
    }
    let before: Vec<String> = lab.hosts().iter().map(|h| lab.addresses(h)).collect();
    // Arguments that say h2 is the master, maybe hours old: with no sentinel to confirm them, act on nothing.
    let args = ["mymaster", "observer", "start", lab.ip_of("h1"), "6379", lab.ip_of("h2"), "6379"];
    for h in ["h1", "h2"] {
        let out = lab.vipctl(h, &args);
        assert_eq!(out.status.code(), Some(1), "{h}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("none of the 3 sentinels answered"), "{}", text(&out));
    }
    let after: Vec<String> = lab.hosts().iter().map(|h| lab.addresses(h)).collect();
    assert_eq!(before, after, "a hook acted on arguments no sentinel confirmed");
    for h in lab.hosts() {
        assert!(lab.sh(&["signal-sentinel", h, "CONT"]).status.success());
    }
}
