//! Trust boundaries: no local user, frame on the wire, Redis setting or file-system trick can
//! disable vipctl or make it change the network for someone who may not.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Runs `program` in `host`'s namespace as user nobody; file capabilities of `program` still apply.
fn as_nobody(lab: &Lab, host: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut full = vec!["--reuid=65534", "--regid=65534", "--clear-groups", program];
    full.extend_from_slice(args);
    lab.exec(host, Path::new("/usr/bin/setpriv"), &full, env)
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn redis_with_a_password_is_asked_with_it() {
    let lab = Lab::up("trust-redis-pass", LabOptions { redis_pass: Some("r3dis-lab".into()), ..LabOptions::default() });
    let pass = lab.dir.join("redis.pass.txt");
    std::fs::write(&pass, "r3dis-lab\n").unwrap();
    let cfg = lab.config_with(
        "auth.toml",
        &format!("[redis_auth]\npassword_file = \"{}\"\n[watch]\nearly_claim = true\n", pass.display()),
    );
    // Early claim polls the promoted replica: without the password it would only ever hear NOAUTH.
    let (_daemons, _, claim) = lab.daemons_fail_over(&cfg);
    assert_eq!(claim.s("reason_code"), "early_claim", "{claim}");
    for h in lab.hosts() {
        assert!(!lab.watch_log(h).contains("r3dis-lab"), "the Redis password leaked into {h}'s log");
    }
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_tls_only_redis_is_asked_over_tls() {
    let certs = TestCerts::make();
    let opts = LabOptions { redis_tls_dir: Some(certs.dir.clone()), ..LabOptions::default() };
    let lab = Lab::up("trust-redis-tls", opts);
    let cfg = lab.config_with(
        "tls.toml",
        &format!("[redis_tls]\nca_file = \"{}\"\n[watch]\nearly_claim = true\n", certs.dir.join("ca.crt").display()),
    );
    // The first claim needs the local Redis's ROLE (over TLS), and so does early claim.
    let (_daemons, _, claim) = lab.daemons_fail_over(&cfg);
    assert_eq!(claim.s("reason_code"), "early_claim", "{claim}");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn lock_paths_another_user_can_reach_block_nothing() {
    let lab = Lab::up("trust-locks", LabOptions::default());
    let ino = String::from_utf8_lossy(
        &lab.exec("h1", Path::new("/usr/bin/stat"), &["-L", "-c", "%i", "/proc/self/ns/net"], &[]).stdout,
    )
    .trim()
    .to_string();
    // Where the locks used to be: world-writable /run/lock, a predictable name. Anyone can plant a
    // FIFO there (which hung vipctl for good) or hold a flock on a file of their own.
    let old = format!("/run/lock/vipctl-mymaster-{ino}.lock");
    let _ = std::fs::remove_file(&old);
    let fifo = as_nobody(&lab, "h1", "/usr/bin/mkfifo", &["-m", "666", &old], &[]);
    assert!(fifo.status.success(), "{}", text(&fifo));
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(old.clone());
    // Where the locks are now (a folder in root's /run): nobody can create anything there, nor open
    // a lock file to hold it.
    let t = Instant::now();
    let out = lab.vipctl("h1", &["claim"]);
    assert!(out.status.success() && t.elapsed() < Duration::from_secs(5), "{}", text(&out));
    let dir = vipctl::lock::DEFAULT_DIR;
    let lock = format!("{dir}/vipctl-mymaster-{ino}.lock");
    let planted = as_nobody(&lab, "h1", "/usr/bin/mkfifo", &[&format!("{dir}/vipctl-other-1.lock")], &[]);
    assert!(!planted.status.success(), "nobody could create a file in the lock folder");
    let held = as_nobody(&lab, "h1", "/usr/bin/flock", &["-n", &lock, "true"], &[]);
    assert!(!held.status.success(), "nobody could open the lock file to hold its flock: {}", text(&held));
    for args in [&["release"][..], &["claim"]] {
        let t = Instant::now();
        let out = lab.vipctl("h1", args);
        assert!(out.status.success() && t.elapsed() < Duration::from_secs(5), "{args:?}: {}", text(&out));
    }
    // The daemon's changes go through the same locks.
    let _daemons = lab.watch_all(&lab.config());
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let new_master = lab.wait_promotion();
    lab.wait("the daemons to move the VIP", Duration::from_secs(10), || lab.only_on(new_master));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_capable_binary_takes_no_config_from_its_caller() {
    let lab = Lab::up("trust-setcap", LabOptions::default());
    // As the README used to advise: the binary with file capabilities, executable by everyone.
    let bin = lab.dir.join("vipctl-capable");
    std::fs::copy(vipctl_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let setcap = std::process::Command::new("setcap").arg("cap_net_admin,cap_net_raw+ep").arg(&bin).output().unwrap();
    assert!(setcap.status.success(), "setcap (libcap2-bin): {}", text(&setcap));
    let out = lab.vipctl("h1", &["claim"]);
    assert!(out.status.success(), "{}", text(&out));

    // A user's own configs: the host's own address as a VIP to release, the gateway's to claim.
    let evil = lab.dir.join("evil.toml");
    std::fs::write(&evil, "[masters.mymaster]\nvips = [\"198.51.100.11/24\"]\ninterface = \"eth0\"\n").unwrap();
    let evil2 = lab.dir.join("evil2.toml");
    std::fs::write(&evil2, "[masters.gw]\nvips = [\"198.51.100.1/24\"]\ninterface = \"eth0\"\n").unwrap();
    for f in [&evil, &evil2] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let before = lab.addresses("h1");
    let b = bin.to_str().unwrap();
    let release = as_nobody(&lab, "h1", b, &["--config", evil.to_str().unwrap(), "release", "mymaster"], &[]);
    let claim = as_nobody(&lab, "h1", b, &["claim", "gw", "--force"], &[("VIPCTL_CONFIG", evil2.to_str().unwrap())]);
    let log = as_nobody(&lab, "h1", b, &["status"], &[("VIPCTL_LOG_FILE", "/tmp/x")]);
    // check reads the files and runs the speaker's CLI against the sockets its flags name.
    let conf = as_nobody(&lab, "h1", b, &["check", "--sentinel-conf", "/etc/shadow"], &[]);
    let socket = as_nobody(&lab, "h1", b, &["doctor", "--bird-socket", "/tmp/x"], &[]);
    for (what, out) in [
        ("--config", &release),
        ("VIPCTL_CONFIG", &claim),
        ("VIPCTL_LOG_FILE", &log),
        ("--sentinel-conf", &conf),
        ("--bird-socket", &socket),
    ] {
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("raised privileges"), "{what}: {}", text(out));
    }
    assert_eq!(lab.addresses("h1"), before, "a user's own config changed the host's addresses");
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn idle_connections_from_another_user_neither_starve_status_nor_stop_fencing() {
    let lab = Lab::up("trust-flood", LabOptions::default());
    // The daemon at systemd's default soft limit of open files.
    let cfg = lab.config();
    let h1 = lab.watch_via("h1", &cfg, &["prlimit", "--nofile=1024:1024", "--"]);
    let _others: Vec<Daemon> = ["h2", "h3"].iter().map(|h| lab.watch(h, &cfg)).collect();
    lab.wait("the VIP on h1", Duration::from_secs(10), || lab.only_on("h1"));
    // User nobody holds 2000 idle connections to the (world-connectable) control socket.
    let socket = lab.socket("h1");
    let script = format!(
        "use IO::Socket::UNIX; my @s; for (1..2000) {{ my $c = IO::Socket::UNIX->new(Peer => '{}', Type => SOCK_STREAM) \
         or next; push @s, $c; }} print scalar(@s), \"\\n\"; $| = 1; sleep 20;",
        socket.display()
    );
    let mut flood = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["perl", "-e", &script])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    lab.note_pid(flood.id());
    std::thread::sleep(Duration::from_secs(2));

    let t = Instant::now();
    let out = lab.vipctl("h1", &["status"]);
    let took = t.elapsed();
    let s = String::from_utf8_lossy(&out.stdout);
    eprintln!("[trust-flood] status answered in {} ms", took.as_millis());
    assert!(out.status.success() && s.contains("daemon:   "), "status did not reach the daemon: {}", text(&out));
    assert!(took < Duration::from_secs(2), "status took {took:?}");

    // The master's host is cut off: the holder still lets go by the minority rule.
    let cut = Instant::now();
    assert!(lab.sh(&["link", "h1", "down"]).status.success());
    lab.wait("h1 to let go while cut off and flooded", Duration::from_secs(6), || {
        (!lab.holders(lab.vip4()).contains(&"h1".to_string())).then_some(())
    });
    eprintln!("[trust-flood] h1 let go {} ms after the cut", cut.elapsed().as_millis());
    assert!(lab.sh(&["link", "h1", "up"]).status.success());
    let _ = flood.kill();
    let _ = flood.wait();
    drop(h1);
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_primary_vip_is_released_where_proc_sys_is_read_only() {
    let lab = Lab::up("trust-primary", LabOptions::default());
    let out = lab.vipctl("h1", &["claim"]);
    assert!(out.status.success(), "{}", text(&out));
    // The host's own address was re-added (a DHCP renewal, a network restart): the VIP is now the
    // primary address of the subnet, and deleting it would delete the host's address with it.
    let own = format!("{}/24", lab.ip_of("h1"));
    lab.ip("h1", &["addr", "del", &own, "dev", "eth0"]);
    lab.ip("h1", &["addr", "add", &own, "dev", "eth0"]);
    let _ = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=0"])
        .status();
    // Release as under systemd's ProtectKernelTunables=yes: /proc/sys read-only.
    let cfg = lab.config();
    let script = format!(
        "mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys && exec {} --config {} release",
        vipctl_bin().display(),
        cfg.display()
    );
    let out = lab.exec(
        "h1",
        Path::new("/usr/bin/unshare"),
        &["--mount", "--propagation", "private", "sh", "-c", &script],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.holders(lab.vip4()).is_empty() && lab.holders(lab.vip6()).is_empty(), "{:?}", lab.vips());
    assert!(lab.addresses("h1").contains(&own), "the host's own address went with the VIP: {}", lab.addresses("h1"));
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_slow_local_redis_is_no_reason_to_yield() {
    let lab = Lab::up("trust-slow-redis", LabOptions::default());
    let _daemons = lab.watch_all_until_on(&lab.config(), "h1");
    let mut w = lab.writer(lab.vip4(), Duration::from_millis(500));
    lab.wait("a write through the VIP", Duration::from_secs(5), || w.lines().iter().any(|l| l.ok).then_some(()));
    w.stop();
    // h1's Redis stalls for 0.8 s (as during a fork for BGSAVE; shorter than down-after), and a
    // stray host claims the VIP meanwhile.
    let ip = lab.ip_of("h1").to_string();
    let sleeper = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "redis-cli", "-h", &ip, "-p", "6379", "DEBUG", "SLEEP", "0.8"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let out = lab.vipctl("h2", &["claim", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let answer = lab.wait("h1's daemon to answer the claim", Duration::from_secs(3), || {
        lab.watch_records("h1").into_iter().find(|r| r.s("event") == "conflict")
    });
    assert_eq!(answer.s("reason_code"), "defend", "h1 yielded on a slow ROLE answer: {answer}");
    lab.wait("the client's ARP entry back on h1", Duration::from_secs(3), || {
        (lab.neigh(lab.vip4()) == lab.mac_of("h1")).then_some(())
    });
    let _ = sleeper.wait_with_output();
}

#[test]
#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]
fn a_hook_that_hands_over_reads_no_secret() {
    let hook = SandboxedHook::new("secretless");
    let opts = LabOptions {
        hook: true,
        hook_program: Some(hook.path.clone()),
        sentinel_pass: Some("s3cret-lab".into()),
        ..LabOptions::default()
    };
    let lab = Lab::up("trust-secretless-hook", opts);
    for h in lab.hosts() {
        let log = lab.dir.join(h).join("vipctl.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    }
    // The sentinels' password, readable by root (the daemon) only. The hooks run as nobody, under
    // the lab's own config path (LAB_CONFIG), which must therefore be this config.
    let pass = lab.dir.join("sentinel.pass.txt");
    std::fs::write(&pass, "s3cret-lab\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let extra = format!("[sentinel_auth]\npassword_file = \"{}\"\n[watch]\nhook_users = [\"65534\"]\n", pass.display());
    let merged = lab.config_with("auth.toml", &extra);
    std::fs::copy(&merged, lab.config()).unwrap();
    let _daemons = lab.watch_all_until_on(&lab.config(), "h1");
    assert!(lab.sh(&["kill-redis", "h1"]).status.success());
    let new_master = lab.wait_promotion();
    lab.wait("the VIP on the new master only", Duration::from_secs(10), || lab.only_on(new_master));
    lab.wait("the hooks to hand their calls over", Duration::from_secs(10), || {
        lab.hosts()
            .iter()
            .all(|h| lab.hook_records(h).iter().any(|r| r.s("detail").starts_with("delegated to the daemon") && r.ok()))
            .then_some(())
    });
    for h in lab.hosts() {
        let failed: Vec<Rec> = lab.hook_records(h).into_iter().filter(|r| !r.ok()).collect();
        assert!(failed.is_empty(), "a hook failed on {h}: {failed:?}");
    }
}
