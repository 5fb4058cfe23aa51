//! The write fence: how vipctl makes a Redis master refuse writes during a failover toward another
//! host, so that it acknowledges none that the failover would throw away.
//!
//! Not `CLIENT PAUSE … WRITE`: a pause also holds `PUBLISH`, and Sentinel's command connection to
//! the master sends its hello `PUBLISH` and its `PING`s in order, so a paused `PUBLISH` holds the
//! `PING`s behind it; after `down-after-milliseconds` the sentinels call a healthy master down and
//! fail it over (measured: one forged event, a real failover 2.4 s later). Instead the fence raises
//! `min-replicas-to-write` above any replica count. Redis then answers every write, in a
//! transaction or a script too, with `NOREPLICAS` at once, while `PING`, `INFO` and `PUBLISH` pass:
//! the fence cannot make Sentinel see a healthy master as down, however long it lasts.
//!
//! The fenced value carries the old settings ([`MARK`] + 2 × old `min-replicas-to-write` + 1 when
//! `min-replicas-max-lag` was 0, which disables the check and is raised for the fence). So any run
//! can lift a fence that another left behind (a daemon that crashed, or Sentinel's `CONFIG REWRITE`
//! when it converts the old master, which writes the fenced value into redis.conf): a value at or
//! above [`MARK`] is vipctl's and says what to restore.

use std::fmt;
use std::time::Duration;

use redis::Value;

use crate::access::Access;
use crate::config::HostPort;
use crate::local_redis::{self, CommandError, Role};

/// Where fenced values of `min-replicas-to-write` begin: far above any replica count.
pub const MARK: i64 = 1_000_000_000;
/// The largest value `min-replicas-to-write` takes (`INT_MAX`).
const MAX: i64 = i32::MAX as i64;
/// The `min-replicas-max-lag` a fence sets when it was 0 (the default: 10 s).
const LAG_FOR_FENCE: i64 = 10;

/// One step on a Redis, carried out in order on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Refuse writes (a fence); nothing when fenced already.
    Fence,
    /// Take writes again: undo a fence, this run's or an earlier one's; nothing when none.
    Lift,
    /// Become a replica of this master (`REPLICAOF`).
    ReplicaOf(HostPort),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Fence => f.write_str("fence writes (min-replicas-to-write)"),
            Step::Lift => f.write_str("lift the write fence"),
            Step::ReplicaOf(m) => write!(f, "REPLICAOF {} {}", m.host, m.port),
        }
    }
}

/// The fenced value for the current settings, or why there is none.
pub fn encode(to_write: i64, max_lag: i64) -> Result<i64, String> {
    let v = to_write
        .checked_mul(2)
        .and_then(|x| x.checked_add(MARK + i64::from(max_lag == 0)))
        .filter(|v| to_write >= 0 && *v <= MAX);
    v.ok_or_else(|| {
        format!("min-replicas-to-write is {to_write}: too large to fence (vipctl keeps it inside its mark)")
    })
}

/// What a fenced value keeps: the old `min-replicas-to-write`, and whether `min-replicas-max-lag`
/// was 0. `None`: not a fence.
pub fn decode(v: i64) -> Option<(i64, bool)> {
    (v >= MARK).then(|| ((v - MARK) / 2, (v - MARK) % 2 == 1))
}

/// What [`run`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step was carried out (a fence already in place, or none to lift, counts as done).
    Done,
    /// Nothing was sent: the Redis is gone, or (when only a master was wanted) not a master.
    Skipped(Role),
}

/// Carries out `steps` on the Redis at `addr`, in order, on one connection, within `timeout` for
/// everything. With `only_if_master`, asks `ROLE` first and leaves a replica alone. A Redis that is
/// gone (connection refused) is left alone too: it takes no writes.
pub async fn run(
    addr: &HostPort,
    access: &Access,
    steps: &[Step],
    only_if_master: bool,
    timeout: Duration,
) -> Result<Outcome, CommandError> {
    let work = async {
        let mut con = match access.connect(addr, timeout).await {
            Ok(c) => c,
            Err(e) if e.is_connection_refusal() => return Ok(Outcome::Skipped(local_redis::classify(&e))),
            Err(e) => return Err(CommandError::from_redis(addr, &e)),
        };
        if only_if_master {
            let role = local_redis::from_reply(&redis::cmd("ROLE").query_async(&mut con).await);
            if role.is_not_master() {
                return Ok(Outcome::Skipped(role));
            }
        }
        for step in steps {
            match step {
                Step::Fence => fence(&mut con, addr).await?,
                Step::Lift => lift(&mut con, addr).await?,
                Step::ReplicaOf(m) => {
                    local_redis::send(&mut con, addr, &local_redis::replicaof(m)).await?;
                }
            }
        }
        Ok(Outcome::Done)
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(CommandError::timed_out(addr, timeout)))
}

async fn fence(con: &mut redis::aio::MultiplexedConnection, addr: &HostPort) -> Result<(), CommandError> {
    let to_write = get(con, addr, "min-replicas-to-write").await?;
    if decode(to_write).is_some() {
        return Ok(());
    }
    let lag = get(con, addr, "min-replicas-max-lag").await?;
    let fenced = encode(to_write, lag).map_err(|m| CommandError::refused(addr, m))?;
    // The lag first: with it at 0 Redis ignores min-replicas-to-write altogether.
    if lag == 0 {
        set(con, addr, "min-replicas-max-lag", LAG_FOR_FENCE).await?;
    }
    set(con, addr, "min-replicas-to-write", fenced).await
}

async fn lift(con: &mut redis::aio::MultiplexedConnection, addr: &HostPort) -> Result<(), CommandError> {
    let Some((to_write, lag_was_zero)) = decode(get(con, addr, "min-replicas-to-write").await?) else {
        return Ok(());
    };
    // Writes resume with this one; the lag after, since a lag of 0 would also let them through.
    set(con, addr, "min-replicas-to-write", to_write).await?;
    if lag_was_zero {
        set(con, addr, "min-replicas-max-lag", 0).await?;
    }
    Ok(())
}

/// Whether the fence mark is set, from a reply to `CONFIG GET min-replicas-to-write`; `None`
/// when the reply says nothing (CONFIG refused to an ACL user, renamed, …).
pub fn fenced_in(reply: &Value) -> Option<bool> {
    config_value(reply).map(|v| decode(v).is_some())
}

fn config_value(reply: &Value) -> Option<i64> {
    let fields = crate::sentinel::fields(reply)?;
    fields.first().and_then(|(_, v)| v.parse().ok())
}

async fn get(con: &mut redis::aio::MultiplexedConnection, addr: &HostPort, name: &str) -> Result<i64, CommandError> {
    let mut c = redis::cmd("CONFIG");
    c.arg("GET").arg(name);
    let reply = local_redis::send(con, addr, &c).await?;
    config_value(&reply).ok_or_else(|| CommandError::refused(addr, format!("CONFIG GET {name} gave no number")))
}

async fn set(
    con: &mut redis::aio::MultiplexedConnection,
    addr: &HostPort,
    name: &str,
    value: i64,
) -> Result<(), CommandError> {
    let mut c = redis::cmd("CONFIG");
    c.arg("SET").arg(name).arg(value);
    local_redis::send(con, addr, &c).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fenced_value_keeps_what_to_restore() {
        for (to_write, lag) in [(0, 10), (0, 0), (2, 10), (3, 0)] {
            let v = encode(to_write, lag).unwrap();
            assert!((MARK..=MAX).contains(&v), "{v}");
            assert_eq!(decode(v), Some((to_write, lag == 0)));
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(3), None);
        assert!(encode(MAX, 10).is_err(), "a value that cannot be kept is refused, not clipped");
        assert!(encode(-1, 10).is_err());
    }

    #[test]
    fn reads_config_get_in_both_protocols() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![b("min-replicas-to-write"), b(&(MARK + 4).to_string())]);
        assert_eq!(fenced_in(&resp2), Some(true));
        let resp3 = Value::Map(vec![(b("min-replicas-to-write"), b("0"))]);
        assert_eq!(fenced_in(&resp3), Some(false));
        assert_eq!(fenced_in(&Value::Array(vec![])), None, "CONFIG GET of an unknown or hidden name");
    }
}
