//! `vipctl <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>`: what Sentinel runs
//! as its client-reconfig-script. Decides from who the master is *now*, not from `<role>`/`<state>`.

use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{Ctx, ask_sentinels, is_this_host, managed};
use crate::apply;
use crate::config::Config;
use crate::control::{self, Request};
use crate::decide::Want;
use crate::error::{Failure, Outcome};
use crate::logging;
use crate::lookup;
use crate::netlink::{Netlink, grant_hint};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::sentinel::Verdict;

/// The usage line Sentinel's argument list follows.
pub const USAGE: &str = "<master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>";

/// A host and port from the hook's arguments (IPv6 unbracketed or bracketed, or a host name).
pub type Endpoint = crate::config::HostPort;

/// Sentinel's seven arguments, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookArgs {
    /// Master name.
    pub master: String,
    /// `leader` or `observer` (logged only).
    pub role: String,
    /// `start` in Redis 7, `failover` in older documents (logged only).
    pub state: String,
    /// The old master.
    pub from: Endpoint,
    /// The new master.
    pub to: Endpoint,
}

impl HookArgs {
    /// Checks the argument list; the message says what is wrong with which argument.
    pub fn parse(args: &[String]) -> Result<HookArgs, String> {
        if args.len() != 7 {
            return Err(format!(
                "expected 7 arguments ({USAGE}), got {}: is this really Sentinel's client-reconfig-script call?",
                args.len()
            ));
        }
        let word = |i: usize, what: &str| -> Result<String, String> {
            let a = &args[i];
            if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("argument {} ({what}) {a:?} must be one word", i + 1));
            }
            Ok(a.clone())
        };
        let endpoint = |hi: usize, pi: usize, what: &str| -> Result<Endpoint, String> {
            let h = &args[hi];
            lookup::check_syntax(h).map_err(|_| {
                format!("argument {} ({what}-ip) {h:?} is neither an IP address nor a host name", hi + 1)
            })?;
            let host = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(h).to_string();
            let p = &args[pi];
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("argument {} ({what}-port) {p:?} is not a port number 1–65535", pi + 1))?;
            Ok(Endpoint { host, port })
        };
        Ok(HookArgs {
            master: word(0, "master-name")?,
            role: word(1, "role")?,
            state: word(2, "state")?,
            from: endpoint(3, 4, "from")?,
            to: endpoint(5, 6, "to")?,
        })
    }
}

/// The longest a hook may run. Sentinel kills it at 60 s and retries with the same arguments; a
/// hook that stops itself first can still log why and ask for that retry (exit 1).
const DEADLINE: Duration = Duration::from_secs(45);

/// Runs the hook; every outcome is logged as one decision line.
pub async fn run(ctx: &Ctx, raw: &[String]) -> Outcome<()> {
    let start = Instant::now();
    // A watchdog thread, because a blocking call (a name lookup) cannot be cancelled from async code.
    let watched = raw.to_vec();
    std::thread::spawn(move || {
        std::thread::sleep(DEADLINE);
        let line = format!(
            "hook args={watched:?} result=error exit=1 error=\"did not finish within {} s; exiting so that Sentinel retries\"",
            DEADLINE.as_secs()
        );
        logging::decision(&line, logging::decision_file(None).as_deref(), true);
        std::process::exit(1);
    });
    let mut log_file = logging::decision_file(None);
    let result = run_inner(ctx, raw, &mut log_file).await;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    let head = match HookArgs::parse(raw) {
        Ok(a) => format!("hook master={} role={} state={} from={} to={}", a.master, a.role, a.state, a.from, a.to),
        Err(_) => format!("hook args={raw:?}"),
    };
    match &result {
        Ok(line) => logging::decision(&format!("{head} {line} elapsed_ms={elapsed:.1}"), log_file.as_deref(), false),
        Err(f) => logging::decision(
            &format!("{head} result=error exit={} error=\"{f}\" elapsed_ms={elapsed:.1}", f.status()),
            log_file.as_deref(),
            true,
        ),
    }
    result.map(|_| ())
}

async fn run_inner(ctx: &Ctx, raw: &[String], log_file: &mut Option<std::path::PathBuf>) -> Outcome<String> {
    let args = HookArgs::parse(raw).map_err(|m| Failure::permanent(anyhow!(m)))?;
    let config = ctx.config()?;
    *log_file = logging::decision_file(config.log_file.as_deref());
    let master = config.master(&args.master).map_err(|m| Failure::permanent(anyhow!(m)))?;
    let managed = managed(&config);
    // Resolve the argument even when sentinels will be asked: a name that cannot resolve is a bad
    // argument (exit 2), and a DNS hiccup is worth a retry (exit 1).
    lookup::resolve(&args.to.host).map_err(|e| match e {
        lookup::LookupError::Transient(..) => Failure::transient(e),
        _ => Failure::permanent(anyhow!("argument 6 (to-ip): {e}")),
    })?;

    // Under a sandboxed sentinel (Debian's unit: no capabilities, no netlink or packet sockets) the
    // privileged work is the daemon's; this hook only tells it to look now.
    let caps = Caps::current();
    let privileged = caps.has(CAP_NET_ADMIN) && caps.has(CAP_NET_RAW);
    if !privileged && !ctx.dry_run {
        return delegate(&config, &args, raw).await;
    }

    let _lock = ctx.lock(&config, master)?;

    // Sentinel retries a failed hook for hours with the original arguments: ask who the master is
    // now, and act on that.
    let (target, source) = match ask_sentinels(&config, master).await {
        None => (args.to.host.clone(), "arguments".to_string()),
        Some(view) => match view.verdict() {
            Verdict::Master { addr, .. } => {
                let disagree = addr.host != args.to.host || addr.port != args.to.port;
                let note = if disagree {
                    format!(" DISAGREES with to={}, acting on sentinel", args.to)
                } else {
                    String::new()
                };
                (addr.host.clone(), format!("sentinel:{}{note}", view.summary()))
            }
            // Sentinels at one epoch naming different masters should not happen; acting on possibly
            // hours-old arguments then would be worse than waiting for the retry.
            Verdict::Conflict(_) => {
                return Err(Failure::transient(anyhow!(
                    "the sentinels disagree ({}); not acting, retry",
                    view.summary()
                )));
            }
            Verdict::NoAnswer => (args.to.host.clone(), format!("arguments (sentinels: {})", view.summary())),
        },
    };

    let nl = Netlink::open()?;
    let host = nl.snapshot().await?;
    let want = if is_this_host(&target, &host, &managed)? { Want::Hold } else { Want::Release };
    let report = apply::converge(&nl, master, want, &host, &managed, ctx.dry_run, apply::Rounds::Wait).await?;
    let mode = if ctx.dry_run { "dry-run " } else { "" };
    if ctx.dry_run {
        println!("would {want} for master `{}`: {}", master.name, report.summary());
    }
    let mut line = format!(
        "master_now={target} source=\"{source}\" decision={want} {mode}actions=\"{}\" frames={}",
        report.summary(),
        report.frames_sent
    );
    if !ctx.dry_run && report.actions.iter().any(crate::decide::Action::changes_addresses) {
        // After the move, bounded by its own timeout (at most 30 s, inside the hook's deadline).
        line.push_str(
            &crate::notify::run(master, want, &format!("hook role={} from={} to={}", args.role, args.from, args.to))
                .await
                .log_fragment(),
        );
    }
    if let Some(us) = report.first_frame_us {
        line.push_str(&format!(" first_frame_ms={:.2}", us as f64 / 1000.0));
    }
    if !report.warnings.is_empty() {
        // The VIP is in place but not every announcement went out: a retry re-announces.
        return Err(Failure::transient(anyhow!("{line}; announcement problems: {}", report.warnings.join("; "))));
    }
    Ok(format!("{line} result=ok"))
}

/// How long a delegated hook waits for the daemon: far below Sentinel's 60 s kill.
const DELEGATE_TIMEOUT: Duration = Duration::from_secs(20);

/// Hands the event to `vipctl watch` and returns its verdict; no answer is worth a retry (exit 1).
async fn delegate(config: &Config, args: &HookArgs, raw: &[String]) -> Outcome<String> {
    let socket = &config.watch.socket;
    let req = Request::Hook { master: args.master.clone(), args: raw.to_vec() };
    match control::ask(socket, &req, DELEGATE_TIMEOUT).await {
        Ok(reply) if reply.status == 0 => {
            Ok(format!("delegated to the daemon at {}: {} result=ok", socket.display(), reply.message))
        }
        Ok(reply) => {
            let e = anyhow!("delegated to the daemon at {}: {}", socket.display(), reply.message);
            Err(if reply.status == 1 { Failure::transient(e) } else { Failure::permanent(e) })
        }
        Err(e) => Err(Failure::transient(anyhow!(
            "this hook lacks CAP_NET_ADMIN/CAP_NET_RAW (a sandboxed sentinel?) and no vipctl watch daemon answered at {}: {e}; \
             start `vipctl watch`, or {}",
            socket.display(),
            grant_hint()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_sentinel_forms() {
        let a =
            HookArgs::parse(&args(&["mymaster", "leader", "start", "198.51.100.11", "6379", "198.51.100.12", "6379"]))
                .unwrap();
        assert_eq!(a.to.host, "198.51.100.12");
        let a = HookArgs::parse(&args(&["m", "observer", "failover", "2001:db8::11", "6379", "2001:db8::12", "6380"]))
            .unwrap();
        assert_eq!(a.to, Endpoint { host: "2001:db8::12".into(), port: 6380 });
        let a =
            HookArgs::parse(&args(&["m", "observer", "start", "redis-1.example", "6379", "redis-2.example", "6379"]))
                .unwrap();
        assert_eq!(a.from.host, "redis-1.example");
    }

    #[test]
    fn refuses_bad_lists() {
        let e = HookArgs::parse(&args(&["m", "leader", "start"])).unwrap_err();
        assert!(e.contains("expected 7 arguments"), "{e}");
        let e = HookArgs::parse(&args(&["m", "leader", "start", "198.51.100.11", "6379", "198.51.100.12", "70000"]))
            .unwrap_err();
        assert!(e.contains("argument 7") && e.contains("port"), "{e}");
        let e = HookArgs::parse(&args(&["m", "leader", "start", "198.51.100.11", "0", "198.51.100.12", "6379"]))
            .unwrap_err();
        assert!(e.contains("argument 5"), "{e}");
        let e = HookArgs::parse(&args(&["m", "leader", "start", "198.51.100.11", "6379", "not an ip!", "6379"]))
            .unwrap_err();
        assert!(e.contains("argument 6"), "{e}");
        let e = HookArgs::parse(&args(&["", "leader", "start", "198.51.100.11", "6379", "198.51.100.12", "6379"]))
            .unwrap_err();
        assert!(e.contains("argument 1"), "{e}");
    }
}
