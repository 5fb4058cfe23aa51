//! Given a master's config, whether this host should hold its VIPs, and the host's current
//! addresses, says exactly which addresses to add or remove and what to announce.
//!
//! Nothing here does I/O. Every address an action names comes from the master's configured VIP list,
//! which is what makes "vipctl never touches an address it was not configured to manage" provable.

use std::fmt;

use crate::config::Master;
use crate::network::host::HostState;
use crate::network::vip::Vip;

/// Whether this host should hold the master's VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// This host runs the master: bind and announce.
    Hold,
    /// Another host runs the master (or none does): unbind.
    Release,
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Want::Hold => "claim",
            Want::Release => "release",
        })
    }
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bind `vip` on interface `index`.
    Add {
        /// The configured VIP.
        vip: Vip,
        /// Interface index.
        index: u32,
        /// Interface name (for messages).
        ifname: String,
    },
    /// Unbind `vip` (found with prefix `prefix`) from interface `index`.
    Remove {
        /// The configured VIP.
        vip: Vip,
        /// The prefix it is bound with now (the kernel wants it to match on delete).
        prefix: u8,
        /// Interface index.
        index: u32,
        /// Interface name (for messages).
        ifname: String,
        /// Host addresses the kernel would delete with it (the VIP is the primary of their subnet),
        /// unless the interface promotes secondaries first.
        takes_along: Vec<std::net::IpAddr>,
    },
    /// Send gratuitous ARP / unsolicited NA for `vip` out of interface `index`.
    Announce {
        /// The configured VIP.
        vip: Vip,
        /// Interface index.
        index: u32,
        /// Interface name (for messages).
        ifname: String,
    },
}

impl Action {
    /// The VIP this action is about.
    #[cfg(test)]
    pub fn vip(&self) -> Vip {
        match self {
            Action::Add { vip, .. } | Action::Remove { vip, .. } | Action::Announce { vip, .. } => *vip,
        }
    }

    /// True for actions that change the host's addresses.
    pub fn changes_addresses(&self) -> bool {
        !matches!(self, Action::Announce { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Add { vip, ifname, .. } => write!(f, "add {vip} dev {ifname}"),
            Action::Remove { vip, prefix, ifname, .. } => write!(f, "remove {}/{prefix} dev {ifname}", vip.addr),
            Action::Announce { vip, ifname, .. } => write!(f, "announce {} on {ifname}", vip.addr),
        }
    }
}

/// Why no plan could be made; none of these is fixed by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The configured interface does not exist.
    #[error(
        "interface `{ifname}` configured for master `{master}` does not exist on this host; fix `interface` in the config (`ip link` lists the interfaces)"
    )]
    NoSuchInterface {
        /// Master name.
        master: String,
        /// Interface name.
        ifname: String,
    },
    /// No interface has an address in the VIP's subnet.
    #[error(
        "no interface has an address in the subnet of VIP {vip} (master `{master}`); set `interface` for the master in the config"
    )]
    NoInterfaceForSubnet {
        /// Master name.
        master: String,
        /// The VIP.
        vip: Vip,
    },
    /// The label must start with the interface name, and the interface was picked automatically.
    #[error(
        "label `{label}` of master `{master}` does not start with `{ifname}`, the interface VIP {vip} goes on; fix `label` or set `interface`"
    )]
    LabelMismatch {
        /// Master name.
        master: String,
        /// The label.
        label: String,
        /// The chosen interface.
        ifname: String,
        /// The VIP.
        vip: Vip,
    },
    /// Several interfaces do.
    #[error(
        "several interfaces ({ifnames}) have addresses in the subnet of VIP {vip} (master `{master}`); set `interface` for the master in the config"
    )]
    SeveralInterfacesForSubnet {
        /// Master name.
        master: String,
        /// The VIP.
        vip: Vip,
        /// The candidates, comma separated.
        ifnames: String,
    },
}

/// Picks the interface a VIP belongs on: the configured one, or the only one with an address in
/// the VIP's subnet (the VIPs themselves do not count, or a bound VIP would vouch for itself).
pub fn interface_for(
    master: &Master,
    vip: &Vip,
    host: &HostState,
    managed: &[std::net::IpAddr],
) -> Result<(u32, String), PlanError> {
    if let Some(name) = &master.interface {
        return host
            .interface_by_name(name)
            .map(|i| (i.index, i.name.clone()))
            .ok_or_else(|| PlanError::NoSuchInterface { master: master.name.clone(), ifname: name.clone() });
    }
    let mut candidates: Vec<u32> = host
        .addresses
        .iter()
        .filter(|a| !managed.contains(&a.addr) && vip.subnet_contains(a.addr))
        .map(|a| a.index)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    match candidates.as_slice() {
        [] => Err(PlanError::NoInterfaceForSubnet { master: master.name.clone(), vip: *vip }),
        [one] => Ok((*one, host.name_of(*one))),
        many => Err(PlanError::SeveralInterfacesForSubnet {
            master: master.name.clone(),
            vip: *vip,
            ifnames: many.iter().map(|i| host.name_of(*i)).collect::<Vec<_>>().join(", "),
        }),
    }
}

fn remove(vip: &Vip, a: &crate::network::host::Address, host: &HostState) -> Action {
    Action::Remove {
        vip: *vip,
        prefix: a.prefix,
        index: a.index,
        ifname: host.name_of(a.index),
        takes_along: host.secondaries_of(a).iter().map(|o| o.addr).collect(),
    }
}

/// What to do so that the host matches `want` for `master`.
///
/// Holding: each VIP ends up on its interface (moved there if bound elsewhere) and is announced,
/// whether or not it was already bound (re-announcing is what makes claim idempotent and useful).
/// Releasing: each VIP is removed wherever it is bound; that needs no interface, so a release
/// cannot fail for want of one.
pub fn plan(
    master: &Master,
    want: Want,
    host: &HostState,
    managed: &[std::net::IpAddr],
) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    match want {
        Want::Release => {
            for vip in &master.vips {
                for a in host.bound(vip.addr) {
                    actions.push(remove(vip, a, host));
                }
            }
        }
        Want::Hold => {
            let mut announces = Vec::new();
            for vip in &master.vips {
                let (index, ifname) = interface_for(master, vip, host, managed)?;
                if let Some(label) = &master.label
                    && vip.addr.is_ipv4()
                    && !label.starts_with(&ifname)
                {
                    return Err(PlanError::LabelMismatch {
                        master: master.name.clone(),
                        label: label.clone(),
                        ifname,
                        vip: *vip,
                    });
                }
                let mut here = false;
                for a in host.bound(vip.addr) {
                    // An IPv6 VIP that is tentative, failed DAD, or may serve as a source address
                    // (not added by vipctl) is re-added the right way.
                    let sound = !a.tentative && !a.preferred;
                    if a.index == index && a.prefix == vip.prefix && sound {
                        here = true;
                    } else {
                        actions.push(remove(vip, a, host));
                    }
                }
                if !here {
                    actions.push(Action::Add { vip: *vip, index, ifname: ifname.clone() });
                }
                // Routed masters (and announce rounds = 0) have nothing to announce on the link.
                if master.announce.rounds > 0 {
                    announces.push(Action::Announce { vip: *vip, index, ifname });
                }
            }
            // Announce only after every address is in place, so one burst covers them all.
            actions.extend(announces);
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Announce, Master};
    use crate::network::host::{Address, Interface};
    use proptest::prelude::*;
    use std::net::IpAddr;
    use std::time::Duration;

    fn master(vips: &[&str], interface: Option<&str>) -> Master {
        Master {
            name: "m".into(),
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
            interface: interface.map(str::to_string),
            label: None,
            announce: Announce { rounds: 1, interval: Duration::ZERO },
            sentinels: vec![],
            mode: crate::config::Mode::default(),
            cloud: None,
            notify: crate::config::Notify { on_claim: vec![], on_release: vec![], timeout: Duration::from_secs(1) },
        }
    }

    fn host(addrs: &[(u32, &str, u8)]) -> HostState {
        HostState {
            interfaces: vec![
                Interface { index: 1, name: "lo".into(), mac: None, up: true },
                Interface { index: 2, name: "eth0".into(), mac: Some([2, 0, 0, 0, 0, 0x11]), up: true },
                Interface { index: 3, name: "eth1".into(), mac: Some([2, 0, 0, 0, 0, 0x21]), up: true },
            ],
            addresses: addrs.iter().map(|(i, a, p)| Address::new(*i, a.parse().unwrap(), *p)).collect(),
        }
    }

    fn managed(m: &Master) -> Vec<IpAddr> {
        m.vips.iter().map(|v| v.addr).collect()
    }

    #[test]
    fn hold_adds_then_announces() {
        let m = master(&["198.51.100.100/24"], None);
        let h = host(&[(2, "198.51.100.11", 24)]);
        let p = plan(&m, Want::Hold, &h, &managed(&m)).unwrap();
        assert_eq!(p.len(), 2);
        assert!(matches!(&p[0], Action::Add { index: 2, .. }));
        assert!(matches!(&p[1], Action::Announce { index: 2, .. }));
    }

    #[test]
    fn hold_when_bound_only_announces() {
        let m = master(&["198.51.100.100/24"], Some("eth0"));
        let h = host(&[(2, "198.51.100.11", 24), (2, "198.51.100.100", 24)]);
        let p = plan(&m, Want::Hold, &h, &managed(&m)).unwrap();
        assert_eq!(p, vec![Action::Announce { vip: m.vips[0], index: 2, ifname: "eth0".into() }]);
    }

    #[test]
    fn hold_moves_a_vip_from_the_wrong_interface() {
        let m = master(&["198.51.100.100/24"], Some("eth0"));
        let h = host(&[(3, "198.51.100.100", 32)]);
        let p = plan(&m, Want::Hold, &h, &managed(&m)).unwrap();
        assert!(matches!(&p[0], Action::Remove { index: 3, prefix: 32, .. }));
        assert!(matches!(&p[1], Action::Add { index: 2, .. }));
    }

    #[test]
    fn primary_vip_names_the_secondaries_it_would_take_along() {
        let m = master(&["198.51.100.100/24"], Some("eth0"));
        let mut h = host(&[(2, "198.51.100.100", 24), (2, "198.51.100.11", 24), (2, "2001:db8::1", 64)]);
        h.addresses[1].secondary = true;
        let p = plan(&m, Want::Release, &h, &managed(&m)).unwrap();
        let own: std::net::IpAddr = "198.51.100.11".parse().unwrap();
        assert_eq!(
            p,
            vec![Action::Remove {
                vip: m.vips[0],
                prefix: 24,
                index: 2,
                ifname: "eth0".into(),
                takes_along: vec![own]
            }]
        );
    }

    #[test]
    fn unsound_ipv6_vip_is_readded() {
        let m = master(&["2001:db8:51::100/64"], Some("eth0"));
        let mut h = host(&[(2, "2001:db8:51::100", 64)]);
        h.addresses[0].preferred = true;
        let p = plan(&m, Want::Hold, &h, &managed(&m)).unwrap();
        assert!(matches!(&p[0], Action::Remove { .. }));
        assert!(matches!(&p[1], Action::Add { .. }));
        h.addresses[0].preferred = false;
        h.addresses[0].tentative = true;
        assert!(matches!(&plan(&m, Want::Hold, &h, &managed(&m)).unwrap()[0], Action::Remove { .. }));
    }

    #[test]
    fn label_must_match_the_chosen_interface() {
        let mut m = master(&["198.51.100.100/24"], None);
        m.label = Some("bond0:redis".into());
        let e = plan(&m, Want::Hold, &host(&[(2, "198.51.100.11", 24)]), &managed(&m)).unwrap_err();
        assert!(matches!(e, PlanError::LabelMismatch { .. }));
    }

    #[test]
    fn moved_vip_keeps_order() {
        let m = master(&["198.51.100.100/24"], Some("eth0"));
        let h = host(&[(3, "198.51.100.100", 32)]);
        let p = plan(&m, Want::Hold, &h, &managed(&m)).unwrap();
        assert!(matches!(&p[1], Action::Add { index: 2, .. }));
    }

    #[test]
    fn release_removes_everywhere_and_needs_no_interface() {
        let m = master(&["198.51.100.100/24", "2001:db8:51::100/64"], Some("nonexistent"));
        let h = host(&[(2, "198.51.100.100", 24), (3, "2001:db8:51::100", 64)]);
        let p = plan(&m, Want::Release, &h, &managed(&m)).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|a| matches!(a, Action::Remove { .. })));
        let nothing = plan(&m, Want::Release, &host(&[]), &managed(&m)).unwrap();
        assert!(nothing.is_empty());
    }

    #[test]
    fn interface_choice_errors() {
        let m = master(&["198.51.100.100/24"], None);
        let none = plan(&m, Want::Hold, &host(&[]), &managed(&m)).unwrap_err();
        assert!(matches!(none, PlanError::NoInterfaceForSubnet { .. }));
        let two = plan(&m, Want::Hold, &host(&[(2, "198.51.100.11", 24), (3, "198.51.100.21", 24)]), &managed(&m))
            .unwrap_err();
        assert!(matches!(two, PlanError::SeveralInterfacesForSubnet { .. }));
        // A bound VIP must not count as the subnet's evidence.
        let only_vip = plan(&m, Want::Hold, &host(&[(3, "198.51.100.100", 24)]), &managed(&m)).unwrap_err();
        assert!(matches!(only_vip, PlanError::NoInterfaceForSubnet { .. }));
        let missing = plan(&master(&["198.51.100.100/24"], Some("eth9")), Want::Hold, &host(&[]), &[]).unwrap_err();
        assert!(matches!(missing, PlanError::NoSuchInterface { .. }));
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            // Mostly addresses near the VIPs, so collisions with them are common.
            (0u8..4, 98u8..102).prop_map(|(c, d)| IpAddr::from([198, 51, 100 + c, d])),
            any::<[u8; 4]>().prop_map(IpAddr::from),
            (0u16..4, 0xfeu16..0x102).prop_map(|(a, b)| IpAddr::from([0x2001, 0xdb8, 0x51 + a, 0, 0, 0, 0, b])),
            any::<[u16; 8]>().prop_map(IpAddr::from),
        ]
    }

    prop_compose! {
        fn arb_host()(addrs in prop::collection::vec((1u32..5, arb_ip(), 1u8..129, any::<bool>(), any::<bool>(), any::<bool>()), 0..24)) -> HostState {
            HostState {
                interfaces: (1..5).map(|i| Interface { index: i, name: format!("if{i}"), mac: Some([2, 0, 0, 0, 0, i as u8]), up: true }).collect(),
                addresses: addrs.into_iter().map(|(index, addr, p, secondary, tentative, preferred)| Address {
                    index, addr, prefix: if addr.is_ipv4() { p.min(32) } else { p }, secondary, tentative, preferred,
                }).collect(),
            }
        }
    }

    proptest! {
        /// Whatever the host holds and whatever is asked, every action names a configured VIP,
        /// every removal names an address that is bound right there, and nothing else is touched.
        #[test]
        fn only_configured_vips_are_ever_touched(
            host in arb_host(),
            want_hold in any::<bool>(),
            iface in prop_oneof![Just(None), (1u32..6).prop_map(|i| Some(format!("if{i}")))],
            n in 1usize..4,
        ) {
            let all = ["198.51.100.100/24", "2001:db8:51::100/64", "198.51.101.100/24"];
            let m = master(&all[..n], iface.as_deref());
            let want = if want_hold { Want::Hold } else { Want::Release };
            if let Ok(actions) = plan(&m, want, &host, &managed(&m)) {
                for a in &actions {
                    prop_assert!(m.vips.contains(&a.vip()), "{a} is not a configured VIP");
                    if let Action::Remove { vip, prefix, index, takes_along, .. } = a {
                        prop_assert!(host.addresses.iter().any(|h| h.addr == vip.addr && h.prefix == *prefix && h.index == *index));
                        // Whatever the kernel would delete along with a primary is named, so apply can protect it.
                        let bound = host.addresses.iter().find(|h| h.addr == vip.addr && h.prefix == *prefix && h.index == *index).unwrap();
                        prop_assert_eq!(takes_along, &host.secondaries_of(bound).iter().map(|o| o.addr).collect::<Vec<_>>());
                    }
                    if want == Want::Release {
                        prop_assert!(matches!(a, Action::Remove { .. }), "release planned {}", a);
                    }
                }
                if want == Want::Release {
                    // Every bound copy of every VIP is removed, and nothing more.
                    let bound = host.addresses.iter().filter(|h| m.vips.iter().any(|v| v.addr == h.addr)).count();
                    prop_assert_eq!(actions.len(), bound);
                }
            } else {
                prop_assert!(want == Want::Hold, "release must never fail to plan");
            }
        }
    }
}
