//! What the host's BGP speaker (BIRD or FRR) does with routed VIPs, as `vipctl check` reports it.
//!
//! vipctl speaks no BGP: it binds the VIP and the speaker announces it. A check therefore asks
//! the speaker through its own read-only CLI (`birdc -r`, `vtysh -c 'show …'`), bounded in time
//! and output, and never changes anything.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;

use crate::network::vip::Vip;

/// How long one CLI call may take before the check gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// More output than this is not a BGP speaker on a Redis host answering a `show` command.
const MAX_OUTPUT: u64 = 4 << 20;
/// The CLIs are looked up here only: never in a PATH that someone else may have set.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// BIRD 2's control socket as Debian's bird2 package runs it.
pub const BIRD_SOCKET: &str = "/run/bird/bird.ctl";
/// The folder of FRR's vty sockets as Debian's frr package runs it.
pub const FRR_VTY_DIR: &str = "/run/frr";

/// A BGP speaker and where to reach its CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    /// BIRD 2, through `birdc -r -s SOCKET`.
    Bird(PathBuf),
    /// FRR's bgpd, through `vtysh --vty_socket DIR`.
    Frr(PathBuf),
}

/// One BGP session as the speaker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// BIRD's protocol name (`tor4`) or FRR's neighbour address.
    pub name: String,
    /// Established, so that what is exported on it reaches the router.
    pub established: bool,
    /// The speaker's words for its state (`Established`, `Active Socket: Connection refused`).
    pub state: String,
    /// The address family FRR reported it under; BIRD sessions carry both until asked.
    pub family: Option<Family>,
}

/// IPv4 or IPv6 unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ipv4 unicast.
    V4,
    /// ipv6 unicast.
    V6,
}

impl Family {
    fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl Speaker {
    /// The speaker named on the command line, or the one whose default socket exists.
    pub fn find(bird_socket: Option<&Path>, frr_vty_dir: Option<&Path>) -> Option<Speaker> {
        match (bird_socket, frr_vty_dir) {
            (Some(s), _) => Some(Speaker::Bird(s.to_path_buf())),
            (None, Some(d)) => Some(Speaker::Frr(d.to_path_buf())),
            (None, None) if Path::new(BIRD_SOCKET).exists() => Some(Speaker::Bird(BIRD_SOCKET.into())),
            (None, None) if Path::new(FRR_VTY_DIR).join("bgpd.vty").exists() => Some(Speaker::Frr(FRR_VTY_DIR.into())),
            (None, None) => None,
        }
    }

    /// A short name for messages: `BIRD (/run/bird/bird.ctl)`.
    pub fn describe(&self) -> String {
        match self {
            Speaker::Bird(s) => format!("BIRD ({})", s.display()),
            Speaker::Frr(d) => format!("FRR ({})", d.display()),
        }
    }

    /// The command an operator runs to see what this check saw.
    pub fn show_sessions_command(&self) -> String {
        match self {
            Speaker::Bird(s) => format!("birdc -s {} show protocols all", s.display()),
            Speaker::Frr(d) => format!("vtysh --vty_socket {} -c 'show bgp summary'", d.display()),
        }
    }

    /// The BGP sessions the speaker has.
    pub async fn sessions(&self) -> anyhow::Result<Vec<Session>> {
        match self {
            Speaker::Bird(_) => Ok(parse_bird_protocols(&self.bird(&["show", "protocols"]).await?)),
            Speaker::Frr(_) => parse_frr_summary(&self.vtysh("show bgp summary json").await?),
        }
    }

    /// True when the speaker sends `vip` (as a host route) to the router on `session`.
    pub async fn exports(&self, session: &Session, vip: &Vip) -> anyhow::Result<bool> {
        let prefix = host_route(vip);
        match self {
            Speaker::Bird(_) => {
                // Quoted: a protocol may be named `tor-1`, which is no bare BIRD symbol.
                let proto = format!("'{}'", session.name);
                let out = self.run_bird(&["show", "route", &prefix, "export", &proto]).await?;
                if !out.ok && !bird_says_nothing(&out.stdout) {
                    bail!("birdc show route {prefix} export {proto} failed: {}", out.last_line());
                }
                Ok(bird_lists(&out.stdout, &prefix))
            }
            Speaker::Frr(_) => {
                let family = match Family::of(vip.addr) {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                };
                let cmd = format!("show bgp {family} unicast neighbors {} advertised-routes json", session.name);
                frr_advertises(&self.vtysh(&cmd).await?, &prefix)
            }
        }
    }

    /// `birdc -r`: restricted, so that it could not change BIRD even if asked to.
    async fn bird(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run_bird(args).await?;
        if !out.ok {
            bail!("birdc {} failed: {}", args.join(" "), out.last_line());
        }
        Ok(out.stdout)
    }

    async fn run_bird(&self, args: &[&str]) -> anyhow::Result<Ran> {
        let Speaker::Bird(socket) = self else { unreachable!("bird() on FRR") };
        let mut all = vec!["-r".to_string(), "-s".into(), socket.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        run("birdc", &all).await
    }

    /// vtysh's stdout; its stderr may carry warnings (an unreadable vtysh.conf) beside a good answer.
    async fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        let Speaker::Frr(dir) = self else { unreachable!("vtysh() on BIRD") };
        let args = ["--vty_socket".to_string(), dir.display().to_string(), "-c".into(), command.into()];
        let out = run("vtysh", &args).await?;
        if !out.ok {
            bail!("vtysh -c '{command}' failed: {}", out.last_line());
        }
        Ok(out.stdout)
    }
}

/// What a CLI run gave.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The last line that says something, stderr first: where the CLIs put their complaints.
    fn last_line(&self) -> String {
        last_line(&self.stderr).or_else(|| last_line(&self.stdout)).unwrap_or_else(|| "no output".into())
    }
}

/// The VIP as the host route the speaker carries: `192.0.2.100/32`.
pub fn host_route(vip: &Vip) -> String {
    format!("{}/{}", vip.addr, Vip::max_prefix(vip.addr))
}

/// Runs `program` from [`SAFE_PATH`] with a clean environment and no capabilities.
async fn run(program: &str, args: &[String]) -> anyhow::Result<Ran> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs between fork and exec and only calls prctl.
    unsafe {
        cmd.pre_exec(crate::privilege::clear_ambient_caps);
    }
    let mut child =
        cmd.spawn().with_context(|| format!("cannot run {program} (looked in {SAFE_PATH}): is it installed?"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("{program}: no output pipes");
    };
    let work = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        // One byte over the cap tells "too much" from "exactly the cap".
        let (mut stdout, mut stderr) = (stdout.take(MAX_OUTPUT + 1), stderr.take(MAX_OUTPUT + 1));
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b)?;
        if out.len() as u64 > MAX_OUTPUT || err.len() as u64 > MAX_OUTPUT {
            return Ok(None);
        }
        let status = child.wait().await?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok::<_, std::io::Error>(Some(Ran { ok: status.success(), stdout: text(&out), stderr: text(&err) }))
    };
    let what = || format!("{program} {}", args.join(" "));
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(Ok(Some(ran))) => Ok(ran),
        // Dropping the child kills it (kill_on_drop).
        Ok(Ok(None)) => {
            bail!("{} wrote more than {} MiB; that is no answer to a show command", what(), MAX_OUTPUT >> 20)
        }
        Ok(Err(e)) => Err(e).with_context(what),
        Err(_) => bail!("{} gave no answer in {} s", what(), TIMEOUT.as_secs()),
    }
}

fn last_line(out: &str) -> Option<String> {
    out.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

/// BIRD's answers that mean "no such route here" rather than a failure.
fn bird_says_nothing(out: &str) -> bool {
    out.lines().any(|l| matches!(l.trim(), "Network not found" | "No valid tables"))
}

/// The BGP lines of `birdc show protocols`.
pub fn parse_bird_protocols(out: &str) -> Vec<Session> {
    out.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // name proto table state since… info…; "since" is one or two words (timeformat).
            if cols.len() < 4 || cols[1] != "BGP" {
                return None;
            }
            // A BGP protocol is "up" in BIRD only while its session is Established.
            let established = cols[3] == "up";
            let state = if established { "Established".to_string() } else { cols[3..].join(" ") };
            Some(Session { name: cols[0].to_string(), established, state, family: None })
        })
        .collect()
}

/// True when a `birdc show route PREFIX export P` answer lists PREFIX.
pub fn bird_lists(out: &str, prefix: &str) -> bool {
    out.lines().any(|l| l.split_whitespace().next() == Some(prefix))
}

/// The peers of `vtysh -c 'show bgp summary json'`, for both unicast families.
pub fn parse_frr_summary(out: &str) -> anyhow::Result<Vec<Session>> {
    let v: serde_json::Value = serde_json::from_str(out)
        .with_context(|| format!("vtysh gave no JSON: {}", last_line(out).unwrap_or_default()))?;
    let mut sessions = Vec::new();
    for (key, family) in [("ipv4Unicast", Family::V4), ("ipv6Unicast", Family::V6)] {
        let Some(peers) = v.get(key).and_then(|f| f.get("peers")).and_then(|p| p.as_object()) else { continue };
        for (peer, info) in peers {
            let state = info.get("state").and_then(|s| s.as_str()).unwrap_or("unknown").to_string();
            sessions.push(Session {
                name: peer.clone(),
                established: state == "Established",
                state,
                family: Some(family),
            });
        }
    }
    Ok(sessions)
}

/// True when `vtysh … advertised-routes json` lists `prefix`.
pub fn frr_advertises(out: &str, prefix: &str) -> anyhow::Result<bool> {
    let v: serde_json::Value = serde_json::from_str(out)
        .with_context(|| format!("vtysh gave no JSON: {}", last_line(out).unwrap_or_default()))?;
    // FRR answers `{}` for a peer it advertises nothing to.
    Ok(v.get("advertisedRoutes").and_then(|r| r.get(prefix)).is_some())
}

/// True when `session` can carry `vip`'s family (BIRD's sessions are asked per route instead).
pub fn carries(session: &Session, vip: &Vip) -> bool {
    session.family.is_none_or(|f| f == Family::of(vip.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIRD_PROTOCOLS: &str = "BIRD 2.0.12 ready.
Access restricted
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     12:21:14.300  
vips       Direct     ---        up     12:21:14.300  
tor4       BGP        ---        up     12:21:15.100  Established   
tor6       BGP        ---        start  12:21:14.300  Active        Socket: Connection refused
st         Static     master4    up     12:21:14.300  
tor-1      BGP        ---        up     2026-11-26 12:57:47  Established
";

    #[test]
    fn bird_sessions_are_the_bgp_lines() {
        let s = parse_bird_protocols(BIRD_PROTOCOLS);
        assert_eq!(s.len(), 3);
        // `timeformat protocol iso long` makes "since" two words.
        assert_eq!((s[2].name.as_str(), s[2].established), ("tor-1", true));
        assert_eq!((s[0].name.as_str(), s[0].established), ("tor4", true));
        assert_eq!((s[1].name.as_str(), s[1].established), ("tor6", false));
        assert_eq!(s[1].state, "start 12:21:14.300 Active Socket: Connection refused");
    }

    #[test]
    fn bird_route_answers() {
        let listed =
            "BIRD 2.0.12 ready.\nTable master4:\n192.0.2.100/32       unicast [vips 12:21:14.302] * (240)\n\tdev lo\n";
        assert!(bird_lists(listed, "192.0.2.100/32"));
        assert!(!bird_lists(listed, "192.0.2.10/32"));
        assert!(!bird_lists("BIRD 2.0.12 ready.\nNetwork not found\n", "192.0.2.100/32"));
        assert!(bird_says_nothing("BIRD 2.0.12 ready.\nNo valid tables\n"));
        assert!(!bird_says_nothing("syntax error, unexpected CF_SYM_UNDEFINED"));
    }

    #[test]
    fn frr_summary_and_advertisements() {
        let summary = r#"{"ipv4Unicast":{"routerId":"198.51.100.11","peers":{"198.51.100.1":{"state":"Established","pfxSnt":1}}},
            "ipv6Unicast":{"peers":{"2001:db8:1:1::1":{"state":"Active"}}}}"#;
        let s = parse_frr_summary(summary).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].established && s[0].family == Some(Family::V4));
        assert!(!s[1].established && s[1].family == Some(Family::V6));
        let v4: Vip = "192.0.2.100/32".parse().unwrap();
        assert!(carries(&s[0], &v4) && !carries(&s[1], &v4));
        assert!(parse_frr_summary("% bgpd is not running").is_err());

        let adv = r#"{"bgpLocalRouterId":"198.51.100.11","advertisedRoutes":{"192.0.2.100/32":{"prefix":"192.0.2.100/32"}},"totalPrefixCounter":1}"#;
        assert!(frr_advertises(adv, "192.0.2.100/32").unwrap());
        assert!(!frr_advertises(adv, "192.0.2.101/32").unwrap());
        assert!(!frr_advertises("{}", "192.0.2.100/32").unwrap());
        // Not knowing is not "not announced".
        assert!(frr_advertises("% Unknown command", "192.0.2.100/32").is_err());
    }

    #[test]
    fn host_routes_are_full_length() {
        let v: Vip = "2001:db8:ff::100/128".parse().unwrap();
        assert_eq!(host_route(&v), "2001:db8:ff::100/128");
    }
}
