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

/// Sends `req` to the daemon at `socket` and waits at most `timeout` for its reply.
pub async fn ask(socket: &Path, req: &Request, timeout: Duration) -> io::Result<Reply> {
    let work = async {
        let mut stream = UnixStream::connect(socket).await?;
        let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
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
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no reply within {} s", timeout.as_secs())))?
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
}
