//! `vipctl switchover [MASTER] [--to HOST]`: a planned switchover that loses no acknowledged
//! write. Sentinel 7's `SENTINEL FAILOVER` alone leaves the old master writable for a second or
//! more after the replica is promoted, and every write it acknowledges then is lost; this fences
//! the old master first (writes get `NOREPLICAS`, see [`crate::fence`]), waits until the chosen
//! replica has every write, has Sentinel fail over to it, and only then lets the old master go
//! on, as a replica.
//!
//! It acts only on what a majority of the sentinels vouch for ([`vouched`]): one sentinel may lie
//! and a replica may say anything about itself, and a switchover that believed either could
//! demote the real master toward an impostor and hand it the Redis password.
//!
//! Every step is bounded. A step that times out before the failover is ordered aborts cleanly:
//! writes resume on the old master, priorities are restored, and the VIP stays where it is.

mod vouched;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::Ctx;
use crate::access::Access;
use crate::config::{Config, HostPort, Master};
use crate::error::{Failure, Outcome};
use crate::fence::{self, Step};
use crate::local_redis::{self, Role};
use crate::record::{Actor, Change, Event, Record};
use vouched::{Replica, Vouched};

/// Fail the master over to a replica without losing an acknowledged write.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Master name; may be omitted when the config has only one.
    pub master: Option<String>,
    /// The replica to promote (its address or host name, optionally with :PORT); default: the one
    /// Sentinel would choose.
    #[arg(long, value_name = "HOST")]
    pub to: Option<String>,
    /// How long the chosen replica may take to catch up with the paused master.
    #[arg(long, default_value = "5000", value_name = "MS")]
    pub catch_up_ms: u64,
    /// How long the promotion and the VIP's move may take.
    #[arg(long, default_value = "20000", value_name = "MS")]
    pub timeout_ms: u64,
}

/// How long one question to a Redis or a sentinel may take.
const ASK: Duration = Duration::from_millis(1000);
/// Between two polls.
const POLL: Duration = Duration::from_millis(5);

/// The steps, each with its time since the start.
struct Timeline {
    start: Instant,
    steps: Vec<(f64, String)>,
}

impl Timeline {
    fn step(&mut self, what: impl Into<String>) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let what = what.into();
        println!("{ms:>9.1} ms  {what}");
        self.steps.push((ms, what));
    }
}

/// Runs the switchover; prints the timeline; exits 0 only when the VIP is on the new master and
/// the old master is a replica.
pub async fn run(ctx: &Ctx, args: &Args) -> Outcome<()> {
    let config = ctx.config()?;
    let master = config.pick_master(args.master.as_deref()).map_err(|m| Failure::permanent(anyhow!(m)))?.clone();
    let sentinels = Access::sentinels(&config)?;
    let redis = Access::redis(&config)?;
    let mut t = Timeline { start: Instant::now(), steps: Vec::new() };
    let result = switchover(&config, &master, &sentinels, &redis, args, &mut t).await;
    let mut r = Record::note(Event::Decision, Actor::Switchover, &master.name, "switchover", "planned switchover");
    r.detail = Some(t.steps.iter().map(|(ms, s)| format!("+{ms:.1} ms {s}")).collect::<Vec<_>>().join("; "));
    r.elapsed_ms = t.start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(new) => {
            r.decision = Change::None;
            r.reason = format!("switched over to {new}");
            r.emit();
            Ok(())
        }
        Err(f) => {
            r = r.failed(&f);
            r.exit = Some(f.status());
            r.emit();
            Err(f)
        }
    }
}

async fn switchover(
    config: &Config,
    master: &Master,
    sentinels: &Access,
    redis: &Access,
    args: &Args,
    t: &mut Timeline,
) -> Outcome<HostPort> {
    if master.sentinels.is_empty() {
        return Err(Failure::permanent(anyhow!(
            "master `{}` has no sentinels in the config: a switchover is ordered through them",
            master.name
        )));
    }
    let view = vouched::ask(master, sentinels, config.sentinel_timeout).await;
    let Some((old, epoch)) = view.master() else {
        return Err(Failure::transient(anyhow!(
            "no master is named by a majority of the {} sentinels ({} answered); retry when they agree",
            view.configured,
            view.told.len()
        )));
    };
    // One sentinel that names that master orders the failover.
    let sentinel = view
        .told
        .iter()
        .find(|t| t.master.as_ref() == Some(&(old.clone(), epoch)))
        .map(|t| t.sentinel.clone())
        .expect("a majority names it");
    t.step(format!(
        "a majority of the sentinels name {old} (epoch {epoch}); sentinel {sentinel} will order the failover"
    ));
    let replicas = view.replicas();
    // The replicas Sentinel may promote: the one named (the others' priorities go to 0 for it), or
    // every healthy one a majority list, whichever Sentinel's leader picks.
    let candidates = choose(&replicas, args.to.as_deref()).await?;
    for c in &candidates {
        // Each one's own word must agree: a replica of this very master.
        match vouched::follows(c, redis, ASK).await {
            Ok(m) if m == old => {}
            Ok(m) => {
                return Err(Failure::transient(anyhow!(
                    "{c} says it replicates {m}, not the master {old}; not switching over to it"
                )));
            }
            Err(e) => return Err(Failure::transient(e.context(format!("cannot ask {c} whom it replicates")))),
        }
    }
    let names = candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    t.step(if args.to.is_some() {
        format!("promoting {names}")
    } else {
        format!("promoting one of {names}, as Sentinel picks")
    });

    let mut restore: Vec<(HostPort, i64)> = Vec::new();
    if args.to.is_some() {
        // Sentinel never promotes a replica with priority 0: leave it only one choice.
        for r in replicas.iter().filter(|r| !candidates.contains(&r.addr) && r.priority != 0) {
            set_priority(&r.addr, redis, 0).await.map_err(Failure::transient)?;
            restore.push((r.addr.clone(), r.priority));
        }
        if let Err(e) = wait_for_priorities(master, sentinels, config, &candidates[0]).await {
            undo(&old, redis, &restore, false).await;
            return Err(Failure::transient(e));
        }
        t.step("a majority of the sentinels see the replica priorities that leave only the target");
    }

    // From here on the old master acknowledges no write.
    if let Err(e) = fence::run(&old, redis, &[Step::Fence], false, ASK).await {
        undo(&old, redis, &restore, false).await;
        return Err(Failure::transient(anyhow::Error::new(e).context("cannot fence writes on the master")));
    }
    t.step(format!("writes fenced on {old} (NOREPLICAS)"));

    for c in &candidates {
        match wait_caught_up(&old, c, redis, Duration::from_millis(args.catch_up_ms)).await {
            Ok(offset) => t.step(format!("{c} caught up (offset {offset}, as {old} sees it)")),
            Err(e) => {
                undo(&old, redis, &restore, true).await;
                return Err(Failure::transient(
                    e.context("aborted; writes resume on the old master, which keeps the VIP"),
                ));
            }
        }
    }

    let mut failover = redis::cmd("SENTINEL");
    failover.arg("FAILOVER").arg(&master.name);
    if let Err(e) = local_redis::command(&sentinel, sentinels, &failover, ASK).await {
        undo(&old, redis, &restore, true).await;
        return Err(Failure::transient(
            anyhow::Error::new(e).context("SENTINEL FAILOVER refused; aborted, writes resume on the old master"),
        ));
    }
    t.step("SENTINEL FAILOVER ordered");

    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let target = match wait_promoted(&candidates, redis, deadline).await {
        Ok(p) => p,
        Err(e) => {
            // Sentinel may still have promoted a replica: writes on the old master would then be
            // lost, so the fence stays unless a majority still names it, and it follows the new one.
            let now = vouched::ask(master, sentinels, config.sentinel_timeout).await;
            undo(&old, redis, &restore, false).await;
            return match now.master() {
                Some((m, e2)) if m != old && e2 > epoch => {
                    let _ = fence::run(&old, redis, &[Step::ReplicaOf(m.clone()), Step::Lift], false, ASK).await;
                    t.step(format!("a majority name {m} now: {old} follows it"));
                    Err(Failure::transient(e.context(format!("Sentinel promoted {m}, not a chosen replica"))))
                }
                Some((m, _)) if m == old => {
                    let _ = fence::run(&old, redis, &[Step::Lift], false, ASK).await;
                    Err(Failure::transient(
                        e.context("no replica was promoted in time; writes resume on the old master"),
                    ))
                }
                _ => Err(Failure::transient(e.context(format!(
                    "no replica was promoted in time and the sentinels do not agree on a master; {old} stays fenced \
                     until they do (lift it by hand with CONFIG SET min-replicas-to-write)"
                )))),
            };
        }
    };
    t.step(format!("{target} reports role:master"));

    // The old master follows the new one only once a majority name it at a newer epoch: a
    // promotion the sentinels do not stand behind is no reason to give up the master.
    if let Err(e) = wait_majority(master, sentinels, config, &target, epoch, deadline).await {
        undo(&old, redis, &restore, false).await;
        t.step(format!("{e:#}; {old} stays fenced until the sentinels settle"));
        return Err(Failure::transient(e.context(format!(
            "the sentinels did not confirm {target}; {old} still refuses writes: when the sentinels agree, the daemon \
             (or `vipctl switchover` again) sorts it out, or lift it by hand with CONFIG SET min-replicas-to-write"
        ))));
    }
    t.step(format!("a majority of the sentinels name {target} at a newer epoch"));

    let vip_result = wait_vip(master, &old, &target, redis, deadline).await;
    match &vip_result {
        Ok(vip) => t.step(format!("VIP {vip} reaches {target}")),
        Err(e) => t.step(format!("the VIP did not reach {target}: {e:#}")),
    }

    // The old master follows the new one; writes there then get READONLY, never an ack.
    let demoted = async {
        fence::run(&old, redis, &[Step::ReplicaOf(target.clone()), Step::Lift], false, ASK).await?;
        wait_role(&old, redis, Role::Replica, deadline).await
    }
    .await;
    match &demoted {
        Ok(()) => t.step(format!("{old} is a replica of {target}; its fence is lifted")),
        Err(e) => t.step(format!("{old} was not demoted: {e:#}")),
    }
    undo(&old, redis, &restore, false).await;
    if !restore.is_empty() {
        t.step("replica priorities restored");
    }
    match (vip_result, demoted) {
        (Ok(_), Ok(())) => Ok(target),
        (Err(e), _) => {
            Err(Failure::transient(e.context("the switchover happened, but the VIP is not on the new master")))
        }
        (_, Err(e)) => {
            Err(Failure::transient(e.context("the switchover happened, but the old master is not a replica")))
        }
    }
}

/// Lifts the fence (when `lift`) and restores the replica priorities.
async fn undo(old: &HostPort, redis: &Access, restore: &[(HostPort, i64)], lift: bool) {
    if lift && let Err(e) = fence::run(old, redis, &[Step::Lift], false, ASK).await {
        tracing::warn!("cannot lift the write fence on {old} ({e:#}); lift it with CONFIG SET min-replicas-to-write");
    }
    for (addr, priority) in restore {
        if let Err(e) = set_priority(addr, redis, *priority).await {
            tracing::warn!("cannot restore replica-priority {priority} on {addr}: {e:#}; set it by hand");
        }
    }
}

async fn set_priority(addr: &HostPort, redis: &Access, priority: i64) -> anyhow::Result<()> {
    let mut c = redis::cmd("CONFIG");
    c.arg("SET").arg("replica-priority").arg(priority);
    local_redis::command(addr, redis, &c, ASK).await?;
    Ok(())
}

/// `--to`'s host and optional port: `HOST`, `HOST:PORT`, `[V6]:PORT`, or a bare IPv6 address
/// (whose last group is no port).
fn target_of(want: &str) -> (String, Option<u16>) {
    match HostPort::parse(want) {
        Ok(hp) => (hp.host, Some(hp.port)),
        Err(_) => (want.trim_start_matches('[').trim_end_matches(']').to_string(), None),
    }
}

/// The replicas Sentinel may promote, among those a majority list: the one named, or every
/// healthy one with a priority above 0 (Sentinel's leader picks among them).
async fn choose(replicas: &[Replica], to: Option<&str>) -> Outcome<Vec<HostPort>> {
    let usable: Vec<&Replica> = replicas.iter().filter(|r| r.ok).collect();
    match to {
        Some(want) => {
            let (host, port) = target_of(want);
            let ips = crate::resolve::resolve(&host, crate::resolve::TIMEOUT)
                .await
                .map_err(|e| Failure::permanent(anyhow!("--to {want}: {e}")))?;
            usable
                .iter()
                .find(|r| r.addr.ip().is_some_and(|ip| ips.contains(&ip)) && port.is_none_or(|p| p == r.addr.port))
                .map(|r| vec![r.addr.clone()])
                .ok_or_else(|| {
                    Failure::permanent(anyhow!(
                        "--to {want} is not a healthy replica that a majority of the sentinels list; they list: {}",
                        replicas.iter().map(|r| r.addr.to_string()).collect::<Vec<_>>().join(", ")
                    ))
                })
        }
        None => {
            let eligible: Vec<HostPort> = usable.iter().filter(|r| r.priority > 0).map(|r| r.addr.clone()).collect();
            if eligible.is_empty() {
                return Err(Failure::transient(anyhow!(
                    "the master has no healthy replica that a majority of the sentinels list"
                )));
            }
            Ok(eligible)
        }
    }
}

/// Waits until one of `candidates` reports role:master; returns it.
async fn wait_promoted(candidates: &[HostPort], access: &Access, deadline: Instant) -> anyhow::Result<HostPort> {
    loop {
        for c in candidates {
            if local_redis::ask(c, access, ASK).await == Role::Master {
                return Ok(c.clone());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "none of {} reports role:master",
                candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sentinel reads priorities from its periodic INFO of each replica: wait until a majority has.
async fn wait_for_priorities(
    master: &Master,
    access: &Access,
    config: &Config,
    target: &HostPort,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if vouched::ask(master, access, config.sentinel_timeout).await.only(target) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("a majority of the sentinels did not see the new replica priorities within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `target` has every write `old` has, by `old`'s own account; returns the offset.
async fn wait_caught_up(old: &HostPort, target: &HostPort, access: &Access, within: Duration) -> anyhow::Result<i64> {
    tokio::time::timeout(within + ASK, vouched::caught_up(old, target, access, within))
        .await
        .unwrap_or_else(|_| bail!("{old} did not answer about {target}'s offset within {} ms", within.as_millis()))
}

/// Waits until a majority of the sentinels name `target` at an epoch newer than `since`.
async fn wait_majority(
    master: &Master,
    access: &Access,
    config: &Config,
    target: &HostPort,
    since: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let view: Vouched = vouched::ask(master, access, config.sentinel_timeout).await;
        if view.master().is_some_and(|(m, e)| m == *target && e > since) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("a majority of the sentinels did not name {target} at a newer epoch in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_role(addr: &HostPort, access: &Access, want: Role, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let role = local_redis::ask(addr, access, ASK).await;
        if role == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{addr} is {role}, not {want}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until a VIP of the master leads to the new master: the Redis answering on it has the
/// new master's run id, which is not the old master's (a Redis that says anything it likes cannot
/// pass for the old one). Returns that VIP.
async fn wait_vip(
    master: &Master,
    old: &HostPort,
    target: &HostPort,
    access: &Access,
    deadline: Instant,
) -> anyhow::Result<String> {
    let old_id = vouched::run_id(old, access, ASK).await?;
    let want = vouched::run_id(target, access, ASK).await?;
    if want == old_id {
        bail!("{target} reports the old master's run id {old_id}");
    }
    loop {
        for vip in &master.vips {
            let at = HostPort { host: vip.addr.to_string(), port: target.port };
            if let Ok(id) = vouched::run_id(&at, access, ASK).await
                && id == want
            {
                return Ok(vip.addr.to_string());
            }
        }
        if Instant::now() >= deadline {
            bail!("no VIP of `{}` leads to {target}", master.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::target_of;

    #[test]
    fn to_takes_every_form_of_address() {
        assert_eq!(target_of("198.51.100.12"), ("198.51.100.12".into(), None));
        assert_eq!(target_of("198.51.100.12:6380"), ("198.51.100.12".into(), Some(6380)));
        assert_eq!(target_of("redis-2.lab:6379"), ("redis-2.lab".into(), Some(6379)));
        // A bare IPv6 address: its last group is not a port.
        assert_eq!(target_of("2001:db8:51::12"), ("2001:db8:51::12".into(), None));
        assert_eq!(target_of("[2001:db8:51::12]"), ("2001:db8:51::12".into(), None));
        assert_eq!(target_of("[2001:db8:51::12]:6379"), ("2001:db8:51::12".into(), Some(6379)));
    }
}
