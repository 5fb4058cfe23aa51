//! AWS EC2: this instance's ENI and region from IMDSv2, credentials from a root-only file, the
//! environment or the instance role, and EC2's Query API signed with SigV4: a secondary private
//! IP (`AssignPrivateIpAddresses`, `AllowReassignment`) or the VIP's /32 route in route tables
//! (`ReplaceRoute`, `CreateRoute` when it is missing), each checked afterwards with a `Describe…`.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::Method;

use super::http::{Answer, Http, retryable};
use super::{CallError, Delivered, credentials};

/// EC2's API version the calls are written against.
const VERSION: &str = "2016-11-15";
/// IMDSv2 session tokens are asked for this long.
const TOKEN_TTL_S: &str = "21600";
/// Instance-role credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// This instance as its metadata names it.
#[derive(Debug, Clone)]
struct Instance {
    eni: String,
    region: String,
}

#[derive(Clone)]
struct Keys {
    id: String,
    secret: String,
    token: Option<String>,
    /// When instance-role keys must be fetched again; `None`: they do not expire.
    renew_at: Option<SystemTime>,
    source: &'static str,
}

/// One master's EC2 deliverer.
pub struct Aws {
    http: Http,
    endpoint: Option<String>,
    metadata: String,
    region: Option<String>,
    route_tables: Vec<String>,
    credentials_file: Option<std::path::PathBuf>,
    vips: Vec<IpAddr>,
    instance: Mutex<Option<Instance>>,
    keys: Mutex<Option<Keys>>,
}

impl Aws {
    /// A deliverer of `vips` as `cloud` configures it.
    pub fn new(http: Http, cloud: &crate::config::Cloud, vips: Vec<IpAddr>) -> Aws {
        let crate::config::Provider::Aws { region, route_tables } = &cloud.provider else {
            unreachable!("built for provider aws only")
        };
        Aws {
            http,
            endpoint: cloud.endpoint.clone(),
            metadata: cloud.metadata_endpoint.clone(),
            region: region.clone(),
            route_tables: route_tables.clone(),
            credentials_file: cloud.credentials_file.clone(),
            vips,
            instance: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    /// Moves the VIPs here, then checks who holds them.
    pub async fn deliver(&self) -> Result<Delivered, CallError> {
        let me = self.instance().await?;
        let mut ids = Vec::new();
        if self.route_tables.is_empty() {
            let (_, id) = self.call("AssignPrivateIpAddresses", &self.assign_params(&me.eni)).await?;
            ids.extend(id);
        } else {
            for table in &self.route_tables {
                for vip in &self.vips {
                    let p = route_params(table, *vip, &me.eni);
                    match self.call("ReplaceRoute", &p).await {
                        Ok((_, id)) => ids.extend(id),
                        // The route is made once, by the first holder; afterwards it is replaced.
                        Err(e) if route_missing(&e) => {
                            ids.extend(e.request_id.clone());
                            let (_, id) = self.call("CreateRoute", &p).await?;
                            ids.extend(id);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(self.check().await?.after(ids))
    }

    /// Who holds the VIPs, as EC2 describes them; changes nothing.
    pub async fn check(&self) -> Result<Delivered, CallError> {
        let me = self.instance().await?;
        if self.route_tables.is_empty() {
            // This ENI by id says whether it is here; the filter names the other holders (moto
            // matches that filter against primary addresses only, so it is not used for "here").
            let (body, id) =
                self.call("DescribeNetworkInterfaces", &[kv("NetworkInterfaceId.1", me.eni.clone())]).await?;
            let mine =
                xml_enis(&body).map_err(|e| CallError::new("DescribeNetworkInterfaces", &e, id.clone(), true))?;
            let here = self.vips.iter().all(|v| mine.iter().any(|(eni, ips)| *eni == me.eni && ips.contains(v)));
            let mut ids: Vec<String> = id.into_iter().collect();
            let holders = if here {
                vec![me.eni.clone()]
            } else {
                let mut p = vec![kv("Filter.1.Name", "addresses.private-ip-address")];
                p.extend(self.vips.iter().enumerate().map(|(i, v)| (value_key(i), v.to_string())));
                let (body, id) = self.call("DescribeNetworkInterfaces", &p).await?;
                ids.extend(id.clone());
                let held = xml_enis(&body).map_err(|e| CallError::new("DescribeNetworkInterfaces", &e, id, true))?;
                held.into_iter()
                    .filter(|(_, ips)| self.vips.iter().any(|v| ips.contains(v)))
                    .map(|(eni, _)| eni)
                    .collect()
            };
            Ok(Delivered { here, holder: describe(&holders), request_ids: ids })
        } else {
            let mut p = Vec::new();
            for (i, t) in self.route_tables.iter().enumerate() {
                p.push((table_key(i), t.clone()));
            }
            let (body, id) = self.call("DescribeRouteTables", &p).await?;
            let routes = xml_routes(&body).map_err(|e| CallError::new("DescribeRouteTables", &e, id.clone(), true))?;
            let mut holders = Vec::new();
            let mut here = true;
            for t in &self.route_tables {
                for v in &self.vips {
                    let dest = format!("{v}/32");
                    let target = routes.iter().find(|r| &r.0 == t && r.1 == dest).map(|r| r.2.clone());
                    here &= target.as_deref() == Some(me.eni.as_str());
                    holders.push(format!("{t}: {}", target.unwrap_or_else(|| "no route".into())));
                }
            }
            Ok(Delivered { here, holder: holders.join(", "), request_ids: id.into_iter().collect() })
        }
    }

    /// Read-only checks for `vipctl doctor`: metadata, credentials, a describe call, and the
    /// permission of the moving call (EC2's `DryRun`).
    pub async fn doctor(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = Vec::new();
        let me = match self.instance().await {
            Ok(me) => {
                out.push(("instance metadata (IMDSv2)".into(), Ok(format!("ENI {} in {}", me.eni, me.region))));
                me
            }
            Err(e) => {
                out.push(("instance metadata (IMDSv2)".into(), Err(e.to_string())));
                return out;
            }
        };
        match self.keys().await {
            Ok(k) => out.push(("credentials".into(), Ok(format!("from {}", k.source)))),
            Err(e) => {
                out.push(("credentials".into(), Err(e.to_string())));
                return out;
            }
        }
        out.push(("who holds the VIPs".into(), self.check().await.map(|d| d.holder).map_err(|e| e.to_string())));
        let (action, mut p) = if self.route_tables.is_empty() {
            ("AssignPrivateIpAddresses", self.assign_params(&me.eni))
        } else {
            ("ReplaceRoute", route_params(&self.route_tables[0], self.vips[0], &me.eni))
        };
        p.push(kv("DryRun", "true"));
        let verdict = match self.call(action, &p).await {
            Err(e) if e.code.as_deref() == Some("DryRunOperation") => Ok("allowed (DryRun)".into()),
            Err(e) => Err(e.to_string()),
            // Real EC2 answers DryRunOperation; an endpoint that does not has carried the call
            // out (moto does), so the operator must know that the state may have changed.
            Ok(_) => Err(format!(
                "the endpoint ignored DryRun and carried out {action} (an emulator such as moto does): \
                 its state may now name this host; check it with describe-network-interfaces or \
                 describe-route-tables"
            )),
        };
        out.push((format!("permission for {action}"), verdict));
        out
    }

    /// `AssignPrivateIpAddresses` of the VIPs to `eni`, taking them from any other ENI.
    fn assign_params(&self, eni: &str) -> Vec<(String, String)> {
        let mut p = vec![kv("NetworkInterfaceId", eni), kv("AllowReassignment", "true")];
        p.extend(self.vips.iter().enumerate().map(|(i, v)| (ip_key(i), v.to_string())));
        p
    }

    /// One EC2 Query API call: its body and request id, or the error EC2 gave.
    async fn call(
        &self,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<(String, Option<String>), CallError> {
        let me = self.instance().await?;
        let keys = self.keys().await?;
        let url = self.endpoint.clone().unwrap_or_else(|| format!("https://ec2.{}.amazonaws.com", me.region)) + "/";
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.append_pair("Action", action).append_pair("Version", VERSION);
            for (k, v) in params {
                body.append_pair(k, v);
            }
            body.finish()
        };
        let req = self.sign(&keys, &me.region, &url, body, action)?;
        let a = self.http.send(action, req).await?;
        let id = xml_text(&a.body, "requestId").or(xml_text(&a.body, "RequestID")).or(a.request_id.clone());
        if a.status == 200 {
            return Ok((a.body, id));
        }
        Err(ec2_error(action, &a, id))
    }

    fn sign(
        &self,
        k: &Keys,
        region: &str,
        url: &str,
        body: String,
        action: &str,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let fail =
            |e: &dyn std::fmt::Display| CallError::new(action, &format!("cannot sign the request: {e}"), None, false);
        let creds = aws_credential_types::Credentials::new(&k.id, &k.secret, k.token.clone(), None, k.source);
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fail(&e))?
            .into();
        let ctype = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = [("content-type", ctype)];
        let signable = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body.as_bytes()))
            .map_err(|e| fail(&e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| fail(&e))?.into_parts();
        let mut signed = http::Request::builder().method("POST").uri(url).body(()).map_err(|e| fail(&e))?;
        instructions.apply_to_request_http1x(&mut signed);
        let mut req = self.http.request(Method::POST, url).header("content-type", ctype).body(body);
        for (name, value) in signed.headers() {
            req = req.header(name.as_str(), value.as_bytes());
        }
        Ok(req)
    }

    /// This instance's primary ENI and region, asked once.
    async fn instance(&self) -> Result<Instance, CallError> {
        if let Some(i) = self.instance.lock().expect("not poisoned").clone() {
            return Ok(i);
        }
        let token = self.imds_token().await?;
        let mac = self.imds(&token, "meta-data/mac").await?;
        let eni = self.imds(&token, &format!("meta-data/network/interfaces/macs/{mac}/interface-id")).await?;
        let region = match &self.region {
            Some(r) => r.clone(),
            None => self.imds(&token, "meta-data/placement/region").await?,
        };
        let i = Instance { eni, region };
        *self.instance.lock().expect("not poisoned") = Some(i.clone());
        Ok(i)
    }

    async fn keys(&self) -> Result<Keys, CallError> {
        if let Some(k) = self.keys.lock().expect("not poisoned").clone()
            && k.renew_at.is_none_or(|t| SystemTime::now() < t)
        {
            return Ok(k);
        }
        let k = self.fetch_keys().await?;
        *self.keys.lock().expect("not poisoned") = Some(k.clone());
        Ok(k)
    }

    async fn fetch_keys(&self) -> Result<Keys, CallError> {
        let what = "AWS credentials";
        let bad = |e: String| CallError::new(what, &e, None, false);
        if let Some(path) = &self.credentials_file {
            let f = credentials::read_file(path).map_err(bad)?;
            let (Some(id), Some(secret)) = (f.get("aws_access_key_id"), f.get("aws_secret_access_key")) else {
                return Err(bad(format!("{} lacks aws_access_key_id or aws_secret_access_key", path.display())));
            };
            let token = f.get("aws_session_token").cloned();
            return Ok(Keys {
                id: id.clone(),
                secret: secret.clone(),
                token,
                renew_at: None,
                source: "credentials_file",
            });
        }
        if let (Some(id), Some(secret)) = (
            credentials::from_env("AWS_ACCESS_KEY_ID").map_err(bad)?,
            credentials::from_env("AWS_SECRET_ACCESS_KEY").map_err(bad)?,
        ) {
            let token = credentials::from_env("AWS_SESSION_TOKEN").map_err(bad)?;
            return Ok(Keys { id, secret, token, renew_at: None, source: "the environment (AWS_ACCESS_KEY_ID)" });
        }
        let token = self.imds_token().await?;
        let role = self.imds(&token, "meta-data/iam/security-credentials/").await.map_err(|e| {
            CallError::new(what, &format!("no credentials_file, no AWS_ACCESS_KEY_ID, and no instance role ({e}); attach an IAM role to the instance"), None, e.retryable)
        })?;
        let role = role.lines().next().unwrap_or_default().trim().to_string();
        let json = self.imds(&token, &format!("meta-data/iam/security-credentials/{role}")).await?;
        let v: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| CallError::new(what, &format!("instance role {role}: {e}"), None, true))?;
        let field = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
        let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
            return Err(CallError::new(
                what,
                &format!("instance role {role}: no AccessKeyId/SecretAccessKey in the answer"),
                None,
                true,
            ));
        };
        let renew_at = field("Expiration")
            .and_then(|e| humantime::parse_rfc3339_weak(&e).ok())
            .map(|t| t.checked_sub(RENEW_BEFORE).unwrap_or(t))
            .or(Some(SystemTime::now() + RENEW_BEFORE));
        Ok(Keys { id, secret, token: field("Token"), renew_at, source: "the instance role" })
    }

    async fn imds_token(&self) -> Result<String, CallError> {
        let url = format!("{}/latest/api/token", self.metadata);
        let req = self.http.request(Method::PUT, &url).header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_S);
        let a = self.http.send("IMDSv2 token", req).await?;
        if a.status != 200 {
            return Err(metadata_error("IMDSv2 token", &url, &a));
        }
        Ok(a.body.trim().to_string())
    }

    async fn imds(&self, token: &str, path: &str) -> Result<String, CallError> {
        let url = format!("{}/latest/{path}", self.metadata);
        let req = self.http.request(Method::GET, &url).header("X-aws-ec2-metadata-token", token);
        let a = self.http.send("instance metadata", req).await?;
        if a.status != 200 || a.body.trim().is_empty() {
            return Err(metadata_error("instance metadata", &url, &a));
        }
        Ok(a.body.trim().to_string())
    }
}

fn ip_key(i: usize) -> String {
    format!("PrivateIpAddress.{}", i + 1)
}

fn value_key(i: usize) -> String {
    format!("Filter.1.Value.{}", i + 1)
}

fn table_key(i: usize) -> String {
    format!("RouteTableId.{}", i + 1)
}

/// A call's parameter.
/// `ReplaceRoute` (or `CreateRoute`) of `vip`/32 in `table` to `eni`.
fn route_params(table: &str, vip: IpAddr, eni: &str) -> Vec<(String, String)> {
    vec![kv("RouteTableId", table), kv("DestinationCidrBlock", format!("{vip}/32")), kv("NetworkInterfaceId", eni)]
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// EC2's answer to `ReplaceRoute` for a route that is not there yet ("… Use CreateRoute instead.").
fn route_missing(e: &CallError) -> bool {
    e.code.as_deref() == Some("InvalidRoute.NotFound")
        || (e.code.as_deref() == Some("InvalidParameterValue") && e.why.contains("Use CreateRoute"))
}

fn describe(holders: &[String]) -> String {
    if holders.is_empty() { "nobody".into() } else { holders.join(", ") }
}

fn metadata_error(what: &str, url: &str, a: &Answer) -> CallError {
    CallError::new(
        what,
        &format!(
            "{url} answered HTTP {}; is this an EC2 instance with IMDSv2 enabled (cloud metadata_endpoint)?",
            a.status
        ),
        a.request_id.clone(),
        retryable(a.status),
    )
}

/// EC2's error body (`<Response><Errors><Error><Code>…`), with what to do for the usual ones.
fn ec2_error(action: &str, a: &Answer, id: Option<String>) -> CallError {
    let code = xml_text(&a.body, "Code").unwrap_or_else(|| format!("HTTP {}", a.status));
    let message = xml_text(&a.body, "Message").unwrap_or_default();
    let hint = match code.as_str() {
        "UnauthorizedOperation" | "AuthFailure" => {
            format!("; allow ec2:{action} to the instance role or the credentials' user (README, \"Clouds\")")
        }
        _ => String::new(),
    };
    let again = retryable(a.status)
        || matches!(
            code.as_str(),
            "RequestLimitExceeded" | "Throttling" | "InternalError" | "Unavailable" | "ServiceUnavailable"
        );
    CallError::new(action, &format!("{code}: {message}{hint}"), id, again).with_code(&code)
}

/// The text of the first element named `tag`.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(body).ok()?;
    doc.descendants().find(|n| n.tag_name().name() == tag).and_then(|n| n.text()).map(|t| t.trim().to_string())
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children().find(|c| c.tag_name().name() == tag)
}

/// `DescribeNetworkInterfaces`: each ENI with its private addresses.
fn xml_enis(body: &str) -> Result<Vec<(String, Vec<IpAddr>)>, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("unreadable answer: {e}"))?;
    let set =
        doc.descendants().find(|n| n.tag_name().name() == "networkInterfaceSet").ok_or("no networkInterfaceSet")?;
    Ok(set
        .children()
        .filter(|n| n.tag_name().name() == "item")
        .filter_map(|item| {
            let eni = child(item, "networkInterfaceId")?.text()?.trim().to_string();
            let ips = item
                .descendants()
                .filter(|n| n.tag_name().name() == "privateIpAddress")
                .filter_map(|n| n.text()?.trim().parse().ok())
                .collect();
            Some((eni, ips))
        })
        .collect())
}

/// `DescribeRouteTables`: (table, destination, target) for every route.
fn xml_routes(body: &str) -> Result<Vec<(String, String, String)>, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("unreadable answer: {e}"))?;
    let set = doc.descendants().find(|n| n.tag_name().name() == "routeTableSet").ok_or("no routeTableSet")?;
    let mut out = Vec::new();
    for table in set.children().filter(|n| n.tag_name().name() == "item") {
        let Some(id) = child(table, "routeTableId").and_then(|n| n.text()) else { continue };
        let Some(routes) = child(table, "routeSet") else { continue };
        for r in routes.children().filter(|n| n.tag_name().name() == "item") {
            let text = |t| child(r, t).and_then(|n| n.text()).map(|s| s.trim().to_string());
            if let Some(dest) = text("destinationCidrBlock") {
                let target =
                    text("networkInterfaceId").or(text("instanceId")).or(text("gatewayId")).unwrap_or_default();
                out.push((id.trim().to_string(), dest, target));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ec2_answers_and_errors() {
        let enis = r#"<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId>
<networkInterfaceSet><item><networkInterfaceId>eni-a</networkInterfaceId><privateIpAddressesSet>
<item><privateIpAddress>192.0.2.10</privateIpAddress></item><item><privateIpAddress>192.0.2.100</privateIpAddress></item>
</privateIpAddressesSet></item></networkInterfaceSet></DescribeNetworkInterfacesResponse>"#;
        let got = xml_enis(enis).unwrap();
        assert_eq!(
            got,
            vec![("eni-a".to_string(), vec!["192.0.2.10".parse().unwrap(), "192.0.2.100".parse().unwrap()])]
        );
        assert_eq!(xml_text(enis, "requestId").as_deref(), Some("r-1"));
        let routes = r#"<DescribeRouteTablesResponse><routeTableSet><item><routeTableId>rtb-1</routeTableId><routeSet>
<item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item>
<item><destinationCidrBlock>192.0.2.100/32</destinationCidrBlock><networkInterfaceId>eni-b</networkInterfaceId></item>
</routeSet></item></routeTableSet></DescribeRouteTablesResponse>"#;
        let got = xml_routes(routes).unwrap();
        assert_eq!(got[1], ("rtb-1".into(), "192.0.2.100/32".into(), "eni-b".into()));
        let err = r#"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized</Message></Error></Errors><RequestID>req-9</RequestID></Response>"#;
        let a = Answer { status: 403, body: err.into(), request_id: None };
        let e = ec2_error("AssignPrivateIpAddresses", &a, xml_text(err, "RequestID"));
        assert_eq!(e.request_id.as_deref(), Some("req-9"));
        assert!(!e.retryable);
        assert!(e.to_string().contains("allow ec2:AssignPrivateIpAddresses"), "{e}");
        let a = Answer {
            status: 503,
            body: "<Response><Errors><Error><Code>Unavailable</Code></Error></Errors></Response>".into(),
            request_id: None,
        };
        assert!(ec2_error("ReplaceRoute", &a, None).retryable);
    }
}
