//! `vipctl claim` and `vipctl release`: the same convergence as the hook, asked for by a person.

use std::time::Instant;

use anyhow::anyhow;

use super::{Ctx, ask_sentinels, is_this_host, managed};
use crate::apply;
use crate::decide::Want;
use crate::error::{Failure, Outcome};
use crate::logging;
use crate::netlink::Netlink;
use crate::sentinel::Verdict;

/// Binds (or with `Want::Release`, unbinds) the VIPs of `name` (or of the only master).
///
/// A claim that the sentinels contradict is refused unless `force`: it would put the VIP on two
/// hosts. A release is always carried out, with a warning when this host is the master.
pub async fn run(ctx: &Ctx, name: Option<&str>, want: Want, force: bool) -> Outcome<()> {
    let start = Instant::now();
    let config = ctx.config()?;
    let log_file = logging::decision_file(config.log_file.as_deref());
    let master = config.pick_master(name).map_err(|m| Failure::permanent(anyhow!(m)))?;
    let managed = managed(&config);
    let _lock = ctx.lock(&config, master)?;
    let nl = Netlink::open()?;
    let host = nl.snapshot().await?;

    let mut note = String::new();
    if let Some(view) = ask_sentinels(&config, master).await {
        match view.verdict() {
            Verdict::Master { addr, .. } => {
                // A release must not be blocked by a name lookup; a claim must be sure.
                let here = match (want, is_this_host(&addr.host, &host, &managed)) {
                    (_, Ok(b)) => b,
                    (Want::Release, Err(f)) => {
                        tracing::warn!("cannot tell whether {addr} is this host ({f}); releasing anyway");
                        false
                    }
                    (Want::Hold, Err(f)) => return Err(f),
                };
                match (want, here) {
                    (Want::Hold, false) if !force => {
                        return Err(Failure::permanent(anyhow!(
                            "sentinels say the master of `{}` is {} ({}), not this host: claiming here would put the VIP on two hosts; use --force to claim anyway",
                            master.name,
                            addr,
                            view.summary()
                        )));
                    }
                    (Want::Release, true) => {
                        tracing::warn!(
                            "this host runs the master of `{}` per the sentinels; its VIPs stay down until claimed again",
                            master.name
                        );
                    }
                    _ => {}
                }
                note = format!(" sentinel=\"{}\"", view.summary());
            }
            _ => tracing::warn!("sentinels of `{}` gave no master ({}); going ahead", master.name, view.summary()),
        }
    }

    let result = apply::converge(&nl, master, want, &host, &managed, ctx.dry_run, apply::Rounds::Wait).await;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(report) => {
            let prefix = if ctx.dry_run { "would " } else { "" };
            println!("{prefix}{want} `{}`: {}", master.name, report.summary());
            let notified = if !ctx.dry_run && report.actions.iter().any(crate::decide::Action::changes_addresses) {
                crate::notify::run(master, want, &format!("vipctl {want} by hand")).await.log_fragment()
            } else {
                String::new()
            };
            let line = format!(
                "{want} master={}{note} actions=\"{}\" frames={}{notified} elapsed_ms={elapsed:.1}",
                master.name,
                report.summary(),
                report.frames_sent
            );
            if report.warnings.is_empty() {
                if !ctx.dry_run {
                    logging::decision(&format!("{line} result=ok"), log_file.as_deref(), false);
                }
                Ok(())
            } else {
                let f = Failure::transient(anyhow!("{}", report.warnings.join("; ")));
                logging::decision(&format!("{line} result=error error=\"{f}\""), log_file.as_deref(), true);
                Err(f)
            }
        }
        Err(f) => {
            logging::decision(
                &format!(
                    "{want} master={} result=error exit={} error=\"{f}\" elapsed_ms={elapsed:.1}",
                    master.name,
                    f.status()
                ),
                log_file.as_deref(),
                true,
            );
            Err(f)
        }
    }
}
