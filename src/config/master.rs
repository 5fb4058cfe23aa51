//! The masters (`[masters.NAME]`): their VIPs, how those reach the clients, and what to run after
//! a change; and the checks across masters (a VIP under one master only, never a sentinel's).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::addr::{SentinelAddr, SentinelEntry, unique_sentinels};
use super::announce::{self, Announce, RawAnnounce};
use super::bounded::{Bounded, Setting};
use super::cloud::{Cloud, RawCloud};
use super::error::{ConfigError, Lines, from_text};
use crate::network::vip::Vip;

/// One Redis master as named in Sentinel, and the VIPs that follow it.
#[derive(Debug, Clone)]
pub struct Master {
    /// The name Sentinel monitors it by.
    pub name: String,
    /// Its VIPs, in the order written.
    pub vips: Vec<Vip>,
    /// The interface to bind on; `None` means "the one with an address in the VIP's subnet".
    pub interface: Option<String>,
    /// An IPv4 address label (e.g. `eth0:redis`), so `ip addr` shows what the address is for.
    pub label: Option<String>,
    /// How to announce after a bind.
    pub announce: Announce,
    /// Sentinels that know this master (the file's global list unless the master has its own).
    pub sentinels: Vec<SentinelAddr>,
    /// Commands to run after a change.
    pub notify: Notify,
    /// How the VIPs reach the clients.
    pub mode: Mode,
    /// The provider API that delivers the VIPs to the holder, where ARP moves nothing.
    pub cloud: Option<Cloud>,
}

/// How a master's VIPs reach the clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// One L2 segment: the VIP is a secondary address in the hosts' subnet, announced with
    /// gratuitous ARP and unsolicited neighbour advertisements, and defended against other claims.
    #[default]
    L2,
    /// Hosts in different subnets: the VIP is a host route (/32, /128) on `lo` (or the configured
    /// interface) that the host's BGP speaker (BIRD, FRR) announces; nothing is sent on the link.
    Routed,
}

/// Notify commands of one master (argv, no shell), and their time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Run after this host bound the VIPs.
    pub on_claim: Vec<String>,
    /// Run after this host released them.
    pub on_release: Vec<String>,
    /// Killed after this long.
    pub timeout: Duration,
}

/// `notify_timeout_ms`.
enum NotifyTimeoutMs {}
impl Setting for NotifyTimeoutMs {
    const KEY: &'static str = "notify_timeout_ms";
    const MIN: u64 = 1;
    const MAX: u64 = 30_000;
    const DEFAULT: u64 = 10_000;
}

/// `mode` as written. An unknown name is kept rather than refused here: its message names the
/// master, which only [`RawMaster::build`] knows.
enum ModeName {
    Known(Mode),
    Unknown(String),
}

impl<'de> Deserialize<'de> for ModeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |s| {
            Ok(match s {
                "l2" => ModeName::Known(Mode::L2),
                "routed" => ModeName::Known(Mode::Routed),
                other => ModeName::Unknown(other.to_string()),
            })
        })
    }
}

/// An `interface`, checked against Linux's rules for names.
struct Interface(String);

impl<'de> Deserialize<'de> for Interface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |n| {
            if n.is_empty() || n.len() > 15 || n.contains('/') || n.chars().any(char::is_whitespace) {
                return Err(format!(
                    "interface {n:?} is not a valid Linux interface name (1–15 characters, no '/' or spaces)"
                ));
            }
            Ok(Interface(n.to_string()))
        })
    }
}

/// A `label`, checked for length; that it starts with the interface is checked with the master.
struct Label(String);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |s| {
            if s.is_empty() || s.len() > 15 {
                return Err(format!("label {s:?} must be 1–15 characters (Linux's limit), e.g. \"eth0:redis\""));
            }
            Ok(Label(s.to_string()))
        })
    }
}

/// A `[masters.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaster {
    mode: Option<Spanned<ModeName>>,
    vips: Spanned<Vec<Spanned<String>>>,
    interface: Option<Interface>,
    label: Option<Spanned<Label>>,
    announce: Option<RawAnnounce>,
    sentinels: Option<Vec<Spanned<SentinelEntry>>>,
    on_claim: Option<Spanned<Vec<String>>>,
    on_release: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    notify_timeout_ms: Bounded<NotifyTimeoutMs>,
    cloud: Option<RawCloud>,
}

/// What every master starts from: the file's global settings.
pub(super) struct Defaults<'a> {
    /// The global `sentinels`.
    pub(super) sentinels: &'a [SentinelAddr],
    /// `[announce]`, or the built-in schedule.
    pub(super) announce: Announce,
}

/// Every master of the file, checked one by one and then against each other.
pub(super) fn build_all(
    lines: &Lines<'_>,
    raw: BTreeMap<String, RawMaster>,
    defaults: &Defaults<'_>,
) -> Result<BTreeMap<String, Master>, ConfigError> {
    if raw.is_empty() {
        return Err(lines.whole(
            "no masters: add a `[masters.NAME]` table with `vips = [\"ADDRESS/PREFIX\"]` for each Sentinel master name",
        ));
    }
    let mut owners = VipOwners::default();
    let mut masters = BTreeMap::new();
    for (name, rm) in raw {
        let master = rm.build(lines, name, defaults, &mut owners)?;
        masters.insert(master.name.clone(), master);
    }
    owners.refuse_sentinel_addresses(lines, &masters)?;
    Ok(masters)
}

impl RawMaster {
    /// The master called `name`, its VIPs recorded in `owners`.
    fn build(
        self,
        lines: &Lines<'_>,
        name: String,
        defaults: &Defaults<'_>,
        owners: &mut VipOwners,
    ) -> Result<Master, ConfigError> {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(lines.at(
                lines.master_line(&name).unwrap_or(1),
                format!("master name {name:?} must be the non-empty name Sentinel monitors (no spaces)"),
            ));
        }
        let vips = self.parse_vips(lines, &name, owners)?;
        let interface = self.interface.as_ref().map(|i| i.0.clone());
        let label = match &self.label {
            Some(l) => Some(label_on(lines, l, interface.as_deref())?),
            None => None,
        };
        let mode = match &self.mode {
            None => Mode::L2,
            Some(m) => match m.get_ref() {
                ModeName::Known(mode) => *mode,
                ModeName::Unknown(s) => {
                    return Err(lines.err(
                        m.span(),
                        format!("mode {s:?} of master `{name}` is not \"l2\" (the default) or \"routed\""),
                    ));
                }
            },
        };
        let (interface, announce) = match mode {
            Mode::L2 => (interface, announce::resolve(lines, self.announce, defaults.announce)?),
            Mode::Routed => {
                self.refuse_for_routed(lines, &name, &vips)?;
                // The speaker picks the prefixes up from the kernel; lo needs no subnet.
                (interface.or(Some("lo".to_string())), announce::SILENT)
            }
        };
        let sentinels = match &self.sentinels {
            Some(list) => unique_sentinels(lines, list)?,
            None => defaults.sentinels.to_vec(),
        };
        let notify = Notify {
            on_claim: argv(lines, self.on_claim, "on_claim", &name)?,
            on_release: argv(lines, self.on_release, "on_release", &name)?,
            timeout: self.notify_timeout_ms.millis(),
        };
        let cloud = self.cloud.map(|c| c.build(lines, &name, &vips)).transpose()?;
        Ok(Master { name, vips, interface, label, announce, sentinels, notify, mode, cloud })
    }

    /// The VIPs, each parsed and claimed for this master.
    fn parse_vips(&self, lines: &Lines<'_>, name: &str, owners: &mut VipOwners) -> Result<Vec<Vip>, ConfigError> {
        if self.vips.get_ref().is_empty() {
            return Err(lines.err(
                self.vips.span(),
                format!("master `{name}` has no VIPs: list at least one, e.g. vips = [\"198.51.100.100/24\"]"),
            ));
        }
        let mut vips = Vec::new();
        for v in self.vips.get_ref() {
            let vip: Vip = v.get_ref().parse().map_err(|e| lines.err(v.span(), format!("master `{name}`: {e}")))?;
            owners.claim(lines, vip.addr, v.span(), name)?;
            vips.push(vip);
        }
        Ok(vips)
    }

    /// Refuses what a routed master cannot have: VIPs that are not host routes, an announce table.
    fn refuse_for_routed(&self, lines: &Lines<'_>, name: &str, vips: &[Vip]) -> Result<(), ConfigError> {
        if let Some((written, vip)) =
            self.vips.get_ref().iter().zip(vips).find(|(_, v)| v.prefix != Vip::max_prefix(v.addr))
        {
            return Err(lines.err(
                written.span(),
                format!(
                    "master `{name}` is routed: its VIPs are host routes, so write {} as {}/{}",
                    written.get_ref(),
                    vip.addr,
                    Vip::max_prefix(vip.addr)
                ),
            ));
        }
        if self.announce.is_some() {
            return Err(lines.at(
                lines.master_line(name).unwrap_or(1),
                format!("master `{name}` is routed: its VIPs reach the clients through BGP, not announcements; remove [masters.{name}.announce]"),
            ));
        }
        Ok(())
    }
}

/// The label, which Linux wants to start with the interface's name.
fn label_on(lines: &Lines<'_>, label: &Spanned<Label>, interface: Option<&str>) -> Result<String, ConfigError> {
    let s = &label.get_ref().0;
    if let Some(ifn) = interface
        && !s.starts_with(ifn)
    {
        return Err(lines.err(
            label.span(),
            format!("label {s:?} must start with the interface name (Linux requires it), e.g. \"{ifn}:redis\""),
        ));
    }
    Ok(s.clone())
}

/// A notify command: absent is none, present must name a program.
fn argv(lines: &Lines<'_>, v: Option<Spanned<Vec<String>>>, key: &str, name: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        Some(a) if a.get_ref().first().is_none_or(String::is_empty) => Err(lines.err(
            a.span(),
            format!("{key} of master `{name}` must be a command as a list of words, e.g. [\"/usr/local/bin/alert\", \"--vip\"]"),
        )),
        Some(a) => Ok(a.into_inner()),
        None => Ok(Vec::new()),
    }
}

/// Which master each VIP belongs to, and the line it is written on.
#[derive(Default)]
struct VipOwners(BTreeMap<IpAddr, (String, usize)>);

impl VipOwners {
    /// Records `addr` under master `name`; two masters fighting over one address is never meant.
    fn claim(
        &mut self,
        lines: &Lines<'_>,
        addr: IpAddr,
        span: std::ops::Range<usize>,
        name: &str,
    ) -> Result<(), ConfigError> {
        if let Some((other, other_line)) = self.0.get(&addr) {
            return Err(lines.err(span, format!("VIP {addr} is listed twice (master `{other}`, line {other_line}, and master `{name}`): keep it under one master only")));
        }
        self.0.insert(addr, (name.to_string(), lines.line(span)));
        Ok(())
    }

    /// Refuses a VIP that is a sentinel's address: it is some host's own, and moving it would cut
    /// that host off.
    fn refuse_sentinel_addresses(
        &self,
        lines: &Lines<'_>,
        masters: &BTreeMap<String, Master>,
    ) -> Result<(), ConfigError> {
        for s in masters.values().flat_map(|m| &m.sentinels) {
            if let Some(ip) = s.ip()
                && let Some((owner, line)) = self.0.get(&ip)
            {
                return Err(lines.at(
                    *line,
                    format!(
                        "VIP {ip} of master `{owner}` is also the address of sentinel {s}, i.e. a host's own address: pick an unused address for the VIP"
                    ),
                ));
            }
        }
        Ok(())
    }
}
