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
use tokio::net::TcpListener;

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

/// Serves `GET /metrics` and `GET /healthz` (200 while the main loop ran within `stale`, else 503).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stale: Duration) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await else { return };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => {
                    ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render())
                }
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
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
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
}
