//! The local Redis's own word on its role, asked with `ROLE`.
//!
//! Sentinel's view lags the truth (it polls INFO about once a second) and can name a dead master
//! until the failover completes. Before binding, when another host claims a held VIP, and for early
//! claim, the daemon asks the Redis it would be serving. One probe serves all three.

use std::fmt;
use std::time::Duration;

use redis::Value;

use crate::access::Access;
use crate::config::HostPort;

/// What the Redis at an address says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `ROLE` says master.
    Master,
    /// `ROLE` says slave/replica (or sentinel).
    Replica,
    /// Nothing listens there (connection refused): that Redis is gone.
    Gone(String),
    /// No usable answer: a timeout (frozen, forking), an authentication or TLS failure, an odd
    /// reply. Evidence of nothing.
    Unknown(String),
}

impl Role {
    /// True when nothing serves there at all.
    pub fn is_gone(&self) -> bool {
        matches!(self, Role::Gone(_))
    }

    /// True on evidence that no master serves there: a replica, or nothing at all.
    pub fn is_not_master(&self) -> bool {
        matches!(self, Role::Replica | Role::Gone(_))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master => f.write_str("master"),
            Role::Replica => f.write_str("a replica"),
            Role::Gone(why) => write!(f, "gone: {why}"),
            Role::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}

/// Classifies a reply to `ROLE`.
pub fn from_reply(reply: &redis::RedisResult<Value>) -> Role {
    match reply {
        Ok(Value::Array(items)) => match items.first() {
            // "primary": Valkey's newer wording, should a server answer with it (8.1 says "master").
            Some(Value::BulkString(b)) if b == b"master" || b == b"primary" => Role::Master,
            Some(Value::SimpleString(s)) if s == "master" || s == "primary" => Role::Master,
            _ => Role::Replica,
        },
        Ok(other) => Role::Unknown(format!("unexpected reply {other:?}")),
        Err(e) => classify(e),
    }
}

/// An error is evidence that the Redis is gone only when nothing listens (connection refused). A
/// peer that accepts and then hangs up (a TLS port spoken to in plain text, a full server) is alive.
pub(crate) fn classify(e: &redis::RedisError) -> Role {
    let gone = e.is_connection_refusal();
    let text = crate::access::describe(e);
    if gone { Role::Gone(text) } else { Role::Unknown(text) }
}

/// Asks the Redis at `addr` for its role, within `timeout` for everything (connect, TLS, AUTH, ROLE).
pub async fn ask(addr: &HostPort, access: &Access, timeout: Duration) -> Role {
    let work = async {
        let mut con = access.connect(addr, timeout).await.map_err(|e| classify(&e))?;
        let reply: redis::RedisResult<Value> = redis::cmd("ROLE").query_async(&mut con).await;
        Ok::<Role, Role>(from_reply(&reply))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) | Ok(Err(r)) => r,
        Err(_) => Role::Unknown(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Like [`ask`], and whether a write fence is set there ([`crate::fence`]); `None` when it could not
/// be told (CONFIG refused to an ACL user, no answer). One round trip.
pub async fn ask_with_fence(addr: &HostPort, access: &Access, timeout: Duration) -> (Role, Option<bool>) {
    let work = async {
        let mut con = access.connect(addr, timeout).await.map_err(|e| (classify(&e), None))?;
        let mut pipe = redis::pipe();
        pipe.cmd("ROLE").cmd("CONFIG").arg("GET").arg("min-replicas-to-write");
        let replies: redis::RedisResult<Vec<Value>> = pipe.ignore_errors().query_async(&mut con).await;
        match replies {
            Ok(r) if r.len() == 2 => Ok((from_reply(&Ok(r[0].clone())), crate::fence::fenced_in(&r[1]))),
            Ok(r) => Ok((Role::Unknown(format!("{} replies to 2 questions", r.len())), None)),
            Err(e) => Ok((from_reply(&Err(e)), None)),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) | Ok(Err(r)) => r,
        Err(_) => (Role::Unknown(format!("no answer within {} ms", timeout.as_millis())), None),
    }
}

/// Sends one command to the Redis at `addr`, within `timeout` for everything.
pub async fn command(
    addr: &HostPort,
    access: &Access,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<Value, CommandError> {
    let work = async {
        let mut con = access.connect(addr, timeout).await.map_err(|e| CommandError::from_redis(addr, &e))?;
        send(&mut con, addr, cmd).await
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(CommandError::timed_out(addr, timeout)))
}

/// What [`steps`] did.
#[derive(Debug)]
pub enum Steps {
    /// Every step was answered.
    Sent,
    /// Nothing was sent: the Redis is gone, or (when only a master was wanted) not a master.
    Skipped(Role),
}

/// Sends `cmds` in order on one connection, within `timeout` for everything. With
/// `only_if_master`, asks `ROLE` on it first and sends nothing to a replica; a Redis that is gone
/// (connection refused) gets nothing either, as it takes no writes.
pub async fn steps(
    addr: &HostPort,
    access: &Access,
    cmds: &[redis::Cmd],
    only_if_master: bool,
    timeout: Duration,
) -> Result<Steps, CommandError> {
    let work = async {
        let mut con = match access.connect(addr, timeout).await {
            Ok(c) => c,
            Err(e) if e.is_connection_refusal() => return Ok(Steps::Skipped(classify(&e))),
            Err(e) => return Err(CommandError::from_redis(addr, &e)),
        };
        if only_if_master {
            let role = from_reply(&redis::cmd("ROLE").query_async(&mut con).await);
            if role.is_not_master() {
                return Ok(Steps::Skipped(role));
            }
        }
        for cmd in cmds {
            send(&mut con, addr, cmd).await?;
        }
        Ok(Steps::Sent)
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(CommandError::timed_out(addr, timeout)))
}

/// One command on an open connection; an error reply is a failure too.
pub(crate) async fn send(
    con: &mut redis::aio::MultiplexedConnection,
    addr: &HostPort,
    cmd: &redis::Cmd,
) -> Result<Value, CommandError> {
    match cmd.query_async::<Value>(con).await {
        Ok(Value::ServerError(e)) => Err(CommandError {
            gone: false,
            message: format!("Redis at {addr} refused: {}", e.details().unwrap_or(e.code())),
        }),
        Ok(v) => Ok(v),
        Err(e) => Err(CommandError::from_redis(addr, &e)),
    }
}

/// Why a command to a Redis failed.
#[derive(Debug)]
pub struct CommandError {
    /// Nothing listens there (connection refused): that Redis is gone.
    pub gone: bool,
    message: String,
}

impl CommandError {
    pub(crate) fn from_redis(addr: &HostPort, e: &redis::RedisError) -> CommandError {
        CommandError {
            gone: e.is_connection_refusal(),
            message: format!("Redis at {addr}: {}", crate::access::describe(e)),
        }
    }

    pub(crate) fn timed_out(addr: &HostPort, timeout: Duration) -> CommandError {
        CommandError { gone: false, message: format!("Redis at {addr}: no answer within {} ms", timeout.as_millis()) }
    }

    pub(crate) fn refused(addr: &HostPort, why: impl fmt::Display) -> CommandError {
        CommandError { gone: false, message: format!("Redis at {addr}: {why}") }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// `CLIENT PAUSE <ms> WRITE`: the Redis acknowledges no write until the pause ends or is lifted;
/// paused writes run after it, and get READONLY if the Redis became a replica meanwhile.
pub fn pause_writes(bound: Duration) -> redis::Cmd {
    let mut c = redis::cmd("CLIENT");
    c.arg("PAUSE").arg(bound.as_millis() as u64).arg("WRITE");
    c
}

/// `CLIENT UNPAUSE`.
pub fn unpause() -> redis::Cmd {
    let mut c = redis::cmd("CLIENT");
    c.arg("UNPAUSE");
    c
}

/// `REPLICAOF host port`.
pub fn replicaof(master: &HostPort) -> redis::Cmd {
    let mut c = redis::cmd("REPLICAOF");
    c.arg(&master.host).arg(master.port);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_replies() {
        let master = Ok(Value::Array(vec![Value::BulkString(b"master".to_vec()), Value::Int(0), Value::Array(vec![])]));
        assert_eq!(from_reply(&master), Role::Master);
        let replica = Ok(Value::Array(vec![Value::BulkString(b"slave".to_vec())]));
        assert_eq!(from_reply(&replica), Role::Replica);
        let refused: redis::RedisResult<Value> =
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert!(from_reply(&refused).is_gone());
        let timeout: redis::RedisResult<Value> = Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        assert!(matches!(from_reply(&timeout), Role::Unknown(_)));
    }
}
