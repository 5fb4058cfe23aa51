//! `vipctl watch`, the long-running companion: it keeps each master's VIPs bound here exactly when
//! this host runs the master, steps down on the minority side of a partition, fences its Redis
//! during a failover toward another host, defends held VIPs against other claimants, and serves
//! hooks that lack privileges.
//!
//! [`core`] decides; this module is the thin I/O loop around it. Everything that talks to the
//! world runs beside the loop and reports back as a [`core::Input`]; the loop hands each input to
//! the core with the time it arrived and carries out the [`core::Effect`]s it answers with:
//! - [`sentinels`]: one task per sentinel keeps a live view (questions, replica lists, events);
//! - [`host_watch`]: this host's addresses, one dump per period;
//! - [`applier`]: carries out decisions (locks, netlink, announcements, notify commands);
//! - [`redis_watch`]: polls a chosen replica, watches the local master;
//! - [`failover_ask`]: fail-fast's `SENTINEL FAILOVER`, TILT checked first;
//! - [`control`]: the control socket; [`metrics`]: Prometheus and /healthz;
//! - the conflict watcher ([`crate::network::defend`]), a thread on packet sockets;
//! - name lookups, `ROLE` probes and fence steps, spawned on demand.

pub mod applier;
pub mod cloud_calls;
pub mod control;
pub mod core;
pub mod failover_ask;
pub mod host_watch;
pub mod metrics;
pub mod redis_watch;
pub mod sentinels;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::access::Access;
use crate::config::{Config, HostPort, SentinelAddr};
use crate::control::{Reply, Request};
use crate::error::{Failure, Outcome};
use crate::fence::{self, Step};
use crate::local_redis;
use crate::network::defend::{self, Held};
use crate::network::host::HostState;
use crate::network::netlink::grant_hint;
use crate::policy::{self, Reason, RoleSeen};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::record::{self, Actor, Record};

use self::core::{Core, Effect, Input, Metric};
use metrics::Metrics;

/// `ROLE` probes under way at once.
const ROLE_PROBES_AT_ONCE: usize = 8;
/// How long a `ROLE` probe may take.
const ROLE_TIMEOUT: Duration = Duration::from_millis(300);

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

/// The I/O side of the daemon: the core, and the handles its effects need.
struct Loop {
    core: Core,
    tx: mpsc::Sender<Input>,
    sentinels: BTreeMap<SentinelAddr, sentinels::Handle>,
    jobs: mpsc::UnboundedSender<core::Job>,
    role_probes: mpsc::UnboundedSender<(String, HostPort)>,
    redis_access: Access,
    sentinel_access: Access,
    metrics: Arc<Metrics>,
    held: Arc<Mutex<Vec<Held>>>,
    config: Arc<Config>,
    watches: HashMap<(String, HostPort), AbortHandle>,
    local_watches: HashMap<String, AbortHandle>,
    clouds: cloud_calls::Clouds,
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    next_token: u64,
    /// Per master, the queue of Redis steps: a fence and its lift reach Redis in the order decided.
    redis_queues: HashMap<String, mpsc::UnboundedSender<RedisJob>>,
}

/// Steps on a Redis for one master, with why.
struct RedisJob {
    redis: HostPort,
    reason: Reason,
    steps: Vec<Step>,
    only_if_master: bool,
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
    // Before any thread starts (capability sets are per thread): nothing the daemon starts may
    // inherit its two capabilities.
    if let Err(f) = crate::privilege::drop_inheritable() {
        tracing::warn!("{f}; notify commands are refused until it works");
    }
    let config = Arc::new(config);

    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    // Control requests queue apart from events, and boundedly: a flood of clients can make
    // `status` wait, never the decisions.
    let (control_tx, mut control_rx) = mpsc::channel::<control::ControlRequest>(32);
    let listener = control::bind(&config.watch.socket)?;
    let own_uid = nix::unistd::getuid().as_raw();
    let mut allowed_uids: BTreeSet<u32> = [0, own_uid].into();
    for u in hook_users(&config.watch) {
        match crate::privilege::uid_of(&u) {
            Some(uid) => {
                allowed_uids.insert(uid);
            }
            None => tracing::warn!("[watch] hook_users: no user `{u}` on this host; ignored"),
        }
    }

    let held = Arc::new(Mutex::new(Vec::new()));
    if config.watch.defend && !opts.dry_run {
        let tx = tx.clone();
        if let Err(e) = defend::spawn(held.clone(), move |c| tx.blocking_send(Input::Conflict(c)).is_ok()) {
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
    let timing = sentinels::Timing {
        probe: config.watch.reconcile_interval,
        timeout: config.sentinel_timeout,
        heartbeat: config.watch.heartbeat,
    };
    let mut served: BTreeMap<SentinelAddr, Vec<String>> = BTreeMap::new();
    for m in config.masters.values() {
        for s in &m.sentinels {
            served.entry(s.clone()).or_default().push(m.name.clone());
        }
    }
    let handles = served
        .into_iter()
        .map(|(s, masters)| {
            let handle = sentinels::spawn(s.clone(), masters, access.clone(), timing, tx.clone());
            (s, handle)
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

    let settings = core::Settings {
        policy: policy::Settings {
            minority_timeout: config.watch.minority_timeout,
            minority_default: crate::config::DEFAULT_MINORITY_TIMEOUT,
            announce_refresh: config.watch.announce_refresh,
            role_fresh_for: core::ROLE_FRESH_FOR,
        },
        fresh_for: config.watch.reconcile_interval + config.sentinel_timeout,
        hook_wait: config.sentinel_timeout * 2,
        early_claim: config.watch.early_claim,
        fail_fast: config.watch.fail_fast,
        dry_run: opts.dry_run,
    };
    let mut l = Loop {
        core: Core::new(config.clone(), settings, allowed_uids, Instant::now()),
        role_probes: spawn_role_prober(redis_access.clone(), tx.clone()),
        tx: tx.clone(),
        sentinels: handles,
        jobs,
        redis_access,
        sentinel_access: access.clone(),
        clouds: cloud_calls::Clouds::new(&config, tx.clone(), metrics.clone())
            .map_err(|e| Failure::permanent(anyhow!(e)))?,
        metrics,
        held,
        config: config.clone(),
        watches: HashMap::new(),
        local_watches: HashMap::new(),
        replies: HashMap::new(),
        next_token: 0,
        redis_queues: HashMap::new(),
    };
    let started = format!(
        "watch started: masters={} socket={} reconcile_ms={} minority_timeout_ms={} release_on_exit={}",
        config.masters.keys().cloned().collect::<Vec<_>>().join(","),
        config.watch.socket.display(),
        config.watch.reconcile_interval.as_millis(),
        config
            .watch
            .minority_timeout
            .map_or("auto (down-after-milliseconds)".to_string(), |t| t.as_millis().to_string()),
        config.watch.release_on_exit
    );
    Record::note(record::Event::Start, Actor::Watch, "", "start", started).emit();
    // Under systemd (Type=notify): ready now; alive for as long as the loop turns.
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
        let wake = l.core.poll_timeout().map_or_else(far, tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!(
                "SIGHUP: vipctl watch does not reload its config; keeping the running one (restart the service to apply a change)"
            ),
            Some(input) = rx.recv() => l.input(input),
            Some((req, uid, reply)) = control_rx.recv() => l.control(req, uid, reply),
            _ = tokio::time::sleep_until(wake) => {
                l.input(Input::Timeout);
                // A timer the core could not act on yet must never spin the loop.
                if l.core.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if config.watch.release_on_exit && !opts.dry_run {
        l.release_all(&mut rx).await;
    }
    let _ = std::fs::remove_file(&config.watch.socket);
    let left = if config.watch.release_on_exit { "released" } else { "left in place" };
    Record::note(record::Event::Stop, Actor::Watch, "", "stop", format!("watch stopped; VIPs {left}")).emit();
    Ok(())
}

impl Loop {
    /// Hands one input to the core and carries out what it answers.
    fn input(&mut self, input: Input) {
        if let Input::Host(Ok(host)) = &input {
            self.held_from(host);
        }
        self.core.handle(Instant::now(), input);
        self.carry_out();
    }

    fn control(&mut self, req: Request, uid: u32, reply: oneshot::Sender<Reply>) {
        match req {
            Request::Status => {
                let state = self.core.status(Instant::now());
                let _ = reply.send(Reply { status: 0, message: "ok".into(), state: Some(state) });
            }
            Request::Hook { master, args } => {
                self.next_token += 1;
                let token = self.next_token;
                self.replies.insert(token, reply);
                self.input(Input::Hook { token, uid, master, args });
            }
        }
    }

    fn carry_out(&mut self) {
        for effect in self.core.drain() {
            match effect {
                Effect::Apply(job) => {
                    let _ = self.jobs.send(*job);
                }
                Effect::AskRole { master, addr } => {
                    let _ = self.role_probes.send((master, addr));
                }
                Effect::Resolve(name) => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let result = crate::resolve::resolve(&name, crate::resolve::TIMEOUT).await;
                        let _ = tx.send(Input::Resolved { name, result }).await;
                    });
                }
                Effect::Nudge { sentinels, replicas } => {
                    for s in sentinels {
                        if let Some(h) = self.sentinels.get(&s) {
                            h.nudge(replicas);
                        }
                    }
                }
                Effect::Redis { master, redis, reason, steps, only_if_master } => {
                    self.redis_steps(master, redis, reason, steps, only_if_master);
                }
                Effect::Watch { master, replica } => {
                    let task = tokio::spawn(redis_watch::replica(
                        master.clone(),
                        replica.clone(),
                        self.redis_access.clone(),
                        self.tx.clone(),
                    ));
                    if let Some(old) = self.watches.insert((master, replica), task.abort_handle()) {
                        old.abort();
                    }
                }
                Effect::Unwatch { master, replica } => {
                    if let Some(h) = self.watches.remove(&(master, replica)) {
                        h.abort();
                    }
                }
                Effect::WatchLocal { master, redis } => {
                    let task = tokio::spawn(redis_watch::local(master.clone(), redis, self.tx.clone()));
                    if let Some(old) = self.local_watches.insert(master, task.abort_handle()) {
                        old.abort();
                    }
                }
                Effect::UnwatchLocal { master } => {
                    if let Some(h) = self.local_watches.remove(&master) {
                        h.abort();
                    }
                }
                Effect::AskFailover { master, sentinel } => {
                    let (access, tx, timeout) =
                        (self.sentinel_access.clone(), self.tx.clone(), self.config.sentinel_timeout);
                    tokio::spawn(async move {
                        let outcome = failover_ask::ask(&master, &sentinel, &access, timeout).await;
                        let _ = tx.send(Input::FailoverAsked { master, sentinel, outcome }).await;
                    });
                }
                Effect::Deliver { master, generation } => self.clouds.start(master, generation, false),
                Effect::CheckDelivery { master, generation } => self.clouds.start(master, generation, true),
                Effect::StopDelivery { master } => self.clouds.stop(&master),
                Effect::Reply { token, reply } => {
                    if let Some(r) = self.replies.remove(&token) {
                        let _ = r.send(reply);
                    }
                }
                Effect::Record(r) => r.emit(),
                Effect::Metric(m) => self.metric(m),
                Effect::Heartbeats { fast } => {
                    for (s, h) in &self.sentinels {
                        h.fast(fast.contains(s));
                    }
                }
            }
        }
    }

    fn metric(&self, m: Metric) {
        let mm = &self.metrics;
        match m {
            Metric::Sentinels { master, answered, configured } => {
                mm.sentinels_reachable.get_or_create(&Metrics::master(&master)).set(answered as i64);
                mm.sentinels_configured.get_or_create(&Metrics::master(&master)).set(configured as i64);
            }
            Metric::Conflict { master } => {
                mm.conflicts.get_or_create(&Metrics::master(&master)).inc();
            }
            Metric::VipBound { master, vip, bound } => {
                mm.vip_bound.get_or_create(&Metrics::vip(&master, &vip)).set(i64::from(bound));
            }
            Metric::Fence { master } => {
                mm.fences.get_or_create(&Metrics::master(&master)).inc();
            }
            Metric::FailFast { master, outcome } => {
                let labels = vec![("master".to_string(), master), ("outcome".to_string(), outcome.to_string())];
                mm.fail_fast.get_or_create(&labels).inc();
            }
            Metric::Delivered { master, delivered } => {
                mm.vip_delivered.get_or_create(&Metrics::master(&master)).set(i64::from(delivered));
            }
            Metric::Tick => mm.tick(),
        }
    }

    /// Held VIPs come from what is bound now, never from what was last applied: a restarted daemon
    /// defends at once, and a VIP removed by hand is no longer defended. Routed VIPs are not on a
    /// shared link: a claim there is the router's business.
    fn held_from(&self, host: &HostState) {
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
    }

    /// Carries out `steps` on the Redis at `redis`, off the loop but in order per master, and
    /// records the outcome. A Redis that is gone (nothing listens) is left alone; with
    /// `only_if_master`, so is a replica.
    fn redis_steps(&mut self, master: String, redis: HostPort, reason: Reason, steps: Vec<Step>, only_if_master: bool) {
        let (access, tx) = (self.redis_access.clone(), self.tx.clone());
        let queue = self.redis_queues.entry(master.clone()).or_insert_with(|| {
            let (qtx, mut qrx) = mpsc::unbounded_channel::<RedisJob>();
            let master = master.clone();
            tokio::spawn(async move {
                while let Some(job) = qrx.recv().await {
                    run_redis_job(&master, job, &access, &tx).await;
                }
            });
            qtx
        });
        let _ = queue.send(RedisJob { redis, reason, steps, only_if_master });
    }

    /// Releases every master's VIPs and waits (bounded) for the applier to finish.
    async fn release_all(&mut self, rx: &mut mpsc::Receiver<Input>) {
        self.core.stopping();
        self.carry_out();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.core.busy() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(i @ Input::Applied(_))) => {
                    self.core.handle(Instant::now(), i);
                    // Only the records and replies of what is under way now; no new work.
                    for e in self.core.drain() {
                        if let Effect::Record(r) = e {
                            r.emit();
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// One queued [`RedisJob`]: carried out, recorded, and reported to the core.
async fn run_redis_job(master: &str, job: RedisJob, access: &Access, tx: &mpsc::Sender<Input>) {
    let RedisJob { redis, reason, steps, only_if_master } = job;
    let start = Instant::now();
    let mut record = Record::new(record::Event::Fence, Actor::Watch, master, record::Change::None, &reason);
    record.actions = steps.iter().map(ToString::to_string).collect();
    let outcome = match fence::run(&redis, access, &steps, only_if_master, ROLE_TIMEOUT * 3).await {
        Ok(fence::Outcome::Done) => Ok(format!("{redis}: done")),
        Ok(fence::Outcome::Skipped(role)) => {
            tracing::info!("master `{master}`: {redis} is {role}: nothing to do for \"{reason}\"");
            let _ = tx
                .send(Input::StepsDone { master: master.to_string(), outcome: Ok(format!("{redis} is {role}")) })
                .await;
            return;
        }
        Err(e) => {
            let text = e.to_string();
            record = record.failed(anyhow::Error::new(e));
            Err(text)
        }
    };
    record.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    record.emit();
    let _ = tx.send(Input::StepsDone { master: master.to_string(), outcome }).await;
}

/// Starts the task that asks Redis instances for their role (and fence), a few at a time (at start
/// every master may want one, each a connection), and reports each answer to the loop.
fn spawn_role_prober(access: Access, tx: mpsc::Sender<Input>) -> mpsc::UnboundedSender<(String, HostPort)> {
    use futures::StreamExt;
    let (probes_tx, mut probes) = mpsc::unbounded_channel::<(String, HostPort)>();
    let stream = futures::stream::poll_fn(move |cx| probes.poll_recv(cx))
        .map(move |(master, addr): (String, HostPort)| {
            let access = access.clone();
            async move {
                let (role, fenced) = local_redis::ask_with_fence(&addr, &access, ROLE_TIMEOUT).await;
                Input::Role { master, seen: RoleSeen { addr, role, fenced, at: Instant::now() } }
            }
        })
        .buffer_unordered(ROLE_PROBES_AT_ONCE);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(input) = stream.next().await {
            if tx.send(input).await.is_err() {
                return;
            }
        }
    });
    probes_tx
}

/// Whose hooks the daemon serves besides root and itself: `[watch] hook_users` when set, else the
/// users the installed sentinel units run as (`redis` for Debian's redis-sentinel, `valkey` for
/// valkey-sentinel), read from root-owned unit folders.
fn hook_users(watch: &crate::config::Watch) -> Vec<String> {
    if let Some(listed) = &watch.hook_users {
        return listed.clone();
    }
    let dirs: Vec<std::path::PathBuf> = crate::sentinel::conf::UNIT_DIRS.iter().map(Into::into).collect();
    let found = crate::sentinel::conf::sentinel_unit_users(&dirs);
    if found.is_empty() {
        tracing::info!(
            "[watch] hook_users not set and no sentinel unit with User= found: only root's hooks are served"
        );
    }
    found
        .into_iter()
        .map(|(unit, user)| {
            tracing::info!("[watch] hook_users not set: serving hooks of `{user}`, the user of {unit}");
            user
        })
        .collect()
}
