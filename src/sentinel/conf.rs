//! Reading what is around Sentinel on this host, for `vipctl check`: the client-reconfig-script lines
//! of sentinel.conf, and the sandbox that Sentinel's systemd unit (with its drop-ins) puts hooks in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a sentinel.conf says about masters and hooks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SentinelConf {
    /// Masters named by `sentinel monitor <name> …`.
    pub monitors: BTreeSet<String>,
    /// `sentinel client-reconfig-script <name> <path>`, by master.
    pub scripts: BTreeMap<String, String>,
}

/// Parses sentinel.conf text (only the two directives vipctl cares about).
pub fn parse(text: &str) -> SentinelConf {
    let mut conf = SentinelConf::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [s, monitor, name, ..] if s.eq_ignore_ascii_case("sentinel") && monitor.eq_ignore_ascii_case("monitor") => {
                conf.monitors.insert(name.to_string());
            }
            [s, script, name, path, ..]
                if s.eq_ignore_ascii_case("sentinel") && script.eq_ignore_ascii_case("client-reconfig-script") =>
            {
                conf.scripts.insert(name.to_string(), path.trim_matches('"').to_string());
            }
            _ => {}
        }
    }
    conf
}

/// The sandbox settings of a systemd unit that matter to a hook, after its drop-ins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnitSandbox {
    /// `NoExecPaths=` entries.
    pub no_exec: Vec<PathBuf>,
    /// `ExecPaths=` entries.
    pub exec: Vec<PathBuf>,
    /// `RestrictAddressFamilies=` (None: unrestricted; a leading `~` deny list is kept as written).
    pub address_families: Option<String>,
    /// `CapabilityBoundingSet=` as last assigned.
    pub bounding_set: Option<String>,
    /// `NoNewPrivileges=` (file capabilities are not granted under it).
    pub no_new_privileges: bool,
    /// `User=`: whom the unit runs as (None: root, or a dynamic user).
    pub user: Option<String>,
    /// `DynamicUser=yes`: a uid allocated at each start, which no list can name.
    pub dynamic_user: bool,
    /// Every file it was read from is root's and writable by root alone: only then may a
    /// privileged daemon take whom to trust from it.
    pub trusted: bool,
}

/// Where systemd finds system units, in precedence order (systemd.unit(5); /lib for Debian's
/// split /usr). Each is root's: a unit read from elsewhere would not run.
pub const UNIT_DIRS: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
    "/lib/systemd/system",
];

/// The sentinel units vipctl knows: Debian's redis and valkey packages.
pub const SENTINEL_UNITS: [&str; 2] = ["redis-sentinel.service", "valkey-sentinel.service"];

/// Whether `unit` is masked (`systemctl mask`: a link to /dev/null, or an empty file, in the first
/// of `dirs` that has it): it cannot run, so its sentinel.conf is no one's.
pub fn unit_masked(dirs: &[PathBuf], unit: &str) -> bool {
    unit_file(dirs, unit).is_some_and(|p| masks(&p))
}

/// The unit's file in the first of `dirs` that has one (a link counts, even a dangling one).
fn unit_file(dirs: &[PathBuf], unit: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(unit)).find(|p| p.symlink_metadata().is_ok())
}

/// Whether this unit file masks its unit: a link to /dev/null, or an empty file.
fn masks(file: &Path) -> bool {
    std::fs::canonicalize(file).is_ok_and(|p| p == Path::new("/dev/null"))
        || std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// The users the installed sentinel units run as, by unit (units without `User=` run as root and
/// are left out: root is always served).
pub fn sentinel_unit_users(dirs: &[PathBuf]) -> Vec<(&'static str, String)> {
    SENTINEL_UNITS
        .iter()
        .filter_map(|unit| {
            let s = UnitSandbox::load(dirs, unit)?;
            if !s.trusted {
                tracing::warn!(
                    "{unit} (or a drop-in of it) is not root's alone: its User= is not taken for [watch] hook_users"
                );
                return None;
            }
            Some((*unit, s.user?))
        })
        .collect()
}

/// Whether a unit file may tell a privileged process anything: root's, writable by root alone.
fn root_only(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}

impl UnitSandbox {
    /// Loads `unit` from the first of `dirs` that has it (they are in precedence order), then its
    /// drop-ins (`unit.d/*.conf` from every dir, in file-name order). None when no dir has it, or
    /// when the first that does masks it (a link to /dev/null, or an empty file: it cannot run).
    pub fn load(dirs: &[PathBuf], unit: &str) -> Option<UnitSandbox> {
        let main = unit_file(dirs, unit)?;
        if masks(&main) || !main.is_file() {
            return None;
        }
        let mut sandbox = UnitSandbox { trusted: root_only(&main), ..UnitSandbox::default() };
        sandbox.apply(&std::fs::read_to_string(main).unwrap_or_default());
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        // A drop-in of the same name in a higher-precedence dir masks the lower ones.
        for d in dirs.iter().rev() {
            if let Ok(entries) = std::fs::read_dir(d.join(format!("{unit}.d"))) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".conf") {
                        dropins.insert(name, e.path());
                    }
                }
            }
        }
        for path in dropins.values() {
            sandbox.trusted &= root_only(path);
            sandbox.apply(&std::fs::read_to_string(path).unwrap_or_default());
        }
        Some(sandbox)
    }

    /// Applies one unit file or drop-in: list settings append, an empty assignment resets.
    pub fn apply(&mut self, text: &str) {
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            if !in_service || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim();
            let paths = |v: &str| -> Vec<PathBuf> {
                v.split_whitespace().map(|p| PathBuf::from(p.trim_start_matches(['-', '+']))).collect()
            };
            match key.trim() {
                "NoExecPaths" if value.is_empty() => self.no_exec.clear(),
                "NoExecPaths" => self.no_exec.extend(paths(value)),
                "ExecPaths" if value.is_empty() => self.exec.clear(),
                "ExecPaths" => self.exec.extend(paths(value)),
                "RestrictAddressFamilies" => self.address_families = (!value.is_empty()).then(|| value.to_string()),
                "CapabilityBoundingSet" => self.bounding_set = Some(value.to_string()),
                "NoNewPrivileges" => self.no_new_privileges = matches!(value, "yes" | "true" | "1" | "on"),
                "User" => self.user = (!value.is_empty()).then(|| value.to_string()),
                "DynamicUser" => self.dynamic_user = matches!(value, "yes" | "true" | "1" | "on"),
                _ => {}
            }
        }
    }

    /// Whether the unit lets its processes execute `path`: the most specific matching entry of
    /// ExecPaths=/NoExecPaths= decides, as in systemd.
    pub fn may_exec(&self, path: &Path) -> bool {
        let best = |list: &[PathBuf]| list.iter().filter(|p| path.starts_with(p)).map(|p| p.components().count()).max();
        match (best(&self.no_exec), best(&self.exec)) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(no), Some(yes)) => yes >= no,
        }
    }

    /// Whether a hook started by this unit could do privileged work itself.
    pub fn allows_privileged_hook(&self) -> bool {
        let families_ok = match &self.address_families {
            None => true,
            Some(v) if v.starts_with('~') => !v.contains("AF_NETLINK") && !v.contains("AF_PACKET"),
            Some(v) => v.contains("AF_NETLINK") && v.contains("AF_PACKET"),
        };
        let caps_ok = match &self.bounding_set {
            None => true,
            Some(v) => v.contains("CAP_NET_ADMIN") && v.contains("CAP_NET_RAW"),
        };
        families_ok && caps_ok && !self.no_new_privileges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sentinel_conf() {
        let c = parse(
            "port 26379\nsentinel monitor mymaster 198.51.100.11 6379 2\n# sentinel client-reconfig-script x /y\nsentinel client-reconfig-script mymaster /usr/bin/vipctl\n",
        );
        assert!(c.monitors.contains("mymaster"));
        assert_eq!(c.scripts.get("mymaster").map(String::as_str), Some("/usr/bin/vipctl"));
        assert!(!c.scripts.contains_key("x"));
    }

    /// Debian 12's stock redis-sentinel.service, as the Sentinel contract quotes it.
    const DEBIAN_UNIT: &str = "[Unit]\nDescription=Advanced key-value store\n[Service]\nUser=redis\nNoNewPrivileges=true\nCapabilityBoundingSet=\nPrivateUsers=true\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nProtectSystem=strict\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\n";

    #[test]
    fn debian_unit_forbids_the_hook_until_the_dropin() {
        let mut s = UnitSandbox::default();
        s.apply(DEBIAN_UNIT);
        assert!(!s.may_exec(Path::new("/usr/bin/vipctl")));
        assert!(s.may_exec(Path::new("/usr/lib/x")));
        assert!(!s.allows_privileged_hook());
        assert!(!s.may_exec(Path::new("/usr/libexec/vipctl/vipctl")));
        s.apply("[Service]\nExecPaths=/usr/libexec/vipctl/\n");
        assert!(s.may_exec(Path::new("/usr/libexec/vipctl/vipctl")));
        assert!(!s.may_exec(Path::new("/usr/bin/sh")));
        s.apply("[Service]\nNoExecPaths=\n");
        assert!(s.may_exec(Path::new("/usr/bin/sh")));
    }

    #[test]
    fn loads_unit_and_dropins_from_dirs() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("lib");
        let etc = d.path().join("etc");
        std::fs::create_dir_all(lib.join("redis-sentinel.service.d")).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(lib.join("redis-sentinel.service"), DEBIAN_UNIT).unwrap();
        std::fs::write(lib.join("redis-sentinel.service.d/vipctl.conf"), "[Service]\nExecPaths=/usr/libexec/vipctl/\n")
            .unwrap();
        let s = UnitSandbox::load(&[etc.clone(), lib.clone()], "redis-sentinel.service").unwrap();
        assert!(s.may_exec(Path::new("/usr/libexec/vipctl/vipctl")));
        assert!(UnitSandbox::load(&[etc], "redis-sentinel.service").is_none());
    }

    #[test]
    fn sentinel_unit_users_come_from_user_lines_and_their_dropins() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("lib");
        let etc = d.path().join("etc");
        std::fs::create_dir_all(lib.join("valkey-sentinel.service.d")).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        let dirs = [etc.clone(), lib.clone()];
        assert!(sentinel_unit_users(&dirs).is_empty());
        std::fs::write(lib.join("redis-sentinel.service"), DEBIAN_UNIT).unwrap();
        std::fs::write(lib.join("valkey-sentinel.service"), "[Service]\nUser=valkey\n").unwrap();
        // Only files that are root's alone count: as another user, these files are that user's.
        if !nix::unistd::geteuid().is_root() {
            assert!(sentinel_unit_users(&dirs).is_empty(), "files of uid {} were trusted", nix::unistd::geteuid());
            return;
        }
        assert_eq!(
            sentinel_unit_users(&dirs),
            [("redis-sentinel.service", "redis".to_string()), ("valkey-sentinel.service", "valkey".to_string())]
        );
        // A drop-in that runs it as someone else, or an override in /etc, wins.
        std::fs::write(lib.join("valkey-sentinel.service.d/user.conf"), "[Service]\nUser=cache\n").unwrap();
        std::fs::write(etc.join("redis-sentinel.service"), "[Service]\nExecStart=/x\n").unwrap();
        assert_eq!(sentinel_unit_users(&dirs), [("valkey-sentinel.service", "cache".to_string())]);
        // A drop-in others may write is no root's word.
        let p = lib.join("valkey-sentinel.service.d/user.conf");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        assert!(sentinel_unit_users(&dirs).is_empty());
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        // A masked unit (systemctl mask: a link to /dev/null in /etc) runs nobody.
        std::os::unix::fs::symlink("/dev/null", etc.join("valkey-sentinel.service")).unwrap();
        assert!(sentinel_unit_users(&dirs).is_empty());
    }

    #[test]
    fn a_unit_is_masked_by_a_link_to_dev_null_or_an_empty_file() {
        let d = tempfile::tempdir().unwrap();
        let (etc, lib) = (d.path().join("etc"), d.path().join("lib"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        let dirs = [etc.clone(), lib.clone()];
        std::fs::write(lib.join("redis-sentinel.service"), DEBIAN_UNIT).unwrap();
        assert!(!unit_masked(&dirs, "redis-sentinel.service"));
        assert!(!unit_masked(&dirs, "valkey-sentinel.service"), "an absent unit is not masked");
        std::os::unix::fs::symlink("/dev/null", etc.join("redis-sentinel.service")).unwrap();
        assert!(unit_masked(&dirs, "redis-sentinel.service"));
        std::fs::remove_file(etc.join("redis-sentinel.service")).unwrap();
        std::fs::write(etc.join("redis-sentinel.service"), "").unwrap();
        assert!(unit_masked(&dirs, "redis-sentinel.service"));
        assert!(UnitSandbox::load(&dirs, "redis-sentinel.service").is_none());
    }

    #[test]
    fn a_dynamic_user_is_read() {
        let mut s = UnitSandbox::default();
        s.apply("[Service]\nDynamicUser=yes\n");
        assert!(s.dynamic_user && s.user.is_none());
    }
}
