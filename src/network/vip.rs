//! A virtual IP address with its prefix length, and subnet arithmetic on it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A VIP as written in the config: an address and the prefix length of the subnet it lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    /// The address itself.
    pub addr: IpAddr,
    /// The prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub prefix: u8,
}

impl Vip {
    /// The widest prefix allowed for this address family.
    pub fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// True when `other` lies in this VIP's subnet (same family, same network bits).
    pub fn subnet_contains(&self, other: IpAddr) -> bool {
        same_network(self.addr, other, self.prefix)
    }
}

/// True when `a` and `b` are of one family and agree on the first `prefix` bits.
pub fn same_network(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = mask_u32(prefix.min(32));
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = mask_u128(prefix.min(128));
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn mask_u32(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

fn mask_u128(prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) }
}

/// Why a VIP string was refused; the text is written to be shown to an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VipError {
    /// No `/prefix`.
    #[error(
        "`{0}` has no prefix length: write it as ADDRESS/PREFIX, e.g. `{0}/24` (the prefix of the subnet the VIP lives in)"
    )]
    MissingPrefix(String),
    /// The address part did not parse.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The prefix part did not parse or is too long for the family.
    #[error("prefix `/{prefix}` of `{vip}` is out of range: use 1–{max} for this address family")]
    BadPrefix {
        /// The whole VIP text.
        vip: String,
        /// The prefix text.
        prefix: String,
        /// The widest prefix for the family.
        max: u8,
    },
    /// An address that can never be a host's unicast VIP.
    #[error("`{vip}` cannot be a VIP: it is {what}")]
    NotUnicast {
        /// The whole VIP text.
        vip: String,
        /// What kind of address it is.
        what: &'static str,
    },
}

impl FromStr for Vip {
    type Err = VipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr_s, prefix_s) = s.split_once('/').ok_or_else(|| VipError::MissingPrefix(s.to_string()))?;
        let addr: IpAddr = addr_s.parse().map_err(|_| VipError::BadAddress(addr_s.to_string()))?;
        let max = Vip::max_prefix(addr);
        let prefix = prefix_s
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| VipError::BadPrefix { vip: s.to_string(), prefix: prefix_s.to_string(), max })?;
        let vip = Vip { addr, prefix };
        if let Some(what) = vip.not_unicast_reason() {
            return Err(VipError::NotUnicast { vip: s.to_string(), what });
        }
        Ok(vip)
    }
}

impl Vip {
    /// Why this address cannot be a VIP, if it cannot.
    fn not_unicast_reason(&self) -> Option<&'static str> {
        match self.addr {
            IpAddr::V4(a) => {
                if a.is_unspecified() {
                    Some("the unspecified address")
                } else if a.is_loopback() {
                    Some("a loopback address")
                } else if a.is_multicast() || a.is_broadcast() {
                    Some("a multicast or broadcast address")
                } else if self.prefix <= 30 && u32::from(a) & !mask_u32(self.prefix) == 0 {
                    Some("the network address of its subnet")
                } else if self.prefix <= 30 && u32::from(a) | mask_u32(self.prefix) == u32::MAX {
                    Some("the broadcast address of its subnet")
                } else {
                    None
                }
            }
            IpAddr::V6(a) => {
                if a.is_unspecified() {
                    Some("the unspecified address")
                } else if a.is_loopback() {
                    Some("a loopback address")
                } else if a.is_multicast() {
                    Some("a multicast address")
                } else if a.is_unicast_link_local() {
                    Some("a link-local address (it needs a zone; use a global or unique-local address)")
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_families() {
        let v: Vip = "198.51.100.100/24".parse().unwrap();
        assert_eq!(v.to_string(), "198.51.100.100/24");
        let v: Vip = "2001:db8:51::100/64".parse().unwrap();
        assert_eq!(v.prefix, 64);
    }

    #[test]
    fn refuses_bad_forms() {
        assert!(matches!("198.51.100.100".parse::<Vip>(), Err(VipError::MissingPrefix(_))));
        assert!(matches!("198.51.100.100/33".parse::<Vip>(), Err(VipError::BadPrefix { .. })));
        assert!(matches!("198.51.100.100/0".parse::<Vip>(), Err(VipError::BadPrefix { .. })));
        assert!(matches!("2001:db8::1/129".parse::<Vip>(), Err(VipError::BadPrefix { .. })));
        assert!(matches!("198.51.100/24".parse::<Vip>(), Err(VipError::BadAddress(_))));
        assert!(matches!("198.51.100.0/24".parse::<Vip>(), Err(VipError::NotUnicast { .. })));
        assert!(matches!("198.51.100.255/24".parse::<Vip>(), Err(VipError::NotUnicast { .. })));
        assert!(matches!("fe80::1/64".parse::<Vip>(), Err(VipError::NotUnicast { .. })));
        assert!(matches!("127.0.0.2/8".parse::<Vip>(), Err(VipError::NotUnicast { .. })));
        // /31 and /32 have no network or broadcast address to refuse.
        assert!("198.51.100.0/31".parse::<Vip>().is_ok());
        assert!("198.51.100.7/32".parse::<Vip>().is_ok());
    }

    #[test]
    fn subnet_membership() {
        let v: Vip = "198.51.100.100/24".parse().unwrap();
        assert!(v.subnet_contains("198.51.100.11".parse().unwrap()));
        assert!(!v.subnet_contains("198.51.101.11".parse().unwrap()));
        assert!(!v.subnet_contains("2001:db8::1".parse().unwrap()));
        let v6: Vip = "2001:db8:51::100/64".parse().unwrap();
        assert!(v6.subnet_contains("2001:db8:51::11".parse().unwrap()));
        assert!(!v6.subnet_contains("2001:db8:52::11".parse().unwrap()));
    }
}
