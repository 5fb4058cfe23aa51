//! Writes through the VIP for the namespace lab (`scripts/lab.sh`).
//!
//! ```text
//! lab_writer HOST PORT --duration-ms N [--interval-ms 10] [--key K]
//! ```
//!
//! Every interval it sends `INCR K` on one persistent TCP connection and
//! prints one line per attempt to stdout, flushed at once so a test or the
//! demo can follow it live:
//!
//! ```text
//! <unix_time_ms> ok <value>
//! <unix_time_ms> err <short reason>
//! ```
//!
//! The timestamp is when the attempt started.  Any error (connect, timeout,
//! closed connection, a Redis error reply such as `READONLY`) drops the
//! connection, and the next tick connects again: that is what makes the
//! writer follow the VIP to the new master after a failover.  Connect, read
//! and write are each bounded by ~200 ms, and the whole run by
//! `--duration-ms` (at most 10 minutes).  A short summary goes to stderr.
//! Exit status: 0 at the end of the run, 2 for bad arguments, 1 if stdout
//! goes away.
//!
//! Std only, so it builds as an example without pulling anything in.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound for connecting, and for writing a command and reading its reply.
const IO_TIMEOUT: Duration = Duration::from_millis(200);
/// `--duration-ms` may not exceed this, so a forgotten writer always ends.
const MAX_DURATION_MS: u64 = 10 * 60 * 1000;
/// A reply line longer than this is not an `INCR` reply; give up on it.
const MAX_LINE: usize = 64 * 1024;

const USAGE: &str = "usage: lab_writer HOST PORT --duration-ms N [--interval-ms 10] [--key K]";

struct Args {
    host: String,
    port: u16,
    interval: Duration,
    duration: Duration,
    key: String,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut interval_ms: u64 = 10;
    let mut duration_ms: Option<u64> = None;
    let mut key = String::from("lab_writer");
    while let Some(arg) = argv.next() {
        // Accept both "--opt value" and "--opt=value".
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => argv.next().ok_or_else(|| format!("{what} needs a value")),
            }
        };
        match name.as_str() {
            "--interval-ms" => interval_ms = parse_ms("--interval-ms", &value("--interval-ms")?)?,
            "--duration-ms" => duration_ms = Some(parse_ms("--duration-ms", &value("--duration-ms")?)?),
            "--key" => key = value("--key")?,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let [host, port]: [String; 2] =
        positional.try_into().map_err(|_| "expected exactly two arguments, HOST and PORT".to_string())?;
    let port: u16 = port.parse().map_err(|_| format!("invalid PORT '{port}'"))?;
    let duration_ms = duration_ms.ok_or("--duration-ms is required")?;
    if duration_ms > MAX_DURATION_MS {
        return Err(format!("--duration-ms may be at most {MAX_DURATION_MS} (10 minutes)"));
    }
    if interval_ms == 0 {
        return Err("--interval-ms must be at least 1".to_string());
    }
    if key.is_empty() {
        return Err("--key must not be empty".to_string());
    }
    Ok(Args {
        host,
        port,
        interval: Duration::from_millis(interval_ms),
        duration: Duration::from_millis(duration_ms),
        key,
    })
}

fn parse_ms(name: &str, s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{name}: '{s}' is not a number of milliseconds"))
}

/// Addresses to try for HOST.  IP literals (the lab's normal case, including
/// IPv6 without brackets) never go through name resolution.
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(ErrorKind::NotFound, "no address for host"));
    }
    Ok(addrs)
}

fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, IO_TIMEOUT) {
            Ok(stream) => {
                let setup = stream
                    .set_read_timeout(Some(IO_TIMEOUT))
                    .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
                    .and_then(|()| stream.set_nodelay(true));
                return match setup {
                    Ok(()) => Ok(stream),
                    Err(e) => Err(format!("connect: {}", short_io(&e))),
                };
            }
            Err(e) => last = format!("connect: {}", short_io(&e)),
        }
    }
    Err(last)
}

/// `*2\r\n$4\r\nINCR\r\n$<len>\r\n<key>\r\n`
fn incr_command(key: &str) -> Vec<u8> {
    let mut cmd = format!("*2\r\n$4\r\nINCR\r\n${}\r\n", key.len()).into_bytes();
    cmd.extend_from_slice(key.as_bytes());
    cmd.extend_from_slice(b"\r\n");
    cmd
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn short_io(e: &io::Error) -> String {
    if is_timeout(e) {
        return "timeout".to_string();
    }
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::BrokenPipe => "broken pipe".to_string(),
        ErrorKind::HostUnreachable => "host unreachable".to_string(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        _ => e.to_string(),
    }
}

/// Reads one RESP line (without its `\r\n`), tolerating any split of the
/// reply over several reads.  The whole line must arrive before `deadline`.
fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut chunk = [0u8; 512];
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..pos].to_vec();
            buf.drain(..pos + 2);
            return Ok(line);
        }
        if buf.len() > MAX_LINE {
            return Err("reply line too long".to_string());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".to_string());
        }
        // A trickling peer must not stretch one attempt past the bound.
        stream.set_read_timeout(Some(left)).map_err(|e| format!("read: {}", short_io(&e)))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed by peer".to_string()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err("timeout".to_string()),
            Err(e) => return Err(format!("read: {}", short_io(&e))),
        }
    }
}

/// Sends one INCR and returns the new value, or a short reason.
fn incr(stream: &mut TcpStream, cmd: &[u8]) -> Result<i64, String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    stream
        .write_all(cmd)
        .map_err(|e| if is_timeout(&e) { "timeout".to_string() } else { format!("write: {}", short_io(&e)) })?;
    let mut buf = Vec::new();
    let line = read_line(stream, &mut buf, deadline)?;
    let text = String::from_utf8_lossy(&line);
    let mut chars = text.chars();
    match chars.next() {
        Some(':') => {
            chars.as_str().parse::<i64>().map_err(|_| format!("bad integer reply '{}'", printable(chars.as_str())))
        }
        // "-READONLY You can't write against a read only replica." etc.
        Some('-') => Err(printable(chars.as_str())),
        _ => Err(format!("unexpected reply '{}'", printable(&text))),
    }
}

/// Keeps a reply on one short output line.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > 120 {
        let mut cut = 120;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn run(args: &Args) -> io::Result<(u64, u64)> {
    let cmd = incr_command(&args.key);
    let start = Instant::now();
    let end = start + args.duration;
    let mut out = io::stdout().lock();
    let mut conn: Option<TcpStream> = None;
    let (mut ok, mut err) = (0u64, 0u64);
    let mut next_tick = start;
    while Instant::now() < end {
        let stamp = unix_ms();
        let result = match conn.as_mut() {
            Some(stream) => incr(stream, &cmd),
            None => resolve(&args.host, args.port)
                .map_err(|e| format!("resolve: {e}"))
                .and_then(|addrs| connect(&addrs))
                .and_then(|mut stream| {
                    let r = incr(&mut stream, &cmd);
                    conn = Some(stream);
                    r
                }),
        };
        match result {
            Ok(value) => {
                ok += 1;
                writeln!(out, "{stamp} ok {value}")?;
            }
            Err(reason) => {
                err += 1;
                // Reconnect on the next tick, whatever went wrong: after a
                // failover the VIP leads somewhere else.
                conn = None;
                writeln!(out, "{stamp} err {reason}")?;
            }
        }
        out.flush()?;
        // Fixed-rate ticks; after a slow attempt, skip the missed ticks
        // instead of bursting to catch up.
        next_tick += args.interval;
        let now = Instant::now();
        if next_tick < now {
            next_tick = now;
        }
        let wake = next_tick.min(end);
        thread::sleep(wake.saturating_duration_since(now));
    }
    Ok((ok, err))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("lab_writer: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok((ok, err)) => {
            let target = if args.host.contains(':') && !args.host.starts_with('[') {
                format!("[{}]:{}", args.host, args.port)
            } else {
                format!("{}:{}", args.host, args.port)
            };
            eprintln!("lab_writer: {} attempts to {target} key {}: {ok} ok, {err} err", ok + err, args.key);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lab_writer: stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn command_is_resp_array() {
        assert_eq!(incr_command("k1"), b"*2\r\n$4\r\nINCR\r\n$2\r\nk1\r\n");
        assert_eq!(incr_command("é"), b"*2\r\n$4\r\nINCR\r\n$2\r\n\xc3\xa9\r\n");
    }

    #[test]
    fn parses_arguments() {
        let a = args(&["2001:db8:51::100", "6379", "--duration-ms", "2000", "--key=x"]).unwrap();
        assert_eq!(a.port, 6379);
        assert_eq!(a.interval, Duration::from_millis(10));
        assert_eq!(a.duration, Duration::from_millis(2000));
        assert_eq!(a.key, "x");
        assert!(args(&["h", "1"]).is_err(), "duration is required");
        assert!(args(&["h", "1", "--duration-ms", "600001"]).is_err());
        assert!(args(&["h", "--duration-ms", "1"]).is_err());
        assert!(args(&["h", "1", "--duration-ms", "1", "--interval-ms", "0"]).is_err());
    }

    #[test]
    fn resolves_ip_literals_without_dns() {
        let a = resolve("2001:db8:51::100", 6379).unwrap();
        assert_eq!(a, vec!["[2001:db8:51::100]:6379".parse().unwrap()]);
        let a = resolve("[2001:db8:51::100]", 1).unwrap();
        assert_eq!(a[0].port(), 1);
    }

    /// A fake server that sends the reply in single bytes, to exercise
    /// partial reads.
    fn serve(replies: &'static [&'static [u8]]) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for reply in replies {
                let mut req = [0u8; 64];
                let _ = s.read(&mut req).unwrap();
                for b in *reply {
                    s.write_all(&[*b]).unwrap();
                    s.flush().unwrap();
                    thread::sleep(Duration::from_millis(2));
                }
            }
        });
        addr
    }

    #[test]
    fn handles_split_integer_and_error_replies() {
        let addr = serve(&[b":123\r\n", b"-READONLY You can't write\r\n", b"+OK\r\n"]);
        let mut s = connect(&[addr]).unwrap();
        let cmd = incr_command("k");
        assert_eq!(incr(&mut s, &cmd), Ok(123));
        assert_eq!(incr(&mut s, &cmd), Err("READONLY You can't write".to_string()));
        assert!(incr(&mut s, &cmd).unwrap_err().starts_with("unexpected reply"));
    }

    #[test]
    fn silent_server_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = connect(&[addr]).unwrap();
        let t = Instant::now();
        assert_eq!(incr(&mut s, &incr_command("k")), Err("timeout".to_string()));
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(listener);
    }
}
