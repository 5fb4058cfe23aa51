//! Early claim: when the leader selects this host's replica for promotion, poll it with `ROLE`
//! until it reports master. The poll is a local round trip of well under a millisecond, so the VIP
//! follows the promotion itself rather than Sentinel's next INFO poll (up to ~1 s later).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::access::Access;
use crate::config::HostPort;
use crate::local_redis::{self, Role};

use super::Signal;

/// How long the selected replica is polled for role:master.
pub const WINDOW: Duration = Duration::from_secs(15);
/// Between two polls.
const SPACING: Duration = Duration::from_millis(1);
/// A connection attempt or a poll that takes longer counts as failed.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Polls `replica` until it reports master (then sends [`Signal::Promoted`]), gives up after
/// [`WINDOW`] ([`Signal::EarlyGaveUp`]), or is aborted by the loop (the failover aborted).
pub async fn watch(master: String, replica: HostPort, access: Access, tx: mpsc::Sender<Signal>) {
    let start = Instant::now();
    let mut polls = 0u32;
    // Failed polls in a row: the first is expected (see below), more mean a real problem.
    let mut failures = 0u32;
    while start.elapsed() < WINDOW {
        let Ok(mut con) = access.connect(&replica, TIMEOUT).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        while start.elapsed() < WINDOW {
            polls += 1;
            let reply = tokio::time::timeout(TIMEOUT, redis::cmd("ROLE").query_async(&mut con)).await;
            let role = match reply {
                Ok(r) => local_redis::from_reply(&r),
                Err(_) => Role::Unknown("no answer".into()),
            };
            match role {
                Role::Master => {
                    let _ = tx.send(Signal::Promoted { master, replica, polls }).await;
                    return;
                }
                Role::Replica => {
                    failures = 0;
                    tokio::time::sleep(SPACING).await;
                }
                // Sentinel promotes with SLAVEOF NO ONE and then CLIENT KILL TYPE normal in one
                // transaction, so this connection dies at the very moment of interest: reconnect
                // at once. Failures in a row (an authentication error, say) will not pass by
                // polling faster.
                Role::Gone(_) | Role::Unknown(_) => {
                    failures += 1;
                    if failures > 1 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    break;
                }
            }
        }
    }
    let _ = tx.send(Signal::EarlyGaveUp { master }).await;
}
