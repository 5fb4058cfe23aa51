//! `[masters.NAME.cloud]`: the provider whose API delivers the master's VIPs to the host that holds
//! them, where the network ignores gratuitous ARP (AWS VPCs, GCP VPCs, Hetzner Cloud).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::bounded::{Bounded, Setting};
use super::error::{ConfigError, Lines};
use crate::network::vip::Vip;

/// How one master's VIPs are delivered by a provider's API after vipctl binds them here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// The provider, and what it moves.
    pub provider: Provider,
    /// The API's base URL; `None` is the provider's public endpoint. Set for a VPC endpoint or an
    /// emulator.
    pub endpoint: Option<String>,
    /// The instance metadata service (AWS IMDSv2, Hetzner's).
    pub metadata_endpoint: String,
    /// A root-only file with the API credentials; without one they come from the instance's
    /// metadata (an AWS instance role) or the provider's variable.
    pub credentials_file: Option<PathBuf>,
    /// Bounds of one HTTP request.
    pub timeouts: Timeouts,
    /// Failed deliveries are retried with back-off for this long, then at every check.
    pub retry_for: Duration,
    /// A delivered VIP is checked this often: a late call of another host cannot keep it.
    pub verify_every: Duration,
}

/// Time bounds of one API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To set up the connection (TCP and TLS).
    pub connect: Duration,
    /// For the whole request, answer included.
    pub total: Duration,
}

/// A provider and what its API moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// AWS EC2: a secondary private IP of this instance's ENI (`AssignPrivateIpAddresses` with
    /// `AllowReassignment`), or with `route_tables` the VIP's /32 route in each
    /// (`ReplaceRoute`): an "overlay IP" outside the VPC's subnets.
    Aws {
        /// The region; `None` reads it from instance metadata.
        region: Option<String>,
        /// Route tables whose VIP route points at this instance's ENI; empty: a secondary IP.
        route_tables: Vec<String>,
    },
    /// GCP Compute Engine: an alias IP range (the VIP's /32) of this instance's network interface
    /// (`instances.updateNetworkInterface` with the interface's fingerprint).
    Gcp {
        /// The interface's name in the API, `nic0` unless set.
        network_interface: String,
        /// The subnet's secondary range the VIPs come from; `None`: its primary range.
        subnetwork_range_name: Option<String>,
    },
    /// Hetzner Cloud: a floating IP assigned to this server, or an alias IP in a private network.
    Hetzner {
        /// The floating IP's id (its address must be the master's VIP).
        floating_ip: Option<u64>,
        /// The private network's id, for alias IPs.
        network: Option<u64>,
    },
}

impl Provider {
    /// Its name in the config, the logs and the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Aws { .. } => "aws",
            Provider::Gcp { .. } => "gcp",
            Provider::Hetzner { .. } => "hetzner",
        }
    }

    /// What it moves, for people.
    pub fn moves(&self) -> String {
        match self {
            Provider::Aws { route_tables, .. } if route_tables.is_empty() => "AWS secondary private IP".into(),
            Provider::Aws { route_tables, .. } => format!("AWS route in {}", route_tables.join(", ")),
            Provider::Gcp { network_interface, .. } => format!("GCP alias IP range of {network_interface}"),
            Provider::Hetzner { floating_ip: Some(id), .. } => format!("Hetzner floating IP {id}"),
            Provider::Hetzner { network, .. } => format!("Hetzner alias IP in network {}", network.unwrap_or(0)),
        }
    }
}

enum ConnectTimeoutMs {}
impl Setting for ConnectTimeoutMs {
    const KEY: &'static str = "cloud connect_timeout_ms";
    const MIN: u64 = 50;
    const MAX: u64 = 10_000;
    const DEFAULT: u64 = 1_000;
}

enum TimeoutMs {}
impl Setting for TimeoutMs {
    const KEY: &'static str = "cloud timeout_ms";
    const MIN: u64 = 100;
    const MAX: u64 = 30_000;
    const DEFAULT: u64 = 5_000;
}

enum RetryForMs {}
impl Setting for RetryForMs {
    const KEY: &'static str = "cloud retry_for_ms";
    const MIN: u64 = 0;
    const MAX: u64 = 600_000;
    const DEFAULT: u64 = 60_000;
    const NOTE: &'static str = "0 retries only at each check; ";
}

enum VerifyEveryMs {}
impl Setting for VerifyEveryMs {
    const KEY: &'static str = "cloud verify_every_ms";
    const MIN: u64 = 1_000;
    const MAX: u64 = 3_600_000;
    const DEFAULT: u64 = 30_000;
}

/// The default metadata service: the link-local address AWS, GCP (`metadata.google.internal`)
/// and Hetzner answer on.
pub const DEFAULT_METADATA: &str = "http://169.254.169.254";

/// A provider's own key: its name, where it is written (if it is), the providers it belongs to.
type ProviderKey<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [&'a str]);

/// A `[masters.NAME.cloud]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloud {
    provider: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    metadata_endpoint: Option<Spanned<String>>,
    credentials_file: Option<Spanned<PathBuf>>,
    region: Option<Spanned<String>>,
    route_tables: Option<Spanned<Vec<String>>>,
    floating_ip: Option<Spanned<u64>>,
    network: Option<Spanned<u64>>,
    network_interface: Option<Spanned<String>>,
    subnetwork_range_name: Option<Spanned<String>>,
    #[serde(default)]
    connect_timeout_ms: Bounded<ConnectTimeoutMs>,
    #[serde(default)]
    timeout_ms: Bounded<TimeoutMs>,
    #[serde(default)]
    retry_for_ms: Bounded<RetryForMs>,
    #[serde(default)]
    verify_every_ms: Bounded<VerifyEveryMs>,
}

impl RawCloud {
    /// The checked table of master `name`, whose VIPs are `vips`.
    pub(super) fn build(self, lines: &Lines<'_>, name: &str, vips: &[Vip]) -> Result<Cloud, ConfigError> {
        let table = format!("[masters.{name}.cloud]");
        if let Some(v) = vips.iter().find(|v| v.addr.is_ipv6()) {
            return Err(lines.err(
                self.provider.span(),
                format!(
                    "{table}: VIP {v} is IPv6; vipctl delivers only IPv4 VIPs through a provider's API so far: \
                     put the IPv6 VIP under a master of its own without a cloud table"
                ),
            ));
        }
        let url = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, ConfigError> {
            let Some(v) = v else { return Ok(None) };
            let s = v.get_ref().trim_end_matches('/');
            let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(Some(s.to_string())),
                _ => Err(lines.err(
                    v.span(),
                    format!("{table} {key} {:?} must be an http:// or https:// URL, e.g. \"https://ec2.eu-west-1.amazonaws.com\"", v.get_ref()),
                )),
            }
        };
        let endpoint = url(&self.endpoint, "endpoint")?;
        let metadata_endpoint = url(&self.metadata_endpoint, "metadata_endpoint")?.unwrap_or(DEFAULT_METADATA.into());
        let provider = self.provider(lines, &table, vips)?;
        let timeouts = Timeouts { connect: self.connect_timeout_ms.millis(), total: self.timeout_ms.millis() };
        if timeouts.connect > timeouts.total {
            return Err(lines.err(
                self.provider.span(),
                format!("{table}: connect_timeout_ms is longer than timeout_ms, which bounds the whole request"),
            ));
        }
        Ok(Cloud {
            provider,
            endpoint,
            metadata_endpoint,
            credentials_file: self.credentials_file.map(Spanned::into_inner),
            timeouts,
            retry_for: self.retry_for_ms.millis(),
            verify_every: self.verify_every_ms.millis(),
        })
    }

    fn provider(&self, lines: &Lines<'_>, table: &str, vips: &[Vip]) -> Result<Provider, ConfigError> {
        // Keys that belong to another provider are refused: they would be silently ignored.
        let keys: [ProviderKey<'_>; 6] = [
            ("region", self.region.as_ref().map(Spanned::span), &["aws"]),
            ("route_tables", self.route_tables.as_ref().map(Spanned::span), &["aws"]),
            ("floating_ip", self.floating_ip.as_ref().map(Spanned::span), &["hetzner"]),
            ("network", self.network.as_ref().map(Spanned::span), &["hetzner"]),
            ("network_interface", self.network_interface.as_ref().map(Spanned::span), &["gcp"]),
            ("subnetwork_range_name", self.subnetwork_range_name.as_ref().map(Spanned::span), &["gcp"]),
        ];
        let p = self.provider.get_ref().as_str();
        if !["aws", "gcp", "hetzner"].contains(&p) {
            return Err(lines.err(
                self.provider.span(),
                format!("{table} provider {p:?} is not \"aws\", \"gcp\" or \"hetzner\" (clouds that move addresses by ARP, such as Tencent HAVIP, Alibaba HaVip or OpenStack allowed-address-pairs, need no cloud table)"),
            ));
        }
        for (key, span, for_) in keys {
            if let Some(span) = span
                && !for_.contains(&p)
            {
                return Err(
                    lines.err(span, format!("{table}: {key} is a setting of provider \"{}\", not of \"{p}\"", for_[0]))
                );
            }
        }
        let text = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, ConfigError> {
            match v {
                Some(s)
                    if s.get_ref().is_empty()
                        || !s.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    Err(lines.err(
                        s.span(),
                        format!("{table} {key} {:?} must be letters, digits, '-', '_' or '.'", s.get_ref()),
                    ))
                }
                Some(s) => Ok(Some(s.get_ref().clone())),
                None => Ok(None),
            }
        };
        Ok(match p {
            "aws" => {
                let route_tables = self.route_tables.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
                if let Some(bad) = route_tables.iter().find(|r| !r.starts_with("rtb-") || r.len() < 5) {
                    let span = self.route_tables.as_ref().map(Spanned::span).unwrap_or(0..0);
                    return Err(
                        lines.err(span, format!("{table} route_tables: {bad:?} is not a route table id (rtb-…)"))
                    );
                }
                if !route_tables.is_empty()
                    && let Some(v) = vips.iter().find(|v| v.prefix != 32)
                {
                    let span = self.route_tables.as_ref().map(Spanned::span).unwrap_or(0..0);
                    return Err(
                        lines.err(span, format!("{table}: a routed VIP is a /32 route; write {v} as {}/32", v.addr))
                    );
                }
                Provider::Aws { region: text(&self.region, "region")?, route_tables }
            }
            "gcp" => Provider::Gcp {
                network_interface: text(&self.network_interface, "network_interface")?.unwrap_or("nic0".into()),
                subnetwork_range_name: text(&self.subnetwork_range_name, "subnetwork_range_name")?,
            },
            _ => {
                let (floating_ip, network) =
                    (self.floating_ip.as_ref().map(|s| *s.get_ref()), self.network.as_ref().map(|s| *s.get_ref()));
                if floating_ip.is_some() == network.is_some() {
                    return Err(lines.err(
                        self.provider.span(),
                        format!("{table}: provider \"hetzner\" needs exactly one of floating_ip (a floating IP's id) and network (a private network's id, for alias IPs)"),
                    ));
                }
                if floating_ip.is_some() && vips.len() > 1 {
                    return Err(lines.err(
                        self.provider.span(),
                        format!("{table}: one floating IP carries one VIP; this master has {}", vips.len()),
                    ));
                }
                Provider::Hetzner { floating_ip, network }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::{DEFAULT_METADATA, Provider};
    use crate::config::Config;

    fn with(vips: &str, table: &str) -> Result<Config, String> {
        let text = format!(
            "sentinels = [\"198.51.100.11:26379\"]\n[masters.m]\nvips = [{vips}]\n[masters.m.cloud]\n{table}\n"
        );
        Config::parse(Path::new("t.toml"), &text).map_err(|e| e.to_string())
    }

    fn err(vips: &str, table: &str) -> String {
        with(vips, table).expect_err("refused")
    }

    #[test]
    fn reads_aws_with_its_defaults() {
        let c = with("\"198.51.100.100/24\"", "provider = \"aws\"").unwrap();
        let cloud = c.masters["m"].cloud.clone().unwrap();
        assert_eq!(cloud.provider, Provider::Aws { region: None, route_tables: vec![] });
        assert_eq!(cloud.metadata_endpoint, DEFAULT_METADATA);
        assert_eq!(cloud.timeouts.connect, Duration::from_secs(1));
        assert_eq!(cloud.timeouts.total, Duration::from_secs(5));
        assert_eq!(cloud.retry_for, Duration::from_secs(60));
        assert_eq!(cloud.verify_every, Duration::from_secs(30));
        assert!(cloud.endpoint.is_none() && cloud.credentials_file.is_none());
        assert!(c.masters["m"].cloud.is_some());
    }

    #[test]
    fn reads_routes_gcp_and_hetzner() {
        let t = "provider = \"aws\"\nregion = \"eu-west-1\"\nroute_tables = [\"rtb-0a1\"]\nendpoint = \"http://198.51.100.50:5000/\"";
        let c = with("\"203.0.113.10/32\"", t).unwrap();
        let cloud = c.masters["m"].cloud.clone().unwrap();
        assert_eq!(
            cloud.provider,
            Provider::Aws { region: Some("eu-west-1".into()), route_tables: vec!["rtb-0a1".into()] }
        );
        assert_eq!(cloud.endpoint.as_deref(), Some("http://198.51.100.50:5000"));
        let c = with("\"198.51.100.100/32\"", "provider = \"hetzner\"\nfloating_ip = 4711").unwrap();
        assert_eq!(
            c.masters["m"].cloud.clone().unwrap().provider,
            Provider::Hetzner { floating_ip: Some(4711), network: None }
        );
        let c = with("\"198.51.100.100/24\"", "provider = \"gcp\"").unwrap();
        let want = Provider::Gcp { network_interface: "nic0".into(), subnetwork_range_name: None };
        assert_eq!(c.masters["m"].cloud.clone().unwrap().provider, want);
        let t = "provider = \"gcp\"\nnetwork_interface = \"nic1\"\nsubnetwork_range_name = \"vips\"";
        let c = with("\"198.51.100.100/24\"", t).unwrap();
        let want = Provider::Gcp { network_interface: "nic1".into(), subnetwork_range_name: Some("vips".into()) };
        assert_eq!(c.masters["m"].cloud.clone().unwrap().provider, want);
    }

    #[test]
    fn refuses_what_would_be_ignored_or_cannot_work() {
        let v4 = "\"198.51.100.100/24\"";
        let cases = [
            (v4, "provider = \"gcp\"\nregion = \"x\"", "region is a setting of provider \"aws\""),
            (
                v4,
                "provider = \"aws\"\nnetwork_interface = \"nic1\"",
                "network_interface is a setting of provider \"gcp\"",
            ),
            (v4, "provider = \"gcp\"\nnetwork_interface = \"nic 1\"", "must be letters, digits"),
            (v4, "provider = \"tencent\"", "need no cloud table"),
            (v4, "provider = \"aws\"\nfloating_ip = 1", "floating_ip is a setting of provider \"hetzner\""),
            (v4, "provider = \"hetzner\"\nregion = \"x\"\nnetwork = 1", "region is a setting of provider \"aws\""),
            (v4, "provider = \"hetzner\"", "exactly one of floating_ip"),
            (v4, "provider = \"hetzner\"\nfloating_ip = 1\nnetwork = 2", "exactly one of floating_ip"),
            (
                "\"198.51.100.100/32\", \"198.51.100.101/32\"",
                "provider = \"hetzner\"\nfloating_ip = 1",
                "one floating IP carries one VIP",
            ),
            (v4, "provider = \"aws\"\nroute_tables = [\"rtb-1\"]", "write 198.51.100.100/24 as 198.51.100.100/32"),
            ("\"203.0.113.10/32\"", "provider = \"aws\"\nroute_tables = [\"main\"]", "not a route table id"),
            ("\"2001:db8::10/64\"", "provider = \"aws\"", "is IPv6"),
            (v4, "provider = \"aws\"\nendpoint = \"ec2.amazonaws.com\"", "must be an http:// or https:// URL"),
            (v4, "provider = \"aws\"\nregion = \"eu west\"", "must be letters, digits"),
            (
                v4,
                "provider = \"aws\"\nconnect_timeout_ms = 5000\ntimeout_ms = 1000",
                "connect_timeout_ms is longer than timeout_ms",
            ),
            (v4, "provider = \"aws\"\ntimeout_ms = 60000", "cloud timeout_ms must be 100–30000"),
            (v4, "provider = \"aws\"\nverify_every_ms = 10", "cloud verify_every_ms must be 1000–3600000"),
            (v4, "provider = \"aws\"\naccess_key = \"AKIA\"", "unknown field `access_key`"),
        ];
        for (vips, table, want) in cases {
            let e = err(vips, table);
            assert!(e.contains(want), "{table:?}: {e}");
        }
    }
}
