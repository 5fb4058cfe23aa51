//! `vipctl switchover [MASTER] [--to HOST]`: a planned switchover that loses no acknowledged
//! write. Sentinel 7's `SENTINEL FAILOVER` alone leaves the old master writable for a second or
//! more after the replica is promoted, and every write it acknowledges then is lost; this pauses
//! writes on the old master first, waits until the chosen replica has every write, has Sentinel
//! fail over to it, and only then lets the old master go on, as a replica (its paused writes meet
//! READONLY and are never acknowledged).
//!
//! Every step is bounded. A step that times out before the failover is ordered aborts cleanly:
//! writes resume on the old master, priorities are restored, and the VIP stays where it is.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use redis::Value;

use super::{Ctx, all_of_them, ask_sentinels};
use crate::access::Access;
use crate::config::{Config, HostPort, Master};
use crate::error::{Failure, Outcome};
use crate::local_redis::{self, Role};
use crate::policy;
use crate::record::{Actor, Change, Event, Record};
use crate::sentinel::{self, text};

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

/// One replica as the sentinels list it.
#[derive(Debug, Clone)]
struct Replica {
    addr: HostPort,
    priority: i64,
    offset: i64,
    ok: bool,
}

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
    let reports = ask_sentinels(config, master, all_of_them).await.unwrap_or_default();
    let weighed = policy::weigh(&reports, super::ONE_SHOT_FRESH);
    let old = match &weighed.verdict {
        policy::Verdict::Master { addr, .. } if weighed.majority() => addr.clone(),
        _ => {
            return Err(Failure::transient(anyhow!(
                "the sentinels give no master with a majority ({})",
                weighed.summary()
            )));
        }
    };
    // One sentinel that names the current master orders the failover and lists the replicas.
    let sentinel = reports
        .iter()
        .find(|r| matches!(r.fresh(super::ONE_SHOT_FRESH), Some(crate::sentinel::Answer::Master { addr, .. }) if *addr == old))
        .map(|r| r.sentinel.clone())
        .ok_or_else(|| Failure::transient(anyhow!("no sentinel answers for master {old}")))?;
    t.step(format!("master is {old}; sentinel {sentinel} will order the failover"));
    let replicas = list_replicas(&sentinel, sentinels, &master.name).await.map_err(Failure::transient)?;
    let target = choose(&replicas, args.to.as_deref()).await?;
    t.step(format!("promoting {target}"));

    let mut restore: Vec<(HostPort, i64)> = Vec::new();
    if args.to.is_some() {
        // Sentinel never promotes a replica with priority 0: leave it only one choice.
        for r in replicas.iter().filter(|r| r.addr != target && r.priority != 0) {
            set_priority(&r.addr, redis, 0).await.map_err(Failure::transient)?;
            restore.push((r.addr.clone(), r.priority));
        }
        if let Err(e) = wait_for_priorities(&sentinel, sentinels, &master.name, &target, t.start).await {
            undo(&old, redis, &restore, false).await;
            return Err(Failure::transient(e));
        }
        t.step("the sentinels see the replica priorities that leave only the target");
    }

    // From here on the old master acknowledges no write.
    let pause = Duration::from_millis(args.catch_up_ms + args.timeout_ms) + Duration::from_secs(5);
    if let Err(e) = local_redis::command(&old, redis, &local_redis::pause_writes(pause), ASK).await {
        undo(&old, redis, &restore, false).await;
        return Err(Failure::transient(anyhow::Error::new(e).context("cannot pause writes on the master")));
    }
    t.step(format!("writes paused on {old} (at most {} ms)", pause.as_millis()));

    let caught_up = wait_caught_up(&old, &target, redis, Duration::from_millis(args.catch_up_ms)).await;
    match caught_up {
        Ok(offset) => t.step(format!("{target} caught up (offset {offset})")),
        Err(e) => {
            undo(&old, redis, &restore, true).await;
            return Err(Failure::transient(e.context("aborted; writes resume on the old master, which keeps the VIP")));
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
    if let Err(e) = wait_role(&target, redis, Role::Master, deadline).await {
        undo(&old, redis, &restore, true).await;
        return Err(Failure::transient(
            e.context("the replica was not promoted in time; writes resume on the old master"),
        ));
    }
    t.step(format!("{target} reports role:master"));

    let vip_result = wait_vip(master, &target, redis, deadline).await;
    match &vip_result {
        Ok(vip) => t.step(format!("VIP {vip} reaches {target}")),
        Err(e) => t.step(format!("the VIP did not reach {target}: {e:#}")),
    }

    // The old master follows the new one; its paused writes then get READONLY, never an ack.
    let demoted = async {
        local_redis::command(&old, redis, &local_redis::replicaof(&target), ASK).await?;
        local_redis::command(&old, redis, &local_redis::unpause(), ASK).await?;
        wait_role(&old, redis, Role::Replica, deadline).await
    }
    .await;
    match &demoted {
        Ok(()) => t.step(format!("{old} is a replica of {target}; writes paused there were refused")),
        Err(e) => {
            let _ = local_redis::command(&old, redis, &local_redis::unpause(), ASK).await;
            t.step(format!("{old} was not demoted: {e:#}"));
        }
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

/// Lifts the pause (when `unpause`) and restores the replica priorities.
async fn undo(old: &HostPort, redis: &Access, restore: &[(HostPort, i64)], unpause: bool) {
    if unpause && let Err(e) = local_redis::command(old, redis, &local_redis::unpause(), ASK).await {
        tracing::warn!("cannot lift the write pause on {old} ({e:#}); it runs out by itself");
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

/// The replicas the sentinel knows for `name`.
async fn list_replicas(sentinel: &HostPort, access: &Access, name: &str) -> anyhow::Result<Vec<Replica>> {
    let mut c = redis::cmd("SENTINEL");
    c.arg("REPLICAS").arg(name);
    let reply = local_redis::command(sentinel, access, &c, ASK).await?;
    let Value::Array(items) = reply else { bail!("sentinel {sentinel}: unexpected reply to SENTINEL REPLICAS") };
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = sentinel::fields(&item) else { continue };
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let (Some(ip), Some(port)) = (get("ip"), get("port").and_then(|p| p.parse().ok())) else { continue };
        let flags = get("flags").unwrap_or_default();
        out.push(Replica {
            addr: HostPort { host: ip, port },
            priority: get("slave-priority").or(get("replica-priority")).and_then(|p| p.parse().ok()).unwrap_or(100),
            offset: get("slave-repl-offset").and_then(|p| p.parse().ok()).unwrap_or(0),
            ok: !flags.contains("down")
                && !flags.contains("disconnected")
                && get("master-link-status").as_deref() == Some("ok"),
        });
    }
    Ok(out)
}

/// `--to`'s host and optional port: `HOST`, `HOST:PORT`, `[V6]:PORT`, or a bare IPv6 address
/// (whose last group is no port).
fn target_of(want: &str) -> (String, Option<u16>) {
    match HostPort::parse(want) {
        Ok(hp) => (hp.host, Some(hp.port)),
        Err(_) => (want.trim_start_matches('[').trim_end_matches(']').to_string(), None),
    }
}

/// The replica to promote: the one named, or the one Sentinel would pick.
async fn choose(replicas: &[Replica], to: Option<&str>) -> Outcome<HostPort> {
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
                .map(|r| r.addr.clone())
                .ok_or_else(|| {
                    Failure::permanent(anyhow!(
                        "--to {want} is not a healthy replica of this master; the sentinels list: {}",
                        replicas.iter().map(|r| r.addr.to_string()).collect::<Vec<_>>().join(", ")
                    ))
                })
        }
        None => usable
            .iter()
            .filter(|r| r.priority > 0)
            .min_by_key(|r| (r.priority, -r.offset))
            .map(|r| r.addr.clone())
            .ok_or_else(|| Failure::transient(anyhow!("the master has no healthy replica to promote"))),
    }
}

/// Sentinel reads priorities from its periodic INFO of each replica: wait until it has.
async fn wait_for_priorities(
    sentinel: &HostPort,
    access: &Access,
    name: &str,
    target: &HostPort,
    start: Instant,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let replicas = list_replicas(sentinel, access, name).await?;
        if replicas.iter().all(|r| r.addr == *target || r.priority == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the sentinels did not see the new replica priorities within 15 s");
        }
        tracing::debug!("waiting for the sentinels to read the priorities ({} ms)", start.elapsed().as_millis());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `target` has replicated everything `old` has; returns the offset.
async fn wait_caught_up(old: &HostPort, target: &HostPort, access: &Access, within: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + within;
    let want = match local_redis::command(old, access, &redis::cmd("ROLE"), ASK).await? {
        Value::Array(items) if items.len() >= 2 => int(&items[1]).context("master offset in ROLE")?,
        _ => bail!("{old} did not answer ROLE as a master"),
    };
    loop {
        let got = match local_redis::command(target, access, &redis::cmd("ROLE"), ASK).await? {
            Value::Array(items) if items.len() >= 5 => int(&items[4]).unwrap_or(-1),
            _ => -1,
        };
        if got >= want {
            return Ok(got);
        }
        if Instant::now() >= deadline {
            bail!("{target} did not catch up with {old} within {} ms (offset {got} of {want})", within.as_millis());
        }
        tokio::time::sleep(POLL).await;
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

/// Waits until a VIP of the master reaches the new master (the Redis answering on it has the new
/// master's run id); returns that VIP.
async fn wait_vip(master: &Master, target: &HostPort, access: &Access, deadline: Instant) -> anyhow::Result<String> {
    let run_id = |addr: HostPort| async move {
        let reply = local_redis::command(&addr, access, redis::cmd("INFO").arg("server"), ASK).await?;
        let text = match reply {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::VerbatimString { text, .. } => text,
            other => bail!("unexpected INFO reply {other:?}"),
        };
        text.lines().find_map(|l| l.strip_prefix("run_id:")).map(|s| s.trim().to_string()).context("no run_id in INFO")
    };
    let want = run_id(target.clone()).await?;
    loop {
        for vip in &master.vips {
            let at = HostPort { host: vip.addr.to_string(), port: target.port };
            if let Ok(id) = run_id(at).await
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

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
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
