//! `vipctl watch`: runs the daemon ([`crate::daemon`]) with the command line's overrides.

use crate::error::Outcome;

/// Run the daemon that keeps every master's VIPs where the sentinels say the master is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Sentinel to follow, HOST:PORT; repeat for each. Replaces the config's lists.
    #[arg(long = "sentinel", value_name = "HOST:PORT")]
    pub sentinels: Vec<String>,
    /// Release the VIPs when stopping (default: leave them; the VIP belongs to the master).
    #[arg(long)]
    pub release_on_exit: bool,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(ctx: &super::Ctx, args: &Args) -> Outcome<()> {
    let opts = crate::daemon::Options {
        sentinels: args.sentinels.clone(),
        release_on_exit: args.release_on_exit,
        dry_run: ctx.dry_run,
    };
    crate::daemon::run(ctx.config()?, opts).await
}
