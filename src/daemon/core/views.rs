//! What the core holds of each sentinel: its latest answer per master, the replicas it lists per
//! master, when it last answered, and why it is unreachable now. A replica that a majority of a
//! master's sentinels list is one no single sentinel made up ([`Core::vouched`]).

use std::collections::HashMap;
use std::time::Instant;

use super::Core;
use crate::config::{HostPort, Master};
use crate::sentinel::{Answer, Listed, Report};

/// One sentinel as the core knows it.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The latest answer per master it serves.
    answers: HashMap<String, Answer>,
    /// The replicas it listed per master, as last asked (lists are asked less often than masters),
    /// and when.
    replicas: HashMap<String, (Vec<Listed>, Instant)>,
    /// When it last answered (or, between answers, answered a PING while its events were followed).
    at: Option<Instant>,
    /// Its events were followed without a break since its last answer: only then can a PING vouch
    /// that the answer still stands.
    valid: bool,
    /// Why it is unreachable now.
    pub down: Option<String>,
}

impl View {
    /// Books an answer that arrived at `now`.
    pub fn answered(&mut self, answers: Vec<(String, Answer)>, replicas: Vec<(String, Vec<Listed>)>, now: Instant) {
        for (m, a) in &answers {
            if matches!(a, Answer::Unknown) {
                self.replicas.remove(m);
            }
        }
        self.answers = answers.into_iter().collect();
        self.replicas.extend(replicas.into_iter().map(|(m, l)| (m, (l, now))));
        self.at = Some(now);
        self.valid = true;
    }

    /// It answered a PING at `now`: its last answer still stands, unless its events were lost
    /// since (then only a new answer counts).
    pub fn alive(&mut self, now: Instant) {
        if self.valid && self.down.is_none() {
            self.at = Some(now);
        }
    }

    /// Its events stopped: what it said may have changed unseen.
    pub fn events_lost(&mut self) {
        self.valid = false;
    }

    fn lists(&self, master: &str, replica: &HostPort) -> bool {
        self.replicas.get(master).is_some_and(|(l, _)| l.iter().any(|r| &r.addr == replica))
    }

    /// Its list for `master`, when it was given at or after `since`.
    fn list_since(&self, master: &str, since: Instant) -> Option<&[Listed]> {
        self.replicas.get(master).filter(|(_, at)| *at >= since).map(|(l, _)| l.as_slice())
    }
}

impl Core {
    /// The latest answers about `master`, one per configured sentinel.
    pub(super) fn reports(&self, master: &Master, now: Instant) -> Vec<Report> {
        master
            .sentinels
            .iter()
            .map(|s| {
                let view = self.views.get(s);
                Report {
                    sentinel: s.clone(),
                    last: view.and_then(|v| {
                        let a = v.answers.get(&master.name)?;
                        Some((a.clone(), now.saturating_duration_since(v.at?)))
                    }),
                    down: view.and_then(|v| v.down.clone()),
                }
            })
            .collect()
    }

    /// Whether more than half of `master`'s configured sentinels list `replica` among its replicas:
    /// then no single sentinel made it up, and it may be polled, fenced toward, or sent credentials.
    pub(super) fn vouched(&self, master: &Master, replica: &HostPort) -> bool {
        let listing =
            master.sentinels.iter().filter(|s| self.views.get(*s).is_some_and(|v| v.lists(&master.name, replica)));
        listing.count() * 2 > master.sentinels.len()
    }

    /// The replicas a majority of `master`'s sentinels list as ones they would promote, in lists
    /// given at or after `since`, in order; `None` while fewer than a majority have given one since.
    pub(super) fn promotable_since(&self, master: &Master, since: Instant) -> Option<Vec<HostPort>> {
        let lists: Vec<&[Listed]> =
            master.sentinels.iter().filter_map(|s| self.views.get(s)?.list_since(&master.name, since)).collect();
        if lists.len() * 2 <= master.sentinels.len() {
            return None;
        }
        let mut candidates: Vec<&HostPort> = lists.iter().flat_map(|l| l.iter().map(|r| &r.addr)).collect();
        candidates.sort();
        candidates.dedup();
        let good = |r: &HostPort| lists.iter().filter(|l| l.iter().any(|x| &x.addr == r && x.promotable)).count();
        Some(candidates.into_iter().filter(|r| good(r) * 2 > master.sentinels.len()).cloned().collect())
    }
}
