//! What a switchover may act on: only what a majority of the master's sentinels vouch for. One
//! sentinel may lie, and a replica may answer anything about itself, so
//! - the master and its epoch are the ones a majority names;
//! - a replica may be promoted, polled or sent credentials only when a majority list it;
//! - the promoted replica is taken as the new master only once a majority name it at a newer epoch;
//! - how far a replica has caught up is read from the old master's own `INFO replication`, not
//!   from the replica.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::future::join_all;
use redis::Value;

use crate::access::Access;
use crate::config::{HostPort, Master};
use crate::local_redis;
use crate::sentinel::{self, Answer, text};

/// One replica as a sentinel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its address.
    pub addr: HostPort,
    /// Its `replica-priority` (0: never promoted).
    pub priority: i64,
    /// Its replication offset, as that sentinel last saw it.
    pub offset: i64,
    /// Link up, not down or disconnected.
    pub ok: bool,
}

/// One sentinel's answer about the master, with its replica list.
#[derive(Debug, Clone)]
pub struct Told {
    /// The sentinel.
    pub sentinel: HostPort,
    /// The master it names, at which epoch.
    pub master: Option<(HostPort, u64)>,
    /// The replicas it lists.
    pub replicas: Vec<Replica>,
}

/// What a majority of the master's sentinels agree on.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// Every sentinel's answer (failed ones are absent).
    pub told: Vec<Told>,
    /// Sentinels configured.
    pub configured: usize,
}

impl Vouched {
    /// The master a majority names at one epoch, and that epoch.
    pub fn master(&self) -> Option<(HostPort, u64)> {
        let named: Vec<&(HostPort, u64)> = self.told.iter().filter_map(|t| t.master.as_ref()).collect();
        named.iter().find(|m| named.iter().filter(|o| *o == *m).count() * 2 > self.configured).map(|m| (*m).clone())
    }

    /// The replicas a majority list, each with what the majority says of it: usable only when a
    /// majority of all sentinels list it as healthy; priority and offset as the first of them says.
    pub fn replicas(&self) -> Vec<Replica> {
        let mut out: Vec<Replica> = Vec::new();
        for t in &self.told {
            for r in &t.replicas {
                if out.iter().any(|o| o.addr == r.addr) {
                    continue;
                }
                let listing: Vec<&Replica> =
                    self.told.iter().filter_map(|o| o.replicas.iter().find(|x| x.addr == r.addr)).collect();
                if listing.len() * 2 > self.configured {
                    let healthy = listing.iter().filter(|x| x.ok).count() * 2 > self.configured;
                    out.push(Replica { ok: healthy, ..r.clone() });
                }
            }
        }
        out
    }

    /// Whether a majority list `addr` as a replica.
    pub fn lists(&self, addr: &HostPort) -> bool {
        self.replicas().iter().any(|r| r.addr == *addr)
    }

    /// Whether a majority see every vouched replica but `target` with priority 0.
    pub fn only(&self, target: &HostPort) -> bool {
        let seeing = self
            .told
            .iter()
            .filter(|t| t.replicas.iter().all(|r| r.addr == *target || r.priority == 0 || !self.lists(&r.addr)))
            .count();
        seeing * 2 > self.configured
    }
}

/// Asks every sentinel of `master` at once (each bounded by `timeout`) who the master is, at which
/// epoch, and which replicas it lists.
pub async fn ask(master: &Master, access: &Access, timeout: Duration) -> Vouched {
    let asks = master.sentinels.iter().map(|s| async move {
        let work = async {
            let mut con = access.connect(s, timeout).await.map_err(|e| anyhow!("{}", crate::access::describe(&e)))?;
            let answer = sentinel::query(&mut con, s, &[&master.name]).await?.pop().unwrap_or(Answer::Unknown);
            let mut c = redis::cmd("SENTINEL");
            c.arg("REPLICAS").arg(&master.name);
            let reply: Value = c.query_async(&mut con).await.map_err(|e| anyhow!("{}", crate::access::describe(&e)))?;
            Ok::<_, anyhow::Error>((answer, parse_replicas(&reply)?))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok((answer, replicas))) => {
                let master = match answer {
                    Answer::Master { addr, epoch, .. } => Some((addr, epoch)),
                    Answer::Unknown => None,
                };
                Some(Told { sentinel: s.clone(), master, replicas })
            }
            Ok(Err(e)) => {
                tracing::warn!("sentinel {s}: {e:#}");
                None
            }
            Err(_) => {
                tracing::warn!("sentinel {s}: no answer within {} ms", timeout.as_millis());
                None
            }
        }
    });
    let told = join_all(asks).await.into_iter().flatten().collect();
    Vouched { told, configured: master.sentinels.len() }
}

/// The replicas in a reply to `SENTINEL REPLICAS`, with their priority, offset and health.
fn parse_replicas(reply: &Value) -> anyhow::Result<Vec<Replica>> {
    let listed = sentinel::parse_replicas(reply)?;
    let Value::Array(items) = reply else { bail!("unexpected reply to SENTINEL REPLICAS") };
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = sentinel::fields(item) else { continue };
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let (Some(ip), Some(port)) = (get("ip"), get("port").and_then(|p| p.parse().ok())) else { continue };
        let addr = HostPort { host: ip, port };
        if !listed.contains(&addr) {
            continue;
        }
        let flags = get("flags").unwrap_or_default();
        out.push(Replica {
            addr,
            priority: get("slave-priority").or(get("replica-priority")).and_then(|p| p.parse().ok()).unwrap_or(100),
            offset: get("slave-repl-offset").and_then(|p| p.parse().ok()).unwrap_or(0),
            ok: !flags.contains("down")
                && !flags.contains("disconnected")
                && get("master-link-status").as_deref() == Some("ok"),
        });
    }
    Ok(out)
}

/// The master a replica says it follows: `ROLE` gives `slave <host> <port> …`.
pub async fn follows(replica: &HostPort, access: &Access, timeout: Duration) -> anyhow::Result<HostPort> {
    match local_redis::command(replica, access, &redis::cmd("ROLE"), timeout).await? {
        Value::Array(items) if items.len() >= 3 && text(&items[0]).as_deref() == Some("slave") => {
            let host = text(&items[1]).context("master host in ROLE")?;
            let port = text(&items[2]).and_then(|p| p.parse().ok()).context("master port in ROLE")?;
            Ok(HostPort { host, port })
        }
        _ => bail!("{replica} does not answer ROLE as a replica"),
    }
}

/// Waits until `old` itself reports that `replica` acknowledged every write `old` has, and returns
/// that offset. Replicas acknowledge on their own once a second; to hear sooner, this publishes on
/// a channel of its own (`__vipctl__:switchover`: propagated to replicas, and not a write, so the
/// fence lets it pass) and `WAIT`s for the replicas to acknowledge it, which makes the master ask
/// them at once.
pub async fn caught_up(old: &HostPort, replica: &HostPort, access: &Access, within: Duration) -> anyhow::Result<i64> {
    let deadline = std::time::Instant::now() + within;
    let mut con = access.connect(old, within).await.map_err(|e| anyhow!("{old}: {}", crate::access::describe(&e)))?;
    // Every write is in the stream by now (the fence is up): this offset is what the replica must
    // have. Later bytes are vipctl's own PUBLISH and the REPLCONF GETACK the WAIT makes the master
    // send, which a replica's acknowledgement never counts.
    let mut want = None;
    loop {
        let info: Value = redis::cmd("INFO").arg("replication").query_async(&mut con).await?;
        let info = info_text(info)?;
        let (own, theirs) = replication_offsets(&info, replica);
        if own < 0 {
            bail!("{old} did not report its replication offset");
        }
        let own = *want.get_or_insert(own);
        if let Some(got) = theirs.filter(|g| *g >= own) {
            return Ok(got);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let got = theirs.map_or("none".to_string(), |g| g.to_string());
            bail!("{replica} did not catch up with {old} within {} ms (offset {got} of {own})", within.as_millis());
        }
        let replicas =
            info.lines().find_map(|l| l.strip_prefix("connected_slaves:")).and_then(|v| v.trim().parse::<u32>().ok());
        let _: Value = redis::cmd("PUBLISH").arg("__vipctl__:switchover").arg("catch-up").query_async(&mut con).await?;
        let wait_ms = left.as_millis().clamp(1, 100) as u64;
        let _: Value = redis::cmd("WAIT").arg(replicas.unwrap_or(1).max(1)).arg(wait_ms).query_async(&mut con).await?;
    }
}

/// `master_repl_offset`, and the offset of the `slaveN` line for `replica` (`ip=…,port=…,offset=…`).
pub fn replication_offsets(info: &str, replica: &HostPort) -> (i64, Option<i64>) {
    let mut own = -1;
    let mut theirs = None;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("master_repl_offset:") {
            own = v.trim().parse().unwrap_or(-1);
        } else if line.starts_with("slave") && line.contains(':') {
            let (_, kv) = line.split_once(':').expect("checked");
            let get = |k: &str| kv.split(',').find_map(|f| f.strip_prefix(k)).map(str::trim);
            if get("ip=") == Some(replica.host.as_str())
                && get("port=").and_then(|p| p.parse().ok()) == Some(replica.port)
            {
                theirs = get("offset=").and_then(|o| o.parse().ok());
            }
        }
    }
    (own, theirs)
}

/// The `run_id` a Redis reports in `INFO server`.
pub async fn run_id(addr: &HostPort, access: &Access, timeout: Duration) -> anyhow::Result<String> {
    let reply = local_redis::command(addr, access, redis::cmd("INFO").arg("server"), timeout).await?;
    let info = info_text(reply)?;
    info.lines().find_map(|l| l.strip_prefix("run_id:")).map(|s| s.trim().to_string()).context("no run_id in INFO")
}

fn info_text(reply: Value) -> anyhow::Result<String> {
    match reply {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Value::VerbatimString { text, .. } => Ok(text),
        other => bail!("unexpected INFO reply {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(n: u8, port: u16) -> HostPort {
        HostPort { host: format!("198.51.100.1{n}"), port }
    }

    fn r(addr: HostPort, priority: i64) -> Replica {
        Replica { addr, priority, offset: 10, ok: true }
    }

    fn told(n: u8, master: HostPort, epoch: u64, replicas: Vec<Replica>) -> Told {
        Told { sentinel: hp(n, 26379), master: Some((master, epoch)), replicas }
    }

    #[test]
    fn a_lying_sentinel_names_no_master_and_vouches_for_no_replica() {
        let honest = vec![r(hp(2, 6379), 100), r(hp(3, 6379), 100)];
        let mut lies = honest.clone();
        lies.push(Replica { addr: hp(3, 7777), priority: 1, offset: i64::MAX, ok: true });
        let v = Vouched {
            told: vec![
                told(1, hp(1, 6379), 0, honest.clone()),
                told(2, hp(1, 6379), 0, honest.clone()),
                told(4, hp(3, 7777), 99, lies),
            ],
            configured: 3,
        };
        assert_eq!(v.master(), Some((hp(1, 6379), 0)));
        assert_eq!(v.replicas().iter().map(|r| r.addr.clone()).collect::<Vec<_>>(), [hp(2, 6379), hp(3, 6379)]);
        assert!(!v.lists(&hp(3, 7777)));
        // Without a majority there is no master at all.
        let split = Vouched {
            told: vec![told(1, hp(1, 6379), 0, honest.clone()), told(4, hp(3, 7777), 99, vec![])],
            configured: 3,
        };
        assert_eq!(split.master(), None);
    }

    #[test]
    fn priorities_count_when_a_majority_sees_them() {
        let set = vec![r(hp(2, 6379), 0), r(hp(3, 6379), 100)];
        let unset = vec![r(hp(2, 6379), 100), r(hp(3, 6379), 100)];
        let v = |lists: [Vec<Replica>; 3]| Vouched {
            told: lists.into_iter().enumerate().map(|(i, l)| told(i as u8 + 1, hp(1, 6379), 0, l)).collect(),
            configured: 3,
        };
        assert!(v([set.clone(), set.clone(), unset.clone()]).only(&hp(3, 6379)));
        assert!(!v([set.clone(), unset.clone(), unset.clone()]).only(&hp(3, 6379)));
    }

    #[test]
    fn catch_up_is_read_from_the_old_masters_own_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=198.51.100.12,port=6379,state=online,offset=900,lag=0\r\nslave1:ip=198.51.100.13,port=6379,state=online,offset=1000,lag=0\r\nmaster_repl_offset:1000\r\n";
        assert_eq!(replication_offsets(info, &hp(3, 6379)), (1000, Some(1000)));
        assert_eq!(replication_offsets(info, &hp(2, 6379)), (1000, Some(900)));
        assert_eq!(replication_offsets(info, &hp(3, 7777)), (1000, None), "a replica the master does not have");
    }
}
