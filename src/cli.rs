//! The command line: clap definitions, and the one quirk that clap cannot express — Sentinel calls
//! the binary with seven bare arguments and no subcommand word.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::config::DEFAULT_PATH;

/// Keeps a virtual IP on the host that runs the Redis master, as Redis Sentinel decides it.
///
/// Sentinel runs `vipctl <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>` as its
/// client-reconfig-script; people use the subcommands.
#[derive(Debug, Parser)]
#[command(name = "vipctl", version, about, long_about = None, after_help = EXIT_HELP)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "VIPCTL_CONFIG", default_value = DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,

    /// Say what would change, change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Diagnostics on stderr: error, warn, info, debug or trace.
    #[arg(long, global = true, env = "VIPCTL_LOG", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_HELP: &str = "Exit status: 0 the host is as it should be; 1 a transient failure (Sentinel retries the hook); \
2 a failure no retry can fix (bad arguments, bad config, unknown master, missing privilege).";

/// The subcommands, each with its own arguments (in its file under `commands/`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sentinel's client-reconfig-script call (also accepted without the word `hook`).
    Hook(commands::hook::Args),
    /// Bind and announce the VIPs of MASTER here (re-announces when already bound).
    Claim(commands::claim::ClaimArgs),
    /// Unbind the VIPs of MASTER here (does nothing when they are not bound).
    Release(commands::claim::ReleaseArgs),
    /// Show each master's VIPs, where they are bound, and who the sentinels say is master.
    Status(commands::status::Args),
    /// Check everything that commonly breaks a setup, print a fix for each failure; change nothing.
    #[command(visible_alias = "doctor")]
    Check(commands::check::Args),
    /// Run the daemon that keeps every master's VIPs where the sentinels say the master is.
    Watch(commands::watch::Args),
    /// Fail the master over to a replica without losing an acknowledged write (planned switchover).
    Switchover(commands::switchover::Args),
    /// Print the man page or a shell completion script (for packaging; hidden from --help).
    #[command(hide = true)]
    Generate(commands::generate::Args),
}

/// Names that are subcommands (plus clap's own), so anything else in first place is Sentinel's call.
const WORDS: &[&str] =
    &["hook", "claim", "release", "status", "check", "doctor", "watch", "switchover", "generate", "help"];

/// Rewrites Sentinel's bare call `vipctl a b c d e f g` into `vipctl hook a b c d e f g`.
///
/// Sentinel's path is one token and takes no flags, so a first argument that is neither a flag nor a
/// subcommand can only be a hook call. Exactly seven plain arguments are always a hook call, even if
/// the master happens to be named like a subcommand.
pub fn normalize(mut args: Vec<OsString>) -> Vec<OsString> {
    // Skip leading global options, so `vipctl --config F m leader …` works by hand too.
    let mut i = 1;
    while let Some(a) = args.get(i).map(|a| a.to_string_lossy().into_owned()) {
        match a.as_str() {
            "--config" | "--log-level" => i += 2,
            "--dry-run" => i += 1,
            _ if a.starts_with("--config=") || a.starts_with("--log-level=") => i += 1,
            _ => break,
        }
    }
    let rest = &args[i.min(args.len())..];
    let plain = |a: &OsString| !a.to_string_lossy().starts_with('-');
    let first_is_word = rest.first().is_some_and(|a| WORDS.contains(&a.to_string_lossy().as_ref()));
    let is_hook =
        (rest.len() == 7 && rest.iter().all(plain)) || rest.first().is_some_and(|a| plain(a) && !first_is_word);
    if is_hook {
        args.insert(i.min(args.len()), OsString::from("hook"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn norm(v: &[&str]) -> Vec<String> {
        normalize(v.iter().map(OsString::from).collect()).into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn bare_sentinel_call_becomes_hook() {
        assert_eq!(norm(&["vipctl", "m", "leader", "start", "a", "1", "b", "2"])[1], "hook");
        assert_eq!(norm(&["vipctl", "status", "leader", "start", "a", "1", "b", "2"])[1], "hook");
        assert_eq!(norm(&["vipctl", "m", "leader"])[1], "hook");
        assert_eq!(norm(&["vipctl", "status"])[1], "status");
        assert_eq!(norm(&["vipctl", "--dry-run", "claim"])[1], "--dry-run");
        assert_eq!(norm(&["vipctl"]).len(), 1);
        let with_opts = norm(&["vipctl", "--config", "f", "--dry-run", "m", "leader", "start", "a", "1", "b", "2"]);
        assert_eq!(with_opts[4], "hook");
        assert_eq!(norm(&["vipctl", "--config=f", "m", "x"])[2], "hook");
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
