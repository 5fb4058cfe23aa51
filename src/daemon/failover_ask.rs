//! Fail-fast's edge: asking one sentinel for `SENTINEL FAILOVER` ([`core::AskOutcome`] says what
//! came of it). The core decides whom to ask and when; this only talks to the sentinel.

use std::time::Duration;

use super::core;
use crate::access::Access;
use crate::config::SentinelAddr;

/// Sends `SENTINEL FAILOVER` and tells an error reply (the sentinel refused) from no answer (it
/// may have started). A sentinel in TILT is not asked: it would say `+OK` and do nothing until it
/// leaves TILT, then fail over unelected, racing whatever the next one asked does.
pub async fn ask(master: &str, sentinel: &SentinelAddr, access: &Access, timeout: Duration) -> core::AskOutcome {
    use crate::sentinel::tilt::{self, Tilt};
    let work = async {
        let mut con = access.connect(sentinel, timeout).await?;
        match tilt::query(&mut con).await {
            Ok(Tilt::No) => {}
            Ok(t) => return Ok(Err(t)),
            // No reason not to ask (asked as before), but TILT goes unseen: say how to mend it.
            Err(e) => tracing::warn!(
                "sentinel {sentinel} refused INFO sentinel ({}): fail-fast cannot tell whether it is in TILT; \
                 allow its ACL user `+info`",
                crate::access::describe(&e)
            ),
        }
        redis::cmd("SENTINEL").arg("FAILOVER").arg(master).query_async::<redis::Value>(&mut con).await?;
        Ok::<_, redis::RedisError>(Ok(con))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(Err(tilt))) => core::AskOutcome::Refused(tilt.to_string()),
        Ok(Ok(Ok(mut con))) => {
            // TILT begins in Sentinel's timer, which may run between the two commands (a sentinel
            // waking from a stall answers what was queued first). Its failover then starts when
            // TILT ends; asking another now would race it, so it stays accepted, and is said.
            if let Ok(Ok(t @ Tilt::Since(_))) = tokio::time::timeout(timeout, tilt::query(&mut con)).await {
                tracing::warn!(
                    "master `{master}`: sentinel {sentinel} accepted SENTINEL FAILOVER and is now in TILT ({t}): \
                     its failover starts when TILT ends"
                );
            }
            core::AskOutcome::Accepted
        }
        Ok(Err(e)) if e.code().is_some() => {
            core::AskOutcome::Refused(format!("{} {}", e.code().unwrap_or_default(), e.detail().unwrap_or_default()))
        }
        Ok(Err(e)) => core::AskOutcome::Unknown(format!("sentinel {sentinel}: {}", crate::access::describe(&e))),
        Err(_) => {
            core::AskOutcome::Unknown(format!("sentinel {sentinel}: no answer within {} ms", timeout.as_millis()))
        }
    }
}
