//! Defending held VIPs: while this host is master, another host that claims a VIP (an ARP with the
//! VIP as sender, or a neighbour advertisement for it) gets answered by an immediate re-announcement.
//!
//! Why: a cut-off old master that comes back can send an ARP with the VIP as its source (e.g.
//! retransmitting an old connection); the clients' caches flip back to it and acknowledged writes
//! go to a Redis that is about to be demoted. Re-announcing at once flips them back within a frame.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::network::announce::Mac;

/// A VIP this host holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The address.
    pub vip: IpAddr,
}

/// Someone else claims one of our VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The VIP claimed.
    pub vip: IpAddr,
    /// The claimant's hardware address.
    pub mac: Mac,
    /// Where it was seen.
    pub ifname: String,
}

/// Formats a MAC the usual way.
pub fn mac_string(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The VIP and MAC that a received frame claims, if it claims one: an ARP request or reply whose
/// sender address is the VIP, or a neighbour advertisement whose target is the VIP (taking the MAC
/// from its target link-layer option, else from the Ethernet source).
pub fn claim_in(frame: &[u8]) -> Option<(IpAddr, Mac)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    match ethertype {
        0x0806 => {
            let arp = frame.get(14..42)?;
            // Ethernet/IPv4 ARP only.
            if arp[0..2] != [0, 1] || arp[2..4] != [8, 0] || arp[4] != 6 || arp[5] != 4 {
                return None;
            }
            let sha: Mac = arp[8..14].try_into().ok()?;
            let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
            Some((IpAddr::V4(spa), sha))
        }
        0x86dd => {
            let ip = frame.get(14..54)?;
            if ip[6] != 58 {
                return None; // not ICMPv6 (extension headers are not followed: NAs carry none)
            }
            if ip[7] != 255 {
                // RFC 4861 §7.1.2: a neighbour advertisement must arrive with hop limit 255, which
                // proves it was not routed here from another link.
                return None;
            }
            let icmp = frame.get(54..)?;
            if icmp.len() < 24 || icmp[0] != 136 || icmp[1] != 0 {
                return None;
            }
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
            let mut mac: Mac = frame.get(6..12)?.try_into().ok()?;
            let mut opts = &icmp[24..];
            while opts.len() >= 8 {
                let len = usize::from(opts[1]) * 8;
                if len == 0 || len > opts.len() {
                    break;
                }
                if opts[0] == 2 && len >= 8 {
                    mac = opts[2..8].try_into().ok()?;
                }
                opts = &opts[len..];
            }
            Some((IpAddr::V6(target), mac))
        }
        _ => None,
    }
}

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// Classic BPF: keep only ICMPv6 (next header 58) neighbour advertisements (type 136).
const NA_FILTER: [libc::sock_filter; 6] = [
    libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 20 }, // ldb [20]: IPv6 next header
    libc::sock_filter { code: 0x15, jt: 0, jf: 3, k: 58 }, // jeq #58
    libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 54 }, // ldb [54]: ICMPv6 type
    libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: 136 }, // jeq #136
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0xffff }, // accept
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },  // drop
];

fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol.to_be())) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attach_na_filter(fd: &OwnedFd) -> io::Result<()> {
    let prog = libc::sock_fprog { len: NA_FILTER.len() as u16, filter: NA_FILTER.as_ptr() as *mut libc::sock_filter };
    // SAFETY: prog points at a static filter that outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn ifname(index: i32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{index}");
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// Starts the watcher thread. `held` is the current list of held VIPs (kept up to date by the
/// daemon); `report` is called for each conflict (at most once per VIP per 200 ms) and returns
/// false when the daemon is gone, which ends the thread.
pub fn spawn(held: Arc<Mutex<Vec<Held>>>, mut report: impl FnMut(Conflict) -> bool + Send + 'static) -> io::Result<()> {
    let arp = packet_socket(ETH_P_ARP)?;
    let na = packet_socket(ETH_P_IPV6)?;
    attach_na_filter(&na)?;
    std::thread::Builder::new().name("vipctl-defend".into()).spawn(move || {
        let mut last: HashMap<IpAddr, Instant> = HashMap::new();
        let mut buf = [0u8; 2048];
        loop {
            let mut fds = [
                libc::pollfd { fd: arp.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: na.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: fds is a valid array of two pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 500) };
            if n <= 0 {
                continue;
            }
            for pfd in fds.iter().filter(|p| p.revents & libc::POLLIN != 0) {
                // SAFETY: an all-zero sockaddr_ll is a valid value to be filled in by recvfrom.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and from are valid writable buffers of the sizes passed.
                let got = unsafe {
                    libc::recvfrom(
                        pfd.fd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if got <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue; // our own frames come back to packet sockets as OUTGOING
                }
                let Some((vip, mac)) = claim_in(&buf[..got as usize]) else { continue };
                let is_held = held.lock().map(|h| h.iter().any(|x| x.vip == vip)).unwrap_or(false);
                if !is_held {
                    continue;
                }
                let now = Instant::now();
                if last.get(&vip).is_some_and(|t| now.duration_since(*t) < Duration::from_millis(200)) {
                    continue;
                }
                last.insert(vip, now);
                if !report(Conflict { vip, mac, ifname: ifname(from.sll_ifindex) }) {
                    return;
                }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::announce::{garp_reply, garp_request, unsolicited_na};

    const OTHER: Mac = [2, 0, 0, 0, 0, 0x11];

    #[test]
    fn recognises_claims_in_our_own_frame_formats() {
        let v4: Ipv4Addr = "198.51.100.100".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8:51::100".parse().unwrap();
        assert_eq!(claim_in(&garp_request(OTHER, v4)), Some((IpAddr::V4(v4), OTHER)));
        assert_eq!(claim_in(&garp_reply(OTHER, v4)), Some((IpAddr::V4(v4), OTHER)));
        let ll: Ipv6Addr = "fe80::11".parse().unwrap();
        assert_eq!(claim_in(&unsolicited_na(OTHER, ll, v6)), Some((IpAddr::V6(v6), OTHER)));
    }

    #[test]
    fn ignores_other_traffic() {
        assert_eq!(claim_in(&[0u8; 10]), None);
        let mut f = garp_request(OTHER, "198.51.100.100".parse().unwrap());
        f[16] = 0x86; // ptype not IPv4
        assert_eq!(claim_in(&f), None);
        let mut na = unsolicited_na(OTHER, "fe80::11".parse().unwrap(), "2001:db8::1".parse().unwrap());
        na[54] = 135; // a solicitation, not an advertisement
        assert_eq!(claim_in(&na), None);
        let mut routed = unsolicited_na(OTHER, "fe80::11".parse().unwrap(), "2001:db8::1".parse().unwrap());
        assert!(claim_in(&routed).is_some());
        routed[21] = 64; // hop limit: it crossed a router
        assert_eq!(claim_in(&routed), None, "an NA with hop limit below 255 is no claim (RFC 4861 7.1.2)");
        assert_eq!(mac_string(&OTHER), "02:00:00:00:00:11");
    }
}
