//! Announcing a virtual IP on the local link: gratuitous ARP for IPv4 (RFC 826 / RFC 5227) and
//! unsolicited neighbour advertisements for IPv6 (RFC 4861 §7.2.6), so that neighbours and
//! switches update their caches as soon as the VIP has moved to this host.
//!
//! Frames are built with `pnet_packet` and sent through a send-only `AF_PACKET` socket.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use pnet_packet::MutablePacket;
use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;

/// An Ethernet hardware address.
pub type Mac = [u8; 6];

const BROADCAST: Mac = [0xff; 6];
const ZERO_MAC: Mac = [0; 6];
/// ff02::1 (all nodes) mapped to Ethernet multicast per RFC 2464 §7.
const ALL_NODES_MAC: Mac = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ETH_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER_LEN: usize = 40;
/// Type, code, checksum, flags/reserved, target address.
const NA_FIXED_LEN: usize = 24;
/// The target link-layer address option: type, length, 6-byte MAC.
const TLLA_OPTION_LEN: usize = 8;
const NA_LEN: usize = NA_FIXED_LEN + TLLA_OPTION_LEN;

const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + ARP_LEN;
const NA_FRAME_LEN: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;

// The `expect`s below guard invariants, not runtime conditions: every buffer has a constant length
// that is at least the minimum size of the packet laid over it (the unit tests build every frame).
const SIZED: &str = "frame buffer is sized for this packet";

/// Builds a gratuitous ARP *request* (RFC 5227 "ARP announcement"): broadcast, sha = `mac`,
/// spa = tpa = `vip`, tha = 00:00:00:00:00:00; 42 bytes, unpadded.
pub fn garp_request(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp_frame(mac, vip, ArpOperations::Request, ZERO_MAC)
}

/// Builds a gratuitous ARP *reply* (the form `arping -A` sends): broadcast, oper 2, sha = tha =
/// `mac`, spa = tpa = `vip`; 42 bytes, unpadded. Linux treats a reply as gratuitous (and overrides
/// a fresh neighbour entry with it) only when tha equals sha, which is also what iputils sends.
pub fn garp_reply(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp_frame(mac, vip, ArpOperations::Reply, mac)
}

fn arp_frame(mac: Mac, vip: Ipv4Addr, operation: ArpOperation, tha: Mac) -> Vec<u8> {
    let mut buf = vec![0u8; ARP_FRAME_LEN];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect(SIZED);
    write_ethernet_header(&mut eth, BROADCAST, mac, EtherTypes::Arp);
    let mut arp = MutableArpPacket::new(eth.payload_mut()).expect(SIZED);
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(operation);
    arp.set_sender_hw_addr(mac.into());
    arp.set_sender_proto_addr(vip);
    arp.set_target_hw_addr(tha.into());
    arp.set_target_proto_addr(vip);
    buf
}

/// Builds an IPv6 unsolicited neighbour advertisement for `vip` (RFC 4861 §4.4, §7.2.6): from
/// `source` to ff02::1, hop limit 255, flags O=1 (R=S=0), with a target link-layer address option.
pub fn unsolicited_na(mac: Mac, source: Ipv6Addr, vip: Ipv6Addr) -> Vec<u8> {
    let mut buf = vec![0u8; NA_FRAME_LEN];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect(SIZED);
    write_ethernet_header(&mut eth, ALL_NODES_MAC, mac, EtherTypes::Ipv6);

    let mut ip = MutableIpv6Packet::new(eth.payload_mut()).expect(SIZED);
    ip.set_version(6);
    ip.set_traffic_class(0);
    ip.set_flow_label(0);
    ip.set_payload_length(NA_LEN as u16);
    ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
    // Receivers drop ND messages whose hop limit is not 255 (RFC 4861 §7.1.2).
    ip.set_hop_limit(255);
    ip.set_source(source);
    ip.set_destination(ALL_NODES);

    let mut na = MutableNeighborAdvertPacket::new(ip.payload_mut()).expect(SIZED);
    na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
    na.set_icmpv6_code(Icmpv6Code(0));
    // Override, so that caches holding the previous owner's MAC are replaced; not Solicited,
    // since nobody asked (RFC 4861 §7.2.6).
    na.set_flags(NeighborAdvertFlags::Override);
    na.set_reserved(0);
    na.set_target_addr(vip);
    na.set_options(&[NdpOption {
        option_type: NdpOptionTypes::TargetLLAddr,
        length: 1, // in units of 8 octets
        data: mac.to_vec(),
    }]);
    let checksum = icmpv6::checksum(&Icmpv6Packet::new(na.packet()).expect(SIZED), &source, &ALL_NODES);
    na.set_checksum(checksum);
    buf
}

fn write_ethernet_header(eth: &mut MutableEthernetPacket<'_>, dst: Mac, src: Mac, ty: EtherType) {
    eth.set_destination(dst.into());
    eth.set_source(src.into());
    eth.set_ethertype(ty);
}

/// The frames one announcement round sends for `vip`: for IPv4 [request, reply]; for IPv6 [na],
/// sent from `link_local` or, when the interface has none, from the VIP itself.
pub fn round_frames(mac: Mac, link_local: Option<Ipv6Addr>, vip: IpAddr) -> Vec<Vec<u8>> {
    match vip {
        IpAddr::V4(v4) => vec![garp_request(mac, v4), garp_reply(mac, v4)],
        IpAddr::V6(v6) => vec![unsolicited_na(mac, link_local.unwrap_or(v6), v6)],
    }
}

/// Names a frame built by this module, for error messages.
fn describe(frame: &[u8]) -> &'static str {
    match (frame.get(12..14), frame.get(20..22)) {
        (Some([0x08, 0x06]), Some([0x00, 0x01])) => "gratuitous ARP request",
        (Some([0x08, 0x06]), Some([0x00, 0x02])) => "gratuitous ARP reply",
        (Some([0x86, 0xdd]), _) => "unsolicited neighbour advertisement",
        _ => "frame",
    }
}

/// A send-only `AF_PACKET`/`SOCK_RAW` socket (protocol 0, so it receives nothing).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket; fails with `PermissionDenied` without CAP_NET_RAW and with the raw OS
    /// error EAFNOSUPPORT where a sandbox forbids `AF_PACKET` (the `io::Error` is returned as is).
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain syscall with constant arguments; no pointers involved.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Sends one full Ethernet frame out of interface `ifindex`; the link-layer address and
    /// protocol given to the kernel are taken from the frame's own header.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        if frame.len() < ETH_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame of {} bytes has no Ethernet header", frame.len()),
            ));
        }
        let sll_ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("interface index {ifindex} out of range"))
        })?;
        let mut sll_addr = [0u8; 8];
        sll_addr[..6].copy_from_slice(&frame[..6]);
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            // The ethertype bytes are already in network order; keep them as they are.
            sll_protocol: u16::from_ne_bytes([frame[12], frame[13]]),
            sll_ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr,
        };
        loop {
            // MSG_DONTWAIT: this runs on the async runtime, which must never block on a full
            // device queue; a dropped announcement is retried by the next round anyway.
            // SAFETY: `frame` and `addr` are live for the call and the lengths passed match them.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                    (&raw const addr).cast::<libc::sockaddr>(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if sent as usize != frame.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {sent} of {} bytes", frame.len())));
            }
            return Ok(());
        }
    }
}

/// What to announce on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Kernel index of the interface the frames leave through.
    pub ifindex: u32,
    /// Interface name, for messages.
    pub ifname: String,
    /// The interface's MAC, announced as the VIPs' owner.
    pub mac: Mac,
    /// The interface's IPv6 link-local address, the preferred source of neighbour advertisements.
    pub link_local: Option<Ipv6Addr>,
    /// The addresses to announce.
    pub vips: Vec<IpAddr>,
}

/// How many rounds and how far apart. rounds >= 1 (0 means "don't announce": return at once).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Number of announcement rounds; 0 sends nothing.
    pub rounds: u32,
    /// Pause between the start of one round and the next.
    pub interval: Duration,
}

/// Result of an announcement.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames the kernel accepted.
    pub frames_sent: u32,
    /// Rounds carried out (whether or not their frames could be sent).
    pub rounds: u32,
    /// When the first frame was accepted by the kernel, if any was.
    pub first_frame_at: Option<Instant>,
    /// One message per failed frame, naming the interface, the VIP and the OS error.
    pub errors: Vec<String>,
}

/// Sends `schedule.rounds` rounds for every VIP of `target`: the first immediately, then one
/// every `interval`. Send errors are recorded in the report and never stop the other frames.
pub async fn announce(socket: &PacketSocket, target: &Target, schedule: Schedule) -> Report {
    let mut report = Report::default();
    // The frames are the same every round; build them once.
    let frames: Vec<(IpAddr, Vec<u8>)> = target
        .vips
        .iter()
        .flat_map(|&vip| round_frames(target.mac, target.link_local, vip).into_iter().map(move |frame| (vip, frame)))
        .collect();

    for round in 0..schedule.rounds {
        if round > 0 {
            tokio::time::sleep(schedule.interval).await;
        }
        for (vip, frame) in &frames {
            match socket.send(target.ifindex, frame) {
                Ok(()) => {
                    report.first_frame_at.get_or_insert_with(Instant::now);
                    report.frames_sent += 1;
                }
                Err(err) => {
                    let msg = format!(
                        "{} (ifindex {}): sending {} for {vip} failed: {err}",
                        target.ifname,
                        target.ifindex,
                        describe(frame)
                    );
                    tracing::warn!("{msg}");
                    report.errors.push(msg);
                }
            }
        }
        report.rounds += 1;
        tracing::debug!(
            interface = %target.ifname,
            round = round + 1,
            of = schedule.rounds,
            "announced {} address(es)",
            target.vips.len()
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs::File;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MAC: Mac = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0x5eff, 0xfe00, 0x5301);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

    #[rustfmt::skip]
    const EXPECTED_GARP_REQUEST: [u8; 42] = [
        // Ethernet header
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // source: MAC
        0x08, 0x06,                         // ethertype: ARP
        // ARP (RFC 826)
        0x00, 0x01,                         // ar$hrd: Ethernet (1)
        0x08, 0x00,                         // ar$pro: IPv4 (0x0800)
        0x06,                               // ar$hln: 6
        0x04,                               // ar$pln: 4
        0x00, 0x01,                         // ar$op: REQUEST (1)
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // ar$sha: MAC
        198, 51, 100, 10,                   // ar$spa: VIP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ar$tha: zero (RFC 5227 announcement)
        198, 51, 100, 10,                   // ar$tpa: VIP
    ];

    #[rustfmt::skip]
    const EXPECTED_GARP_REPLY: [u8; 42] = [
        // Ethernet header
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // source: MAC
        0x08, 0x06,                         // ethertype: ARP
        // ARP (RFC 826)
        0x00, 0x01,                         // ar$hrd: Ethernet (1)
        0x08, 0x00,                         // ar$pro: IPv4 (0x0800)
        0x06,                               // ar$hln: 6
        0x04,                               // ar$pln: 4
        0x00, 0x02,                         // ar$op: REPLY (2)
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // ar$sha: MAC
        198, 51, 100, 10,                   // ar$spa: VIP
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // ar$tha: MAC again (as `arping -A`; Linux's GARP test)
        198, 51, 100, 10,                   // ar$tpa: VIP
    ];

    #[rustfmt::skip]
    const EXPECTED_NA: [u8; 86] = [
        // Ethernet header
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // destination: multicast for ff02::1 (RFC 2464)
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // source: MAC
        0x86, 0xdd,                         // ethertype: IPv6
        // IPv6 header (RFC 8200)
        0x60, 0x00, 0x00, 0x00,             // version 6, traffic class 0, flow label 0
        0x00, 0x20,                         // payload length: 32
        58,                                 // next header: ICMPv6
        255,                                // hop limit: 255 (RFC 4861 §7.1.2)
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // source: fe80::5eff:fe00:5301
        0x00, 0x00, 0x5e, 0xff, 0xfe, 0x00, 0x53, 0x01,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // destination: ff02::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // Neighbor Advertisement (RFC 4861 §4.4)
        136,                                // type: Neighbor Advertisement
        0,                                  // code: 0
        0xc7, 0x52,                         // checksum (computed independently, checked below)
        0x20, 0x00, 0x00, 0x00,             // R=0 S=0 O=1, reserved 0
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target address: 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        // Target Link-Layer Address option (RFC 4861 §4.6.1)
        2,                                  // type: Target Link-Layer Address
        1,                                  // length: 1 (x 8 octets)
        0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // link-layer address: MAC
    ];

    /// Offsets into an Ethernet + IPv6 + ICMPv6 frame.
    const IP6_SRC: std::ops::Range<usize> = 22..38;
    const IP6_DST: std::ops::Range<usize> = 38..54;
    const ICMP6: std::ops::RangeFrom<usize> = 54..;

    /// RFC 1071 one's-complement sum of 16-bit big-endian words, folded to 16 bits.
    fn ones_complement_sum(chunks: &[&[u8]]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in chunks {
            for pair in chunk.chunks(2) {
                let hi = u32::from(pair[0]) << 8;
                let lo = pair.get(1).copied().map_or(0, u32::from);
                sum += hi | lo;
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The ICMPv6 checksum of `frame`'s message, computed by hand over the RFC 8200 §8.1
    /// pseudo-header (source, destination, upper-layer length, next header 58).
    fn hand_icmpv6_checksum(frame: &[u8]) -> u16 {
        let icmp = &frame[ICMP6];
        let mut zeroed = icmp.to_vec();
        zeroed[2] = 0;
        zeroed[3] = 0;
        let length = (icmp.len() as u32).to_be_bytes();
        let next_header = [0, 0, 0, 58];
        !ones_complement_sum(&[&frame[IP6_SRC], &frame[IP6_DST], &length, &next_header, &zeroed])
    }

    fn frame_checksum(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[56], frame[57]])
    }

    #[test]
    fn garp_request_matches_rfc_layout() {
        assert_eq!(garp_request(MAC, VIP4), EXPECTED_GARP_REQUEST);
    }

    #[test]
    fn garp_reply_matches_rfc_layout() {
        assert_eq!(garp_reply(MAC, VIP4), EXPECTED_GARP_REPLY);
    }

    #[test]
    fn unsolicited_na_matches_rfc_layout() {
        assert_eq!(unsolicited_na(MAC, LINK_LOCAL, VIP6), EXPECTED_NA);
    }

    #[test]
    fn unsolicited_na_checksum_verifies_independently() {
        let frame = unsolicited_na(MAC, LINK_LOCAL, VIP6);
        assert_eq!(frame_checksum(&frame), hand_icmpv6_checksum(&frame));
        assert_eq!(hand_icmpv6_checksum(&EXPECTED_NA), 0xc752);
        // A receiver's check: the sum over pseudo-header and message, checksum included, is 0xffff.
        let length = 32u32.to_be_bytes();
        let sum = ones_complement_sum(&[&frame[IP6_SRC], &frame[IP6_DST], &length, &[0, 0, 0, 58], &frame[ICMP6]]);
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn round_frames_ipv4_is_request_then_reply() {
        let frames = round_frames(MAC, Some(LINK_LOCAL), IpAddr::V4(VIP4));
        assert_eq!(frames, vec![EXPECTED_GARP_REQUEST.to_vec(), EXPECTED_GARP_REPLY.to_vec()]);
    }

    #[test]
    fn round_frames_ipv6_uses_link_local_source() {
        let frames = round_frames(MAC, Some(LINK_LOCAL), IpAddr::V6(VIP6));
        assert_eq!(frames, vec![EXPECTED_NA.to_vec()]);
    }

    #[test]
    fn round_frames_ipv6_without_link_local_uses_vip_source() {
        let frames = round_frames(MAC, None, IpAddr::V6(VIP6));
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.len(), EXPECTED_NA.len());
        // Source address is the VIP; everything but source and checksum is unchanged.
        assert_eq!(frame[IP6_SRC], VIP6.octets());
        assert_eq!(frame[..22], EXPECTED_NA[..22]);
        assert_eq!(frame[38..56], EXPECTED_NA[38..56]);
        assert_eq!(frame[58..], EXPECTED_NA[58..]);
        assert_eq!(frame_checksum(frame), hand_icmpv6_checksum(frame));
        assert_eq!(frame_checksum(frame), 0x480c);
    }

    /// A `PacketSocket` over a UDP socket: every `sendto` with a `sockaddr_ll` fails, which
    /// exercises the error paths without privileges and without sending anything.
    fn failing_socket() -> PacketSocket {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP socket");
        PacketSocket { fd: OwnedFd::from(udp) }
    }

    fn target(ifindex: u32, ifname: &str) -> Target {
        Target {
            ifindex,
            ifname: ifname.to_owned(),
            mac: MAC,
            link_local: Some(LINK_LOCAL),
            vips: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
        }
    }

    #[test]
    fn send_rejects_frame_without_ethernet_header() {
        let err = failing_socket().send(1, &[0u8; 13]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn announce_records_every_send_error_without_stopping() {
        let schedule = Schedule { rounds: 2, interval: Duration::from_millis(1) };
        let report = announce(&failing_socket(), &target(7, "vip0"), schedule).await;
        assert_eq!(report.rounds, 2);
        assert_eq!(report.frames_sent, 0);
        assert!(report.first_frame_at.is_none());
        // 2 rounds x (2 ARP frames + 1 NA), each failing on its own.
        assert_eq!(report.errors.len(), 6, "{:#?}", report.errors);
        for err in &report.errors {
            assert!(err.starts_with("vip0 (ifindex 7): sending "), "{err}");
        }
        assert!(report.errors[0].contains("ARP request for 198.51.100.10 failed: "));
        assert!(report.errors[1].contains("ARP reply for 198.51.100.10 failed: "));
        assert!(report.errors[2].contains("advertisement for 2001:db8::10 failed: "));
        // The OS error is carried in the message.
        assert!(report.errors[0].contains("os error"), "{}", report.errors[0]);
    }

    #[tokio::test]
    async fn announce_zero_rounds_sends_nothing() {
        let schedule = Schedule { rounds: 0, interval: Duration::from_secs(3600) };
        let report = announce(&failing_socket(), &target(7, "vip0"), schedule).await;
        assert_eq!(report.rounds, 0);
        assert_eq!(report.frames_sent, 0);
        assert!(report.errors.is_empty());
    }

    // ---- tests that need root (network namespaces, CAP_NET_RAW) ----

    /// Whether the live tests can run; prints a loud SKIPPED line when they cannot.
    fn live_tests_possible(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: {test} needs root/CAP_NET_RAW (not running as root)");
            return false;
        }
        let ip_works = Command::new("ip").arg("-V").output().is_ok_and(|out| out.status.success());
        if !ip_works {
            eprintln!("SKIPPED: {test} needs root/CAP_NET_RAW and the `ip` tool (not found)");
            return false;
        }
        true
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// Two namespaces joined by a veth pair; deleted on drop, even when the test panics.
    struct VethPair {
        ns_a: String,
        ns_b: String,
        if_a: String,
        if_b: String,
    }

    impl VethPair {
        fn create(mac_a: Mac) -> Self {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let pid = std::process::id();
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            // Interface names are limited to 15 bytes.
            let pair = Self {
                ns_a: format!("vipctl-test-a-{pid}-{seq}"),
                ns_b: format!("vipctl-test-b-{pid}-{seq}"),
                if_a: format!("vta{pid}x{seq}"),
                if_b: format!("vtb{pid}x{seq}"),
            };
            let mac_a = mac_a.map(|b| format!("{b:02x}")).join(":");
            ip(&["netns", "add", &pair.ns_a]);
            ip(&["netns", "add", &pair.ns_b]);
            ip(&[
                "link", "add", &pair.if_a, "address", &mac_a, "netns", &pair.ns_a, "type", "veth", "peer", "name",
                &pair.if_b, "netns", &pair.ns_b,
            ]);
            ip(&["-n", &pair.ns_a, "link", "set", &pair.if_a, "up"]);
            ip(&["-n", &pair.ns_b, "link", "set", &pair.if_b, "up"]);
            pair
        }
    }

    impl Drop for VethPair {
        fn drop(&mut self) {
            // Deleting a namespace destroys the veth end inside it, and with it the peer.
            for ns in [&self.ns_a, &self.ns_b] {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }

    /// Runs `work` on a fresh thread that has first joined network namespace `ns`; sockets it
    /// opens stay bound to that namespace whichever thread uses them later.
    fn in_netns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns file");
            // SAFETY: `file` is an open namespace fd; setns only affects this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            work()
        })
        .join()
        .expect("netns thread panicked")
    }

    fn ifindex_of(name: &str) -> u32 {
        let cname = std::ffi::CString::new(name).expect("interface name");
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert_ne!(index, 0, "if_nametoindex({name}): {}", io::Error::last_os_error());
        index
    }

    /// An AF_PACKET socket receiving every frame (ETH_P_ALL) arriving on one interface.
    fn open_sniffer(ifindex: u32) -> OwnedFd {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol)) };
        assert!(fd >= 0, "sniffer socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: protocol,
            sll_ifindex: ifindex as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed matches it.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        assert_eq!(rc, 0, "bind sniffer: {}", io::Error::last_os_error());
        // Bound each recv, so that the receive loop below cannot hang.
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: `timeout` is a valid timeval and the length passed matches it.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
        fd
    }

    /// Receives frames until each of `wanted` has been seen `copies` times, at most 2 s and
    /// 1000 frames; returns how often each wanted frame arrived.
    fn receive(fd: &OwnedFd, wanted: &[Vec<u8>], copies: u32) -> HashMap<Vec<u8>, u32> {
        let mut seen: HashMap<Vec<u8>, u32> = wanted.iter().map(|f| (f.clone(), 0)).collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 2048];
        for _ in 0..1000 {
            if Instant::now() >= deadline || seen.values().all(|&n| n >= copies) {
                break;
            }
            // SAFETY: `buf` is writable for its full length for the duration of the call.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                    _ => panic!("recv: {err}"),
                }
            }
            // Other traffic (the kernel's own IPv6 RS/MLD/DAD on a fresh link) is ignored.
            if let Some(count) = seen.get_mut(&buf[..n as usize]) {
                *count += 1;
            }
        }
        seen
    }

    #[test]
    fn live_announce_over_veth_arrives_intact() {
        if !live_tests_possible("live_announce_over_veth_arrives_intact") {
            return;
        }
        let pair = VethPair::create(MAC);

        let if_b = pair.if_b.clone();
        let (sniffer, _) = in_netns(&pair.ns_b, move || {
            let index = ifindex_of(&if_b);
            (open_sniffer(index), index)
        });
        let if_a = pair.if_a.clone();
        let (socket, index_a) = in_netns(&pair.ns_a, move || {
            let socket = PacketSocket::open().expect("open PacketSocket as root");
            (socket, ifindex_of(&if_a))
        });

        let target = Target {
            ifindex: index_a,
            ifname: pair.if_a.clone(),
            mac: MAC,
            link_local: Some(LINK_LOCAL),
            vips: vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)],
        };
        let schedule = Schedule { rounds: 3, interval: Duration::from_millis(20) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
        let started = Instant::now();
        let report = runtime.block_on(announce(&socket, &target, schedule));
        let elapsed = started.elapsed();

        assert!(report.errors.is_empty(), "{:#?}", report.errors);
        assert_eq!(report.rounds, 3);
        assert_eq!(report.frames_sent, 9, "3 rounds x (ARP request + reply + NA)");
        let first = report.first_frame_at.expect("first frame time");
        assert!(first >= started && first - started < Duration::from_millis(20));
        assert!(elapsed >= Duration::from_millis(40), "rounds 20 ms apart: {elapsed:?}");

        let wanted: Vec<Vec<u8>> = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)]
            .into_iter()
            .flat_map(|vip| round_frames(MAC, Some(LINK_LOCAL), vip))
            .collect();
        assert_eq!(wanted.len(), 3);
        let seen = receive(&sniffer, &wanted, 3);
        for frame in &wanted {
            assert_eq!(
                seen[frame], 3,
                "frame (ethertype {:02x}{:02x}) should arrive unchanged once per round",
                frame[12], frame[13]
            );
        }
    }

    #[test]
    fn live_send_to_missing_interface_is_reported() {
        if !live_tests_possible("live_send_to_missing_interface_is_reported") {
            return;
        }
        let pair = VethPair::create(MAC);
        let socket = in_netns(&pair.ns_a, || PacketSocket::open().expect("open PacketSocket"));
        // Index 0 never names an interface, so every send fails (ENXIO) without leaving the host.
        let target =
            Target { ifindex: 0, ifname: "gone0".to_owned(), mac: MAC, link_local: None, vips: vec![IpAddr::V4(VIP4)] };
        let schedule = Schedule { rounds: 1, interval: Duration::from_millis(1) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
        let report = runtime.block_on(announce(&socket, &target, schedule));
        assert_eq!(report.frames_sent, 0);
        assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
        assert!(report.errors[0].starts_with("gone0 (ifindex 0): "));
        assert!(report.errors[0].contains("198.51.100.10"));
    }

    #[test]
    fn open_without_cap_net_raw_is_permission_denied() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            // Unprivileged already: the plain call must fail the documented way.
            match PacketSocket::open() {
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    eprintln!("SKIPPED: AF_PACKET forbidden here (EAFNOSUPPORT)");
                }
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
                Ok(_) => eprintln!("SKIPPED: this user has CAP_NET_RAW"),
            }
            return;
        }
        // As root: drop CAP_NET_RAW from this thread only (capabilities are per thread).
        let result = std::thread::spawn(|| {
            // CAP_NET_RAW is capability 13 (linux/capability.h); libc does not export it.
            drop_thread_capability(13);
            PacketSocket::open().map(|_| ())
        })
        .join()
        .expect("capability thread panicked");
        let err = result.expect_err("open must fail without CAP_NET_RAW");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    }

    /// Removes `cap` from the calling thread's effective set with raw capget/capset.
    fn drop_thread_capability(cap: u32) {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut header = Header { version: VERSION_3, pid: 0 };
        let mut data = [Data::default(); 2];
        // SAFETY: header and a two-element data array, as _LINUX_CAPABILITY_VERSION_3 requires.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        // SAFETY: as above; pid 0 makes capset apply to the calling thread only.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
    }
}
