//! The daemon's core: a pure state machine in the style of quinn-proto's `Connection`. It owns
//! everything the daemon knows and remembers (each sentinel's latest answers and replica lists,
//! this host's addresses, names, every master's memory, fences, early claims, hook waits), takes
//! [`Input`]s with the time they arrive, and answers with [`Effect`]s for the I/O loop
//! ([`crate::daemon`]) to carry out, and with the next moment it wants to be woken
//! ([`Core::poll_timeout`]). It never does I/O and never reads a clock, so every sequence of
//! events can be played through it in virtual time (`tests/`).
//!
//! What it decides with: [`crate::policy`] says where the VIPs belong; [`failover`] weighs what
//! sentinels tell of a failover in progress, so that one sentinel's word is only ever a reason to
//! ask again, and only evidence no sentinel can forge fences for long, yields, demotes or sends
//! credentials anywhere.

mod delivery;
mod effects;
mod fail_fast;
mod failover;
mod fencing;
mod hooks;
mod master;
mod status;
mod views;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, HostPort, SentinelAddr};
use crate::network::defend::Conflict;
use crate::network::host::HostState;
use crate::policy::{self, Act, Locality, Reason, RoleSeen, Weighed};
use crate::record::{self, Record};
use crate::resolve::{self, LookupError};
use crate::sentinel::{Answer, Listed, events};

pub use delivery::DeliveryOutcome;
pub use effects::{Effect, Metric};
pub use fail_fast::AskOutcome;
pub use failover::SELECTION_WINDOW;
pub use fencing::{FENCE_BOUND, single_voice_bound};
use master::MasterState;
use views::View;

/// One decision for the applier to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The master.
    pub master: String,
    /// Hold, Release or Announce.
    pub act: Act,
    /// Why.
    pub reason: Reason,
    /// What made the loop decide now.
    pub trigger: String,
    /// The sentinels' view it rests on.
    pub sentinels: Option<String>,
    /// A decision, or the answer to a conflict.
    pub event: record::Event,
    /// Extra detail for the record.
    pub detail: Option<String>,
}

/// What became of a job.
#[derive(Debug)]
pub struct Applied {
    /// The job.
    pub job: Job,
    /// Its record (already emitted).
    pub record: Record,
    /// It changed addresses.
    pub changed: bool,
}

/// Something the core learns, with the time it arrives passed to [`Core::handle`].
#[derive(Debug)]
pub enum Input {
    /// A sentinel answered about the masters it serves; `replicas` holds the lists it was asked for.
    Answers {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// Its answer per master.
        answers: Vec<(String, Answer)>,
        /// Its replica list per master, for the masters asked about them this time.
        replicas: Vec<(String, Vec<Listed>)>,
    },
    /// A sentinel answered a heartbeat: it is alive, and its last answer still stands.
    Alive(SentinelAddr),
    /// A sentinel could not be asked (connection refused or lost, no answer in time).
    Unreachable {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// Why.
        why: String,
    },
    /// A sentinel published an event that may matter.
    Event {
        /// The sentinel.
        sentinel: SentinelAddr,
        /// The event.
        event: events::Event,
    },
    /// An event subscription is up.
    Following(SentinelAddr),
    /// An event subscription went down.
    EventsLost(SentinelAddr, String),
    /// This host's addresses (or why they could not be read).
    Host(Result<HostState, String>),
    /// A name lookup finished.
    Resolved {
        /// The name.
        name: String,
        /// Its addresses, or why not.
        result: Result<Vec<IpAddr>, LookupError>,
    },
    /// A Redis answered `ROLE` (or failed to): the local one, or a promoted replica re-checked.
    Role {
        /// The master it serves.
        master: String,
        /// What it said.
        seen: RoleSeen,
    },
    /// A watched replica (chosen by the leader, listed by a majority) reports role:master.
    Promoted {
        /// The master.
        master: String,
        /// The replica.
        replica: HostPort,
        /// How many polls it took.
        polls: u32,
    },
    /// A replica watch ended by its own bound without seeing role:master.
    WatchEnded {
        /// The master.
        master: String,
        /// The replica.
        replica: HostPort,
    },
    /// A decision was carried out (or failed).
    Applied(Box<Applied>),
    /// Another host claimed one of our VIPs.
    Conflict(Conflict),
    /// A hook handed its call over the control socket (`token` names the reply).
    Hook {
        /// Names the reply, see [`Effect::Reply`].
        token: u64,
        /// The caller's uid (SO_PEERCRED).
        uid: u32,
        /// The master named in its arguments.
        master: String,
        /// Its seven arguments, for the record.
        args: Vec<String>,
    },
    /// Steps on a Redis were carried out (or failed).
    StepsDone {
        /// The master.
        master: String,
        /// What happened, in words.
        outcome: Result<String, String>,
    },
    /// The local watch tried a connection to the local master (fail-fast counts refusals).
    LocalProbe {
        /// The master.
        master: String,
        /// Refused (nothing listens), or accepted.
        refused: bool,
    },
    /// A sentinel answered `SENTINEL FAILOVER` (see [`Effect::AskFailover`]).
    FailoverAsked {
        /// The master.
        master: String,
        /// The sentinel.
        sentinel: SentinelAddr,
        /// What it answered.
        outcome: AskOutcome,
    },
    /// The provider answered a call or check (see [`Effect::Deliver`], [`Effect::CheckDelivery`]).
    Delivery {
        /// The master.
        master: String,
        /// The call's generation.
        generation: u64,
        /// It was a check, not a move.
        checked_only: bool,
        /// What came back.
        outcome: DeliveryOutcome,
    },
    /// The moment [`Core::poll_timeout`] named has come.
    Timeout,
}

/// The settings the core decides with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Those of the VIP rule.
    pub policy: policy::Settings,
    /// How old a sentinel's answer may be and still count.
    pub fresh_for: Duration,
    /// How long a delegated hook waits for fresh answers.
    pub hook_wait: Duration,
    /// `[watch] early_claim`.
    pub early_claim: bool,
    /// `[watch] fail_fast`.
    pub fail_fast: bool,
    /// Decide and say, change nothing.
    pub dry_run: bool,
}

/// How old a local `ROLE` answer may be and still count.
pub const ROLE_FRESH_FOR: Duration = Duration::from_millis(250);
/// A sentinel's event still explains a decision this long after it arrived.
const EVENT_ECHO: Duration = Duration::from_secs(2);

/// The daemon's state machine.
pub struct Core {
    config: Arc<Config>,
    managed: Vec<IpAddr>,
    settings: Settings,
    started: Instant,
    started_wall: SystemTime,
    views: BTreeMap<SentinelAddr, View>,
    masters: BTreeMap<String, MasterState>,
    host: Option<Arc<HostState>>,
    host_error: Option<String>,
    names: resolve::Cache,
    allowed_uids: BTreeSet<u32>,
    effects: Vec<Effect>,
    /// [`Effect::Holding`] was said at least once.
    told_holding: bool,
}

impl Core {
    /// A core for `config`, started at `now`; `allowed_uids` may hand hooks over.
    pub fn new(config: Arc<Config>, settings: Settings, allowed_uids: BTreeSet<u32>, now: Instant) -> Core {
        let mut views = BTreeMap::new();
        for m in config.masters.values() {
            for s in &m.sentinels {
                views.entry(s.clone()).or_insert_with(View::default);
            }
        }
        Core {
            managed: config.managed(),
            masters: config.masters.keys().map(|k| (k.clone(), MasterState::default())).collect(),
            config,
            settings,
            started: now,
            started_wall: SystemTime::now(),
            views,
            host: None,
            host_error: None,
            names: resolve::Cache::default(),
            allowed_uids,
            effects: Vec::new(),
            told_holding: false,
        }
    }

    /// The effects produced so far, in order; the loop carries them out.
    pub fn drain(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The earliest moment a timer of the core runs out, if any: call [`Core::handle`] with
    /// [`Input::Timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.masters.values().filter_map(|m| m.timers.next()).min()
    }

    /// Takes one input that arrived at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Answers { sentinel, answers, replicas } => {
                let Some(view) = self.views.get_mut(&sentinel) else { return };
                if let Some(why) = view.down.take() {
                    tracing::info!("sentinel {sentinel} answers again (was: {why})");
                }
                view.answered(answers, replicas, now);
                self.sentinel_reported(&sentinel, now);
            }
            Input::Unreachable { sentinel, why } => {
                let Some(view) = self.views.get_mut(&sentinel) else { return };
                if view.down.is_none() {
                    tracing::warn!("sentinel {sentinel} unreachable: {why}");
                }
                view.down = Some(why);
                self.sentinel_reported(&sentinel, now);
            }
            Input::Event { sentinel, event } => self.event(&sentinel, event, now),
            Input::Following(s) => {
                tracing::info!("following the events of sentinel {s}");
                self.effects.push(Effect::Nudge { sentinels: vec![s], replicas: true });
            }
            Input::Alive(s) => {
                if let Some(view) = self.views.get_mut(&s) {
                    view.alive(now);
                }
            }
            Input::EventsLost(s, why) => {
                tracing::warn!("lost the events of sentinel {s}: {why}; reconnecting");
                if let Some(view) = self.views.get_mut(&s) {
                    view.events_lost();
                }
            }
            Input::Host(Ok(host)) => {
                if self.host_error.take().is_some() {
                    tracing::info!("reading this host's addresses works again");
                }
                self.host_seen(host);
                self.effects.push(Effect::Metric(Metric::Tick));
                self.decide_all("address round", now);
            }
            Input::Host(Err(e)) => {
                if self.host_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("cannot read this host's addresses: {e}; retrying");
                }
                self.host_error = Some(e);
            }
            Input::Resolved { name, result } => {
                if let Err(e) = &result {
                    tracing::warn!("{e}");
                }
                self.names.put(&name, result, now);
                let names: Vec<String> = self.masters.keys().cloned().collect();
                for m in &names {
                    self.retry_pending(m, now);
                }
                self.decide_all(&format!("name {name} resolved"), now);
            }
            Input::Role { master, seen } => self.role_seen(&master, seen, now),
            Input::Promoted { master, replica, polls } => self.promoted(&master, replica, polls, now),
            Input::WatchEnded { master, replica } => {
                if let Some(st) = self.masters.get_mut(&master) {
                    st.failover.watching.remove(&replica);
                }
            }
            Input::Applied(a) => self.applied(*a, now),
            Input::Conflict(c) => self.conflict(c, now),
            Input::Hook { token, uid, master, args } => self.hook(token, uid, master, args, now),
            Input::StepsDone { master, outcome } => {
                if let Some(st) = self.masters.get_mut(&master) {
                    st.fence_error = outcome.err();
                    if st.fence_error.is_some() {
                        self.steps_failed(&master, now);
                        self.rearm(&master, now);
                    }
                }
            }
            Input::LocalProbe { master, refused } => self.local_probe(&master, refused, now),
            Input::FailoverAsked { master, sentinel, outcome } => self.failover_asked(&master, &sentinel, outcome, now),
            Input::Delivery { master, generation, checked_only, outcome } => {
                self.delivery_done(&master, generation, checked_only, outcome, now);
            }
            Input::Timeout => self.timeout(now),
        }
    }

    /// Release every master's VIPs (`release_on_exit`): the loop then waits for the jobs.
    pub fn stopping(&mut self) {
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in &names {
            let st = self.masters.get_mut(name).expect("configured");
            st.in_flight = None;
            let d = policy::Decision { act: Act::Release, reason: Reason::Stopping };
            self.dispatch(name, d, "SIGTERM", record::Event::Decision, None, None);
        }
    }

    /// Whether any decision is still being carried out.
    pub fn busy(&self) -> bool {
        self.masters.values().any(|s| s.in_flight.is_some())
    }

    /// Timers that ran out: decide again for their masters.
    fn timeout(&mut self, now: Instant) {
        let due: Vec<(String, Vec<master::Timer>)> = self
            .masters
            .iter()
            .map(|(n, st)| (n.clone(), st.timers.due(now)))
            .filter(|(_, due)| !due.is_empty())
            .collect();
        for (name, timers) in due {
            let st = self.masters.get_mut(&name).expect("configured");
            for t in &timers {
                st.timers.clear(*t);
            }
            let what = timers.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
            self.expire_failover(&name, now);
            self.fail_fast_rules(&name, now);
            self.decide(&name, &format!("timer {what}"), now);
            self.finish_hook_waits(&name, now);
        }
    }

    /// A sentinel answered or failed: decide for the masters it serves, and let waiting hooks go.
    fn sentinel_reported(&mut self, sentinel: &SentinelAddr, now: Instant) {
        let names = self.served_by(sentinel);
        for name in names {
            self.retry_pending(&name, now);
            let trigger = match &self.masters[&name].last_event {
                Some((ev, at)) if now.saturating_duration_since(*at) < EVENT_ECHO => {
                    format!("{ev}; answer from sentinel {sentinel}")
                }
                _ => format!("answer from sentinel {sentinel}"),
            };
            self.decide(&name, &trigger, now);
            let st = self.masters.get_mut(&name).expect("configured");
            for w in &mut st.hook_waits {
                w.pending.remove(sentinel);
            }
            self.finish_hook_waits(&name, now);
        }
    }

    /// The masters `sentinel` is configured for.
    fn served_by(&self, sentinel: &SentinelAddr) -> Vec<String> {
        self.config.masters.values().filter(|m| m.sentinels.contains(sentinel)).map(|m| m.name.clone()).collect()
    }

    fn decide_all(&mut self, trigger: &str, now: Instant) {
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in &names {
            self.decide(name, trigger, now);
            self.finish_hook_waits(name, now);
        }
    }

    /// Whether `host` names this host, from the name cache; asks for a lookup when one is due.
    fn locality(&mut self, host: &str, now: Instant) -> Locality {
        if self.names.start_lookup(host, now) {
            self.effects.push(Effect::Resolve(host.to_string()));
        }
        let Some(state) = &self.host else { return Locality::Unknown("this host's addresses are not read yet".into()) };
        match self.names.get(host) {
            Some(Ok(ips)) => policy::locality(host, &ips, state, &self.managed),
            Some(Err(e)) => Locality::Unknown(e.to_string()),
            None => Locality::Unknown(format!("looking up {host}")),
        }
    }

    fn host_seen(&mut self, host: HostState) {
        let was = self.masters.values().any(|st| st.holding);
        for (name, st) in &mut self.masters {
            let master = &self.config.masters[name];
            st.holding = master.vips.iter().any(|v| host.bound(v.addr).next().is_some());
            for vip in &master.vips {
                let bound = host.bound(vip.addr).next().is_some();
                self.effects.push(Effect::Metric(Metric::VipBound {
                    master: name.clone(),
                    vip: vip.to_string(),
                    bound,
                }));
            }
        }
        self.host = Some(Arc::new(host));
        let holding = self.masters.values().any(|st| st.holding);
        if holding != was || !self.told_holding {
            self.told_holding = true;
            let host = self.host.as_deref().expect("set above");
            let remote = |s: &&SentinelAddr| s.ip().is_none_or(|ip| !host.is_local(ip, &self.managed));
            let fast = if holding { self.views.keys().filter(remote).cloned().collect() } else { Vec::new() };
            self.effects.push(Effect::Heartbeats { fast });
        }
    }

    /// This host's addresses as last read, if they have been.
    pub fn host(&self) -> Option<&HostState> {
        self.host.as_deref()
    }
}

/// What a decision about one master rests on, as the core knows it at one moment.
struct Now {
    master: crate::config::Master,
    weighed: Weighed,
    locality: Locality,
    /// The verdict's master is a replica a majority of the sentinels list.
    named_vouched: bool,
    host: Arc<HostState>,
    at: Instant,
}

impl Now {
    fn facts<'a>(
        &'a self,
        managed: &'a [IpAddr],
        roles: &'a BTreeMap<HostPort, RoleSeen>,
        settings: policy::Settings,
        started: Instant,
    ) -> policy::Facts<'a> {
        policy::Facts {
            master: &self.master,
            weighed: &self.weighed,
            locality: self.locality.clone(),
            host: &self.host,
            managed,
            roles,
            named_vouched: self.named_vouched,
            settings,
            started,
            now: self.at,
        }
    }
}
