//! `vipctl status`: per master, its VIPs, where they are bound, who the sentinels say is master, and
//! what the daemon believes.

use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use super::{Ctx, all_of_them, ask_sentinels};
use crate::control::{self, DaemonStatus, NoReply, Request, SentinelStatus};
use crate::error::{Failure, Outcome};
use crate::network::netlink::Netlink;
use crate::network::plan::interface_for;
use crate::policy::{self, Locality};
use crate::resolve;

/// Show each master's VIPs, where they are bound, and who the sentinels say is master.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// How long `status` waits for a name to resolve: a person is waiting.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `status` waits for the daemon.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct VipStatus {
    vip: String,
    interface: Option<String>,
    interface_error: Option<String>,
    bound_here: bool,
    bound: Vec<String>,
}

#[derive(Serialize)]
struct SentinelView {
    master: Option<String>,
    this_host: Option<bool>,
    summary: String,
    reachable: usize,
    configured: usize,
    answers: Vec<SentinelStatus>,
}

#[derive(Serialize)]
struct MasterView {
    name: String,
    vips: Vec<VipStatus>,
    sentinel: Option<SentinelView>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Daemon {
    Running(DaemonStatus),
    /// A daemon listens but gave no status (it said it is busy, closed the connection, or ran out
    /// of time): worth asking again, so `status` exits 1.
    Busy {
        running: bool,
        busy: bool,
        socket: String,
        error: String,
    },
    /// Nothing listens on the socket.
    NotRunning {
        running: bool,
        socket: String,
        error: String,
    },
    /// The socket cannot be reached (permissions, …): whether a daemon runs is unknown.
    Unreachable {
        running: Option<bool>,
        socket: String,
        error: String,
    },
}

impl Daemon {
    /// What the answer to a status request (or its absence) says about the daemon.
    fn of(answer: std::io::Result<control::Reply>, socket: &std::path::Path) -> Daemon {
        let socket = socket.display().to_string();
        match answer {
            Ok(control::Reply { state: Some(s), .. }) => Daemon::Running(s),
            Ok(reply) => Daemon::Busy { running: true, busy: true, socket, error: reply.message },
            Err(e) => {
                let error = e.to_string();
                match NoReply::of(&e) {
                    NoReply::NotRunning => Daemon::NotRunning { running: false, socket, error },
                    NoReply::Busy => Daemon::Busy { running: true, busy: true, socket, error },
                    NoReply::Unreachable => Daemon::Unreachable { running: None, socket, error },
                }
            }
        }
    }

    /// The closing line of the text output.
    fn line(&self) -> String {
        match self {
            Daemon::Running(d) => format!("daemon: vipctl watch pid {}, up since {}", d.pid, d.started),
            Daemon::Busy { socket, error, .. } => format!("daemon: busy or not answering ({socket}: {error})"),
            Daemon::NotRunning { socket, error, .. } => format!("daemon: not running ({socket}: {error})"),
            Daemon::Unreachable { socket, error, .. } => format!("daemon: cannot be asked ({socket}: {error})"),
        }
    }

    /// Exit 1 (retry) when a daemon runs but did not say how it is.
    fn outcome(&self) -> Outcome<()> {
        match self {
            Daemon::Busy { socket, .. } => Err(Failure::transient(anyhow!(
                "the vipctl watch daemon at {socket} is busy or not answering; run `vipctl status` again in a moment"
            ))),
            _ => Ok(()),
        }
    }
}

/// Prints the status, as text or JSON. Reading needs no privilege.
pub async fn run(ctx: &Ctx, args: &Args) -> Outcome<()> {
    let config = ctx.config()?;
    let managed = config.managed();
    let nl = Netlink::open()?;
    let host = nl.snapshot().await?;
    // The daemon is asked at the same time as the sentinels: both are bounded, neither waits for the other.
    let daemon = control::ask(&config.watch.socket, &Request::Status, DAEMON_TIMEOUT);
    let views = futures::future::join_all(config.masters.values().map(|master| {
        let (host, managed) = (&host, &managed);
        let config = &config;
        async move {
            let vips = master
                .vips
                .iter()
                .map(|vip| {
                    let iface = interface_for(master, vip, host, managed);
                    let bound: Vec<String> = host
                        .bound(vip.addr)
                        .map(|a| format!("{}/{} dev {}", a.addr, a.prefix, host.name_of(a.index)))
                        .collect();
                    VipStatus {
                        vip: vip.to_string(),
                        interface: iface.as_ref().map(|(_, n)| n.clone()).ok(),
                        interface_error: iface.as_ref().err().map(ToString::to_string),
                        bound_here: !bound.is_empty(),
                        bound,
                    }
                })
                .collect();
            let sentinel = match ask_sentinels(config, master, all_of_them).await {
                None => None,
                Some(reports) => {
                    let w = policy::weigh(&reports, super::ONE_SHOT_FRESH);
                    let this_host = match w.master() {
                        Some(addr) => match resolve::resolve(&addr.host, RESOLVE_TIMEOUT).await {
                            Ok(ips) => match policy::locality(&addr.host, &ips, host, managed) {
                                Locality::Here => Some(true),
                                Locality::Elsewhere => Some(false),
                                Locality::Unknown(_) => None,
                            },
                            Err(_) => None,
                        },
                        None => None,
                    };
                    Some(SentinelView {
                        master: w.master().map(ToString::to_string),
                        this_host,
                        summary: w.summary(),
                        reachable: w.answered,
                        configured: w.configured,
                        answers: reports.iter().map(SentinelStatus::of).collect(),
                    })
                }
            };
            MasterView { name: master.name.clone(), vips, sentinel }
        }
    }));
    let (daemon, masters) = futures::join!(daemon, views);
    let daemon = Daemon::of(daemon, &config.watch.socket);
    if args.json {
        #[derive(Serialize)]
        struct All<'a> {
            masters: &'a [MasterView],
            daemon: &'a Daemon,
        }
        println!("{}", serde_json::to_string_pretty(&All { masters: &masters, daemon: &daemon }).unwrap_or_default());
        return daemon.outcome();
    }
    for m in &masters {
        println!("master {}", m.name);
        for v in &m.vips {
            let place = match (v.bound.is_empty(), &v.interface) {
                (false, _) => format!("bound here ({})", v.bound.join(", ")),
                (true, Some(i)) => format!("not bound here (would go on {i})"),
                (true, None) => {
                    format!("not bound here ({})", v.interface_error.as_deref().unwrap_or("no interface"))
                }
            };
            println!("  vip {:<24} {place}", v.vip);
        }
        match &m.sentinel {
            None => println!("  sentinel: none configured"),
            Some(s) => {
                let who = match s.this_host {
                    Some(true) => " — this host",
                    Some(false) => " — another host",
                    None => "",
                };
                println!("  sentinel: {}{who}", s.summary);
            }
        }
        if let Daemon::Running(d) = &daemon
            && let Some(d) = d.masters.iter().find(|d| d.name == m.name)
        {
            println!(
                "  daemon:   {} ({}); VIPs {}; {} transition(s), {} conflict(s){}",
                d.belief,
                d.summary.as_deref().unwrap_or("no answer yet"),
                if d.holding { "held" } else { "not held" },
                d.transitions,
                d.conflicts,
                d.last_change
                    .as_ref()
                    .map(|r| format!("; last change: {} ({})", r.decision.as_str(), r.actions.join("; ")))
                    .unwrap_or_default()
            );
            if let Some(cl) = &d.delivery {
                println!("  cloud:    {cl}");
            }
            if let Some(f) = &d.fence {
                println!("  fence:    {f}");
            }
            if let Some(e) = &d.last_error {
                println!("  daemon error: {e}");
            }
        }
    }
    println!("{}", daemon.line());
    daemon.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_running_is_said_only_when_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(2);
        let missing = dir.path().join("none.sock");
        let d = Daemon::of(control::ask(&missing, &Request::Status, t).await, &missing);
        assert!(d.line().starts_with("daemon: not running ("), "{d:?}");
        assert!(d.outcome().is_ok());

        // Over its caps, the daemon answers "busy": a reply without state.
        let d = Daemon::of(Ok(control::Reply::new(1, "the daemon is busy: …; try again")), &missing);
        assert!(d.line().starts_with("daemon: busy or not answering (") && d.line().ends_with("try again)"), "{d:?}");
        assert_eq!(d.outcome().unwrap_err().status(), 1);

        // A daemon that closes the connection without a word is busy or stuck, not gone.
        let silent = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
        std::thread::spawn(move || drop(listener.accept()));
        let d = Daemon::of(control::ask(&silent, &Request::Status, t).await, &silent);
        assert!(d.line().starts_with("daemon: busy or not answering (") && d.line().ends_with("try again)"), "{d:?}");
        assert_eq!(d.outcome().unwrap_err().status(), 1);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!((json["running"].as_bool(), json["busy"].as_bool()), (Some(true), Some(true)), "{json}");
    }
}
