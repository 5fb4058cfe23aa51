//! The attackers that attack tests build on (examples/rogue_sentinel.rs): a lying sentinel relays a
//! real sentinel faithfully until told otherwise, injects events, lies when told, and vipctl talks
//! to it as to a sentinel; a fake replica answers like a replica and counts the credentials it gets.

mod support;

use std::time::Duration;

use support::*;

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn the_rogue_sentinel_relays_injects_and_lies_on_command() {
    let lab = Lab::up("rogue", LabOptions::default());
    let real = lab.sentinel_addr("h3");
    let rogue_addr = format!("{}:26380", lab.ip_of("h3"));
    let rogue = lab.rogue("h3", &rogue_addr, &real);
    let ask = |addr: &str, args: &[&str]| {
        let out = lab.redis_cli("cl", addr, args);
        assert!(out.status.success(), "redis-cli {args:?} to {addr}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    let master = format!("{}:6379", lab.ip_of("h1"));

    // (1) Relayed answers are the real sentinel's, errors and nil included.
    for q in [
        &["SENTINEL", "get-master-addr-by-name", "mymaster"][..],
        &["SENTINEL", "get-master-addr-by-name", "nosuch"],
        &["SENTINEL", "nosuch-subcommand"],
        &["PING"],
    ] {
        assert_eq!(ask(&rogue_addr, q), ask(&real, q), "{q:?} through the rogue");
    }
    assert_eq!(ask(&rogue_addr, &["SENTINEL", "get-master-addr-by-name", "mymaster"]), master.replace(':', "\n"));

    // vipctl asks it as a sentinel: next to the three real ones, and in place of h3's.
    let real3: Vec<String> = lab.hosts().iter().map(|h| lab.sentinel_addr(h)).collect();
    let four = lab.config_with_sentinels("four.toml", &[&real3[0], &real3[1], &real3[2], &rogue_addr], "");
    let swapped = lab.config_with_sentinels("swapped.toml", &[&real3[0], &real3[1], &rogue_addr], "");
    for (cfg, n) in [(&four, 4), (&swapped, 3)] {
        let view = status(&lab, cfg);
        assert_eq!((view["reachable"].as_u64(), view["configured"].as_u64()), (Some(n), Some(n)), "{view:#}");
        assert_eq!(view["master"].as_str(), Some(master.as_str()), "{view:#}");
        assert_eq!(answer_of(&view, &rogue_addr)["master"].as_str(), Some(master.as_str()), "{view:#}");
    }
    let stats = rogue.stats();
    // vipctl pipelines both questions per master on one connection.
    let (addr_q, master_q) = (stats.forwarded("sentinel|get-master-addr-by-name"), stats.forwarded("sentinel|master"));
    assert!(addr_q >= 4 && master_q >= 2, "{}", stats.raw);
    // The daemon follows its events through it too (the redis crate's own pub/sub client); the
    // probe's channel is none that vipctl acts on.
    let daemon = lab.watch("h1", &four);
    lab.wait("vipctl watch to subscribe through the rogue", Duration::from_secs(10), || {
        (rogue.publish("rogue-probe", "ignored by vipctl") == 1).then_some(())
    });
    drop(daemon);
    let injected_before = rogue.stats().get("injected");

    // (2) A PSUBSCRIBE * client of the rogue gets the real sentinel's events and injected ones; a
    // client of the real sentinel gets only the real ones.
    let via_rogue = lab.psubscribe("cl", &rogue_addr, "*");
    let resp3 = lab.psubscribe_with("cl", &rogue_addr, "+*", &["-3"]);
    let direct = lab.psubscribe("cl", &real, "*");
    let fake_switch = format!("mymaster {} 6379 {} 6379", lab.ip_of("h1"), lab.ip_of("h3"));
    rogue.on("+set", 100, "+switch-master", &fake_switch);
    // SENTINEL SET of the value it already has: an event (+set), and nothing changes.
    assert_eq!(ask(&real, &["SENTINEL", "SET", "mymaster", "down-after-milliseconds", "1000"]), "OK");
    let got = lab.wait("the real +set and the triggered +switch-master via the rogue", Duration::from_secs(5), || {
        let m = via_rogue.messages();
        let real_at = m.iter().position(|(c, _)| c == "+set")?;
        let fake_at = m.iter().position(|(c, p)| c == "+switch-master" && *p == fake_switch)?;
        Some((real_at, fake_at))
    });
    assert!(got.0 < got.1, "the triggered event came before the one that triggered it: {:?}", via_rogue.messages());
    assert_eq!(rogue.publish("+odown", "master mymaster 198.51.100.11 6379 #quorum 3/2"), 2);
    for sub in [&via_rogue, &resp3] {
        lab.wait("the injected +odown", Duration::from_secs(3), || {
            sub.messages().iter().any(|(c, _)| c == "+odown").then_some(())
        });
    }
    lab.wait("the real +set on the real sentinel's client", Duration::from_secs(3), || {
        direct.messages().iter().any(|(c, _)| c == "+set").then_some(())
    });
    let direct_channels: Vec<String> = direct.messages().into_iter().map(|(c, _)| c).collect();
    assert!(
        !direct_channels.iter().any(|c| c == "+switch-master" || c == "+odown"),
        "injected events reached a client of the real sentinel: {direct_channels:?}"
    );

    // (3) Lies: another master, a huge epoch, a replica no sentinel knows.
    let (h3, cl) = (lab.ip_of("h3"), lab.ip_of("cl"));
    rogue.lie(&["master-addr", "mymaster", h3, "6379"]);
    rogue.lie(&["epoch", "mymaster", "1000000"]);
    rogue.lie(&["replica", "mymaster", cl, "6390"]);
    assert_eq!(ask(&rogue_addr, &["SENTINEL", "get-master-addr-by-name", "mymaster"]), format!("{h3}\n6379"));
    assert_eq!(ask(&real, &["SENTINEL", "get-master-addr-by-name", "mymaster"]), master.replace(':', "\n"));
    let details = fields(&ask(&rogue_addr, &["SENTINEL", "master", "mymaster"]));
    assert_eq!((details["ip"].as_str(), details["config-epoch"].as_str()), (h3, "1000000"), "{details:?}");
    let replicas = |addr: &str| ask(addr, &["SENTINEL", "replicas", "mymaster"]);
    let (lied, true_list) = (replicas(&rogue_addr), replicas(&real));
    // RESP2 entries print one element a line; RESP3 maps print "key value" lines.
    let count = |s: &str| s.lines().filter(|l| l.split(' ').next() == Some("master-link-status")).count();
    assert_eq!(count(&lied), count(&true_list) + 1, "lied:\n{lied}\nreal:\n{true_list}");
    assert!(lied.contains(&format!("{cl}:6390")) && !true_list.contains(cl), "{lied}");
    // A RESP3 client (HELLO 3) gets the same lies, in RESP3's shapes.
    assert_eq!(ask(&rogue_addr, &["-3", "SENTINEL", "get-master-addr-by-name", "mymaster"]), format!("{h3}\n6379"));
    let lied3 = ask(&rogue_addr, &["-3", "SENTINEL", "replicas", "mymaster"]);
    assert_eq!(count(&lied3), count(&true_list) + 1, "RESP3:\n{lied3}");
    let view = status(&lab, &four);
    let rogue_answer = answer_of(&view, &rogue_addr);
    assert_eq!(rogue_answer["master"].as_str(), Some(format!("{h3}:6379").as_str()), "{view:#}");
    assert_eq!(rogue_answer["config_epoch"].as_u64(), Some(1_000_000), "{view:#}");
    eprintln!("[rogue] vipctl status with one lying sentinel of four: {}", view["summary"]);
    assert_eq!(rogue.stats().lies().len(), 3, "{}", rogue.stats().raw);
    rogue.clear_lies();
    assert_eq!(ask(&rogue_addr, &["SENTINEL", "get-master-addr-by-name", "mymaster"]), master.replace(':', "\n"));
    assert_eq!(count(&replicas(&rogue_addr)), count(&replicas(&real)));
    let stats = rogue.stats();
    assert!(stats.get("rewritten") >= 5 && stats.lies().is_empty(), "{}", stats.raw);
    assert_eq!((stats.get("injected") - injected_before, stats.get("auth")), (2, 0), "{}", stats.raw);

    // (4) The fake replica answers like a replica and counts credentials without keeping them.
    let fake_addr = format!("{cl}:6390");
    let fake = lab.fake_replica("cl", &fake_addr, &master);
    let role = ask(&fake_addr, &["ROLE"]);
    assert_eq!(role.lines().take(4).collect::<Vec<_>>(), ["slave", lab.ip_of("h1"), "6379", "connected"], "{role}");
    let info = ask(&fake_addr, &["INFO", "replication"]);
    assert!(info.contains("role:slave") && info.contains("slave_repl_offset:1125899906842624"), "{info}");
    assert!(ask(&fake_addr, &["INFO", "server"]).contains(&format!("run_id:{}", "f".repeat(40))));
    assert_eq!(ask(&fake_addr, &["AUTH", "alice", "s3cret-one"]), "OK");
    assert_eq!(ask(&fake_addr, &["REPLICAOF", lab.ip_of("h2"), "6379"]), "OK");
    let out = lab.redis_cli("cl", &fake_addr, &["-a", "s3cret-two", "--no-auth-warning", "PING"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG", "{}", text(&out));
    assert!(ask(&fake_addr, &["GET", "x"]).contains("unknown command"));
    let stats = fake.stats();
    assert_eq!(stats.get("auth"), 2, "{}", stats.raw);
    assert_eq!(stats.auth_users().get("alice"), Some(&1), "{}", stats.raw);
    assert_eq!(stats.auth_users().get("default"), Some(&1), "{}", stats.raw);
    assert_eq!(stats.forwarded("replicaof"), 1, "{}", stats.raw);
    for secret in ["s3cret-one", "s3cret-two"] {
        assert!(!stats.raw.contains(secret) && !fake.log().contains(secret), "{secret} was kept:\n{}", fake.log());
    }
    // Odd input closes that client and nothing else.
    let junk = lab.exec(
        "cl",
        std::path::Path::new("/bin/bash"),
        &["-c", &format!("exec 3<>/dev/tcp/{h3}/26380; printf '*1\\r\\n$99999999\\r\\n' >&3; timeout 2 cat <&3")],
        &[],
    );
    assert!(junk.status.success(), "{}", text(&junk));
    assert_eq!(ask(&rogue_addr, &["PING"]), "PONG");
    assert!(rogue.log().contains("bad RESP"), "{}", rogue.log());
}

/// `vipctl status --json` on h1 with `cfg`: the one master's sentinel view.
fn status(lab: &Lab, cfg: &std::path::Path) -> serde_json::Value {
    let out = lab.vipctl("h1", &["--config", cfg.to_str().unwrap(), "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v["masters"][0]["sentinel"].clone()
}

/// The answer of sentinel `addr` in a status view.
fn answer_of<'a>(view: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    let answers = view["answers"].as_array().expect("answers");
    answers
        .iter()
        .find(|a| a["sentinel"].as_str() == Some(addr))
        .unwrap_or_else(|| panic!("no answer of {addr}: {view:#}"))
}

/// A flat field/value reply, as redis-cli prints it raw, as a map.
fn fields(raw: &str) -> std::collections::BTreeMap<String, String> {
    let lines: Vec<&str> = raw.lines().collect();
    lines.chunks(2).filter(|kv| kv.len() == 2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect()
}
