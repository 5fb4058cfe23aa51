//! A live view of each sentinel: one long-lived task per configured sentinel holds a connection
//! for questions and one for its events, and reports every answer (with the time it arrived) and
//! every failure to the daemon's loop at once. The loop decides from the latest answers; it never
//! waits for a sentinel, so one that is cut off costs nothing but its own task's time.
//!
//! Between full questions the task sends `PING` on the same connection: every `heartbeat` while
//! this host holds VIPs and the sentinel is on another host (fast, so that a holder cut off from
//! the majority knows within about 3 × `heartbeat`, and fences its Redis), every probe period
//! otherwise. A PING answered says the
//! sentinel is alive and its last answer still stands (its events would have said otherwise);
//! one unanswered in time makes it unreachable at once. Full answers then come on every event,
//! nudge and reconnect, and every ten probe periods, which keeps the cost of many masters low.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};

use crate::access::{self, Access};
use crate::config::SentinelAddr;
use crate::sentinel::{self, Answer, Listed, events};

use super::core::Input;

/// How often a sentinel is asked even without events, and how quickly a lost one is retried.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between questions when nothing happens (with heartbeats: between PINGs while this host
    /// holds nothing, and a tenth of the time between full questions).
    pub probe: Duration,
    /// For one question, and for one connection attempt (TCP, TLS, AUTH): whatever the probe
    /// period, a slow or distant sentinel gets this long.
    pub timeout: Duration,
    /// Between PINGs while this host holds VIPs; zero: no heartbeats, full questions every probe.
    pub heartbeat: Duration,
}

impl Timing {
    /// How long a fast heartbeat may go unanswered: three periods, and never under 30 ms.
    pub fn silence(&self) -> Duration {
        (self.heartbeat * 3).max(Duration::from_millis(30))
    }

    /// Between full questions when all is well.
    fn refresh(&self) -> Duration {
        if self.heartbeat.is_zero() { self.probe } else { self.probe * 10 }
    }
}

/// Whether this sentinel's heartbeats go fast now (this host holds VIPs, and the sentinel is on
/// another host: one on this host cannot be cut off from it).
pub type Fast = Arc<AtomicBool>;

/// Masters asked about in one pipeline.
const MASTERS_PER_QUESTION: usize = 32;

/// Replica lists are asked with every this many rounds of questions, besides the first round after
/// a (re)connect and every round an event asks for them: they change far less often than masters.
const REPLICAS_EVERY: u32 = 10;

/// The handle the loop keeps for one sentinel's task.
pub struct Handle {
    nudge: Arc<Notify>,
    replicas: Arc<AtomicBool>,
    fast: Fast,
}

impl Handle {
    /// Ask again now (an event anywhere, a hook call), with the replica lists when `replicas`:
    /// coalesces, never queues up.
    pub fn nudge(&self, replicas: bool) {
        if replicas {
            self.replicas.store(true, Ordering::Relaxed);
        }
        self.nudge.notify_one();
    }

    /// Heartbeats fast (`heartbeat_ms`) or at the probe period.
    pub fn fast(&self, on: bool) {
        // Turning fast wakes the task: it would otherwise finish the slow wait it is in (up to a
        // probe period) before its first fast PING, and a cut just after a claim would go unseen.
        if !self.fast.swap(on, Ordering::Relaxed) && on {
            self.nudge.notify_one();
        }
    }
}

/// Starts the tasks for `sentinel`, which serves `masters`; they run until the loop is gone.
pub fn spawn(
    sentinel: SentinelAddr,
    masters: Vec<String>,
    access: Access,
    timing: Timing,
    tx: mpsc::Sender<Input>,
) -> Handle {
    let handle =
        Handle { nudge: Arc::new(Notify::new()), replicas: Arc::new(AtomicBool::new(true)), fast: Fast::default() };
    let following = Arc::new(AtomicBool::new(false));
    let task = Task {
        sentinel: sentinel.clone(),
        masters,
        access: access.clone(),
        timing,
        tx: tx.clone(),
        nudge: handle.nudge.clone(),
        want_replicas: handle.replicas.clone(),
        fast: handle.fast.clone(),
        following: following.clone(),
    };
    tokio::spawn(task.questions());
    tokio::spawn(follow(sentinel, access, timing, tx, following));
    handle
}

/// What one sentinel's question task works with.
struct Task {
    sentinel: SentinelAddr,
    masters: Vec<String>,
    access: Access,
    timing: Timing,
    tx: mpsc::Sender<Input>,
    nudge: Arc<Notify>,
    want_replicas: Arc<AtomicBool>,
    fast: Fast,
    /// Its events are followed now: without them, PINGs cannot vouch for an answer.
    following: Arc<AtomicBool>,
}

/// Asks `sentinel` about every master it serves, in one pipeline: at start, on every nudge, on
/// reconnect and every probe period. Each outcome goes to the loop as it comes.
impl Task {
    async fn questions(self) {
        let Task { sentinel, masters, access, timing, tx, nudge, want_replicas, fast, following } = &self;
        let (sentinel, masters, access, timing) = (sentinel, masters, access, *timing);
        let mut con: Option<redis::aio::MultiplexedConnection> = None;
        let mut failures = 0u32;
        let mut round = 0u32;
        loop {
            round = round.wrapping_add(1);
            let with_replicas = want_replicas.swap(false, Ordering::Relaxed) || round.is_multiple_of(REPLICAS_EVERY);
            let outcome = async {
                if con.is_none() {
                    let c = match access.connect(sentinel, timing.timeout).await {
                        Ok(c) => c,
                        Err(e) => {
                            let why = access::connect_error(sentinel, &e, access.tls.is_some()).await;
                            return Err(format!("sentinel {sentinel}: {why}"));
                        }
                    };
                    con = Some(c);
                }
                let c = con.as_mut().expect("connected above");
                // In slices: one reply about hundreds of masters would be parsed into megabytes at once.
                let mut answers = Vec::with_capacity(masters.len());
                for slice in masters.chunks(MASTERS_PER_QUESTION) {
                    match tokio::time::timeout(timing.timeout, sentinel::query_with(c, sentinel, slice, with_replicas))
                        .await
                    {
                        Ok(Ok(a)) => answers.extend(a),
                        Ok(Err(e)) => return Err(format!("{e:#}")),
                        Err(_) => {
                            return Err(format!(
                                "sentinel {sentinel}: no answer within {} ms",
                                timing.timeout.as_millis()
                            ));
                        }
                    }
                }
                Ok(answers)
            }
            .await;
            let signal = match outcome {
                Ok(answered) => {
                    failures = 0;
                    let mut answers: Vec<(String, Answer)> = Vec::with_capacity(masters.len());
                    let mut replicas: Vec<(String, Vec<Listed>)> = Vec::new();
                    for (m, (a, listed)) in masters.iter().zip(answered) {
                        answers.push((m.clone(), a));
                        if let Some(l) = listed {
                            replicas.push((m.clone(), l));
                        }
                    }
                    Input::Answers { sentinel: sentinel.clone(), answers, replicas }
                }
                Err(why) => {
                    // A broken or hung connection is dropped; the next attempt connects afresh, and
                    // asks for the replica lists again.
                    con = None;
                    failures = failures.saturating_add(1);
                    if with_replicas {
                        want_replicas.store(true, Ordering::Relaxed);
                    }
                    Input::Unreachable { sentinel: sentinel.clone(), why }
                }
            };
            if tx.send(signal).await.is_err() {
                return;
            }
            if failures > 0 {
                // Retry soon (a healed partition is noticed quickly), backing off while it lasts.
                let backoff =
                    Duration::from_millis(100).saturating_mul(1 << failures.min(4)).min(Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(backoff.min(timing.probe) + jitter(backoff / 4)) => {}
                    _ = nudge.notified() => {}
                }
                continue;
            }
            // Until the next full question: PINGs say the sentinel is alive and its answer stands.
            let vouching = !timing.heartbeat.is_zero() && following.load(Ordering::Relaxed);
            let next = tokio::time::Instant::now() + if vouching { timing.refresh() } else { timing.probe };
            let mut told_alive = tokio::time::Instant::now();
            loop {
                let fast_now = fast.load(Ordering::Relaxed);
                let period = if fast_now { timing.heartbeat } else { timing.probe };
                // Asked on every turn, not once: at start-up the answers come before the
                // subscription, and a daemon that claimed then would not PING until its next
                // full question, so a cut in its first second went unnoticed for up to a second.
                let ping = !timing.heartbeat.is_zero() && following.load(Ordering::Relaxed) && con.is_some();
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = nudge.notified() => break,
                    _ = tokio::time::sleep(period), if ping => {
                        let within = if fast_now { timing.silence() } else { timing.timeout };
                        let c = con.as_mut().expect("checked");
                        let pong = tokio::time::timeout(within, redis::cmd("PING").query_async::<redis::Value>(c)).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            con = None;
                            failures = 1;
                            let why = format!("sentinel {sentinel}: no answer to a PING within {} ms", within.as_millis());
                            if tx.send(Input::Unreachable { sentinel: sentinel.clone(), why }).await.is_err() {
                                return;
                            }
                            break;
                        }
                        if told_alive.elapsed() >= timing.probe {
                            told_alive = tokio::time::Instant::now();
                            if tx.send(Input::Alive(sentinel.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Follows `sentinel`'s events forever, reconnecting with capped backoff and jitter, so that a
/// sentinel restart, TILT or a partition only delays events, never stops the daemon.
async fn follow(
    sentinel: SentinelAddr,
    access: Access,
    timing: Timing,
    tx: mpsc::Sender<Input>,
    following: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut was_down = false;
    loop {
        match subscribe(&sentinel, &access, timing.timeout).await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                was_down = false;
                following.store(true, Ordering::Relaxed);
                if tx.send(Input::Following(sentinel.clone())).await.is_err() {
                    return;
                }
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    let channel = msg.get_channel_name().to_string();
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(event) = events::parse(&channel, &payload)
                        && tx.send(Input::Event { sentinel: sentinel.clone(), event }).await.is_err()
                    {
                        return;
                    }
                }
                following.store(false, Ordering::Relaxed);
                if tx.send(Input::EventsLost(sentinel.clone(), "connection closed".into())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !was_down {
                    tracing::warn!("cannot follow the events of sentinel {sentinel}: {e}; retrying with backoff");
                    was_down = true;
                }
            }
        }
        tokio::time::sleep(backoff + jitter(backoff / 2)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(s: &SentinelAddr, access: &Access, timeout: Duration) -> Result<redis::aio::PubSub, String> {
    let work = async {
        let client = access.client(s)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe("*").await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(access::describe(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// A pseudo-random duration below `max`, so that many daemons do not reconnect in lockstep.
fn jitter(max: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let x = (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Duration::from_nanos(x % (max.as_nanos() as u64).max(1))
}
