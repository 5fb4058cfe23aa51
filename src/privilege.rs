//! Which of the two capabilities vipctl needs this process has; whether this process runs with
//! privileges raised by its file (file capabilities, setuid), in which case whoever started it may
//! be less privileged than it is; and what a program vipctl starts must not inherit from it.

use anyhow::anyhow;
use caps::CapSet;

use crate::error::{Failure, Outcome};

/// The capability to change addresses (netlink).
pub const CAP_NET_ADMIN: u32 = 12;
/// The capability to send raw frames (packet socket).
pub const CAP_NET_RAW: u32 = 13;

/// The effective capability set of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps(pub u64);

impl Caps {
    /// Reads the effective set (capget, of the calling thread: vipctl's runtime runs on the thread
    /// that started it); an unreadable set counts as "none".
    pub fn current() -> Caps {
        caps::read(None, CapSet::Effective).map(|set| Caps(mask(&set))).unwrap_or(Caps(0))
    }

    /// True when capability number `cap` is effective.
    pub fn has(&self, cap: u32) -> bool {
        self.0 & (1u64 << cap) != 0
    }
}

/// The kernel's bit mask of a set of capabilities.
fn mask(set: &caps::CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

/// True when the kernel marked this process as run with raised privileges (`AT_SECURE`): a binary
/// with file capabilities or setuid, started by someone who lacks them.
pub fn raised() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Environment variables that name paths; a capable binary must not take them from its caller.
pub const PATH_OVERRIDES: &[&str] = &["VIPCTL_CONFIG", "VIPCTL_LOG_FILE", "VIPCTL_SOCKET"];

/// With raised privileges, refuses `--config` and every `VIPCTL_*` path: a capable binary never
/// takes a config or a path from someone less privileged (it would let them move any address).
pub fn refuse_overrides(matches: &clap::ArgMatches) -> Outcome<()> {
    let refuse = |what: &str| {
        Err(Failure::permanent(anyhow!(
            "this vipctl runs with raised privileges (file capabilities or setuid) for a user who lacks them: it reads \
             only {} and takes no {what}; run it as root, or let only trusted users execute it (see README, \"Privileges\")",
            crate::config::DEFAULT_PATH
        )))
    };
    for var in PATH_OVERRIDES {
        if std::env::var_os(var).is_some() {
            return refuse(&format!("{var} from the environment"));
        }
    }
    if matches.value_source("config") != Some(clap::parser::ValueSource::DefaultValue) {
        return refuse("--config");
    }
    // check reads files and runs the speaker's CLI against sockets these name.
    if let Some(("check", check)) = matches.subcommand() {
        for (id, flag) in [
            ("sentinel_conf", "--sentinel-conf"),
            ("unit_dir", "--unit-dir"),
            ("bird_socket", "--bird-socket"),
            ("frr_vty_dir", "--frr-vty-dir"),
        ] {
            if check.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                return refuse(flag);
            }
        }
    }
    Ok(())
}

/// For `pre_exec`: drops the ambient capabilities a child would otherwise inherit (the daemon's
/// CAP_NET_ADMIN/CAP_NET_RAW must never pass to a program it starts).
pub fn clear_ambient_caps() -> std::io::Result<()> {
    // Not caps::clear: between fork and exec only async-signal-safe calls are allowed, and its
    // error path allocates.
    // SAFETY: prctl is async-signal-safe and has no memory effects here.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the calling thread's inheritable and ambient capability sets; its effective and
/// permitted sets stay. Programs started afterwards from this thread, or from threads it creates
/// afterwards, then inherit none of its capabilities: with an inheritable set, executing a file
/// with inheritable file capabilities would hand them over, even under no_new_privs. Capability
/// sets are per thread, so the daemon calls this once at start, before it starts any thread, and
/// [`crate::notify::run`] before each command (the command is forked from the calling thread).
/// Costs nothing when the sets are empty already; capset, which a seccomp filter may forbid, is
/// called only when there is something to drop.
pub fn drop_inheritable() -> Outcome<()> {
    let fail = |what: &str, e: caps::errors::CapsError| {
        Failure::permanent(anyhow!(
            "cannot clear the {what} capability set ({e}); a program started now would inherit CAP_NET_ADMIN/CAP_NET_RAW: \
             allow capset (vipctl-watch.service has `SystemCallFilter=capset`)"
        ))
    };
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", e))?;
    let inheritable = caps::read(None, CapSet::Inheritable).map_err(|e| fail("inheritable", e))?;
    if !inheritable.is_empty() {
        caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", e))?;
    }
    Ok(())
}

/// Resolves a user name (or a numeric uid) to its uid.
pub fn uid_of(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some(uid);
    }
    nix::unistd::User::from_name(user).ok().flatten().map(|u| u.uid.as_raw())
}

/// The name of the user with `uid`, when there is one.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(uid_of("0"), Some(0));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-vipctl"), None);
    }

    #[test]
    fn names_of_users() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(4_000_000_000), None);
    }

    /// A `Cap…:` line of this thread's /proc status, as a mask.
    pub(crate) fn thread_caps(line: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix(line)).unwrap_or_else(|| panic!("no {line} in {status}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    }

    #[test]
    fn reads_the_effective_set_the_kernel_shows() {
        assert_eq!(Caps::current().0, thread_caps("CapEff:"));
        let caps = Caps((1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW));
        assert!(caps.has(CAP_NET_ADMIN) && caps.has(CAP_NET_RAW));
        assert!(!Caps(1 << CAP_NET_ADMIN).has(CAP_NET_RAW));
    }

    /// Gives the calling thread CAP_NET_ADMIN and CAP_NET_RAW in its inheritable and ambient sets,
    /// as systemd's AmbientCapabilities= does for the daemon (needs them permitted: root).
    pub(crate) fn raise_inheritable() {
        for cap in [caps::Capability::CAP_NET_ADMIN, caps::Capability::CAP_NET_RAW] {
            caps::raise(None, CapSet::Inheritable, cap).unwrap();
            caps::raise(None, CapSet::Ambient, cap).unwrap();
        }
        assert_eq!(thread_caps("CapInh:"), 0x3000);
        assert_eq!(thread_caps("CapAmb:"), 0x3000);
    }

    #[test]
    #[ignore = "needs root: raises this thread's inheritable capabilities"]
    fn dropping_the_inheritable_set_keeps_the_effective_one() {
        // A thread of its own: capability sets are per thread, and this one ends with the test.
        std::thread::spawn(|| {
            raise_inheritable();
            let effective = thread_caps("CapEff:");
            drop_inheritable().unwrap();
            assert_eq!(thread_caps("CapInh:"), 0, "inheritable set left");
            assert_eq!(thread_caps("CapAmb:"), 0, "ambient set left");
            assert_eq!(thread_caps("CapEff:"), effective, "the effective set changed");
            drop_inheritable().unwrap();
        })
        .join()
        .unwrap();
    }
}
