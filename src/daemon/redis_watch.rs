//! Watching Redis instances closely, for the core's evidence that no sentinel can forge:
//! - [`replica`]: the replica the leader chose (one a majority of the sentinels list) is polled
//!   with `ROLE` until it reports master. The poll is a round trip of well under a millisecond, so
//!   the VIP follows the promotion itself (early claim here, letting go on the old master's host)
//!   rather than Sentinel's next INFO poll, up to ~1 s later.
//! - [`local`]: the local master is held by an idle TCP connection (no credentials are sent). When
//!   that connection ends, a new one is tried at once: refused means the Redis is gone.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::core::Input;
use crate::access::Access;
use crate::config::HostPort;
use crate::local_redis::{self, Role};
use crate::policy::RoleSeen;

/// How long a chosen replica is polled at most (the core also stops it when the failover ends).
pub const WINDOW: Duration = Duration::from_secs(15);
/// Between two polls.
const SPACING: Duration = Duration::from_millis(1);
/// A connection attempt or a poll that takes longer counts as failed.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Between two connection attempts to a local master that refused the last one, for
/// [`GONE_CLOSELY`] after the first refusal.
const GONE_SPACING: Duration = Duration::from_millis(5);
/// How long a gone local master is tried every [`GONE_SPACING`]: its death is decided within
/// ~100 ms, and systemd restarts it within seconds.
const GONE_CLOSELY: Duration = Duration::from_secs(10);

/// Polls `replica` until it reports master ([`Input::Promoted`]), gives up after [`WINDOW`]
/// ([`Input::WatchEnded`]), or is aborted by the loop.
pub async fn replica(master: String, replica: HostPort, access: Access, tx: mpsc::Sender<Input>) {
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
                    let _ = tx.send(Input::Promoted { master, replica, polls }).await;
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
    let _ = tx.send(Input::WatchEnded { master, replica }).await;
}

/// Holds an idle connection to the local master `redis` and reports [`Input::Role`] with `Gone`
/// the moment a new connection is refused after the old one ended. Every attempt while it is
/// gone, and the first accepted after, is an [`Input::LocalProbe`] (fail-fast counts them).
/// Runs until aborted.
pub async fn local(master: String, redis: HostPort, tx: mpsc::Sender<Input>) {
    let mut buf = [0u8; 512];
    // When the refusals began: they are said once as a role, and every one as a probe.
    let mut gone_since: Option<Instant> = None;
    // The first accepted connection of a watch is a probe too: the Redis may have come back
    // while nothing watched it.
    let mut first = true;
    loop {
        let connected =
            tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((redis.host.as_str(), redis.port)));
        match connected.await {
            Ok(Ok(mut stream)) => {
                let (was_gone, was_first) = (gone_since.take().is_some(), std::mem::take(&mut first));
                if was_gone || was_first {
                    let probe = Input::LocalProbe { master: master.clone(), refused: false };
                    if tx.send(probe).await.is_err() {
                        return;
                    }
                }
                // Redis says nothing unasked: any read returning means the connection ended (the
                // process died, or it closed idle clients, or Sentinel's CLIENT KILL).
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let first = gone_since.is_none();
                let since = *gone_since.get_or_insert_with(Instant::now);
                let mut news = vec![Input::LocalProbe { master: master.clone(), refused: true }];
                if first {
                    let seen = RoleSeen {
                        addr: redis.clone(),
                        role: Role::Gone(format!("Redis at {redis}: connection refused")),
                        fenced: None,
                        at: Instant::now(),
                    };
                    news.insert(0, Input::Role { master: master.clone(), seen });
                }
                for input in news {
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
                // Often at first (a death is refusals over ~100 ms; a Redis restarted during the
                // failover must be fenced before clients find it), then now and then.
                let pause = if since.elapsed() < GONE_CLOSELY { GONE_SPACING } else { Duration::from_millis(100) };
                tokio::time::sleep(pause).await;
            }
            // Cannot tell (a timeout, no route): no evidence; try again shortly.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
