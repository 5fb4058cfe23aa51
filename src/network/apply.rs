//! Carries out a plan: the I/O shell around [`crate::network::plan::plan`]. Privileges are checked
//! and the packet socket opened before the first address changes, so a run that cannot finish does
//! not start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;

use crate::config::Master;
use crate::error::{Failure, Outcome};
use crate::network::announce::{self, PacketSocket, Schedule, Target};
use crate::network::host::HostState;
use crate::network::netlink::{Netlink, grant_hint};
use crate::network::plan::{self, Action, Want};
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
    /// The announcement rounds still to come ([`Rounds::Background`]); abort it before the VIPs
    /// are released, so that no frame goes out for an address this host no longer holds.
    pub later: Option<tokio::task::AbortHandle>,
    /// Address changes that failed (every other VIP was still tried, and what is bound announced).
    pub failure: Option<Failure>,
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

/// How `converge` runs.
#[derive(Debug, Clone, Default)]
pub struct How {
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Whether to wait for every announcement round.
    pub rounds: Rounds,
    /// A packet socket opened beforehand (the daemon keeps one); `None`: open one when needed.
    pub socket: Option<Arc<PacketSocket>>,
}

/// Whether `converge` waits for every announcement round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rounds {
    /// Wait for all rounds (a hook must finish its work before it exits).
    #[default]
    Wait,
    /// Send the first round, leave the rest to a background task (a daemon must not stall its
    /// loop for the announce spacing while other masters or events wait).
    Background,
}

/// Plans and, unless `how.dry_run`, applies `want` for `master` on this host. An `Err` means nothing was
/// changed (no plan, no privilege); failed changes are in [`Report::failure`].
pub async fn converge(
    nl: &Netlink,
    master: &Master,
    want: Want,
    host: &HostState,
    managed: &[std::net::IpAddr],
    how: &How,
) -> Outcome<Report> {
    let start = Instant::now();
    let rounds = how.rounds;
    let actions = plan::plan(master, want, host, managed).map_err(Failure::permanent)?;
    let mut report = Report { actions, ..Report::default() };
    if how.dry_run || report.actions.is_empty() {
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
        match &how.socket {
            Some(s) => Some(s.clone()),
            None => Some(Arc::new(PacketSocket::open().map_err(|e| {
                Failure::permanent(anyhow!(
                    "cannot open a packet socket to announce master `{}`: {e}; {}",
                    master.name,
                    packet_socket_hint(&e)
                ))
            })?)),
        }
    } else {
        None
    };

    // Address changes first. Every VIP is tried even when another fails: a release that stops half
    // way leaves a VIP on two hosts, the worst outcome. What is bound gets announced even after a
    // failure: a VIP that is up but unannounced is the worst of both (clients keep the old MAC).
    let mut failures: Vec<Failure> = Vec::new();
    let mut failed_vips: Vec<std::net::IpAddr> = Vec::new();
    for action in &report.actions {
        let res = match action {
            Action::Remove { vip, .. } | Action::Add { vip, .. } if failed_vips.contains(&vip.addr) => continue,
            Action::Remove { vip, prefix, index, ifname, takes_along } => {
                if takes_along.is_empty() {
                    nl.remove(vip, *prefix, *index, ifname).await
                } else {
                    // The VIP is the primary of its subnet: without promotion the kernel would delete
                    // these host addresses with it, and vipctl never touches what it does not manage.
                    match nl.ensure_promote_secondaries(*index, ifname, vip, takes_along).await {
                        Ok(()) => nl.remove(vip, *prefix, *index, ifname).await,
                        Err(f) => Err(f),
                    }
                }
            }
            Action::Add { vip, index, ifname } => nl.add(vip, *index, ifname, master.label.as_deref()).await,
            Action::Announce { .. } => Ok(()),
        };
        if let Err(f) = res {
            if let Action::Remove { vip, .. } | Action::Add { vip, .. } = action {
                failed_vips.push(vip.addr);
            }
            failures.push(f);
        }
    }
    let mut targets: BTreeMap<u32, Target> = BTreeMap::new();
    for action in &report.actions {
        let Action::Announce { vip, index, ifname } = action else { continue };
        if failed_vips.contains(&vip.addr) {
            continue; // not bound as planned: nothing to announce
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
            // Aborted by whoever releases the VIPs next. The daemon's runtime has one thread, so an
            // abort always finds this task parked between rounds, never inside one.
            let task = tokio::spawn(async move {
                tokio::time::sleep(interval).await;
                for t in &later {
                    let r = announce::announce(&socket, t, rest).await;
                    for e in r.errors {
                        tracing::warn!("master `{master_name}`: later announcement round: {e}");
                    }
                }
            });
            report.later = Some(task.abort_handle());
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
    report.failure = match failures.len() {
        0 => None,
        1 => failures.pop(),
        n => {
            // Permanent if any is: a retry cannot fix that one.
            let permanent = failures.iter().any(|f| f.kind == crate::error::Kind::Permanent);
            let text = failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            let e = anyhow!("{n} VIPs of master `{}` failed: {text}", master.name);
            Some(if permanent { Failure::permanent(e) } else { Failure::transient(e) })
        }
    };
    Ok(report)
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
