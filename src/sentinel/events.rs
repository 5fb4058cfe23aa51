//! Sentinel's pub/sub events: which ones mean "the master may have changed", and which master they
//! are about. Payloads are only ever a hint to re-ask the sentinels, never the truth.

/// Event channels that make the daemon re-check at once. Anything about failovers, the master's
/// health, configuration propagation or TILT.
pub const TRIGGERS: &[&str] = &[
    "+switch-master",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-state-wait-promotion",
    "+failover-state-send-slaveof-noone",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+config-update-from",
    "+convert-to-slave",
    "+odown",
    "-odown",
    "+sdown",
    "-sdown",
    "+tilt",
    "-tilt",
    "+reset-master",
    "+monitor",
    "-monitor",
];

/// The same events in Valkey's newer wording, should a server send it (Valkey 8.1 still sends the
/// names above), and the name they are known by here.
const ALIASES: &[(&str, &str)] = &[
    ("+promoted-replica", "+promoted-slave"),
    ("+failover-state-reconf-replicas", "+failover-state-reconf-slaves"),
    ("+failover-state-select-replica", "+failover-state-select-slave"),
    ("+selected-replica", "+selected-slave"),
    ("-failover-abort-no-good-replica", "-failover-abort-no-good-slave"),
    ("-failover-abort-replica-timeout", "-failover-abort-slave-timeout"),
    ("+convert-to-replica", "+convert-to-slave"),
    ("+switch-primary", "+switch-master"),
    ("+reset-primary", "+reset-master"),
];

/// A parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel (event name).
    pub kind: String,
    /// The master it concerns, when the payload names one; `None` means "maybe any" (e.g. TILT).
    pub master: Option<String>,
    /// The instance the event is about (`<type> <name> <ip> <port> @ …` forms), e.g. the replica
    /// the leader selected for promotion.
    pub instance: Option<(String, u16)>,
}

/// Parses one message; `None` for channels that do not call for a re-check.
///
/// Payload forms (see the Sentinel contract): `<name> <old-ip> <old-port> <new-ip> <new-port>` for
/// `+switch-master`; `<type> <name> <ip> <port> @ <master> <ip> <port>` for instance events;
/// `master <name> <ip> <port> …` for master events; `sentinel <runid> <ip> <port> @ <name> …`.
pub fn parse(channel: &str, payload: &str) -> Option<Event> {
    let channel = ALIASES.iter().find(|(alias, _)| *alias == channel).map_or(channel, |(_, name)| name);
    if !TRIGGERS.contains(&channel) {
        return None;
    }
    let words: Vec<&str> = payload.split_whitespace().collect();
    let master = if channel == "+switch-master" {
        words.first().map(|s| s.to_string())
    } else if let Some(at) = words.iter().position(|w| *w == "@") {
        words.get(at + 1).map(|s| s.to_string())
    } else if matches!(words.first(), Some(&"master" | &"primary")) {
        words.get(1).map(|s| s.to_string())
    } else {
        None
    };
    let instance = match words.as_slice() {
        [kind, _, ip, port, "@", ..] if matches!(*kind, "slave" | "replica" | "master" | "primary") => {
            port.parse().ok().map(|p| (ip.to_string(), p))
        }
        _ => None,
    };
    Some(Event { kind: channel.to_string(), master, instance })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_and_primary_wording_reads_as_the_classic_names() {
        let e =
            parse("+selected-replica", "replica 198.51.100.12:6379 198.51.100.12 6379 @ mymaster 198.51.100.11 6379")
                .unwrap();
        assert_eq!(e.kind, "+selected-slave");
        assert_eq!(e.master.as_deref(), Some("mymaster"));
        assert_eq!(e.instance, Some(("198.51.100.12".to_string(), 6379)));
        let e = parse("+switch-primary", "mymaster 198.51.100.11 6379 198.51.100.12 6379").unwrap();
        assert_eq!((e.kind.as_str(), e.master.as_deref()), ("+switch-master", Some("mymaster")));
        assert_eq!(parse("+sdown", "primary mymaster 198.51.100.11 6379").unwrap().master.as_deref(), Some("mymaster"));
        assert!(parse("+selected-nothing", "x").is_none());
    }

    #[test]
    fn payload_forms() {
        let e = parse("+switch-master", "mymaster 198.51.100.11 6379 198.51.100.12 6379").unwrap();
        assert_eq!(e.master.as_deref(), Some("mymaster"));
        let e = parse("+promoted-slave", "slave 198.51.100.12:6379 198.51.100.12 6379 @ mymaster 198.51.100.11 6379")
            .unwrap();
        assert_eq!(e.master.as_deref(), Some("mymaster"));
        assert_eq!(e.instance, Some(("198.51.100.12".to_string(), 6379)));
        let e = parse("+config-update-from", "sentinel 3f2a 198.51.100.13 26379 @ other 198.51.100.11 6379").unwrap();
        assert_eq!(e.master.as_deref(), Some("other"));
        let e = parse("+odown", "master mymaster 198.51.100.11 6379 #quorum 2/2").unwrap();
        assert_eq!(e.master.as_deref(), Some("mymaster"));
        assert_eq!(parse("+tilt", "#tilt mode entered").unwrap().master, None);
        assert_eq!(parse("+sentinel", "sentinel x 1 2 @ m 1 2"), None);
        assert_eq!(parse("+switch-master", "").unwrap().master, None);
        assert_eq!(parse("+promoted-slave", "slave a b c @").unwrap().master, None);
    }
}
