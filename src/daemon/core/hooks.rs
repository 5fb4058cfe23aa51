//! Hooks handed over the control socket: a hook without privileges tells the daemon that a sentinel
//! called it. That call is a reason to ask every sentinel again, never the truth: the core decides
//! once a majority has answered afresh (or failed, or the wait is up), and replies when the change
//! it decided is carried out, with the status the hook exits with.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Core, Effect};
use crate::config::SentinelAddr;
use crate::control::Reply;
use crate::record::{self, Actor, Record};

/// A delegated hook waiting for fresh answers before the core decides and replies.
#[derive(Debug)]
pub(super) struct HookWait {
    /// Names the reply.
    pub token: u64,
    /// Sentinels not heard from since the call.
    pub pending: BTreeSet<SentinelAddr>,
    /// Decide once no more than this many are left.
    pub enough_when_left: usize,
    /// Decide then at the latest.
    pub deadline: Instant,
    /// What the hook said, for the record.
    pub trigger: String,
}

impl Core {
    pub(super) fn hook(&mut self, token: u64, uid: u32, master: String, args: Vec<String>, now: Instant) {
        if !self.allowed_uids.contains(&uid) {
            let message = format!(
                "uid {uid} may not hand hooks to this daemon: add the user to [watch] hook_users in the config \
                 (or, without hook_users, run sentinel as its unit's User=), then restart vipctl-watch"
            );
            self.effects.push(Effect::Reply { token, reply: Reply::new(2, message) });
            return;
        }
        let Some(m) = self.config.masters.get(&master) else {
            let message = format!(
                "master `{master}` is not in config {}; add a [masters.{master}] table or fix the name in sentinel.conf",
                self.config.path.display()
            );
            self.effects.push(Effect::Reply { token, reply: Reply::new(2, message) });
            return;
        };
        // Ask every sentinel again, and decide once a majority has answered (or failed): the hook's
        // call means the sentinels' view just changed.
        let pending: BTreeSet<SentinelAddr> = m.sentinels.iter().cloned().collect();
        let enough_when_left = m.sentinels.len() - (m.sentinels.len() / 2 + 1);
        self.effects.push(Effect::Nudge { sentinels: pending.iter().cloned().collect(), replicas: false });
        let deadline = now + self.settings.hook_wait;
        let trigger = format!("hook from uid {uid} args={args:?}");
        let st = self.masters.get_mut(&master).expect("configured");
        st.hook_waits.push(HookWait { token, pending, enough_when_left, deadline, trigger });
        self.rearm(&master, now);
    }

    /// Decides for the hooks whose fresh answers are in (or whose time is up), and replies once
    /// the decision is carried out.
    pub(super) fn finish_hook_waits(&mut self, name: &str, now: Instant) {
        let st = self.masters.get_mut(name).expect("configured");
        if st.hook_waits.is_empty() {
            return;
        }
        let (done, keep): (Vec<HookWait>, Vec<HookWait>) =
            st.hook_waits.drain(..).partition(|w| w.pending.len() <= w.enough_when_left || now >= w.deadline);
        st.hook_waits = keep;
        for w in done {
            self.decide(name, &w.trigger, now);
            let st = self.masters.get_mut(name).expect("configured");
            if st.in_flight.is_some() {
                st.waiters.push((w.token, w.trigger));
            } else {
                self.answer_hook(name, w.token, w.trigger);
            }
        }
        self.rearm(name, now);
    }

    /// Replies to a delegated hook with the daemon's belief, and records that it did.
    pub(super) fn answer_hook(&mut self, name: &str, token: u64, trigger: String) {
        let st = &self.masters[name];
        let status = u8::from(st.last_error.is_some());
        let message = self.belief_line(name);
        let st = &self.masters[name];
        let mut r = match &st.belief {
            Some(reason) => Record::new(record::Event::Hook, Actor::Watch, name, record::Change::None, reason),
            None => Record::note(record::Event::Hook, Actor::Watch, name, "none", "no decision yet"),
        };
        r.trigger = Some(trigger);
        r.detail = Some(message.clone());
        r.exit = Some(status);
        self.effects.push(Effect::Record(Box::new(r)));
        self.effects.push(Effect::Reply { token, reply: Reply::new(status, message) });
    }

    fn belief_line(&self, name: &str) -> String {
        let st = &self.masters[name];
        let belief = st.belief.as_ref().map_or("no decision yet".to_string(), ToString::to_string);
        let held = if st.holding { "held" } else { "not held" };
        match &st.last_error {
            Some(e) => format!("daemon could not reconcile `{name}`: {e}"),
            None => format!("daemon reconciled `{name}`: {belief}; VIPs {held} here"),
        }
    }
}
