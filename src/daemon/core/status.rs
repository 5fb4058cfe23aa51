//! What the core believes, for `vipctl status` and `vipctl check` over the control socket.

use std::time::Instant;

use super::Core;
use crate::control::{DaemonStatus, MasterStatus, SentinelStatus};
use crate::policy::{Reason, Weighed};

impl Core {
    /// The daemon's view of every master at `now`.
    pub fn status(&self, now: Instant) -> DaemonStatus {
        let masters = self
            .masters
            .iter()
            .map(|(name, st)| {
                let master = &self.config.masters[name];
                let reports = self.reports(master, now);
                let weighed = st.weighed.as_ref();
                let p = self.settings.policy;
                MasterStatus {
                    name: name.clone(),
                    holding: st.holding,
                    belief: st.belief.as_ref().map_or("no decision yet".into(), ToString::to_string),
                    belief_code: st.belief.as_ref().map_or("none", Reason::code).to_string(),
                    summary: weighed.map(Weighed::summary),
                    sentinels: reports.iter().map(SentinelStatus::of).collect(),
                    minority_for_ms: weighed
                        .filter(|w| !w.majority())
                        .map(|w| w.minority_for(now.saturating_duration_since(self.started)).as_millis() as u64),
                    minority_timeout_ms: weighed.map_or(p.minority_default, |w| p.minority_timeout(w)).as_millis()
                        as u64,
                    last_change: st.last_change.clone(),
                    transitions: st.transitions,
                    conflicts: st.conflicts,
                    last_error: st.last_error.clone().or_else(|| st.fence_error.clone()),
                    fence: st.failover.fence.as_ref().map(|f| f.describe(now)),
                    delivery: self.delivery_status(name, now),
                }
            })
            .collect();
        DaemonStatus {
            pid: std::process::id(),
            started: humantime::format_rfc3339_millis(self.started_wall).to_string(),
            masters,
        }
    }
}
