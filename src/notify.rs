//! Notify commands (`on_claim`, `on_release`): what keepalived's notify_master/notify_backup do for
//! alerting, cloud route updates where gratuitous ARP does not reach, or flushing conntrack.
//!
//! They run after the change, as argv (no shell), bounded by a timeout, with none of the daemon's
//! capabilities (neither ambient nor inheritable). A failure is logged and counted by the caller;
//! it never undoes or delays the VIP move, which is already done.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::config::Master;
use crate::network::plan::Want;

/// How a notify command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No command configured for this change.
    None,
    /// Exited 0.
    Ok {
        /// How long it ran.
        elapsed: Duration,
    },
    /// Failed to start, exited non-zero, or ran out of time (and was killed).
    Failed(String),
}

/// Runs the master's command for `want`, if any, with the change described in its environment:
/// `VIPCTL_MASTER`, `VIPCTL_VIPS` (space separated), `VIPCTL_EVENT` (`claim`/`release`),
/// `VIPCTL_ROLE` (`master`/`replica`: this host's role after the change), `VIPCTL_REASON`.
pub async fn run(master: &Master, want: Want, reason: &str) -> Outcome {
    let argv = match want {
        Want::Hold => &master.notify.on_claim,
        Want::Release => &master.notify.on_release,
    };
    let Some((program, args)) = argv.split_first() else { return Outcome::None };
    let vips = master.vips.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("VIPCTL_MASTER", &master.name)
        .env("VIPCTL_VIPS", vips)
        .env("VIPCTL_EVENT", want.to_string())
        .env("VIPCTL_ROLE", if want == Want::Hold { "master" } else { "replica" })
        .env("VIPCTL_REASON", reason)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(crate::privilege::clear_ambient_caps);
    }
    // The child is a copy of this thread: with its inheritable set emptied first, the command
    // cannot take CAP_NET_ADMIN/CAP_NET_RAW over by executing a file with inheritable file
    // capabilities. Done here rather than between fork and exec, where capset's wrappers may not
    // run (they allocate on error). Fails closed: no command runs with the daemon's set.
    if let Err(e) = crate::privilege::drop_inheritable() {
        return Outcome::Failed(format!("{program} was not started: {e}"));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {program}: {e}")),
    };
    let pgid = child.id();
    let stderr = child.stderr.take();
    let work = async {
        let tail = match stderr {
            Some(e) => last_bytes(e, MAX_KEPT).await,
            None => Vec::new(),
        };
        (child.wait().await, tail)
    };
    let result = tokio::time::timeout(master.notify.timeout, work).await;
    let kill_group = || {
        if let Some(pid) = pgid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    };
    match result {
        Err(_) => {
            kill_group();
            Outcome::Failed(format!(
                "{program} did not finish within {} ms and was killed (with its process group)",
                master.notify.timeout.as_millis()
            ))
        }
        Ok((Err(e), _)) => Outcome::Failed(format!("{program}: {e}")),
        Ok((Ok(status), _)) if status.success() => Outcome::Ok { elapsed: start.elapsed() },
        Ok((Ok(status), tail)) => {
            let err = String::from_utf8_lossy(&tail);
            let last: String = err.lines().last().unwrap_or("").trim().chars().take(200).collect();
            Outcome::Failed(format!(
                "{program} exited with {status}{}",
                if last.is_empty() { String::new() } else { format!(": {last}") }
            ))
        }
    }
}

/// How much of a notify command's stderr is kept (its end): enough for its last message.
const MAX_KEPT: usize = 4096;

/// Reads `r` to its end, keeping only its last `max` bytes.
async fn last_bytes(mut r: impl tokio::io::AsyncRead + Unpin, max: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::with_capacity(max);
    let mut buf = [0u8; 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > max {
            kept.drain(..kept.len() - max);
        }
    }
    kept
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::None => f.write_str("no notify command"),
            Outcome::Ok { elapsed } => write!(f, "notify command ok in {} ms", elapsed.as_millis()),
            Outcome::Failed(e) => write!(f, "notify command failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Announce, Notify};

    fn master(on_claim: &[&str], timeout_ms: u64) -> Master {
        Master {
            name: "m".into(),
            vips: vec!["198.51.100.100/24".parse().unwrap()],
            interface: None,
            label: None,
            announce: Announce { rounds: 1, interval: Duration::ZERO },
            sentinels: vec![],
            mode: crate::config::Mode::default(),
            cloud: None,
            notify: Notify {
                on_claim: on_claim.iter().map(|s| s.to_string()).collect(),
                on_release: vec![],
                timeout: Duration::from_millis(timeout_ms),
            },
        }
    }

    #[tokio::test]
    async fn runs_argv_with_the_change_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("env | grep ^VIPCTL_ | sort > {}", out.display());
        let m = master(&["/bin/sh", "-c", &script], 5000);
        assert!(matches!(run(&m, Want::Hold, "test").await, Outcome::Ok { .. }));
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(
            env.contains("VIPCTL_MASTER=m") && env.contains("VIPCTL_EVENT=claim") && env.contains("VIPCTL_ROLE=master"),
            "{env}"
        );
        assert!(env.contains("VIPCTL_VIPS=198.51.100.100/24") && env.contains("VIPCTL_REASON=test"), "{env}");
        assert_eq!(run(&m, Want::Release, "x").await, Outcome::None);
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_reported() {
        let m = master(&["/bin/sh", "-c", "echo boom >&2; exit 3"], 5000);
        let Outcome::Failed(e) = run(&m, Want::Hold, "t").await else { panic!("should fail") };
        assert!(e.contains("exit status: 3") && e.contains("boom"), "{e}");
        let m = master(&["/bin/sleep", "5"], 100);
        let t = Instant::now();
        let Outcome::Failed(e) = run(&m, Want::Hold, "t").await else { panic!("should time out") };
        assert!(e.contains("killed") && t.elapsed() < Duration::from_secs(2), "{e}");
        // What the command started dies with it.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let m = master(&["/bin/sh", "-c", &script], 300);
        assert!(matches!(run(&m, Want::Hold, "t").await, Outcome::Failed(_)));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Gone, or a zombie waiting for init to reap it.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        assert!(!alive, "the command's child {pid} survived the timeout: {state}");
        // Only the end of a flood of output is kept.
        let m = master(&["/bin/sh", "-c", "yes x | head -c 10000000 >&2; echo last words >&2; exit 1"], 5000);
        let Outcome::Failed(e) = run(&m, Want::Hold, "t").await else { panic!("should fail") };
        assert!(e.ends_with("last words"), "{e}");
        let m = master(&["/nonexistent/notify"], 100);
        assert!(matches!(run(&m, Want::Hold, "t").await, Outcome::Failed(_)));
    }

    #[test]
    #[ignore = "needs root: raises this thread's inheritable capabilities"]
    fn commands_inherit_no_capability_set() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("caps");
        let script = format!("grep -E '^Cap(Inh|Amb):' /proc/self/status > {}", out.display());
        let m = master(&["/bin/sh", "-c", &script], 5000);
        // As under systemd's AmbientCapabilities=: CAP_NET_ADMIN and CAP_NET_RAW inheritable and
        // ambient (CapInh=0x3000). Capability sets are per thread, and the command is forked from
        // the thread that runs the current-thread runtime: this one, which ends with the test.
        let outcome = std::thread::spawn(move || {
            crate::privilege::tests::raise_inheritable();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run(&m, Want::Hold, "t"))
        })
        .join()
        .unwrap();
        assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome}");
        let seen = std::fs::read_to_string(&out).unwrap();
        for line in seen.lines() {
            let (name, mask) = line.split_once(':').unwrap();
            assert_eq!(u64::from_str_radix(mask.trim(), 16).unwrap(), 0, "the command has {name} {}", mask.trim());
        }
        assert_eq!(seen.lines().count(), 2, "{seen}");
    }
}
