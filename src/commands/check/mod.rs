//! `vipctl check` (alias `doctor`): checks everything that commonly breaks a setup, on the host it
//! runs on, and prints a fix for each failure. Changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;

mod report;

use super::{Ctx, all_of_them, ask_sentinels, locality_of};
use crate::bgp::{self, Session, Speaker};
use crate::config::{Config, Master, Mode};
use crate::control::{self, Request};
use crate::error::{Failure, Outcome};
use crate::network::announce::PacketSocket;
use crate::network::host::HostState;
use crate::network::netlink::{Netlink, grant_hint};
use crate::network::plan::interface_for;
use crate::policy::{self, Locality};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::sentinel::Answer;
use crate::sentinel::conf::{self as sentinel_conf, UnitSandbox};
use report::Checks;

/// Check everything that commonly breaks a setup, print a fix for each failure; change nothing.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// A sentinel.conf to check for the client-reconfig-script lines (repeatable); default:
    /// /etc/redis/sentinel.conf and /etc/valkey/sentinel.conf when present.
    #[arg(long = "sentinel-conf", value_name = "PATH")]
    pub sentinel_conf: Vec<PathBuf>,
    /// Where to look for the sentinel's systemd unit and its drop-ins (repeatable); default:
    /// /etc/systemd/system, /run/systemd/system, /usr/lib/systemd/system, /lib/systemd/system.
    #[arg(long = "unit-dir", value_name = "DIR")]
    pub unit_dir: Vec<PathBuf>,
    /// BIRD's control socket, for routed masters (default: /run/bird/bird.ctl when present).
    #[arg(long = "bird-socket", value_name = "PATH", conflicts_with = "frr_vty_dir")]
    pub bird_socket: Option<PathBuf>,
    /// The folder of FRR's vty sockets, for routed masters (default: /run/frr when bgpd runs).
    #[arg(long = "frr-vty-dir", value_name = "DIR")]
    pub frr_vty_dir: Option<PathBuf>,
}

/// Runs every check; exit 0 only when nothing failed.
pub async fn run(ctx: &Ctx, opts: &Args) -> Outcome<()> {
    let mut c = Checks::default();
    let result = checks(ctx, opts, &mut c).await;
    c.print(opts.json);
    result?;
    match c.failures() {
        0 => Ok(()),
        n => Err(Failure::permanent(anyhow!("{n} check(s) failed; each FAIL line above says how to fix it"))),
    }
}

async fn checks(ctx: &Ctx, opts: &Args, c: &mut Checks) -> Outcome<()> {
    let config = match ctx.config() {
        Ok(cfg) => {
            c.ok(format!("config {} is valid ({} master(s))", cfg.path.display(), cfg.masters.len()));
            cfg
        }
        Err(f) => {
            c.fail(f.to_string(), "correct the line named (README, \"Configuration\", lists every key)");
            return Ok(());
        }
    };

    let daemon = control::ask(&config.watch.socket, &Request::Status, Duration::from_secs(2)).await;
    let socket = config.watch.socket.display();
    let busy = |c: &mut Checks, why: &str| {
        c.warn(
            format!("the vipctl watch daemon on {socket} is busy or not answering: {why}"),
            Some(format!(
                "run `vipctl check` again; if it stays busy, see who holds its connections: `ss -xp | grep {socket}`"
            )),
        )
    };
    match &daemon {
        Ok(reply) if reply.state.is_some() => c.ok(format!("the vipctl watch daemon answers on {socket}")),
        Ok(reply) => busy(c, &reply.message),
        Err(e) => match control::NoReply::of(e) {
            control::NoReply::Busy => busy(c, &e.to_string()),
            control::NoReply::NotRunning => c.fail(
                format!("no vipctl watch daemon answers on {socket}: {e}"),
                "start it: `systemctl enable --now vipctl-watch` (it heals split brain and serves sandboxed hooks)",
            ),
            control::NoReply::Unreachable => c.fail(
                format!("cannot reach the vipctl watch daemon on {socket}: {e}"),
                "let this user reach the socket (the package makes /run/vipctl 0755 and the socket 0666), or fix \
                 `[watch] socket`",
            ),
        },
    }

    // Privileges of this process: what a hook run the same way would have.
    let caps = Caps::current();
    for (cap, name) in
        [(CAP_NET_ADMIN, "CAP_NET_ADMIN (add/remove addresses)"), (CAP_NET_RAW, "CAP_NET_RAW (send announcements)")]
    {
        if caps.has(cap) {
            c.ok(format!("has {name}"));
        } else if daemon.is_ok() {
            c.warn(format!("lacks {name}: hooks run like this hand their events to the daemon"), None);
        } else {
            c.fail(format!("lacks {name}, and no daemon answers to act for it"), grant_hint());
        }
    }
    if caps.has(CAP_NET_RAW) {
        match PacketSocket::open() {
            Ok(_) => c.ok("a packet socket can be opened"),
            Err(e) => {
                c.fail(format!("cannot open a packet socket: {e}"), crate::network::apply::packet_socket_hint(&e))
            }
        }
    }

    let nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(f) => {
            c.fail(f.to_string(), "run vipctl where netlink sockets are allowed");
            return Ok(());
        }
    };
    let host = nl.snapshot().await?;
    let managed = config.managed();
    for master in config.masters.values() {
        check_interfaces(c, master, &host, &managed);
        check_sentinels(c, &config, master, &host, &managed).await;
        check_cloud(c, master).await;
    }
    check_speaker(c, &config, &host, opts).await;

    check_sentinel_confs(c, &config, opts);
    check_units(c, opts);
    check_hook_users(c, &config, opts);
    Ok(())
}

fn unit_dirs(opts: &Args) -> Vec<PathBuf> {
    if opts.unit_dir.is_empty() {
        sentinel_conf::UNIT_DIRS.iter().map(PathBuf::from).collect()
    } else {
        opts.unit_dir.clone()
    }
}

/// A sentinel unit's user that the daemon does not serve has every hook refused.
fn check_hook_users(c: &mut Checks, config: &Config, opts: &Args) {
    let dirs = unit_dirs(opts);
    let units = sentinel_conf::sentinel_unit_users(&dirs);
    let Some(listed) = &config.watch.hook_users else {
        for unit in sentinel_conf::SENTINEL_UNITS {
            let Some(s) = UnitSandbox::load(&dirs, unit) else { continue };
            let fix = format!("set [watch] hook_users in {} to the user sentinel runs as", config.path.display());
            if s.dynamic_user && s.user.is_none() {
                c.fail(
                    format!(
                        "{unit} runs sentinel as a dynamic user, which no list can name: its hooks will be refused"
                    ),
                    fix,
                );
            } else if !s.trusted {
                c.fail(
                    format!("{unit} (or a drop-in of it) is not root's alone: the daemon does not take its User="),
                    fix,
                );
            }
        }
        for (unit, user) in &units {
            if crate::privilege::uid_of(user).is_some() {
                c.ok(format!("[watch] hook_users is not set: the daemon serves `{user}`, the user of {unit}"));
            } else {
                c.warn(
                    format!(
                        "{unit} runs sentinel as `{user}`, which does not exist on this host: the unit cannot start"
                    ),
                    Some(format!("create the user `{user}` (the server's package does), or fix User= in {unit}")),
                );
            }
        }
        return;
    };
    for (unit, user) in &units {
        let uid = crate::privilege::uid_of(user);
        let served = listed.iter().any(|u| u == user || (uid.is_some() && crate::privilege::uid_of(u) == uid));
        if served {
            c.ok(format!("[watch] hook_users lists `{user}`, the user of {unit}"));
        } else {
            c.fail(
                format!(
                    "{unit} runs sentinel as `{user}`, which [watch] hook_users ({}) does not list: the daemon will refuse its hooks",
                    listed.join(", ")
                ),
                format!(
                    "add \"{user}\" to hook_users in {}, or remove the hook_users line to serve the sentinel units' users, then restart vipctl-watch",
                    config.path.display()
                ),
            );
        }
    }
}

fn check_interfaces(c: &mut Checks, master: &crate::config::Master, host: &HostState, managed: &[std::net::IpAddr]) {
    for vip in &master.vips {
        match interface_for(master, vip, host, managed) {
            Ok((index, name)) => {
                let iface = host.interface(index);
                if iface.is_some_and(|i| !i.up) {
                    c.fail(
                        format!("master `{}`: interface {name} for VIP {vip} is down", master.name),
                        format!("`ip link set {name} up`"),
                    );
                } else if iface.and_then(|i| i.mac).is_none() && master.announce.rounds > 0 {
                    c.fail(
                        format!(
                            "master `{}`: interface {name} has no Ethernet address, so VIP {vip} cannot be announced",
                            master.name
                        ),
                        "set `rounds = 0` under the master's [announce] if the network needs no announcements",
                    );
                } else {
                    c.ok(format!("master `{}`: VIP {vip} goes on {name}", master.name));
                }
                let in_subnet = host
                    .addresses
                    .iter()
                    .any(|a| a.index == index && !managed.contains(&a.addr) && vip.subnet_contains(a.addr));
                if !in_subnet && master.mode == crate::config::Mode::L2 {
                    c.fail(
                        format!("master `{}`: {name} has no address of its own in the subnet of VIP {vip}", master.name),
                        "give the VIP the prefix of the subnet it lives in, or bind it on the interface that is in that subnet",
                    );
                }
            }
            Err(e) => c.fail(e.to_string(), "set `interface` for the master in the config"),
        }
    }
}

async fn check_sentinels(
    c: &mut Checks,
    config: &Config,
    master: &crate::config::Master,
    host: &HostState,
    managed: &[std::net::IpAddr],
) {
    let Some(reports) = ask_sentinels(config, master, all_of_them).await else {
        c.warn(
            format!(
                "master `{}`: no sentinels configured; hooks trust their (possibly hours-old) arguments",
                master.name
            ),
            Some("list the sentinels in `sentinels`".into()),
        );
        return;
    };
    if config.watch.fail_fast {
        check_tilt(c, config, &reports).await;
    }
    for r in &reports {
        let s = &r.sentinel;
        match (&r.last, &r.down) {
            (_, Some(_)) | (None, None) => c.fail(
                format!("sentinel {s} unreachable: {}", r.down.as_deref().unwrap_or("no answer")),
                "check that it runs, the address and port, [sentinel_auth] and [sentinel_tls]",
            ),
            (Some((Answer::Unknown, _)), None) => c.fail(
                format!("sentinel {s} does not monitor `{}`", master.name),
                "make the master name in the config match `sentinel monitor` in sentinel.conf",
            ),
            (Some((Answer::Master { .. }, _)), None) => c.ok(format!("sentinel {s} monitors `{}`", master.name)),
        }
    }
    let weighed = policy::weigh(&reports, super::ONE_SHOT_FRESH);
    if let Some(addr) = weighed.master() {
        let here = matches!(locality_of(addr, host, managed).await, Ok(Locality::Here));
        let bound_here = master.vips.iter().any(|v| host.bound(v.addr).next().is_some());
        match (here, bound_here) {
            (true, false) => c.fail(
                format!("master `{}` runs here ({addr}) but its VIPs are not bound", master.name),
                format!("`vipctl claim {}`, or start vipctl watch", master.name),
            ),
            (false, true) => c.fail(
                format!("VIPs of `{}` are bound here but the master is {addr}", master.name),
                format!("`vipctl release {}`, or start vipctl watch", master.name),
            ),
            _ => c.ok(format!(
                "master `{}` is {addr}; its VIPs are {} here, as they should be",
                master.name,
                if here { "bound" } else { "not bound" }
            )),
        }
    }
}

/// Fail-fast reads TILT with `INFO sentinel` before it asks a sentinel for a failover: the ACL
/// user must be allowed it, and a sentinel in TILT now means a host that stalls.
async fn check_tilt(c: &mut Checks, config: &Config, reports: &[crate::sentinel::Report]) {
    let Ok(access) = crate::access::Access::sentinels(config) else { return };
    for r in reports.iter().filter(|r| r.down.is_none() && r.last.is_some()) {
        let s = &r.sentinel;
        match crate::sentinel::tilt::ask(s, &access, config.sentinel_timeout).await {
            Ok(crate::sentinel::tilt::Tilt::No) => {}
            Ok(t) => c.warn(
                format!("sentinel {s}: {t}"),
                Some("its host stalled (a VM pause, a slow disk, a starved CPU): find out why".into()),
            ),
            Err(e) => c.warn(
                format!("sentinel {s} refuses INFO sentinel ({e}): fail-fast cannot see TILT and asks it blind"),
                Some("allow the sentinel ACL user `+info`".into()),
            ),
        }
    }
}

/// Routed masters: a BGP speaker runs, its sessions are up, and it announces exactly the VIPs
/// bound here.
async fn check_speaker(c: &mut Checks, config: &Config, host: &HostState, opts: &Args) {
    let routed: Vec<&Master> = config.masters.values().filter(|m| m.mode == Mode::Routed).collect();
    if routed.is_empty() {
        return;
    }
    const EXAMPLES: &str = "/usr/share/doc/vipctl/examples/bird2-host.conf or frr-host.conf (README, \"Routed VIPs\")";
    let Some(speaker) = Speaker::find(opts.bird_socket.as_deref(), opts.frr_vty_dir.as_deref()) else {
        c.fail(
            format!(
                "routed masters need a BGP speaker on this host, and none was found (no BIRD at {}, no FRR bgpd in {})",
                bgp::BIRD_SOCKET,
                bgp::FRR_VTY_DIR
            ),
            format!("run BIRD 2 or FRR configured as in {EXAMPLES}, or name it with --bird-socket / --frr-vty-dir"),
        );
        return;
    };
    let who = speaker.describe();
    let sessions = match speaker.sessions().await {
        Ok(s) => s,
        Err(e) => {
            c.fail(
                format!("cannot ask {who} for its BGP sessions: {e:#}"),
                "start it, and run check as a user that may use its CLI (root, or a member of group bird / frrvty)",
            );
            return;
        }
    };
    if sessions.is_empty() {
        c.fail(format!("{who} has no BGP session"), format!("configure one to the router as in {EXAMPLES}"));
    }
    for s in &sessions {
        // FRR lists a peer once per address family.
        let name = match s.family {
            Some(bgp::Family::V4) => format!("{} (IPv4)", s.name),
            Some(bgp::Family::V6) => format!("{} (IPv6)", s.name),
            None => s.name.clone(),
        };
        if s.established {
            c.ok(format!("{who}: BGP session {name} is established"));
        } else {
            c.fail(
                format!("{who}: BGP session {name} is not established ({})", s.state),
                format!(
                    "see `{}`; the neighbour address and AS must match on both sides, and TCP port 179 must be open",
                    speaker.show_sessions_command()
                ),
            );
        }
    }
    let up: Vec<&Session> = sessions.iter().filter(|s| s.established).collect();
    for master in routed {
        let iface = master.interface.as_deref().unwrap_or("lo");
        for vip in &master.vips {
            let route = bgp::host_route(vip);
            let bound = host.bound(vip.addr).next().is_some();
            let mut on = Vec::new();
            for s in up.iter().filter(|s| bgp::carries(s, vip)) {
                match speaker.exports(s, vip).await {
                    Ok(true) => on.push(s.name.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        // Not knowing is no "not announced"; and one speaker that does not answer
                        // would not answer the next question either (each may take 5 s).
                        c.fail(
                            format!("cannot tell whether {who} announces VIP {route} to {}: {e:#}", s.name),
                            format!(
                                "run `{}` yourself; check that the speaker answers and that this user may use its CLI",
                                speaker.show_sessions_command()
                            ),
                        );
                        return;
                    }
                }
            }
            let m = &master.name;
            let family = if vip.addr.is_ipv4() { "IPv4" } else { "IPv6" };
            match (bound, on.is_empty()) {
                (true, false) => c.ok(format!("master `{m}`: VIP {route} is bound here and announced to {}", on.join(", "))),
                (false, true) => c.ok(format!("master `{m}`: VIP {route} is not bound here and not announced from here")),
                (true, true) if !up.iter().any(|s| bgp::carries(s, vip)) => c.fail(
                    format!("master `{m}`: VIP {route} is bound here, but no established BGP session carries {family}"),
                    "bring up the sessions named above",
                ),
                (true, true) => c.fail(
                    format!("master `{m}`: VIP {route} is bound here, but {who} announces it on no established session"),
                    format!(
                        "the speaker must take the VIPs from interface {iface} (BIRD: `protocol direct`, FRR: `redistribute connected`) \
                         and export them to the router on a session with an {family} channel, as in {EXAMPLES}"
                    ),
                ),
                (false, false) => c.fail(
                    format!(
                        "master `{m}`: {who} announces VIP {route} to {} though it is not bound here: the router may send clients to a host that is not the master",
                        on.join(", ")
                    ),
                    format!(
                        "announce the VIPs only as connected routes of interface {iface} (no static route, no other source), as in {EXAMPLES}"
                    ),
                ),
            }
        }
    }
}

/// The provider API's read-only checks (metadata, credentials, permissions, the holder).
async fn check_cloud(c: &mut Checks, master: &crate::config::Master) {
    let api = match crate::cloud::Api::of(master) {
        Ok(Some(api)) => api,
        Ok(None) => return,
        Err(e) => return c.fail(e, "fix [masters.NAME.cloud]"),
    };
    for (what, verdict) in api.doctor().await {
        match verdict {
            Ok(v) => c.ok(format!("master `{}` cloud: {what}: {v}", master.name)),
            Err(e) => c.fail(
                format!("master `{}` cloud: {what}: {e}", master.name),
                "see README, \"Clouds\", for the permissions and metadata each provider needs",
            ),
        }
    }
}

/// The sentinel.conf files to read: those named, or the usual ones that exist.
fn sentinel_conf_paths(opts: &Args) -> Vec<PathBuf> {
    if !opts.sentinel_conf.is_empty() {
        return opts.sentinel_conf.clone();
    }
    // A file this user may not even look at is still there: reading it then says so. The file of a
    // masked unit (both servers installed, one masked) is no running sentinel's.
    let dirs = unit_dirs(opts);
    [("/etc/redis/sentinel.conf", "redis-sentinel.service"), ("/etc/valkey/sentinel.conf", "valkey-sentinel.service")]
        .into_iter()
        .filter(|(_, unit)| !sentinel_conf::unit_masked(&dirs, unit))
        .map(|(p, _)| PathBuf::from(p))
        .filter(|p| match std::fs::metadata(p) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
        })
        .collect()
}

fn check_sentinel_confs(c: &mut Checks, config: &Config, opts: &Args) {
    let paths = sentinel_conf_paths(opts);
    if paths.is_empty() {
        c.warn(
            "no local sentinel.conf found (looked in /etc/redis and /etc/valkey)",
            Some("pass --sentinel-conf PATH".into()),
        );
        return;
    }
    let exe = std::env::current_exe().ok();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                c.fail(
                    format!("cannot read {}: {e}", path.display()),
                    "run check as a user that can read it (e.g. root or redis)",
                );
                continue;
            }
        };
        let conf = sentinel_conf::parse(&text);
        for master in config.masters.keys() {
            if !conf.monitors.contains(master) {
                c.warn(format!("{} does not monitor `{master}`", path.display()), None);
                continue;
            }
            match conf.scripts.get(master) {
                None => c.fail(
                    format!("{}: no client-reconfig-script for `{master}`", path.display()),
                    format!("add `sentinel client-reconfig-script {master} {}`", exe_display(exe.as_deref())),
                ),
                Some(script) if !is_vipctl(script, exe.as_deref()) => c.fail(
                    format!("{}: the client-reconfig-script of `{master}` is {script}, not vipctl", path.display()),
                    format!("set `sentinel client-reconfig-script {master} {}`", exe_display(exe.as_deref())),
                ),
                Some(script) => c.ok(format!("{}: `{master}` runs {script} as its hook", path.display())),
            }
        }
    }
}

fn exe_display(exe: Option<&Path>) -> String {
    exe.map(|p| p.display().to_string()).unwrap_or_else(|| "/usr/bin/vipctl".into())
}

/// True when `script` is this very binary (same file), or at least an executable named vipctl.
fn is_vipctl(script: &str, exe: Option<&Path>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(script) else { return false };
    if let Some(exe) = exe
        && let Ok(me) = std::fs::metadata(exe)
        && me.ino() == meta.ino()
        && me.dev() == meta.dev()
    {
        return true;
    }
    Path::new(script).file_name().is_some_and(|n| n == "vipctl") && meta.mode() & 0o111 != 0
}

fn check_units(c: &mut Checks, opts: &Args) {
    let dirs = unit_dirs(opts);
    let exe = std::env::current_exe().ok();
    let hook = exe_display(exe.as_deref());
    let mut found = false;
    for unit in sentinel_conf::SENTINEL_UNITS {
        let Some(sandbox) = UnitSandbox::load(&dirs, unit) else { continue };
        found = true;
        if sandbox.may_exec(Path::new(&hook)) {
            c.ok(format!("{unit} lets sentinel execute {hook}"));
        } else {
            c.fail(
                format!("{unit} forbids executing {hook} (NoExecPaths= without a matching ExecPaths=): sentinel will refuse the hook"),
                format!(
                    "install the drop-in /usr/lib/systemd/system/{unit}.d/vipctl.conf with `[Service]` and `ExecPaths={}/` (the folder, \
                     not the file: an upgrade replaces the file; the .deb ships it), then `systemctl daemon-reload` and restart sentinel",
                    Path::new(&hook).parent().map_or("/usr/libexec/vipctl".into(), |p| p.display().to_string())
                ),
            );
        }
        if !sandbox.allows_privileged_hook() {
            c.ok(format!("{unit} gives hooks no netlink/packet sockets or capabilities: they will hand their events to vipctl watch"));
        }
    }
    if !found {
        c.warn("no redis-sentinel.service or valkey-sentinel.service unit found; skipped the sandbox check", None);
    }
}
