//! `vipctl check`: validates the config, the interfaces and the privileges without changing anything.

use anyhow::anyhow;

use super::{Ctx, ask_sentinels, is_this_host, managed};
use crate::announce::PacketSocket;
use crate::decide::interface_for;
use crate::error::{Failure, Outcome};
use crate::netlink::{Netlink, grant_hint};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};
use crate::sentinel::Verdict;

struct Checks {
    failures: usize,
}

impl Checks {
    fn ok(&self, what: impl AsRef<str>) {
        println!("ok    {}", what.as_ref());
    }
    fn warn(&self, what: impl AsRef<str>) {
        println!("warn  {}", what.as_ref());
    }
    fn fail(&mut self, what: impl AsRef<str>) {
        self.failures += 1;
        println!("FAIL  {}", what.as_ref());
    }
}

/// What `check` looks at beyond the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--json`.
    pub json: bool,
    /// sentinel.conf files to inspect.
    pub sentinel_conf: Vec<std::path::PathBuf>,
    /// systemd unit folders to inspect.
    pub unit_dir: Vec<std::path::PathBuf>,
}

/// Runs every check, prints one line each; exit 0 only when nothing failed.
pub async fn run(ctx: &Ctx, _opts: &Options) -> Outcome<()> {
    let mut c = Checks { failures: 0 };
    let config = match ctx.config() {
        Ok(cfg) => {
            c.ok(format!("config {} is valid ({} master(s))", cfg.path.display(), cfg.masters.len()));
            cfg
        }
        Err(f) => {
            c.fail(f.to_string());
            return Err(Failure::permanent(anyhow!("the config is not valid")));
        }
    };

    let caps = Caps::current();
    for (cap, name) in
        [(CAP_NET_ADMIN, "CAP_NET_ADMIN (add/remove addresses)"), (CAP_NET_RAW, "CAP_NET_RAW (send announcements)")]
    {
        if caps.has(cap) {
            c.ok(format!("has {name}"));
        } else {
            c.fail(format!("missing {name}: {}", grant_hint()));
        }
    }
    match PacketSocket::open() {
        Ok(_) => c.ok("a packet socket can be opened"),
        Err(e) => c.fail(format!("cannot open a packet socket: {e}; {}", crate::apply::packet_socket_hint(&e))),
    }
    let nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(f) => {
            c.fail(f.to_string());
            return Err(Failure::permanent(anyhow!("{} check(s) failed", c.failures)));
        }
    };
    let host = nl.snapshot().await?;
    let managed = managed(&config);

    for master in config.masters.values() {
        for vip in &master.vips {
            match interface_for(master, vip, &host, &managed) {
                Ok((index, name)) => {
                    let iface = host.interface(index);
                    if iface.is_some_and(|i| !i.up) {
                        c.fail(format!(
                            "master `{}`: interface {name} for VIP {vip} is down: `ip link set {name} up`",
                            master.name
                        ));
                    } else if iface.and_then(|i| i.mac).is_none() {
                        c.fail(format!(
                            "master `{}`: interface {name} has no Ethernet address, so VIP {vip} cannot be announced",
                            master.name
                        ));
                    } else {
                        c.ok(format!("master `{}`: VIP {vip} goes on {name}", master.name));
                    }
                    let in_subnet = host
                        .addresses
                        .iter()
                        .any(|a| a.index == index && !managed.contains(&a.addr) && vip.subnet_contains(a.addr));
                    if !in_subnet {
                        c.warn(format!("master `{}`: {name} has no address of its own in the subnet of VIP {vip}; clients may not reach it", master.name));
                    }
                }
                Err(e) => c.fail(e.to_string()),
            }
        }
        let bound_here = master.vips.iter().any(|v| host.bound(v.addr).next().is_some());
        match ask_sentinels(&config, master).await {
            None => c.warn(format!("master `{}`: no sentinels configured; hooks trust their arguments, and retried hooks may act on stale ones", master.name)),
            Some(view) => {
                for (s, a) in &view.answers {
                    match a {
                        crate::sentinel::Answer::Unreachable(e) => c.warn(format!("sentinel {s} unreachable: {e}")),
                        crate::sentinel::Answer::Unknown => c.fail(format!("sentinel {s} does not monitor `{}`: check the name in sentinel.conf", master.name)),
                        crate::sentinel::Answer::Master { .. } => c.ok(format!("sentinel {s} knows `{}`", master.name)),
                    }
                }
                if let Verdict::Master { addr, .. } = view.verdict() {
                    let here = is_this_host(&addr.host, &host, &managed).unwrap_or(false);
                    match (here, bound_here) {
                        (true, false) => c.warn(format!("master `{}` runs here ({addr}) but its VIPs are not bound: `vipctl claim {}`", master.name, master.name)),
                        (false, true) => c.warn(format!("VIPs of `{}` are bound here but the master is {addr}: `vipctl release {}`", master.name, master.name)),
                        _ => c.ok(format!("master `{}` is {addr}; VIPs {} here, as they should be", master.name, if here { "bound" } else { "not bound" })),
                    }
                }
            }
        }
    }
    if c.failures == 0 { Ok(()) } else { Err(Failure::permanent(anyhow!("{} check(s) failed", c.failures))) }
}
