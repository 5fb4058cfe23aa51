//! Carries out a plan: the I/O shell around [`crate::decide::plan`]. Privileges are checked and the
//! packet socket opened before the first address changes, so a run that cannot finish does not start.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::anyhow;

use crate::announce::{self, PacketSocket, Schedule, Target};
use crate::config::Master;
use crate::decide::{self, Action, Want};
use crate::error::{Failure, Outcome};
use crate::host::HostState;
use crate::netlink::{Netlink, grant_hint};
use crate::privilege::{CAP_NET_ADMIN, CAP_NET_RAW, Caps};

/// What a converge run did.
#[derive(Debug, Default)]
pub struct Report {
    /// The planned actions, in order (also when `dry_run`).
    pub actions: Vec<Action>,
    /// Frames sent by the announcement.
    pub frames_sent: u32,
    /// Microseconds from the start of the run to the first frame on the wire.
    pub first_frame_us: Option<u128>,
    /// Problems that did not stop the run (e.g. a frame that could not be sent).
    pub warnings: Vec<String>,
}

impl Report {
    /// A one-line summary of the actions, e.g. `add 198.51.100.100/24 dev eth0; announce …`.
    pub fn summary(&self) -> String {
        if self.actions.is_empty() {
            return "nothing to do".to_string();
        }
        self.actions.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

/// Whether `converge` waits for every announcement round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounds {
    /// Wait for all rounds (a hook must finish its work before it exits).
    Wait,
    /// Send the first round, leave the rest to a background task (a daemon must not stall its
    /// loop for the announce spacing while other masters or events wait).
    Background,
}

/// Plans and, unless `dry_run`, applies `want` for `master` on this host.
pub async fn converge(
    nl: &Netlink,
    master: &Master,
    want: Want,
    host: &HostState,
    managed: &[std::net::IpAddr],
    dry_run: bool,
    rounds: Rounds,
) -> Outcome<Report> {
    let start = Instant::now();
    let actions = decide::plan(master, want, host, managed).map_err(Failure::permanent)?;
    let mut report = Report { actions, ..Report::default() };
    if dry_run || report.actions.is_empty() {
        return Ok(report);
    }

    let changes = report.actions.iter().any(Action::changes_addresses);
    let announces = master.announce.rounds > 0 && report.actions.iter().any(|a| matches!(a, Action::Announce { .. }));
    let caps = Caps::current();
    if changes && !caps.has(CAP_NET_ADMIN) {
        return Err(Failure::permanent(anyhow!(
            "missing CAP_NET_ADMIN, needed to change addresses for master `{}`: {}",
            master.name,
            grant_hint()
        )));
    }
    let socket = if announces {
        if !caps.has(CAP_NET_RAW) {
            return Err(Failure::permanent(anyhow!(
                "missing CAP_NET_RAW, needed to announce the VIPs of master `{}`: {}",
                master.name,
                grant_hint()
            )));
        }
        Some(PacketSocket::open().map_err(|e| {
            Failure::permanent(anyhow!(
                "cannot open a packet socket to announce master `{}`: {e}; {}",
                master.name,
                packet_socket_hint(&e)
            ))
        })?)
    } else {
        None
    };

    // Address changes first. On a failure, stop changing but still announce what is bound: a VIP
    // that is up but unannounced is the worst of both (clients keep the old MAC).
    let mut failure = None;
    let mut bound_ok: Vec<std::net::IpAddr> = Vec::new();
    for action in &report.actions {
        if failure.is_some() {
            break;
        }
        let res = match action {
            Action::Remove { vip, prefix, index, ifname, takes_along } => {
                if takes_along.is_empty() {
                    nl.remove(vip, *prefix, *index, ifname).await
                } else {
                    // The VIP is the primary of its subnet: without promotion the kernel would delete
                    // these host addresses with it, and vipctl never touches what it does not manage.
                    match nl.ensure_promote_secondaries(ifname, vip, takes_along) {
                        Ok(()) => nl.remove(vip, *prefix, *index, ifname).await,
                        Err(f) => Err(f),
                    }
                }
            }
            Action::Add { vip, index, ifname } => {
                let r = nl.add(vip, *index, ifname, master.label.as_deref()).await;
                if r.is_ok() {
                    bound_ok.push(vip.addr);
                }
                r
            }
            Action::Announce { .. } => Ok(()),
        };
        if let Err(f) = res {
            failure = Some(f);
        }
    }
    let mut targets: BTreeMap<u32, Target> = BTreeMap::new();
    for action in &report.actions {
        let Action::Announce { vip, index, ifname } = action else { continue };
        let added_now = report.actions.iter().any(|a| matches!(a, Action::Add { vip: v, .. } if v == vip));
        if failure.is_some() && added_now && !bound_ok.contains(&vip.addr) {
            continue; // never bound: nothing to announce
        }
        let iface = host.interface(*index);
        let Some(mac) = iface.and_then(|i| i.mac) else {
            // Not Ethernet-like (tun, ppp): binding is all there is to do; retrying would not help.
            tracing::warn!(
                "{ifname} has no Ethernet address: VIP {} bound but not announced (set announce rounds = 0 to silence)",
                vip.addr
            );
            continue;
        };
        if iface.is_some_and(|i| !i.up) {
            report
                .warnings
                .push(format!("{ifname} is down: VIP {} bound, announcements fail until it is up", vip.addr));
        }
        targets
            .entry(*index)
            .or_insert_with(|| Target {
                ifindex: *index,
                ifname: ifname.clone(),
                mac,
                link_local: host.link_local(*index),
                vips: Vec::new(),
            })
            .vips
            .push(vip.addr);
    }
    if let Some(socket) = socket {
        let socket = std::sync::Arc::new(socket);
        let total = master.announce.rounds;
        let interval = master.announce.interval;
        let now = if rounds == Rounds::Background { total.min(1) } else { total };
        let schedule = Schedule { rounds: now, interval };
        let reports =
            futures::future::join_all(targets.values().map(|t| announce::announce(&socket, t, schedule))).await;
        if total > now {
            let later: Vec<Target> = targets.values().cloned().collect();
            let rest = Schedule { rounds: total - now, interval };
            let master_name = master.name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(interval).await;
                for t in &later {
                    let r = announce::announce(&socket, t, rest).await;
                    for e in r.errors {
                        tracing::warn!("master `{master_name}`: later announcement round: {e}");
                    }
                }
            });
        }
        for r in reports {
            report.frames_sent += r.frames_sent;
            if let Some(t) = r.first_frame_at {
                let us = t.saturating_duration_since(start).as_micros();
                report.first_frame_us = Some(report.first_frame_us.map_or(us, |u| u.min(us)));
            }
            report.warnings.extend(r.errors);
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(report),
    }
}

/// What to do when a packet socket cannot be opened.
pub fn packet_socket_hint(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        "packet sockets are forbidden here (a systemd sandbox with RestrictAddressFamilies= without AF_PACKET?)"
            .to_string()
    } else {
        grant_hint()
    }
}
