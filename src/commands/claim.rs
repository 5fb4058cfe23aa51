//! `vipctl claim` and `vipctl release`: the same convergence as the hook, asked for by a person.

use std::time::Instant;

use anyhow::anyhow;

use super::{Ctx, all_of_them, ask_sentinels, locality_of};
use crate::error::{Failure, Outcome};
use crate::network::apply;
use crate::network::netlink::Netlink;
use crate::network::plan::{Action, Want};
use crate::policy::{self, Locality, Reason, Weighed};
use crate::record::{Actor, Change, Event, Record};

/// Bind and announce the VIPs of MASTER here (re-announces when already bound).
#[derive(Debug, clap::Args)]
pub struct ClaimArgs {
    /// Master name; may be omitted when the config has only one.
    pub master: Option<String>,
    /// Claim even when the sentinels say another host is master.
    #[arg(long)]
    pub force: bool,
}

/// Unbind the VIPs of MASTER here (does nothing when they are not bound).
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// Master name; may be omitted when the config has only one.
    pub master: Option<String>,
}

/// `vipctl claim`.
pub async fn claim(ctx: &Ctx, args: &ClaimArgs) -> Outcome<()> {
    run(ctx, args.master.as_deref(), Want::Hold, args.force).await
}

/// `vipctl release`.
pub async fn release(ctx: &Ctx, args: &ReleaseArgs) -> Outcome<()> {
    run(ctx, args.master.as_deref(), Want::Release, false).await
}

/// Binds (or with `Want::Release`, unbinds) the VIPs of `name` (or of the only master).
///
/// A claim that the sentinels contradict is refused unless `force`: it would put the VIP on two
/// hosts. A release is always carried out, with a warning when this host is the master.
async fn run(ctx: &Ctx, name: Option<&str>, want: Want, force: bool) -> Outcome<()> {
    let start = Instant::now();
    let actor = if want == Want::Hold { Actor::Claim } else { Actor::Release };
    let config = ctx.config()?;
    let master = config.pick_master(name).map_err(|m| Failure::permanent(anyhow!(m)))?;
    let managed = config.managed();
    let lock = ctx.lock(&config, master).await?;
    let nl = Netlink::open()?;
    let host = nl.snapshot().await?;

    let weighed = ask_sentinels(&config, master, all_of_them).await.map(|r| policy::weigh(&r, super::ONE_SHOT_FRESH));
    let locality = match weighed.as_ref().and_then(Weighed::master) {
        None => {
            if let Some(w) = &weighed {
                tracing::warn!("sentinels of `{}` gave no master ({}); going ahead", master.name, w.summary());
            }
            None
        }
        Some(addr) => match locality_of(addr, &host, &managed).await {
            Ok(l) => Some(l),
            // A release must not be blocked by a name lookup; a claim must be sure.
            Err(f) if want == Want::Release => {
                tracing::warn!("cannot tell whether {addr} is this host ({f}); releasing anyway");
                None
            }
            Err(f) => Some(Locality::Unknown(f.to_string())),
        },
    };
    if want == Want::Release && locality == Some(Locality::Here) {
        tracing::warn!(
            "this host runs the master of `{}` per the sentinels; its VIPs stay down until claimed again",
            master.name
        );
    }
    let change = if want == Want::Hold { Change::Claim } else { Change::Release };
    let record = |reason: &Reason| {
        let mut r = Record::new(Event::Decision, actor, &master.name, change, reason);
        r.sentinels = weighed.as_ref().map(Weighed::summary);
        r
    };
    let decision = match policy::by_hand(want, weighed.as_ref(), locality.as_ref(), force) {
        Ok(d) => d,
        Err(refusal) => {
            let e = anyhow!("{}", refusal.message);
            let f = if refusal.retry { Failure::transient(e) } else { Failure::permanent(e) };
            let mut r = record(&refusal.reason).failed(&f);
            r.decision = Change::None;
            r.exit = Some(f.status());
            r.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
            r.emit();
            return Err(f);
        }
    };

    let result =
        apply::converge(&nl, master, want, &host, &managed, &apply::How { dry_run: ctx.dry_run, ..Default::default() })
            .await;
    // The lock guards address changes only; a notify command must not hold up a hook.
    drop(lock);
    let mut r = record(&decision.reason);
    let outcome = match result {
        Ok(mut report) => {
            let prefix = if ctx.dry_run { "would " } else { "" };
            println!("{prefix}{want} `{}`: {}", master.name, report.summary());
            r.actions = report.actions.iter().map(ToString::to_string).collect();
            r.frames = report.frames_sent;
            if !ctx.dry_run && report.actions.iter().any(Action::changes_addresses) {
                let outcome = crate::notify::run(master, want, &format!("vipctl {want} by hand")).await;
                if outcome != crate::notify::Outcome::None {
                    r.detail = Some(outcome.to_string());
                }
            }
            match report.failure.take() {
                Some(f) => Err(f),
                None if !report.warnings.is_empty() => {
                    Err(Failure::transient(anyhow!("{}", report.warnings.join("; "))))
                }
                None => Ok(()),
            }
        }
        Err(f) => Err(f),
    };
    r.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Err(f) = &outcome {
        r = r.failed(f);
        r.exit = Some(f.status());
    }
    if !ctx.dry_run {
        r.emit();
    }
    outcome
}
