//! `vipctl watch`: the long-running companion. It follows every sentinel's events, asks the
//! sentinels who the master is on every event, on reconnect and on a timer, and keeps each master's
//! VIPs bound here exactly when this host is the master. It also serves hooks that lack privileges,
//! steps down on the minority side of a partition, and defends held VIPs against other claimants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::apply;
use crate::commands::{Ctx, LOCK_TIMEOUT, is_this_host, managed};
use crate::config::{Config, SentinelAddr};
use crate::control::{self, Reply, Request};
use crate::decide::{self, Action, Observation, Want};
use crate::defend::{self, Conflict, Held};
use crate::error::{Failure, Outcome};
use crate::events;
use crate::lock::{self, MasterLock};
use crate::logging;
use crate::metrics::Metrics;
use crate::netlink::{Netlink, grant_hint};
use crate::notify;
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::redis_role;
use crate::sentinel::{self, Answer, Verdict, View};

/// Options of `vipctl watch` that override the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--sentinel`: replaces every master's sentinel list.
    pub sentinels: Vec<String>,
    /// `--release-on-exit`.
    pub release_on_exit: bool,
}

/// What reaches the main loop.
enum Signal {
    /// A sentinel event that may concern `master` (`None`: any master), about `instance` if named.
    Event { sentinel: SentinelAddr, kind: String, master: Option<String>, instance: Option<(String, u16)> },
    /// Early claim: the local replica the leader selected now reports role:master.
    Promoted { master: String, replica: String, polls: u32 },
    /// Early claim: the replica did not become master within the window.
    EarlyGaveUp { master: String },
    /// An event connection came up: re-check everything.
    Connected(SentinelAddr),
    /// An event connection went down.
    Lost(SentinelAddr, String),
    /// A request on the control socket.
    Control(Request, u32, oneshot::Sender<Reply>),
    /// Another host claimed one of our VIPs.
    Conflict(Conflict),
}

/// What the daemon knows about one master, for decisions and for `status`.
#[derive(Default)]
struct MasterState {
    minority_since: Option<Instant>,
    last_reason: String,
    view: Option<View>,
    holding: bool,
    last_change: Option<(SystemTime, String)>,
    last_announce: Option<Instant>,
    transitions: u64,
    conflicts: u64,
    last_error: Option<String>,
    /// Whether the last verdict named this host.
    master_here: Option<bool>,
    /// The minority timeout in force: configured, or the master's down-after-milliseconds.
    minority_timeout: Duration,
    /// The master's down-after-milliseconds, as last reported.
    known_down_after: Option<Duration>,
    /// The local Redis this host holds the VIPs for (the master named, or the early-claimed replica).
    serving: Option<(String, u16)>,
    /// A task polls the local replica for early claim.
    early_watching: bool,
    /// After an early claim: hold on until the sentinels confirm, a newer epoch, an abort, or this.
    early_until: Option<Instant>,
    /// The newest epoch the sentinels reported when the early claim was made.
    early_epoch: u64,
}

/// How long early claim polls the selected replica for role:master.
const EARLY_WINDOW: Duration = Duration::from_secs(15);
/// How long an early claim holds against sentinels that still name the old master.
const EARLY_GRACE: Duration = Duration::from_secs(10);

struct Daemon {
    config: Config,
    nl: Netlink,
    managed: Vec<IpAddr>,
    states: BTreeMap<String, MasterState>,
    allowed_uids: BTreeSet<u32>,
    log_file: Option<PathBuf>,
    held: Arc<Mutex<Vec<Held>>>,
    pool: sentinel::Pool,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Signal>,
    lock_dir: PathBuf,
    started: SystemTime,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(ctx: &Ctx, opts: Options) -> Outcome<()> {
    let mut config = ctx.config()?;
    if !opts.sentinels.is_empty() {
        let list = opts
            .sentinels
            .iter()
            .map(|s| SentinelAddr::parse(s).map_err(|m| Failure::permanent(anyhow!("--sentinel {m}"))))
            .collect::<Outcome<Vec<_>>>()?;
        for m in config.masters.values_mut() {
            m.sentinels = list.clone();
        }
    }
    if let Some(m) = config.masters.values().find(|m| m.sentinels.is_empty()) {
        return Err(Failure::permanent(anyhow!(
            "master `{}` has no sentinels to follow: set `sentinels` in {} or pass --sentinel HOST:PORT",
            m.name,
            config.path.display()
        )));
    }
    config.watch.release_on_exit |= opts.release_on_exit;
    if !ctx.dry_run {
        let caps = Caps::current();
        for (cap, name) in [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_NET_RAW, "CAP_NET_RAW")] {
            if !caps.has(cap) {
                return Err(Failure::permanent(anyhow!("vipctl watch needs {name}: {}", grant_hint())));
            }
        }
    }

    let (tx, mut rx) = mpsc::channel::<Signal>(1024);
    let listener = bind_socket(&config.watch.socket)?;
    let own_uid = unsafe_getuid();
    let mut allowed_uids: BTreeSet<u32> = [0, own_uid].into();
    for u in &config.watch.hook_users {
        match control::uid_of(u) {
            Some(uid) => {
                allowed_uids.insert(uid);
            }
            None => tracing::warn!("[watch] hook_users: no user `{u}` on this host; ignored"),
        }
    }

    let nl = Netlink::open()?;
    let held = Arc::new(Mutex::new(Vec::new()));
    if config.watch.defend && !ctx.dry_run {
        let tx = tx.clone();
        if let Err(e) = defend::spawn(held.clone(), move |c| tx.blocking_send(Signal::Conflict(c)).is_ok()) {
            tracing::warn!("cannot watch for VIP conflicts: {e}; continuing without defence");
        }
    }
    let sentinels: BTreeSet<SentinelAddr> = config.masters.values().flat_map(|m| m.sentinels.iter().cloned()).collect();
    for s in sentinels {
        tokio::spawn(follow(s, crate::commands::access(&config), tx.clone()));
    }
    tokio::spawn(serve(listener, tx.clone()));
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = config.watch.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::permanent(anyhow!("cannot serve metrics on {addr}: {e}; fix [watch] metrics_listen"))
        })?;
        // Healthy while the main loop runs rounds; three missed rounds (plus slack for slow sentinels) is not.
        let stale = config.watch.reconcile_interval * 3 + Duration::from_secs(2);
        tokio::spawn(crate::metrics::serve(l, metrics.clone(), stale));
    }

    let mut d = Daemon {
        log_file: logging::decision_file(config.log_file.as_deref()),
        managed: managed(&config),
        states: config.masters.keys().map(|k| (k.clone(), MasterState::default())).collect(),
        lock_dir: config.lock_dir.clone().unwrap_or_else(lock::default_dir),
        pool: sentinel::Pool::new(crate::commands::access(&config)),
        metrics,
        tx: tx.clone(),
        config,
        nl,
        allowed_uids,
        held,
        started: SystemTime::now(),
    };
    logging::decision(
        &format!(
            "watch started: masters={} socket={} reconcile_ms={} minority_timeout_ms={} release_on_exit={}",
            d.states.keys().cloned().collect::<Vec<_>>().join(","),
            d.config.watch.socket.display(),
            d.config.watch.reconcile_interval.as_millis(),
            d.config
                .watch
                .minority_timeout
                .map_or("auto (down-after-milliseconds)".to_string(), |t| t.as_millis().to_string()),
            d.config.watch.release_on_exit
        ),
        d.log_file.as_deref(),
        false,
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::transient(anyhow!("cannot handle SIGTERM: {e}")))?;
    let names: Vec<String> = d.states.keys().cloned().collect();
    let mut next_round = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_round) => {
                // Without a majority, probe continuously (with short timeouts, see `reconcile`), so
                // that a healed partition is noticed within ~0.1 s rather than a whole period.
                let period = if d.in_minority() { FAST_PROBE } else { d.config.watch.reconcile_interval };
                next_round = tokio::time::Instant::now() + period;
                d.metrics.tick();
                // One pipeline per sentinel for every master, then each master decides on its view.
                let mut views = d.ask(&names).await;
                // One address dump per round too: with many masters it is the round's main cost.
                let host = d.nl.snapshot().await.ok();
                for name in &names {
                    let view = views.remove(name);
                    let _ = d.reconcile_with(name, view, host.clone(), ctx.dry_run, "timer").await;
                }
            }
            Some(sig) = rx.recv() => d.handle(sig, &names, ctx.dry_run).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    if d.config.watch.release_on_exit && !ctx.dry_run {
        for name in &names {
            let _ = d.apply(name, Want::Release, "stopping with release_on_exit", false).await;
        }
    }
    let _ = std::fs::remove_file(&d.config.watch.socket);
    logging::decision(
        &format!("watch stopped; VIPs {}", if d.config.watch.release_on_exit { "released" } else { "left in place" }),
        d.log_file.as_deref(),
        false,
    );
    Ok(())
}

fn unsafe_getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Probe period and sentinel timeout while some master lacks a majority of reachable sentinels.
const FAST_PROBE: Duration = Duration::from_millis(100);

impl Daemon {
    /// Starts polling the replica the leader selected, when it is this host's.
    async fn maybe_watch_replica(&mut self, master: &str, ip: &str, port: u16) {
        if self.states.get(master).is_some_and(|s| s.early_watching) {
            return;
        }
        let Ok(host) = self.nl.snapshot().await else { return };
        if !is_this_host(ip, &host, &self.managed).unwrap_or(false) {
            return;
        }
        self.states.entry(master.to_string()).or_default().early_watching = true;
        tracing::info!("early claim for `{master}`: the leader selected this host's replica {ip}:{port}; watching it");
        tokio::spawn(watch_replica(master.to_string(), ip.to_string(), port, self.tx.clone()));
    }

    /// True while some master's last round reached only a minority of its sentinels.
    fn in_minority(&self) -> bool {
        self.states.values().any(|s| s.view.as_ref().is_some_and(|v| v.reachable() * 2 <= v.answers.len()))
    }

    async fn handle(&mut self, sig: Signal, names: &[String], dry_run: bool) {
        match sig {
            Signal::Event { sentinel, kind, master, instance } => {
                tracing::debug!("event {kind} from sentinel {sentinel} about {master:?} {instance:?}");
                let targets: Vec<String> = match master {
                    Some(m) if self.states.contains_key(&m) => vec![m],
                    Some(_) => vec![],
                    None => names.to_vec(),
                };
                for m in &targets {
                    if kind.starts_with("-failover-abort") {
                        // The failover is off: an early claim must not hold out any longer.
                        self.states.entry(m.clone()).or_default().early_until = None;
                    }
                    let selected = matches!(kind.as_str(), "+selected-slave" | "+failover-state-wait-promotion");
                    if selected
                        && self.config.watch.early_claim
                        && !dry_run
                        && let Some((ip, port)) = &instance
                    {
                        self.maybe_watch_replica(m, ip, *port).await;
                    }
                }
                for m in targets {
                    let _ = self.reconcile(&m, dry_run, &format!("event {kind} from {sentinel}")).await;
                }
            }
            Signal::Connected(s) => {
                tracing::info!("following events of sentinel {s}");
                for m in names {
                    let _ = self.reconcile(m, dry_run, &format!("connected to sentinel {s}")).await;
                }
            }
            Signal::Lost(s, why) => tracing::warn!("lost the event connection to sentinel {s}: {why}; reconnecting"),
            Signal::Promoted { master, replica, polls } => {
                let epoch = self.states.get(&master).and_then(|s| s.view.as_ref()).map_or(0, |v| match v.verdict() {
                    Verdict::Master { epoch, .. } | Verdict::Conflict(epoch) => epoch,
                    Verdict::NoAnswer => 0,
                });
                let st = self.states.entry(master.clone()).or_default();
                st.early_watching = false;
                st.early_until = Some(Instant::now() + EARLY_GRACE);
                st.serving = replica.rsplit_once(':').and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)));
                st.early_epoch = epoch;
                let why = format!(
                    "early claim: local replica {replica}, selected by the leader, reports role:master (after {polls} polls); \
                     sentinel confirmation pending"
                );
                let _ = self.apply(&master, Want::Hold, &why, false).await;
            }
            Signal::EarlyGaveUp { master } => {
                self.states.entry(master.clone()).or_default().early_watching = false;
                tracing::info!("early claim for `{master}`: the selected replica did not report role:master in time");
            }
            Signal::Control(req, uid, reply) => {
                let answer = self.control(req, uid, dry_run).await;
                let _ = reply.send(answer);
            }
            Signal::Conflict(c) => {
                let Some(name) = self
                    .config
                    .masters
                    .values()
                    .find(|m| m.vips.iter().any(|v| v.addr == c.vip))
                    .map(|m| m.name.clone())
                else {
                    return;
                };
                // A frame from one of this host's own interfaces (a bond, a second NIC on the segment) is no conflict.
                if let Ok(host) = self.nl.snapshot().await
                    && host.interfaces.iter().any(|i| i.mac == Some(c.mac))
                {
                    return;
                }
                let st = self.states.entry(name.clone()).or_default();
                if !st.holding {
                    return;
                }
                // Defend only a VIP whose Redis here still acts as master. If it is dead, frozen or
                // demoted, the claimant is most likely the promoted replica (early claim, or Sentinel
                // ahead of this host's view): yield to it instead of fighting over the clients.
                let role = match st.serving.clone() {
                    Some((h, p)) => Some(redis_role::ask(&h, p, Duration::from_millis(100)).await),
                    None => None,
                };
                let st = self.states.entry(name.clone()).or_default();
                if let Some(role) = role.filter(|r| !r.may_serve()) {
                    let line = format!(
                        "watch master={name} conflict: {} claimed by {} on {} while the Redis here is not serving as master ({role:?}); yielding",
                        c.vip,
                        defend::mac_string(&c.mac),
                        c.ifname
                    );
                    logging::decision(&line, self.log_file.as_deref(), false);
                    if !dry_run {
                        let _ = self
                            .apply(&name, Want::Release, "yielding to the promoted replica during a failover", false)
                            .await;
                    }
                    return;
                }
                st.conflicts += 1;
                self.metrics.conflicts.get_or_create(&Metrics::master(&name)).inc();
                let line = format!(
                    "watch master={name} conflict: {} claimed by {} on {} (conflict #{}); re-announcing",
                    c.vip,
                    defend::mac_string(&c.mac),
                    c.ifname,
                    st.conflicts
                );
                logging::decision(&line, self.log_file.as_deref(), true);
                if !dry_run {
                    let _ = self.apply(&name, Want::Hold, "defending against a conflicting claim", true).await;
                }
            }
        }
    }

    async fn control(&mut self, req: Request, uid: u32, dry_run: bool) -> Reply {
        match req {
            Request::Status => Reply { status: 0, message: "ok".into(), state: Some(self.status_json()) },
            Request::Hook { .. } if !self.allowed_uids.contains(&uid) => Reply {
                status: 2,
                message: format!(
                    "uid {uid} may not hand hooks to this daemon: add the user to [watch] hook_users in the config"
                ),
                state: None,
            },
            Request::Hook { master, args } => {
                if !self.states.contains_key(&master) {
                    return Reply {
                        status: 2,
                        message: format!(
                            "master `{master}` is not in config {}; add a [masters.{master}] table or fix the name in sentinel.conf",
                            self.config.path.display()
                        ),
                        state: None,
                    };
                }
                let why = format!("hook from uid {uid} args={args:?}");
                let result = self.reconcile(&master, dry_run, &why).await;
                let st = &self.states[&master];
                logging::decision(
                    &format!(
                        "watch master={master} {why} answered status={} belief=\"{}\" holding={}",
                        result.as_ref().map_or_else(Failure::status, |_| 0),
                        st.last_reason,
                        st.holding
                    ),
                    self.log_file.as_deref(),
                    result.is_err(),
                );
                match result {
                    Ok(()) => Reply {
                        status: 0,
                        message: format!(
                            "daemon reconciled `{master}`: {}; VIPs {} here",
                            st.last_reason,
                            if st.holding { "held" } else { "not held" }
                        ),
                        state: None,
                    },
                    Err(f) => Reply {
                        status: f.status(),
                        message: format!("daemon could not reconcile `{master}`: {f}"),
                        state: None,
                    },
                }
            }
        }
    }

    /// One round for one master: ask, decide, act. Failures are logged and kept for `status`; the
    /// result matters only to a hook waiting for it.
    /// Asks the sentinels about `names` in one round.
    async fn ask(&mut self, names: &[String]) -> BTreeMap<String, View> {
        let timeout = if self.in_minority() {
            self.config.sentinel_timeout.min(FAST_PROBE)
        } else {
            self.config.sentinel_timeout
        };
        let masters: Vec<(&str, &[SentinelAddr])> = names
            .iter()
            .filter_map(|n| self.config.masters.get(n).map(|m| (n.as_str(), m.sentinels.as_slice())))
            .collect();
        self.pool.ask(&masters, timeout).await
    }

    async fn reconcile(&mut self, name: &str, dry_run: bool, trigger: &str) -> Outcome<()> {
        self.reconcile_with(name, None, None, dry_run, trigger).await
    }

    /// One round for one master, on `view` and `host` when the caller already read them. (Any change
    /// re-reads the host under the master's lock, so a shared snapshot only ever delays a decision.)
    async fn reconcile_with(
        &mut self,
        name: &str,
        view: Option<View>,
        host: Option<crate::host::HostState>,
        dry_run: bool,
        trigger: &str,
    ) -> Outcome<()> {
        let Some(master) = self.config.masters.get(name).cloned() else { return Ok(()) };
        let view = match view {
            Some(v) => v,
            None => self.ask(&[name.to_string()]).await.remove(name).unwrap_or(View { answers: vec![] }),
        };
        let host = match host {
            Some(h) => h,
            None => match self.nl.snapshot().await {
                Ok(h) => h,
                Err(f) => {
                    self.note_error(name, &f);
                    return Err(f);
                }
            },
        };
        let holding = master.vips.iter().any(|v| host.bound(v.addr).next().is_some());
        let verdict_addr = match view.verdict() {
            Verdict::Master { addr, .. } => Some((addr.host.clone(), addr.port)),
            _ => None,
        };
        let master_here = match view.verdict() {
            Verdict::Master { addr, .. } => match is_this_host(&addr.host, &host, &self.managed) {
                Ok(b) => Some(b),
                Err(f) => {
                    tracing::warn!("master `{name}`: cannot tell whether {addr} is this host: {f}");
                    None
                }
            },
            _ => None,
        };
        let obs = Observation { master_here, reachable: view.reachable(), configured: view.answers.len(), holding };
        self.metrics.sentinels_reachable.get_or_create(&Metrics::master(name)).set(obs.reachable as i64);
        self.metrics.sentinels_configured.get_or_create(&Metrics::master(name)).set(obs.configured as i64);
        for vip in &master.vips {
            let bound = host.bound(vip.addr).next().is_some();
            self.metrics.vip_bound.get_or_create(&Metrics::vip(name, &vip.to_string())).set(i64::from(bound));
        }
        let st = self.states.entry(name.to_string()).or_default();
        // Auto: let go no later than the majority side may call the master down, so a cut-off
        // holder is gone before any replica is promoted (remembered across rounds that reach no one).
        if let Some(d) = view.down_after() {
            st.known_down_after = Some(d);
        }
        st.minority_timeout = self
            .config
            .watch
            .minority_timeout
            .or(st.known_down_after)
            .unwrap_or(crate::config::DEFAULT_MINORITY_TIMEOUT);
        let (want, reason) = decide::daemon_want(&obs, &mut st.minority_since, Instant::now(), st.minority_timeout);
        st.view = Some(view.clone());
        st.holding = holding;
        st.master_here = master_here;
        if master_here == Some(true) {
            st.serving = verdict_addr.clone();
        } else if st.early_until.is_none() {
            st.serving = None;
        }
        // After an early claim, sentinels still name the old master until their next INFO poll:
        // hold on until they confirm, publish a newer epoch, abort, or the grace ends.
        if let Some(until) = st.early_until {
            let newer = matches!(view.verdict(), Verdict::Master { epoch, .. } if epoch > st.early_epoch);
            if master_here == Some(true) || newer || Instant::now() >= until {
                st.early_until = None;
            } else if want == Some(Want::Release) {
                return Ok(());
            }
        }
        // Log a change of belief, not every round of the same one (its counters tick).
        let gist = |r: &str| r.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
        if gist(&reason) != gist(&st.last_reason) {
            tracing::info!("master `{name}`: {reason} ({})", view.summary());
        }
        st.last_reason = reason.clone();
        let Some(want) = want else { return Ok(()) };
        let actions = decide::plan(&master, want, &host, &self.managed).map_err(Failure::permanent);
        let actions = match actions {
            Ok(a) => a,
            Err(f) => {
                self.note_error(name, &f);
                return Err(f);
            }
        };
        let changes = actions.iter().any(Action::changes_addresses);
        // Before binding, ask the Redis itself: Sentinel may still name a master that is dead,
        // frozen or demoted (it notices at its next poll), and a VIP on it serves nobody.
        if want == Want::Hold
            && changes
            && let Some((h, p)) = &verdict_addr
            && master_here == Some(true)
        {
            let role = redis_role::ask(h, *p, Duration::from_millis(300)).await;
            if !role.may_serve() {
                let st = self.states.entry(name.to_string()).or_default();
                let r = format!(
                    "the sentinels name this host, but its Redis at {h}:{p} does not serve as master ({role:?}); not claiming"
                );
                if st.last_reason != r {
                    tracing::warn!("master `{name}`: {r}");
                    st.last_reason = r;
                }
                return Ok(());
            }
        }
        let refresh = self.config.watch.announce_refresh;
        let refresh_due =
            want == Want::Hold && !refresh.is_zero() && st.last_announce.is_none_or(|t| t.elapsed() >= refresh);
        if !changes && !refresh_due {
            return Ok(());
        }
        if dry_run {
            tracing::info!(
                "dry run: would {want} `{name}`: {}",
                actions.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            );
            return Ok(());
        }
        let why = format!("{reason}; trigger: {trigger}; sentinels: {}", view.summary());
        self.apply(name, want, &why, !changes).await
    }

    /// Takes the master's lock, re-reads the host, and converges; logs one decision line.
    async fn apply(&mut self, name: &str, want: Want, why: &str, announce_only: bool) -> Outcome<()> {
        let Some(master) = self.config.masters.get(name).cloned() else { return Ok(()) };
        let start = Instant::now();
        let dir = self.lock_dir.clone();
        let lock_name = name.to_string();
        // The lock waits with a blocking sleep; keep it off the event loop.
        let lock = tokio::task::spawn_blocking(move || MasterLock::acquire(&dir, &lock_name, LOCK_TIMEOUT))
            .await
            .map_err(|e| Failure::transient(anyhow!("lock task failed: {e}")))
            .and_then(|r| r);
        let _lock = match lock {
            Ok(l) => l,
            Err(f) => {
                self.note_error(name, &f);
                return Err(f);
            }
        };
        // A hook may have changed things while we waited: plan on fresh state.
        let result = match self.nl.snapshot().await {
            Ok(host) => {
                apply::converge(&self.nl, &master, want, &host, &self.managed, false, apply::Rounds::Background).await
            }
            Err(f) => Err(f),
        };
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        let st = self.states.entry(name.to_string()).or_default();
        match result {
            Ok(report) => {
                let failed = !report.warnings.is_empty();
                if report.frames_sent > 0 {
                    st.last_announce = Some(Instant::now());
                    self.metrics.last_announce.get_or_create(&Metrics::master(name)).set(crate::metrics::now_secs());
                }
                let changed = report.actions.iter().any(Action::changes_addresses);
                if changed {
                    st.transitions += 1;
                    st.last_change = Some((SystemTime::now(), format!("{want}: {}", report.summary())));
                    self.metrics.transitions.get_or_create(&Metrics::master(name)).inc();
                    for vip in &master.vips {
                        let v = i64::from(want == Want::Hold);
                        self.metrics.vip_bound.get_or_create(&Metrics::vip(name, &vip.to_string())).set(v);
                    }
                    // After the change, off the main loop: a slow or failing command never delays a move.
                    let (m, reason, log_file, metrics) =
                        (master.clone(), why.to_string(), self.log_file.clone(), self.metrics.clone());
                    tokio::spawn(async move {
                        let outcome = notify::run(&m, want, &reason).await;
                        if outcome == notify::Outcome::None {
                            return;
                        }
                        let failed = matches!(outcome, notify::Outcome::Failed(_));
                        if failed {
                            metrics.notify_failures.get_or_create(&Metrics::master(&m.name)).inc();
                        }
                        let line = format!("watch master={} notify event={want}{}", m.name, outcome.log_fragment());
                        logging::decision(&line, log_file.as_deref(), failed);
                    });
                }
                st.holding = want == Want::Hold;
                let kind = if announce_only { "re-announce" } else { "decision" };
                let mut line = format!(
                    "watch master={name} {kind}={want} reason=\"{why}\" actions=\"{}\" frames={} elapsed_ms={elapsed:.1}",
                    report.summary(),
                    report.frames_sent
                );
                if failed {
                    line.push_str(&format!(" result=error warnings=\"{}\"", report.warnings.join("; ")));
                } else {
                    line.push_str(" result=ok");
                    st.last_error = None;
                }
                logging::decision(&line, self.log_file.as_deref(), failed);
                self.update_held();
                if failed { Err(Failure::transient(anyhow!("{}", report.warnings.join("; ")))) } else { Ok(()) }
            }
            Err(f) => {
                logging::decision(
                    &format!(
                        "watch master={name} decision={want} reason=\"{why}\" result=error error=\"{f}\" elapsed_ms={elapsed:.1}"
                    ),
                    self.log_file.as_deref(),
                    true,
                );
                self.note_error(name, &f);
                Err(f)
            }
        }
    }

    fn note_error(&mut self, name: &str, f: &Failure) {
        self.metrics.reconcile_errors.get_or_create(&Metrics::master(name)).inc();
        let st = self.states.entry(name.to_string()).or_default();
        let text = f.to_string();
        if st.last_error.as_deref() != Some(text.as_str()) {
            tracing::warn!("master `{name}`: {text}");
        }
        st.last_error = Some(text);
    }

    /// Tells the conflict watcher which VIPs we hold, and with which MACs.
    fn update_held(&self) {
        let held: Vec<Held> = self
            .config
            .masters
            .values()
            .filter(|m| self.states.get(&m.name).is_some_and(|s| s.holding))
            .flat_map(|m| m.vips.iter().map(|v| v.addr))
            .map(|vip| Held { vip })
            .collect();
        if let Ok(mut h) = self.held.lock() {
            *h = held;
        }
    }

    fn status_json(&self) -> Value {
        let masters: Vec<Value> = self
            .states
            .iter()
            .map(|(name, st)| {
                let sentinels: Vec<Value> = st
                    .view
                    .as_ref()
                    .map(|v| {
                        v.answers
                            .iter()
                            .map(|(s, a)| match a {
                                Answer::Master { addr, epoch, flags, .. } => {
                                    json!({"sentinel": s.to_string(), "master": addr.to_string(), "config_epoch": epoch, "flags": flags})
                                }
                                Answer::Unknown => json!({"sentinel": s.to_string(), "unknown_master": true}),
                                Answer::Unreachable(e) => json!({"sentinel": s.to_string(), "unreachable": e}),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "name": name,
                    "holding": st.holding,
                    "belief": st.last_reason,
                    "sentinels": sentinels,
                    "summary": st.view.as_ref().map(View::summary),
                    "minority_for_ms": st.minority_since.map(|t| t.elapsed().as_millis() as u64),
                    "last_change": st.last_change.as_ref().map(|(t, what)| json!({"at": humantime::format_rfc3339_millis(*t).to_string(), "what": what})),
                    "transitions": st.transitions,
                    "conflicts": st.conflicts,
                    "last_error": st.last_error,
                })
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "started": humantime::format_rfc3339_millis(self.started).to_string(),
            "masters": masters,
        })
    }
}

/// Polls the replica at `addr` with ROLE until it reports master (then reports Promoted) or the
/// window closes. The poll is a local round trip of well under a millisecond, so the VIP follows
/// the promotion itself rather than Sentinel's next INFO poll (up to ~1 s later).
async fn watch_replica(master: String, host: String, port: u16, tx: mpsc::Sender<Signal>) {
    let start = Instant::now();
    let mut polls = 0u32;
    let replica = format!("{host}:{port}");
    while start.elapsed() < EARLY_WINDOW {
        let client = match redis::Client::open((host.as_str(), port)) {
            Ok(c) => c,
            Err(_) => break,
        };
        let con = tokio::time::timeout(Duration::from_millis(500), client.get_multiplexed_async_connection()).await;
        let Ok(Ok(mut con)) = con else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        while start.elapsed() < EARLY_WINDOW {
            polls += 1;
            let reply: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await;
            match redis_role::from_reply(&reply) {
                redis_role::Role::Master => {
                    let _ = tx.send(Signal::Promoted { master, replica, polls }).await;
                    return;
                }
                redis_role::Role::Down(_) => break,
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    let _ = tx.send(Signal::EarlyGaveUp { master }).await;
}

/// Binds the control socket, refusing to steal it from a running daemon.
fn bind_socket(path: &Path) -> Outcome<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::permanent(anyhow!(
                "cannot create {}: {e}; create it or set [watch] socket in the config",
                dir.display()
            ))
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Failure::permanent(anyhow!(
                "another vipctl watch already serves {}; stop it first (or set a different [watch] socket)",
                path.display()
            )));
        }
        // Left by a daemon that died: nobody listens, so it is ours to replace.
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Failure::permanent(anyhow!("cannot listen on {}: {e}", path.display())))?;
    // Anyone may connect; who may do what is decided per request from SO_PEERCRED.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(listener)
}

/// Accepts control connections; each request goes to the main loop, which answers it.
async fn serve(listener: UnixListener, tx: mpsc::Sender<Signal>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, tx).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn serve_one(stream: UnixStream, tx: mpsc::Sender<Signal>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), control::read_line_limited(&mut reader, &mut line)).await;
    let reply = match read {
        Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(req) => {
                let (rtx, rrx) = oneshot::channel();
                if tx.send(Signal::Control(req, uid, rtx)).await.is_err() {
                    return Ok(());
                }
                rrx.await.unwrap_or(Reply { status: 1, message: "the daemon is stopping".into(), state: None })
            }
            Err(e) => Reply { status: 2, message: format!("malformed request: {e}"), state: None },
        },
        _ => return Ok(()),
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let mut stream = reader.into_inner();
    stream.write_all(&out).await
}

/// Follows one sentinel's events forever, reconnecting with capped exponential backoff and jitter,
/// so that a sentinel restart, TILT or a partition only delays events, never stops the daemon.
async fn follow(s: SentinelAddr, access: sentinel::Access, tx: mpsc::Sender<Signal>) {
    let mut backoff = Duration::from_millis(100);
    let mut was_down = false;
    loop {
        match subscribe(&s, &access).await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                was_down = false;
                if tx.send(Signal::Connected(s.clone())).await.is_err() {
                    return;
                }
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    let channel = msg.get_channel_name().to_string();
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(ev) = events::parse(&channel, &payload) {
                        let sig = Signal::Event {
                            sentinel: s.clone(),
                            kind: ev.kind,
                            master: ev.master,
                            instance: ev.instance,
                        };
                        if tx.send(sig).await.is_err() {
                            return;
                        }
                    }
                }
                if tx.send(Signal::Lost(s.clone(), "connection closed".into())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !was_down {
                    tracing::warn!("cannot follow sentinel {s}: {e:#}; retrying with backoff");
                    was_down = true;
                }
            }
        }
        tokio::time::sleep(backoff + jitter(backoff / 2)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(s: &SentinelAddr, access: &sentinel::Access) -> anyhow::Result<redis::aio::PubSub> {
    let client = access.client(s)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| anyhow!("no answer within 2 s"))??;
    pubsub.psubscribe("*").await?;
    Ok(pubsub)
}

/// A pseudo-random duration below `max`, so that many daemons do not reconnect in lockstep.
fn jitter(max: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let x = (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Duration::from_nanos(x % (max.as_nanos() as u64).max(1))
}
