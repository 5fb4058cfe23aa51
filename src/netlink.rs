//! Every change vipctl makes to the host's addresses, through rtnetlink (never by running `ip`).
//!
//! The functions here take [`Action`]s from the decision code, whose addresses are configured VIPs
//! by construction; this module adds no choice of its own about which address to touch.

use std::io;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, CacheInfo};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use crate::error::{Failure, Outcome};
use crate::host::{Address, HostState, Interface};
use crate::vip::Vip;

/// An open rtnetlink connection.
pub struct Netlink {
    handle: Handle,
}

/// How to run the hook's user through granting a missing capability.
pub const GRANT_HINT: &str = "grant CAP_NET_ADMIN and CAP_NET_RAW (e.g. `setcap cap_net_admin,cap_net_raw+ep /usr/bin/vipctl`, or AmbientCapabilities= in its systemd unit)";

/// Classifies an OS error from netlink: missing privilege and missing devices are permanent,
/// anything else (ENOBUFS, EBUSY, …) may pass.
fn classify(what: String, err: io::Error) -> Failure {
    let permanent = matches!(
        err.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::ENODEV | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EINVAL)
    );
    let hint = match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!("; this process lacks CAP_NET_ADMIN: {GRANT_HINT}"),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => {
            "; netlink sockets are forbidden here (a systemd sandbox with RestrictAddressFamilies= without AF_NETLINK?)"
                .to_string()
        }
        _ => String::new(),
    };
    let e = anyhow::anyhow!("{what}: {err}{hint}");
    if permanent { Failure::permanent(e) } else { Failure::transient(e) }
}

fn os_error(e: &rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

impl Netlink {
    /// Opens a route netlink socket and drives it on the current tokio runtime.
    pub fn open() -> Outcome<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| classify("cannot open a netlink socket".into(), e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// Reads all interfaces and addresses.
    pub async fn snapshot(&self) -> Outcome<HostState> {
        let mut interfaces = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(msg) =
            links.try_next().await.map_err(|e| classify("cannot list interfaces".into(), os_error(&e)))?
        {
            let mut name = None;
            let mut mac = None;
            for attr in &msg.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Address(a) if a.len() == 6 => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                    _ => {}
                }
            }
            interfaces.push(Interface {
                index: msg.header.index,
                name: name.unwrap_or_else(|| format!("if{}", msg.header.index)),
                mac,
                up: msg.header.flags.contains(LinkFlags::Up),
            });
        }
        let mut addresses = Vec::new();
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) =
            addrs.try_next().await.map_err(|e| classify("cannot list addresses".into(), os_error(&e)))?
        {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
            let local =
                msg.attributes.iter().find_map(|a| if let AddressAttribute::Local(ip) = a { Some(*ip) } else { None });
            let address = msg
                .attributes
                .iter()
                .find_map(|a| if let AddressAttribute::Address(ip) = a { Some(*ip) } else { None });
            if let Some(addr) = local.or(address) {
                addresses.push(Address { index: msg.header.index, addr, prefix: msg.header.prefix_len });
            }
        }
        Ok(HostState { interfaces, addresses })
    }

    /// Binds `vip` on interface `index`. IPv6 VIPs skip DAD (the address must work now, and the old
    /// holder may still answer for a moment) and get preferred lifetime 0, so the kernel never picks
    /// them as a source address. Already bound counts as success.
    pub async fn add(&self, vip: &Vip, index: u32, ifname: &str, label: Option<&str>) -> Outcome<()> {
        let mut req = self.handle.address().add(index, vip.addr, vip.prefix);
        let msg = req.message_mut();
        match vip.addr {
            IpAddr::V6(_) => {
                msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                let mut lifetimes = CacheInfo::default();
                lifetimes.ifa_preferred = 0;
                lifetimes.ifa_valid = u32::MAX;
                msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
            }
            IpAddr::V4(_) => {
                if let Some(l) = label {
                    msg.attributes.push(AddressAttribute::Label(l.to_string()));
                }
            }
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if os_error(&e).raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(classify(format!("cannot add VIP {vip} on {ifname}"), os_error(&e))),
        }
    }

    /// Unbinds `vip` (bound with `prefix`) from interface `index`. Already gone counts as success.
    pub async fn remove(&self, vip: &Vip, prefix: u8, index: u32, ifname: &str) -> Outcome<()> {
        let mut msg = self.handle.address().add(index, vip.addr, prefix).message_mut().clone();
        // The kernel matches the delete on address and prefix; flags and lifetimes are irrelevant.
        msg.attributes.retain(|a| matches!(a, AddressAttribute::Address(_) | AddressAttribute::Local(_)));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(os_error(&e).raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ESRCH)) => {
                Ok(())
            }
            Err(e) => Err(classify(format!("cannot remove VIP {}/{prefix} from {ifname}", vip.addr), os_error(&e))),
        }
    }
}
