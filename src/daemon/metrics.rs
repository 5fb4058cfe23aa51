//! Prometheus metrics and a health endpoint for `vipctl watch`, served on `[watch] metrics_listen`.
//! The exposition format comes from the prometheus-client crate; the HTTP side is two GET routes,
//! small enough not to need an HTTP framework.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

type Labels = Vec<(String, String)>;

/// Every metric the daemon keeps.
pub struct Metrics {
    registry: Registry,
    /// 1 when the VIP is bound here.
    pub vip_bound: Family<Labels, Gauge>,
    /// Sentinels that answered in the last round.
    pub sentinels_reachable: Family<Labels, Gauge>,
    /// Sentinels configured.
    pub sentinels_configured: Family<Labels, Gauge>,
    /// Address changes made (claims and releases).
    pub transitions: Family<Labels, Counter>,
    /// Unix time of the last announcement sent.
    pub last_announce: Family<Labels, Gauge>,
    /// Rounds that ended in an error.
    pub reconcile_errors: Family<Labels, Counter>,
    /// Claims on held VIPs seen from other MACs.
    pub conflicts: Family<Labels, Counter>,
    /// Notify commands that failed.
    pub notify_failures: Family<Labels, Counter>,
    /// Write fences placed on the local Redis during failovers toward another host.
    pub fences: Family<Labels, Counter>,
    /// Fail-fast's decisions on deaths of the local master's Redis, by outcome: `trigger` per
    /// sentinel asked, or the refusal's code per death.
    pub fail_fast: Family<Labels, Counter>,
    /// 1 when the provider's API names this host as the holder of the master's VIPs (masters with
    /// a cloud table only).
    pub vip_delivered: Family<Labels, Gauge>,
    /// Calls to a provider's API, by call (`deliver`, `check`) and outcome (`delivered`,
    /// `elsewhere`, `error`).
    pub cloud_calls: Family<Labels, Counter>,
    /// Unix time (ms) of the main loop's last round, for the health endpoint.
    pub last_round_ms: AtomicU64,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vipctl");
        let m = Metrics {
            vip_bound: Family::default(),
            sentinels_reachable: Family::default(),
            sentinels_configured: Family::default(),
            transitions: Family::default(),
            last_announce: Family::default(),
            reconcile_errors: Family::default(),
            conflicts: Family::default(),
            notify_failures: Family::default(),
            fences: Family::default(),
            fail_fast: Family::default(),
            vip_delivered: Family::default(),
            cloud_calls: Family::default(),
            last_round_ms: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register("vip_bound", "1 when the VIP is bound on this host", m.vip_bound.clone());
        registry.register(
            "sentinels_reachable",
            "Sentinels that answered in the last round",
            m.sentinels_reachable.clone(),
        );
        registry.register(
            "sentinels_configured",
            "Sentinels configured for the master",
            m.sentinels_configured.clone(),
        );
        registry.register("transitions", "Claims and releases made on this host", m.transitions.clone());
        registry.register(
            "last_announce_timestamp_seconds",
            "Unix time of the last announcement",
            m.last_announce.clone(),
        );
        registry.register("reconcile_errors", "Rounds that ended in an error", m.reconcile_errors.clone());
        registry.register("conflicts", "Claims on held VIPs seen from other MACs", m.conflicts.clone());
        registry.register("notify_failures", "Notify commands that failed or timed out", m.notify_failures.clone());
        registry.register("fences", "Write fences placed on the local Redis for failovers elsewhere", m.fences.clone());
        registry.register(
            "fail_fast",
            "Deaths of the local master's Redis that fail-fast decided on, by outcome (trigger, or why not)",
            m.fail_fast.clone(),
        );
        registry.register(
            "vip_delivered",
            "1 when the cloud provider's API names this host as the holder of the master's VIPs (0: bound, not delivered)",
            m.vip_delivered.clone(),
        );
        registry.register(
            "cloud_calls",
            "Calls to the cloud provider's API, by call and outcome",
            m.cloud_calls.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Labels for a master.
    pub fn master(name: &str) -> Labels {
        vec![("master".into(), name.into())]
    }

    /// Labels for one VIP of a master.
    pub fn vip(name: &str, vip: &str) -> Labels {
        vec![("master".into(), name.into()), ("vip".into(), vip.into())]
    }

    /// Records that the main loop is alive now.
    pub fn tick(&self) {
        self.last_round_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix time in seconds, for timestamp gauges.
pub fn now_secs() -> i64 {
    (now_ms() / 1000) as i64
}

/// Connections served at once; more are closed as soon as they are accepted. Scrapers ask one at a
/// time: the cap only keeps idle connections from using up the descriptors the daemon needs to
/// take locks, claim, release and announce.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client has to send its request, and then to take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` and `GET /healthz` (200 while the main loop ran within `stale`, else 503),
/// to at most [`MAX_CONNECTIONS`] clients at once.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stale: Duration) {
    serve_with(listener, metrics, stale, IO_TIMEOUT).await
}

/// [`serve`] with the time a client has for each of its request and the reply.
async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, stale: Duration, io_timeout: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Full: closed at once (dropped), so that the descriptor is ours only for this moment.
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            answer(stream, &metrics, stale, io_timeout).await;
            drop(permit);
        });
    }
}

/// Reads one request and writes its answer, each within `io_timeout`.
async fn answer(mut stream: TcpStream, metrics: &Metrics, stale: Duration, io_timeout: Duration) {
    let mut buf = [0u8; 2048];
    let Ok(Ok(n)) = tokio::time::timeout(io_timeout, stream.read(&mut buf)).await else { return };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render()),
        "/healthz" => {
            let age = now_ms().saturating_sub(metrics.last_round_ms.load(Ordering::Relaxed));
            if age <= stale.as_millis() as u64 {
                ("200 OK", "text/plain", "ok\n".to_string())
            } else {
                ("503 Service Unavailable", "text/plain", format!("main loop silent for {age} ms\n"))
            }
        }
        _ => ("404 Not Found", "text/plain", "try /metrics or /healthz\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let reply = [head.as_bytes(), body.as_bytes()].concat();
    // A client that does not read its reply must not keep the connection (and a slot) forever.
    let _ = tokio::time::timeout(io_timeout, stream.write_all(&reply)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_metrics() {
        let m = Metrics::new();
        m.vip_bound.get_or_create(&Metrics::vip("mymaster", "198.51.100.100/24")).set(1);
        m.transitions.get_or_create(&Metrics::master("mymaster")).inc();
        let text = m.render();
        assert!(text.contains("vipctl_vip_bound{master=\"mymaster\",vip=\"198.51.100.100/24\"} 1"), "{text}");
        assert!(text.contains("vipctl_transitions_total{master=\"mymaster\"} 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    /// The descriptors of this process that are the server's side of a TCP connection on local
    /// `port` (not the listener): /proc/self/fd matched to /proc/net/tcp by socket inode.
    fn server_side_descriptors(port: u16) -> usize {
        let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
            .collect();
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        tcp.lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
                // 0A: LISTEN.
                local_port == Some(port) && f[3] != "0A" && ours.contains(f[9])
            })
            .count()
    }

    async fn get(port: u16, path: &str) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await??;
        Ok(out)
    }

    #[tokio::test]
    async fn idle_connections_hold_at_most_a_few_descriptors_and_time_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let timeout = Duration::from_millis(400);
        tokio::spawn(serve_with(listener, Arc::new(Metrics::new()), Duration::from_secs(60), timeout));
        assert!(get(port, "/metrics").await.unwrap().starts_with("HTTP/1.1 200 OK"));

        // Idle clients that never send a request (4300 of them held the daemon at its file limit).
        let mut idle = Vec::new();
        for _ in 0..100 {
            idle.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = server_side_descriptors(port);
        assert!(held <= MAX_CONNECTIONS + 2, "the server holds {held} descriptors for 100 idle clients");
        // Those past the cap were closed at once, long before the timeout.
        let mut buf = [0u8; 16];
        let last = idle.last_mut().unwrap();
        let n = tokio::time::timeout(Duration::from_millis(200), last.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "an excess connection was kept open: {n:?}");

        // Once the idle ones time out, the server holds nothing and answers again.
        tokio::time::sleep(timeout + Duration::from_millis(200)).await;
        assert_eq!(server_side_descriptors(port), 0, "idle connections outlived their timeout");
        let reply = get(port, "/metrics").await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.trim_end().ends_with("# EOF"), "{reply}");
        drop(idle);
    }
}
