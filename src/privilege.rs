//! Which of the two capabilities vipctl needs this process has, read from /proc/self/status; and
//! whether this process runs with privileges raised by its file (file capabilities, setuid), in
//! which case whoever started it may be less privileged than it is.

use anyhow::anyhow;

use crate::error::{Failure, Outcome};

/// The capability to change addresses (netlink).
pub const CAP_NET_ADMIN: u32 = 12;
/// The capability to send raw frames (packet socket).
pub const CAP_NET_RAW: u32 = 13;

/// The effective capability set of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps(pub u64);

impl Caps {
    /// Reads CapEff of this process; an unreadable /proc counts as "none".
    pub fn current() -> Caps {
        std::fs::read_to_string("/proc/self/status").ok().and_then(|s| parse_cap_eff(&s)).map(Caps).unwrap_or(Caps(0))
    }

    /// True when capability number `cap` is effective.
    pub fn has(&self, cap: u32) -> bool {
        self.0 & (1u64 << cap) != 0
    }
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
    // SAFETY: prctl is async-signal-safe and has no memory effects here.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Resolves a user name (or a numeric uid) to its uid.
pub fn uid_of(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some(uid);
    }
    let name = std::ffi::CString::new(user).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned by this frame; getpwnam_r
    // writes only within `buf` and `pwd`, and `result` is read only when it reports success.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() { Some(pwd.pw_uid) } else { None }
}

/// Extracts the CapEff hex mask from the text of /proc/PID/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(uid_of("0"), Some(0));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-vipctl"), None);
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tvipctl\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n";
        let caps = Caps(parse_cap_eff(s).unwrap());
        assert!(caps.has(CAP_NET_ADMIN) && caps.has(CAP_NET_RAW));
        assert!(!Caps(1 << CAP_NET_ADMIN).has(CAP_NET_RAW));
        assert_eq!(parse_cap_eff("nothing"), None);
    }
}
