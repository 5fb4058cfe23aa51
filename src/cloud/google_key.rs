//! A Google service-account key (the JSON file the console or `gcloud iam service-accounts keys
//! create` writes) traded for an OAuth token: a JWT signed with the key (RS256) sent to the key's
//! `token_uri`, as Google's OAuth 2.0 for server-to-server applications describes.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use super::CallError;
use super::http::{Http, retryable};

/// The scope vipctl asks for: Compute Engine only.
const SCOPE: &str = "https://www.googleapis.com/auth/compute";
/// Where tokens come from when the key names no `token_uri`.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// A signed request is good for this long (Google's maximum).
const LIFETIME_S: u64 = 3600;

/// A parsed service-account key.
pub struct Key {
    email: String,
    token_uri: String,
    pair: RsaKeyPair,
}

impl Key {
    /// The key in `text`, a service-account key file's JSON.
    pub fn parse(text: &str) -> Result<Key, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not a service-account key (JSON): {e}"))?;
        if v["type"] != "service_account" {
            return Err("not a service-account key: its \"type\" is not \"service_account\"".into());
        }
        let field = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| format!("the key has no \"{k}\""));
        let email = field("client_email")?;
        let pem = field("private_key")?;
        let token_uri = v["token_uri"].as_str().unwrap_or(TOKEN_URI).to_string();
        if !token_uri.starts_with("https://") && !token_uri.starts_with("http://") {
            return Err(format!("the key's token_uri {token_uri:?} is not a URL"));
        }
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = STANDARD.decode(b64).map_err(|e| format!("the key's private_key is not PEM: {e}"))?;
        let pair =
            RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("the key's private_key is not an RSA PKCS#8 key: {e}"))?;
        Ok(Key { email, token_uri, pair })
    }

    /// The signed request (a JWT) for a token, issued at `now` (seconds since the epoch).
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        let claims =
            json!({ "iss": self.email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + LIFETIME_S });
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut sig)
            .map_err(|_| "cannot sign with the key".to_string())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A token and its lifetime in seconds.
    pub async fn token(&self, http: &Http) -> Result<(String, u64), CallError> {
        let what = "OAuth token (service-account key)";
        // Issued 10 s ago: Google refuses an assertion from the future, and clocks differ a little.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(10);
        let jwt = self.assertion(now).map_err(|e| CallError::new(what, &e, None, false))?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &jwt)
            .finish();
        let req = http
            .request(Method::POST, &self.token_uri)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        let a = http.send(what, req).await?;
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        match (a.status, v["access_token"].as_str(), v["expires_in"].as_u64()) {
            (200, Some(t), Some(s)) => Ok((t.to_string(), s)),
            (status, ..) => Err(CallError::new(
                what,
                &format!(
                    "{} answered HTTP {status} {} {}: is the key of {} still valid?",
                    self.token_uri,
                    v["error"].as_str().unwrap_or(""),
                    v["error_description"].as_str().unwrap_or(""),
                    self.email
                ),
                a.request_id,
                retryable(status),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_service_account_key_is_refused_with_the_reason() {
        for (text, want) in [
            ("token = x", "not a service-account key (JSON)"),
            (r#"{"type": "authorized_user"}"#, "is not \"service_account\""),
            (r#"{"type": "service_account", "private_key": "x"}"#, "no \"client_email\""),
            (r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----B-----\n%%%\n"}"#, "not PEM"),
            (r#"{"type": "service_account", "client_email": "a@b", "private_key": "AAAA"}"#, "not an RSA PKCS#8 key"),
            (
                r#"{"type": "service_account", "client_email": "a@b", "private_key": "AAAA", "token_uri": "file:///x"}"#,
                "is not a URL",
            ),
        ] {
            let e = Key::parse(text).err().expect("refused");
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
