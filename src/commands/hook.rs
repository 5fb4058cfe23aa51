//! `vipctl <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>`: what Sentinel runs
//! as its client-reconfig-script. Decides from who the master is *now*, not from `<role>`/`<state>`.

use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{Ctx, ask_sentinels, locality_of};
use crate::config::Config;
use crate::control::{self, Request};
use crate::error::{Failure, Outcome};
use crate::network::apply;
use crate::network::netlink::{Netlink, grant_hint};
use crate::network::plan::{Action, Want};
use crate::policy::{self, Act, Reason, Report, Weighed};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::record::{Actor, Change, Event, Record};
use crate::resolve;

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
            resolve::check_syntax(h).map_err(|_| {
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

/// Sentinel's client-reconfig-script call: `vipctl <master-name> <role> <state> <from-ip> <from-port>
/// <to-ip> <to-port>` (also accepted as `vipctl hook …`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
    #[arg(num_args = 0.., allow_hyphen_values = true, value_name = "ARG")]
    pub args: Vec<String>,
}

/// The longest a hook may run. Sentinel kills it at 60 s and retries with the same arguments; a
/// hook that stops itself first can still log why and ask for that retry (exit 1).
const DEADLINE: Duration = Duration::from_secs(45);

/// What the hook did, for its record.
struct Done {
    decision: Change,
    reason: Reason,
    sentinels: Option<String>,
    report: Option<apply::Report>,
    detail: Option<String>,
}

/// Runs the hook; every outcome is recorded as one decision record.
pub async fn run(ctx: &Ctx, args: &Args) -> Outcome<()> {
    let raw = &args.args;
    let start = Instant::now();
    let trigger = match HookArgs::parse(raw) {
        Ok(a) => format!("hook role={} state={} from={} to={}", a.role, a.state, a.from, a.to),
        Err(_) => format!("hook args={raw:?}"),
    };
    let master_name = raw.first().cloned().unwrap_or_default();
    // A watchdog thread, because a blocking call cannot always be cancelled from async code.
    let (watched_master, watched_trigger) = (master_name.clone(), trigger.clone());
    std::thread::spawn(move || {
        std::thread::sleep(DEADLINE);
        let mut r = Record::new(Event::Decision, Actor::Hook, &watched_master, Change::None, &Reason::ByHand)
            .failed(format!("did not finish within {} s; exiting so that Sentinel retries", DEADLINE.as_secs()));
        r.reason_code = "deadline".into();
        r.reason = r.error.clone().unwrap_or_default();
        r.trigger = Some(watched_trigger);
        r.exit = Some(1);
        r.emit();
        std::process::exit(1);
    });
    let result = run_inner(ctx, raw).await;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let record = |done: &Done| {
        let mut r = Record::new(Event::Decision, Actor::Hook, &master_name, done.decision, &done.reason);
        r.trigger = Some(trigger.clone());
        r.sentinels = done.sentinels.clone();
        r.detail = done.detail.clone();
        if let Some(rep) = &done.report {
            r.actions = rep.actions.iter().map(ToString::to_string).collect();
            r.frames = rep.frames_sent;
            r.first_frame_ms = rep.first_frame_us.map(|us| us as f64 / 1000.0);
        }
        r.elapsed_ms = elapsed_ms;
        r
    };
    match result {
        Ok(done) => {
            let mut r = record(&done);
            r.exit = Some(0);
            r.emit();
            Ok(())
        }
        Err((done, f)) => {
            let mut r = record(&done).failed(&f);
            r.exit = Some(f.status());
            r.emit();
            Err(f)
        }
    }
}

type Failed = (Done, Failure);

fn plain(f: Failure) -> Failed {
    (Done { decision: Change::None, reason: Reason::ByHand, sentinels: None, report: None, detail: None }, f)
}

async fn run_inner(ctx: &Ctx, raw: &[String]) -> Result<Done, Failed> {
    let args = HookArgs::parse(raw).map_err(|m| plain(Failure::permanent(anyhow!(m))))?;
    let config = ctx.config().map_err(plain)?;
    let master = config.master(&args.master).map_err(|m| plain(Failure::permanent(anyhow!(m))))?;
    let managed = config.managed();
    // A name that cannot resolve is a bad argument (exit 2), and a DNS hiccup is worth a retry
    // (exit 1); an IP address costs nothing here.
    let to_ips = resolve::resolve(&args.to.host, resolve::TIMEOUT).await.map_err(|e| {
        plain(match e {
            resolve::LookupError::Transient(..) => Failure::transient(e),
            _ => Failure::permanent(anyhow!("argument 6 (to-ip): {e}")),
        })
    })?;

    // Under a sandboxed sentinel (Debian's unit: no capabilities, no netlink or packet sockets) the
    // privileged work is the daemon's; this hook only tells it to look now.
    let caps = Caps::current();
    let privileged = caps.has(CAP_NET_ADMIN) && caps.has(CAP_NET_RAW);
    if !privileged && !ctx.dry_run {
        return delegate(&config, &args, raw).await;
    }

    let lock = ctx.lock(&config, master).await.map_err(plain)?;

    // Sentinel retries a failed hook for hours with the original arguments: ask who the master is
    // now, and act on that, as soon as the answers make the outcome certain.
    let enough = |reports: &[Report], all_in: bool| {
        policy::hook_ready(&policy::weigh(reports, super::ONE_SHOT_FRESH), all_in, &args.to)
    };
    let weighed = ask_sentinels(&config, master, enough).await.map(|r| policy::weigh(&r, super::ONE_SHOT_FRESH));
    let sentinels = weighed.as_ref().map(Weighed::summary);
    let fail = |reason: Reason, f: Failure| {
        (Done { decision: Change::None, reason, sentinels: sentinels.clone(), report: None, detail: None }, f)
    };
    let (target, basis) = policy::hook_target(weighed.as_ref(), &args.to).map_err(|r| refusal(r, &fail))?;
    let disagree = (target != args.to).then(|| format!("the sentinels name {target}, not the arguments' {}", args.to));

    let nl = Netlink::open().map_err(plain)?;
    let host = nl.snapshot().await.map_err(plain)?;
    // The arguments' master was resolved above; only another one needs a lookup.
    let locality = if target == args.to {
        policy::locality(&target.host, &to_ips, &host, &managed)
    } else {
        locality_of(&target, &host, &managed).await.map_err(|f| fail(Reason::ByHand, f))?
    };
    let decision = policy::hook(weighed.as_ref(), &target, &locality).map_err(|r| refusal(r, &fail))?;
    let reason = basis.unwrap_or(decision.reason);
    let want = match decision.act {
        Act::Hold => Want::Hold,
        _ => Want::Release,
    };
    let change = if want == Want::Hold { Change::Claim } else { Change::Release };
    let done = |report: Option<apply::Report>| Done {
        decision: change,
        reason: reason.clone(),
        sentinels: sentinels.clone(),
        report,
        detail: disagree.clone(),
    };
    let mut report = match apply::converge(
        &nl,
        master,
        want,
        &host,
        &managed,
        &apply::How { dry_run: ctx.dry_run, ..Default::default() },
    )
    .await
    {
        Ok(r) => r,
        Err(f) => return Err((done(None), f)),
    };
    if ctx.dry_run {
        println!("would {want} for master `{}`: {}", master.name, report.summary());
    }
    // The lock guards address changes only; a notify command must not hold up the next hook.
    drop(lock);
    let failure = report.failure.take();
    let mut done = done(Some(report));
    let changed = done.report.as_ref().is_some_and(|r| r.actions.iter().any(Action::changes_addresses));
    if !ctx.dry_run && changed {
        // After the move, bounded by its own timeout (at most 30 s, inside the hook's deadline).
        let outcome =
            crate::notify::run(master, want, &format!("hook role={} from={} to={}", args.role, args.from, args.to))
                .await;
        if outcome != crate::notify::Outcome::None {
            let note = outcome.to_string();
            done.detail = Some(done.detail.map_or(note.clone(), |d| format!("{d}; {note}")));
        }
    }
    if let Some(f) = failure {
        return Err((done, f));
    }
    let warnings = done.report.as_ref().map(|r| r.warnings.clone()).unwrap_or_default();
    if !warnings.is_empty() {
        // The VIP is in place but not every announcement went out: a retry re-announces.
        let f = Failure::transient(anyhow!("announcement problems: {}", warnings.join("; ")));
        return Err((done, f));
    }
    Ok(done)
}

/// A refusal as the hook's failure: exit 1 when a retry may help, else 2.
fn refusal(r: policy::Refusal, fail: &impl Fn(Reason, Failure) -> Failed) -> Failed {
    let e = anyhow!("{}", r.message);
    fail(r.reason, if r.retry { Failure::transient(e) } else { Failure::permanent(e) })
}

/// How long a delegated hook waits for the daemon: far below Sentinel's 60 s kill.
const DELEGATE_TIMEOUT: Duration = Duration::from_secs(20);

/// Hands the event to `vipctl watch` and returns its verdict; no answer is worth a retry (exit 1).
async fn delegate(config: &Config, args: &HookArgs, raw: &[String]) -> Result<Done, Failed> {
    let socket = &config.watch.socket;
    let req = Request::Hook { master: args.master.clone(), args: raw.to_vec() };
    let detail = |m: &str| Some(format!("delegated to the daemon at {}: {m}", socket.display()));
    let done = |m: &str| Done {
        decision: Change::None,
        reason: Reason::ByHand,
        sentinels: None,
        report: None,
        detail: detail(m),
    };
    match control::ask(socket, &req, DELEGATE_TIMEOUT).await {
        Ok(reply) if reply.status == 0 => Ok(done(&reply.message)),
        Ok(reply) => {
            let e = anyhow!("delegated to the daemon at {}: {}", socket.display(), reply.message);
            let f = if reply.status == 1 { Failure::transient(e) } else { Failure::permanent(e) };
            Err((done(&reply.message), f))
        }
        Err(e) => Err(plain(Failure::transient(anyhow!(
            "this hook lacks CAP_NET_ADMIN/CAP_NET_RAW (a sandboxed sentinel?) and no vipctl watch daemon answered at {}: {e}; \
             start `vipctl watch`, or {}",
            socket.display(),
            grant_hint()
        )))),
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
