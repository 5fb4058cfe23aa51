//! The local Redis's own word on its role, asked with `ROLE`.
//!
//! Sentinel's view lags the truth (it polls INFO about once a second) and can name a dead master
//! until the failover completes. Before claiming, and before defending a VIP against another
//! claimant, the daemon asks the Redis it would be serving.

use std::time::Duration;

use redis::Value;

/// What the Redis at an address says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `ROLE` says master.
    Master,
    /// `ROLE` says slave/replica (or sentinel).
    NotMaster,
    /// It answered, but not with a role (e.g. NOAUTH): alive, role unknown.
    Alive(String),
    /// No answer: refused, reset, or no reply within the time limit (dead or frozen).
    Down(String),
}

impl Role {
    /// True when this Redis may be served: it is master, or alive and not known to be otherwise.
    pub fn may_serve(&self) -> bool {
        matches!(self, Role::Master | Role::Alive(_))
    }
}

/// Classifies a reply to `ROLE`.
pub fn from_reply(reply: &redis::RedisResult<Value>) -> Role {
    match reply {
        Ok(Value::Array(items)) => match items.first() {
            Some(Value::BulkString(b)) if b == b"master" => Role::Master,
            Some(Value::SimpleString(s)) if s == "master" => Role::Master,
            _ => Role::NotMaster,
        },
        Ok(other) => Role::Alive(format!("unexpected reply {other:?}")),
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) || e.code().is_some() => {
            Role::Alive(e.to_string())
        }
        Err(e) => Role::Down(e.to_string()),
    }
}

/// Asks the Redis at `host:port` for its role, within `timeout`.
pub async fn ask(host: &str, port: u16, timeout: Duration) -> Role {
    let work = async {
        let client = redis::Client::open((host, port)).map_err(|e| Role::Down(e.to_string()))?;
        let mut con = client.get_multiplexed_async_connection().await.map_err(|e| Role::Down(e.to_string()))?;
        let reply: redis::RedisResult<Value> = redis::cmd("ROLE").query_async(&mut con).await;
        Ok::<Role, Role>(from_reply(&reply))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) | Ok(Err(r)) => r,
        Err(_) => Role::Down(format!("no answer within {} ms", timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_replies() {
        let master = Ok(Value::Array(vec![Value::BulkString(b"master".to_vec()), Value::Int(0), Value::Array(vec![])]));
        assert_eq!(from_reply(&master), Role::Master);
        let replica = Ok(Value::Array(vec![Value::BulkString(b"slave".to_vec())]));
        assert_eq!(from_reply(&replica), Role::NotMaster);
        assert!(!Role::NotMaster.may_serve() && !Role::Down(String::new()).may_serve());
        assert!(Role::Alive(String::new()).may_serve() && Role::Master.may_serve());
        let io: redis::RedisResult<Value> = Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert!(matches!(from_reply(&io), Role::Down(_)));
    }
}
