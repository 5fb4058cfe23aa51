//! How vipctl reaches a sentinel or a Redis: credentials, TLS and TCP settings, in one place, so
//! that every connection (questions, event subscriptions, role probes) is made the same way.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::{AuthSpec, HostPort, Secret, TlsSpec};
use crate::error::Failure;

/// Credentials and TLS for one kind of server (the sentinels, or the Redis instances), loaded.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// AUTH credentials.
    pub auth: Option<Credentials>,
    /// TLS material.
    pub tls: Option<Tls>,
}

/// A user name and password. Never printed.
#[derive(Clone)]
pub struct Credentials {
    /// ACL user, when not the default user.
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// PEM contents for TLS connections.
#[derive(Clone)]
pub struct Tls {
    /// CA bundle; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("ca", &self.ca.is_some()).field("client", &self.client.is_some()).finish()
    }
}

impl Access {
    /// Credentials and TLS for the sentinels, as configured (the files are read now).
    pub fn sentinels(config: &crate::config::Config) -> Result<Access, Failure> {
        Access::load(config.sentinel_auth.as_ref(), config.sentinel_tls.as_ref())
    }

    /// Credentials and TLS for the Redis instances, as configured (the files are read now).
    pub fn redis(config: &crate::config::Config) -> Result<Access, Failure> {
        Access::load(config.redis_auth.as_ref(), config.redis_tls.as_ref())
    }

    /// Reads the secrets and certificates the config names. A file that cannot be read is
    /// permanent (exit 2): the message names it and the config key.
    pub fn load(auth: Option<&AuthSpec>, tls: Option<&TlsSpec>) -> Result<Access, Failure> {
        let read = |table: &str, key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                Failure::permanent(anyhow::anyhow!(
                    "cannot read {table}.{key} {}: {e}; make it readable by the user vipctl runs as, or fix the path",
                    path.display()
                ))
            })
        };
        let auth = match auth {
            None => None,
            Some(a) => {
                let password = match &a.password {
                    Secret::Inline(p) => p.clone(),
                    Secret::File(path) => String::from_utf8_lossy(&read(a.table, "password_file", path)?)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                };
                Some(Credentials { username: a.username.clone(), password })
            }
        };
        let tls = match tls {
            None => None,
            Some(t) => Some(Tls {
                ca: t.ca_file.as_deref().map(|p| read(t.table, "ca_file", p)).transpose()?,
                client: match &t.client {
                    Some((c, k)) => Some((read(t.table, "cert_file", c)?, read(t.table, "key_file", k)?)),
                    None => None,
                },
            }),
        };
        Ok(Access { auth, tls })
    }
}

/// Keepalive probes start after this long idle, so that a peer that vanished without a FIN (a
/// cut cable, a frozen VM) is noticed on long-lived connections even when nothing is asked.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;

impl Access {
    /// A client for the server at `s`. With TLS the server's certificate must name the address or
    /// host name written in the config (an IP SAN for an IP).
    pub fn client(&self, s: &HostPort) -> redis::RedisResult<redis::Client> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(a) = &self.auth {
            if let Some(u) = &a.username {
                settings = settings.set_username(u);
            }
            settings = settings.set_password(&a.password);
        }
        let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(
            TcpKeepalive::new()
                .with_time(KEEPALIVE_IDLE)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(KEEPALIVE_RETRIES),
        );
        match &self.tls {
            None => {
                let info = ConnectionAddr::Tcp(s.host.clone(), s.port)
                    .into_connection_info()?
                    .set_redis_settings(settings)
                    .set_tcp_settings(tcp);
                redis::Client::open(info)
            }
            Some(tls) => {
                let addr =
                    ConnectionAddr::TcpTls { host: s.host.clone(), port: s.port, insecure: false, tls_params: None };
                let info = addr.into_connection_info()?.set_redis_settings(settings).set_tcp_settings(tcp);
                let certs = redis::TlsCertificates {
                    client_tls: tls
                        .client
                        .as_ref()
                        .map(|(c, k)| redis::ClientTlsConfig { client_cert: c.clone(), client_key: k.clone() }),
                    root_cert: tls.ca.clone(),
                };
                redis::Client::build_with_tls(info, certs)
            }
        }
    }

    /// Connects to `s` for questions, within `timeout` for the whole handshake (TCP, TLS, AUTH).
    /// Questions on the connection are bounded by their callers.
    pub async fn connect(&self, s: &HostPort, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let client = self.client(s)?;
        let config =
            redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(None);
        match tokio::time::timeout(timeout, client.get_multiplexed_async_connection_with_config(&config)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} ms", timeout.as_millis()),
            )
            .into()),
        }
    }
}

/// Connects to `s` and describes the failure in one line; a server that does not speak RESP is
/// named as such, with the first bytes it answers a PING with (plain TCP only).
pub async fn connect_error(s: &HostPort, e: &redis::RedisError, tls: bool) -> String {
    let text = describe(e);
    if tls || !text.contains("does not speak the Redis protocol") {
        return text;
    }
    match what_it_sent(s).await {
        Some(sent) => format!("the server there does not speak the Redis protocol: it answers PING with {sent:?}"),
        None => text,
    }
}

/// Up to 64 bytes a server answers `PING` with, within half a second.
async fn what_it_sent(s: &HostPort) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut c = tokio::net::TcpStream::connect((s.host.as_str(), s.port)).await.ok()?;
        c.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_millis(500), work).await.ok().flatten()
}

/// One line for a connection or protocol error. A server that does not speak RESP (an HTTP
/// server on the port, say) makes the parser report bytes; say what the peer is instead.
pub fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::Parse || text.contains("Unexpected") {
        return format!("the server there does not speak the Redis protocol ({})", first_line(&text));
    }
    first_line(&text).to_string()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}
