//! Sentinel's TILT mode, as `INFO sentinel` reports it. A sentinel whose timer jumped more than
//! 2 s, or ran backwards (a VM pause, a stalled disk; both figures are defaults), enters TILT
//! until `tilt-period` (30 s by default) has passed without another jump. It still answers,
//! votes and takes new configs, and still replies `+OK` to `SENTINEL FAILOVER`, but detects
//! nothing and fails nothing over, so a failover asked of it would only start, unelected, when
//! TILT ends, perhaps racing one asked of another sentinel.

use std::time::Duration;

use crate::access::{self, Access};
use crate::config::SentinelAddr;

/// Whether `INFO sentinel` says TILT, and for how long so far (seconds), when it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tilt {
    /// `sentinel_tilt:0`, or no such field (it was always there; an unknown reply is not TILT).
    No,
    /// `sentinel_tilt:1`, with `sentinel_tilt_since_seconds` when the server reports it.
    Since(Option<u64>),
}

/// Reads TILT from an `INFO sentinel` reply.
pub fn parse(info: &str) -> Tilt {
    let field = |name: &str| {
        info.lines().find_map(|l| l.trim_end().strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::to_string))
    };
    match field("sentinel_tilt").as_deref() {
        Some("1") => Tilt::Since(field("sentinel_tilt_since_seconds").and_then(|v| v.parse().ok())),
        _ => Tilt::No,
    }
}

/// Asks `INFO sentinel` on a connection; an error reply is the server's (an ACL user without
/// `+info` gets `NOPERM`).
pub async fn query(con: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<Tilt> {
    let info: String = redis::cmd("INFO").arg("sentinel").query_async(con).await?;
    Ok(parse(&info))
}

/// Connects to `sentinel` and asks it, all within `timeout` (for `vipctl doctor`).
pub async fn ask(sentinel: &SentinelAddr, access: &Access, timeout: Duration) -> Result<Tilt, String> {
    let work = async {
        let mut con = access.connect(sentinel, timeout).await?;
        query(&mut con).await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(access::describe(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

impl std::fmt::Display for Tilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tilt::No => write!(f, "not in TILT"),
            Tilt::Since(since) => {
                write!(f, "TILT: the sentinel is in TILT mode")?;
                if let Some(s) = since {
                    write!(f, " for {s} s")?;
                }
                write!(
                    f,
                    " and fails nothing over until it leaves it (tilt-period, 30 s by default, after its last timer jump)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tilt_and_its_age() {
        let info = "# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:1\r\nsentinel_tilt_since_seconds:7\r\n";
        assert_eq!(parse(info), Tilt::Since(Some(7)));
        assert!(parse(info).to_string().contains("for 7 s"));
    }

    #[test]
    fn an_older_server_without_the_age_is_still_tilt() {
        assert_eq!(parse("sentinel_tilt:1\r\nsentinel_running_scripts:0\r\n"), Tilt::Since(None));
    }

    #[test]
    fn not_tilted_and_unknown_replies_are_not_tilt() {
        assert_eq!(parse("sentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\n"), Tilt::No);
        assert_eq!(parse(""), Tilt::No);
        // A prefix of another field's name is not the field.
        assert_eq!(parse("sentinel_tilt_since_seconds:1\r\n"), Tilt::No);
        assert_eq!(parse("ERR nonsense sentinel_tilt:1"), Tilt::No);
    }
}
