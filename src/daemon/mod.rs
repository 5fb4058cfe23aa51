//! `vipctl watch`, the long-running companion: it keeps each master's VIPs bound here exactly when
//! this host runs the master, steps down on the minority side of a partition, defends held VIPs
//! against other claimants, and serves hooks that lack privileges.
//!
//! One loop owns all state and decides; it never waits for I/O. Everything that talks to the world
//! runs beside it and reports back as a [`Signal`]:
//! - [`sentinels`]: one task per sentinel keeps a live view (questions and events);
//! - [`host_watch`]: this host's addresses, one dump per period;
//! - [`applier`]: carries out decisions (locks, netlink, announcements, notify commands);
//! - [`early_claim`]: polls the replica the leader selected;
//! - [`control`]: the control socket; [`metrics`]: Prometheus and /healthz;
//! - the conflict watcher ([`crate::network::defend`]), a thread on packet sockets;
//! - name lookups and local `ROLE` probes, spawned on demand.
//!
//! The decisions themselves are [`crate::policy`]'s.

pub mod applier;
pub mod control;
pub mod early_claim;
pub mod host_watch;
pub mod metrics;
pub mod sentinels;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::access::Access;
use crate::config::{Config, HostPort, SentinelAddr};
use crate::control::{DaemonStatus, MasterStatus, Reply, Request, SentinelStatus};
use crate::error::{Failure, Outcome};
use crate::local_redis::{self, Role};
use crate::network::defend::{self, Conflict, Held};
use crate::network::host::HostState;
use crate::network::netlink::grant_hint;
use crate::policy::{self, Act, Decision, Early, Locality, Reason, Report, RoleSeen, Weighed};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::record::{self, Actor, Record};
use crate::resolve::{self, LookupError};
use crate::sentinel::{Answer, events};

use applier::{Applied, Job};
use metrics::Metrics;

/// What reaches the loop.
pub enum Signal {
    /// A sentinel answered about the masters it serves.
    Answers {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// Its answer per master.
        answers: Vec<(String, Answer)>,
        /// When the answer arrived.
        at: Instant,
    },
    /// A sentinel could not be asked (connection refused or lost, no answer in time).
    Unreachable {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// Why.
        why: String,
    },
    /// A sentinel published an event that may matter.
    Event {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// The event.
        event: events::Event,
    },
    /// An event subscription is up.
    Following(SentinelAddr),
    /// An event subscription went down.
    EventsLost(SentinelAddr, String),
    /// This host's addresses (or why they could not be read).
    Host(Result<HostState, String>),
    /// A name lookup finished.
    Resolved {
        /// The name.
        name: String,
        /// Its addresses, or why not.
        result: Result<Vec<IpAddr>, LookupError>,
    },
    /// The local Redis answered `ROLE` (or failed to).
    Role {
        /// The master it serves.
        master: String,
        /// What it said.
        seen: RoleSeen,
    },
    /// Early claim: the local replica the leader selected now reports role:master.
    Promoted {
        /// The master.
        master: String,
        /// The replica.
        replica: HostPort,
        /// How many polls it took.
        polls: u32,
    },
    /// Early claim: the replica did not become master within the window.
    EarlyGaveUp {
        /// The master.
        master: String,
    },
    /// A decision was carried out (or failed).
    Applied(Box<Applied>),
    /// Another host claimed one of our VIPs.
    Conflict(Conflict),
}

/// How old a local `ROLE` answer may be and still count.
const ROLE_FRESH_FOR: Duration = Duration::from_millis(250);
/// `ROLE` probes under way at once.
const ROLE_PROBES_AT_ONCE: usize = 8;
/// How long a `ROLE` probe may take.
const ROLE_TIMEOUT: Duration = Duration::from_millis(300);
/// A sentinel's answer still explains a decision this long after an event.
const EVENT_ECHO: Duration = Duration::from_secs(2);

/// What a decision about one master rests on.
struct Now {
    master: crate::config::Master,
    weighed: Weighed,
    locality: Locality,
    host: Arc<HostState>,
    at: Instant,
}

impl Now {
    fn facts<'a>(
        &'a self,
        managed: &'a [IpAddr],
        role: Option<&'a RoleSeen>,
        settings: policy::Settings,
        started: Instant,
    ) -> policy::Facts<'a> {
        policy::Facts {
            master: &self.master,
            weighed: &self.weighed,
            locality: self.locality.clone(),
            host: &self.host,
            managed,
            role,
            settings,
            started,
            now: self.at,
        }
    }
}

/// One sentinel's latest answers, for every master it serves.
struct SentinelSlot {
    answers: HashMap<String, Answer>,
    at: Option<Instant>,
    down: Option<String>,
    handle: sentinels::Handle,
}

/// A delegated hook waiting for fresh answers before the daemon decides and replies.
struct HookWait {
    reply: oneshot::Sender<Reply>,
    pending: BTreeSet<SentinelAddr>,
    enough_when_left: usize,
    deadline: Instant,
    trigger: String,
}

/// What the daemon knows about one master.
#[derive(Default)]
struct MasterState {
    memory: policy::Memory,
    role: Option<RoleSeen>,
    role_asking: bool,
    pending_conflict: Option<Conflict>,
    early_task: Option<AbortHandle>,
    belief: Option<Reason>,
    weighed: Option<Weighed>,
    holding: bool,
    in_flight: Option<Act>,
    last_change: Option<Record>,
    transitions: u64,
    conflicts: u64,
    last_error: Option<String>,
    last_event: Option<(String, Instant)>,
    /// Delegated hooks waiting for the change under way, with what they asked.
    waiters: Vec<(oneshot::Sender<Reply>, String)>,
    /// What made the loop ask the local Redis for its role: the decision that follows the answer
    /// owes its cause to it.
    role_trigger: Option<String>,
    hook_waits: Vec<HookWait>,
}

struct Daemon {
    config: Arc<Config>,
    managed: Vec<IpAddr>,
    settings: policy::Settings,
    fresh_for: Duration,
    sentinels: BTreeMap<SentinelAddr, SentinelSlot>,
    masters: BTreeMap<String, MasterState>,
    host: Option<Arc<HostState>>,
    names: resolve::Cache,
    tx: mpsc::Sender<Signal>,
    jobs: mpsc::UnboundedSender<Job>,
    held: Arc<Mutex<Vec<Held>>>,
    metrics: Arc<Metrics>,
    redis_access: Access,
    role_probes: mpsc::UnboundedSender<(String, HostPort)>,
    allowed_uids: BTreeSet<u32>,
    started: Instant,
    started_wall: SystemTime,
    dry_run: bool,
    wake_at: Option<Instant>,
    host_error: Option<String>,
}

/// Keeps the daemon's resident memory near what it uses: a round of answers for many masters
/// allocates large buffers briefly, and glibc would otherwise keep the high-water mark.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// How `vipctl watch` was started, besides its config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--sentinel`: replaces every master's sentinel list.
    pub sentinels: Vec<String>,
    /// `--release-on-exit`.
    pub release_on_exit: bool,
    /// `--dry-run`: decide and say, change nothing.
    pub dry_run: bool,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut config: Config, opts: Options) -> Outcome<()> {
    tune_malloc();
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
    if !opts.dry_run {
        let caps = Caps::current();
        for (cap, name) in [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_NET_RAW, "CAP_NET_RAW")] {
            if !caps.has(cap) {
                return Err(Failure::permanent(anyhow!("vipctl watch needs {name}: {}", grant_hint())));
            }
        }
    }
    let config = Arc::new(config);

    let (tx, mut rx) = mpsc::channel::<Signal>(4096);
    // Control requests queue apart from events, and boundedly: a flood of clients can make
    // `status` wait, never the decisions.
    let (control_tx, mut control_rx) = mpsc::channel::<control::ControlRequest>(32);
    let listener = control::bind(&config.watch.socket)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::getuid() };
    let mut allowed_uids: BTreeSet<u32> = [0, own_uid].into();
    for u in &config.watch.hook_users {
        match crate::privilege::uid_of(u) {
            Some(uid) => {
                allowed_uids.insert(uid);
            }
            None => tracing::warn!("[watch] hook_users: no user `{u}` on this host; ignored"),
        }
    }

    let held = Arc::new(Mutex::new(Vec::new()));
    if config.watch.defend && !opts.dry_run {
        let tx = tx.clone();
        if let Err(e) = defend::spawn(held.clone(), move |c| tx.blocking_send(Signal::Conflict(c)).is_ok()) {
            tracing::warn!("cannot watch for VIP conflicts: {e}; continuing without defence");
        }
    }
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = config.watch.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::permanent(anyhow!("cannot serve metrics on {addr}: {e}; fix [watch] metrics_listen"))
        })?;
        // Healthy while the loop handles address rounds; three missed rounds (plus slack) is not.
        let stale = config.watch.reconcile_interval * 3 + Duration::from_secs(2);
        tokio::spawn(metrics::serve(l, metrics.clone(), stale));
    }
    tokio::spawn(control::serve(listener, control_tx, allowed_uids.clone()));

    let access = Access::sentinels(&config)?;
    let redis_access = Access::redis(&config)?;
    let timing = sentinels::Timing { probe: config.watch.reconcile_interval, timeout: config.sentinel_timeout };
    let mut served: BTreeMap<SentinelAddr, Vec<String>> = BTreeMap::new();
    for m in config.masters.values() {
        for s in &m.sentinels {
            served.entry(s.clone()).or_default().push(m.name.clone());
        }
    }
    let slots = served
        .into_iter()
        .map(|(s, masters)| {
            let handle = sentinels::spawn(s.clone(), masters, access.clone(), timing, tx.clone());
            (s, SentinelSlot { answers: HashMap::new(), at: None, down: None, handle })
        })
        .collect();
    host_watch::spawn(config.watch.reconcile_interval, tx.clone());
    let lock_dir = config.lock_dir.clone().unwrap_or_else(crate::lock::default_dir);
    // Opened once at start: announcing must not depend on a free file descriptor later.
    let socket = if opts.dry_run {
        None
    } else {
        match crate::network::announce::PacketSocket::open() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                return Err(Failure::permanent(anyhow!(
                    "cannot open a packet socket: {e}; {}",
                    crate::network::apply::packet_socket_hint(&e)
                )));
            }
        }
    };
    let jobs = applier::spawn(config.clone(), lock_dir, socket, metrics.clone(), tx.clone());

    let mut d = Daemon {
        managed: config.managed(),
        settings: policy::Settings {
            minority_timeout: config.watch.minority_timeout,
            minority_default: crate::config::DEFAULT_MINORITY_TIMEOUT,
            announce_refresh: config.watch.announce_refresh,
            role_fresh_for: ROLE_FRESH_FOR,
        },
        fresh_for: config.watch.reconcile_interval + config.sentinel_timeout,
        sentinels: slots,
        masters: config.masters.keys().map(|k| (k.clone(), MasterState::default())).collect(),
        host: None,
        names: resolve::Cache::default(),
        tx: tx.clone(),
        jobs,
        held,
        metrics,
        role_probes: spawn_role_prober(redis_access.clone(), tx.clone()),
        redis_access,
        allowed_uids,
        started: Instant::now(),
        started_wall: SystemTime::now(),
        dry_run: opts.dry_run,
        wake_at: None,
        host_error: None,
        config,
    };
    let started = format!(
        "watch started: masters={} socket={} reconcile_ms={} minority_timeout_ms={} release_on_exit={}",
        d.masters.keys().cloned().collect::<Vec<_>>().join(","),
        d.config.watch.socket.display(),
        d.config.watch.reconcile_interval.as_millis(),
        d.config
            .watch
            .minority_timeout
            .map_or("auto (down-after-milliseconds)".to_string(), |t| t.as_millis().to_string()),
        d.config.watch.release_on_exit
    );
    Record::note(record::Event::Start, Actor::Watch, "", "start", started).emit();
    // Under systemd (Type=notify): ready now; alive for as long as address rounds are handled.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // Petted from the loop itself, three times per watchdog period: a loop that stops turning is
    // killed and restarted, whatever the reconcile period.
    let mut watchdog =
        sd_notify::watchdog_enabled().map(|p| tokio::time::interval((p / 3).max(Duration::from_millis(100))));

    use tokio::signal::unix::{SignalKind, signal};
    let sig =
        |k: SignalKind, name: &str| signal(k).map_err(|e| Failure::transient(anyhow!("cannot handle {name}: {e}")));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate(), "SIGTERM")?,
        sig(SignalKind::interrupt(), "SIGINT")?,
        sig(SignalKind::hangup(), "SIGHUP")?,
    );
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let wake = d.wake_at.map_or_else(far, tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!(
                "SIGHUP: vipctl watch does not reload its config; keeping the running one (restart the service to apply a change)"
            ),
            Some(sig) = rx.recv() => d.handle(sig),
            Some((req, uid, reply)) = control_rx.recv() => d.control(req, uid, reply),
            _ = tokio::time::sleep_until(wake) => {
                d.wake_at = None;
                d.decide_all("timer");
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if d.config.watch.release_on_exit && !opts.dry_run {
        d.release_all(&mut rx).await;
    }
    let _ = std::fs::remove_file(&d.config.watch.socket);
    let left = if d.config.watch.release_on_exit { "released" } else { "left in place" };
    Record::note(record::Event::Stop, Actor::Watch, "", "stop", format!("watch stopped; VIPs {left}")).emit();
    Ok(())
}

/// Starts the task that asks local Redis instances for their role, a few at a time (at start every
/// master may want one, each a connection), and reports each answer to the loop.
fn spawn_role_prober(access: Access, tx: mpsc::Sender<Signal>) -> mpsc::UnboundedSender<(String, HostPort)> {
    use futures::StreamExt;
    let (probes_tx, probes) = mpsc::unbounded_channel::<(String, HostPort)>();
    let stream = tokio_stream_from(probes)
        .map(move |(master, addr)| {
            let access = access.clone();
            async move {
                let role = local_redis::ask(&addr, &access, ROLE_TIMEOUT).await;
                Signal::Role { master, seen: RoleSeen { addr, role, at: Instant::now() } }
            }
        })
        .buffer_unordered(ROLE_PROBES_AT_ONCE);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(sig) = stream.next().await {
            if tx.send(sig).await.is_err() {
                return;
            }
        }
    });
    probes_tx
}

/// An unbounded receiver as a stream.
fn tokio_stream_from<T>(mut rx: mpsc::UnboundedReceiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Daemon {
    fn handle(&mut self, sig: Signal) {
        match sig {
            Signal::Answers { sentinel, answers, at } => {
                let Some(slot) = self.sentinels.get_mut(&sentinel) else { return };
                if let Some(why) = slot.down.take() {
                    tracing::info!("sentinel {sentinel} answers again (was: {why})");
                }
                slot.answers = answers.into_iter().collect();
                slot.at = Some(at);
                self.sentinel_reported(&sentinel);
            }
            Signal::Unreachable { sentinel, why } => {
                let Some(slot) = self.sentinels.get_mut(&sentinel) else { return };
                if slot.down.is_none() {
                    tracing::warn!("sentinel {sentinel} unreachable: {why}");
                }
                slot.down = Some(why);
                self.sentinel_reported(&sentinel);
            }
            Signal::Event { sentinel, event } => self.event(&sentinel, event),
            Signal::Following(s) => {
                tracing::info!("following the events of sentinel {s}");
                if let Some(slot) = self.sentinels.get(&s) {
                    slot.handle.nudge.notify_one();
                }
            }
            Signal::EventsLost(s, why) => tracing::warn!("lost the events of sentinel {s}: {why}; reconnecting"),
            Signal::Host(Ok(host)) => {
                if self.host_error.take().is_some() {
                    tracing::info!("reading this host's addresses works again");
                }
                self.host_seen(host);
                self.metrics.tick();

                self.decide_all("address round");
            }
            Signal::Host(Err(e)) => {
                if self.host_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("cannot read this host's addresses: {e}; retrying");
                }
                self.host_error = Some(e);
            }
            Signal::Resolved { name, result } => {
                if let Err(e) = &result {
                    tracing::warn!("{e}");
                }
                self.names.put(&name, result, Instant::now());
                self.decide_all(&format!("name {name} resolved"));
            }
            Signal::Role { master, seen } => {
                let Some(st) = self.masters.get_mut(&master) else { return };
                st.role_asking = false;
                tracing::debug!("master `{master}`: the Redis at {} is {}", seen.addr, seen.role);
                st.role = Some(seen);
                let trigger = match st.role_trigger.take() {
                    Some(t) => format!("{t}; then the local Redis answered ROLE"),
                    None => "the local Redis answered ROLE".to_string(),
                };
                if let Some(c) = st.pending_conflict.take() {
                    self.answer_conflict(&master, c);
                }
                self.decide(&master, &trigger);
            }
            Signal::Promoted { master, replica, polls } => {
                let now = Instant::now();
                let Some(st) = self.masters.get_mut(&master) else { return };
                if !st.memory.early.promotion_counts(&replica) {
                    tracing::info!(
                        "early claim for `{master}`: {replica} reports role:master, but that watch has ended"
                    );
                    return;
                }
                st.early_task = None;
                let epoch = st.weighed.as_ref().map_or(0, Weighed::epoch);
                st.memory.early = Early::Claimed { replica: replica.clone(), until: now + policy::EARLY_GRACE, epoch };
                st.role = Some(RoleSeen { addr: replica.clone(), role: Role::Master, at: now });
                self.decide(&master, &format!("early claim: {replica} reports role:master after {polls} polls"));
            }
            Signal::EarlyGaveUp { master } => {
                let Some(st) = self.masters.get_mut(&master) else { return };
                st.early_task = None;
                if matches!(st.memory.early, Early::Watching { .. }) {
                    st.memory.early = Early::Idle;
                    tracing::info!(
                        "early claim for `{master}`: the selected replica did not report role:master in time"
                    );
                }
            }
            Signal::Applied(a) => self.applied(*a),
            Signal::Conflict(c) => self.conflict(c),
        }
    }

    /// A sentinel answered or failed: decide for the masters it serves, and let waiting hooks go.
    fn sentinel_reported(&mut self, sentinel: &SentinelAddr) {
        let names: Vec<String> =
            self.config.masters.values().filter(|m| m.sentinels.contains(sentinel)).map(|m| m.name.clone()).collect();
        let now = Instant::now();
        for name in names {
            let trigger = match &self.masters[&name].last_event {
                Some((ev, at)) if now.saturating_duration_since(*at) < EVENT_ECHO => {
                    format!("{ev}; answer from sentinel {sentinel}")
                }
                _ => format!("answer from sentinel {sentinel}"),
            };
            self.decide(&name, &trigger);
            let st = self.masters.get_mut(&name).expect("configured");
            for w in &mut st.hook_waits {
                w.pending.remove(sentinel);
            }
            self.finish_hook_waits(&name);
        }
    }

    fn event(&mut self, sentinel: &SentinelAddr, event: events::Event) {
        tracing::debug!("event {} from sentinel {sentinel} about {:?} {:?}", event.kind, event.master, event.instance);
        // Every sentinel is asked again at once: fresh answers follow within a round trip.
        for slot in self.sentinels.values() {
            slot.handle.nudge.notify_one();
        }
        let targets: Vec<String> = match &event.master {
            Some(m) if self.masters.contains_key(m) => vec![m.clone()],
            Some(_) => return,
            None => self.masters.keys().cloned().collect(),
        };
        let what = format!("event {} from sentinel {sentinel}", event.kind);
        for m in &targets {
            self.observe(m, &event);
            if let Some(st) = self.masters.get_mut(m) {
                st.last_event = Some((what.clone(), Instant::now()));
            }
            self.decide(m, &what);
        }
    }

    /// What an event tells about a failover in progress: early claim, and whether the leader chose
    /// another host's replica.
    fn observe(&mut self, name: &str, event: &events::Event) {
        let kind = event.kind.as_str();
        let now = Instant::now();
        if kind.starts_with("-failover-abort") {
            let st = self.masters.get_mut(name).expect("configured");
            if let Some(h) = st.early_task.take() {
                h.abort();
            }
            // The failover is off: an early claim must not hold out any longer.
            st.memory.early = Early::Idle;
            st.memory.failover_elsewhere = None;
            if let Some(fence) = st.memory.fence.take() {
                let why = format!("the failover aborted ({kind})");
                let reason = Reason::LiftFence { redis: fence.redis.to_string(), why };
                self.redis_steps(name, fence.redis, reason, vec![local_redis::unpause()], false);
            }
            return;
        }
        if matches!(kind, "+failover-end" | "+failover-end-for-timeout" | "+switch-master") {
            self.masters.get_mut(name).expect("configured").memory.failover_elsewhere = None;
            return;
        }
        let chosen = matches!(kind, "+selected-slave" | "+failover-state-wait-promotion" | "+promoted-slave");
        let Some((ip, port)) = event.instance.clone().filter(|_| chosen) else { return };
        let replica = HostPort { host: ip, port };
        match self.locality(&replica.host, now) {
            Locality::Here => {
                let early = self.config.watch.early_claim && !self.dry_run && kind != "+promoted-slave";
                let st = self.masters.get_mut(name).expect("configured");
                st.memory.failover_elsewhere = None;
                if early && st.memory.early == Early::Idle {
                    tracing::info!(
                        "early claim for `{name}`: the leader selected this host's replica {replica}; watching it"
                    );
                    st.memory.early = Early::Watching { replica: replica.clone() };
                    let task = tokio::spawn(early_claim::watch(
                        name.to_string(),
                        replica,
                        self.redis_access.clone(),
                        self.tx.clone(),
                    ));
                    st.early_task = Some(task.abort_handle());
                }
            }
            Locality::Elsewhere => {
                self.masters.get_mut(name).expect("configured").memory.failover_elsewhere = Some(replica.clone());
                self.fence(name, replica);
            }
            Locality::Unknown(_) => {}
        }
    }

    /// Whether `host` names this host, from the name cache; starts a lookup when one is due.
    fn locality(&mut self, host: &str, now: Instant) -> Locality {
        if self.names.start_lookup(host, now) {
            let (name, tx) = (host.to_string(), self.tx.clone());
            tokio::spawn(async move {
                let result = resolve::resolve(&name, resolve::TIMEOUT).await;
                let _ = tx.send(Signal::Resolved { name, result }).await;
            });
        }
        let Some(state) = &self.host else { return Locality::Unknown("this host's addresses are not read yet".into()) };
        match self.names.get(host) {
            Some(Ok(ips)) => policy::locality(host, &ips, state, &self.managed),
            Some(Err(e)) => Locality::Unknown(e.to_string()),
            None => Locality::Unknown(format!("looking up {host}")),
        }
    }

    /// The latest answers about `master`, one per configured sentinel.
    fn reports(&self, master: &crate::config::Master, now: Instant) -> Vec<Report> {
        master
            .sentinels
            .iter()
            .map(|s| {
                let slot = self.sentinels.get(s);
                Report {
                    sentinel: s.clone(),
                    last: slot.and_then(|slot| {
                        let a = slot.answers.get(&master.name)?;
                        Some((a.clone(), now.saturating_duration_since(slot.at?)))
                    }),
                    down: slot.and_then(|slot| slot.down.clone()),
                }
            })
            .collect()
    }

    fn host_seen(&mut self, host: HostState) {
        // Held VIPs come from what is bound now, never from what was last applied: a restarted
        // daemon defends at once, and a VIP removed by hand is no longer defended.
        // Routed VIPs are not on a shared link: a claim there is the router's business.
        let held: Vec<Held> = self
            .config
            .masters
            .values()
            .filter(|m| m.mode == crate::config::Mode::L2)
            .flat_map(|m| m.vips.iter())
            .filter(|v| host.bound(v.addr).next().is_some())
            .map(|v| Held { vip: v.addr })
            .collect();
        if let Ok(mut h) = self.held.lock() {
            *h = held;
        }
        for (name, st) in &mut self.masters {
            let master = &self.config.masters[name];
            st.holding = master.vips.iter().any(|v| host.bound(v.addr).next().is_some());
            for vip in &master.vips {
                let bound = host.bound(vip.addr).next().is_some();
                self.metrics.vip_bound.get_or_create(&Metrics::vip(name, &vip.to_string())).set(i64::from(bound));
            }
        }
        self.host = Some(Arc::new(host));
    }

    fn decide_all(&mut self, trigger: &str) {
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in &names {
            self.decide(name, trigger);
            self.finish_hook_waits(name);
        }
    }

    /// What a decision about `name` rests on, as the loop knows it now; `None` before the first
    /// address dump.
    fn now_for(&mut self, name: &str) -> Option<Now> {
        let master = self.config.masters.get(name)?.clone();
        let host = self.host.clone()?;
        let at = Instant::now();
        let weighed = policy::weigh(&self.reports(&master, at), self.fresh_for);
        let locality = match weighed.master() {
            Some(addr) => self.locality(&addr.host.clone(), at),
            None => Locality::Unknown("no master named".into()),
        };
        Some(Now { master, weighed, locality, host, at })
    }

    /// One decision for one master, on what is known now. Never waits.
    fn decide(&mut self, name: &str, trigger: &str) {
        let Some(n) = self.now_for(name) else { return };
        let (weighed, now) = (&n.weighed, n.at);
        self.metrics.sentinels_reachable.get_or_create(&Metrics::master(name)).set(weighed.answered as i64);
        self.metrics.sentinels_configured.get_or_create(&Metrics::master(name)).set(weighed.configured as i64);
        let st = self.masters.get_mut(name).expect("configured");
        let facts = n.facts(&self.managed, st.role.as_ref(), self.settings, self.started);
        let decision = policy::daemon(&facts, &mut st.memory);
        if let Some((redis, to)) = policy::demote(&facts, &st.memory) {
            st.memory.fence = None;
            let reason = Reason::Demote { redis: redis.to_string(), to: to.to_string() };
            // Replica first, then resume: the paused writes then meet READONLY, never an ack.
            let steps = vec![local_redis::replicaof(&to), local_redis::unpause()];
            self.redis_steps(name, redis, reason, steps, false);
        } else if st.memory.fence.as_ref().is_some_and(|f| now >= f.until) {
            tracing::warn!("master `{name}`: the write pause ran out before the sentinels agreed on a new master");
            st.memory.fence = None;
        }
        let st = self.masters.get_mut(name).expect("configured");
        // Log a change of belief, not every round of the same one.
        if st.belief.as_ref().map(Reason::code) != Some(decision.reason.code()) {
            tracing::info!("master `{name}`: {} ({})", decision.reason, weighed.summary());
        }
        match &decision.reason {
            Reason::MinorityHolding { waited_ms, timeout_ms, .. } => {
                self.wake(now + Duration::from_millis(timeout_ms.saturating_sub(*waited_ms)));
            }
            Reason::EarlyClaimPending { left_ms, .. } => self.wake(now + Duration::from_millis(*left_ms)),
            _ => {}
        }
        let st = self.masters.get_mut(name).expect("configured");
        st.belief = Some(decision.reason.clone());
        let sentinels = weighed.summary();
        st.weighed = Some(weighed.clone());
        match decision.act {
            Act::Hold | Act::Release | Act::Announce => {
                self.dispatch(name, decision, trigger, record::Event::Decision, None, Some(sentinels));
            }
            Act::AskRole(addr) => {
                let st = self.masters.get_mut(name).expect("configured");
                st.role_trigger.get_or_insert_with(|| trigger.to_string());
                self.ask_role(name, addr);
            }
            Act::Nothing => {}
        }
    }

    /// The leader chose `replica`, another host's: pause this host's Redis if it is the master.
    fn fence(&mut self, name: &str, replica: HostPort) {
        let Some(n) = self.now_for(name) else { return };
        let st = self.masters.get_mut(name).expect("configured");
        let facts = n.facts(&self.managed, st.role.as_ref(), self.settings, self.started);
        let Some(redis) = policy::fence(&facts, &st.memory, &Locality::Elsewhere) else { return };
        st.memory.fence =
            Some(policy::Fence { redis: redis.clone(), toward: replica.clone(), until: n.at + policy::FENCE_BOUND });
        let reason = Reason::FenceWrites { redis: redis.to_string(), toward: replica.to_string() };
        let bound = policy::FENCE_BOUND;
        self.redis_steps(name, redis, reason, vec![local_redis::pause_writes(bound)], true);
    }

    /// Sends `steps` to the local Redis at `redis` on one connection, off the loop, and records
    /// the outcome. A Redis that is gone (nothing listens) is left alone: it takes no writes, and
    /// Sentinel makes it a replica when it returns. With `only_if_master`, so is a replica (there
    /// is nothing to pause).
    fn redis_steps(&self, name: &str, redis: HostPort, reason: Reason, steps: Vec<redis::Cmd>, only_if_master: bool) {
        let (access, master) = (self.redis_access.clone(), name.to_string());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut record = Record::new(record::Event::Fence, Actor::Watch, &master, record::Change::None, &reason);
            match local_redis::steps(&redis, &access, &steps, only_if_master, ROLE_TIMEOUT * 3).await {
                Ok(local_redis::Steps::Sent) => {}
                Ok(local_redis::Steps::Skipped(role)) => {
                    tracing::info!("master `{master}`: {redis} is {role}: nothing to do for \"{reason}\"");
                    return;
                }
                Err(e) => record = record.failed(anyhow::Error::new(e)),
            }
            record.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
            record.emit();
        });
    }

    fn wake(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Hands a decision to the applier, unless the same one is already under way.
    fn dispatch(
        &mut self,
        name: &str,
        d: Decision,
        trigger: &str,
        event: record::Event,
        detail: Option<String>,
        sentinels: Option<String>,
    ) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.in_flight.as_ref() == Some(&d.act) {
            return;
        }
        if self.dry_run {
            if st.belief.as_ref() != Some(&d.reason) || st.in_flight.is_none() {
                tracing::info!("dry run: would {:?} `{name}`: {}", d.act, d.reason);
            }
            return;
        }
        st.in_flight = Some(d.act.clone());
        let job = Job {
            master: name.to_string(),
            act: d.act,
            reason: d.reason,
            trigger: trigger.to_string(),
            sentinels,
            event,
            detail,
        };
        let _ = self.jobs.send(job);
    }

    fn ask_role(&mut self, name: &str, addr: HostPort) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.role_asking {
            return;
        }
        st.role_asking = true;
        let _ = self.role_probes.send((name.to_string(), addr));
    }

    fn applied(&mut self, a: Applied) {
        let name = a.job.master.clone();
        let Some(st) = self.masters.get_mut(&name) else { return };
        if st.in_flight.as_ref() == Some(&a.job.act) {
            st.in_flight = None;
        }
        if a.record.frames > 0 {
            st.memory.last_announce = Some(Instant::now());
        }
        if a.changed {
            st.transitions += 1;
            st.last_change = Some(a.record.clone());
        }
        st.last_error = a.record.error.clone();
        let waiters: Vec<_> = st.waiters.drain(..).collect();
        for (reply, trigger) in waiters {
            self.answer_hook(&name, reply, trigger);
        }
    }

    /// Replies to a delegated hook with the daemon's belief, and records that it did.
    fn answer_hook(&self, name: &str, reply: oneshot::Sender<Reply>, trigger: String) {
        let st = &self.masters[name];
        let status = u8::from(st.last_error.is_some());
        let message = self.belief_line(name);
        let mut r = match &st.belief {
            Some(reason) => Record::new(record::Event::Hook, Actor::Watch, name, record::Change::None, reason),
            None => Record::note(record::Event::Hook, Actor::Watch, name, "none", "no decision yet"),
        };
        r.trigger = Some(trigger);
        r.detail = Some(message.clone());
        r.exit = Some(status);
        r.emit();
        let _ = reply.send(Reply::new(status, message));
    }

    fn belief_line(&self, name: &str) -> String {
        let st = &self.masters[name];
        let belief = st.belief.as_ref().map_or("no decision yet".to_string(), ToString::to_string);
        let held = if st.holding { "held" } else { "not held" };
        match &st.last_error {
            Some(e) => format!("daemon could not reconcile `{name}`: {e}"),
            None => format!("daemon reconciled `{name}`: {belief}; VIPs {held} here"),
        }
    }

    fn conflict(&mut self, c: Conflict) {
        let Some(name) =
            self.config.masters.values().find(|m| m.vips.iter().any(|v| v.addr == c.vip)).map(|m| m.name.clone())
        else {
            return;
        };
        // A frame from one of this host's own interfaces (a bond, a second NIC on the segment) is no conflict.
        if self.host.as_ref().is_some_and(|h| h.interfaces.iter().any(|i| i.mac == Some(c.mac))) {
            return;
        }
        let st = self.masters.get_mut(&name).expect("configured");
        if !st.holding {
            return;
        }
        st.conflicts += 1;
        self.metrics.conflicts.get_or_create(&Metrics::master(&name)).inc();
        self.answer_conflict(&name, c);
    }

    fn answer_conflict(&mut self, name: &str, c: Conflict) {
        let Some(n) = self.now_for(name) else { return };
        let weighed = &n.weighed;
        let st = self.masters.get_mut(name).expect("configured");
        let facts = n.facts(&self.managed, st.role.as_ref(), self.settings, self.started);
        let claimant = defend::mac_string(&c.mac);
        let decision = policy::conflict(&facts, &st.memory, &claimant);
        let detail = Some(format!("{} claimed by {claimant} on {} (conflict #{})", c.vip, c.ifname, st.conflicts));
        match decision.act {
            Act::AskRole(addr) => {
                st.pending_conflict = Some(c);
                self.ask_role(name, addr);
            }
            Act::Nothing => {}
            _ => {
                // A defence re-announces even when a claim is under way: the claimant must be answered now.
                if decision.act == Act::Announce {
                    st.in_flight = None;
                }
                let sentinels = Some(weighed.summary());
                self.dispatch(name, decision, "conflict", record::Event::Conflict, detail, sentinels);
            }
        }
    }

    fn control(&mut self, req: Request, uid: u32, reply: oneshot::Sender<Reply>) {
        match req {
            Request::Status => {
                let _ = reply.send(Reply { status: 0, message: "ok".into(), state: Some(self.status()) });
            }
            Request::Hook { .. } if !self.allowed_uids.contains(&uid) => {
                let _ = reply.send(Reply::new(
                    2,
                    format!(
                        "uid {uid} may not hand hooks to this daemon: add the user to [watch] hook_users in the config"
                    ),
                ));
            }
            Request::Hook { master, args } => {
                let Some(m) = self.config.masters.get(&master) else {
                    let _ = reply.send(Reply::new(
                        2,
                        format!(
                            "master `{master}` is not in config {}; add a [masters.{master}] table or fix the name in sentinel.conf",
                            self.config.path.display()
                        ),
                    ));
                    return;
                };
                // Ask every sentinel again, and decide once a majority has answered (or failed):
                // the hook's call means the sentinels' view just changed.
                let pending: BTreeSet<SentinelAddr> = m.sentinels.iter().cloned().collect();
                let enough_when_left = m.sentinels.len() - (m.sentinels.len() / 2 + 1);
                for s in &pending {
                    if let Some(slot) = self.sentinels.get(s) {
                        slot.handle.nudge.notify_one();
                    }
                }
                let deadline = Instant::now() + self.config.sentinel_timeout * 2;
                self.wake(deadline);
                let trigger = format!("hook from uid {uid} args={args:?}");
                let st = self.masters.get_mut(&master).expect("configured");
                st.hook_waits.push(HookWait { reply, pending, enough_when_left, deadline, trigger });
            }
        }
    }

    /// Decides for the hooks whose fresh answers are in (or whose time is up), and replies once
    /// the decision is carried out.
    fn finish_hook_waits(&mut self, name: &str) {
        let now = Instant::now();
        let st = self.masters.get_mut(name).expect("configured");
        let (done, keep): (Vec<HookWait>, Vec<HookWait>) =
            st.hook_waits.drain(..).partition(|w| w.pending.len() <= w.enough_when_left || now >= w.deadline);
        st.hook_waits = keep;
        for w in done {
            self.decide(name, &w.trigger);
            let st = self.masters.get_mut(name).expect("configured");
            if st.in_flight.is_some() {
                st.waiters.push((w.reply, w.trigger));
            } else {
                self.answer_hook(name, w.reply, w.trigger);
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        let now = Instant::now();
        let masters = self
            .masters
            .iter()
            .map(|(name, st)| {
                let master = &self.config.masters[name];
                let reports = self.reports(master, now);
                let weighed = st.weighed.as_ref();
                MasterStatus {
                    name: name.clone(),
                    holding: st.holding,
                    belief: st.belief.as_ref().map_or("no decision yet".into(), ToString::to_string),
                    belief_code: st.belief.as_ref().map_or("none", Reason::code).to_string(),
                    summary: weighed.map(Weighed::summary),
                    sentinels: reports.iter().map(SentinelStatus::of).collect(),
                    minority_for_ms: weighed
                        .filter(|w| !w.majority())
                        .map(|w| w.minority_for(now - self.started).as_millis() as u64),
                    minority_timeout_ms: weighed
                        .map_or(self.settings.minority_default, |w| self.settings.minority_timeout(w))
                        .as_millis() as u64,
                    last_change: st.last_change.clone(),
                    transitions: st.transitions,
                    conflicts: st.conflicts,
                    last_error: st.last_error.clone(),
                }
            })
            .collect();
        DaemonStatus {
            pid: std::process::id(),
            started: humantime::format_rfc3339_millis(self.started_wall).to_string(),
            masters,
        }
    }

    /// Releases every master's VIPs and waits (bounded) for the applier to finish.
    async fn release_all(&mut self, rx: &mut mpsc::Receiver<Signal>) {
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in &names {
            let st = self.masters.get_mut(name).expect("configured");
            st.in_flight = None;
            let d = Decision { act: Act::Release, reason: Reason::Stopping };
            self.dispatch(name, d, "SIGTERM", record::Event::Decision, None, None);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.masters.values().any(|s| s.in_flight.is_some()) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Signal::Applied(a))) => self.applied(*a),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
