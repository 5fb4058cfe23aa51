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

    /// True when `addr` is one of this host's own addresses (not counting `managed` VIPs).
    pub fn is_local(&self, addr: IpAddr, managed: &[IpAddr]) -> bool {
        !managed.contains(&addr) && self.addresses.iter().any(|a| a.addr == addr)
    }

    /// The interface's IPv6 link-local address, the proper source of a neighbour advertisement.
    pub fn link_local(&self, index: u32) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a.addr {
            IpAddr::V6(v6) if a.index == index && v6.is_unicast_link_local() => Some(v6),
            _ => None,
        })
    }
}
