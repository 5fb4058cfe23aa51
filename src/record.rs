//! Decision records: every decision vipctl makes becomes one [`Record`], emitted as one `tracing`
//! event (target `vipctl::decision`) whose fields are the record's fields. The logging layers
//! render it: journald fields (`journalctl VIPCTL_MASTER=mymaster`), a syslog line, a JSON line in
//! `log_file`. `status --json`, the tests and the benchmark read the same fields.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::Reason;

/// The tracing target of decision records; the logging layers route on it.
pub const TARGET: &str = "vipctl::decision";

/// The names of the fields a record is emitted with.
pub const FIELDS: &[&str] = &[
    "event",
    "actor",
    "master",
    "decision",
    "reason",
    "reason_code",
    "trigger",
    "sentinels",
    "actions",
    "frames",
    "first_frame_ms",
    "elapsed_ms",
    "result",
    "exit",
    "error",
    "detail",
    "pid",
];

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// Sentinel's client-reconfig-script call.
    Hook,
    /// The `vipctl watch` daemon.
    Watch,
    /// `vipctl claim`.
    Claim,
    /// `vipctl release`.
    Release,
    /// `vipctl switchover`.
    Switchover,
}

impl Actor {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Hook => "hook",
            Actor::Watch => "watch",
            Actor::Claim => "claim",
            Actor::Release => "release",
            Actor::Switchover => "switchover",
        }
    }
}

/// What kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A decision about a master's VIPs (carried out unless `dry_run`).
    Decision,
    /// Another host claimed a held VIP.
    Conflict,
    /// A notify command finished.
    Notify,
    /// The daemon answered a hook that handed its call over.
    Hook,
    /// The daemon paused, demoted or resumed its local Redis during a failover.
    Fence,
    /// A cloud provider's API was called for the VIPs.
    Cloud,
    /// The daemon started.
    Start,
    /// The daemon stopped.
    Stop,
}

impl Event {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Decision => "decision",
            Event::Conflict => "conflict",
            Event::Notify => "notify",
            Event::Hook => "hook",
            Event::Fence => "fence",
            Event::Cloud => "cloud",
            Event::Start => "start",
            Event::Stop => "stop",
        }
    }
}

/// What was done to the VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Bound here (or were already, and announced again).
    Claim,
    /// Unbound here.
    Release,
    /// Announced again, nothing else.
    Announce,
    /// Nothing.
    None,
}

impl Change {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Claim => "claim",
            Change::Release => "release",
            Change::Announce => "announce",
            Change::None => "none",
        }
    }
}

/// One decision (or another event worth an operator's attention), as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What kind of record.
    pub event: Event,
    /// Who decided.
    pub actor: Actor,
    /// The master (empty for daemon-wide records).
    pub master: String,
    /// What was done to the VIPs.
    pub decision: Change,
    /// Why, in words.
    pub reason: String,
    /// Why, as a stable code (a [`Reason`] variant in snake case).
    pub reason_code: String,
    /// What made the decision happen now (an event, a timer, a hook call, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The sentinels' view the decision rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels: Option<String>,
    /// The address changes and announcements made, e.g. `add 198.51.100.100/24 dev eth0`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Announcement frames sent before the record was written.
    #[serde(default)]
    pub frames: u32,
    /// Milliseconds from the start of the run to the first frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_frame_ms: Option<f64>,
    /// Milliseconds the decision and its changes took.
    #[serde(default)]
    pub elapsed_ms: f64,
    /// `ok` or `error`.
    pub result: String,
    /// The exit status a short-lived command ends with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<u8>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free-form detail (arguments of a hook call, a claimant's MAC, a notify command's outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Record {
    /// A successful record of `event` by `actor` about `master`, for `reason`.
    pub fn new(event: Event, actor: Actor, master: &str, decision: Change, reason: &Reason) -> Record {
        Record {
            event,
            actor,
            master: master.to_string(),
            decision,
            reason: reason.to_string(),
            reason_code: reason.code().to_string(),
            trigger: None,
            sentinels: None,
            actions: Vec::new(),
            frames: 0,
            first_frame_ms: None,
            elapsed_ms: 0.0,
            result: "ok".into(),
            exit: None,
            error: None,
            detail: None,
        }
    }

    /// A record with no [`Reason`] (start, stop, notify): `reason` is its text, `code` its code.
    pub fn note(event: Event, actor: Actor, master: &str, code: &str, reason: impl Into<String>) -> Record {
        let mut r = Record::new(event, actor, master, Change::None, &Reason::ByHand);
        r.reason = reason.into();
        r.reason_code = code.to_string();
        r
    }

    /// Marks the record failed with `error`.
    pub fn failed(mut self, error: impl fmt::Display) -> Record {
        self.result = "error".into();
        self.error = Some(error.to_string());
        self
    }

    /// True when it records a failure.
    pub fn is_error(&self) -> bool {
        self.result != "ok"
    }

    /// Emits the record as one tracing event (an error-level one when it failed).
    pub fn emit(&self) {
        let actions = self.actions.join("; ");
        macro_rules! emit_at {
            ($level:expr) => {
                tracing::event!(
                    target: "vipctl::decision",
                    $level,
                    event = self.event.as_str(),
                    actor = self.actor.as_str(),
                    master = self.master.as_str(),
                    decision = self.decision.as_str(),
                    reason = self.reason.as_str(),
                    reason_code = self.reason_code.as_str(),
                    trigger = self.trigger.as_deref(),
                    sentinels = self.sentinels.as_deref(),
                    actions = actions.as_str(),
                    frames = self.frames,
                    first_frame_ms = self.first_frame_ms,
                    elapsed_ms = self.elapsed_ms,
                    result = self.result.as_str(),
                    exit = self.exit.map(u64::from),
                    error = self.error.as_deref(),
                    detail = self.detail.as_deref(),
                    pid = std::process::id(),
                    "{}",
                    self
                )
            };
        }
        if self.is_error() {
            emit_at!(tracing::Level::ERROR);
        } else {
            emit_at!(tracing::Level::INFO);
        }
    }
}

impl fmt::Display for Record {
    /// One line for people (stderr, syslog): what was decided and why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.master.is_empty() {
            self.actor.as_str().to_string()
        } else {
            format!("{} {}", self.actor.as_str(), self.master)
        };
        match self.event {
            Event::Decision => write!(f, "{who}: {}: {}", self.decision.as_str(), self.reason)?,
            _ => write!(f, "{who}: {}: {}", self.event.as_str(), self.reason)?,
        }
        if !self.actions.is_empty() {
            write!(f, " [{}]", self.actions.join("; "))?;
        }
        if let Some(e) = &self.error {
            write!(f, "; error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_keeps_quotes_intact() {
        let reason = Reason::Unresolved { host: "a\"b".into(), why: "x\ny".into() };
        let mut r = Record::new(Event::Decision, Actor::Watch, "m", Change::None, &reason);
        r.actions = vec!["add 198.51.100.100/24 dev eth0".into()];
        let json = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.reason_code, "unresolved");
        assert!(back.reason.contains("a\"b"));
    }
}
