//! This host's interfaces and addresses as netlink reported them: a plain snapshot that the
//! decision code reads, so the decisions can be tested without a kernel.

use std::net::{IpAddr, Ipv6Addr};

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when it is Ethernet-like.
    pub mac: Option<[u8; 6]>,
    /// Administratively up.
    pub up: bool,
}

/// One address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Interface index it is on.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// IPv4: a secondary address of its subnet (deleting the primary deletes the secondaries too,
    /// unless the interface promotes them).
    pub secondary: bool,
    /// IPv6: still in, or failed, duplicate address detection: not usable.
    pub tentative: bool,
    /// IPv6: has a preferred lifetime, so the kernel may pick it as a source address.
    pub preferred: bool,
}

impl Address {
    /// A plain address: primary, usable, deprecated (as vipctl adds IPv6 VIPs).
    #[cfg(test)]
    pub fn new(index: u32, addr: IpAddr, prefix: u8) -> Address {
        Address { index, addr, prefix, secondary: false, tentative: false, preferred: false }
    }
}

/// Everything vipctl needs to know about the host's network state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// All interfaces.
    pub interfaces: Vec<Interface>,
    /// All addresses on them.
    pub addresses: Vec<Address>,
}

impl HostState {
    /// The interface called `name`.
    pub fn interface_by_name(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The interface with index `index`.
    pub fn interface(&self, index: u32) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.index == index)
    }

    /// The name of interface `index`, or `if<index>` when it vanished.
    pub fn name_of(&self, index: u32) -> String {
        self.interface(index).map(|i| i.name.clone()).unwrap_or_else(|| format!("if{index}"))
    }

    /// Where `addr` is bound, if anywhere.
    pub fn bound(&self, addr: IpAddr) -> impl Iterator<Item = &Address> {
        self.addresses.iter().filter(move |a| a.addr == addr)
    }

    /// True when `addr` is one of this host's own addresses (not counting `managed` VIPs, nor
    /// loopback: every host has 127.0.0.1, so it names no host).
    pub fn is_local(&self, addr: IpAddr, managed: &[IpAddr]) -> bool {
        !addr.is_loopback() && !managed.contains(&addr) && self.addresses.iter().any(|a| a.addr == addr)
    }

    /// The other addresses that the kernel deletes along with `a` when `a` is the primary IPv4
    /// address of its subnet and the interface does not promote secondaries.
    pub fn secondaries_of(&self, a: &Address) -> Vec<Address> {
        if !a.addr.is_ipv4() || a.secondary {
            return Vec::new();
        }
        self.addresses
            .iter()
            .filter(|o| {
                o.index == a.index
                    && o.addr != a.addr
                    && o.secondary
                    && crate::network::vip::same_network(a.addr, o.addr, a.prefix)
            })
            .copied()
            .collect()
    }

    /// The interface's IPv6 link-local address, the proper source of a neighbour advertisement.
    pub fn link_local(&self, index: u32) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a.addr {
            IpAddr::V6(v6) if a.index == index && v6.is_unicast_link_local() => Some(v6),
            _ => None,
        })
    }
}
