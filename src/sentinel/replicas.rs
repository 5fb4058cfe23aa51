//! A master's replicas as one sentinel lists them (`SENTINEL REPLICAS`), and which of them that
//! sentinel would promote. Fail-fast ([`crate::policy::fail_fast`]) asks for a failover only when
//! a majority of the sentinels list a replica they would promote: otherwise Sentinel's leader
//! refuses (`-NOGOODSLAVE`) or, worse, promotes one that missed writes.

use std::time::Duration;

use anyhow::bail;
use redis::Value;

use super::{MAX_HOST_LEN, MasterAddr, fields, short};

/// The most replicas of one master taken from a reply: more is no deployment, only a reply to refuse.
pub(super) const MAX_REPLICAS: usize = 256;

/// A replica whose last PING reply is older than this is not promoted by Sentinel's leader
/// (`SENTINEL_PING_PERIOD * 5` in sentinel.c's `sentinelSelectSlave`).
pub const PING_VALIDITY: Duration = Duration::from_secs(5);
/// Nor one whose INFO that sentinel last read longer ago (`sentinel_info_period * 3`).
pub const INFO_VALIDITY: Duration = Duration::from_secs(30);
/// A replica whose link to the master is down counts as in sync when it went down this recently:
/// the master's death itself ends the link, and a sentinel may read the replica's INFO just
/// after. Longer, and the replica was behind before the death (Sentinel's own bound, ten times
/// down-after-milliseconds, is far looser than what "in sync" means).
pub const LINK_DOWN_VALIDITY: Duration = Duration::from_secs(5);

/// One replica in one sentinel's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its address.
    pub addr: MasterAddr,
    /// That sentinel would promote it, and it was in sync: not flagged down or disconnected, it
    /// answered a PING within [`PING_VALIDITY`], its INFO is younger than [`INFO_VALIDITY`], its
    /// replication link is up (or went down within [`LINK_DOWN_VALIDITY`]), its priority is not 0.
    pub promotable: bool,
}

/// The replicas in a reply to `SENTINEL REPLICAS` (Valkey and Redis 5+; `SLAVES` is the same),
/// each with whether that sentinel would promote it. Hosts are checked like a master's; entries
/// with none are skipped.
pub fn parse_listed(v: &Value) -> anyhow::Result<Vec<Listed>> {
    let items = match v {
        Value::Array(items) => items,
        Value::ServerError(e) => bail!("refused SENTINEL REPLICAS: {}", e.details().unwrap_or(e.code())),
        other => bail!("unexpected reply to SENTINEL REPLICAS: {}", short(other)),
    };
    if items.len() > MAX_REPLICAS {
        bail!("{} replicas in one reply (at most {MAX_REPLICAS} are taken)", items.len());
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(fields) = fields(item) else { bail!("malformed entry in SENTINEL REPLICAS") };
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let (Some(host), Some(port)) = (get("ip"), get("port").and_then(|p| p.parse::<u16>().ok())) else {
            continue;
        };
        if port == 0 || host.len() > MAX_HOST_LEN || crate::resolve::check_syntax(&host).is_err() {
            continue;
        }
        let flags = get("flags").unwrap_or_default();
        let flagged = flags.split(',').any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
        let ping_ok = get("last-ok-ping-reply")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|ms| Duration::from_millis(ms) <= PING_VALIDITY);
        let within = |field: &str, bound: Duration| {
            get(field).and_then(|v| v.parse::<u64>().ok()).is_some_and(|ms| Duration::from_millis(ms) <= bound)
        };
        let info_ok = within("info-refresh", INFO_VALIDITY);
        let link_ok =
            get("master-link-status").as_deref() == Some("ok") || within("master-link-down-time", LINK_DOWN_VALIDITY);
        let priority = get("slave-priority").or(get("replica-priority")).and_then(|p| p.parse::<i64>().ok());
        let promotable = !flagged && ping_ok && info_ok && link_ok && priority.is_some_and(|p| p > 0);
        out.push(Listed { addr: MasterAddr { host, port }, promotable });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|x| Value::BulkString(x.as_bytes().to_vec())).collect())
    }

    fn entry(ip: &str, port: &str, extra: &[&str]) -> Value {
        let mut f = vec!["name", "x", "ip", ip, "port", port];
        f.extend_from_slice(extra);
        bulk(&f)
    }

    const HEALTHY: &[&str] = &[
        "flags",
        "slave",
        "last-ok-ping-reply",
        "120",
        "info-refresh",
        "4000",
        "master-link-status",
        "ok",
        "master-link-down-time",
        "0",
        "slave-priority",
        "100",
    ];

    #[test]
    fn parses_replica_lists_and_skips_what_is_no_replica() {
        let list = Value::Array(vec![
            entry("198.51.100.12", "6379", HEALTHY),
            entry("bad host", "6379", HEALTHY),
            entry("h3.lab", "0", HEALTHY),
        ]);
        let got = parse_listed(&list).unwrap();
        assert_eq!(
            got,
            vec![Listed { addr: MasterAddr { host: "198.51.100.12".into(), port: 6379 }, promotable: true }]
        );
        let many = Value::Array(vec![entry("198.51.100.12", "6379", HEALTHY); MAX_REPLICAS + 1]);
        assert!(parse_listed(&many).is_err());
        assert!(parse_listed(&Value::Int(3)).is_err());
    }

    #[test]
    fn a_replica_sentinel_would_not_promote_is_not_promotable() {
        let with = |k: &str, v: &str| {
            let mut f: Vec<&str> = HEALTHY.to_vec();
            let i = f.iter().position(|x| *x == k).expect("a field of HEALTHY");
            f[i + 1] = v;
            parse_listed(&Value::Array(vec![entry("198.51.100.12", "6379", &f)])).unwrap()[0].promotable
        };
        assert!(with("flags", "slave"));
        assert!(!with("flags", "slave,s_down"));
        assert!(!with("flags", "slave,disconnected"));
        assert!(!with("last-ok-ping-reply", "5001"));
        assert!(!with("info-refresh", "30001"));
        // The link went down with the master's death just now: still in sync.
        let just_down = |ms: &str| {
            let mut f: Vec<&str> = HEALTHY.to_vec();
            f[7] = "err";
            f[9] = ms;
            parse_listed(&Value::Array(vec![entry("198.51.100.12", "6379", &f)])).unwrap()[0].promotable
        };
        assert!(just_down("1500"));
        assert!(!just_down("5001"), "behind before the death");
        assert!(!with("slave-priority", "0"));
        // A field missing is no proof of health.
        let bare = parse_listed(&Value::Array(vec![entry("198.51.100.12", "6379", &["flags", "slave"])])).unwrap();
        assert!(!bare[0].promotable);
    }
}
