//! Why a decision was made: the typed reason every decision record carries, its stable code, and
//! its sentence for people.

use std::fmt;

use serde::Serialize;

/// Why a decision was made: the typed reason that every decision record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The newest sentinel answer names this host, and a majority answered.
    NamedHere {
        /// The master as named.
        master: String,
        /// Its epoch.
        epoch: u64,
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// The newest sentinel answer names another host.
    NamedElsewhere {
        /// The master as named.
        master: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The newest answer names another host, but only one sentinel gives it and that master has
    /// not (yet) said it is one: nothing moves on one voice.
    Uncorroborated {
        /// The master as named.
        master: String,
        /// The epoch only one sentinel reports.
        epoch: u64,
    },
    /// A majority answered, but none knows a master by that name.
    NoMasterKnown {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// Sentinels at one epoch name different masters.
    SentinelsConflict {
        /// That epoch.
        epoch: u64,
    },
    /// Too few sentinels answered to claim.
    MinorityNotClaiming {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// A holder without a majority, within its minority timeout.
    MinorityHolding {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
        /// Since the last majority.
        waited_ms: u64,
        /// The minority timeout in force.
        timeout_ms: u64,
    },
    /// A holder without a majority for the minority timeout: this host is on the minority side.
    MinorityTimeout {
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
        /// Since the last majority.
        waited_ms: u64,
        /// The minority timeout in force.
        timeout_ms: u64,
    },
    /// The local Redis must be asked for its role before the VIPs are bound here.
    AskingLocalRedis {
        /// The Redis asked.
        redis: String,
    },
    /// The sentinels name this host, but its Redis is not serving as master.
    LocalRedisNotMaster {
        /// The Redis asked.
        redis: String,
        /// What it said.
        role: String,
    },
    /// Early claim: the local replica that the leader selected reports role:master.
    EarlyClaim {
        /// The replica.
        replica: String,
    },
    /// After an early claim, holding until the sentinels confirm, publish a newer epoch or abort.
    EarlyClaimPending {
        /// The replica.
        replica: String,
        /// Left of the grace period.
        left_ms: u64,
    },
    /// Periodic re-announcement while holding.
    Refresh,
    /// The master's host name does not resolve (yet).
    Unresolved {
        /// The name.
        host: String,
        /// Why.
        why: String,
    },
    /// The VIPs cannot be placed on this host (no interface for them, …).
    Unplaceable {
        /// What is wrong, with the fix.
        error: String,
    },
    /// No sentinels are configured: the hook acts on its arguments.
    HookArguments {
        /// The new master as the hook's arguments name it.
        to: String,
    },
    /// No sentinel answered the hook.
    NoSentinelAnswered {
        /// Sentinels configured.
        configured: usize,
    },
    /// A person asked for it.
    ByHand,
    /// A person claimed against the sentinels' word (`--force`).
    Forced {
        /// The master the sentinels name.
        master: String,
    },
    /// Another host claimed a held VIP while this host has the better claim: re-announce.
    Defend {
        /// The claimant's MAC.
        claimant: String,
        /// What the local Redis said, if asked.
        role: String,
    },
    /// Another host claimed a held VIP, and there is evidence it should have it.
    Yield {
        /// The claimant's MAC.
        claimant: String,
        /// The evidence.
        evidence: String,
    },
    /// The sentinels still name this host, but the leader chose another host's replica and this
    /// host gave the VIPs up to it: claiming them back would only fight the failover.
    FailoverElsewhere {
        /// The replica chosen.
        toward: String,
    },
    /// The daemon stops with `release_on_exit`.
    Stopping,
    /// The leader chose another host's replica: this host's Redis stops acknowledging writes.
    FenceWrites {
        /// The Redis fenced.
        redis: String,
        /// The replica chosen.
        toward: String,
        /// How long the fence lasts unless it is confirmed, lifted or turned into a demotion.
        bound_ms: u64,
        /// What it rests on (one sentinel's word, or evidence none can forge).
        evidence: String,
    },
    /// This host holds the VIPs for its Redis and cannot see a majority of the sentinels: its
    /// Redis refuses writes until a majority answers again.
    FenceOnDoubt {
        /// The Redis fenced.
        redis: String,
        /// Sentinels that answered.
        answered: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// A fence that rested on one sentinel's word is confirmed by evidence no sentinel can forge.
    FenceConfirmed {
        /// The Redis fenced.
        redis: String,
        /// The evidence.
        evidence: String,
        /// How long it lasts now.
        bound_ms: u64,
    },
    /// A replica on another host that a majority of the sentinels list, chosen by the leader,
    /// itself reports role:master: the failover happened, whatever the sentinels still say.
    PromotedElsewhere {
        /// The promoted replica.
        replica: String,
    },

    /// A majority of the sentinels name the new master: the fenced Redis becomes its replica.
    Demote {
        /// The local Redis.
        redis: String,
        /// The new master.
        to: String,
    },
    /// Fail-fast: the local master's Redis is dead (connections refused), so a sentinel of the
    /// majority is asked to fail it over now.
    FailFast {
        /// The local Redis.
        redis: String,
        /// Refused connections seen.
        refusals: u32,
        /// Over how long.
        span_ms: u64,
        /// Replicas a majority of the sentinels would promote.
        replicas: usize,
        /// The sentinel asked.
        sentinel: String,
    },
    /// Fail-fast saw the local master's Redis dead and asks for no failover.
    FailFastRefused {
        /// The local Redis.
        redis: String,
        /// Why not.
        refusal: crate::policy::fail_fast::Refusal,
    },
    /// Fail-fast asked for a failover of the local Redis, which died: the VIPs are not served
    /// from this host until the sentinels settle it.
    FailingOver {
        /// The local Redis.
        redis: String,
    },
    /// The same Redis is fenced and made a replica, so that the other replicas do not sync from it
    /// (a replica whose own master link is down refuses their SYNC with NOMASTERLINK).
    CameBackReplica {
        /// The local Redis.
        redis: String,
        /// The replica it is made a replica of: the leader's choice, or one a majority would promote.
        source: String,
    },
    /// The failover aborted: the fenced Redis takes writes again.
    LiftFence {
        /// The local Redis.
        redis: String,
        /// Why.
        why: String,
    },
}

impl Reason {
    /// The variant's name, e.g. `minority_timeout`: what changes when the belief changes.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NamedHere { .. } => "named_here",
            Reason::NamedElsewhere { .. } => "named_elsewhere",
            Reason::Uncorroborated { .. } => "uncorroborated",
            Reason::NoMasterKnown { .. } => "no_master_known",
            Reason::SentinelsConflict { .. } => "sentinels_conflict",
            Reason::MinorityNotClaiming { .. } => "minority_not_claiming",
            Reason::MinorityHolding { .. } => "minority_holding",
            Reason::MinorityTimeout { .. } => "minority_timeout",
            Reason::AskingLocalRedis { .. } => "asking_local_redis",
            Reason::LocalRedisNotMaster { .. } => "local_redis_not_master",
            Reason::EarlyClaim { .. } => "early_claim",
            Reason::EarlyClaimPending { .. } => "early_claim_pending",
            Reason::Refresh => "refresh",
            Reason::Unresolved { .. } => "unresolved",
            Reason::Unplaceable { .. } => "unplaceable",
            Reason::HookArguments { .. } => "hook_arguments",
            Reason::NoSentinelAnswered { .. } => "no_sentinel_answered",
            Reason::ByHand => "by_hand",
            Reason::Forced { .. } => "forced",
            Reason::Defend { .. } => "defend",
            Reason::Yield { .. } => "yield",
            Reason::FailoverElsewhere { .. } => "failover_elsewhere",
            Reason::Stopping => "stopping",
            Reason::FenceWrites { .. } => "fence_writes",
            Reason::Demote { .. } => "demote",
            Reason::LiftFence { .. } => "lift_fence",
            Reason::FailFast { .. } => "fail_fast",
            Reason::FailFastRefused { .. } => "fail_fast_refused",
            Reason::FailingOver { .. } => "failing_over",
            Reason::CameBackReplica { .. } => "came_back_replica",
            Reason::FenceConfirmed { .. } => "fence_confirmed",
            Reason::FenceOnDoubt { .. } => "fence_on_doubt",
            Reason::PromotedElsewhere { .. } => "promoted_elsewhere",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NamedHere { master, epoch, answered, configured } => {
                write!(f, "the sentinels name this host ({master}, epoch {epoch}; {answered} of {configured} answered)")
            }
            Reason::NamedElsewhere { master, epoch } => {
                write!(f, "the sentinels name another host ({master}, epoch {epoch})")
            }
            Reason::Uncorroborated { master, epoch } => write!(
                f,
                "only one sentinel names {master} (at epoch {epoch}) and it has not said it is a master: not letting go on one voice"
            ),
            Reason::NoMasterKnown { answered, configured } => write!(
                f,
                "the sentinels know no master by that name ({answered} of {configured} answered); changing nothing"
            ),
            Reason::SentinelsConflict { epoch } => {
                write!(f, "sentinels at epoch {epoch} name different masters; changing nothing")
            }
            Reason::MinorityNotClaiming { answered, configured } => {
                write!(f, "only {answered} of {configured} sentinels answered; not claiming without a majority")
            }
            Reason::MinorityHolding { answered, configured, waited_ms, timeout_ms } => write!(
                f,
                "only {answered} of {configured} sentinels answered for {waited_ms} ms; holding until minority_timeout_ms {timeout_ms}"
            ),
            Reason::MinorityTimeout { answered, configured, waited_ms, timeout_ms } => write!(
                f,
                "only {answered} of {configured} sentinels answered for {waited_ms} ms (minority_timeout_ms {timeout_ms}): \
                 this host is on the minority side"
            ),
            Reason::AskingLocalRedis { redis } => write!(f, "asking the local Redis at {redis} for its role first"),
            Reason::LocalRedisNotMaster { redis, role } => write!(
                f,
                "the sentinels name this host, but its Redis at {redis} does not serve as master ({role}); not claiming"
            ),
            Reason::EarlyClaim { replica } => write!(
                f,
                "early claim: local replica {replica}, selected by the leader, reports role:master; sentinel confirmation pending"
            ),
            Reason::EarlyClaimPending { replica, left_ms } => write!(
                f,
                "holding the early claim for {replica} until the sentinels confirm ({left_ms} ms of grace left)"
            ),
            Reason::Refresh => f.write_str("periodic re-announcement (announce_refresh_ms)"),
            Reason::Unresolved { host, why } => write!(f, "cannot tell whether {host} is this host: {why}"),
            Reason::Unplaceable { error } => f.write_str(error),
            Reason::HookArguments { to } => {
                write!(f, "no sentinels configured: acting on the hook's arguments (to {to})")
            }
            Reason::NoSentinelAnswered { configured } => {
                write!(f, "none of {configured} sentinels answered: not acting on arguments that may be hours old")
            }
            Reason::ByHand => f.write_str("asked for by hand"),
            Reason::Forced { master } => write!(f, "claimed by hand with --force although the sentinels name {master}"),
            Reason::Defend { claimant, role } => {
                write!(f, "defending against a claim by {claimant} (the Redis here: {role})")
            }
            Reason::Yield { claimant, evidence } => write!(f, "yielding to a claim by {claimant}: {evidence}"),
            Reason::FailoverElsewhere { toward } => write!(
                f,
                "{toward}, a replica on another host, reported role:master after the leader chose it: not claiming the \
                 VIPs back while that failover runs"
            ),
            Reason::Stopping => f.write_str("stopping with release_on_exit"),
            Reason::FenceWrites { redis, toward, bound_ms, evidence } => write!(
                f,
                "the leader chose {toward}, a replica on another host ({evidence}): {redis} refuses writes for at most \
                 {bound_ms} ms, so that it acknowledges none that the failover would lose"
            ),
            Reason::FenceOnDoubt { redis, answered, configured } => write!(
                f,
                "only {answered} of {configured} sentinels answer: the majority may be failing this master over, so {redis} \
                 refuses writes until a majority answers again"
            ),
            Reason::FenceConfirmed { redis, evidence, bound_ms } => {
                write!(f, "the fence on {redis} is confirmed ({evidence}): it lasts up to {bound_ms} ms")
            }
            Reason::PromotedElsewhere { replica } => {
                write!(f, "{replica}, the replica the leader chose, reports role:master itself: letting go at once")
            }
            Reason::Demote { redis, to } => write!(
                f,
                "a majority of the sentinels name {to} at a newer epoch: {redis} becomes its replica (writes get READONLY)"
            ),
            Reason::LiftFence { redis, why } => write!(f, "writes on {redis} resume: {why}"),
            Reason::FailFast { redis, refusals, span_ms, replicas, sentinel } => write!(
                f,
                "{redis} refused {refusals} connections over {span_ms} ms: it is dead, so sentinel {sentinel} is asked \
                 to fail it over now ({replicas} replica(s) it may promote)"
            ),
            Reason::FailFastRefused { redis, refusal } => {
                write!(f, "{redis} is dead, and no failover is asked for: {refusal}")
            }
            Reason::FailingOver { redis } => write!(
                f,
                "{redis} died and its failover is asked for: the VIPs are not served from this host until the \
                 sentinels settle it (a Redis restarted meanwhile may be empty, or hold old data)"
            ),
            Reason::CameBackReplica { redis, source } => write!(
                f,
                "{redis} came back as a master during the failover asked for its death: it refuses writes and becomes \
                 a replica of {source}, so that no replica syncs its data set"
            ),
        }
    }
}
