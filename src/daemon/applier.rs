//! Carries out the loop's decisions, off the loop: takes each master's lock (never waiting inside
//! the loop, and never longer than a bound), changes addresses over netlink, sends the first
//! announcement round, keeps the later rounds cancellable, and queues the notify commands, which
//! run after the lock is released and in order per master.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::{Config, Master};
use crate::error::Failure;
use crate::lock::MasterLock;
use crate::lock::TIMEOUT as LOCK_TIMEOUT;
use crate::network::announce::PacketSocket;
use crate::network::apply::{self, Report};
use crate::network::host::HostState;
use crate::network::netlink::Reopening;
use crate::network::plan::{Action, Want};
use crate::notify;
use crate::policy::Act;
use crate::record::{self, Actor, Change, Record};

use super::core::{Applied, Input, Job};
use super::metrics::Metrics;

/// How often a master whose lock is held by another run is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(5);

/// Starts the applier; jobs sent to the returned channel are carried out in order per master, the
/// latest superseding any not yet started.
pub fn spawn(
    config: Arc<Config>,
    lock_dir: PathBuf,
    socket: Option<Arc<PacketSocket>>,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Input>,
) -> mpsc::UnboundedSender<Job> {
    let (jobs_tx, jobs) = mpsc::unbounded_channel();
    let managed = config.managed();
    let applier = Applier {
        how: apply::How { dry_run: false, rounds: apply::Rounds::Background, socket },
        jobs,
        tx,
        config,
        managed,
        lock_dir,
        metrics,
        nl: Reopening::default(),
        later: HashMap::new(),
        notify: HashMap::new(),
    };
    tokio::spawn(applier.run());
    jobs_tx
}

struct Applier {
    how: apply::How,
    jobs: mpsc::UnboundedReceiver<Job>,
    tx: mpsc::Sender<Input>,
    config: Arc<Config>,
    managed: Vec<IpAddr>,
    lock_dir: PathBuf,
    metrics: Arc<Metrics>,
    nl: Reopening,
    later: HashMap<String, AbortHandle>,
    notify: HashMap<String, mpsc::UnboundedSender<(Want, String)>>,
}

impl Applier {
    async fn run(mut self) {
        // The newest job per master, with the moment its wait for the lock ends.
        let mut waiting: BTreeMap<String, (Job, Instant)> = BTreeMap::new();
        loop {
            if waiting.is_empty() {
                match self.jobs.recv().await {
                    Some(job) => {
                        waiting.insert(job.master.clone(), (job, Instant::now() + LOCK_TIMEOUT));
                    }
                    None => return,
                }
            }
            while let Ok(job) = self.jobs.try_recv() {
                let deadline = waiting.get(&job.master).map_or(Instant::now() + LOCK_TIMEOUT, |(_, d)| *d);
                waiting.insert(job.master.clone(), (job, deadline));
            }
            let mut ready = Vec::new();
            let names: Vec<String> = waiting.keys().cloned().collect();
            for name in names {
                match MasterLock::try_acquire(&self.lock_dir, &name) {
                    Ok(Some(lock)) => {
                        let (job, _) = waiting.remove(&name).expect("listed above");
                        ready.push((job, lock));
                    }
                    Ok(None) if Instant::now() < waiting[&name].1 => {}
                    Ok(None) => {
                        let (job, _) = waiting.remove(&name).expect("listed above");
                        let f = Failure::transient(anyhow!(
                            "another vipctl run for master `{name}` held its lock for {} s; will try again",
                            LOCK_TIMEOUT.as_secs()
                        ));
                        let a = self.failed(job, f);
                        let _ = self.tx.send(Input::Applied(Box::new(a))).await;
                    }
                    Err(f) => {
                        let (job, _) = waiting.remove(&name).expect("listed above");
                        let a = self.failed(job, f);
                        let _ = self.tx.send(Input::Applied(Box::new(a))).await;
                    }
                }
            }
            if ready.is_empty() {
                if !waiting.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(LOCK_RETRY) => {}
                        Some(job) = self.jobs.recv() => {
                            let deadline = waiting.get(&job.master).map_or(Instant::now() + LOCK_TIMEOUT, |(_, d)| *d);
                            waiting.insert(job.master.clone(), (job, deadline));
                        }
                    }
                }
                continue;
            }
            // One address dump for the batch; a hook may have changed things while we waited.
            let mut host = match self.nl.snapshot().await {
                Ok(h) => h,
                Err(f) => {
                    for (job, _lock) in ready {
                        let a = self.failed(job, f.clone());
                        let _ = self.tx.send(Input::Applied(Box::new(a))).await;
                    }
                    continue;
                }
            };
            let mut changed_in_batch = false;
            let mut done = Vec::new();
            for (job, lock) in ready {
                // A VIP that is the primary of its subnet takes the subnet's secondaries along when
                // removed: plan that on the addresses as they are now, not as they were dumped.
                if changed_in_batch && self.removes_a_primary(&job, &host) {
                    match self.nl.snapshot().await {
                        Ok(h) => host = h,
                        Err(f) => {
                            done.push(self.failed(job, f.clone()));
                            continue;
                        }
                    }
                }
                let applied = self.apply(job, &host).await;
                changed_in_batch |= applied.changed;
                drop(lock);
                done.push(applied);
            }
            // The loop learns the addresses as they are after the batch before it learns that the
            // jobs are done, so that it never decides again on the addresses from before.
            if changed_in_batch && let Ok(h) = self.nl.snapshot().await {
                let _ = self.tx.send(Input::Host(Ok(h))).await;
            }
            for a in done {
                let _ = self.tx.send(Input::Applied(Box::new(a))).await;
            }
        }
    }

    fn removes_a_primary(&self, job: &Job, host: &HostState) -> bool {
        job.act == Act::Release
            && self
                .config
                .masters
                .get(&job.master)
                .is_some_and(|m| m.vips.iter().any(|v| v.addr.is_ipv4() && host.bound(v.addr).any(|a| !a.secondary)))
    }

    /// Carries out one job on `host`.
    async fn apply(&mut self, job: Job, host: &HostState) -> Applied {
        let Some(master) = self.config.masters.get(&job.master).cloned() else {
            let f = Failure::permanent(anyhow!("master `{}` is not configured", job.master));
            return self.failed(job, f);
        };
        let start = Instant::now();
        // A new decision supersedes the rounds of the last one; a release must not be followed by
        // a single frame for an address this host no longer holds.
        if let Some(h) = self.later.remove(&master.name) {
            h.abort();
        }
        let want = if job.act == Act::Release { Want::Release } else { Want::Hold };
        let result = match self.nl.get() {
            Ok(nl) => apply::converge(nl, &master, want, host, &self.managed, &self.how).await,
            Err(f) => Err(f),
        };
        let mut record = self.record(&job, want);
        record.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
        let changed = match result {
            Ok(report) => self.report(&master, want, &job, report, &mut record),
            Err(f) => {
                self.nl.reset();
                record = record.failed(&f);
                false
            }
        };
        self.finish(job, record, changed)
    }

    fn record(&self, job: &Job, want: Want) -> Record {
        let change = match (job.act.clone(), want) {
            (Act::Announce, _) => Change::Announce,
            (_, Want::Hold) => Change::Claim,
            (_, Want::Release) => Change::Release,
        };
        let mut r = Record::new(job.event, Actor::Watch, &job.master, change, &job.reason);
        r.trigger = Some(job.trigger.clone());
        r.sentinels = job.sentinels.clone();
        r.detail = job.detail.clone();
        r
    }

    /// Books a converge report into the record and the metrics; queues the notify command.
    fn report(&mut self, master: &Master, want: Want, job: &Job, mut report: Report, record: &mut Record) -> bool {
        let name = &master.name;
        record.actions = report.actions.iter().map(ToString::to_string).collect();
        record.frames = report.frames_sent;
        record.first_frame_ms = report.first_frame_us.map(|us| us as f64 / 1000.0);
        if let Some(h) = report.later.take() {
            self.later.insert(name.clone(), h);
        }
        if report.frames_sent > 0 {
            self.metrics.last_announce.get_or_create(&Metrics::master(name)).set(crate::daemon::metrics::now_secs());
        }
        let changed = report.actions.iter().any(Action::changes_addresses);
        if changed {
            self.metrics.transitions.get_or_create(&Metrics::master(name)).inc();
            for vip in &master.vips {
                let v = i64::from(want == Want::Hold);
                self.metrics.vip_bound.get_or_create(&Metrics::vip(name, &vip.to_string())).set(v);
            }
            if !master.notify.on_claim.is_empty() || !master.notify.on_release.is_empty() {
                let why = format!("{}; trigger: {}", job.reason, job.trigger);
                self.notify_queue(master).send((want, why)).ok();
            }
        }
        if let Some(f) = report.failure.take() {
            *record = record.clone().failed(&f);
        } else if !report.warnings.is_empty() {
            *record = record.clone().failed(report.warnings.join("; "));
        }
        changed
    }

    /// The master's notify queue: one worker per master runs its commands one after another, so a
    /// claim and a release never finish out of order.
    fn notify_queue(&mut self, master: &Master) -> &mpsc::UnboundedSender<(Want, String)> {
        self.notify.entry(master.name.clone()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Want, String)>();
            let (master, metrics) = (master.clone(), self.metrics.clone());
            tokio::spawn(async move {
                while let Some((want, reason)) = rx.recv().await {
                    let outcome = notify::run(&master, want, &reason).await;
                    if outcome == notify::Outcome::None {
                        continue;
                    }
                    let mut r =
                        Record::note(record::Event::Notify, Actor::Watch, &master.name, "notify", outcome.to_string());
                    r.detail = Some(format!("after {want}"));
                    if let notify::Outcome::Failed(e) = &outcome {
                        metrics.notify_failures.get_or_create(&Metrics::master(&master.name)).inc();
                        r = r.failed(e);
                    }
                    r.emit();
                }
            });
            tx
        })
    }

    fn failed(&mut self, job: Job, f: Failure) -> Applied {
        let want = if job.act == Act::Release { Want::Release } else { Want::Hold };
        let record = self.record(&job, want).failed(&f);
        self.finish(job, record, false)
    }

    /// Emits the job's record (at once: the log shows the change when it happened), unless the job
    /// found nothing to do (another run got there first).
    fn finish(&self, job: Job, record: Record, changed: bool) -> Applied {
        if record.is_error() {
            self.metrics.reconcile_errors.get_or_create(&Metrics::master(&job.master)).inc();
        }
        if record.is_error() || !record.actions.is_empty() {
            record.emit();
        }
        Applied { job, record, changed }
    }
}
