//! The daemon's end of the control socket: accepts connections, reads one request line, hands it
//! to the loop on a queue of its own, and writes the reply. Any local user may connect (who may do
//! what is decided per request from SO_PEERCRED), so every step is bounded: connections at once,
//! the size of a request, the time to send it and to read the reply, the queue to the loop. A
//! connection over a cap is told "busy" and closed at once, never dropped without a word: its
//! client must be able to tell a busy daemon from one that is not running.

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
/// more are answered "busy" and closed at once, so that they cannot use up the daemon's files.
/// Each user outside the trusted ones gets a few at a time, so that one user cannot crowd out the
/// others either.
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
                Err(_) => {
                    refuse(stream, TRUSTED_CONNECTIONS, "of root, the daemon's user and hook_users");
                    continue;
                }
            }
        } else {
            let Ok(p) = other_slots.clone().try_acquire_owned() else {
                refuse(stream, OTHER_CONNECTIONS, "of users other than root, the daemon's and hook_users");
                continue;
            };
            let mut counts = per_user.lock().expect("not poisoned");
            let n = counts.entry(uid).or_default();
            if *n >= PER_OTHER_USER {
                drop(counts);
                refuse(stream, PER_OTHER_USER, "of this user");
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

/// Answers a connection over a cap "busy" (exit status 1: try again) and closes it. One
/// non-blocking write, never a wait: a fresh connection's buffer takes the short line at once, and
/// a client that cannot take it just sees the connection closed. Its request is never read: the
/// client may find its write refused (EPIPE) and reads the reply anyway.
fn refuse(stream: UnixStream, cap: usize, whose: &str) {
    let reply = Reply::new(1, format!("the daemon is busy: {cap} connections {whose} are open already; try again"));
    if let Ok(mut line) = serde_json::to_vec(&reply) {
        line.push(b'\n');
        let _ = stream.try_write(&line);
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

    /// Runs `f` on a thread of its own whose effective uid is `uid`: what SO_PEERCRED reports for
    /// the connections it makes. The raw system call changes only that thread (glibc's setresuid
    /// would change every thread of the test process).
    async fn as_user<T: Send + 'static>(uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            // SAFETY: setresuid takes three integers and touches no memory of ours.
            let rc = unsafe {
                libc::syscall(libc::SYS_setresuid, -1 as libc::c_long, uid as libc::c_long, -1 as libc::c_long)
            };
            assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
            let _ = tx.send(f());
        });
        rx.await.expect("the thread panicked")
    }

    /// `vipctl status` as user `uid`, over the real client.
    async fn status_as(uid: u32, path: &Path) -> std::io::Result<Reply> {
        let path = path.to_path_buf();
        as_user(uid, move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(control::ask(&path, &Request::Status, Duration::from_secs(2)))
        })
        .await
    }

    /// `n` connections made as user `uid` that never send anything.
    async fn idle_as(uid: u32, path: &Path, n: usize) -> Vec<std::os::unix::net::UnixStream> {
        let path = path.to_path_buf();
        as_user(uid, move || (0..n).map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap()).collect()).await
    }

    #[tokio::test]
    #[ignore = "needs root: connects as other users (setresuid of a thread)"]
    async fn a_full_pool_answers_busy_and_trusted_users_are_still_served() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("vipctl.sock");
        let listener = bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel::<ControlRequest>(32);
        tokio::spawn(serve(listener, tx, BTreeSet::from([0])));
        // The loop's side: answers every status with the caller's uid.
        tokio::spawn(async move {
            while let Some((_, uid, reply)) = rx.recv().await {
                let state = control::DaemonStatus { pid: 1, started: "now".into(), masters: vec![] };
                let _ = reply.send(Reply { state: Some(state), ..Reply::new(0, format!("uid {uid}")) });
            }
        });
        let settle = || tokio::time::sleep(Duration::from_millis(100));
        let busy = |r: std::io::Result<Reply>, what: &str| {
            let r =
                r.unwrap_or_else(|e| panic!("{what}: no reply ({e}): `status` would say the daemon is not running"));
            assert!(r.status == 1 && r.state.is_none() && r.message.contains("busy"), "{what}: {r:?}");
            r.message
        };

        // One user's fifth connection.
        let first = idle_as(60001, &path, PER_OTHER_USER).await;
        settle().await;
        let m = busy(status_as(60001, &path).await, "a fifth connection of one user");
        assert!(m.contains("of this user"), "{m}");
        // Four users with four each fill the pool of everyone but the trusted: a fifth user is told so.
        let mut held = vec![first];
        for uid in 60002..60005 {
            held.push(idle_as(uid, &path, PER_OTHER_USER).await);
        }
        settle().await;
        let m = busy(status_as(60005, &path).await, "a fifth user");
        assert!(m.contains("of users other than root"), "{m}");
        // Root is trusted here: served all the same.
        let root = status_as(0, &path).await.unwrap();
        assert!(root.state.is_some() && root.message == "uid 0", "{root:?}");
        // Once the others let go, the fifth user is served (and seen as who it is).
        drop(held);
        settle().await;
        let r = status_as(60005, &path).await.unwrap();
        assert!(r.state.is_some() && r.message == "uid 60005", "{r:?}");
    }
}
