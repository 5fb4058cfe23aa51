//! The short-lived commands' decisions: Sentinel's hook call and `claim`/`release` by hand. They
//! ask the sentinels once and decide from the answers, the same weighing the daemon uses.

use super::{Act, Decision, Locality, Reason, Verdict, Weighed};
use crate::config::HostPort;
use crate::network::plan::Want;

/// Why a short-lived command refuses to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A retry may succeed (exit 1); otherwise exit 2.
    pub retry: bool,
    /// Why.
    pub reason: Reason,
    /// A sentence for the operator: what failed and what to do.
    pub message: String,
}

/// Whether the hook has heard enough to decide, before every sentinel answered.
///
/// It has when every sentinel answered (or failed), or when a majority answered and the newest of
/// their answers names the very master of the hook's own arguments. That is safe: the arguments
/// are the calling sentinel's config at the call, the majority's newest answer agrees with it, and
/// a config newer than both can only come from a later failover, which makes every sentinel call
/// the hook again once it learns of it; those calls queue behind this one on the master's lock and
/// then act on the newer config. A sentinel that is cut off is never waited for.
pub fn hook_ready(weighed: &Weighed, all_in: bool, to: &HostPort) -> bool {
    all_in || (weighed.majority() && weighed.master() == Some(to))
}

/// Whom the hook compares with this host's addresses: the newest sentinel answer, or its own
/// arguments when no sentinels are configured.
pub fn hook_target(weighed: Option<&Weighed>, to: &HostPort) -> Result<(HostPort, Option<Reason>), Refusal> {
    let Some(w) = weighed else {
        return Ok((to.clone(), Some(Reason::HookArguments { to: to.to_string() })));
    };
    match &w.verdict {
        Verdict::Master { addr, .. } => Ok((addr.clone(), None)),
        _ if w.answered == 0 => Err(Refusal {
            retry: true,
            reason: Reason::NoSentinelAnswered { configured: w.configured },
            message: format!(
                "none of the {} sentinels answered; not acting on arguments that may be hours old (Sentinel retries the hook)",
                w.configured
            ),
        }),
        Verdict::Conflict { epoch } => Err(Refusal {
            retry: true,
            reason: Reason::SentinelsConflict { epoch: *epoch },
            message: format!("the sentinels disagree ({}); not acting, retry", w.summary()),
        }),
        Verdict::NoMaster => Err(Refusal {
            retry: w.answered < w.configured,
            reason: Reason::NoMasterKnown { answered: w.answered, configured: w.configured },
            message: format!(
                "the sentinels that answered do not monitor this master ({}); check `sentinels` in the config",
                w.summary()
            ),
        }),
    }
}

/// The hook's decision once it knows whether the target is this host. Claiming needs a majority
/// of the sentinels (as in the daemon); releasing never waits for one.
pub fn hook(weighed: Option<&Weighed>, target: &HostPort, locality: &Locality) -> Result<Decision, Refusal> {
    match locality {
        Locality::Elsewhere => Ok(Decision::new(
            Act::Release,
            Reason::NamedElsewhere { master: target.to_string(), epoch: weighed.map_or(0, Weighed::epoch) },
        )),
        Locality::Here => match weighed {
            None => Ok(Decision::new(Act::Hold, Reason::HookArguments { to: target.to_string() })),
            Some(w) if w.majority() => Ok(Decision::new(
                Act::Hold,
                Reason::NamedHere {
                    master: target.to_string(),
                    epoch: w.epoch(),
                    answered: w.answered,
                    configured: w.configured,
                },
            )),
            Some(w) => Err(Refusal {
                retry: true,
                reason: Reason::MinorityNotClaiming { answered: w.answered, configured: w.configured },
                message: format!(
                    "only {} of {} sentinels answered: not claiming without a majority (Sentinel retries the hook)",
                    w.answered, w.configured
                ),
            }),
        },
        Locality::Unknown(why) => Err(Refusal {
            retry: false,
            reason: Reason::Unresolved { host: target.host.clone(), why: why.clone() },
            message: why.clone(),
        }),
    }
}

/// `vipctl claim` / `vipctl release`: what a person asked for, unless the sentinels contradict a
/// claim (which would put the VIPs on two hosts) and `force` is not given. `locality` is that of
/// the master the sentinels name, when they name one.
pub fn by_hand(
    want: Want,
    weighed: Option<&Weighed>,
    locality: Option<&Locality>,
    force: bool,
) -> Result<Decision, Refusal> {
    let act = match want {
        Want::Hold => Act::Hold,
        Want::Release => Act::Release,
    };
    match (want, weighed.and_then(Weighed::master), locality) {
        (Want::Hold, Some(addr), Some(Locality::Elsewhere)) if force => {
            Ok(Decision::new(act, Reason::Forced { master: addr.to_string() }))
        }
        (Want::Hold, Some(addr), Some(Locality::Elsewhere)) => Err(Refusal {
            retry: false,
            reason: Reason::NamedElsewhere { master: addr.to_string(), epoch: weighed.map_or(0, Weighed::epoch) },
            message: format!(
                "sentinels say the master is {addr} ({}), not this host: claiming here would put the VIP on two hosts; use --force to claim anyway",
                weighed.map(Weighed::summary).unwrap_or_default()
            ),
        }),
        (Want::Hold, Some(addr), Some(Locality::Unknown(why))) if !force => Err(Refusal {
            retry: true,
            reason: Reason::Unresolved { host: addr.host.clone(), why: why.clone() },
            message: format!("cannot tell whether {addr} is this host: {why}; use --force to claim anyway"),
        }),
        _ => Ok(Decision::new(act, Reason::ByHand)),
    }
}
