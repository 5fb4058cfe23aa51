//! Hetzner Cloud: this server's id from its metadata service, a token from a root-only file or
//! `HCLOUD_TOKEN`, and the Cloud API: a floating IP's `assign` action, or a private network's alias
//! IPs (`change_alias_ips`, which replaces a server's whole list, so the VIP is taken off the old
//! holder first and added here after). Actions run in the background; they are followed to their
//! end within a bound.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Http, retryable};
use super::{CallError, Delivered, credentials};

/// The public API.
const API: &str = "https://api.hetzner.cloud/v1";
/// An action is asked about this often until it ends…
const ACTION_POLL: Duration = Duration::from_millis(250);
/// …this many times at most.
const ACTION_POLLS: u32 = 120;
/// Servers listed per page when looking for an alias IP's holder, and the pages looked at.
const PER_PAGE: u32 = 50;
const MAX_PAGES: u32 = 20;

/// One master's Hetzner deliverer.
pub struct Hetzner {
    http: Http,
    api: String,
    metadata: String,
    credentials_file: Option<std::path::PathBuf>,
    floating_ip: Option<u64>,
    network: Option<u64>,
    vips: Vec<IpAddr>,
    server: Mutex<Option<u64>>,
}

impl Hetzner {
    /// A deliverer of `vips` as `cloud` configures it.
    pub fn new(http: Http, cloud: &crate::config::Cloud, vips: Vec<IpAddr>) -> Hetzner {
        let crate::config::Provider::Hetzner { floating_ip, network } = &cloud.provider else {
            unreachable!("built for provider hetzner only")
        };
        Hetzner {
            http,
            api: cloud.endpoint.clone().unwrap_or(API.into()),
            metadata: cloud.metadata_endpoint.clone(),
            credentials_file: cloud.credentials_file.clone(),
            floating_ip: *floating_ip,
            network: *network,
            vips,
            server: Mutex::new(None),
        }
    }

    /// Replaces `server`'s alias IPs in network `net` with `list` (the call replaces the whole
    /// list), followed to the action's end; returns the action's id for the record.
    async fn change_alias_ips(
        &self,
        server: u64,
        net: u64,
        list: Vec<String>,
        what: &'static str,
    ) -> Result<String, CallError> {
        let path = format!("/servers/{server}/actions/change_alias_ips");
        let v = self.api_call(Method::POST, &path, Some(json!({ "network": net, "alias_ips": list })), what).await?;
        self.follow(&v, what).await
    }

    /// Moves the VIPs here, then checks who holds them.
    pub async fn deliver(&self) -> Result<Delivered, CallError> {
        let me = self.server().await?;
        let mut ids = Vec::new();
        if let Some(fip) = self.floating_ip {
            let (_, holder) = self.floating(fip).await?;
            if holder != Some(me) {
                let path = format!("/floating_ips/{fip}/actions/assign");
                match self.api_call(Method::POST, &path, Some(json!({ "server": me })), "assign").await {
                    Ok(v) => ids.push(self.follow(&v, "assign").await?),
                    // Assigned meanwhile (another run of ours); the check below says to whom.
                    Err(e) if e.code.as_deref() == Some("floating_ip_assigned") => ids.extend(e.request_id),
                    Err(e) => return Err(e),
                }
            }
        } else {
            let net = self.network.expect("floating_ip or network, checked in the config");
            for (holder, list) in self.alias_holders(net).await? {
                if holder == me {
                    continue;
                }
                let keep: Vec<String> =
                    list.iter().filter(|a| !self.vips.iter().any(|v| v.to_string() == **a)).cloned().collect();
                ids.push(self.change_alias_ips(holder, net, keep, "change_alias_ips (old holder)").await?);
            }
            let mut mine = self.aliases_of(me, net).await?;
            let missing: Vec<String> =
                self.vips.iter().map(ToString::to_string).filter(|v| !mine.contains(v)).collect();
            if !missing.is_empty() {
                mine.extend(missing);
                ids.push(self.change_alias_ips(me, net, mine, "change_alias_ips").await?);
            }
        }
        Ok(self.check().await?.after(ids))
    }

    /// Who holds the VIPs; changes nothing.
    pub async fn check(&self) -> Result<Delivered, CallError> {
        let me = self.server().await?;
        if let Some(fip) = self.floating_ip {
            let (_, holder) = self.floating(fip).await?;
            let who = holder.map_or("nobody".into(), |s| format!("server {s}"));
            return Ok(Delivered { here: holder == Some(me), holder: who, request_ids: Vec::new() });
        }
        let net = self.network.expect("floating_ip or network, checked in the config");
        let holders = self.alias_holders(net).await?;
        let here = self.vips.iter().all(|v| holders.iter().any(|(s, l)| *s == me && l.contains(&v.to_string())));
        let who = if holders.is_empty() {
            "nobody".into()
        } else {
            holders.iter().map(|(s, _)| format!("server {s}")).collect::<Vec<_>>().join(", ")
        };
        Ok(Delivered { here, holder: who, request_ids: Vec::new() })
    }

    /// Read-only checks for `vipctl doctor`.
    pub async fn doctor(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = Vec::new();
        match self.server().await {
            Ok(id) => out.push(("server metadata".into(), Ok(format!("server {id}")))),
            Err(e) => {
                out.push(("server metadata".into(), Err(e.to_string())));
                return out;
            }
        }
        out.push((
            "token and the VIPs' holder".into(),
            self.check().await.map(|d| d.holder).map_err(|e| e.to_string()),
        ));
        out
    }

    /// The floating IP's address and server, refused when its address is not the master's VIP.
    async fn floating(&self, id: u64) -> Result<(IpAddr, Option<u64>), CallError> {
        let v = self.api_call(Method::GET, &format!("/floating_ips/{id}"), None, "get floating IP").await?;
        let f = &v["floating_ip"];
        let ip: Option<IpAddr> = f["ip"].as_str().and_then(|s| s.parse().ok());
        match ip {
            Some(ip) if self.vips.contains(&ip) => Ok((ip, f["server"].as_u64())),
            _ => Err(CallError::new(
                "get floating IP",
                &format!(
                    "floating IP {id} is {}, not this master's VIP: vipctl moves only the addresses it is configured for; fix floating_ip",
                    f["ip"].as_str().unwrap_or("unknown")
                ),
                None,
                false,
            )),
        }
    }

    /// The servers with any of the VIPs as an alias IP in network `net`, each with its whole list.
    async fn alias_holders(&self, net: u64) -> Result<Vec<(u64, Vec<String>)>, CallError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!("/servers?page={page}&per_page={PER_PAGE}");
            let v = self.api_call(Method::GET, &path, None, "list servers").await?;
            let servers = v["servers"].as_array().cloned().unwrap_or_default();
            for s in &servers {
                let Some(id) = s["id"].as_u64() else { continue };
                let list = aliases(s, net);
                if list.iter().any(|a| self.vips.iter().any(|v| v.to_string() == *a)) {
                    out.push((id, list));
                }
            }
            if v["meta"]["pagination"]["next_page"].as_u64().is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn aliases_of(&self, server: u64, net: u64) -> Result<Vec<String>, CallError> {
        let v = self.api_call(Method::GET, &format!("/servers/{server}"), None, "get server").await?;
        Ok(aliases(&v["server"], net))
    }

    /// Follows an action to its end; its id is the request id.
    async fn follow(&self, v: &Value, what: &str) -> Result<String, CallError> {
        let Some(id) = v["action"]["id"].as_u64() else {
            return Err(CallError::new(what, "the answer names no action", None, true));
        };
        let rid = format!("action {id}");
        let mut status = v["action"]["status"].as_str().unwrap_or("running").to_string();
        for _ in 0..ACTION_POLLS {
            match status.as_str() {
                "success" => return Ok(rid),
                "error" => {
                    let e = v["action"]["error"]["message"].as_str().unwrap_or("failed").to_string();
                    return Err(CallError::new(what, &format!("action failed: {e}"), Some(rid), true));
                }
                _ => {}
            }
            tokio::time::sleep(ACTION_POLL).await;
            let a = self.api_call(Method::GET, &format!("/actions/{id}"), None, what).await?;
            status = a["action"]["status"].as_str().unwrap_or("running").to_string();
        }
        Err(CallError::new(what, "the action did not finish in 30 s", Some(rid), true))
    }

    async fn api_call(&self, method: Method, path: &str, body: Option<Value>, what: &str) -> Result<Value, CallError> {
        let token = self.token()?;
        let mut req = self.http.request(method, &format!("{}{path}", self.api)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let a = self.http.send(what, req).await?;
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        if (200..300).contains(&a.status) {
            return Ok(v);
        }
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        let message = v["error"]["message"].as_str().unwrap_or("").to_string();
        let hint = match (a.status, code.as_str()) {
            (401, _) | (_, "unauthorized") => {
                "; the token is wrong or revoked: make a read & write API token for the project"
            }
            (403, _) | (_, "forbidden") => "; the token is read-only: make a read & write API token",
            _ => "",
        };
        let again = retryable(a.status) || code == "locked" || code == "conflict";
        Err(CallError::new(what, &format!("HTTP {} {code}: {message}{hint}", a.status), a.request_id, again)
            .with_code(&code))
    }

    fn token(&self) -> Result<String, CallError> {
        let bad = |e: String| CallError::new("Hetzner API token", &e, None, false);
        if let Some(path) = &self.credentials_file {
            let f = credentials::read_file(path).map_err(bad)?;
            return f.get("token").cloned().ok_or_else(|| bad(format!("{} has no `token = …` line", path.display())));
        }
        credentials::from_env("HCLOUD_TOKEN")
            .map_err(bad)?
            .ok_or_else(|| bad("no credentials_file and no HCLOUD_TOKEN: Hetzner Cloud has no instance credentials; write the API token to a root-only file and name it in credentials_file".into()))
    }

    async fn server(&self) -> Result<u64, CallError> {
        if let Some(id) = *self.server.lock().expect("not poisoned") {
            return Ok(id);
        }
        let url = format!("{}/hetzner/v1/metadata/instance-id", self.metadata);
        let a = self.http.send("server metadata", self.http.request(Method::GET, &url)).await?;
        let id = a.body.trim().parse::<u64>().ok().filter(|_| a.status == 200).ok_or_else(|| {
            CallError::new(
                "server metadata",
                &format!("{url} answered HTTP {}: is this a Hetzner Cloud server (cloud metadata_endpoint)?", a.status),
                None,
                retryable(a.status),
            )
        })?;
        *self.server.lock().expect("not poisoned") = Some(id);
        Ok(id)
    }
}

/// A server's alias IPs in network `net`.
fn aliases(server: &Value, net: u64) -> Vec<String> {
    server["private_net"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["network"].as_u64() == Some(net))
        .flat_map(|p| p["alias_ips"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}
