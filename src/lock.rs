//! Serialises concurrent runs for one master on one host, so two hooks never interleave their
//! changes and the second one acts on the state the first one left.
//!
//! Locks live in a folder that only root and vipctl can write (`/run/vipctl-lock`, made by the
//! package's tmpfiles.d entry), itself in a folder only root can write (`/run`), never in a
//! world-writable one such as `/run/lock`, where any user could plant a FIFO, a symlink or a file
//! of their own under the predictable name, or make the folder itself first. Even so, the folder
//! and a lock file are input: the folder must be owned by root or vipctl and writable by nobody
//! else; a lock file is opened without blocking and without following links, must be a regular
//! file owned by root or vipctl, is readable by its owner only (so nobody else can hold its
//! flock), and taking it never waits without a bound.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Failure, Outcome};

/// An exclusive lock held until dropped (the kernel releases flock locks when the file closes).
#[derive(Debug)]
pub struct MasterLock {
    _lock: Flock<File>,
    /// Where the lock lives.
    pub path: PathBuf,
}

/// The default lock folder. In `/run`, which only root can write, so that no other user can make
/// it first; not `/run/vipctl`, the daemon's RuntimeDirectory=, which systemd empties whenever the
/// daemon stops: a hook's lock file removed under it would let a second run take "the" lock.
pub const DEFAULT_DIR: &str = "/run/vipctl-lock";
/// How long a run waits for another run on the same master before giving up (transiently).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The default lock folder: [`DEFAULT_DIR`].
pub fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

/// The users trusted to own lock folders and files: root, this process's user, and `vipctl`.
fn trusted(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw() || crate::privilege::uid_of("vipctl") == Some(uid)
}

/// Checks (and, for root, creates) the lock folder: a real directory, owned by a trusted user,
/// writable by nobody else. A folder of another user is a transient failure (exit 1): someone made
/// it first (possible only where others may write its parent), and once an administrator removes
/// it a retry succeeds, so Sentinel should keep retrying the hook instead of giving up on it.
pub fn check_dir(dir: &Path) -> Outcome<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o755).create(dir).map_err(|e| {
                Failure::permanent(anyhow!(
                    "lock folder {} does not exist and cannot be made ({e}); create it owned by root or vipctl, mode 0755 \
                     (the package's tmpfiles.d entry does: `systemd-tmpfiles --create vipctl.conf`), or set `lock_dir`",
                    dir.display()
                ))
            })?;
            std::fs::symlink_metadata(dir)
                .map_err(|e| Failure::transient(anyhow!("cannot stat {}: {e}", dir.display())))?
        }
        Err(e) => return Err(Failure::transient(anyhow!("cannot stat lock folder {}: {e}", dir.display()))),
    };
    if !meta.file_type().is_dir() {
        return Err(Failure::permanent(anyhow!("lock folder {} is not a directory; fix `lock_dir`", dir.display())));
    }
    if !trusted(meta.uid()) {
        let owner = match crate::privilege::user_name(meta.uid()) {
            Some(name) => format!("user {name} (uid {})", meta.uid()),
            None => format!("uid {}, a user without a name here", meta.uid()),
        };
        return Err(Failure::transient(anyhow!(
            "lock folder {dir} belongs to {owner}, not to root or vipctl: that user could block or redirect vipctl's \
             locks, so none is taken there; as root, remove it (`rm -rf {dir}`) and make it again \
             (`systemd-tmpfiles --create vipctl.conf`, or `install -d -m 0755 -o vipctl -g vipctl {dir}`), or set \
             `lock_dir` to a folder whose parent only root can write, as {DEFAULT_DIR}; then retry (Sentinel retries a hook by \
             itself)",
            dir = dir.display(),
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Failure::permanent(anyhow!(
            "lock folder {} is writable by users other than root and vipctl (owner uid {}, mode {:o}): any of them could \
             block or redirect vipctl's locks; use a folder only root and vipctl can write, e.g. {DEFAULT_DIR}",
            dir.display(),
            meta.uid(),
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

/// The lock file for `master`. Its name carries the network namespace's inode because the lock
/// guards one network stack: containers and test hosts that share a filesystem but not a network
/// must not wait for each other.
pub fn path_for(dir: &Path, master: &str) -> PathBuf {
    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
    let safe: String =
        master.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    dir.join(format!("vipctl-{safe}-{netns}.lock"))
}

/// Opens the lock file without ever blocking: not a FIFO (O_NONBLOCK, then a regular-file check),
/// not through a symlink (O_NOFOLLOW), owned by a trusted user. A new file is made readable by its
/// owner only and handed to the folder's owner, so that root and the daemon share it and nobody
/// else can open it to hold its lock.
fn open(dir: &Path, path: &Path) -> Outcome<File> {
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let cannot = |e: std::io::Error| {
        Failure::permanent(anyhow!(
            "cannot open lock file {}: {e}; set `lock_dir` in the config to a folder this user can write",
            path.display()
        ))
    };
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(flags)
                .open(path)
                .or_else(|e| match e.kind() {
                    // Made by another run just now.
                    std::io::ErrorKind::AlreadyExists => OpenOptions::new().read(true).custom_flags(flags).open(path),
                    _ => Err(e),
                })
                .map_err(cannot)?;
            share_with_dir_owner(&f, dir);
            f
        }
        Err(e) => return Err(cannot(e)),
    };
    let meta =
        file.metadata().map_err(|e| Failure::transient(anyhow!("cannot stat lock file {}: {e}", path.display())))?;
    if !meta.file_type().is_file() || !trusted(meta.uid()) {
        return Err(Failure::permanent(anyhow!(
            "lock file {} is not a regular file of root or vipctl (someone put something else there); remove it, and \
             keep `lock_dir` in a folder only root and vipctl can write",
            path.display()
        )));
    }
    Ok(file)
}

/// A lock file root made belongs to the folder's owner (vipctl, under the package), mode 0600.
fn share_with_dir_owner(f: &File, dir: &Path) {
    use nix::unistd::{Gid, Uid};
    if let Ok(m) = std::fs::metadata(dir)
        && m.uid() != 0
    {
        // A failure leaves a root-owned file, which root and only root can open.
        let _ = nix::unistd::fchown(f, Some(Uid::from_raw(m.uid())), Some(Gid::from_raw(m.gid())));
    }
}

/// Tries the flock once: the file back when another run holds it.
fn try_flock(file: File, path: &Path) -> Outcome<Result<Flock<File>, File>> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Ok(lock)),
        Err((file, Errno::EAGAIN | Errno::EINTR)) => Ok(Err(file)),
        Err((_, e)) => Err(Failure::transient(anyhow!("cannot lock {}: {e}", path.display()))),
    }
}

impl MasterLock {
    /// The checked folder and the opened lock file for `master`, ready to flock.
    fn open_for(dir: &Path, master: &str) -> Outcome<(File, PathBuf)> {
        check_dir(dir)?;
        let path = path_for(dir, master);
        let file = open(dir, &path)?;
        Ok((file, path))
    }

    /// Takes the lock if it is free; `None` when another run holds it.
    pub fn try_acquire(dir: &Path, master: &str) -> Outcome<Option<MasterLock>> {
        let (file, path) = MasterLock::open_for(dir, master)?;
        Ok(try_flock(file, &path)?.ok().map(|lock| MasterLock { _lock: lock, path }))
    }

    /// Takes the lock, waiting at most `timeout`; a timeout is transient (the holder will finish).
    /// The folder is checked and the file opened once; only the flock is retried.
    pub fn acquire(dir: &Path, master: &str, timeout: Duration) -> Outcome<MasterLock> {
        let start = Instant::now();
        let (mut file, path) = MasterLock::open_for(dir, master)?;
        loop {
            match try_flock(file, &path)? {
                Ok(lock) => return Ok(MasterLock { _lock: lock, path }),
                Err(back) => file = back,
            }
            if start.elapsed() >= timeout {
                return Err(Failure::transient(anyhow!(
                    "another vipctl run for master `{master}` still holds {} after {} s; retry",
                    path.display(),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterLock::acquire(dir.path(), "m/x", Duration::from_secs(1)).unwrap();
        assert!(first.path.file_name().unwrap().to_str().unwrap().starts_with("vipctl-m_x-"));
        let second = MasterLock::acquire(dir.path(), "m/x", Duration::from_millis(50)).unwrap_err();
        assert_eq!(second.status(), 1);
        assert!(MasterLock::try_acquire(dir.path(), "m/x").unwrap().is_none());
        drop(first);
        MasterLock::acquire(dir.path(), "m/x", Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn a_fifo_or_a_link_never_hangs_or_redirects() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), "fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        // A blocking open of a FIFO would never return: give it far more time than it needs.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || tx.send(MasterLock::acquire(&d, "fifo", Duration::from_secs(1)).map(|_| ())));
        let e = rx.recv_timeout(Duration::from_secs(10)).expect("taking a lock hung on a FIFO").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");

        let wide = tempfile::tempdir().unwrap();
        std::fs::set_permissions(wide.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        let e = MasterLock::acquire(wide.path(), "m", Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("writable by users other than root and vipctl"), "{e}");
        assert_eq!(e.status(), 2, "a folder of ours that others may write is a configuration error");

        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, path_for(dir.path(), "link")).unwrap();
        assert!(MasterLock::acquire(dir.path(), "link", Duration::from_millis(50)).is_err());
        assert!(!target.exists(), "the lock followed a symlink");
    }

    #[test]
    #[ignore = "needs root: hands a folder to another user (chown)"]
    fn a_folder_another_user_made_first_is_retried_and_its_owner_named() {
        use std::os::unix::fs::PermissionsExt;
        // As anyone could do in /run/lock (mode 1777) on a host without tmpfiles, after a reboot.
        let parent = tempfile::tempdir().unwrap();
        let squatted = parent.path().join("vipctl");
        std::fs::create_dir(&squatted).unwrap();
        std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&squatted, Some(65534), Some(65534)).unwrap();
        let e = MasterLock::acquire(&squatted, "m", Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.status(), 1, "a squatted folder can be fixed, so Sentinel must retry: {e}");
        let msg = e.to_string();
        let owner = match crate::privilege::user_name(65534) {
            Some(name) => format!("user {name} (uid 65534)"),
            None => "uid 65534".to_string(),
        };
        assert!(msg.contains(&format!("lock folder {} belongs to {owner}", squatted.display())), "{msg}");
        assert!(msg.contains(&format!("rm -rf {}", squatted.display())) && msg.contains("systemd-tmpfiles"), "{msg}");
        assert_eq!(MasterLock::try_acquire(&squatted, "m").unwrap_err().status(), 1);
        assert_eq!(std::fs::read_dir(&squatted).unwrap().count(), 0, "a lock file was made in it");
    }

    #[test]
    fn the_default_folder_is_in_one_only_root_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new(DEFAULT_DIR);
        // Not /run/vipctl: the daemon's RuntimeDirectory=, emptied whenever the daemon stops.
        assert_ne!(dir, Path::new("/run/vipctl"));
        let parent = dir.parent().unwrap();
        assert_eq!(parent, Path::new("/run"));
        let meta = std::fs::metadata(parent).unwrap();
        assert!(meta.uid() == 0 && meta.permissions().mode() & 0o022 == 0, "{parent:?}: {meta:?}");
    }
}
