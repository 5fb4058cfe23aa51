//! Provider APIs that deliver a VIP to the host holding it, where the network ignores ARP: AWS
//! (`aws`), GCP Compute Engine (`gcp`), Hetzner Cloud (`hetzner`). The daemon's core decides when to call ([`crate::policy::delivery`]);
//! this module only makes the calls, each bounded in time, and says who holds the VIPs afterwards.

mod aws;
pub mod credentials;
mod gcp;
mod google_key;
mod hetzner;
mod http;

use std::fmt;
use std::net::IpAddr;

use crate::config::{Master, Provider};

/// Who holds a master's VIPs as the provider's API describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Every VIP is delivered to this host.
    pub here: bool,
    /// The holders as the provider names them (an ENI, a server, "nobody"), for people.
    pub holder: String,
    /// The provider's ids of the requests made, for the provider's support and logs.
    pub request_ids: Vec<String>,
}

impl Delivered {
    /// This answer to the check after a move, with the move's request ids first.
    pub fn after(mut self, mut ids: Vec<String>) -> Delivered {
        ids.append(&mut self.request_ids);
        self.request_ids = ids;
        self
    }
}

/// A call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The call (`AssignPrivateIpAddresses`, `instance metadata`, …).
    pub call: String,
    /// What went wrong and what to do.
    pub why: String,
    /// The provider's error code, when it gave one.
    pub code: Option<String>,
    /// The provider's request id, when it gave one.
    pub request_id: Option<String>,
    /// Worth another try (a timeout, throttling, the provider's own trouble); otherwise only a
    /// change of config or permissions helps.
    pub retryable: bool,
}

impl CallError {
    /// An error of `call`.
    pub fn new(call: &str, why: &str, request_id: Option<String>, retryable: bool) -> CallError {
        CallError { call: call.to_string(), why: why.to_string(), code: None, request_id, retryable }
    }

    /// The same error with the provider's error code (none when `code` is empty).
    pub fn with_code(mut self, code: &str) -> CallError {
        self.code = Some(code.to_string()).filter(|c| !c.is_empty());
        self
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.why)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// One master's provider API.
pub enum Api {
    /// AWS EC2.
    Aws(aws::Aws),
    /// GCP Compute Engine.
    Gcp(gcp::Gcp),
    /// Hetzner Cloud.
    Hetzner(hetzner::Hetzner),
}

impl Api {
    /// The API of `master`, when it has a `[masters.NAME.cloud]` table.
    pub fn of(master: &Master) -> Result<Option<Api>, String> {
        let Some(cloud) = &master.cloud else { return Ok(None) };
        let http = http::Http::new(cloud.timeouts)?;
        let vips: Vec<IpAddr> = master.vips.iter().map(|v| v.addr).collect();
        Ok(Some(match &cloud.provider {
            Provider::Aws { .. } => Api::Aws(aws::Aws::new(http, cloud, vips)),
            Provider::Gcp { .. } => Api::Gcp(gcp::Gcp::new(http, cloud, vips)),
            Provider::Hetzner { .. } => Api::Hetzner(hetzner::Hetzner::new(http, cloud, vips)),
        }))
    }

    /// Moves the VIPs to this host, then asks who holds them.
    pub async fn deliver(&self) -> Result<Delivered, CallError> {
        match self {
            Api::Aws(a) => a.deliver().await,
            Api::Gcp(g) => g.deliver().await,
            Api::Hetzner(h) => h.deliver().await,
        }
    }

    /// Asks who holds the VIPs; changes nothing.
    pub async fn check(&self) -> Result<Delivered, CallError> {
        match self {
            Api::Aws(a) => a.check().await,
            Api::Gcp(g) => g.check().await,
            Api::Hetzner(h) => h.check().await,
        }
    }

    /// Read-only checks for `vipctl doctor`: metadata, credentials, permissions, the holder.
    pub async fn doctor(&self) -> Vec<(String, Result<String, String>)> {
        match self {
            Api::Aws(a) => a.doctor().await,
            Api::Gcp(g) => g.doctor().await,
            Api::Hetzner(h) => h.doctor().await,
        }
    }
}
