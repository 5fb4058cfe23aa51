//! GCP Compute Engine: this instance's name, zone and project from the metadata server, an OAuth
//! token from it (the instance's service account) or from a root-only service-account key, and
//! the Compute API's `instances.updateNetworkInterface`, which replaces an interface's whole list
//! of alias IP ranges and only with the interface's current fingerprint. The API has no atomic
//! move, so the VIP's /32 range is taken off the old holder (an interface in the same subnetwork:
//! another VPC may use the same address) first and added here after; each change is followed to
//! its zone operation's end, and a stale fingerprint (HTTP 412, or an operation's
//! `CONDITION_NOT_MET`) is read again and retried, within a bound.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Http, retryable};
use super::{CallError, Delivered, credentials, google_key};

/// The public API.
const API: &str = "https://compute.googleapis.com/compute/v1";
/// A zone operation is asked about this often until it is `DONE`…
const OP_POLL: Duration = Duration::from_millis(250);
/// …for this long at most (Google's guide says a move can take up to a minute).
const OP_WAIT: Duration = Duration::from_secs(120);
/// A change is tried this many times while its fingerprint goes stale under it.
const FINGERPRINT_TRIES: u32 = 4;
/// Instances asked for per page of the aggregated list (an answer must stay under the HTTP
/// client's 4 MiB), and the pages read at most: a larger project is refused, never half-read.
const PER_PAGE: u32 = 100;
const MAX_PAGES: u32 = 50;
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// The instance's permissions that `doctor` asks `testIamPermissions` about. vipctl needs
/// `compute.instances.list` and `compute.zoneOperations.get` too (project and zone permissions):
/// doctor's holder check uses the first, the first move the second.
const INSTANCE_PERMISSIONS: &[&str] = &["compute.instances.get", "compute.instances.updateNetworkInterface"];
/// The code a stale fingerprint gets here: Google's reason for its HTTP 412.
const STALE: &str = "conditionNotMet";

/// This instance as the metadata server names it.
#[derive(Debug, Clone)]
struct Instance {
    project: String,
    zone: String,
    name: String,
}

/// An instance's interface with any of the VIPs among its alias IP ranges.
#[derive(Debug)]
struct Holder {
    zone: String,
    name: String,
    interface: String,
    ranges: Vec<String>,
}

struct Token {
    value: String,
    renew_at: Instant,
}

/// What a change does to an interface's alias IP ranges.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Takes the VIPs off (the old holder).
    Remove,
    /// Adds the VIPs (this instance).
    Add,
}

/// One master's Compute Engine deliverer.
pub struct Gcp {
    http: Http,
    api: String,
    metadata: String,
    credentials_file: Option<std::path::PathBuf>,
    interface: String,
    range_name: Option<String>,
    vips: Vec<IpAddr>,
    instance: Mutex<Option<Instance>>,
    token: Mutex<Option<Token>>,
}

impl Gcp {
    /// A deliverer of `vips` as `cloud` configures it.
    pub fn new(http: Http, cloud: &crate::config::Cloud, vips: Vec<IpAddr>) -> Gcp {
        let crate::config::Provider::Gcp { network_interface, subnetwork_range_name } = &cloud.provider else {
            unreachable!("built for provider gcp only")
        };
        Gcp {
            http,
            api: cloud.endpoint.clone().unwrap_or(API.into()),
            metadata: cloud.metadata_endpoint.clone(),
            credentials_file: cloud.credentials_file.clone(),
            interface: network_interface.clone(),
            range_name: subnetwork_range_name.clone(),
            vips,
            instance: Mutex::new(None),
            token: Mutex::new(None),
        }
    }

    /// Moves the VIPs here (off every other holder in this subnetwork first), then checks who
    /// holds them.
    pub async fn deliver(&self) -> Result<Delivered, CallError> {
        let me = self.instance().await?;
        let subnetwork = self.my_subnetwork(&me).await?;
        let mut ids = Vec::new();
        for h in self.holders(&me.project, &subnetwork).await? {
            if self.is_me(&me, &h) {
                continue;
            }
            let what = "updateNetworkInterface (old holder)";
            ids.extend(self.update(&me.project, &h.zone, &h.name, &h.interface, Change::Remove, what).await?);
        }
        let what = "updateNetworkInterface";
        ids.extend(self.update(&me.project, &me.zone, &me.name, &self.interface, Change::Add, what).await?);
        Ok(self.check_in(&me, &subnetwork).await?.after(ids))
    }

    /// Who holds the VIPs; changes nothing. Here means: every VIP on this interface, and none on
    /// another interface of the subnetwork (an old holder's removal may have failed).
    pub async fn check(&self) -> Result<Delivered, CallError> {
        let me = self.instance().await?;
        let subnetwork = self.my_subnetwork(&me).await?;
        self.check_in(&me, &subnetwork).await
    }

    /// [`Gcp::check`] in a subnetwork already read.
    async fn check_in(&self, me: &Instance, subnetwork: &str) -> Result<Delivered, CallError> {
        let holders = self.holders(&me.project, subnetwork).await?;
        let who = if holders.is_empty() {
            "nobody".into()
        } else {
            holders.iter().map(|h| format!("{}/{} {}", h.zone, h.name, h.interface)).collect::<Vec<_>>().join(", ")
        };
        let mine: Vec<&String> = holders.iter().filter(|h| self.is_me(me, h)).flat_map(|h| &h.ranges).collect();
        let here = self.vips.iter().all(|vip| mine.iter().any(|r| is_vip(r, *vip)));
        let alone = holders.iter().all(|h| self.is_me(me, h));
        Ok(Delivered { here: here && alone, holder: who, request_ids: Vec::new() })
    }

    /// Read-only checks for `vipctl doctor`.
    pub async fn doctor(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = Vec::new();
        let me = match self.instance().await {
            Ok(me) => {
                out.push(("instance metadata".into(), Ok(format!("{}/{} in {}", me.zone, me.name, me.project))));
                me
            }
            Err(e) => {
                out.push(("instance metadata".into(), Err(e.to_string())));
                return out;
            }
        };
        let token = self.token().await.map(|_| "an OAuth token".to_string()).map_err(|e| e.to_string());
        let ok = token.is_ok();
        out.push(("credentials".into(), token));
        if !ok {
            return out;
        }
        let path = format!("/projects/{}/zones/{}/instances/{}/testIamPermissions", me.project, me.zone, me.name);
        let body = json!({ "permissions": INSTANCE_PERMISSIONS });
        let asked = self.api_call(Method::POST, &path, Some(body), "testIamPermissions").await;
        let perms = asked.map_err(|e| e.to_string()).and_then(|v| {
            let granted: Vec<&str> =
                v["permissions"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let missing: Vec<&str> = INSTANCE_PERMISSIONS.iter().copied().filter(|p| !granted.contains(p)).collect();
            if missing.is_empty() {
                Ok(INSTANCE_PERMISSIONS.join(", "))
            } else {
                Err(format!("missing {}: grant them to the service account (README, \"GCP\")", missing.join(", ")))
            }
        });
        out.push(("permissions".into(), perms));
        out.push(("the VIPs' holder".into(), self.check().await.map(|d| d.holder).map_err(|e| e.to_string())));
        out
    }

    fn is_me(&self, me: &Instance, h: &Holder) -> bool {
        h.zone == me.zone && h.name == me.name && h.interface == self.interface
    }

    /// The subnetwork of this instance's interface: the VIPs' holders are looked for there only.
    async fn my_subnetwork(&self, me: &Instance) -> Result<String, CallError> {
        let v = self.instance_json(&me.project, &me.zone, &me.name).await?;
        let i = interface(&v, &self.interface).ok_or_else(|| self.no_interface(&me.name))?;
        i["subnetwork"].as_str().map(str::to_string).ok_or_else(|| {
            let why = format!(
                "interface {} of {} has no subnetwork: alias IP ranges need a VPC network, not a legacy one",
                self.interface, me.name
            );
            CallError::new("instances.get", &why, None, false)
        })
    }

    /// Takes the VIPs off (or adds them to) `name`'s interface `nic`, with its current fingerprint,
    /// keeping every other range as it is; a stale fingerprint is read again. Returns the
    /// operation's name, or `None` when nothing needed changing.
    async fn update(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        nic: &str,
        change: Change,
        what: &str,
    ) -> Result<Option<String>, CallError> {
        for _ in 0..FINGERPRINT_TRIES {
            let v = self.instance_json(project, zone, name).await?;
            let i = interface(&v, nic).ok_or_else(|| self.no_interface(name))?;
            let now = i["aliasIpRanges"].as_array().cloned().unwrap_or_default();
            let wanted = changed(&now, &self.vips, change, self.range_name.as_deref());
            if wanted.len() == now.len() {
                return Ok(None);
            }
            let Some(fingerprint) = i["fingerprint"].as_str() else {
                return Err(CallError::new(what, &format!("interface {nic} of {name} has no fingerprint"), None, true));
            };
            let path = format!(
                "/projects/{project}/zones/{zone}/instances/{name}/updateNetworkInterface?networkInterface={nic}"
            );
            let body = json!({ "aliasIpRanges": wanted, "fingerprint": fingerprint });
            let done = match self.api_call(Method::PATCH, &path, Some(body), what).await {
                Ok(op) => self.follow(project, zone, &op, what).await,
                Err(e) => Err(e),
            };
            match done {
                // Another change came first: read the new fingerprint and the new list.
                Err(e) if e.code.as_deref() == Some(STALE) => continue,
                done => return done.map(Some),
            }
        }
        let why = format!(
            "{name}'s fingerprint went stale under each of {FINGERPRINT_TRIES} tries: another client is changing it"
        );
        Err(CallError::new(what, &why, None, true))
    }

    /// Follows a zone operation until it is `DONE`, for [`OP_WAIT`] at most; its name is the
    /// request id.
    async fn follow(&self, project: &str, zone: &str, op: &Value, what: &str) -> Result<String, CallError> {
        let Some(name) = op["name"].as_str().map(str::to_string) else {
            return Err(CallError::new(what, "the answer names no operation", None, true));
        };
        let rid = format!("operation {name}");
        let deadline = Instant::now() + OP_WAIT;
        let mut op = op.clone();
        loop {
            if op["status"] == "DONE" {
                let errors = op["error"]["errors"].as_array().cloned().unwrap_or_default();
                let Some(e) = errors.first() else { return Ok(rid) };
                let code = e["code"].as_str().unwrap_or("");
                let why = format!("the operation failed: {code} {}", e["message"].as_str().unwrap_or(""));
                let err = CallError::new(what, &why, Some(rid), true);
                return Err(err.with_code(if code == "CONDITION_NOT_MET" { STALE } else { code }));
            }
            if Instant::now() + OP_POLL >= deadline {
                let why = format!("the operation was not DONE in {} s", OP_WAIT.as_secs());
                return Err(CallError::new(what, &why, Some(rid), true));
            }
            tokio::time::sleep(OP_POLL).await;
            let path = format!("/projects/{project}/zones/{zone}/operations/{name}");
            op = self.api_call(Method::GET, &path, None, what).await?;
        }
    }

    async fn instance_json(&self, project: &str, zone: &str, name: &str) -> Result<Value, CallError> {
        let path = format!("/projects/{project}/zones/{zone}/instances/{name}");
        self.api_call(Method::GET, &path, None, "instances.get").await
    }

    /// Every instance interface in `subnetwork` that lists any of the VIPs, from every zone (a
    /// regional subnetwork spans them). Another VPC may use the same address: its interfaces are
    /// never touched. All pages are read, or none counts.
    async fn holders(&self, project: &str, subnetwork: &str) -> Result<Vec<Holder>, CallError> {
        let mut out = Vec::new();
        let mut page = String::new();
        for _ in 0..MAX_PAGES {
            let mut path = format!("/projects/{project}/aggregated/instances?maxResults={PER_PAGE}");
            if !page.is_empty() {
                path.push_str("&pageToken=");
                path.extend(form_urlencoded::byte_serialize(page.as_bytes()));
            }
            let v = self.api_call(Method::GET, &path, None, "instances.aggregatedList").await?;
            for scoped in v["items"].as_object().into_iter().flat_map(|o| o.values()) {
                for inst in scoped["instances"].as_array().into_iter().flatten() {
                    let (Some(name), Some(zone)) = (inst["name"].as_str(), inst["zone"].as_str()) else { continue };
                    let zone = zone.rsplit('/').next().unwrap_or(zone);
                    for i in inst["networkInterfaces"].as_array().into_iter().flatten() {
                        let (Some(nic), listed) = (i["name"].as_str(), ranges(i)) else { continue };
                        if i["subnetwork"] == subnetwork
                            && self.vips.iter().any(|vip| listed.iter().any(|r| is_vip(r, *vip)))
                        {
                            let (zone, name, interface) = (zone.to_string(), name.to_string(), nic.to_string());
                            out.push(Holder { zone, name, interface, ranges: listed });
                        }
                    }
                }
            }
            match v["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => page = t.to_string(),
                _ => return Ok(out),
            }
        }
        let why = format!(
            "the project has more than {} instances: vipctl reads all of them to find the VIP's holder, and stops rather than miss one",
            PER_PAGE * MAX_PAGES
        );
        Err(CallError::new("instances.aggregatedList", &why, None, false))
    }

    fn no_interface(&self, name: &str) -> CallError {
        CallError::new(
            "instances.get",
            &format!("instance {name} has no network interface {:?}: fix cloud network_interface", self.interface),
            None,
            false,
        )
    }

    async fn api_call(&self, method: Method, path: &str, body: Option<Value>, what: &str) -> Result<Value, CallError> {
        let token = self.token().await?;
        let mut req = self.http.request(method, &format!("{}{path}", self.api)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let a = self.http.send(what, req).await?;
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        if (200..300).contains(&a.status) {
            return Ok(v);
        }
        if a.status == 401 {
            // A revoked or expired token: the next call fetches a new one.
            *self.token.lock().expect("not poisoned") = None;
        }
        let given = v["error"]["errors"][0]["reason"].as_str().unwrap_or("");
        // A 412 is the fingerprint's precondition, whatever reason the body gives.
        let reason = if a.status == 412 { STALE } else { given };
        let message = v["error"]["message"].as_str().unwrap_or("");
        let hint = match a.status {
            401 => "; the token was refused: check the service account (and its key, if credentials_file names one)",
            403 => "; the service account lacks a permission or the instance lacks the compute scope (README, \"GCP\")",
            _ => "",
        };
        let again = retryable(a.status) || reason == "resourceNotReady" || reason == "rateLimitExceeded";
        let why = format!("HTTP {} {given}: {message}{hint}", a.status);
        Err(CallError::new(what, &why, a.request_id, again).with_code(reason))
    }

    /// An OAuth token: from a service-account key (`credentials_file`, or
    /// `GOOGLE_APPLICATION_CREDENTIALS` unless privileges are raised), else the metadata server's
    /// for the instance's service account. Kept until shortly before it expires.
    async fn token(&self) -> Result<String, CallError> {
        if let Some(t) = &*self.token.lock().expect("not poisoned")
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let bad = |e: String| CallError::new("GCP credentials", &e, None, false);
        let key_file = match &self.credentials_file {
            Some(p) => Some(p.clone()),
            None => credentials::from_env("GOOGLE_APPLICATION_CREDENTIALS").map_err(bad)?.map(Into::into),
        };
        let (value, expires_in) = match key_file {
            Some(path) => {
                let text = credentials::read_text(&path).map_err(bad)?;
                let key = google_key::Key::parse(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                key.token(&self.http).await?
            }
            None => {
                let no_account = "; if the instance has no service account, attach one with the compute scope, or name a service-account key in credentials_file";
                let body = self.metadata_get("instance/service-accounts/default/token", no_account).await?;
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                match (v["access_token"].as_str(), v["expires_in"].as_u64()) {
                    (Some(t), Some(s)) => (t.to_string(), s),
                    _ => return Err(bad("the metadata server's token answer has no access_token: does the instance have a service account?".into())),
                }
            }
        };
        let renew_at = Instant::now() + Duration::from_secs(expires_in).saturating_sub(RENEW_BEFORE);
        *self.token.lock().expect("not poisoned") = Some(Token { value: value.clone(), renew_at });
        Ok(value)
    }

    async fn instance(&self) -> Result<Instance, CallError> {
        if let Some(i) = &*self.instance.lock().expect("not poisoned") {
            return Ok(i.clone());
        }
        let name = self.metadata_get("instance/name", "").await?;
        // `projects/NUMBER/zones/ZONE`.
        let zone = self.metadata_get("instance/zone", "").await?.rsplit('/').next().unwrap_or_default().to_string();
        let project = self.metadata_get("project/project-id", "").await?;
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if ![&name, &zone, &project].iter().all(|s| plain(s)) {
            return Err(CallError::new(
                "instance metadata",
                &format!("the metadata server named instance {name:?}, zone {zone:?}, project {project:?}: not names"),
                None,
                false,
            ));
        }
        let i = Instance { project, zone, name };
        *self.instance.lock().expect("not poisoned") = Some(i.clone());
        Ok(i)
    }

    /// A value of the metadata server; `hint` is added to an error.
    async fn metadata_get(&self, what: &str, hint: &str) -> Result<String, CallError> {
        let url = format!("{}/computeMetadata/v1/{what}", self.metadata);
        let req = self.http.request(Method::GET, &url).header("Metadata-Flavor", "Google");
        let a = self.http.send("instance metadata", req).await?;
        if a.status != 200 {
            let why = format!(
                "{url} answered HTTP {}: is this a Compute Engine instance (cloud metadata_endpoint)?{hint}",
                a.status
            );
            return Err(CallError::new("instance metadata", &why, None, retryable(a.status)));
        }
        Ok(a.body.trim().to_string())
    }
}

/// An interface's alias ranges `now` after `change` of `vips`: every other range as it was
/// (secondary-range names and all); a VIP added as its /32, from secondary range `range_name`
/// when set.
fn changed(now: &[Value], vips: &[IpAddr], change: Change, range_name: Option<&str>) -> Vec<Value> {
    let is_a_vip = |r: &Value| vips.iter().any(|vip| is_vip(r["ipCidrRange"].as_str().unwrap_or(""), *vip));
    match change {
        Change::Remove => now.iter().filter(|r| !is_a_vip(r)).cloned().collect(),
        Change::Add => {
            let have: Vec<&str> = now.iter().filter_map(|r| r["ipCidrRange"].as_str()).collect();
            let missing = vips.iter().filter(|vip| !have.iter().any(|r| is_vip(r, **vip)));
            let new = missing.map(|vip| match range_name {
                Some(n) => json!({ "ipCidrRange": format!("{vip}/32"), "subnetworkRangeName": n }),
                None => json!({ "ipCidrRange": format!("{vip}/32") }),
            });
            now.iter().cloned().chain(new).collect()
        }
    }
}

/// Interface `nic` of an instance's JSON.
fn interface(instance: &Value, nic: &str) -> Option<Value> {
    instance["networkInterfaces"].as_array()?.iter().find(|i| i["name"] == nic).cloned()
}

/// An interface's alias IP ranges (`10.0.0.5/32`, or a bare `10.0.0.5`).
fn ranges(interface: &Value) -> Vec<String> {
    interface["aliasIpRanges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["ipCidrRange"].as_str().map(str::to_string))
        .collect()
}

/// Whether alias range `range` is exactly `vip` (a /32 or the bare address).
fn is_vip(range: &str, vip: IpAddr) -> bool {
    let (addr, prefix) = range.split_once('/').unwrap_or((range, "32"));
    prefix == "32" && addr.parse::<IpAddr>().is_ok_and(|a| a == vip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_vips_own_range_is_the_vip() {
        let vip: IpAddr = "198.51.100.100".parse().unwrap();
        assert!(is_vip("198.51.100.100/32", vip));
        assert!(is_vip("198.51.100.100", vip));
        // A wider range that contains the VIP is someone else's: vipctl never touches it.
        assert!(!is_vip("198.51.100.96/28", vip));
        assert!(!is_vip("198.51.100.101/32", vip));
        assert!(!is_vip("garbage", vip));
    }

    #[test]
    fn a_change_touches_the_vips_own_ranges_and_nothing_else() {
        let vips: Vec<IpAddr> = vec!["198.51.100.100".parse().unwrap(), "198.51.100.101".parse().unwrap()];
        let others = vec![
            json!({ "ipCidrRange": "198.51.100.96/28" }),
            json!({ "ipCidrRange": "203.0.113.7/32", "subnetworkRangeName": "pods" }),
        ];
        let mut held = others.clone();
        held.push(json!({ "ipCidrRange": "198.51.100.100/32", "subnetworkRangeName": "vips" }));
        held.push(json!({ "ipCidrRange": "198.51.100.101" }));
        // Off: exactly the VIPs' ranges go, the wider /28 around them and the rest stay whole.
        assert_eq!(changed(&held, &vips, Change::Remove, None), others);
        assert_eq!(changed(&others, &vips, Change::Remove, None), others);
        // On: the missing VIPs are appended, from the named secondary range; the rest stays.
        let added = changed(&others, &vips, Change::Add, Some("vips"));
        assert_eq!(added[..2], others[..]);
        assert_eq!(added[2], json!({ "ipCidrRange": "198.51.100.100/32", "subnetworkRangeName": "vips" }));
        assert_eq!(added[3], json!({ "ipCidrRange": "198.51.100.101/32", "subnetworkRangeName": "vips" }));
        // Already there (in either form): nothing to change.
        assert_eq!(changed(&held, &vips, Change::Add, Some("vips")), held);
    }

    #[test]
    fn an_interface_is_found_by_name() {
        let v = json!({ "networkInterfaces": [
            { "name": "nic0", "aliasIpRanges": [{ "ipCidrRange": "198.51.100.100/32" }] },
            { "name": "nic1" }
        ]});
        assert_eq!(ranges(&interface(&v, "nic0").unwrap()), ["198.51.100.100/32"]);
        assert!(ranges(&interface(&v, "nic1").unwrap()).is_empty());
        assert!(interface(&v, "nic2").is_none());
    }
}
