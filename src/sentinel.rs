//! Asking Redis Sentinel who the master is, and weighing the answers.
//!
//! Answers are weighed by config epoch, not by head count: during a failover the leader already
//! reports the promoted replica (with the new epoch) while the other sentinels still report the old
//! master until a hello message reaches them. A majority vote at that moment would pick the old
//! master and undo the failover; the highest epoch is the newest decision Sentinel has made, and it
//! is exactly how sentinels reconcile among themselves.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};

use crate::config::{SentinelAddr, SentinelAuth, SentinelTls};

/// A master's address as Sentinel reports it (the host may be a name with `announce-hostnames`).
pub type MasterAddr = crate::config::HostPort;

/// What one sentinel said about one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It knows the master: here is its address and the config epoch of that knowledge.
    Master {
        /// The master's address.
        addr: MasterAddr,
        /// The master's config epoch on that sentinel.
        epoch: u64,
        /// The master's flags on that sentinel (`master`, `s_down`, `o_down`, …).
        flags: String,
        /// The master's `down-after-milliseconds` on that sentinel, when it said.
        down_after_ms: Option<u64>,
    },
    /// It does not monitor a master by that name.
    Unknown,
    /// It could not be asked (down, timeout, auth refused, …).
    Unreachable(String),
}

/// The sentinels' combined view of one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Each configured sentinel with its answer, in config order.
    pub answers: Vec<(SentinelAddr, Answer)>,
}

/// The conclusion drawn from a [`View`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The newest answer: the master at the highest config epoch.
    Master {
        /// Address.
        addr: MasterAddr,
        /// Its config epoch.
        epoch: u64,
        /// How many sentinels report exactly this master at this epoch.
        agreeing: usize,
    },
    /// Sentinels at the same highest epoch disagree; this should not happen, so trust nobody.
    Conflict(u64),
    /// No sentinel answered with a master.
    NoAnswer,
}

impl View {
    /// How many sentinels answered at all (with a master or "unknown").
    pub fn reachable(&self) -> usize {
        self.answers.iter().filter(|(_, a)| !matches!(a, Answer::Unreachable(_))).count()
    }

    /// Weighs the answers: the highest config epoch wins (see the module doc for why).
    pub fn verdict(&self) -> Verdict {
        let masters: Vec<(&MasterAddr, u64)> = self
            .answers
            .iter()
            .filter_map(|(_, a)| match a {
                Answer::Master { addr, epoch, .. } => Some((addr, *epoch)),
                _ => None,
            })
            .collect();
        let Some(top) = masters.iter().map(|(_, e)| *e).max() else { return Verdict::NoAnswer };
        let newest: Vec<&MasterAddr> = masters.iter().filter(|(_, e)| *e == top).map(|(a, _)| *a).collect();
        if newest.iter().any(|a| *a != newest[0]) {
            return Verdict::Conflict(top);
        }
        Verdict::Master { addr: newest[0].clone(), epoch: top, agreeing: newest.len() }
    }

    /// The longest `down-after-milliseconds` any sentinel reports for the master: how long the
    /// majority side waits before it even considers the master down.
    pub fn down_after(&self) -> Option<Duration> {
        self.answers
            .iter()
            .filter_map(|(_, a)| match a {
                Answer::Master { down_after_ms, .. } => *down_after_ms,
                _ => None,
            })
            .max()
            .map(Duration::from_millis)
    }

    /// A short human summary, e.g. `198.51.100.12:6379 (epoch 1, 3/3 answered)`.
    pub fn summary(&self) -> String {
        let n = self.answers.len();
        let r = self.reachable();
        match self.verdict() {
            Verdict::Master { addr, epoch, agreeing } => {
                format!("{addr} (epoch {epoch}; {r} of {n} sentinels answered, {agreeing} at that epoch)")
            }
            Verdict::Conflict(e) => format!("conflicting masters at epoch {e} ({r}/{n} reachable)"),
            Verdict::NoAnswer => format!("no master known ({r}/{n} reachable)"),
        }
    }
}

/// Asks every sentinel at once, each bounded by `timeout`; never fails as a whole.
pub async fn ask_all(sentinels: &[SentinelAddr], access: &Access, master: &str, timeout: Duration) -> View {
    let futs = sentinels.iter().map(|s| async move {
        let answer = match tokio::time::timeout(timeout, ask_one(s, access, master)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Answer::Unreachable(format!("{e:#}")),
            Err(_) => Answer::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
        };
        (s.clone(), answer)
    });
    View { answers: futures::future::join_all(futs).await }
}

/// How to reach the sentinels: credentials and TLS, shared by every connection.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// AUTH credentials.
    pub auth: Option<SentinelAuth>,
    /// TLS settings.
    pub tls: Option<SentinelTls>,
}

impl Access {
    /// A client for sentinel `s`. With TLS the sentinel's certificate must name the address or
    /// host name written in the config (an IP SAN for an IP).
    pub fn client(&self, s: &SentinelAddr) -> redis::RedisResult<redis::Client> {
        let mut redis_settings = RedisConnectionInfo::default();
        if let Some(a) = &self.auth {
            if let Some(u) = &a.username {
                redis_settings = redis_settings.set_username(u);
            }
            redis_settings = redis_settings.set_password(&a.password);
        }
        match &self.tls {
            None => {
                let info = ConnectionAddr::Tcp(s.host.clone(), s.port)
                    .into_connection_info()?
                    .set_redis_settings(redis_settings);
                redis::Client::open(info)
            }
            Some(tls) => {
                let addr =
                    ConnectionAddr::TcpTls { host: s.host.clone(), port: s.port, insecure: false, tls_params: None };
                let info = addr.into_connection_info()?.set_redis_settings(redis_settings);
                let certs = redis::TlsCertificates {
                    client_tls: tls
                        .client
                        .as_ref()
                        .map(|(c, k)| redis::ClientTlsConfig { client_cert: c.clone(), client_key: k.clone() }),
                    root_cert: tls.ca.clone(),
                };
                redis::Client::build_with_tls(info, certs)
            }
        }
    }
}

async fn ask_one(s: &SentinelAddr, access: &Access, master: &str) -> anyhow::Result<Answer> {
    let client = access.client(s)?;
    let mut con = client.get_multiplexed_async_connection().await.with_context(|| format!("sentinel {s}"))?;
    let mut answers = query(&mut con, s, &[master]).await?;
    Ok(answers.pop().unwrap_or(Answer::Unknown))
}

/// Asks one sentinel about several masters in one pipeline (one round trip). The address and the
/// epoch of each master are asked back to back: a sentinel is single-threaded, so both describe the
/// same moment.
async fn query(
    con: &mut redis::aio::MultiplexedConnection,
    s: &SentinelAddr,
    masters: &[&str],
) -> anyhow::Result<Vec<Answer>> {
    let mut pipe = redis::pipe();
    for m in masters {
        pipe.cmd("SENTINEL").arg("get-master-addr-by-name").arg(*m).cmd("SENTINEL").arg("master").arg(*m);
    }
    let replies: Vec<Value> = pipe.ignore_errors().query_async(con).await.with_context(|| format!("sentinel {s}"))?;
    let mut out = Vec::with_capacity(masters.len());
    for (m, pair) in masters.iter().zip(replies.chunks(2)) {
        let (addr, details) = (&pair[0], pair.get(1).unwrap_or(&Value::Nil));
        if let Value::ServerError(e) = details
            && !matches!(addr, Value::Nil)
        {
            // Without the epoch, "newest answer wins" cannot see this sentinel's epoch: say so.
            tracing::warn!(
                "sentinel {s} refused SENTINEL MASTER {m} ({}); its answer counts as epoch 0: allow the ACL user `+sentinel`",
                e.details().unwrap_or(e.code())
            );
        }
        out.push(parse_answer(addr, details).with_context(|| format!("sentinel {s}"))?);
    }
    Ok(out)
}

/// Long-lived connections to the sentinels, one each, for the daemon: a round for every master
/// costs one pipeline per sentinel instead of a connection (and a TLS handshake) per master.
pub struct Pool {
    access: Access,
    cons: std::collections::HashMap<SentinelAddr, redis::aio::MultiplexedConnection>,
}

impl Pool {
    /// An empty pool; connections are made on first use and remade after any error.
    pub fn new(access: Access) -> Pool {
        Pool { access, cons: std::collections::HashMap::new() }
    }

    /// Asks every sentinel about the masters that list it, all sentinels at once, each bounded by
    /// `timeout`; returns each master's view, answers in the master's sentinel order.
    pub async fn ask(
        &mut self,
        masters: &[(&str, &[SentinelAddr])],
        timeout: Duration,
    ) -> std::collections::BTreeMap<String, View> {
        let mut per_sentinel: std::collections::BTreeMap<&SentinelAddr, Vec<&str>> = std::collections::BTreeMap::new();
        for (name, sentinels) in masters {
            for s in sentinels.iter() {
                per_sentinel.entry(s).or_default().push(name);
            }
        }
        let futs = per_sentinel.into_iter().map(|(s, names)| {
            let cached = self.cons.get(s).cloned();
            let access = &self.access;
            async move {
                let work = async {
                    let mut con = match cached {
                        Some(c) => c,
                        None => access
                            .client(s)?
                            .get_multiplexed_async_connection()
                            .await
                            .with_context(|| format!("sentinel {s}"))?,
                    };
                    let answers = query(&mut con, s, &names).await?;
                    Ok::<_, anyhow::Error>((con, answers))
                };
                let result = match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow!("no answer within {} ms", timeout.as_millis())),
                };
                (s.clone(), names, result)
            }
        });
        let results = futures::future::join_all(futs).await;
        let mut by_pair: std::collections::HashMap<(String, SentinelAddr), Answer> = std::collections::HashMap::new();
        for (s, names, result) in results {
            match result {
                Ok((con, answers)) => {
                    self.cons.insert(s.clone(), con);
                    for (n, a) in names.into_iter().zip(answers) {
                        by_pair.insert((n.to_string(), s.clone()), a);
                    }
                }
                Err(e) => {
                    // A broken or hung connection is dropped; the next round connects afresh.
                    self.cons.remove(&s);
                    for n in names {
                        by_pair.insert((n.to_string(), s.clone()), Answer::Unreachable(format!("{e:#}")));
                    }
                }
            }
        }
        masters
            .iter()
            .map(|(name, sentinels)| {
                let answers = sentinels
                    .iter()
                    .map(|s| {
                        let a = by_pair
                            .remove(&(name.to_string(), s.clone()))
                            .unwrap_or(Answer::Unreachable("not asked".into()));
                        (s.clone(), a)
                    })
                    .collect();
                (name.to_string(), View { answers })
            })
            .collect()
    }
}

/// Builds an [`Answer`] from the replies to `get-master-addr-by-name` and `SENTINEL master`.
pub fn parse_answer(addr: &Value, details: &Value) -> anyhow::Result<Answer> {
    let addr = match addr {
        Value::Nil => return Ok(Answer::Unknown),
        Value::Array(items) if items.len() == 2 => {
            let host = text(&items[0]).ok_or_else(|| anyhow!("malformed master host in reply"))?;
            let port = text(&items[1])
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| anyhow!("malformed master port in reply"))?;
            MasterAddr { host, port }
        }
        Value::ServerError(e) => bail!("refused get-master-addr-by-name: {}", e.details().unwrap_or(e.code())),
        other => bail!("unexpected reply to get-master-addr-by-name: {other:?}"),
    };
    let fields = match details {
        Value::Array(items) => {
            items.chunks(2).filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?))).collect::<Vec<_>>()
        }
        Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        // Old or restricted sentinels may refuse SENTINEL MASTER; the address alone is still an answer.
        _ => Vec::new(),
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let epoch = field("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    let down_after_ms = field("down-after-milliseconds").and_then(|v| v.parse().ok());
    Ok(Answer::Master { addr, epoch, flags: field("flags").unwrap_or_default(), down_after_ms })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u8) -> SentinelAddr {
        SentinelAddr { host: format!("198.51.100.{n}"), port: 26379 }
    }
    fn m(host: &str, epoch: u64) -> Answer {
        Answer::Master {
            addr: MasterAddr { host: host.into(), port: 6379 },
            epoch,
            flags: "master".into(),
            down_after_ms: None,
        }
    }

    #[test]
    fn newest_epoch_beats_the_majority() {
        // The leader already promoted .12 (epoch 1); the two observers have not heard yet.
        let v = View {
            answers: vec![
                (s(11), m("198.51.100.11", 0)),
                (s(12), m("198.51.100.12", 1)),
                (s(13), m("198.51.100.11", 0)),
            ],
        };
        assert_eq!(
            v.verdict(),
            Verdict::Master { addr: MasterAddr { host: "198.51.100.12".into(), port: 6379 }, epoch: 1, agreeing: 1 }
        );
    }

    #[test]
    fn agreement_and_unreachables() {
        let v = View {
            answers: vec![
                (s(11), Answer::Unreachable("x".into())),
                (s(12), m("198.51.100.12", 3)),
                (s(13), m("198.51.100.12", 3)),
            ],
        };
        assert_eq!(v.reachable(), 2);
        assert!(matches!(v.verdict(), Verdict::Master { agreeing: 2, epoch: 3, .. }));
        let none = View { answers: vec![(s(11), Answer::Unreachable("x".into())), (s(12), Answer::Unknown)] };
        assert_eq!(none.verdict(), Verdict::NoAnswer);
        assert_eq!(none.reachable(), 1);
    }

    #[test]
    fn same_epoch_disagreement_is_a_conflict() {
        let v = View { answers: vec![(s(11), m("198.51.100.11", 2)), (s(12), m("198.51.100.12", 2))] };
        assert_eq!(v.verdict(), Verdict::Conflict(2));
    }

    #[test]
    fn parses_sentinel_replies() {
        let addr =
            Value::Array(vec![Value::BulkString(b"198.51.100.12".to_vec()), Value::BulkString(b"6379".to_vec())]);
        let details = Value::Array(
            ["name", "mymaster", "flags", "master", "config-epoch", "7", "down-after-milliseconds", "30000"]
                .iter()
                .map(|x| Value::BulkString(x.as_bytes().to_vec()))
                .collect(),
        );
        let Answer::Master { epoch, down_after_ms, .. } = parse_answer(&addr, &details).unwrap() else {
            panic!("a master")
        };
        assert_eq!((epoch, down_after_ms), (7, Some(30000)));
        assert_eq!(parse_answer(&Value::Nil, &Value::Nil).unwrap(), Answer::Unknown);
        assert!(parse_answer(&Value::Array(vec![Value::Int(1)]), &Value::Nil).is_err());
        let hostname =
            Value::Array(vec![Value::BulkString(b"redis-2.example".to_vec()), Value::BulkString(b"6379".to_vec())]);
        assert!(matches!(parse_answer(&hostname, &Value::Nil).unwrap(), Answer::Master { epoch: 0, .. }));
    }
}
