//! vipctl: keeps a virtual IP on the host that runs the Redis master, as Redis Sentinel decides it.
//!
//! The binary is a thin `main` around [`run`]; the library exists so that fuzz targets and tests can
//! reach the parsers (hook arguments, config, sentinel events) directly.

pub mod access;
pub mod bgp;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod fence;
pub mod local_redis;
pub mod lock;
pub mod logging;
pub mod network;
pub mod notify;
pub mod policy;
pub mod privilege;
pub mod record;
pub mod resolve;
pub mod sentinel;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::commands::Ctx;
use crate::error::Failure;

/// Runs vipctl with `args` (argv, program name first) and returns its exit status.
pub fn run(args: Vec<std::ffi::OsString>) -> ExitCode {
    let args = cli::normalize(args);
    // clap exits 2 on usage errors, which is also what Sentinel must see for bad arguments.
    let matches = <Cli as clap::CommandFactory>::command().get_matches_from(args);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logging::init(&cli.log_level);
    let raised = privilege::raised();
    if raised && let Err(f) = privilege::refuse_overrides(&matches) {
        return report(&f);
    }
    let ctx = Ctx { config_path: cli.config.clone(), dry_run: cli.dry_run, trusted_config_only: raised };

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipctl: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Hook(args) => commands::hook::run(&ctx, args).await,
            Command::Claim(args) => commands::claim::claim(&ctx, args).await,
            Command::Release(args) => commands::claim::release(&ctx, args).await,
            Command::Status(args) => commands::status::run(&ctx, args).await,
            Command::Check(args) => commands::check::run(&ctx, args).await,
            Command::Watch(args) => commands::watch::run(&ctx, args).await,
            Command::Switchover(args) => commands::switchover::run(&ctx, args).await,
            Command::Generate(args) => commands::generate::run(args),
        }
    });
    // A name lookup that hung keeps a blocking thread; the command is done and must not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(&f),
    }
}

fn report(f: &Failure) -> ExitCode {
    eprintln!("vipctl: error: {f}");
    f.exit_code()
}
