//! Serialises concurrent runs for one master on one host, so two hooks never interleave their
//! changes and the second one acts on the state the first one left.
//!
//! The lock file is input from the file system: it is opened without blocking and without
//! following links, and must be a regular file; taking it never waits without a bound.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::error::{Failure, Outcome};

/// An exclusive lock held until dropped (the kernel releases flock locks when the file closes).
#[derive(Debug)]
pub struct MasterLock {
    _file: File,
    /// Where the lock lives.
    pub path: PathBuf,
}

/// The default lock folder: /run/lock exists on every systemd host and any user may create there.
pub fn default_dir() -> PathBuf {
    for d in ["/run/lock", "/var/lock", "/tmp"] {
        if Path::new(d).is_dir() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/tmp")
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
/// not through a symlink (O_NOFOLLOW).
fn open(path: &Path) -> Outcome<File> {
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .or_else(|_| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(flags)
                .open(path)
        })
        .map_err(|e| {
            Failure::permanent(anyhow!(
                "cannot open lock file {}: {e}; set `lock_dir` in the config to a folder this user can write",
                path.display()
            ))
        })?;
    let meta =
        file.metadata().map_err(|e| Failure::transient(anyhow!("cannot stat lock file {}: {e}", path.display())))?;
    if !meta.file_type().is_file() {
        return Err(Failure::permanent(anyhow!(
            "lock file {} is not a regular file (someone put something else there); remove it, and keep `lock_dir` in a folder only root and vipctl can write",
            path.display()
        )));
    }
    Ok(file)
}

impl MasterLock {
    /// Takes the lock if it is free; `None` when another run holds it.
    pub fn try_acquire(dir: &Path, master: &str) -> Outcome<Option<MasterLock>> {
        let path = path_for(dir, master);
        let file = open(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(MasterLock { _file: file, path }));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(None),
            _ => Err(Failure::transient(anyhow!("cannot lock {}: {err}", path.display()))),
        }
    }

    /// Takes the lock, waiting at most `timeout`; a timeout is transient (the holder will finish).
    pub fn acquire(dir: &Path, master: &str, timeout: Duration) -> Outcome<MasterLock> {
        let start = Instant::now();
        loop {
            if let Some(lock) = MasterLock::try_acquire(dir, master)? {
                return Ok(lock);
            }
            if start.elapsed() >= timeout {
                return Err(Failure::transient(anyhow!(
                    "another vipctl run for master `{master}` still holds {} after {} s; retry",
                    path_for(dir, master).display(),
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
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let t = Instant::now();
        let e = MasterLock::acquire(dir.path(), "fifo", Duration::from_secs(1)).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(500) && e.to_string().contains("not a regular file"), "{e}");

        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, path_for(dir.path(), "link")).unwrap();
        assert!(MasterLock::acquire(dir.path(), "link", Duration::from_millis(50)).is_err());
        assert!(!target.exists(), "the lock followed a symlink");
    }
}
