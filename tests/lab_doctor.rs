//! `vipctl check` (alias `doctor`) on a lab host: one healthy run, then one run per broken thing,
//! each reporting that thing with a fix, and exit status 2 (a warning, exit 0, for what only
//! weakens fail-fast: a sentinel ACL user without `+info`, a sentinel in TILT).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// Debian 12's stock redis-sentinel.service sandbox (see the Sentinel contract).
const DEBIAN_UNIT: &str = "[Unit]\nDescription=Advanced key-value store\n[Service]\nUser=redis\nNoNewPrivileges=true\nCapabilityBoundingSet=\nPrivateUsers=true\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nProtectSystem=strict\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\n";

fn units(dir: &Path, with_dropin: bool) -> PathBuf {
    let d = dir.join(if with_dropin { "units-ok" } else { "units-bare" });
    std::fs::create_dir_all(d.join("redis-sentinel.service.d")).unwrap();
    std::fs::write(d.join("redis-sentinel.service"), DEBIAN_UNIT).unwrap();
    if with_dropin {
        // The packaged drop-in, pointed at the binary under test.
        std::fs::write(
            d.join("redis-sentinel.service.d/vipctl.conf"),
            format!("[Service]\nExecPaths={}\n", vipctl_bin().display()),
        )
        .unwrap();
    }
    d
}

/// Debian 13's valkey-sentinel.service, its sandbox lines as shipped (valkey-sentinel 8.1.1).
const DEBIAN13_VALKEY_UNIT: &str = "[Unit]\nDescription=Advanced key-value store\n[Service]\nType=notify\nUser=valkey\nGroup=valkey\nProtectSystem=strict\nCapabilityBoundingSet=\nNoNewPrivileges=true\nPrivateUsers=true\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nNoExecPaths=/\nExecPaths=/usr/bin/valkey-sentinel /usr/lib /lib\n";

/// A unit folder with only valkey-sentinel.service and the packaged drop-in (pointed at the binary
/// under test).
fn valkey_units(dir: &Path) -> PathBuf {
    let d = dir.join("units-valkey");
    std::fs::create_dir_all(d.join("valkey-sentinel.service.d")).unwrap();
    std::fs::write(d.join("valkey-sentinel.service"), DEBIAN13_VALKEY_UNIT).unwrap();
    std::fs::write(
        d.join("valkey-sentinel.service.d/vipctl.conf"),
        format!("[Service]\nExecPaths={}\n", vipctl_bin().display()),
    )
    .unwrap();
    d
}

struct Doctor<'a> {
    lab: &'a Lab,
    sentinel_conf: PathBuf,
    units: PathBuf,
}

impl Doctor<'_> {
    /// Runs `vipctl doctor --json` on h1 with `extra` options; returns (exit code, parsed report).
    fn run(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
        // An option given in `extra` replaces the healthy default (they are lists, so both would count).
        let mut args = vec!["doctor", "--json"];
        if !extra.contains(&"--sentinel-conf") {
            args.extend(["--sentinel-conf", self.sentinel_conf.to_str().unwrap()]);
        }
        if !extra.contains(&"--unit-dir") {
            args.extend(["--unit-dir", self.units.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        let out = self.lab.vipctl("h1", &args);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
        (out.status.code(), v)
    }

    /// Asserts exit 0 and a warning containing `needle`, with a fix; returns every check's text.
    fn warns(&self, extra: &[&str], needle: &str) -> Vec<String> {
        let (code, v) = self.run(extra);
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(code, Some(0), "doctor {extra:?} should only warn of {needle:?}: {v:#}");
        assert!(
            checks.iter().any(|c| c["status"] == "warn"
                && c["check"].as_str().unwrap_or("").contains(needle)
                && c["fix"].as_str().is_some_and(|f| !f.is_empty())),
            "doctor {extra:?}: no warning with {needle:?} and a fix: {v:#}"
        );
        checks.iter().filter_map(|c| c["check"].as_str().map(String::from)).collect()
    }

    /// Asserts exit 2 and a failed check containing `needle`, with a fix.
    fn reports(&self, extra: &[&str], needle: &str) {
        let (code, v) = self.run(extra);
        let fails: Vec<&serde_json::Value> =
            v["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "fail").collect();
        assert_eq!(code, Some(2), "doctor {extra:?} should fail on {needle:?}: {v:#}");
        assert!(
            fails.iter().any(|c| c["check"].as_str().unwrap_or("").contains(needle)
                && c["fix"].as_str().is_some_and(|f| !f.is_empty())),
            "doctor {extra:?}: no failed check with {needle:?} and a fix: {v:#}"
        );
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn doctor_finds_each_broken_thing() {
    let lab = Lab::up("doctor", LabOptions { hook: true, ..LabOptions::default() });
    let mut daemon = lab.watch("h1", &lab.config());
    lab.wait("the VIP on h1", Duration::from_secs(10), || (lab.holders(lab.vip4()) == ["h1"]).then_some(()));
    let d = Doctor { lab: &lab, sentinel_conf: lab.dir.join("h1/sentinel.conf"), units: units(&lab.dir, true) };

    // Healthy.
    let (code, v) = d.run(&[]);
    assert_eq!(code, Some(0), "a healthy host: {v:#}");
    assert_eq!(v["failures"], 0);

    // The sentinel unit forbids executing the hook (no drop-in).
    let bare = units(&lab.dir, false);
    d.reports(&["--unit-dir", bare.to_str().unwrap()], "forbids executing");
    // sentinel.conf without the hook line.
    let conf = lab.dir.join("no-hook-sentinel.conf");
    let conf_text = std::fs::read_to_string(&d.sentinel_conf).unwrap();
    std::fs::write(
        &conf,
        conf_text.lines().filter(|l| !l.contains("client-reconfig-script")).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    d.reports(&["--sentinel-conf", conf.to_str().unwrap()], "no client-reconfig-script");
    // A hook line that points at something else.
    std::fs::write(&conf, format!("{conf_text}\nsentinel client-reconfig-script mymaster /bin/true\n")).unwrap();
    d.reports(&["--sentinel-conf", conf.to_str().unwrap()], "not vipctl");
    // A config error.
    let bad = lab.config_with("bad.toml", "bogus_key = 1");
    d.reports(&["--config", bad.to_str().unwrap()], "bogus_key");
    // A master the sentinels do not monitor.
    let other = lab.dir.join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(lab.config()).unwrap().replace("[masters.mymaster]", "[masters.othermaster]"),
    )
    .unwrap();
    d.reports(&["--config", other.to_str().unwrap()], "does not monitor `othermaster`");
    // A VIP on an interface without an address in its subnet.
    let lo = lab.dir.join("lo.toml");
    std::fs::write(
        &lo,
        std::fs::read_to_string(lab.config()).unwrap().replace("interface = \"eth0\"", "interface = \"lo\""),
    )
    .unwrap();
    d.reports(&["--config", lo.to_str().unwrap()], "no address of its own in the subnet");
    // A Valkey host: Debian 13's valkey-sentinel.service runs sentinel as `valkey`. Without
    // hook_users the daemon serves the unit's user; a hook_users that leaves it out is named.
    let valkey = valkey_units(&lab.dir);
    let (code, v) = d.run(&["--unit-dir", valkey.to_str().unwrap()]);
    assert_eq!(code, Some(0), "a Valkey host with the drop-in and no hook_users: {v:#}");
    let oks: Vec<&str> = v["checks"].as_array().unwrap().iter().filter_map(|c| c["check"].as_str()).collect();
    // The lab host has no `valkey` user (Debian 12 without valkey): doctor says the unit cannot start.
    assert!(
        oks.iter().any(|c| c.contains("valkey-sentinel.service runs sentinel as `valkey`, which does not exist")),
        "no check names the valkey user: {v:#}"
    );
    assert!(oks.iter().any(|c| c.contains("valkey-sentinel.service lets sentinel execute")), "{v:#}");
    let redis_only = lab.config_with("redis-only.toml", "[watch]\nhook_users = [\"redis\"]\n");
    d.reports(
        &["--unit-dir", valkey.to_str().unwrap(), "--config", redis_only.to_str().unwrap()],
        "runs sentinel as `valkey`, which [watch] hook_users (redis) does not list",
    );

    // Fail-fast reads TILT with INFO sentinel: an ACL user without +info is named, with the fix.
    for h in lab.hosts() {
        let out = lab.redis_cli(
            h,
            &lab.sentinel_addr(h),
            &["ACL", "SETUSER", "vipctl", "on", ">pw-lab", "+sentinel", "+subscribe", "+psubscribe", "+ping", "&*"],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "ACL SETUSER on {h}: {}", text(&out));
    }
    let acl = lab.config_with(
        "fail-fast-acl.toml",
        "[watch]\nfail_fast = true\n[sentinel_auth]\nusername = \"vipctl\"\npassword = \"pw-lab\"\n",
    );
    let acl = acl.to_str().unwrap();
    let said = d.warns(&["--config", acl], "refuses INFO sentinel");
    eprintln!("[doctor] {:?}", said.iter().find(|c| c.contains("INFO")));
    for h in lab.hosts() {
        lab.redis_cli(h, &lab.sentinel_addr(h), &["ACL", "SETUSER", "vipctl", "+info"]);
    }
    let (code, v) = d.run(&["--config", acl]);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(!v.to_string().contains("refuses INFO"), "warned with +info allowed: {v:#}");
    // A sentinel in TILT now (stopped 2.5 s: its timer jumped): named, as a host that stalls.
    assert!(lab.sh(&["signal-sentinel", "h2", "STOP"]).status.success());
    std::thread::sleep(Duration::from_millis(2500));
    assert!(lab.sh(&["signal-sentinel", "h2", "CONT"]).status.success());
    lab.wait("the sentinel on h2 in TILT", Duration::from_secs(5), || lab.in_tilt("h2").then_some(()));
    let said = d.warns(&["--config", acl], "sentinel 198.51.100.12:26379: TILT");
    eprintln!("[doctor] {:?}", said.iter().find(|c| c.contains("TILT")));

    // A sentinel that does not answer.
    assert!(lab.sh(&["signal-sentinel", "h3", "STOP"]).status.success());
    d.reports(&[], "sentinel 198.51.100.13:26379 unreachable");
    assert!(lab.sh(&["signal-sentinel", "h3", "CONT"]).status.success());

    // No daemon, and the master's VIP not bound.
    daemon.kill();
    let out = lab.vipctl("h1", &["release"]);
    assert!(out.status.success(), "{}", text(&out));
    d.reports(&[], "no vipctl watch daemon answers");
    d.reports(&[], "its VIPs are not bound");

    // Without privileges and without a daemon to act for it.
    let cfg = lab.config();
    let out = lab.vipctl_unprivileged(
        "h1",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "doctor",
            "--sentinel-conf",
            d.sentinel_conf.to_str().unwrap(),
            "--unit-dir",
            d.units.to_str().unwrap(),
        ],
        &[("VIPCTL_SOCKET", lab.socket("h1").to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lacks CAP_NET_ADMIN"), "{}", text(&out));
}
