//! What the core asks the I/O loop to do ([`Effect`]), and the metric updates among it.

use super::Job;
use crate::config::{HostPort, SentinelAddr};
use crate::control::Reply;
use crate::fence::Step;
use crate::policy::Reason;
use crate::record::Record;

/// Something for the I/O loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Carry out a decision about a master's VIPs; answer with [`super::Input::Applied`].
    Apply(Box<Job>),
    /// Ask the Redis at `addr` for its role (and whether it is fenced); answer with [`super::Input::Role`].
    AskRole {
        /// The master.
        master: String,
        /// The Redis.
        addr: HostPort,
    },
    /// Look `name` up; answer with [`super::Input::Resolved`].
    Resolve(String),
    /// Ask these sentinels again now (with their replica lists when `replicas`).
    Nudge {
        /// The sentinels.
        sentinels: Vec<SentinelAddr>,
        /// Ask for replica lists too.
        replicas: bool,
    },
    /// Carry out steps on a Redis (fence, lift, demote); answer with [`super::Input::StepsDone`].
    Redis {
        /// The master.
        master: String,
        /// The Redis.
        redis: HostPort,
        /// Why, for the record.
        reason: Reason,
        /// In order, on one connection.
        steps: Vec<Step>,
        /// Leave a Redis that is not a master alone.
        only_if_master: bool,
    },
    /// Poll this replica's `ROLE` until it reports master; answer with [`super::Input::Promoted`] or
    /// [`super::Input::WatchEnded`]. The replica is one a majority of the master's sentinels list.
    Watch {
        /// The master.
        master: String,
        /// The replica.
        replica: HostPort,
    },
    /// Stop the watch of this replica.
    Unwatch {
        /// The master.
        master: String,
        /// The replica.
        replica: HostPort,
    },
    /// Keep a connection to the local master open and say at once when it refuses connections
    /// ([`super::Input::Role`] with `Gone`); every attempt while it is gone, and the first accepted
    /// one, is an [`super::Input::LocalProbe`].
    WatchLocal {
        /// The master.
        master: String,
        /// The local Redis.
        redis: HostPort,
    },
    /// Stop watching the local master.
    UnwatchLocal {
        /// The master.
        master: String,
    },
    /// Send `SENTINEL FAILOVER <master>` to this sentinel (fail-fast); answer with
    /// [`super::Input::FailoverAsked`].
    AskFailover {
        /// The master.
        master: String,
        /// One sentinel of the majority.
        sentinel: SentinelAddr,
    },
    /// Move the master's VIPs here through its provider's API, then ask who holds them; answer
    /// with [`super::Input::Delivery`].
    Deliver {
        /// The master.
        master: String,
        /// Names the call in its answer.
        generation: u64,
    },
    /// Ask the provider who holds the master's VIPs; answer with [`super::Input::Delivery`].
    CheckDelivery {
        /// The master.
        master: String,
        /// Names the call in its answer.
        generation: u64,
    },
    /// Stop the call under way for the master, if any: this host lets go.
    StopDelivery {
        /// The master.
        master: String,
    },
    /// Answer a hook (see [`super::Input::Hook`]).
    Reply {
        /// The request.
        token: u64,
        /// The answer.
        reply: Reply,
    },
    /// Emit this record.
    Record(Box<Record>),
    /// Update a metric.
    Metric(Metric),
    /// The sentinels whose heartbeats go fast (`heartbeat_ms`), the others' at the probe period:
    /// those on other hosts while this host holds VIPs (one on this host cannot be cut off).
    Heartbeats {
        /// The fast ones.
        fast: Vec<SentinelAddr>,
    },
}

/// A metric update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// Sentinels answering for a master.
    Sentinels {
        /// The master.
        master: String,
        /// Fresh answers.
        answered: usize,
        /// Configured.
        configured: usize,
    },
    /// Another MAC claimed one of the master's held VIPs.
    Conflict {
        /// The master.
        master: String,
    },
    /// Whether a VIP is bound here.
    VipBound {
        /// The master.
        master: String,
        /// The VIP.
        vip: String,
        /// Bound.
        bound: bool,
    },
    /// A fence was placed on the local Redis.
    Fence {
        /// The master.
        master: String,
    },
    /// Fail-fast asked a sentinel for a failover (`trigger`, once per sentinel asked), or refused
    /// to (the code of its refusal, once per death).
    FailFast {
        /// The master.
        master: String,
        /// `trigger` or a [`crate::policy::fail_fast::Refusal`] code.
        outcome: &'static str,
    },
    /// Whether the provider delivers the master's VIPs to this host.
    Delivered {
        /// The master.
        master: String,
        /// Delivered.
        delivered: bool,
    },
    /// The loop handled an address round (for /healthz).
    Tick,
}
