//! Attackers for the lab, from examples/rogue_sentinel.rs (its top comment has the control
//! commands and rule syntax): a lying sentinel in front of a real one, and a fake replica; plus a
//! `redis-cli` subscriber to see the events a client gets. Each runs in a lab host's namespace,
//! is recorded for `lab.sh down`, and is killed by PID on drop, its log printed if the test is
//! failing by then.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Lab, rogue_bin, split_addr, text};

/// A running rogue_sentinel process, in either mode.
pub struct Attacker {
    child: Child,
    ns: String,
    /// "IP:PORT" it listens on.
    pub addr: String,
    /// Its stderr: one line per connection, injected event and credential seen.
    pub log: PathBuf,
    what: String,
}

/// A lying sentinel ([`Lab::rogue`]); [`Attacker`]'s methods apply.
pub struct Rogue {
    attacker: Attacker,
    /// The real sentinel it relays to.
    pub upstream: String,
}

/// A fake replica ([`Lab::fake_replica`]); [`Attacker`]'s methods apply.
pub struct FakeReplica {
    attacker: Attacker,
}

impl std::ops::Deref for Rogue {
    type Target = Attacker;
    fn deref(&self) -> &Attacker {
        &self.attacker
    }
}

impl std::ops::DerefMut for Rogue {
    fn deref_mut(&mut self) -> &mut Attacker {
        &mut self.attacker
    }
}

impl std::ops::Deref for FakeReplica {
    type Target = Attacker;
    fn deref(&self) -> &Attacker {
        &self.attacker
    }
}

impl std::ops::DerefMut for FakeReplica {
    fn deref_mut(&mut self) -> &mut Attacker {
        &mut self.attacker
    }
}

impl Lab {
    /// Starts a lying sentinel in `host`'s namespace, listening on `listen` ("IP:PORT", an address
    /// of that host) and relaying to the real sentinel `upstream` ("IP:PORT"); it tells no lie yet.
    pub fn rogue(&self, host: &str, listen: &str, upstream: &str) -> Rogue {
        self.rogue_with(host, listen, upstream, &[])
    }

    /// [`Lab::rogue`] with rules in force from the start, one string each
    /// (`"epoch mymaster 1000000"`).
    pub fn rogue_with(&self, host: &str, listen: &str, upstream: &str, lies: &[&str]) -> Rogue {
        let mut args = vec!["--listen", listen, "--upstream", upstream];
        for l in lies {
            args.extend(["--lie", l]);
        }
        let attacker = self.attacker(host, listen, "rogue", &args);
        Rogue { attacker, upstream: upstream.to_string() }
    }

    /// Starts a fake replica in `host`'s namespace on `listen`, claiming to replicate `master`
    /// ("IP:PORT") with run id `f`×40 and offset 2^50.
    pub fn fake_replica(&self, host: &str, listen: &str, master: &str) -> FakeReplica {
        let args = ["--fake-redis", listen, "--master", master];
        FakeReplica { attacker: self.attacker(host, listen, "fake-replica", &args) }
    }

    /// Starts rogue_sentinel with `args` on `host`; `kind` names it and its log (KIND-HOST-PORT.log).
    fn attacker(&self, host: &str, listen: &str, kind: &str, args: &[&str]) -> Attacker {
        let what = format!("{kind} {listen} on {host}");
        let what = what.as_str();
        let log = self.dir.join(format!("{kind}-{host}-{}.log", split_addr(listen).1));
        let file = std::fs::File::create(&log).unwrap();
        let ns = self.ns(host);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(rogue_bin())
            .args(args)
            .args(["--max-runtime-s", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        self.record_pid(child.id());
        let mut a = Attacker { child, ns, addr: listen.to_string(), log, what: what.to_string() };
        // Ready once it says it listens; it says why not if it exits instead.
        let start = Instant::now();
        loop {
            if a.log().contains("listening on") {
                return a;
            }
            if let Ok(Some(status)) = a.child.try_wait() {
                panic!("[{}] {what} exited at start ({status}):\n{}", self.name, a.log());
            }
            if start.elapsed() > Duration::from_secs(5) {
                a.stop();
                panic!("[{}] {what} did not listen within 5 s:\n{}", self.name, a.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records a PID so that `lab.sh down` kills it even if this test dies first.
    fn record_pid(&self, pid: u32) {
        let mut pids = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("extra.pids")).unwrap();
        std::io::Write::write_all(&mut pids, format!("{pid}\n").as_bytes()).unwrap();
    }

    /// `redis-cli PSUBSCRIBE pattern` in `from`'s namespace against `addr`, as vipctl subscribes
    /// (`*`); returns once the subscription is confirmed (5 s at most).
    pub fn psubscribe(&self, from: &str, addr: &str, pattern: &str) -> Subscriber {
        self.psubscribe_with(from, addr, pattern, &[])
    }

    /// [`Lab::psubscribe`] with more redis-cli options (`-3` for RESP3).
    pub fn psubscribe_with(&self, from: &str, addr: &str, pattern: &str, options: &[&str]) -> Subscriber {
        let path = self.dir.join(format!("subscriber-{}-{}.out", split_addr(addr).1, super::unix_ms()));
        let (ip, port) = split_addr(addr);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(from), "redis-cli", "-h", ip, "-p", port])
            .args(options)
            .args(["PSUBSCRIBE", pattern])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.record_pid(child.id());
        let sub = Subscriber { child, path };
        self.wait(&format!("redis-cli PSUBSCRIBE {pattern} to {addr}"), Duration::from_secs(5), || {
            sub.lines().iter().any(|l| l == "psubscribe").then_some(())
        });
        sub
    }
}

impl Attacker {
    /// Sends one command from its own host (`ROGUE.LIE …`, `ROGUE.STATS`, or anything); returns
    /// the reply as redis-cli prints it raw. Panics, with its log, on an error reply or no reply.
    pub fn control(&self, args: &[&str]) -> String {
        let out = self.control_output(args);
        assert!(out.status.success(), "{} refused {args:?}: {}\n--- its log\n{}", self.what, text(&out), self.log());
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Like [`Attacker::control`], for a command that may fail: redis-cli's output as it is.
    pub fn control_output(&self, args: &[&str]) -> Output {
        let (ip, port) = split_addr(&self.addr);
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "timeout", "5", "redis-cli", "-e", "-h", ip, "-p", port])
            .args(args)
            .output()
            .unwrap()
    }

    /// What it has seen so far (`ROGUE.STATS`).
    pub fn stats(&self) -> RogueStats {
        RogueStats::parse(&self.control(&["ROGUE.STATS"]))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL, by PID) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- {} log ({})\n{}", self.what, self.log.display(), self.log());
        }
    }
}

impl Rogue {
    /// Injects one event to the rogue's subscribers now; how many it reached.
    pub fn publish(&self, channel: &str, payload: &str) -> u64 {
        let out = self.control(&["ROGUE.PUBLISH", channel, payload]);
        out.parse().unwrap_or_else(|_| panic!("ROGUE.PUBLISH answered {out:?}"))
    }

    /// When the upstream next publishes on `upstream_channel`, inject `channel payload` after
    /// `delay_ms` (once).
    pub fn on(&self, upstream_channel: &str, delay_ms: u64, channel: &str, payload: &str) {
        self.control(&["ROGUE.ON", upstream_channel, &delay_ms.to_string(), channel, payload]);
    }

    /// Adds a rule, one word each: `&["epoch", "mymaster", "1000000"]`.
    pub fn lie(&self, rule: &[&str]) {
        let mut args = vec!["ROGUE.LIE"];
        args.extend_from_slice(rule);
        self.control(&args);
    }

    /// Removes every rule: it relays faithfully again.
    pub fn clear_lies(&self) {
        self.lie(&["clear"]);
    }
}

/// `ROGUE.STATS`, parsed.
#[derive(Debug, Clone)]
pub struct RogueStats {
    /// The reply as it came.
    pub raw: String,
    counters: BTreeMap<String, u64>,
    commands: BTreeMap<String, u64>,
    users: BTreeMap<String, u64>,
    lies: Vec<String>,
}

impl RogueStats {
    fn parse(raw: &str) -> RogueStats {
        let mut s = RogueStats {
            raw: raw.to_string(),
            counters: BTreeMap::new(),
            commands: BTreeMap::new(),
            users: BTreeMap::new(),
            lies: Vec::new(),
        };
        for line in raw.lines().map(str::trim_end) {
            let count = |rest: &str| rest.rsplit_once(':').and_then(|(k, n)| Some((k.to_string(), n.parse().ok()?)));
            if let Some(rest) = line.strip_prefix("cmd:") {
                s.commands.extend(count(rest));
            } else if let Some(rest) = line.strip_prefix("auth_user:") {
                s.users.extend(count(rest));
            } else if let Some(rule) = line.strip_prefix("lie:") {
                s.lies.push(rule.to_string());
            } else if !line.starts_with("trigger:") {
                s.counters.extend(count(line));
            }
        }
        s
    }

    /// A counter: `connections`, `open`, `injected`, `delivered`, `rewritten`, `auth`.
    pub fn get(&self, counter: &str) -> u64 {
        self.counters.get(counter).copied().unwrap_or(0)
    }

    /// How many times it passed on (or, as a fake replica, received) `command`, case-insensitive:
    /// `"AUTH"`, `"SENTINEL"`, `"sentinel|get-master-addr-by-name"`.
    pub fn forwarded(&self, command: &str) -> u64 {
        self.commands.get(&command.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// How many commands carried credentials, per user name (`default` for a bare password).
    pub fn auth_users(&self) -> &BTreeMap<String, u64> {
        &self.users
    }

    /// The rules in force, as the top comment of examples/rogue_sentinel.rs writes them.
    pub fn lies(&self) -> &[String] {
        &self.lies
    }
}

/// A `redis-cli PSUBSCRIBE` ([`Lab::psubscribe`]); killed by PID on drop.
pub struct Subscriber {
    child: Child,
    /// Its output, raw: one element a line.
    pub path: PathBuf,
}

impl Subscriber {
    /// Its output lines so far.
    pub fn lines(&self) -> Vec<String> {
        read_lines(&self.path)
    }

    /// The events it received so far, as (channel, payload).
    pub fn messages(&self) -> Vec<(String, String)> {
        let lines = self.lines();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            match lines[i].as_str() {
                "pmessage" if i + 3 < lines.len() => {
                    out.push((lines[i + 2].clone(), lines[i + 3].clone()));
                    i += 4;
                }
                "message" if i + 2 < lines.len() => {
                    out.push((lines[i + 1].clone(), lines[i + 2].clone()));
                    i += 3;
                }
                _ => i += 1,
            }
        }
        out
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
