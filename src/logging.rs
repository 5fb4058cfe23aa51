//! Logs: diagnostics to stderr (for people at a terminal), and one line per decision to syslog and,
//! when configured, to a file — because Sentinel throws a daemonized hook's stderr away.

use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use tracing_subscriber::EnvFilter;

/// Env var naming a decision log file; overrides `log_file` in the config (useful per host in a lab).
pub const LOG_FILE_ENV: &str = "VIPCTL_LOG_FILE";

static SYSLOG_OPEN: OnceLock<()> = OnceLock::new();

/// Sets up stderr diagnostics at `level` (`error`, `warn`, `info`, `debug`, `trace`, or a filter).
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .try_init();
}

/// Where decision lines go besides syslog.
pub fn decision_file(config_file: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os(LOG_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| config_file.map(Path::to_path_buf))
}

/// Records one decision: stderr (through tracing), syslog (daemon facility), and the decision file.
/// Logging must never fail the hook, so every error here is swallowed after a warning.
pub fn decision(line: &str, file: Option<&Path>, failed: bool) {
    if failed {
        tracing::error!("{line}");
    } else {
        tracing::info!("{line}");
    }
    to_syslog(line, if failed { libc::LOG_ERR } else { libc::LOG_INFO });
    if let Some(path) = file {
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{stamp} vipctl[{}]: {line}\n", std::process::id()).as_bytes()));
        if let Err(e) = res {
            tracing::warn!("cannot append to log file {}: {e}", path.display());
        }
    }
}

fn to_syslog(line: &str, priority: libc::c_int) {
    SYSLOG_OPEN.get_or_init(|| {
        // SAFETY: the ident is a 'static C string literal, as openlog requires it to outlive all calls.
        unsafe { libc::openlog(c"vipctl".as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, libc::LOG_DAEMON) };
    });
    if let Ok(msg) = CString::new(line.replace('\0', " ")) {
        // SAFETY: a constant "%s" format with one valid NUL-terminated argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
    }
}
