//! A virtual-time world for the core, in the spirit of quinn-proto's `Pair`: scripted sentinels
//! (any of them may lie), fake Redis instances, this host's addresses and a clock. [`Sim::step`]
//! delivers the next thing that happens (an answer, an event, a timer, an address round) and
//! carries the core's effects out on the fake world, with small latencies, so that a whole
//! failover plays out in microseconds of real time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{Applied, AskOutcome, Core, Effect, Input, Settings};
use crate::config::Config;
pub use crate::config::HostPort;
use crate::fence::Step;
use crate::local_redis::Role;
use crate::network::defend::Conflict;
use crate::network::host::{Address, HostState, Interface};
use crate::policy::{self, Act, RoleSeen};
use crate::record::{Actor, Change, Record};
use crate::sentinel::{Answer, Listed, events};

/// A round trip on the lab's links.
const HOP: Duration = Duration::from_micros(500);
/// The daemon's reconcile period (address rounds, sentinel probes).
const ROUND: Duration = Duration::from_millis(500);
/// Between two attempts of the local watch on a gone Redis.
const PROBE_SPACING: Duration = Duration::from_millis(5);
/// How long the daemon's heartbeats take to call a cut-off sentinel unreachable (3 × 20 ms).
pub const SILENCE: Duration = Duration::from_millis(60);

/// The address of host `n` (1–3) and of its Redis and sentinel.
pub fn ip(n: u8) -> String {
    format!("198.51.100.1{n}")
}
/// Host `n`'s Redis.
pub fn redis(n: u8) -> HostPort {
    HostPort { host: ip(n), port: 6379 }
}
/// Host `n`'s sentinel.
pub fn sentinel(n: u8) -> HostPort {
    HostPort { host: ip(n), port: 26379 }
}
/// A rogue sentinel's address: on host 3, another port.
pub fn rogue() -> HostPort {
    HostPort { host: ip(3), port: 26380 }
}

/// What one scripted sentinel answers.
#[derive(Debug, Clone)]
pub struct FakeSentinel {
    /// The master it names.
    pub master: HostPort,
    /// At this epoch.
    pub epoch: u64,
    /// The replicas it lists.
    pub replicas: Vec<HostPort>,
    /// It answers at all.
    pub up: bool,
    /// The masters it reports on (a sentinel configured for other masters knows nothing of ours).
    pub knows: bool,
    /// It flags a failover in progress (`failover_in_progress` in `SENTINEL MASTER`).
    pub failing_over: bool,
}

/// A fake Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redis {
    /// A master.
    Master,
    /// A replica of this master.
    Replica(HostPort),
    /// Killed: connections are refused.
    Gone,
}

/// One Redis instance of the world.
#[derive(Debug, Clone)]
pub struct FakeRedis {
    /// What it is.
    pub state: Redis,
    /// Its write fence is set.
    pub fenced: bool,
    /// Stopped (SIGSTOP): answers nothing.
    pub frozen: bool,
}

/// The world around one daemon, and its clock.
pub struct Sim {
    /// The daemon under test.
    pub core: Core,
    /// Now, in virtual time.
    pub now: Instant,
    t0: Instant,
    /// This host's number.
    pub me: u8,
    /// The sentinels by address, as configured (and the rogue, when configured).
    pub sentinels: BTreeMap<HostPort, FakeSentinel>,
    /// Redis instances by address.
    pub redis: BTreeMap<HostPort, FakeRedis>,
    host: HostState,
    queue: Vec<(Instant, u64, Input)>,
    seq: u64,
    /// Every effect the core produced, with its time since the start.
    pub effects: Vec<(Duration, Effect)>,
    watches: BTreeSet<HostPort>,
    local_watch: Option<HostPort>,
    next_round: Instant,
    next_full: Instant,
    /// Each change of a Redis's fence: (time since start, Redis, fenced).
    pub fence_log: Vec<(Duration, HostPort, bool)>,
    /// Each change of this host's VIP: (time since start, bound).
    pub vip_log: Vec<(Duration, bool)>,
    /// Commands sent to Redis instances: (Redis, what) — credentials go with each connection.
    pub contacted: Vec<(HostPort, String)>,
    /// `SENTINEL FAILOVER` as fail-fast sent it: (time since start, sentinel).
    pub failover_asks: Vec<(Duration, HostPort)>,
    /// What every sentinel answers to `SENTINEL FAILOVER`.
    pub failover_reply: AskOutcome,
    /// What some sentinels answer instead (one in TILT, say).
    pub failover_reply_of: Vec<(HostPort, AskOutcome)>,
    /// A sentinel that answers `+OK` flags the failover at once, as Sentinel does (and selects
    /// nothing unless the test says so); false: its `+OK` is a word and nothing else.
    pub flag_on_accept: bool,
    /// Between full questions to every sentinel; a PING vouches for the last answer each round
    /// between (the daemon's heartbeats make them 5 s apart while all is well).
    pub answer_round: Duration,
    /// Replicas the sentinels list as ones they would not promote (besides frozen or gone ones).
    pub unpromotable: Vec<HostPort>,
    /// The provider's API, for a config with a cloud table (a fake: see [`super::cloud`]).
    pub cloud: super::cloud::FakeCloud,
}

/// A config for the world: the three sentinels (and `extra` ones), early claim as asked.
pub fn config(extra_sentinels: &[HostPort], early_claim: bool, extra_toml: &str) -> Arc<Config> {
    let mut list: Vec<String> = (1..=3).map(|n| format!("\"{}\"", sentinel(n))).collect();
    list.extend(extra_sentinels.iter().map(|s| format!("\"{s}\"")));
    let text = format!(
        "sentinels = [{}]\n[watch]\nearly_claim = {early_claim}\n{extra_toml}\n[masters.mymaster]\nvips = [\"198.51.100.100/24\"]\ninterface = \"eth0\"\n",
        list.join(", ")
    );
    Arc::new(Config::parse(Path::new("sim.toml"), &text).expect("the sim's config parses"))
}

impl Sim {
    /// A world where host 1's Redis is the master, replicated by hosts 2 and 3; the daemon runs on
    /// host `me`.
    pub fn new(me: u8, config: Arc<Config>) -> Sim {
        let t0 = Instant::now();
        let settings = Settings {
            policy: policy::Settings {
                minority_timeout: config.watch.minority_timeout,
                minority_default: crate::config::DEFAULT_MINORITY_TIMEOUT,
                announce_refresh: config.watch.announce_refresh,
                role_fresh_for: super::super::ROLE_FRESH_FOR,
            },
            fresh_for: ROUND + config.sentinel_timeout,
            hook_wait: config.sentinel_timeout * 2,
            early_claim: config.watch.early_claim,
            fail_fast: config.watch.fail_fast,
            dry_run: false,
        };
        let mut sentinels = BTreeMap::new();
        for s in config.masters["mymaster"].sentinels.clone() {
            let honest = FakeSentinel {
                master: redis(1),
                epoch: 0,
                replicas: vec![redis(2), redis(3)],
                up: true,
                knows: true,
                failing_over: false,
            };
            sentinels.insert(s, honest);
        }
        let mut redis_map = BTreeMap::new();
        redis_map.insert(redis(1), FakeRedis { state: Redis::Master, fenced: false, frozen: false });
        for n in 2..=3 {
            redis_map.insert(redis(n), FakeRedis { state: Redis::Replica(redis(1)), fenced: false, frozen: false });
        }
        let host = HostState {
            interfaces: vec![Interface {
                index: 2,
                name: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0, 0x10 + me]),
                up: true,
            }],
            addresses: vec![Address::new(2, ip(me).parse().unwrap(), 24)],
        };
        let core = Core::new(config, settings, [0].into(), t0);
        let mut sim = Sim {
            core,
            now: t0,
            t0,
            me,
            sentinels,
            redis: redis_map,
            host,
            queue: Vec::new(),
            seq: 0,
            effects: Vec::new(),
            watches: BTreeSet::new(),
            local_watch: None,
            next_round: t0,
            next_full: t0,
            fence_log: Vec::new(),
            vip_log: Vec::new(),
            contacted: Vec::new(),
            failover_asks: Vec::new(),
            failover_reply: AskOutcome::Accepted,
            failover_reply_of: Vec::new(),
            flag_on_accept: false,
            answer_round: ROUND,
            unpromotable: Vec::new(),
            cloud: super::cloud::FakeCloud::default(),
        };
        sim.deliver(HOP, Input::Host(Ok(sim.host.clone())));
        sim
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Whether this host holds the VIP.
    pub fn holding(&self) -> bool {
        self.host.bound("198.51.100.100".parse().unwrap()).next().is_some()
    }

    /// Queues `input` to arrive `after` from now.
    pub fn deliver(&mut self, after: Duration, input: Input) {
        self.seq += 1;
        self.queue.push((self.now + after, self.seq, input));
    }

    /// An event from `from`, as Sentinel publishes it (channel, payload).
    pub fn event(&mut self, from: &HostPort, channel: &str, payload: &str) {
        let event = events::parse(channel, payload).unwrap_or_else(|| panic!("{channel} is an event vipctl follows"));
        self.deliver(HOP, Input::Event { sentinel: from.clone(), event });
    }

    /// Sentinel's event about replica `r` of mymaster (whose master is host 1).
    pub fn replica_event(&mut self, from: &HostPort, channel: &str, r: &HostPort) {
        let payload = format!("slave {r} {} {} @ mymaster {} 6379", r.host, r.port, ip(1));
        self.event(from, channel, &payload);
    }

    /// Another host's MAC claims the VIP (a gratuitous ARP from it).
    pub fn claim_from(&mut self, n: u8) {
        assert_ne!(n, self.me, "a claim from this host's own MAC is no conflict");
        let c = Conflict {
            vip: "198.51.100.100".parse::<IpAddr>().unwrap(),
            mac: [2, 0, 0, 0, 0, 0x10 + n],
            ifname: "eth0".into(),
        };
        self.deliver(Duration::from_micros(100), Input::Conflict(c));
    }

    /// The honest sentinels (not `except`) now name `master` at `epoch`.
    pub fn sentinels_name(&mut self, master: &HostPort, epoch: u64, except: &[HostPort]) {
        for (addr, s) in &mut self.sentinels {
            if !except.contains(addr) {
                s.master = master.clone();
                s.epoch = epoch;
            }
        }
    }

    /// These sentinels stop answering (`up` false) or answer again; the daemon's heartbeats tell it
    /// within `SILENCE` (a cut: the PINGs go unanswered; back: the next question succeeds).
    pub fn sentinels_up(&mut self, which: &[HostPort], up: bool) {
        for s in which {
            self.sentinels.get_mut(s).expect("a configured sentinel").up = up;
            if up {
                self.answer(s);
            } else {
                let why = "no answer to a PING within 60 ms".to_string();
                self.deliver(SILENCE, Input::Unreachable { sentinel: s.clone(), why });
            }
        }
    }

    /// Kills a Redis: connections to it are refused from now on. The local watch says so at once,
    /// and tries again every 5 ms for a second (each a refused probe), as the daemon's does.
    pub fn kill(&mut self, r: &HostPort) {
        self.redis.get_mut(r).expect("a Redis of the world").state = Redis::Gone;
        if self.local_watch.as_ref() == Some(r) {
            let seen = RoleSeen { addr: r.clone(), role: Role::Gone("refused".into()), fenced: None, at: self.now };
            self.deliver(Duration::from_micros(200), Input::Role { master: "mymaster".into(), seen });
            for i in 0..200u32 {
                let probe = Input::LocalProbe { master: "mymaster".into(), refused: true };
                self.deliver(Duration::from_micros(200) + PROBE_SPACING * i, probe);
            }
        }
    }

    /// A killed Redis starts again (systemd's restart): a master, unfenced, maybe empty. The local
    /// watch's next attempt is accepted.
    pub fn restart(&mut self, r: &HostPort) {
        let x = self.redis.get_mut(r).expect("a Redis of the world");
        assert_eq!(x.state, Redis::Gone, "only a killed Redis restarts");
        *x = FakeRedis { state: Redis::Master, fenced: false, frozen: false };
        if self.local_watch.as_ref() == Some(r) {
            self.queue.retain(|(_, _, i)| !matches!(i, Input::LocalProbe { refused: true, .. }));
            self.deliver(PROBE_SPACING, Input::LocalProbe { master: "mymaster".into(), refused: false });
        }
    }

    /// The records the core emitted, as (reason code, reason).
    pub fn records(&self) -> Vec<(String, String)> {
        self.effects
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Record(r) => Some((r.reason_code.clone(), r.reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// Makes a replica a master (Sentinel's SLAVEOF NO ONE).
    pub fn promote(&mut self, r: &HostPort) {
        self.redis.get_mut(r).expect("a Redis of the world").state = Redis::Master;
        self.poke_watches();
    }

    /// Runs the world for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
        self.now = until;
    }

    /// Delivers the next thing that happens before `until`; false when nothing does.
    pub fn step(&mut self, until: Instant) -> bool {
        let queued = self.queue.iter().map(|(t, s, _)| (*t, *s)).min();
        let timer = self.core.poll_timeout();
        let mut next = self.next_round;
        if let Some((t, _)) = queued {
            next = next.min(t);
        }
        if let Some(t) = timer {
            next = next.min(t);
        }
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if queued.is_some_and(|(t, _)| t == next) {
            let (_, seq) = queued.expect("checked");
            let i = self.queue.iter().position(|(_, s, _)| *s == seq).expect("queued");
            let (_, _, input) = self.queue.remove(i);
            self.core.handle(self.now, input);
        } else if timer.is_some_and(|t| t == next) {
            self.core.handle(self.now, Input::Timeout);
            assert!(
                self.core.poll_timeout().is_none_or(|t| t > self.now),
                "a timer that stays due spins the daemon's loop (at {:?})",
                self.elapsed()
            );
        } else {
            self.next_round = self.now + ROUND;
            self.deliver(HOP, Input::Host(Ok(self.host.clone())));
            let full = self.now >= self.next_full;
            if full {
                self.next_full = self.now + self.answer_round;
            }
            let all: Vec<HostPort> = self.sentinels.keys().cloned().collect();
            for s in all {
                match self.sentinels[&s].up {
                    // Between full questions a PING vouches that its last answer stands.
                    true if !full => self.deliver(HOP, Input::Alive(s)),
                    _ => self.answer(&s),
                }
            }
        }
        self.carry_out();
        true
    }

    fn answer(&mut self, s: &HostPort) {
        let Some(f) = self.sentinels.get(s).cloned() else { return };
        if !f.up {
            self.deliver(HOP, Input::Unreachable { sentinel: s.clone(), why: "cut off".into() });
            return;
        }
        let answer = if f.knows {
            Answer::Master {
                addr: f.master.clone(),
                epoch: f.epoch,
                flags: if f.failing_over { "master,failover_in_progress" } else { "master" }.into(),
                down_after_ms: Some(1000),
                failover_timeout_ms: Some(5000),
            }
        } else {
            Answer::Unknown
        };
        let listed = f
            .replicas
            .iter()
            .map(|r| {
                let healthy = self.redis.get(r).is_some_and(|x| matches!(x.state, Redis::Replica(_)) && !x.frozen);
                Listed { addr: r.clone(), promotable: healthy && !self.unpromotable.contains(r) }
            })
            .collect();
        let replicas = if f.knows { vec![("mymaster".to_string(), listed)] } else { vec![] };
        let input = Input::Answers { sentinel: s.clone(), answers: vec![("mymaster".into(), answer)], replicas };
        self.deliver(HOP, input);
    }

    fn carry_out(&mut self) {
        for e in self.core.drain() {
            self.effects.push((self.elapsed(), e.clone()));
            match e {
                Effect::Apply(job) => {
                    let vip = Address { secondary: true, ..Address::new(2, "198.51.100.100".parse().unwrap(), 24) };
                    let had = self.holding();
                    match job.act {
                        Act::Hold if !had => self.host.addresses.push(vip),
                        Act::Release => self.host.addresses.retain(|a| a.addr != vip.addr),
                        _ => {}
                    }
                    let changed = had != self.holding();
                    if changed {
                        self.vip_log.push((self.elapsed(), self.holding()));
                    }
                    let change = match job.act {
                        Act::Hold => Change::Claim,
                        Act::Release => Change::Release,
                        _ => Change::Announce,
                    };
                    let mut record = Record::new(job.event, Actor::Watch, &job.master, change, &job.reason);
                    record.frames = u32::from(job.act != Act::Release);
                    self.deliver(Duration::from_micros(800), Input::Host(Ok(self.host.clone())));
                    let applied = Applied { job: *job, record, changed };
                    self.deliver(Duration::from_micros(900), Input::Applied(Box::new(applied)));
                }
                Effect::AskRole { master, addr } => {
                    self.contacted.push((addr.clone(), "ROLE".into()));
                    let (role, fenced, after) = match self.redis.get(&addr) {
                        None => (Role::Gone("nothing listens".into()), None, HOP),
                        Some(r) if r.frozen => {
                            (Role::Unknown("no answer within 300 ms".into()), None, Duration::from_millis(300))
                        }
                        Some(r) => (role_of(&r.state), Some(r.fenced), HOP),
                    };
                    let seen = RoleSeen { addr, role, fenced, at: self.now + after };
                    self.deliver(after, Input::Role { master, seen });
                }
                Effect::Resolve(name) => panic!("the sim names hosts by address; asked to resolve {name}"),
                Effect::Nudge { sentinels, .. } => {
                    for s in sentinels {
                        self.answer(&s);
                    }
                }
                Effect::Redis { master, redis, steps, only_if_master, .. } => {
                    self.contacted.push((redis.clone(), format!("{steps:?}")));
                    let outcome = self.steps(&redis, &steps, only_if_master);
                    self.deliver(HOP, Input::StepsDone { master, outcome });
                }
                Effect::Watch { replica, .. } => {
                    self.contacted.push((replica.clone(), "ROLE (watch)".into()));
                    self.watches.insert(replica);
                    self.poke_watches();
                }
                Effect::Unwatch { replica, .. } => {
                    self.watches.remove(&replica);
                }
                Effect::WatchLocal { redis, .. } => {
                    let gone = self.redis.get(&redis).is_none_or(|r| r.state == Redis::Gone);
                    self.local_watch = Some(redis.clone());
                    if gone {
                        self.kill(&redis);
                    }
                }
                Effect::UnwatchLocal { .. } => self.local_watch = None,
                Effect::AskFailover { master, sentinel } => {
                    self.failover_asks.push((self.elapsed(), sentinel.clone()));
                    let own = self.failover_reply_of.iter().find(|(s, _)| *s == sentinel).map(|(_, o)| o.clone());
                    let outcome = own.unwrap_or_else(|| self.failover_reply.clone());
                    if outcome == AskOutcome::Accepted
                        && self.flag_on_accept
                        && let Some(f) = self.sentinels.get_mut(&sentinel)
                    {
                        f.failing_over = true;
                    }
                    self.deliver(HOP, Input::FailoverAsked { master, sentinel, outcome });
                }
                e @ (Effect::Deliver { .. } | Effect::CheckDelivery { .. } | Effect::StopDelivery { .. }) => {
                    let me = self.me;
                    let t = self.elapsed();
                    if let Some((after, input)) = self.cloud.carry(me, t, e) {
                        self.deliver(after, input);
                    }
                }
                Effect::Reply { .. } | Effect::Record(_) | Effect::Metric(_) | Effect::Heartbeats { .. } => {}
            }
        }
    }

    fn steps(&mut self, addr: &HostPort, steps: &[Step], only_if_master: bool) -> Result<String, String> {
        let t = self.elapsed();
        let Some(r) = self.redis.get_mut(addr) else { return Ok("gone".into()) };
        if r.frozen {
            return Err("no answer".into());
        }
        if r.state == Redis::Gone || (only_if_master && r.state != Redis::Master) {
            return Ok("skipped".into());
        }
        for s in steps {
            match s {
                Step::Fence | Step::Lift => {
                    let on = *s == Step::Fence;
                    if r.fenced != on {
                        r.fenced = on;
                        self.fence_log.push((t, addr.clone(), on));
                    }
                }
                Step::ReplicaOf(m) => r.state = Redis::Replica(m.clone()),
            }
        }
        Ok("done".into())
    }

    /// Watched replicas that are masters now report it, once.
    fn poke_watches(&mut self) {
        let promoted: Vec<HostPort> = self
            .watches
            .iter()
            .filter(|w| self.redis.get(*w).is_some_and(|r| r.state == Redis::Master && !r.frozen))
            .cloned()
            .collect();
        for replica in promoted {
            self.watches.remove(&replica);
            self.deliver(Duration::from_millis(1), Input::Promoted { master: "mymaster".into(), replica, polls: 1 });
        }
    }

    /// How long `r`'s writes were fenced in all, counting a fence still on until now.
    pub fn fenced_for(&self, r: &HostPort) -> Duration {
        let mut total = Duration::ZERO;
        let mut since = None;
        for (t, addr, on) in &self.fence_log {
            if addr != r {
                continue;
            }
            match (on, since) {
                (true, None) => since = Some(*t),
                (false, Some(s)) => {
                    total += *t - s;
                    since = None;
                }
                _ => {}
            }
        }
        total + since.map_or(Duration::ZERO, |s| self.elapsed() - s)
    }

    /// The reason codes of the jobs the core handed out, in order.
    pub fn decisions(&self) -> Vec<(Act, &'static str)> {
        self.effects
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Apply(j) => Some((j.act.clone(), j.reason.code())),
                _ => None,
            })
            .collect()
    }

    /// The reasons of the Redis steps the core asked for, in order.
    pub fn redis_steps(&self) -> Vec<(&'static str, Vec<Step>)> {
        self.effects
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Redis { reason, steps, .. } => Some((reason.code(), steps.clone())),
                _ => None,
            })
            .collect()
    }
}

fn role_of(state: &Redis) -> Role {
    match state {
        Redis::Master => Role::Master,
        Redis::Replica(_) => Role::Replica,
        Redis::Gone => Role::Gone("refused".into()),
    }
}
