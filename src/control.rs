//! The daemon's control socket protocol: a hook without privileges hands its event to
//! `vipctl watch`, and `vipctl status` and `vipctl check` ask what the daemon believes. One JSON
//! line each way; the types here are shared by both ends. The server is in [`crate::daemon`].

use std::io;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// A hook's call: a reason to reconcile `master` now (the arguments are logged, not trusted).
    Hook {
        /// Master name.
        master: String,
        /// Sentinel's seven arguments.
        args: Vec<String>,
    },
    /// The daemon's view of every master.
    Status,
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// The exit status the hook should use (0, 1 or 2).
    pub status: u8,
    /// One line for the hook's log and stderr.
    pub message: String,
    /// For `status`: the daemon's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DaemonStatus>,
}

impl Reply {
    /// A reply without state.
    pub fn new(status: u8, message: impl Into<String>) -> Reply {
        Reply { status, message: message.into(), state: None }
    }
}

/// What the daemon believes, for `status` and `check`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    /// The daemon's process id.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// One entry per master.
    pub masters: Vec<MasterStatus>,
}

/// The daemon's view of one master.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MasterStatus {
    /// Master name.
    pub name: String,
    /// Whether any of its VIPs is bound here.
    pub holding: bool,
    /// The reason of the last decision, in words.
    pub belief: String,
    /// The reason of the last decision, as a code.
    pub belief_code: String,
    /// The sentinels' view in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Each sentinel's latest answer.
    #[serde(default)]
    pub sentinels: Vec<SentinelStatus>,
    /// How long this host has been without a majority of the sentinels, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minority_for_ms: Option<u64>,
    /// The minority timeout in force.
    pub minority_timeout_ms: u64,
    /// The last change made to the VIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<crate::record::Record>,
    /// Claims and releases made.
    pub transitions: u64,
    /// Claims on held VIPs from other MACs.
    pub conflicts: u64,
    /// The last error, when the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The write fence on the local Redis, when one is placed: what, why, since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// Whether the provider's API delivers the VIPs here (`[masters.NAME.cloud]`): "delivered …"
    /// or "bound, not delivered: …".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// One sentinel's latest answer about a master.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentinelStatus {
    /// The sentinel.
    pub sentinel: String,
    /// The master it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Its config epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_epoch: Option<u64>,
    /// The master's flags there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// It does not know the master.
    #[serde(default)]
    pub unknown_master: bool,
    /// Why it cannot be asked now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// How old its answer is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
}

impl SentinelStatus {
    /// The status line of one report.
    pub fn of(r: &crate::sentinel::Report) -> SentinelStatus {
        use crate::sentinel::Answer;
        let mut s = SentinelStatus {
            sentinel: r.sentinel.to_string(),
            master: None,
            config_epoch: None,
            flags: None,
            unknown_master: false,
            unreachable: r.down.clone(),
            age_ms: r.last.as_ref().map(|(_, age)| age.as_millis() as u64),
        };
        match r.last.as_ref().map(|(a, _)| a) {
            Some(Answer::Master { addr, epoch, flags, .. }) => {
                s.master = Some(addr.to_string());
                s.config_epoch = Some(*epoch);
                s.flags = Some(flags.clone());
            }
            Some(Answer::Unknown) => s.unknown_master = true,
            None => {}
        }
        s
    }
}

/// Longest request line the daemon reads: a hook's seven arguments fit many times over.
pub const MAX_REQUEST: usize = 8 << 10;
/// Longest reply line a client reads (`status` of many masters).
pub const MAX_REPLY: usize = 8 << 20;

/// Sends `req` to the daemon at `socket` and waits at most `timeout` for its reply. An error that
/// comes after the connection was made (no reply, the connection closed or refused writes, no
/// reply in time) is one a daemon that runs but is busy or stuck gives: [`NoReply::of`] tells it
/// from "nothing listens".
pub async fn ask(socket: &Path, req: &Request, timeout: Duration) -> io::Result<Reply> {
    let start = tokio::time::Instant::now();
    let in_time = |what: &str| unanswered(format!("{what} within {} ms; try again", timeout.as_millis()));
    let mut stream = match tokio::time::timeout(timeout, UnixStream::connect(socket)).await {
        Ok(Ok(s)) => s,
        // A listener whose queue of connections not yet accepted is full.
        Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(unanswered("the daemon accepts no more connections for now (its queue is full); try again"));
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(in_time("no connection")),
    };
    let work = async {
        let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
        line.push(b'\n');
        // A busy daemon answers and closes without reading the request: the write may then be
        // refused, and its reply still waits to be read.
        if let Err(e) = stream.write_all(&line).await
            && !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
        {
            return Err(e);
        }
        let mut reader = BufReader::new(stream);
        let mut buf = String::new();
        let n = read_line_limited(&mut reader, &mut buf, MAX_REPLY).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without a reply",
            ));
        }
        serde_json::from_str::<Reply>(buf.trim_end()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    match tokio::time::timeout(timeout.saturating_sub(start.elapsed()), work).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(unanswered(format!("{e}; try again"))),
        Err(_) => Err(in_time("no reply")),
    }
}

/// Why [`ask`] got no reply, in the terms `status` and `check` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    /// Nothing listens: no socket file, or one nobody accepts on (left by a daemon that ended).
    NotRunning,
    /// A daemon listens but gave no reply: busy or stuck; asking again may work.
    Busy,
    /// The socket cannot be reached (permissions, a path that is not a folder, …).
    Unreachable,
}

impl NoReply {
    /// Classifies an error of [`ask`].
    pub fn of(e: &io::Error) -> NoReply {
        if e.get_ref().is_some_and(|inner| inner.is::<Unanswered>()) {
            return NoReply::Busy;
        }
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => NoReply::NotRunning,
            _ => NoReply::Unreachable,
        }
    }
}

/// The mark of an error that came after the connection was made.
#[derive(Debug)]
struct Unanswered(String);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unanswered {}

fn unanswered(message: impl Into<String>) -> io::Error {
    io::Error::other(Unanswered(message.into()))
}

/// Reads one line of at most `limit` bytes.
pub async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut String,
    limit: usize,
) -> io::Result<usize> {
    let n = tokio::io::AsyncReadExt::take(r, limit as u64).read_line(buf).await?;
    if n > 0 && !buf.ends_with('\n') && n >= limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = Request::Hook { master: "m".into(), args: vec!["a".into()] };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"hook","master":"m","args":["a"]}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(), Request::Status);
        let reply: Reply = serde_json::from_str(r#"{"status":1,"message":"x"}"#).unwrap();
        assert_eq!(reply.status, 1);
        assert!(reply.state.is_none());
    }

    /// A listener at `path` that handles one connection with `f` (in a thread of its own).
    fn one_connection(path: &Path, f: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static) {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            f(stream);
        });
    }

    #[tokio::test]
    async fn not_running_only_when_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(2);
        let missing = ask(&dir.path().join("none.sock"), &Request::Status, t).await.unwrap_err();
        assert_eq!(NoReply::of(&missing), NoReply::NotRunning, "{missing}");
        // Left by a daemon that ended: the file is there, nobody accepts.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let refused = ask(&stale, &Request::Status, t).await.unwrap_err();
        assert_eq!(NoReply::of(&refused), NoReply::NotRunning, "{refused}");

        // A daemon that accepts and closes without a word (as one over its caps used to).
        let silent = dir.path().join("silent.sock");
        one_connection(&silent, drop);
        let e = ask(&silent, &Request::Status, t).await.unwrap_err();
        assert_eq!(NoReply::of(&e), NoReply::Busy, "{e}");
        assert!(e.to_string().contains("try again"), "{e}");
        // One that never answers.
        let stuck = dir.path().join("stuck.sock");
        one_connection(&stuck, |s| {
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let e = ask(&stuck, &Request::Status, Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(NoReply::of(&e), NoReply::Busy, "{e}");
    }

    #[tokio::test]
    async fn a_reply_sent_before_the_request_was_read_is_still_read() {
        // The daemon answers "busy" and closes without reading the request; a request larger than
        // the socket's buffer makes the client's write fail (EPIPE) every time, not just by chance.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        one_connection(&path, |mut s| {
            use std::io::Write;
            s.write_all(b"{\"status\":1,\"message\":\"the daemon is busy; try again\"}\n").unwrap();
        });
        let big = Request::Hook { master: "m".into(), args: vec!["x".repeat(4 << 20)] };
        let reply = ask(&path, &big, Duration::from_secs(5)).await.expect("the reply was lost");
        assert_eq!(reply, Reply::new(1, "the daemon is busy; try again"));
    }
}
