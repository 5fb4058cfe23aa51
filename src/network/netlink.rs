//! Every change vipctl makes to the host's addresses, through rtnetlink (never by running `ip`).
//!
//! The functions here take [`Action`]s from the decision code, whose addresses are configured VIPs
//! by construction; this module adds no choice of its own about which address to touch.

use std::io;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, CacheInfo};
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute, LinkFlags, LinkMessage};

use crate::error::{Failure, Outcome};
use crate::network::host::{Address, HostState, Interface};
use crate::network::vip::Vip;

/// An open rtnetlink connection.
pub struct Netlink {
    handle: Handle,
}

/// How to grant the missing capabilities, naming this very binary.
pub fn grant_hint() -> String {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/usr/bin/vipctl".into());
    format!(
        "grant CAP_NET_ADMIN and CAP_NET_RAW (`setcap cap_net_admin,cap_net_raw+ep {exe}`, or AmbientCapabilities= in its systemd unit)"
    )
}

/// Classifies an OS error from netlink: missing privilege and missing devices are permanent,
/// anything else (ENOBUFS, EBUSY, …) may pass.
fn classify(what: String, err: io::Error) -> Failure {
    let permanent = matches!(
        err.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::ENODEV | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EINVAL)
    );
    let hint = match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!("; this process lacks CAP_NET_ADMIN: {}", grant_hint()),
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

/// A netlink connection opened on first use and reopened after any failure: a socket that died
/// must not fail every later call of a long-running daemon.
#[derive(Default)]
pub struct Reopening(Option<Netlink>);

impl Reopening {
    /// The connection, opened now if there is none.
    pub fn get(&mut self) -> Outcome<&Netlink> {
        if self.0.is_none() {
            self.0 = Some(Netlink::open()?);
        }
        Ok(self.0.as_ref().expect("opened above"))
    }

    /// Reads all interfaces and addresses ([`Netlink::snapshot`]); a failure drops the connection.
    pub async fn snapshot(&mut self) -> Outcome<HostState> {
        let result = self.get()?.snapshot().await;
        if result.is_err() {
            self.0 = None;
        }
        result
    }

    /// Drops the connection after a change through it failed.
    pub fn reset(&mut self) {
        self.0 = None;
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
            let flags = msg
                .attributes
                .iter()
                .find_map(|a| if let AddressAttribute::Flags(f) = a { Some(*f) } else { None })
                .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits())));
            let preferred = msg
                .attributes
                .iter()
                .find_map(|a| if let AddressAttribute::CacheInfo(c) = a { Some(c.ifa_preferred) } else { None })
                .is_some_and(|p| p > 0);
            if let Some(addr) = local.or(address) {
                addresses.push(Address {
                    index: msg.header.index,
                    addr,
                    prefix: msg.header.prefix_len,
                    secondary: flags.contains(AddressFlags::Secondary),
                    tentative: flags.intersects(AddressFlags::Dadfailed)
                        || (flags.contains(AddressFlags::Tentative) && !flags.contains(AddressFlags::Optimistic)),
                    preferred: addr.is_ipv6() && preferred && !flags.contains(AddressFlags::Deprecated),
                });
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
            // Capabilities were checked before any change, so EACCES on an IPv6 add means IPv6 is off there.
            Err(e) if vip.addr.is_ipv6() && os_error(&e).raw_os_error() == Some(libc::EACCES) => {
                Err(Failure::permanent(anyhow::anyhow!(
                    "cannot add VIP {vip} on {ifname}: IPv6 is disabled there (net.ipv6.conf.{ifname}.disable_ipv6 = 1); enable it or drop the IPv6 VIP"
                )))
            }
            Err(e) => Err(classify(format!("cannot add VIP {vip} on {ifname}"), os_error(&e))),
        }
    }

    /// Makes the kernel keep `others` when the primary `vip` goes: sets the interface's
    /// `promote_secondaries` (keepalived's `promote_secondaries` does the same). Through netlink
    /// (RTM_SETLINK), not /proc/sys, so that it works under systemd's ProtectKernelTunables=.
    pub async fn ensure_promote_secondaries(
        &self,
        index: u32,
        ifname: &str,
        vip: &Vip,
        others: &[IpAddr],
    ) -> Outcome<()> {
        let mut conf = InetDevConf::default();
        conf.promote_secondaries = 1;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![AfSpecInet::DevConfRequest(conf)])]));
        self.handle.link().set(msg).execute().await.map_err(|e| {
            let list = others.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            classify(
                format!(
                    "cannot set promote_secondaries on {ifname} before removing VIP {vip}, the primary address of its \
                     subnet there (the kernel would delete {list} with it)"
                ),
                os_error(&e),
            )
        })?;
        tracing::info!("set net.ipv4.conf.{ifname}.promote_secondaries=1 so that removing VIP {vip} keeps {others:?}");
        Ok(())
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
