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
use crate::netlink::{GRANT_HINT, Netlink};
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

/// Plans and, unless `dry_run`, applies `want` for `master` on this host.
pub async fn converge(
    nl: &Netlink,
    master: &Master,
    want: Want,
    host: &HostState,
    managed: &[std::net::IpAddr],
    dry_run: bool,
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
            "missing CAP_NET_ADMIN, needed to change addresses for master `{}`: {GRANT_HINT}",
            master.name
        )));
    }
    let socket = if announces {
        if !caps.has(CAP_NET_RAW) {
            return Err(Failure::permanent(anyhow!(
                "missing CAP_NET_RAW, needed to announce the VIPs of master `{}`: {GRANT_HINT}",
                master.name
            )));
        }
        Some(PacketSocket::open().map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                "packet sockets are forbidden here (RestrictAddressFamilies= without AF_PACKET?)"
            } else {
                GRANT_HINT
            };
            Failure::permanent(anyhow!("cannot open a packet socket to announce master `{}`: {e}; {hint}", master.name))
        })?)
    } else {
        None
    };

    let mut targets: BTreeMap<u32, Target> = BTreeMap::new();
    for action in &report.actions {
        match action {
            Action::Remove { vip, prefix, index, ifname } => nl.remove(vip, *prefix, *index, ifname).await?,
            Action::Add { vip, index, ifname } => nl.add(vip, *index, ifname, master.label.as_deref()).await?,
            Action::Announce { vip, index, ifname } => {
                let iface = host.interface(*index);
                let Some(mac) = iface.and_then(|i| i.mac) else {
                    report
                        .warnings
                        .push(format!("{ifname} has no Ethernet address: VIP {} bound but not announced", vip.addr));
                    continue;
                };
                if iface.is_some_and(|i| !i.up) {
                    report.warnings.push(format!(
                        "{ifname} is down: VIP {} bound, announcements will fail until it is up",
                        vip.addr
                    ));
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
        }
    }

    if let Some(socket) = &socket {
        let schedule = Schedule { rounds: master.announce.rounds, interval: master.announce.interval };
        let reports =
            futures::future::join_all(targets.values().map(|t| announce::announce(socket, t, schedule))).await;
        for r in reports {
            report.frames_sent += r.frames_sent;
            if let Some(t) = r.first_frame_at {
                let us = t.saturating_duration_since(start).as_micros();
                report.first_frame_us = Some(report.first_frame_us.map_or(us, |u| u.min(us)));
            }
            report.warnings.extend(r.errors);
        }
    }
    Ok(report)
}
