//! Serialises concurrent runs for one master on one host, so two hooks never interleave their
//! changes and the second one acts on the state the first one left.

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

impl MasterLock {
    /// Takes the lock, waiting at most `timeout`; a timeout is transient (the holder will finish).
    pub fn acquire(dir: &Path, master: &str, timeout: Duration) -> Outcome<MasterLock> {
        let path = path_for(dir, master);
        // Read-only is enough for flock and lets a user other than the file's creator lock it too.
        let file = OpenOptions::new()
            .read(true)
            .write(false)
            .create(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .or_else(|_| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
            })
            .map_err(|e| {
                Failure::permanent(anyhow!(
                    "cannot open lock file {}: {e}; set `lock_dir` in the config to a folder this user can write",
                    path.display()
                ))
            })?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(MasterLock { _file: file, path });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) && err.raw_os_error() != Some(libc::EINTR) {
                return Err(Failure::transient(anyhow!("cannot lock {}: {err}", path.display())));
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
        drop(first);
        MasterLock::acquire(dir.path(), "m/x", Duration::from_millis(50)).unwrap();
    }
}
