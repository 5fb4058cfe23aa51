//! The daemon's end of the control socket: accepts connections, reads one request line, hands it
//! to the loop on a queue of its own, and writes the reply. Any local user may connect (who may do
//! what is decided per request from SO_PEERCRED), so every step is bounded: connections at once,
//! the size of a request, the time to send it and to read the reply, the queue to the loop.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::control::{self, Reply, Request};
use crate::error::{Failure, Outcome};

/// A request for the loop, with the caller's uid and where the reply goes.
pub type ControlRequest = (Request, u32, oneshot::Sender<Reply>);

/// Connections served at once for root, the daemon's user and `hook_users`, and for everyone else;
/// more are closed at once, so that they cannot use up the daemon's files. Each user outside the
/// trusted ones gets a few at a time, so that one user cannot crowd out the others either.
pub const TRUSTED_CONNECTIONS: usize = 16;
const OTHER_CONNECTIONS: usize = 16;
const PER_OTHER_USER: usize = 4;
/// How long a client has to send its request, and to read the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request may wait for the loop's answer (a delegated hook waits for the change).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Binds the control socket, refusing to steal it from a running daemon. The socket is created
/// with mode 0666 through a private umask (no chmod on a path afterwards, which could follow a link).
pub fn bind(path: &Path) -> Outcome<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::permanent(anyhow!(
                "cannot create {}: {e}; create it or set [watch] socket in the config",
                dir.display()
            ))
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(Failure::permanent(anyhow!(
                "{} exists and is not a socket; remove it or set a different [watch] socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Failure::permanent(anyhow!(
                "another vipctl watch already serves {}; stop it first (or set a different [watch] socket)",
                path.display()
            )));
        }
        // Left by a daemon that died: nobody listens, so it is ours to replace.
        let _ = std::fs::remove_file(path);
    }
    // Anyone may connect; who may do what is decided per request from SO_PEERCRED.
    let listener = bind_open_to_all(path)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)
        })
        .map_err(|e| Failure::permanent(anyhow!("cannot listen on {}: {e}", path.display())))?;
    Ok(listener)
}

/// Binds with mode 0666 without ever widening the umask of the daemon's other threads: a folder
/// or file one of them made during the bind would come out with it (a lock folder without `x`, a
/// file writable by all).
fn bind_open_to_all(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    match bind_with_private_umask(path) {
        // unshare is refused by some seccomp profiles (Docker's default, without CAP_SYS_ADMIN).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => bind_then_chmod(path),
        r => r,
    }
}

/// Binds from a thread whose umask is its own (`unshare(CLONE_FS)`), set to give 0666.
fn bind_with_private_umask(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("vipctl-bind".into())
        .spawn(move || {
            // Detaches only this thread's cwd, root and umask from the other threads'.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(std::io::Error::from)?;
            // This thread's private umask; the thread ends right after the bind.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o111));
            std::os::unix::net::UnixListener::bind(&path)
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the bind thread panicked")))
}

/// Binds under a temporary name, makes that 0666 and renames it into place. A chmod by path is
/// safe only where nobody else can swap the name for a link, so the folder must be writable by
/// root and this user alone.
fn bind_then_chmod(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let meta = std::fs::symlink_metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || !(meta.uid() == 0 || meta.uid() == me) || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "unshare(CLONE_FS) is not allowed here (a seccomp profile?) and {} may be written by other users, so \
                 the socket cannot be opened to all safely; put it in a folder only root and vipctl can write",
                dir.display()
            ),
        ));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Accepts control connections until the loop is gone. `trusted` are the uids whose hooks the
/// daemon serves; their connections never wait behind anyone else's.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<ControlRequest>, trusted: BTreeSet<u32>) {
    let trusted_slots = Arc::new(Semaphore::new(TRUSTED_CONNECTIONS));
    let other_slots = Arc::new(Semaphore::new(OTHER_CONNECTIONS));
    let per_user: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(uid) = stream.peer_cred().map(|c| c.uid()) else { continue };
        let (permit, user_slot) = if trusted.contains(&uid) {
            match trusted_slots.clone().try_acquire_owned() {
                Ok(p) => (p, None),
                Err(_) => continue,
            }
        } else {
            let Ok(p) = other_slots.clone().try_acquire_owned() else { continue };
            let mut counts = per_user.lock().expect("not poisoned");
            let n = counts.entry(uid).or_default();
            if *n >= PER_OTHER_USER {
                // Full: drop the connection at once (the client sees EOF and says so).
                continue;
            }
            *n += 1;
            (p, Some(UserSlot { uid, counts: per_user.clone() }))
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, uid, tx).await {
                tracing::debug!("control connection: {e}");
            }
            drop((permit, user_slot));
        });
    }
}

/// One connection counted against its user; uncounted when dropped.
struct UserSlot {
    uid: u32,
    counts: Arc<Mutex<HashMap<u32, usize>>>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(&self.uid)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.uid);
            }
        }
    }
}

async fn serve_one(stream: UnixStream, uid: u32, tx: mpsc::Sender<ControlRequest>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read =
        tokio::time::timeout(IO_TIMEOUT, control::read_line_limited(&mut reader, &mut line, control::MAX_REQUEST))
            .await;
    let reply = match read {
        Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(req) => {
                let (rtx, rrx) = oneshot::channel();
                match tx.try_send((req, uid, rtx)) {
                    Ok(()) => match tokio::time::timeout(ANSWER_TIMEOUT, rrx).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Reply::new(1, "the daemon is stopping"),
                        Err(_) => Reply::new(1, "the daemon did not answer in time"),
                    },
                    Err(mpsc::error::TrySendError::Full(_)) => Reply::new(1, "the daemon is busy; try again"),
                    Err(mpsc::error::TrySendError::Closed(_)) => Reply::new(1, "the daemon is stopping"),
                }
            }
            Err(e) => Reply::new(2, format!("malformed request: {e}")),
        },
        _ => return Ok(()),
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let mut stream = reader.into_inner();
    match tokio::time::timeout(IO_TIMEOUT, stream.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client did not read the reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_socket_is_made_open_to_all_and_nothing_else_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vipctl.sock");
        let listener = bind(&path).unwrap();
        // 0666 from the start (umask at bind), never by a chmod on a path that could be swapped.
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666);
        let again = bind(&path).unwrap_err().to_string();
        assert!(again.contains("already serves"), "{again}");
        drop(listener);
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "precious").unwrap();
        let e = bind(&file).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    }

    #[test]
    fn without_unshare_the_socket_is_renamed_into_place_only_in_a_private_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("vipctl.sock");
        let listener = bind_then_chmod(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok(), "the listener serves the final path");
        drop(listener);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["vipctl.sock"], "no temporary name left behind");

        // Where others may write, a chmod by path could be steered to another file: refused.
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = bind_then_chmod(&open.path().join("vipctl.sock")).unwrap_err().to_string();
        assert!(e.contains("only root and vipctl"), "{e}");
        assert_eq!(std::fs::read_dir(open.path()).unwrap().count(), 0, "nothing made");
    }

    /// The umask of the calling thread, read without changing it.
    fn thread_umask() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap().trim().to_string()
    }

    #[tokio::test]
    async fn binding_never_widens_the_umask_of_other_threads() {
        // Another thread makes folders and files while the daemon binds (a lock folder made then
        // came out mode 0644, without `x`): it must never see the socket's wide umask.
        let before = thread_umask();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..1_000_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    seen.insert(thread_umask());
                }
                seen
            })
        };
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            drop(bind(&dir.path().join(format!("s{i}.sock"))).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        assert_eq!(seen, std::collections::BTreeSet::from([before]), "another thread saw a different umask");
    }
}
