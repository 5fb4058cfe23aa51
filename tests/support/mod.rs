//! The namespace lab as seen from Rust tests: a thin wrapper over `scripts/lab.sh`, which owns the
//! lab's construction and teardown (the demo uses the same script), plus bounded waiting helpers.
//! The lab's facts (addresses, MACs, VIPs, namespaces) come from the `lab.json` that `lab.sh up`
//! writes; nothing here repeats them.
//!
//! Every lab test is marked
//! `#[ignore = "needs root: builds a network-namespace lab (scripts/test.sh runs it as root)"]`, so
//! that a plain `cargo test` reports it as ignored instead of passing it; `scripts/test.sh` as root
//! runs them with `--include-ignored`. Run that way without root or without redis, [`Lab::up`]
//! fails and says what is missing.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lying sentinel and the fake replica ([`Lab::rogue`], [`Lab::fake_replica`]).
pub mod rogue;

/// Labs run one at a time: two of them would fight over the two CPUs and blur every timing.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The lab's facts as `scripts/lab.sh up` writes them to DIR/lab.json (see write_lab_json there).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LabFacts {
    pub id: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub master_name: String,
    /// "l2" (hosts share a switch) or "routed" (hosts behind a BGP router, VIPs are host routes).
    #[serde(default = "l2")]
    pub mode: String,
    /// Routed labs: the hosts' BGP speaker, "bird" or "frr".
    #[serde(default)]
    pub speaker: Option<String>,
    /// The hosts that run redis-server and redis-sentinel, in lab.sh's order (h1 h2 h3).
    pub redis_hosts: Vec<String>,
    /// The host that runs the test clients (cl).
    pub client: String,
    /// L2 labs only.
    pub switch: Option<SwitchFacts>,
    /// Routed labs only.
    #[serde(default)]
    pub router: Option<RouterFacts>,
    pub nodes: BTreeMap<String, NodeFacts>,
    pub vips: VipFacts,
    pub ports: PortFacts,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct SwitchFacts {
    pub ns: String,
    pub bridge: String,
}

fn l2() -> String {
    "l2".into()
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RouterFacts {
    pub ns: String,
    /// vtysh --vty_socket of the router's FRR.
    pub vty_socket: PathBuf,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct NodeFacts {
    pub ns: String,
    pub interface: String,
    pub ipv4: String,
    pub ipv6: String,
    pub mac: String,
    /// master, replica or client: the role when the lab came up (Sentinel changes it later).
    pub role: String,
    /// Routed labs: the host's BGP speaker (birdc -s SOCKET, or vtysh --vty_socket DIR).
    #[serde(default)]
    pub speaker_socket: Option<PathBuf>,
}

/// The VIPs with their prefix length, as in the lab's vipctl config ("198.51.100.100/24").
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VipFacts {
    pub v4: String,
    pub v6: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct PortFacts {
    pub redis: u16,
    pub sentinel: u16,
    /// Set when the lab was built with a TLS folder.
    pub sentinel_tls: Option<u16>,
}

impl LabFacts {
    /// Reads DIR/lab.json.
    pub fn read(dir: &Path) -> Result<LabFacts, String> {
        let path = dir.join("lab.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let facts: LabFacts =
            serde_json::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))?;
        if let Some(h) = facts.redis_hosts.iter().chain([&facts.client]).find(|h| !facts.nodes.contains_key(*h)) {
            return Err(format!("{} names host {h} but has no node for it", path.display()));
        }
        Ok(facts)
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn vipctl_bin() -> PathBuf {
    // Another build to test (to see a new test fail against the code before its fix).
    match std::env::var_os("VIPCTL_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_vipctl")),
    }
}

/// The lab client built by `cargo test` from examples/lab_writer.rs.
pub fn writer_bin() -> PathBuf {
    example_bin("lab_writer")
}

/// The lying sentinel and fake replica built by `cargo test` from examples/rogue_sentinel.rs.
pub fn rogue_bin() -> PathBuf {
    example_bin("rogue_sentinel")
}

fn example_bin(name: &str) -> PathBuf {
    // Integration tests live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().expect("test executable path");
    let p = exe.parent().and_then(Path::parent).expect("target dir").join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds it from examples/; run `cargo build --examples`",
        p.display()
    );
    p
}

pub fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// What keeps the lab from running here, if anything. The commands it needs are scripts/lab.sh's
/// to check (`need_tools`, which names their Debian packages): its message reaches the test.
fn missing_root() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    (uid != 0).then(|| format!("root (this runs as uid {uid}; network namespaces need CAP_SYS_ADMIN)"))
}

/// A running lab; torn down on drop, also when the test panics.
pub struct Lab {
    pub dir: PathBuf,
    pub name: String,
    facts: LabFacts,
    /// Set by [`Lab::mark_fault`]: what TILT looked like when the fault under test began.
    tilt_mark: Mutex<Option<TiltMark>>,
    _serial: MutexGuard<'static, ()>,
}

/// The sentinels' TILT when a test's fault began: those in TILT then, and each log's `+tilt` count.
struct TiltMark {
    in_tilt: Vec<String>,
    entered: Vec<usize>,
}

/// Options for building a lab.
#[derive(Default)]
pub struct LabOptions {
    /// Set vipctl as each sentinel's client-reconfig-script.
    pub hook: bool,
    /// Set this program instead (e.g. a wrapper that drops privileges first).
    pub hook_program: Option<PathBuf>,
    /// Folder with ca.crt, server.crt, server.key: sentinels also serve TLS on 26380.
    pub tls_dir: Option<PathBuf>,
    /// Sentinels require this password.
    pub sentinel_pass: Option<String>,
    /// Redis and the sentinels announce host names (hN.lab) instead of addresses.
    pub hostnames: bool,
    /// Lines appended to the replicas' redis.conf.
    pub replica_conf: Option<String>,
    /// Redis requires this password.
    pub redis_pass: Option<String>,
    /// Folder with ca.crt, server.crt, server.key: Redis speaks TLS only.
    pub redis_tls_dir: Option<PathBuf>,
    /// The routed lab (hosts behind a BGP router) with this speaker on the hosts: "bird" or "frr".
    pub routed: Option<&'static str>,
    /// The sentinels' `down-after-milliseconds` (the lab's default: 1000).
    pub down_after_ms: Option<u64>,
}

impl Lab {
    /// Builds a lab. Panics when this machine cannot run one, naming what is missing: lab tests are
    /// `#[ignore]`d, so this runs only when asked for (`--include-ignored`, as scripts/test.sh does
    /// as root), and then a lab that cannot be built is a failure, not a pass.
    pub fn up(name: &str, opts: LabOptions) -> Lab {
        let missing = missing_root();
        assert!(
            missing.is_none(),
            "lab test `{name}` cannot run: missing {}.\n\
             Lab tests build network namespaces with real redis-server and redis-sentinel: run them as \
             root with scripts/test.sh, which installs the Debian packages first (scripts/install-deps.sh), \
             or as root with `scripts/install-deps.sh && cargo test -- --include-ignored`. Without root, \
             run plain `cargo test`: it reports the lab tests as ignored.",
            missing.unwrap_or_default()
        );
        let serial = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = PathBuf::from(format!("/tmp/vipctl-labs/{name}-{}", std::process::id()));
        let mut cmd = Command::new(repo().join("scripts/lab.sh"));
        cmd.arg("up").arg(&dir).env("LAB_OWNER_PID", std::process::id().to_string());
        if let Some(p) = &opts.sentinel_pass {
            cmd.env("LAB_SENTINEL_PASS", p);
        }
        if opts.hostnames {
            cmd.env("LAB_HOSTNAMES", "1");
        }
        if let Some(p) = &opts.redis_pass {
            cmd.env("LAB_REDIS_PASS", p);
        }
        if let Some(d) = &opts.redis_tls_dir {
            cmd.env("LAB_REDIS_TLS_DIR", d);
        }
        if let Some(c) = &opts.replica_conf {
            cmd.env("LAB_REPLICA_CONF", c);
        }
        if let Some(d) = &opts.tls_dir {
            cmd.env("LAB_TLS_DIR", d);
        }
        if let Some(ms) = opts.down_after_ms {
            cmd.env("LAB_DOWN_AFTER", ms.to_string());
        }
        if let Some(speaker) = opts.routed {
            cmd.env("LAB_ROUTED", "1").env("LAB_SPEAKER", speaker);
        }
        if let Some(p) = &opts.hook_program {
            cmd.env("LAB_HOOK", p);
        } else if opts.hook {
            cmd.env("LAB_HOOK", vipctl_bin());
        }
        let t = Instant::now();
        let out = cmd.output().expect("run scripts/lab.sh");
        // From here on the lab may exist: tear it down before any panic (lab.sh down is idempotent).
        if !out.status.success() {
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            lab_failed(name, &dir, format!("lab.sh up failed:\n{stdout}{stderr}"));
        }
        let facts =
            LabFacts::read(&dir).unwrap_or_else(|e| lab_failed(name, &dir, format!("lab.sh up succeeded, but {e}")));
        // LAB_SERVER (redis7, valkey8, redis8) reaches lab.sh through the environment.
        let server = std::env::var("LAB_SERVER").unwrap_or_else(|_| "redis7".into());
        eprintln!("[{name}] lab up in {:.1} s ({server})", t.elapsed().as_secs_f64());
        Lab { dir, name: name.to_string(), facts, tilt_mark: Mutex::new(None), _serial: serial }
    }

    /// Everything lab.sh wrote to lab.json.
    pub fn facts(&self) -> &LabFacts {
        &self.facts
    }

    /// The facts of `host` (h1 h2 h3 cl); panics on a host the lab does not have.
    pub fn node(&self, host: &str) -> &NodeFacts {
        self.facts.nodes.get(host).unwrap_or_else(|| {
            panic!("the lab has no host {host:?} (lab.json has {:?})", self.facts.nodes.keys().collect::<Vec<_>>())
        })
    }

    /// The hosts running redis-server and redis-sentinel (h1 h2 h3), in lab.sh's order.
    pub fn hosts(&self) -> Vec<&str> {
        self.facts.redis_hosts.iter().map(String::as_str).collect()
    }

    /// The fixed MAC address of `host`'s eth0.
    pub fn mac_of(&self, host: &str) -> &str {
        &self.node(host).mac
    }

    /// The IPv4 address of `host`.
    pub fn ip_of(&self, host: &str) -> &str {
        &self.node(host).ipv4
    }

    /// The IPv6 address of `host`.
    pub fn ip6_of(&self, host: &str) -> &str {
        &self.node(host).ipv6
    }

    /// Records a helper process `pid` of the test so that `lab.sh down` kills it (after its
    /// start-time check) even if the test dies first.
    pub fn note_pid(&self, pid: u32) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("extra.pids")).unwrap();
        writeln!(f, "{pid}").unwrap();
    }

    /// The master as `host`'s own sentinel names it, as a host name (`lab.sh master DIR` alone
    /// prints the first sentinel's answer only).
    pub fn master_per(&self, host: &str) -> Option<String> {
        let out = self.sh(&["master", host]);
        let ip = String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.to_string();
        self.host_of(&ip).map(str::to_string)
    }

    /// The host whose own (IPv4 or IPv6) address is `ip`, if any.
    pub fn host_of(&self, ip: &str) -> Option<&str> {
        // With LAB_HOSTNAMES the sentinels name hosts as hN.lab.
        if let Some(h) = ip.strip_suffix(".lab") {
            return self.facts.nodes.keys().find(|k| k.as_str() == h).map(String::as_str);
        }
        let ip: IpAddr = ip.parse().ok()?;
        self.facts
            .nodes
            .iter()
            .find(|(_, n)| n.ipv4.parse() == Ok(ip) || n.ipv6.parse() == Ok(ip))
            .map(|(h, _)| h.as_str())
    }

    /// The IPv4 VIP, without prefix length.
    pub fn vip4(&self) -> &str {
        address_of(&self.facts.vips.v4)
    }

    /// The IPv6 VIP, without prefix length.
    pub fn vip6(&self) -> &str {
        address_of(&self.facts.vips.v6)
    }

    /// The IPv4 VIP with its prefix length, as in the config ("198.51.100.100/24").
    pub fn vip4_cidr(&self) -> &str {
        &self.facts.vips.v4
    }

    /// The IPv6 VIP with its prefix length, as in the config.
    pub fn vip6_cidr(&self) -> &str {
        &self.facts.vips.v6
    }

    /// The vipctl config lab.sh wrote for this lab.
    pub fn config(&self) -> PathBuf {
        self.facts.config.clone()
    }

    /// The network namespace of `host` (h1 h2 h3 cl, sw for the switch, rt for the router).
    pub fn ns(&self, host: &str) -> String {
        match host {
            "sw" => self.facts.switch.as_ref().expect("an L2 lab has a switch").ns.clone(),
            "rt" => self.facts.router.as_ref().expect("a routed lab has a router").ns.clone(),
            _ => self.node(host).ns.clone(),
        }
    }

    /// Runs a lab.sh subcommand on this lab.
    pub fn sh(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(repo().join("scripts/lab.sh"));
        cmd.arg(args[0]).arg(&self.dir).args(&args[1..]);
        cmd.output().expect("run scripts/lab.sh")
    }

    /// Runs a command inside `host`'s namespace.
    pub fn exec(&self, host: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).arg(program).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run ip netns exec")
    }

    /// Runs vipctl on `host` with the lab's config; decisions go to that host's log file.
    pub fn vipctl(&self, host: &str, args: &[&str]) -> Output {
        let cfg = self.config();
        let log = self.dir.join(host).join("vipctl.log");
        // A test that names its own config (a broken one, say) gets that one.
        let mut full = if args.contains(&"--config") { vec![] } else { vec!["--config", cfg.to_str().unwrap()] };
        full.extend_from_slice(args);
        let socket = self.socket(host);
        self.exec(
            host,
            &vipctl_bin(),
            &full,
            &[("VIPCTL_LOG_FILE", log.to_str().unwrap()), ("VIPCTL_SOCKET", socket.to_str().unwrap())],
        )
    }

    /// `ip -o addr show` on a host, one line per address: the whole state a test must not disturb.
    pub fn addresses(&self, host: &str) -> String {
        let out = Command::new("ip").args(["-n", &self.ns(host), "-o", "addr", "show"]).output().unwrap();
        // Drop the lifetime counters, which tick on their own.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split("\\").next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Which hosts hold which VIP: host -> addresses with prefix.
    pub fn vips(&self) -> BTreeMap<String, Vec<String>> {
        let out = self.sh(&["vips"]);
        assert!(out.status.success(), "lab.sh vips: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let host = w.next()?.to_string();
                let addrs: Vec<String> = w.filter(|a| *a != "-").map(str::to_string).collect();
                Some((host, addrs))
            })
            .collect()
    }

    /// The hosts that hold `vip` (address without prefix).
    pub fn holders(&self, vip: &str) -> Vec<String> {
        self.vips()
            .into_iter()
            .filter(|(_, a)| a.iter().any(|x| x.split('/').next() == Some(vip)))
            .map(|(h, _)| h)
            .collect()
    }

    /// The client's neighbour entry MAC for `vip`, or "-".
    pub fn neigh(&self, vip: &str) -> String {
        String::from_utf8_lossy(&self.sh(&["neigh", vip]).stdout).trim().to_string()
    }

    /// The master's IP per sentinel (first that answers).
    pub fn master(&self) -> Option<String> {
        let out = self.sh(&["master"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
    }

    /// Starts the lab client writing INCR through `target` every 10 ms, output to a file.
    pub fn writer(&self, target: &str, duration: Duration) -> Writer {
        // Two writers started in the same millisecond must not share (and truncate) one file.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("writer-{}-{n}.log", unix_ms()));
        let file = std::fs::File::create(&path).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("cl")])
            .arg(writer_bin())
            .args([target, "6379", "--interval-ms", "10", "--duration-ms", &duration.as_millis().to_string()])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.note_pid(child.id());
        Writer { child, path }
    }

    /// Polls `f` every 20 ms until it returns Some, for at most `timeout`; panics naming `what`.
    pub fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > timeout {
                panic!("[{}] timed out after {:?} waiting for {what}\n{}", self.name, timeout, self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a person debugging a failure wants to see.
    pub fn diagnostics(&self) -> String {
        let mut s = format!("vips: {:?}\nmaster: {:?}\n", self.vips(), self.master());
        // Sentinel's events first: a cut-off excerpt of a CI log still shows TILT or a failover
        // that never started.
        for h in self.hosts() {
            let events = self.sentinel_events(h);
            let tail = &events[events.len().saturating_sub(40)..];
            s.push_str(&format!("--- {h}/sentinel.log events (last {})\n{}\n", tail.len(), tail.join("\n")));
        }
        for h in self.hosts() {
            for file in ["vipctl.log", "watch.log", "watch.out"] {
                if let Ok(log) = std::fs::read_to_string(self.dir.join(h).join(file)) {
                    s.push_str(&format!("--- {h}/{file}\n{log}"));
                }
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.tilted_since_mark() {
            TILTED.lock().unwrap_or_else(|e| e.into_inner()).push(self.name.clone());
        }
        lab_sh_down(&self.name, &self.dir);
    }
}

/// The labs torn down with a sentinel in TILT at or after their [`Lab::mark_fault`].
static TILTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Races outside vipctl that a test saw and named ([`excuse`]), by lab name.
static EXCUSED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Names a documented race outside vipctl that lab `name`'s run met (say why, with figures), so
/// that [`once_more_if_excused`] runs the test once more if it fails.
pub fn excuse(name: &str, why: String) {
    eprintln!("!!! [{name}] {why}");
    EXCUSED.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), why));
}

/// Runs `test(name)`; if it fails, and either a sentinel of its lab (`name`) was in TILT when its
/// fault began ([`Lab::mark_fault`]) or entered TILT after, or the test named a race outside
/// vipctl that it met ([`excuse`]), says so loudly and runs it once more in a fresh lab
/// (`name-again`), which must pass every assertion. A sentinel whose timer jumped more than 2 s
/// (the machine stalled) fails nothing over for 30 s, and at down-after 1000 never promotes a
/// replica of a master that died more than 10 s before its TILT ended (README, "Known limits"):
/// that is the machine, not vipctl, and the test would fail on its timing alone.
pub fn once_more_if_excused(name: &str, test: impl Fn(&str)) {
    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(name))) else { return };
    let tilted = std::mem::take(&mut *TILTED.lock().unwrap_or_else(|e| e.into_inner()));
    let excused = std::mem::take(&mut *EXCUSED.lock().unwrap_or_else(|e| e.into_inner()));
    let why = if tilted.iter().any(|n| n == name) {
        "a sentinel of its lab was in TILT during its fault (its timer jumped more than 2 s: this machine stalled)"
            .to_string()
    } else if let Some((_, why)) = excused.iter().find(|(n, _)| n == name) {
        why.clone()
    } else {
        std::panic::resume_unwind(panic);
    };
    eprintln!(
        "\n!!! [{name}] WARNING: this run failed, and {why}; running it ONCE MORE in a fresh lab, which must \
         pass every assertion\n"
    );
    test(&format!("{name}-again"));
}

/// Tears down a lab that could not be made into a `Lab`, then panics with `what`.
fn lab_failed(name: &str, dir: &Path, what: String) -> ! {
    lab_sh_down(name, dir);
    panic!("{what}");
}

/// `lab.sh down DIR`, unless VIPCTL_KEEP_LAB asks to keep the lab for a look.
fn lab_sh_down(name: &str, dir: &Path) {
    if std::env::var_os("VIPCTL_KEEP_LAB").is_some() {
        eprintln!("[{name}] VIPCTL_KEEP_LAB set: lab left at {}", dir.display());
        return;
    }
    let out = Command::new(repo().join("scripts/lab.sh")).arg("down").arg(dir).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("[{name}] lab.sh down failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("[{name}] could not run lab.sh down: {e}"),
    }
}

/// "IP:PORT" or "[IP]:PORT" -> ("IP", "PORT").
pub fn split_addr(addr: &str) -> (&str, &str) {
    let (ip, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr:?} is not IP:PORT"));
    (ip.trim_start_matches('[').trim_end_matches(']'), port)
}

/// "ADDR/PREFIX" -> "ADDR".
fn address_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// A running lab client.
pub struct Writer {
    child: Child,
    pub path: PathBuf,
}

/// One write attempt.
#[derive(Debug, Clone)]
pub struct Write {
    pub at_ms: u128,
    pub ok: bool,
    pub value: Option<i64>,
    pub text: String,
}

impl Writer {
    pub fn lines(&self) -> Vec<Write> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.splitn(3, ' ');
                let at_ms = w.next()?.parse().ok()?;
                let ok = w.next()? == "ok";
                let text = w.next().unwrap_or("").to_string();
                Some(Write { at_ms, ok, value: if ok { text.parse().ok() } else { None }, text })
            })
            .collect()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The longest time without a successful write over a writer's run (ms): between consecutive `ok`
/// attempts, and from the first attempt / to the last attempt when those failed.
pub fn longest_write_gap_ms(lines: &[Write]) -> u128 {
    let mut marks: Vec<u128> = Vec::new();
    if let Some(first) = lines.first().filter(|l| !l.ok) {
        marks.push(first.at_ms);
    }
    marks.extend(lines.iter().filter(|l| l.ok).map(|l| l.at_ms));
    if let Some(last) = lines.last().filter(|l| !l.ok) {
        marks.push(last.at_ms);
    }
    // Two writers' lines, or a line cut short when a writer is stopped, need not be in order.
    marks.sort_unstable();
    marks.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0)
}

/// Acknowledged INCRs that were lost: each acknowledged value must exceed every value acknowledged
/// before it; a value `v` at or below the highest so far `m` means `m - v + 1` acknowledged
/// increments are gone (counted like scripts/bench/analyze.py). Returns (count, the offending
/// (highest so far, value) pairs).
pub fn lost_writes(lines: &[Write]) -> (i64, Vec<(i64, i64)>) {
    let (mut lost, mut seen, mut max) = (0, Vec::new(), None::<i64>);
    for v in lines.iter().filter(|l| l.ok).filter_map(|l| l.value) {
        match max {
            Some(m) if v <= m => {
                lost += m - v + 1;
                seen.push((m, v));
                max = Some(v);
            }
            _ => max = Some(v),
        }
    }
    (lost, seen)
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// stdout and stderr of an Output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `vipctl watch` daemon running in a lab host.
pub struct Daemon {
    child: Child,
    pub host: String,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as `systemctl stop` would; waits (bounded) for the daemon to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Lab {
    /// Writes a config for this lab: the lab's own with `extra` TOML merged over it (tables merge,
    /// keys in `extra` win). Text that is not valid TOML on its own is appended as it is.
    pub fn config_with(&self, name: &str, extra: &str) -> PathBuf {
        let base = std::fs::read_to_string(self.config()).expect("lab config");
        let path = self.dir.join(name);
        let text = match (base.parse::<toml::Table>(), extra.parse::<toml::Table>()) {
            (Ok(mut b), Ok(e)) => {
                merge(&mut b, e);
                toml::to_string(&b).unwrap()
            }
            _ => format!("{base}\n{extra}\n"),
        };
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Like [`Lab::config_with`], with the config's (top-level) `sentinels` list replaced by
    /// `sentinels` ("IP:PORT"; the lab's masters have no list of their own): e.g. the three real
    /// sentinels plus a rogue, or two real ones and a rogue. `extra` must be valid TOML here.
    pub fn config_with_sentinels(&self, name: &str, sentinels: &[&str], extra: &str) -> PathBuf {
        let mut extra: toml::Table = extra.parse().unwrap_or_else(|e| panic!("extra TOML for {name}: {e}"));
        let list = sentinels.iter().map(|s| toml::Value::String(s.to_string())).collect();
        extra.insert("sentinels".into(), toml::Value::Array(list));
        self.config_with(name, &toml::to_string(&extra).unwrap())
    }

    /// The real sentinel of `host`, as "IP:PORT".
    pub fn sentinel_addr(&self, host: &str) -> String {
        format!("{}:{}", self.ip_of(host), self.facts.ports.sentinel)
    }

    /// `redis-cli` run in `from`'s namespace against `addr` ("IP:PORT", IPv6 as "[IP]:PORT"), its
    /// output raw (one element a line), bounded by 5 s. An error reply is printed, not a failure.
    pub fn redis_cli(&self, from: &str, addr: &str, args: &[&str]) -> Output {
        let (ip, port) = split_addr(addr);
        let mut full = vec!["5", "redis-cli", "-h", ip, "-p", port];
        full.extend_from_slice(args);
        self.exec(from, Path::new("/usr/bin/timeout"), &full, &[])
    }

    /// Starts `vipctl watch` on `host` with `config`; waits (bounded) until its socket answers.
    pub fn watch(&self, host: &str, config: &Path) -> Daemon {
        self.watch_via(host, config, &[])
    }

    /// Like [`Lab::watch`], with `via` (a program and its arguments) run in the namespace first,
    /// which then executes vipctl (e.g. a wrapper that changes the daemon's view of /etc).
    pub fn watch_via(&self, host: &str, config: &Path, via: &[&str]) -> Daemon {
        let log = self.dir.join(host).join("watch.log");
        let out =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(host).join("watch.out")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(via)
            .arg(vipctl_bin())
            .arg("--config")
            .arg(config)
            .arg("watch")
            .env("VIPCTL_LOG_FILE", &log)
            .env("VIPCTL_SOCKET", self.socket(host))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.note_pid(child.id());
        let d = Daemon { child, host: host.to_string() };
        self.wait(&format!("vipctl watch on {host} to answer on its socket"), Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(self.socket(host)).ok().map(|_| ())
        });
        d
    }

    /// The control socket of `host`'s daemon (hosts share one filesystem, so one socket each).
    pub fn socket(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("vipctl.sock")
    }

    /// The watch daemon's decision log of `host`.
    pub fn watch_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir.join(host).join("watch.log")).unwrap_or_default()
    }

    /// The watch daemon's decision records on `host`.
    pub fn watch_records(&self, host: &str) -> Vec<Rec> {
        records_in(&self.dir.join(host).join("watch.log"))
    }

    /// The decision records of the hooks and commands run on `host` (its vipctl.log).
    pub fn hook_records(&self, host: &str) -> Vec<Rec> {
        records_in(&self.dir.join(host).join("vipctl.log"))
    }

    /// Runs `ip` with `args` inside `host`'s namespace, asserting success.
    pub fn ip(&self, host: &str, args: &[&str]) {
        let out = Command::new("ip").args(["-n", &self.ns(host)]).args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?} on {host}: {}", text(&out));
    }

    /// Samples the VIP holders every 20 ms for `period`; returns every distinct holder set seen.
    pub fn holders_during(&self, vip: &str, period: Duration) -> Vec<Vec<String>> {
        let start = Instant::now();
        let mut seen: Vec<Vec<String>> = Vec::new();
        while start.elapsed() < period {
            let h = self.holders(vip);
            if !seen.contains(&h) {
                seen.push(h);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    }
}

/// A throwaway CA and a sentinel certificate valid for the lab's addresses, made with openssl.
pub struct TestCerts {
    pub dir: PathBuf,
}

impl TestCerts {
    pub fn make() -> TestCerts {
        let dir = std::env::temp_dir().join(format!("vipctl-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl (scripts/install-deps.sh installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=vipctl-lab-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=lab-sentinel",
        ]);
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,IP:198.51.100.11,IP:198.51.100.12,IP:198.51.100.13\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        TestCerts { dir }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Lab {
    /// Runs vipctl on `host` as user nobody with no capabilities at all (as under a sandboxed
    /// sentinel), with `env`.
    pub fn vipctl_unprivileged(&self, host: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin = vipctl_bin();
        let mut full = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            bin.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        self.exec(host, Path::new("/usr/bin/setpriv"), &full, env)
    }

    /// The masters Sentinel switched to, in order, as any sentinel logged them (`+switch-master`,
    /// each new address once): more than one after a fault is Sentinel failing over again on its
    /// own (README, "Known limits": the second failover).
    pub fn switched_to(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut lines: Vec<(String, String)> = Vec::new();
        for h in self.hosts() {
            let log = std::fs::read_to_string(self.dir.join(h).join("sentinel.log")).unwrap_or_default();
            for l in log.lines().filter(|l| l.contains("+switch-master")) {
                // "PID:X DD Mon YYYY HH:MM:SS.mmm # +switch-master NAME OLD-IP OLD-PORT NEW-IP NEW-PORT"
                let words: Vec<&str> = l.split_whitespace().collect();
                if let (Some(time), Some(new)) = (words.get(4), words.iter().rev().nth(1)) {
                    lines.push((time.to_string(), new.to_string()));
                }
            }
        }
        lines.sort();
        for (_, new) in lines {
            if out.last() != Some(&new) && !out.contains(&new) {
                out.push(new);
            }
        }
        out.into_iter().filter_map(|ip| self.host_of(&ip).map(str::to_string)).collect()
    }

    /// Waits (bounded) for Sentinel to promote a replica of h1; returns the new master's host.
    pub fn wait_promotion(&self) -> &str {
        let start = Instant::now();
        loop {
            if let Some(h) = self.master().filter(|m| m != self.ip_of("h1")).and_then(|m| self.host_of(&m)) {
                return h;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let tilted = self.tilted();
                let why = if tilted.is_empty() {
                    String::new()
                } else {
                    format!(" (sentinels that entered TILT, failing nothing over for 30 s after: {tilted:?})")
                };
                panic!("[{}] timed out after 30 s waiting for a promotion{why}\n{}", self.name, self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sentinel's event lines on `host` (`+sdown`, `+tilt`, `+switch-master`, …), in order.
    pub fn sentinel_events(&self, host: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join(host).join("sentinel.log")).unwrap_or_default();
        // "PID:X DD Mon YYYY HH:MM:SS.mmm # +event …": the seventh word is the event.
        log.lines()
            .filter(|l| l.split_whitespace().nth(6).is_some_and(|w| w.starts_with('+') || w.starts_with('-')))
            .map(String::from)
            .collect()
    }

    /// The hosts whose sentinel entered TILT mode (`+tilt` in its log) since the lab started.
    pub fn tilted(&self) -> Vec<String> {
        self.hosts().into_iter().filter(|h| self.tilts_entered(h) > 0).map(str::to_string).collect()
    }

    fn tilts_entered(&self, host: &str) -> usize {
        self.sentinel_events(host).iter().filter(|l| l.contains("+tilt")).count()
    }

    /// Whether `host`'s sentinel says it is in TILT now (`INFO sentinel`).
    pub fn in_tilt(&self, host: &str) -> bool {
        let out = self.redis_cli(host, &self.sentinel_addr(host), &["INFO", "sentinel"]);
        vipctl::sentinel::tilt::parse(&String::from_utf8_lossy(&out.stdout)) != vipctl::sentinel::tilt::Tilt::No
    }

    /// The fault under test begins now: a sentinel in TILT now, or entering it from here on, lets
    /// [`once_more_if_excused`] run a failed test once more.
    pub fn mark_fault(&self) {
        let hosts = self.hosts();
        let in_tilt = hosts.iter().filter(|h| self.in_tilt(h)).map(|h| h.to_string()).collect();
        let entered = hosts.iter().map(|h| self.tilts_entered(h)).collect();
        *self.tilt_mark.lock().unwrap_or_else(|e| e.into_inner()) = Some(TiltMark { in_tilt, entered });
    }

    fn tilted_since_mark(&self) -> bool {
        let mark = self.tilt_mark.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = mark.as_ref() else { return false };
        !m.in_tilt.is_empty() || self.hosts().iter().zip(&m.entered).any(|(h, n)| self.tilts_entered(h) > *n)
    }
}

/// One decision record: a JSON line of a vipctl log file (see src/record.rs for the fields).
#[derive(Debug, Clone)]
pub struct Rec(pub serde_json::Value);

impl Rec {
    /// A text field, or "" when absent.
    pub fn s(&self, field: &str) -> &str {
        self.0.get(field).and_then(|v| v.as_str()).unwrap_or("")
    }

    /// A numeric field.
    pub fn f(&self, field: &str) -> Option<f64> {
        self.0.get(field).and_then(serde_json::Value::as_f64)
    }

    /// True for a decision record with this change (`claim`, `release`, `announce`).
    pub fn is(&self, decision: &str) -> bool {
        self.s("event") == "decision" && self.s("decision") == decision
    }

    /// True when the record says it succeeded.
    pub fn ok(&self) -> bool {
        self.s("result") == "ok"
    }
}

impl std::fmt::Display for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The records in a log file; a line that is not a JSON object fails the test, since vipctl
/// writes nothing else there.
pub fn records_in(path: &Path) -> Vec<Rec> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Rec(serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not a record ({e}): {l}", path.display()))))
        .collect()
}

/// Frames on one host's link that claim an address (gratuitous ARP, unsolicited NA), with the
/// wall-clock time each was seen.
pub struct Capture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Seen>>>,
}

/// One claiming frame: when, for which address, from which MAC.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at_ms: u128,
    pub addr: IpAddr,
    pub mac: String,
}

impl Lab {
    /// Starts capturing claiming frames on `host`'s eth0 (a thread that joins its network
    /// namespace and reads a packet socket), until [`Capture::stop`].
    pub fn capture(&self, host: &str) -> Capture {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns(host))).expect("the host's namespace");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file affects only this thread.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            // SAFETY: plain socket(2); checked below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            // SAFETY: a valid timeval of the size passed.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            ready_tx.send(()).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                // SAFETY: buf is a valid writable buffer of the length passed.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                if let Some((addr, mac)) = vipctl::network::defend::claim_in(&buf[..n as usize]) {
                    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                    seen.push(Seen { at_ms: unix_ms(), addr, mac });
                }
            }
            // SAFETY: closing the socket this thread opened.
            unsafe { libc::close(fd) };
            seen
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("capture started");
        Capture { stop, thread: Some(thread) }
    }
}

impl Capture {
    /// Stops and returns what was seen.
    pub fn stop(mut self) -> Vec<Seen> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().expect("capture thread")).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A record's `timestamp` (RFC 3339, UTC) as Unix milliseconds.
pub fn record_ms(r: &Rec) -> u128 {
    let t = humantime::parse_rfc3339_weak(r.s("timestamp").trim_end_matches('Z')).expect("record timestamp");
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// The Unix milliseconds of the first line of a Redis/Sentinel log (written in UTC by the lab)
/// that contains `needle`, e.g. `+promoted-slave`.
pub fn redis_log_ms(log: &Path, needle: &str) -> Option<u128> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    // "12345:X 26 Nov 2026 11:14:46.155 # +promoted-slave …"
    let mut w = line.split_whitespace().skip(1);
    let (day, month, year, time) = (w.next()?, w.next()?, w.next()?, w.next()?);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| *x == month)? + 1;
    let stamp = format!("{year}-{m:02}-{:02}T{time}", day.parse::<u32>().ok()?);
    let t = humantime::parse_rfc3339_weak(&stamp).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis())
}

/// A UDP port that reads every datagram and answers none (a DNS server that never answers).
pub struct UdpSink {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl UdpSink {
    /// Datagrams received so far.
    pub fn received(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Lab {
    /// Opens a [`UdpSink`] on `host`'s IPv4 address and `port`, inside its namespace.
    pub fn udp_sink(&self, host: &str, port: u16) -> UdpSink {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns(host))).expect("the host's namespace");
        let addr = format!("{}:{port}", self.ip_of(host));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file affects only this thread.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            let sock = std::net::UdpSocket::bind(&addr).expect("bind the sink");
            sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                if sock.recv(&mut buf).is_ok() {
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("sink started");
        UdpSink { count, stop }
    }

    /// GET `path` from `127.0.0.1:port` inside `host`'s namespace; the raw response.
    pub fn http_get(&self, host: &str, port: u16, path: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; timeout 2 cat <&3"
        );
        let out = self.exec(host, Path::new("/bin/bash"), &["-c", &script], &[]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

/// The routed lab (`LabOptions::routed`): the router's forwarding table and the hosts' speakers.
impl Lab {
    /// Per VIP host route ("192.0.2.100/32"), the hosts the router forwards it to, from its kernel
    /// table: what packets really follow.
    pub fn routes(&self) -> BTreeMap<String, Vec<String>> {
        let out = self.sh(&["routes"]);
        assert!(out.status.success(), "lab.sh routes: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let prefix = w.next()?.to_string();
                Some((prefix, w.filter(|h| *h != "-").map(str::to_string).collect()))
            })
            .collect()
    }

    /// The hosts the router sends `vip` (address, no prefix) to.
    pub fn routed_to(&self, vip: &str) -> Vec<String> {
        self.routes().into_iter().find(|(p, _)| address_of(p) == vip).map(|(_, h)| h).unwrap_or_default()
    }

    /// Drops (`true`) or passes again all traffic on `host`'s link to the router; both ends stay up.
    pub fn cut(&self, host: &str, on: bool) {
        let out = self.sh(&["cut", host, if on { "on" } else { "off" }]);
        assert!(out.status.success(), "lab.sh cut {host}: {}", text(&out));
    }

    /// birdc or vtysh of `node` (h1 h2 h3 rt) with the lab's socket.
    pub fn speaker(&self, node: &str, args: &[&str]) -> Output {
        let mut all = vec!["speaker", node];
        all.extend_from_slice(args);
        self.sh(&all)
    }

    /// `vipctl check --json` on `host`, pointed at its own speaker; the checks that mention BGP or
    /// the speaker, as (status, check) pairs.
    pub fn speaker_checks(&self, host: &str) -> Vec<(String, String)> {
        let socket = self.node(host).speaker_socket.clone().expect("a routed lab host has a speaker");
        let flag = if self.facts.speaker.as_deref() == Some("frr") { "--frr-vty-dir" } else { "--bird-socket" };
        let out = self.vipctl(
            host,
            &[
                "check",
                "--json",
                flag,
                socket.to_str().unwrap(),
                "--sentinel-conf",
                "/dev/null",
                "--unit-dir",
                "/nonexistent",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("vipctl check --json on {host} gave no JSON ({e}): {}", text(&out)));
        v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| (c["status"].as_str().unwrap_or("").to_string(), c["check"].as_str().unwrap_or("").to_string()))
            .filter(|(_, c)| c.contains("BGP") || c.contains("BIRD") || c.contains("FRR") || c.contains("announced"))
            .collect()
    }
}

impl Lab {
    /// When the router's bgpd received `prefix` from `peer` (an UPDATE that announces it) at or
    /// after `after_ms`, from its updates.log (lab.sh turns it on, with microseconds).
    pub fn router_received_ms(&self, peer: &str, prefix: &str, after_ms: u128) -> Option<u128> {
        let router = self.facts.router.as_ref()?;
        let text = std::fs::read_to_string(router.vty_socket.join("updates.log")).ok()?;
        let needle = format!(" {peer}(");
        let announce = format!(" rcvd {prefix} ");
        text.lines().filter(|l| l.contains(&needle) && l.contains(&announce)).find_map(|l| {
            // "2026/11/26 12:37:04.391601 BGP: …", in UTC (lab.sh starts FRR with TZ=UTC).
            let mut w = l.split_whitespace();
            let stamp = format!("{}T{}", w.next()?.replace('/', "-"), w.next()?);
            let t = humantime::parse_rfc3339_weak(&stamp).ok()?;
            let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
            (ms >= after_ms).then_some(ms)
        })
    }
}

impl Lab {
    /// Both VIPs bound on `host` and on no other host.
    pub fn only_on(&self, host: &str) -> Option<()> {
        (self.holders(self.vip4()) == [host] && self.holders(self.vip6()) == [host]).then_some(())
    }

    /// `vipctl watch` with `config` on every Redis host.
    pub fn watch_all(&self, config: &Path) -> Vec<Daemon> {
        self.hosts().into_iter().map(|h| self.watch(h, config)).collect()
    }

    /// Daemons on every host with `cfg`; the VIP settles on h1; h1's redis is killed. Returns the
    /// daemons, the new master, and its daemon's claim record once the VIP is there alone.
    pub fn daemons_fail_over(&self, cfg: &Path) -> (Vec<Daemon>, &str, Rec) {
        let daemons = self.watch_all_until_on(cfg, "h1");
        assert!(self.sh(&["kill-redis", "h1"]).status.success());
        let new_master = self.wait_promotion();
        self.wait("the VIP on the new master only", Duration::from_secs(10), || self.only_on(new_master));
        let claim = self.wait("the new master's daemon to log its claim", Duration::from_secs(5), || {
            self.watch_records(new_master).into_iter().find(|r| r.is("claim"))
        });
        (daemons, new_master, claim)
    }

    /// [`Lab::watch_all`], then waits (10 s at most) until the VIPs are on `holder` alone.
    pub fn watch_all_until_on(&self, config: &Path, holder: &str) -> Vec<Daemon> {
        let daemons = self.watch_all(config);
        self.wait(&format!("the VIP on {holder}"), Duration::from_secs(10), || self.only_on(holder));
        daemons
    }
}

/// A hook program that runs vipctl as nobody with no capabilities at all, as under Debian's
/// sandboxed redis-sentinel unit; removed on drop. Sentinel refuses to change its script at run
/// time, so it must exist before the lab.
pub struct SandboxedHook {
    pub path: PathBuf,
}

impl SandboxedHook {
    pub fn new(name: &str) -> SandboxedHook {
        let path = std::env::temp_dir().join(format!("vipctl-{name}-hook-{}", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all {} \"$@\"\n",
                vipctl_bin().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        SandboxedHook { path }
    }
}

impl Drop for SandboxedHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Lab {
    /// The peers (addresses) the router's bgpd has a path from for `prefix`, best or not: a
    /// route that lost the best-path selection never shows in the kernel's table, but it is there.
    pub fn router_paths(&self, prefix: &str) -> Vec<String> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let out = self.speaker("rt", &["-c", &format!("show bgp {family} unicast {prefix} json")]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["paths"]
            .as_array()
            .map(|paths| {
                paths.iter().filter_map(|p| p["peer"]["peerId"].as_str().map(str::to_string)).collect::<Vec<_>>()
            })
            .unwrap_or_default()
    }

    /// The router's bgpd log (FRR; the sessions' state changes and why).
    pub fn router_log(&self) -> String {
        let router = self.facts.router.as_ref().expect("a routed lab has a router");
        std::fs::read_to_string(router.vty_socket.join("bgpd.log")).unwrap_or_default()
    }
}
