//! Where vipctl's output goes. Diagnostics go to stderr for people at a terminal; decision records
//! ([`crate::record`]) and warnings also go to journald where it runs (structured, so that
//! `journalctl VIPCTL_MASTER=mymaster` works) or to syslog elsewhere, because Sentinel throws a
//! daemonized hook's stderr away; and, when `log_file` is set, decision records go to that file as
//! one JSON object per line.

use std::fs::File;
use std::io::IsTerminal;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

use crate::record;

/// Env var naming a decision log file; overrides `log_file` in the config (useful per host in a lab).
pub const LOG_FILE_ENV: &str = "VIPCTL_LOG_FILE";

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

static FILE_LAYER: OnceLock<reload::Handle<Option<Boxed>, Registry>> = OnceLock::new();

/// Sets up logging: stderr at `level` (`error` … `trace`, or a filter), and journald or syslog for
/// decision records and warnings. Call once, first thing.
pub fn init(level: &str) {
    let filter = || EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, stderr already is the journal: send everything there once, with its fields.
    let stderr_is_journal = stderr_is_journal();
    let records_and_warnings =
        || Targets::new().with_target(record::TARGET, LevelFilter::INFO).with_default(LevelFilter::WARN);

    // The file is known only once the config is read. Its filter sits outside the reload layer:
    // a filter must be registered with the subscriber from the start.
    let (file, handle) = reload::Layer::new(None::<Boxed>);
    let _ = FILE_LAYER.set(handle);
    let file = file.with_filter(Targets::new().with_target(record::TARGET, LevelFilter::INFO));

    let journald = tracing_journald::layer().ok().map(|l| {
        let l = l.with_field_prefix(Some("VIPCTL".into())).with_syslog_identifier("vipctl".into());
        let boxed: Boxed = if stderr_is_journal {
            Box::new(l.with_filter(filter()))
        } else {
            Box::new(l.with_filter(records_and_warnings()))
        };
        boxed
    });
    let syslog = if journald.is_none() {
        syslog_tracing::Syslog::new(c"vipctl", syslog_tracing::Options::LOG_PID, syslog_tracing::Facility::Daemon).map(
            |s| {
                let boxed: Boxed = Box::new(
                    tracing_subscriber::fmt::layer()
                        .with_writer(s)
                        .with_ansi(false)
                        .without_time()
                        .with_level(false)
                        .with_target(false)
                        .with_filter(records_and_warnings()),
                );
                boxed
            },
        )
    } else {
        None
    };
    let stderr = (!(stderr_is_journal && journald.is_some())).then(|| {
        // A decision record's message already says it all; its fields are for machines.
        let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
            if field.name() == "message" {
                write!(w, "{value:?}")
            } else if record::FIELDS.contains(&field.name()) {
                Ok(())
            } else {
                write!(w, " {}={value:?}", field.name())
            }
        });
        let boxed: Boxed = Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .fmt_fields(fields)
                .with_filter(filter()),
        );
        boxed
    });
    let layers: Vec<Boxed> = [Some(Box::new(file) as Boxed), journald, syslog, stderr].into_iter().flatten().collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// True when systemd connected stderr to the journal (`JOURNAL_STREAM` names stderr's device and
/// inode).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

/// Where decision records go besides the journal: `VIPCTL_LOG_FILE`, else the config's `log_file`.
pub fn file_path(config_file: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os(LOG_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| config_file.map(Path::to_path_buf))
}

/// Starts writing decision records to `path`, one JSON object per line. The file is opened for
/// appending without following a symlink, so a link planted there cannot redirect the writes.
/// Failing to open it is reported and otherwise ignored: logging must never stop a decision.
pub fn to_file(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file: File = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(
                "cannot append to log file {}: {e}; decisions go to the journal/syslog only",
                path.display()
            );
            return;
        }
    };
    let layer: Boxed = Box::new(
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_writer(Mutex::new(file)),
    );
    if let Some(h) = FILE_LAYER.get() {
        let _ = h.modify(|l| *l = Some(layer));
    }
}
