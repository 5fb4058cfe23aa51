//! Fail-fast (`[watch] fail_fast`) in the lab, with real sentinels at `down-after-milliseconds`
//! 1000 and 10000: a `kill -9` of the master's Redis is failed over by vipctl's `SENTINEL
//! FAILOVER` well before Sentinel would notice, a Redis restarted at once takes no write (whether
//! it answers before the promotion, and is fenced and made a replica, is a race the test reports;
//! the virtual-time tests cover that path for certain),
//! sentinels in TILT are not asked (Sentinel's own failover follows TILT's end),
//! and SIGSTOP, a cut, a planned switchover, replicas Sentinel would not promote and ten quiet
//! minutes trigger nothing. Every failover counts lost acknowledged writes, split into what
//! asynchronous replication loses at the failover (acknowledged by the dead master, never
//! replicated) and anything else.

mod support;

use std::time::Duration;

use support::*;

const FAIL_FAST: &str = "[watch]\nearly_claim = true\nfail_fast = true\n";

/// Fail-fast's decision records on `host`: triggers and refusals.
fn decisions(lab: &Lab, host: &str) -> Vec<Rec> {
    lab.watch_records(host)
        .into_iter()
        .filter(|r| matches!(r.s("reason_code"), "fail_fast" | "fail_fast_refused"))
        .collect()
}

fn all_decisions(lab: &Lab) -> Vec<(String, String)> {
    lab.hosts()
        .into_iter()
        .flat_map(|h| decisions(lab, h).into_iter().map(move |r| (h.to_string(), r.s("reason").to_string())))
        .collect()
}

/// Acknowledged writes lost, as (asynchronous replication, anything else). INCR's values must
/// grow; the first fall after `failover_at` is the promoted replica starting from what it had
/// replicated, which is what asynchronous replication loses (unless it falls to an empty data set:
/// a Redis that came back empty served writes). Every other fall is a loss no failover excuses.
fn losses(lines: &[Write], failover_at: u128) -> (i64, i64) {
    let (mut replication, mut other, mut max, mut excused) = (0, 0, None::<i64>, false);
    for l in lines.iter().filter(|l| l.ok) {
        let Some(v) = l.value else { continue };
        match max {
            Some(m) if v <= m => {
                if !excused && l.at_ms >= failover_at && v > 1 {
                    replication += m - v + 1;
                    excused = true;
                } else {
                    other += m - v + 1;
                }
            }
            _ => {}
        }
        max = Some(v);
    }
    (replication, other)
}

/// The sentinel log lines of every host, in order per host.
fn sentinel_log(lab: &Lab, host: &str) -> Vec<String> {
    std::fs::read_to_string(lab.dir.join(host).join("sentinel.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Whether the sentinel that tried the failover did so before it saw the master down itself: a
/// failover asked for (`SENTINEL FAILOVER`), not one of Sentinel's own detection.
fn asked_before_detected(lab: &Lab) -> Result<String, String> {
    for h in lab.hosts() {
        let log = sentinel_log(lab, h);
        let Some(tried) = log.iter().position(|l| l.contains("+try-failover master")) else { continue };
        let down = log.iter().position(|l| l.contains("+sdown master") || l.contains("+odown master"));
        return match down {
            Some(d) if d < tried => Err(format!("the sentinel on {h} saw the master down first:\n{}", log.join("\n"))),
            _ => Ok(h.to_string()),
        };
    }
    Err("no sentinel tried a failover".into())
}

fn lab_with(name: &str, down_after_ms: u64) -> Lab {
    Lab::up(name, LabOptions { down_after_ms: Some(down_after_ms), ..LabOptions::default() })
}

fn daemons(lab: &Lab) -> Vec<Daemon> {
    lab.watch_all_until_on(&lab.config_with("fail-fast.toml", FAIL_FAST), "h1")
}

/// A lab whose daemons run fail-fast, the VIP on h1, and a client writing through it for `secs`.
fn writing(name: &str, down_after_ms: u64, secs: u64) -> (Lab, Vec<Daemon>, Writer) {
    let lab = lab_with(name, down_after_ms);
    let daemons = daemons(&lab);
    let w = lab.writer(lab.vip4(), Duration::from_secs(secs));
    lab.wait("a write through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    (lab, daemons, w)
}

/// A kill -9's failover as the client saw it.
struct Counted {
    lines: Vec<Write>,
    /// The longest gap between acknowledged writes after the kill.
    outage: u128,
    /// Acknowledged writes lost to asynchronous replication, and otherwise (see [`losses`]).
    replication: i64,
    other: i64,
}

/// Waits (bounded) for the VIP on `new_master` alone and a write through it, then stops the
/// client and counts what it saw after `killed`.
fn counted_after(lab: &Lab, w: &mut Writer, new_master: &str, killed: u128) -> Counted {
    lab.wait("the VIP on the new master only", Duration::from_secs(15), || lab.only_on(new_master));
    lab.wait("a write after the failover", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.value.is_some() && l.at_ms > killed + 50).map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(1));
    w.stop();
    let lines = w.lines();
    let after: Vec<Write> = lines.iter().filter(|l| l.at_ms + 20 >= killed).cloned().collect();
    let (replication, other) = losses(&lines, killed);
    Counted { outage: longest_write_gap_ms(&after), replication, other, lines }
}

fn kill_9(name: &str, down_after_ms: u64) {
    once_more_if_excused(name, |name| kill_9_once(name, down_after_ms));
}

fn kill_9_once(name: &str, down_after_ms: u64) {
    let (lab, _daemons, mut w) = writing(name, down_after_ms, 40);
    std::thread::sleep(Duration::from_secs(1));
    lab.mark_fault();
    let killed = unix_ms();
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let new_master = lab.wait_promotion().to_string();
    let Counted { outage, replication, other, .. } = counted_after(&lab, &mut w, &new_master, killed);
    eprintln!(
        "[{name}] down-after {down_after_ms} ms: client outage {outage} ms after kill -9; lost acknowledged writes: \
         {replication} to asynchronous replication (acknowledged by the dead master, never replicated), {other} else"
    );
    // vipctl asked, once, on the dead master's host; nobody else did.
    let asked = decisions(&lab, "h1");
    assert!(asked.iter().any(|r| r.s("reason_code") == "fail_fast"), "{}", lab.watch_log("h1"));
    assert_eq!(asked.iter().filter(|r| r.s("reason_code") == "fail_fast").count(), 1, "{asked:?}");
    for h in ["h2", "h3"] {
        assert!(decisions(&lab, h).is_empty(), "{h}: {:?}", decisions(&lab, h));
    }
    // The failover is the one asked for, not Sentinel's own after down-after.
    let leader = asked_before_detected(&lab).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{name}] the sentinel on {leader} failed over on vipctl's request");
    assert_eq!(other, 0, "acknowledged writes lost beyond asynchronous replication");
    if down_after_ms >= 10_000 {
        // Sentinel's own path takes down-after and then the election: an outage under half of it
        // is only possible if the failover was asked for.
        assert!(outage < u128::from(down_after_ms / 2), "outage {outage} ms");
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn kill_9_is_failed_over_before_sentinel_notices_at_down_after_1000() {
    kill_9("fail-fast-kill-1000", 1000);
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn kill_9_is_failed_over_well_under_down_after_10000() {
    kill_9("fail-fast-kill-10000", 10_000);
}

/// Milliseconds since midnight of a Redis log line ("PID:R DD Mon YYYY HH:MM:SS.mmm …").
fn log_ms(line: &str) -> Option<u128> {
    let (hms, ms) = line.split_whitespace().nth(4)?.split_once('.')?;
    let mut p = hms.split(':').map(|x| x.parse::<u128>().ok());
    let (h, m, s) = (p.next()??, p.next()??, p.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<u128>().ok()?)
}

/// From the Redis logs: the replicas that took a full resync from h1 (the Redis that came back)
/// after `killed`, and how long h1 was a master after its restart before vipctl's REPLICAOF (ms).
/// A run that spans midnight (UTC) finds nothing.
fn resynced_from_back(lab: &Lab, killed: u128) -> (Vec<String>, Option<u128>) {
    let day = killed % 86_400_000;
    // Valkey says PRIMARY where Redis says MASTER.
    let connecting = |l: &str| {
        let l = l.to_ascii_lowercase();
        ["connecting to master ", "connecting to primary "].iter().find_map(|p| l.split(p).nth(1).map(String::from))
    };
    let h1_at = format!("{}:", lab.ip_of("h1"));
    let since = |h: &str| -> Vec<String> {
        let log = std::fs::read_to_string(lab.dir.join(h).join("redis.log")).unwrap_or_default();
        log.lines().filter(|l| log_ms(l).is_some_and(|t| t >= day)).map(String::from).collect()
    };
    let mut resynced = Vec::new();
    for h in ["h2", "h3"] {
        let mut from_h1 = false;
        for l in since(h) {
            if let Some(to) = connecting(&l) {
                from_h1 = to.starts_with(&h1_at);
            }
            if from_h1 && l.to_ascii_lowercase().contains("full resync from") {
                resynced.push(h.to_string());
                break;
            }
        }
    }
    let h1 = since("h1");
    let at = |what: &str| h1.iter().find(|l| l.contains(what)).and_then(|l| log_ms(l));
    let window = at("Ready to accept connections").zip(at("enabled (user request")).map(|(r, s)| s.saturating_sub(r));
    (resynced, window)
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_redis_restarted_at_once_is_not_served_and_loses_no_write() {
    once_more_if_excused("fail-fast-restart", restarted_at_once);
}

fn restarted_at_once(name: &str) {
    let (lab, _daemons, mut w) = writing(name, 10_000, 40);
    std::thread::sleep(Duration::from_secs(1));
    lab.mark_fault();
    let killed = unix_ms();
    // As systemd's Restart= would, but sooner: the Redis is back, empty, within ~200 ms.
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    std::thread::sleep(Duration::from_millis(150));
    let started = lab.sh(&["start-redis", "h1"]);
    assert!(started.status.success(), "{}", text(&started));
    let back = unix_ms();
    let new_master = lab.wait_promotion();
    lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(new_master));
    lab.wait("a write after the failover", Duration::from_secs(5), || {
        w.lines().into_iter().find(|l| l.ok && l.at_ms > back + 50).map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(1));
    w.stop();
    let lines = w.lines();
    let (replication, other) = losses(&lines, killed);
    let records = lab.watch_records("h1");
    let came_back = records.iter().any(|r| r.s("reason_code") == "came_back_replica");
    let (resynced, window) = resynced_from_back(&lab, killed);
    eprintln!(
        "[{name}] h1 was a master for {window:?} ms after its restart, until vipctl's REPLICAOF; replicas that took \
         a full resync from it meanwhile: {resynced:?}"
    );
    // Only the promoted replica's data set reaches the client: one that resynced from the empty
    // Redis and then was promoted is the race; any other loss is vipctl's.
    if other > 0 && resynced.iter().any(|h| h == new_master) {
        excuse(
            name,
            format!(
                "{resynced:?} reconnected to the restarted, empty h1 in the {window:?} ms before vipctl made it a \
                 replica, and took a full resync from it: Redis's own race (README, \"Known limits\")"
            ),
        );
    }
    eprintln!("[{name}] Sentinel switched to {:?}; falls: {:?}", lab.switched_to(), lost_writes(&lines).1);
    eprintln!(
        "[{name}] back {} ms after the kill; {}; lost acknowledged writes: {replication} to asynchronous \
         replication, {other} else",
        back - killed,
        if came_back {
            "fenced and made a replica when it came back"
        } else {
            "the failover was through before it came back"
        }
    );
    assert!(records.iter().any(|r| r.s("reason_code") == "fail_fast"), "{}", lab.watch_log("h1"));
    assert_eq!(records.iter().filter(|r| r.s("reason_code") == "fail_fast").count(), 1, "asked twice");
    asked_before_detected(&lab).unwrap_or_else(|e| panic!("{e}"));
    // Never served from h1 after its death: no write acknowledged by the Redis that came back.
    assert_eq!(other, 0, "acknowledged writes lost beyond asynchronous replication: {:?}", lost_writes(&lines).1);
    // Claimed once, at the start: never again for the Redis that came back.
    let claims: Vec<&Rec> = records.iter().filter(|r| r.is("claim")).collect();
    assert_eq!(claims.len(), 1, "{claims:?}");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn replicas_sentinel_would_not_promote_trigger_nothing() {
    let lab = lab_with("fail-fast-no-replica", 1000);
    let _daemons = daemons(&lab);
    // Both replicas stopped: the sentinels flag them down, and would promote neither.
    for h in ["h2", "h3"] {
        assert!(lab.sh(&["kill-redis", h, "STOP"]).status.success());
    }
    lab.wait("every sentinel to flag both replicas down", Duration::from_secs(10), || {
        lab.hosts()
            .iter()
            .all(|h| {
                let out = lab.redis_cli(h, &lab.sentinel_addr(h), &["SENTINEL", "REPLICAS", "mymaster"]);
                String::from_utf8_lossy(&out.stdout).matches("s_down").count() >= 2
            })
            .then_some(())
    });
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let refused = lab.wait("fail-fast's refusal", Duration::from_secs(5), || {
        decisions(&lab, "h1").into_iter().find(|r| r.s("reason_code") == "fail_fast_refused")
    });
    eprintln!("[fail-fast-no-replica] {}", refused.s("reason"));
    assert!(refused.s("reason").contains("no replica that a majority"), "{}", refused.s("reason"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!decisions(&lab, "h1").iter().any(|r| r.s("reason_code") == "fail_fast"), "{}", lab.watch_log("h1"));
    for h in ["h2", "h3"] {
        assert!(lab.sh(&["kill-redis", h, "CONT"]).status.success());
    }
}

/// Waits until a majority names a master other than `old` and the VIP is on it alone.
fn settled_away_from(lab: &Lab, old: &str) -> String {
    let new = lab.wait("a new master", Duration::from_secs(30), || {
        lab.master().and_then(|m| lab.host_of(&m).map(str::to_string)).filter(|h| h != old)
    });
    lab.wait("the VIP on the new master only", Duration::from_secs(15), || lab.only_on(&new));
    new
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn sigstop_a_cut_and_a_switchover_trigger_nothing() {
    let name = "fail-fast-no-trigger";
    let (lab, _daemons, mut w) = writing(name, 1000, 120);

    // SIGSTOP: the Redis keeps its listening socket, so nothing is refused; Sentinel fails over.
    let stopped = unix_ms();
    assert!(lab.sh(&["kill-redis", "h1", "STOP"]).status.success());
    let after_stop = settled_away_from(&lab, "h1");
    assert!(lab.sh(&["kill-redis", "h1", "CONT"]).status.success());
    assert!(all_decisions(&lab).is_empty(), "SIGSTOP: {:?}", all_decisions(&lab));

    // A cut: the master's host loses the other hosts; its own Redis answers it all along.
    std::thread::sleep(Duration::from_secs(2));
    let cut = unix_ms();
    assert!(lab.sh(&["isolate", &after_stop, "on"]).status.success());
    let after_cut = settled_away_from(&lab, &after_stop);
    assert!(lab.sh(&["isolate", &after_stop, "off"]).status.success());
    assert!(all_decisions(&lab).is_empty(), "cut: {:?}", all_decisions(&lab));

    // A planned switchover.
    std::thread::sleep(Duration::from_secs(3));
    let target = lab.hosts().into_iter().find(|h| *h != after_cut).expect("another host").to_string();
    let to = format!("{target}.lab");
    let out = lab.vipctl(&target, &["switchover", "--to", &to]);
    eprintln!("[{name}] switchover to {target}: {}", String::from_utf8_lossy(&out.stdout));
    let switched_from = unix_ms();
    lab.wait("the VIP on the switchover's target", Duration::from_secs(15), || lab.only_on(&target));
    std::thread::sleep(Duration::from_secs(2));
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let within = |from: u128, to: u128| {
        lost_writes(&lines.iter().filter(|l| l.at_ms >= from && l.at_ms < to).cloned().collect::<Vec<_>>()).0
    };
    let after_switch = lost_writes(&lines.iter().filter(|l| l.at_ms >= switched_from).cloned().collect::<Vec<_>>());
    eprintln!(
        "[{name}] lost acknowledged writes: {lost} in all ({at:?}); SIGSTOP {}, cut {}, switchover {} (Sentinel's \
         own failovers, as without fail-fast: see lab_doubt and lab_failover for their bounds)",
        within(stopped, cut),
        within(cut, switched_from),
        after_switch.0
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(after_switch.0, 0, "the switchover lost acknowledged writes: {:?}", after_switch.1);
    assert!(all_decisions(&lab).is_empty(), "switchover: {:?}", all_decisions(&lab));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn quiet_minutes_trigger_nothing() {
    // Ten minutes unless VIPCTL_QUIET_S says otherwise (scripts/test.sh shortens it for the
    // second and third server builds, and says so).
    let secs: u64 = std::env::var("VIPCTL_QUIET_S").ok().and_then(|s| s.parse().ok()).unwrap_or(600).clamp(10, 600);
    if secs < 600 {
        eprintln!("[fail-fast-quiet] NOTE: {secs} s of quiet instead of 600 (VIPCTL_QUIET_S)");
    }
    let (lab, _daemons, mut w) = writing("fail-fast-quiet", 1000, secs);
    let holders = lab.holders_during(lab.vip4(), Duration::from_secs(secs.saturating_sub(2)));
    w.stop();
    let lines = w.lines();
    let (lost, at) = lost_writes(&lines);
    let failed = lines.iter().filter(|l| !l.ok).count();
    eprintln!("[fail-fast-quiet] {secs} s: {} writes, {failed} failed, {lost} lost", lines.len());
    assert_eq!(lost, 0, "{at:?}");
    assert!(holders.iter().all(|h| h == &["h1".to_string()]), "the VIP moved: {holders:?}");
    assert!(all_decisions(&lab).is_empty(), "{:?}", all_decisions(&lab));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn sentinels_in_tilt_are_not_asked_and_sentinel_fails_over_after_it() {
    // A sentinel whose timer jumps more than 2 s (a VM pause, a stalled disk) enters TILT for 30 s:
    // it replies +OK to SENTINEL FAILOVER and does nothing, then fails over unelected when it
    // leaves TILT. Each is stopped for 2.5 s in turn, so that two of three always answer.
    // down-after 10000: Sentinel never promotes a replica whose link has been down for more than
    // ten times down-after beyond its own detection, so at 1000 (a 10 s window) a master that died
    // more than 10 s before TILT ended is never failed over at all (README, "Known limits").
    let name = "fail-fast-tilt";
    let (lab, _daemons, mut w) = writing(name, 10_000, 150);
    for h in lab.hosts() {
        assert!(lab.sh(&["signal-sentinel", h, "STOP"]).status.success());
        std::thread::sleep(Duration::from_millis(2500));
        assert!(lab.sh(&["signal-sentinel", h, "CONT"]).status.success());
        lab.wait(&format!("the sentinel on {h} in TILT"), Duration::from_secs(5), || lab.in_tilt(h).then_some(()));
    }
    assert!(lab.hosts().iter().all(|h| lab.in_tilt(h)), "a sentinel left TILT before the kill");
    let killed = unix_ms();
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let refused = lab.wait("fail-fast's refusal", Duration::from_secs(10), || {
        decisions(&lab, "h1").into_iter().find(|r| r.s("reason_code") == "fail_fast_refused")
    });
    eprintln!("[{name}] {}", refused.s("reason"));
    assert!(refused.s("reason").contains("TILT"), "{}", refused.s("reason"));
    // No sentinel was sent SENTINEL FAILOVER: none holds a forced failover for after TILT.
    for h in lab.hosts() {
        let forced: Vec<String> =
            sentinel_log(&lab, h).into_iter().filter(|l| l.contains("user requested FAILOVER")).collect();
        assert!(forced.is_empty(), "the sentinel on {h} was asked in TILT: {forced:?}");
    }
    // Sentinel's own failover, once TILT is over.
    let new_master = lab.wait("Sentinel's failover after TILT", Duration::from_secs(90), || {
        lab.master().filter(|m| m != lab.ip_of("h1")).and_then(|m| lab.host_of(&m).map(str::to_string))
    });
    let Counted { lines, outage, replication, other } = counted_after(&lab, &mut w, &new_master, killed);
    eprintln!(
        "[{name}] Sentinel switched to {:?}; client outage {outage} ms after kill -9 (TILT's 30 s and down-after's \
         10, as without vipctl); lost acknowledged writes: {replication} to asynchronous replication, {other} else",
        lab.switched_to(),
    );
    assert_eq!(other, 0, "acknowledged writes lost beyond asynchronous replication: {:?}", lost_writes(&lines).1);
    assert_eq!(lab.switched_to().len(), 1, "more than one failover: {:?}", lab.switched_to());
}
