//! The daemon's control socket: a hook without privileges hands its event to `vipctl watch`, and
//! `vipctl status` asks what the daemon believes. One JSON line each way.

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
    pub state: Option<serde_json::Value>,
}

/// Longest request or reply line accepted, so a confused peer cannot make either side buffer forever.
pub const MAX_LINE: usize = 1 << 20;

/// Sends `req` to the daemon at `socket` and waits at most `timeout` for its reply.
pub async fn ask(socket: &Path, req: &Request, timeout: Duration) -> io::Result<Reply> {
    let work = async {
        let mut stream = UnixStream::connect(socket).await?;
        let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reader = BufReader::new(stream);
        let mut buf = String::new();
        let n = read_line_limited(&mut reader, &mut buf).await?;
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

/// Reads one line of at most [`MAX_LINE`] bytes.
pub async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, buf: &mut String) -> io::Result<usize> {
    let n = tokio::io::AsyncReadExt::take(r, MAX_LINE as u64).read_line(buf).await?;
    if n > 0 && !buf.ends_with('\n') && n >= MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

/// Resolves a user name or numeric uid from `[watch] hook_users`.
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

    #[test]
    fn users() {
        assert_eq!(uid_of("0"), Some(0));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-vipctl"), None);
    }
}
