//! Redis Sentinel's protocol as vipctl uses it: asking who a master is (this file), its pub/sub
//! events ([`events`]), its TILT mode ([`tilt`]), and its config file and systemd unit
//! ([`conf`]). Weighing the answers is the policy's job ([`crate::policy::weigh`]).

pub mod conf;
pub mod events;
mod replicas;
pub mod tilt;

pub use replicas::{Listed, parse_listed};

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::Value;

use crate::access::{self, Access};
use crate::config::SentinelAddr;

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
        /// The master's `failover-timeout` on that sentinel, when it said.
        failover_timeout_ms: Option<u64>,
    },
    /// It does not monitor a master by that name.
    Unknown,
}

/// One sentinel's latest word about one master, as the caller holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The sentinel.
    pub sentinel: SentinelAddr,
    /// Its last answer and how long ago it arrived; `None` when it never answered.
    pub last: Option<(Answer, Duration)>,
    /// Why it is unreachable now (its connection or its last question failed); `None` when it is not
    /// known to be.
    pub down: Option<String>,
}

impl Report {
    /// An answer that has just arrived (the short-lived commands ask once).
    pub fn now(sentinel: SentinelAddr, answer: Answer) -> Report {
        Report { sentinel, last: Some((answer, Duration::ZERO)), down: None }
    }

    /// A sentinel that could not be asked.
    pub fn failed(sentinel: SentinelAddr, why: String) -> Report {
        Report { sentinel, last: None, down: Some(why) }
    }

    /// Its answer, when it is recent enough to count.
    pub fn fresh(&self, fresh_for: Duration) -> Option<&Answer> {
        match (&self.last, &self.down) {
            (Some((a, age)), None) if *age <= fresh_for => Some(a),
            _ => None,
        }
    }
}

/// Asks every sentinel about `master` at once, each bounded by `timeout`, and returns as soon as
/// `enough` says the answers so far suffice (it sees the reports in `sentinels` order, and whether
/// every sentinel has answered or failed). Sentinels not heard from by then are reported as
/// failed. Never fails as a whole.
pub async fn ask(
    sentinels: &[SentinelAddr],
    access: &Access,
    master: &str,
    timeout: Duration,
    mut enough: impl FnMut(&[Report], bool) -> bool,
) -> Vec<Report> {
    let mut reports: Vec<Report> =
        sentinels.iter().map(|s| Report::failed(s.clone(), "decided before it answered".into())).collect();
    let mut pending: FuturesUnordered<_> = sentinels
        .iter()
        .enumerate()
        .map(|(i, s)| async move {
            let r = match tokio::time::timeout(timeout, ask_one(s, access, master, timeout)).await {
                Ok(Ok(a)) => Report::now(s.clone(), a),
                Ok(Err(e)) => Report::failed(s.clone(), format!("{e:#}")),
                Err(_) => Report::failed(s.clone(), format!("no answer within {} ms", timeout.as_millis())),
            };
            (i, r)
        })
        .collect();
    let mut left = sentinels.len();
    while let Some((i, r)) = pending.next().await {
        reports[i] = r;
        left -= 1;
        if enough(&reports, left == 0) {
            break;
        }
    }
    reports
}

async fn ask_one(s: &SentinelAddr, access: &Access, master: &str, timeout: Duration) -> anyhow::Result<Answer> {
    let mut con = access.connect(s, timeout).await.map_err(|e| anyhow!("sentinel {s}: {}", access::describe(&e)))?;
    let mut answers = query(&mut con, s, &[master]).await?;
    Ok(answers.pop().unwrap_or(Answer::Unknown))
}

/// Asks one sentinel about several masters in one pipeline (one round trip). The address and the
/// epoch of each master are asked back to back: a sentinel is single-threaded, so both describe the
/// same moment.
pub async fn query<S: AsRef<str>>(
    con: &mut redis::aio::MultiplexedConnection,
    s: &SentinelAddr,
    masters: &[S],
) -> anyhow::Result<Vec<Answer>> {
    Ok(query_with(con, s, masters, false).await?.into_iter().map(|(a, _)| a).collect())
}

/// Like [`query`], and with `replicas` also each master's replica list (`SENTINEL REPLICAS`):
/// `None` for a master whose list was not asked or not given.
pub async fn query_with<S: AsRef<str>>(
    con: &mut redis::aio::MultiplexedConnection,
    s: &SentinelAddr,
    masters: &[S],
    replicas: bool,
) -> anyhow::Result<Vec<(Answer, Option<Vec<Listed>>)>> {
    let per = if replicas { 3 } else { 2 };
    let mut pipe = redis::pipe();
    for m in masters {
        pipe.cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(m.as_ref())
            .cmd("SENTINEL")
            .arg("master")
            .arg(m.as_ref());
        if replicas {
            pipe.cmd("SENTINEL").arg("replicas").arg(m.as_ref());
        }
    }
    let replies: Vec<Value> =
        pipe.ignore_errors().query_async(con).await.map_err(|e| anyhow!("sentinel {s}: {}", access::describe(&e)))?;
    if replies.len() != masters.len() * per {
        bail!("sentinel {s}: {} replies to {} questions", replies.len(), masters.len() * per);
    }
    let mut out = Vec::with_capacity(masters.len());
    for (m, group) in masters.iter().zip(replies.chunks(per)) {
        let (addr, details) = (&group[0], &group[1]);
        if let Value::ServerError(e) = details
            && !matches!(addr, Value::Nil)
        {
            // Without the epoch, "newest answer wins" cannot see this sentinel's epoch: say so.
            tracing::warn!(
                "sentinel {s} refused SENTINEL MASTER {} ({}); its answer counts as epoch 0: allow the ACL user `+sentinel`",
                m.as_ref(),
                e.details().unwrap_or(e.code())
            );
        }
        let answer = parse_answer(addr, details).with_context(|| format!("sentinel {s}, master `{}`", m.as_ref()))?;
        let listed = match group.get(2) {
            // A master it does not know has no replicas to list; any other refusal leaves the list unknown.
            Some(v) if !matches!(answer, Answer::Unknown) => parse_listed(v).ok(),
            _ => None,
        };
        out.push((answer, listed));
    }
    Ok(out)
}

/// The replicas in a reply to `SENTINEL REPLICAS` (Valkey and Redis 5+; `SLAVES` is the same):
/// each entry's `ip` and `port`. The host is checked like a master's.
pub fn parse_replicas(v: &Value) -> anyhow::Result<Vec<MasterAddr>> {
    Ok(parse_listed(v)?.into_iter().map(|l| l.addr).collect())
}

/// The longest master host a sentinel may report (a DNS name's limit).
const MAX_HOST_LEN: usize = 253;

/// Builds an [`Answer`] from the replies to `get-master-addr-by-name` and `SENTINEL master`. The
/// host must be an IP address or a host name, as for the hook's arguments: a sentinel's reply is
/// input, and it ends up in decisions and logs.
pub fn parse_answer(addr: &Value, details: &Value) -> anyhow::Result<Answer> {
    let addr = match addr {
        Value::Nil => return Ok(Answer::Unknown),
        Value::Array(items) if items.len() == 2 => {
            let host = text(&items[0]).ok_or_else(|| anyhow!("malformed master host in reply"))?;
            if host.len() > MAX_HOST_LEN || crate::resolve::check_syntax(&host).is_err() {
                bail!(
                    "the master host in its reply is neither an IP address nor a host name: {:?}",
                    host.chars().take(64).collect::<String>()
                );
            }
            let port = text(&items[1])
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| anyhow!("malformed master port in reply"))?;
            MasterAddr { host, port }
        }
        Value::ServerError(e) => bail!("refused get-master-addr-by-name: {}", e.details().unwrap_or(e.code())),
        other => bail!("unexpected reply to get-master-addr-by-name: {}", short(other)),
    };
    // Old or restricted sentinels may refuse SENTINEL MASTER; the address alone is still an answer.
    let fields = fields(details).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let epoch = field("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    let down_after_ms = field("down-after-milliseconds").and_then(|v| v.parse().ok());
    let failover_timeout_ms = field("failover-timeout").and_then(|v| v.parse().ok());
    let mut flags = field("flags").unwrap_or_default();
    flags.truncate(128);
    Ok(Answer::Master { addr, epoch, flags, down_after_ms, failover_timeout_ms })
}

/// A bounded rendering of an unexpected reply.
fn short(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 80 { format!("{}…", s.chars().take(80).collect::<String>()) } else { s }
}

/// The field/value pairs of a reply such as `SENTINEL MASTER`'s (a flat array in RESP2, a map in
/// RESP3); `None` for any other reply.
pub(crate) fn fields(v: &Value) -> Option<Vec<(String, String)>> {
    match v {
        Value::Array(items) => {
            Some(items.chunks(2).filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?))).collect())
        }
        Value::Map(pairs) => Some(pairs.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect()),
        _ => None,
    }
}

/// A reply as text: bulk or simple string, or an integer written out.
pub(crate) fn text(v: &Value) -> Option<String> {
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

    fn bulk(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|x| Value::BulkString(x.as_bytes().to_vec())).collect())
    }

    #[test]
    fn parses_sentinel_replies() {
        let addr = bulk(&["198.51.100.12", "6379"]);
        let details =
            bulk(&["name", "mymaster", "flags", "master", "config-epoch", "7", "down-after-milliseconds", "30000"]);
        let Answer::Master { epoch, down_after_ms, .. } = parse_answer(&addr, &details).unwrap() else {
            panic!("a master")
        };
        assert_eq!((epoch, down_after_ms), (7, Some(30000)));
        assert_eq!(parse_answer(&Value::Nil, &Value::Nil).unwrap(), Answer::Unknown);
        assert!(parse_answer(&Value::Array(vec![Value::Int(1)]), &Value::Nil).is_err());
        let hostname = bulk(&["redis-2.example", "6379"]);
        assert!(matches!(parse_answer(&hostname, &Value::Nil).unwrap(), Answer::Master { epoch: 0, .. }));
    }

    #[tokio::test]
    async fn a_server_that_is_no_sentinel_is_named_in_one_line() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let s = SentinelAddr { host: "127.0.0.1".into(), port };
        let reports = ask(&[s], &Access::default(), "m", Duration::from_secs(2), |_, all| all).await;
        let why = reports[0].down.clone().expect("unreachable");
        eprintln!("{why}");
        assert!(why.contains("does not speak the Redis protocol"), "{why}");
        assert!(!why.contains('\n') && why.matches("Redis protocol").count() == 1, "{why}");
    }

    #[test]
    fn refuses_hosts_that_are_no_host() {
        for bad in ["198.51.100.12\nwatch master=x decision=claim", "a b", "", &"a".repeat(300), "x\"y"] {
            let e = parse_answer(&bulk(&[bad, "6379"]), &Value::Nil).unwrap_err().to_string();
            assert!(e.contains("neither an IP address nor a host name"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse_answer(&bulk(&["198.51.100.12", "0"]), &Value::Nil).is_err());
    }
}
