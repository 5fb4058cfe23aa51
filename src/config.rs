//! The config file: which VIPs belong to which Redis master, and how to reach the sentinels.
//!
//! One file serves every host. Every mistake is reported with the file, the line and the fix, and a
//! config with any mistake is refused whole: vipctl never acts on half a config.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::network::vip::Vip;

/// Where the config is read from when neither `--config` nor `VIPCTL_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/vipctl/vipctl.toml";

/// Default number of announcement rounds after a bind.
pub const DEFAULT_ROUNDS: u32 = 3;
/// Default spacing of announcement rounds: three rounds finish in 200 ms, far from Sentinel's 60 s kill.
pub const DEFAULT_INTERVAL_MS: u64 = 100;
/// Default time to wait for one sentinel's answer.
pub const DEFAULT_SENTINEL_TIMEOUT_MS: u64 = 500;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Masters by name, in name order.
    pub masters: BTreeMap<String, Master>,
    /// How long to wait for each sentinel.
    pub sentinel_timeout: Duration,
    /// Credentials for the sentinels, if they need any.
    pub sentinel_auth: Option<AuthSpec>,
    /// TLS to the sentinels (their `tls-port`), if configured.
    pub sentinel_tls: Option<TlsSpec>,
    /// Credentials for the local Redis (its `ROLE`, early claim), if it needs any.
    pub redis_auth: Option<AuthSpec>,
    /// TLS to the local Redis (a TLS-only Redis), if configured.
    pub redis_tls: Option<TlsSpec>,
    /// A file that gets one line per decision, besides syslog.
    pub log_file: Option<PathBuf>,
    /// Where per-master lock files live.
    pub lock_dir: Option<PathBuf>,
    /// Settings of the `vipctl watch` daemon (and of hooks that hand work to it).
    pub watch: Watch,
}

/// Where the daemon's control socket lives unless the config or `VIPCTL_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vipctl/vipctl.sock";
/// The minority timeout when neither the config nor the sentinels say (Sentinel's own default
/// `down-after-milliseconds` is 30 s; most deployments set 5–10 s).
pub const DEFAULT_MINORITY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Env var overriding `[watch] socket` (one per host when hosts share a filesystem, as in the lab).
pub const SOCKET_ENV: &str = "VIPCTL_SOCKET";

/// The daemon's settings (`[watch]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The Unix socket hooks and `status` talk to.
    pub socket: PathBuf,
    /// Users (names or uids) whose hooks the daemon serves, besides root and its own user.
    pub hook_users: Vec<String>,
    /// How often the daemon re-checks everything even without events.
    pub reconcile_interval: Duration,
    /// How long a VIP holder may go without reaching a majority of sentinels before it lets go;
    /// `None`: the master's `down-after-milliseconds` as its sentinels report it.
    pub minority_timeout: Option<Duration>,
    /// Periodic re-announcement while holding; zero disables it.
    pub announce_refresh: Duration,
    /// Release the VIPs when the daemon stops (default: keep them; the VIP belongs to the master).
    pub release_on_exit: bool,
    /// Watch for other hosts claiming a held VIP, and re-announce at once when one does.
    pub defend: bool,
    /// Where to serve Prometheus metrics and /healthz; `None`: not at all.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Claim as soon as the local replica that the leader selected reports role:master.
    pub early_claim: bool,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            socket: PathBuf::from(DEFAULT_SOCKET),
            hook_users: Vec::new(),
            reconcile_interval: Duration::from_millis(500),
            minority_timeout: None,
            announce_refresh: Duration::ZERO,
            release_on_exit: false,
            defend: true,
            metrics_listen: None,
            early_claim: false,
        }
    }
}

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

/// Announcement schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// Rounds of gratuitous ARP / unsolicited NA; 0 disables announcing.
    pub rounds: u32,
    /// Time between rounds.
    pub interval: Duration,
}

/// A host (IP address, unbracketed, or name) and a port: a sentinel's address as written in the
/// config, a master's as Sentinel reports it, an endpoint in the hook's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct HostPort {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(|| format!("`{s}` is not [ADDRESS]:PORT"))?;
            (h.to_string(), p)
        } else {
            let (h, p) =
                s.rsplit_once(':').ok_or_else(|| format!("`{s}` has no port: write HOST:PORT, e.g. `{s}:26379`"))?;
            if h.contains(':') {
                return Err(format!("`{s}`: put an IPv6 address in brackets, e.g. `[{h}]:{p}`"));
            }
            (h.to_string(), p)
        };
        if host.is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{s}`: port `{port}` is not 1–65535"))?;
        Ok(HostPort { host, port })
    }

    /// The address, when the host is written as an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// A sentinel's address (`host:port`, `[v6]:port`).
pub type SentinelAddr = HostPort;

/// Credentials (AUTH) for the sentinels or for Redis. The password is read only when a connection
/// needs it: a hook that hands its call to the daemon never touches a secret.
#[derive(Clone)]
pub struct AuthSpec {
    /// ACL user, when not the default user.
    pub username: Option<String>,
    /// The password, or the file it is in.
    pub password: Secret,
    /// The table it came from (`sentinel_auth`, `redis_auth`), for messages.
    pub table: &'static str,
}

/// A password written in the config, or the file that holds it.
#[derive(Clone)]
pub enum Secret {
    /// In the config itself.
    Inline(String),
    /// In this file (one line).
    File(PathBuf),
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = match &self.password {
            Secret::Inline(_) => "<redacted>".to_string(),
            Secret::File(p) => format!("file {}", p.display()),
        };
        f.debug_struct("AuthSpec").field("username", &self.username).field("password", &password).finish()
    }
}

/// TLS settings for connections to the sentinels or to Redis: the files, read when connecting.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// CA bundle that signed the servers' certificates; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when the servers want mutual TLS (`tls-auth-clients yes`).
    pub client: Option<(PathBuf, PathBuf)>,
    /// The table it came from (`sentinel_tls`, `redis_tls`), for messages.
    pub table: &'static str,
}

/// A config problem, pinned to a line of the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config {path}: {error}; create it (see README, \"Configuration\") or point --config / VIPCTL_CONFIG at it"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message already says it, once).
        error: std::io::Error,
    },
    /// A mistake at a line.
    #[error("config {path} line {line}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A mistake about the file as a whole.
    #[error("config {path}: {message}")]
    Whole {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sentinels: Vec<Spanned<String>>,
    sentinel_timeout_ms: Option<Spanned<u64>>,
    sentinel_auth: Option<RawAuth>,
    sentinel_tls: Option<RawTls>,
    redis_auth: Option<RawAuth>,
    redis_tls: Option<RawTls>,
    log_file: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    announce: Option<RawAnnounce>,
    watch: Option<RawWatch>,
    #[serde(default)]
    masters: BTreeMap<String, RawMaster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: Option<String>,
    password: Option<String>,
    password_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnounce {
    rounds: Option<Spanned<u32>>,
    interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Spanned<PathBuf>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    socket: Option<PathBuf>,
    #[serde(default)]
    hook_users: Vec<String>,
    reconcile_interval_ms: Option<Spanned<u64>>,
    minority_timeout_ms: Option<Spanned<u64>>,
    announce_refresh_ms: Option<Spanned<u64>>,
    release_on_exit: Option<bool>,
    defend: Option<bool>,
    metrics_listen: Option<Spanned<String>>,
    early_claim: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaster {
    mode: Option<Spanned<String>>,
    vips: Spanned<Vec<Spanned<String>>>,
    interface: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
    announce: Option<RawAnnounce>,
    sentinels: Option<Vec<Spanned<String>>>,
    on_claim: Option<Spanned<Vec<String>>>,
    on_release: Option<Spanned<Vec<String>>>,
    notify_timeout_ms: Option<Spanned<u64>>,
}

/// The span of the start of a master's table, for messages about it as a whole.
fn master_line_span(lines: &Lines<'_>, name: &str) -> Range<usize> {
    let line = lines.master_line(name).unwrap_or(1);
    let start = lines.text.lines().take(line - 1).map(|l| l.len() + 1).sum();
    start..start
}

/// Converts byte offsets to 1-based line numbers of one file.
struct Lines<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Lines<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::At { path: self.path.to_path_buf(), line: self.line(span), message: message.into() }
    }
    fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Whole { path: self.path.to_path_buf(), message: message.into() }
    }
    /// The line of a `[masters.NAME]` header, for messages about a master as a whole.
    fn master_line(&self, name: &str) -> Option<usize> {
        let quoted = format!("[masters.\"{name}\"]");
        let bare = format!("[masters.{name}]");
        self.text
            .lines()
            .position(|l| {
                let l = l.trim();
                l.starts_with(&bare) || l.starts_with(&quoted)
            })
            .map(|i| i + 1)
    }
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        Config::parse(path, &text)
    }

    /// Like [`Config::load`], for a process with raised privileges: the file must be owned by root
    /// and writable by nobody else (it is opened without following a symlink, then checked).
    pub fn load_trusted(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let read = |error| ConfigError::Read { path: path.to_path_buf(), error };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(ConfigError::Whole {
                path: path.to_path_buf(),
                message: format!(
                    "must be a regular file owned by root and writable by root only (owner uid {}, mode {:o}) when \
                     vipctl runs with raised privileges; `chown root: {p}; chmod 644 {p}`",
                    meta.uid(),
                    meta.mode() & 0o7777,
                    p = path.display()
                ),
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read)?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let lines = Lines { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message =
                format!("{}; see README, \"Configuration\", for the keys vipctl knows", e.message().trim_end());
            match e.span() {
                Some(span) => lines.err(span, message),
                None => lines.whole(message),
            }
        })?;

        let global_sentinels = parse_sentinels(&lines, &raw.sentinels)?;
        let default_announce = parse_announce(
            &lines,
            raw.announce,
            Announce { rounds: DEFAULT_ROUNDS, interval: Duration::from_millis(DEFAULT_INTERVAL_MS) },
        )?;
        let sentinel_timeout = match &raw.sentinel_timeout_ms {
            // Capped so that a hook (lock + sentinels + announcements) stays far from Sentinel's 60 s kill.
            Some(t) if *t.get_ref() == 0 || *t.get_ref() > 5_000 => {
                return Err(lines.err(t.span(), "sentinel_timeout_ms must be 1–5000 (default 500)"));
            }
            Some(t) => Duration::from_millis(*t.get_ref()),
            None => Duration::from_millis(DEFAULT_SENTINEL_TIMEOUT_MS),
        };
        let sentinel_auth = raw.sentinel_auth.map(|a| parse_auth(&lines, a, "sentinel_auth")).transpose()?;
        let sentinel_tls = raw.sentinel_tls.map(|t| parse_tls(&lines, t, "sentinel_tls")).transpose()?;
        let redis_auth = raw.redis_auth.map(|a| parse_auth(&lines, a, "redis_auth")).transpose()?;
        let redis_tls = raw.redis_tls.map(|t| parse_tls(&lines, t, "redis_tls")).transpose()?;

        if raw.masters.is_empty() {
            return Err(lines.whole("no masters: add a `[masters.NAME]` table with `vips = [\"ADDRESS/PREFIX\"]` for each Sentinel master name"));
        }

        // Each VIP may belong to one master only: two masters fighting over one address is never meant.
        let mut seen: BTreeMap<IpAddr, (String, usize)> = BTreeMap::new();
        let mut masters = BTreeMap::new();
        for (name, rm) in raw.masters {
            let master_line = lines.master_line(&name).unwrap_or(1);
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::At {
                    path: path.to_path_buf(),
                    line: master_line,
                    message: format!("master name {name:?} must be the non-empty name Sentinel monitors (no spaces)"),
                });
            }
            if rm.vips.get_ref().is_empty() {
                return Err(lines.err(
                    rm.vips.span(),
                    format!("master `{name}` has no VIPs: list at least one, e.g. vips = [\"198.51.100.100/24\"]"),
                ));
            }
            let mut vips = Vec::new();
            for v in rm.vips.get_ref() {
                let vip: Vip = v.get_ref().parse().map_err(|e| lines.err(v.span(), format!("master `{name}`: {e}")))?;
                let line = lines.line(v.span());
                if let Some((other, other_line)) = seen.get(&vip.addr) {
                    return Err(lines.err(v.span(), format!("VIP {} is listed twice (master `{other}`, line {other_line}, and master `{name}`): keep it under one master only", vip.addr)));
                }
                seen.insert(vip.addr, (name.clone(), line));
                vips.push(vip);
            }
            let interface = match rm.interface {
                Some(i) => {
                    let n = i.get_ref();
                    if n.is_empty() || n.len() > 15 || n.contains('/') || n.chars().any(char::is_whitespace) {
                        return Err(lines.err(i.span(), format!("interface {n:?} is not a valid Linux interface name (1–15 characters, no '/' or spaces)")));
                    }
                    Some(n.clone())
                }
                None => None,
            };
            let label = match rm.label {
                Some(l) => {
                    let s = l.get_ref();
                    if s.is_empty() || s.len() > 15 {
                        return Err(lines.err(
                            l.span(),
                            format!("label {s:?} must be 1–15 characters (Linux's limit), e.g. \"eth0:redis\""),
                        ));
                    }
                    if let Some(ifn) = &interface
                        && !s.starts_with(ifn.as_str())
                    {
                        return Err(lines.err(l.span(), format!("label {s:?} must start with the interface name (Linux requires it), e.g. \"{ifn}:redis\"")));
                    }
                    Some(s.clone())
                }
                None => None,
            };
            let mode = match &rm.mode {
                None => Mode::L2,
                Some(m) if m.get_ref() == "l2" => Mode::L2,
                Some(m) if m.get_ref() == "routed" => Mode::Routed,
                Some(m) => {
                    return Err(lines.err(
                        m.span(),
                        format!("mode {:?} of master `{name}` is not \"l2\" (the default) or \"routed\"", m.get_ref()),
                    ));
                }
            };
            let (interface, announce) = match mode {
                Mode::L2 => (interface, parse_announce(&lines, rm.announce, default_announce)?),
                Mode::Routed => {
                    if let Some(v) =
                        rm.vips.get_ref().iter().zip(&vips).find(|(_, v)| v.prefix != Vip::max_prefix(v.addr))
                    {
                        return Err(lines.err(
                            v.0.span(),
                            format!(
                                "master `{name}` is routed: its VIPs are host routes, so write {} as {}/{}",
                                v.0.get_ref(),
                                v.1.addr,
                                Vip::max_prefix(v.1.addr)
                            ),
                        ));
                    }
                    if rm.announce.is_some() {
                        return Err(lines.err(
                            master_line_span(&lines, &name),
                            format!("master `{name}` is routed: its VIPs reach the clients through BGP, not announcements; remove [masters.{name}.announce]"),
                        ));
                    }
                    // The speaker picks the prefixes up from the kernel; lo needs no subnet.
                    (interface.or(Some("lo".to_string())), Announce { rounds: 0, interval: Duration::ZERO })
                }
            };
            let sentinels = match &rm.sentinels {
                Some(list) => parse_sentinels(&lines, list)?,
                None => global_sentinels.clone(),
            };
            let argv = |v: Option<Spanned<Vec<String>>>, key: &str| -> Result<Vec<String>, ConfigError> {
                match v {
                    Some(a) if a.get_ref().is_empty() || a.get_ref()[0].is_empty() => Err(lines.err(
                        a.span(),
                        format!("{key} of master `{name}` must be a command as a list of words, e.g. [\"/usr/local/bin/alert\", \"--vip\"]"),
                    )),
                    Some(a) => Ok(a.into_inner()),
                    None => Ok(Vec::new()),
                }
            };
            let timeout = match &rm.notify_timeout_ms {
                Some(t) if !(1..=30_000).contains(t.get_ref()) => {
                    return Err(lines.err(t.span(), "notify_timeout_ms must be 1–30000 (default 10000)"));
                }
                Some(t) => Duration::from_millis(*t.get_ref()),
                None => Duration::from_millis(10_000),
            };
            let notify = Notify {
                on_claim: argv(rm.on_claim, "on_claim")?,
                on_release: argv(rm.on_release, "on_release")?,
                timeout,
            };
            masters.insert(name.clone(), Master { name, vips, interface, label, announce, sentinels, notify, mode });
        }

        // A VIP that is a sentinel's address is some host's own address: moving it would cut that host off.
        for m in masters.values() {
            for s in &m.sentinels {
                if let Some(ip) = s.ip()
                    && let Some((owner, line)) = seen.get(&ip)
                {
                    return Err(ConfigError::At {
                        path: path.to_path_buf(),
                        line: *line,
                        message: format!(
                            "VIP {ip} of master `{owner}` is also the address of sentinel {s}, i.e. a host's own address: pick an unused address for the VIP"
                        ),
                    });
                }
            }
        }

        let watch = parse_watch(&lines, raw.watch)?;
        Ok(Config {
            path: path.to_path_buf(),
            masters,
            sentinel_timeout,
            sentinel_auth,
            sentinel_tls,
            redis_auth,
            redis_tls,
            log_file: raw.log_file,
            lock_dir: raw.lock_dir,
            watch,
        })
    }

    /// The master to act on for `claim`/`release`: the one named, or the only one.
    pub fn pick_master(&self, name: Option<&str>) -> Result<&Master, String> {
        match name {
            Some(n) => self.master(n),
            None if self.masters.len() == 1 => Ok(self.masters.values().next().expect("one master")),
            None => Err(format!(
                "config {} names {} masters ({}): say which one",
                self.path.display(),
                self.masters.len(),
                self.masters.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The master called `name`, or an error that lists the known ones.
    pub fn master(&self, name: &str) -> Result<&Master, String> {
        self.masters.get(name).ok_or_else(|| {
            format!(
                "master `{name}` is not in config {} (it has: {}); add a [masters.{name}] table or fix the name in sentinel.conf",
                self.path.display(),
                self.masters.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Every VIP of every master: addresses vipctl manages and so never counts as the host's own.
    pub fn all_vips(&self) -> impl Iterator<Item = &Vip> {
        self.masters.values().flat_map(|m| m.vips.iter())
    }

    /// The addresses vipctl manages (every VIP in the config): never counted as the host's own.
    pub fn managed(&self) -> Vec<IpAddr> {
        self.all_vips().map(|v| v.addr).collect()
    }
}

fn parse_sentinels(lines: &Lines<'_>, list: &[Spanned<String>]) -> Result<Vec<SentinelAddr>, ConfigError> {
    let mut out: Vec<SentinelAddr> = Vec::new();
    for s in list {
        let a = SentinelAddr::parse(s.get_ref()).map_err(|m| lines.err(s.span(), format!("sentinel address {m}")))?;
        if out.contains(&a) {
            return Err(lines.err(
                s.span(),
                format!("sentinel {a} is listed twice: remove one (a duplicate would count twice in the majority)"),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

fn parse_announce(lines: &Lines<'_>, raw: Option<RawAnnounce>, default: Announce) -> Result<Announce, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    let rounds = match &raw.rounds {
        Some(r) if *r.get_ref() > 50 => {
            return Err(lines.err(r.span(), "announce rounds must be 0–50 (0 disables announcing; default 3)"));
        }
        Some(r) => *r.get_ref(),
        None => default.rounds,
    };
    let interval = match &raw.interval_ms {
        Some(i) if *i.get_ref() > 10_000 => {
            return Err(lines.err(i.span(), "announce interval_ms must be 0–10000 (default 100)"));
        }
        Some(i) => Duration::from_millis(*i.get_ref()),
        None => default.interval,
    };
    // Keep the hook far from Sentinel's 60 s kill whatever the settings say.
    if interval.saturating_mul(rounds.saturating_sub(1)) > Duration::from_secs(20) {
        let span = raw.interval_ms.as_ref().map(|i| i.span()).or(raw.rounds.as_ref().map(|r| r.span())).unwrap_or(0..0);
        return Err(lines.err(
            span,
            "announce rounds × interval_ms exceeds 20 s; the hook must finish well before Sentinel kills it at 60 s",
        ));
    }
    Ok(Announce { rounds, interval })
}

fn parse_watch(lines: &Lines<'_>, raw: Option<RawWatch>) -> Result<Watch, ConfigError> {
    let mut w = Watch::default();
    if let Ok(p) = std::env::var(SOCKET_ENV)
        && !p.is_empty()
    {
        w.socket = PathBuf::from(p);
    }
    let Some(raw) = raw else { return Ok(w) };
    let ms = |v: &Option<Spanned<u64>>, key: &str, range: std::ops::RangeInclusive<u64>, default: Duration| match v {
        Some(x) if !range.contains(x.get_ref()) => Err(lines.err(
            x.span(),
            format!("[watch] {key} must be {}–{} (default {})", range.start(), range.end(), default.as_millis()),
        )),
        Some(x) => Ok(Duration::from_millis(*x.get_ref())),
        None => Ok(default),
    };
    w.reconcile_interval = ms(&raw.reconcile_interval_ms, "reconcile_interval_ms", 50..=60_000, w.reconcile_interval)?;
    if raw.minority_timeout_ms.is_some() {
        w.minority_timeout =
            Some(ms(&raw.minority_timeout_ms, "minority_timeout_ms", 0..=600_000, DEFAULT_MINORITY_TIMEOUT)?);
    }
    w.announce_refresh = ms(&raw.announce_refresh_ms, "announce_refresh_ms", 0..=3_600_000, w.announce_refresh)?;
    if std::env::var_os(SOCKET_ENV).is_none()
        && let Some(s) = raw.socket
    {
        w.socket = s;
    }
    w.hook_users = raw.hook_users;
    w.release_on_exit = raw.release_on_exit.unwrap_or(w.release_on_exit);
    w.defend = raw.defend.unwrap_or(w.defend);
    w.early_claim = raw.early_claim.unwrap_or(w.early_claim);
    if let Some(m) = raw.metrics_listen {
        let addr = m.get_ref().parse().map_err(|_| {
            lines.err(
                m.span(),
                format!("[watch] metrics_listen {:?} is not ADDRESS:PORT, e.g. \"127.0.0.1:9477\"", m.get_ref()),
            )
        })?;
        w.metrics_listen = Some(addr);
    }
    Ok(w)
}

fn parse_tls(lines: &Lines<'_>, raw: RawTls, table: &'static str) -> Result<TlsSpec, ConfigError> {
    let client = match (raw.cert_file, raw.key_file) {
        (Some(c), Some(k)) => Some((c.into_inner(), k.into_inner())),
        (None, None) => None,
        (Some(f), None) | (None, Some(f)) => {
            return Err(lines.err(
                f.span(),
                format!("{table} needs both cert_file and key_file for a client certificate, or neither"),
            ));
        }
    };
    Ok(TlsSpec { ca_file: raw.ca_file.map(Spanned::into_inner), client, table })
}

fn parse_auth(lines: &Lines<'_>, raw: RawAuth, table: &'static str) -> Result<AuthSpec, ConfigError> {
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(f)) => {
            return Err(lines.err(f.span(), format!("{table} has both password and password_file: keep one")));
        }
        (Some(p), None) => Secret::Inline(p),
        (None, Some(f)) => Secret::File(f.into_inner()),
        (None, None) => return Err(lines.whole(format!("{table} needs password or password_file"))),
    };
    Ok(AuthSpec { username: raw.username, password, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
sentinels = ["198.51.100.11:26379", "198.51.100.12:26379"]

[masters.mymaster]
vips = ["198.51.100.100/24", "2001:db8:51::100/64"]
interface = "eth0"
"#;

    #[test]
    fn reads_the_documented_example() {
        let c = parse(GOOD).unwrap();
        let m = c.master("mymaster").unwrap();
        assert_eq!(m.vips.len(), 2);
        assert_eq!(m.interface.as_deref(), Some("eth0"));
        assert_eq!(m.sentinels.len(), 2);
        assert_eq!(m.announce, Announce { rounds: 3, interval: Duration::from_millis(100) });
        assert_eq!(c.pick_master(None).unwrap().name, "mymaster");
    }

    #[test]
    fn watch_settings() {
        let c = parse("[watch]\nminority_timeout_ms = 3000\nhook_users = [\"redis\"]\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n")
            .unwrap();
        assert_eq!(c.watch.minority_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.watch.hook_users, ["redis"]);
        assert_eq!(c.watch.reconcile_interval, Duration::from_millis(500));
        let e = err("[watch]\nreconcile_interval_ms = 1\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn packaged_example_is_valid() {
        let c = parse(include_str!("../packaging/vipctl.toml")).unwrap();
        assert_eq!(c.masters["mymaster"].vips.len(), 2);
        assert_eq!(c.masters["mymaster"].sentinels.len(), 3);
    }

    #[test]
    fn the_readme_reference_is_a_valid_config() {
        let readme = include_str!("../README.md");
        let start = readme.find("## Configuration\n\n```toml\n").expect("README has a Configuration example")
            + "## Configuration\n\n```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let c = parse(&readme[start..end]).unwrap_or_else(|e| panic!("README's config example: {e}"));
        assert_eq!(c.masters["mymaster"].mode, Mode::L2);
    }

    #[test]
    fn routed_masters_take_host_routes_on_lo_and_announce_nothing() {
        let c =
            parse("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/32\", \"2001:db8:ff::100/128\"]\n").unwrap();
        let m = c.master("r").unwrap();
        assert_eq!((m.mode, m.interface.as_deref(), m.announce.rounds), (Mode::Routed, Some("lo"), 0));
        let e = err("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/24\"]\n");
        assert!(e.contains("line 3") && e.contains("write 192.0.2.100/24 as 192.0.2.100/32"), "{e}");
        let e = err("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/32\"]\n[masters.r.announce]\nrounds = 2\n");
        assert!(e.contains("remove [masters.r.announce]"), "{e}");
        let e = err("[masters.r]\nmode = \"bgp\"\nvips = [\"192.0.2.100/32\"]\n");
        assert!(e.contains("line 2") && e.contains("\"routed\""), "{e}");
        let l2 = parse(GOOD).unwrap();
        assert_eq!(l2.master("mymaster").unwrap().mode, Mode::L2);
    }

    #[test]
    fn a_missing_config_names_its_cause_once() {
        let e = Config::load(Path::new("/nonexistent/vipctl.toml")).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
    }

    #[test]
    fn unknown_key_names_line() {
        let e = err("[masters.m]\nvips = [\"198.51.100.100/24\"]\nvipz = 1\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("vipz"), "{e}");
    }

    #[test]
    fn duplicate_vip_names_both() {
        let e = err("[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.b]\nvips = [\"198.51.100.100/24\"]\n");
        assert!(e.contains("line 4") && e.contains("line 2") && e.contains("twice"), "{e}");
    }

    #[test]
    fn prefix_out_of_range() {
        let e = err("[masters.a]\nvips = [\"198.51.100.100/40\"]\n");
        assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
    }

    #[test]
    fn vip_that_is_a_host_address() {
        let e = err("sentinels = [\"198.51.100.11:26379\"]\n[masters.a]\nvips = [\"198.51.100.11/24\"]\n");
        assert!(e.contains("line 3") && e.contains("own address"), "{e}");
    }

    #[test]
    fn no_masters_and_empty_vips() {
        assert!(err("").contains("no masters"));
        assert!(err("[masters.a]\nvips = []\n").contains("no VIPs"));
    }

    #[test]
    fn sentinel_address_forms() {
        assert_eq!(SentinelAddr::parse("[2001:db8::1]:26379").unwrap().host, "2001:db8::1");
        assert_eq!(SentinelAddr::parse("sentinel-1:26379").unwrap().port, 26379);
        assert!(SentinelAddr::parse("2001:db8::1:26379").is_err());
        assert!(SentinelAddr::parse("host").is_err());
        assert!(SentinelAddr::parse("host:0").is_err());
        let e = err("sentinels = [\"a:1\", \"a:1\"]\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn announce_bounds() {
        let e = err("[announce]\nrounds = 51\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err(
            "[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.a.announce]\nrounds = 50\ninterval_ms = 10000\n",
        );
        assert!(e.contains("20 s"), "{e}");
        let c = parse("[announce]\nrounds = 5\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
        assert_eq!(c.masters["a"].announce.rounds, 5);
    }

    #[test]
    fn label_must_start_with_interface() {
        let e = err("[masters.a]\nvips = [\"198.51.100.100/24\"]\ninterface = \"eth0\"\nlabel = \"eth1:x\"\n");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn several_masters_need_a_name() {
        let c = parse("[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.b]\nvips = [\"198.51.100.101/24\"]\n")
            .unwrap();
        assert!(c.pick_master(None).unwrap_err().contains("say which"));
        assert!(c.master("zz").unwrap_err().contains("not in config"));
    }

    #[test]
    fn auth_is_redacted_in_debug() {
        let c =
            parse("[sentinel_auth]\npassword = \"hunter2\"\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
