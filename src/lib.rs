//! vipctl: keeps a virtual IP on the host that runs the Redis master, as Redis Sentinel decides it.
//!
//! The binary is a thin `main` around [`run`]; the library exists so that fuzz targets and tests can
//! reach the parsers (hook arguments, config, sentinel events) directly.

pub mod announce;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod decide;
pub mod defend;
pub mod error;
pub mod events;
pub mod host;
pub mod lock;
pub mod logging;
pub mod lookup;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod privilege;
pub mod redis_role;
pub mod sentinel;
pub mod sentinel_conf;
pub mod vip;
pub mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::Ctx;
use crate::decide::Want;
use crate::error::Failure;

/// Runs vipctl with `args` (argv, program name first) and returns its exit status.
pub fn run(args: Vec<std::ffi::OsString>) -> ExitCode {
    let args = cli::normalize(args);
    // clap exits 2 on usage errors, which is also what Sentinel must see for bad arguments.
    let cli = Cli::parse_from(args);
    logging::init(&cli.log_level);
    let ctx = Ctx { config_path: cli.config.clone(), dry_run: cli.dry_run };

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipctl: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Hook { args } => commands::hook::run(&ctx, args).await,
            Command::Claim { master, force } => commands::claim::run(&ctx, master.as_deref(), Want::Hold, *force).await,
            Command::Release { master } => commands::claim::run(&ctx, master.as_deref(), Want::Release, false).await,
            Command::Status { json } => commands::status::run(&ctx, *json).await,
            Command::Check { json, sentinel_conf, unit_dir } => {
                commands::check::run(
                    &ctx,
                    &commands::check::Options {
                        json: *json,
                        sentinel_conf: sentinel_conf.clone(),
                        unit_dir: unit_dir.clone(),
                    },
                )
                .await
            }
            Command::Watch { sentinels, release_on_exit } => {
                let opts = watch::Options { sentinels: sentinels.clone(), release_on_exit: *release_on_exit };
                watch::run(&ctx, opts).await
            }
            Command::Generate { kind } => commands::generate::run(*kind),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(&f),
    }
}

fn report(f: &Failure) -> ExitCode {
    eprintln!("vipctl: error: {f}");
    f.exit_code()
}
