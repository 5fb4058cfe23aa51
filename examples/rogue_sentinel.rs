//! A lying sentinel for attack tests: a RESP proxy in front of one real Redis Sentinel that relays
//! every question and answer except those it is told to falsify, and publishes events the real
//! sentinel never sent. A second mode is a fake replica. Both exist to show that one lying
//! sentinel, or an address no sentinel majority vouched for, cannot steer vipctl.
//!
//! ```text
//! rogue_sentinel --listen ADDR:PORT --upstream ADDR:PORT [--lie 'RULE']... [--max-runtime-s N]
//! rogue_sentinel --fake-redis ADDR:PORT --master HOST:PORT [--run-id ID] [--offset N] [--max-runtime-s N]
//! ```
//!
//! # The proxy
//!
//! Each client connection gets its own upstream connection. Commands are forwarded and replies
//! relayed in order (pipelines, AUTH, HELLO, CLIENT SETINFO too), as the upstream's raw bytes
//! unless a rule rewrites them. Pub/sub frames (`message`, `pmessage`, subscribe confirmations,
//! RESP3 pushes) are relayed as they come. Control commands on the same port, answered by the
//! proxy itself and never forwarded:
//!
//! ```text
//! ROGUE.PUBLISH <channel> <payload>    inject one event now; answers :N, the subscribers reached
//! ROGUE.ON <up-channel> <delay-ms> <channel> <payload>
//!                                      when the upstream next publishes on <up-channel> (any
//!                                      payload), inject <channel> <payload> <delay-ms> later, once;
//!                                      the upstream's events are seen through the clients' own
//!                                      subscriptions, so some client must be subscribed to it
//! ROGUE.LIE <rule...>                  rewrite answers from now on (rules below)
//! ROGUE.STATS                          what the proxy saw (below)
//! ```
//!
//! An injected event reaches every client subscribed to its channel (`message`) or to a matching
//! pattern (`pmessage`, one per pattern, Redis's glob), as a RESP3 push to a client that said
//! `HELLO 3`. vipctl subscribes with `PSUBSCRIBE *`, so it gets `pmessage * <channel> <payload>`.
//!
//! Rules, for `ROGUE.LIE` (one word per argument) and `--lie` (words split on spaces):
//!
//! ```text
//! replica <master> <ip> <port> [priority N] [offset N] [runid ID]
//!     SENTINEL REPLICAS|SLAVES <master> lists one more replica, healthy (flags "slave",
//!     master-link-status "ok") and the best choice: priority 1 and offset 2^50 unless given;
//!     rules add up (at most 16)
//! master-addr <master> <ip> <port>
//!     SENTINEL GET-MASTER-ADDR-BY-NAME <master> answers ip and port; SENTINEL MASTER <master> and
//!     SENTINEL MASTERS give the same ip and port
//! epoch <master> <n>
//!     SENTINEL MASTER <master> and SENTINEL MASTERS give config-epoch n
//! clear
//!     removes every rule
//! ```
//!
//! `ROGUE.STATS` answers a bulk string of `key:value` lines, INFO-style: `connections` (accepted),
//! `open`, `injected` (events), `delivered` (event × subscriber), `rewritten` (answers falsified),
//! `auth` (commands that carried credentials: AUTH, or HELLO with AUTH), one
//! `auth_user:<user>:<n>` per user name seen (`default` for a bare password; passwords are never
//! kept), one `cmd:<name>:<n>` per command forwarded (lowercase) and, for container commands,
//! `cmd:<name>|<subcommand>:<n>` too (`cmd:sentinel|get-master-addr-by-name:2`), one
//! `lie:<rule>` per rule and one `trigger:<ROGUE.ON arguments>` per pending trigger.
//!
//! # The fake replica
//!
//! `--fake-redis` answers like a healthy replica of `--master`: `ROLE` with a replica reply,
//! `INFO` with `role:slave`, the `--run-id` (default 40 × `f`) and offset `--offset` (default
//! 2^50), `PING` with PONG, `AUTH` with +OK (counted and logged, the secret never kept),
//! `REPLICAOF`/`SLAVEOF`/`CONFIG`/`CLIENT` with +OK (nothing changes), `HELLO` as a RESP2 server,
//! `ROGUE.STATS` as above (every command received is counted), `QUIT`, and anything else with an
//! error. It changes nothing, so a test can tell from its counts what vipctl sent it.
//!
//! # Limits
//!
//! Odd input never crashes it: a client that sends malformed RESP is closed; a client whose
//! upstream goes away (or refuses the connection) is closed. Every buffer is bounded: strings
//! over 1 MiB, commands over 1024 arguments, aggregates over 65536 elements, nesting over 16
//! levels, more than 4 MiB of unparsed bytes or 4096 answers owed on one connection, more than 128
//! connections, writes stalled for 5 s: each closes that connection. The process exits by itself
//! after `--max-runtime-s` (default 600, at most 3600), so a forgotten one always ends.
//!
//! It logs one line per connection, per injected event, per credential seen and per trigger to
//! stderr, each starting with the Unix time in milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest string (bulk, verbatim, blob error) accepted from either side.
const MAX_BULK: usize = 1 << 20;
/// The longest line (a simple string, a length header, an inline command).
const MAX_LINE: usize = 64 * 1024;
/// Arguments of one client command.
const MAX_ARGS: usize = 1024;
/// Elements of one aggregate in a reply.
const MAX_ELEMENTS: usize = 1 << 16;
/// Nesting of aggregates in a reply.
const MAX_DEPTH: usize = 16;
/// Unparsed bytes held per direction of a connection.
const MAX_BUFFER: usize = 4 << 20;
/// Answers owed to one client (commands in flight).
const MAX_OWED: usize = 4096;
/// Open client connections.
const MAX_CONNECTIONS: u64 = 128;
/// Connecting upstream, writing to either side, and finishing owed answers after a client's EOF.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Injected events queued for one client that does not read.
const INJECT_QUEUE: usize = 256;
/// Pending `ROGUE.ON` triggers.
const MAX_TRIGGERS: usize = 64;
/// The longest `ROGUE.ON` delay.
const MAX_DELAY_MS: u64 = 60_000;
/// Fake replicas added to answers.
const MAX_FAKE_REPLICAS: usize = 16;
/// Channels (or patterns) tracked per client and kind.
const MAX_SUBSCRIPTIONS: usize = 1024;
/// Distinct command names and user names kept in the statistics.
const MAX_STAT_KEYS: usize = 256;
/// The default and longest `--max-runtime-s`.
const DEFAULT_RUNTIME_S: u64 = 600;
const MAX_RUNTIME_S: u64 = 3600;
/// A fake replica's default offset: far ahead of any real one.
const HUGE_OFFSET: u64 = 1 << 50;

const USAGE: &str = "usage: rogue_sentinel --listen ADDR:PORT --upstream ADDR:PORT [--lie 'RULE']... [--max-runtime-s N]\n\
       rogue_sentinel --fake-redis ADDR:PORT --master HOST:PORT [--run-id ID] [--offset N] [--max-runtime-s N]\n\
       (see the top comment of examples/rogue_sentinel.rs)";

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("rogue_sentinel: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rogue_sentinel: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args))
}

// --- arguments ----------------------------------------------------------------------------------

/// What to be.
enum Mode {
    /// A lying sentinel in front of `upstream`, with rules from the start.
    Proxy { upstream: SocketAddr, lies: Lies },
    /// A fake replica.
    Fake(FakeSpec),
}

struct Args {
    listen: SocketAddr,
    mode: Mode,
    max_runtime: Duration,
}

/// What the fake replica claims.
struct FakeSpec {
    master_host: String,
    master_port: u16,
    run_id: String,
    offset: u64,
    port: u16,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut listen, mut upstream, mut fake, mut master) = (None, None, None, None);
    let (mut run_id, mut offset, mut runtime_s) = ("f".repeat(40), HUGE_OFFSET, DEFAULT_RUNTIME_S);
    let mut lies = Lies::default();
    while let Some(arg) = argv.next() {
        let mut value = |what: &str| argv.next().ok_or_else(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(socket_addr("--listen", &value("--listen")?)?),
            "--upstream" => upstream = Some(socket_addr("--upstream", &value("--upstream")?)?),
            "--fake-redis" => fake = Some(socket_addr("--fake-redis", &value("--fake-redis")?)?),
            "--master" => master = Some(host_port(&value("--master")?)?),
            "--run-id" => run_id = word("--run-id", &value("--run-id")?)?,
            "--offset" => offset = number("--offset", &value("--offset")?)?,
            "--max-runtime-s" => runtime_s = number("--max-runtime-s", &value("--max-runtime-s")?)?,
            "--lie" => {
                let rule = value("--lie")?;
                let words: Vec<Vec<u8>> = rule.split_whitespace().map(|w| w.as_bytes().to_vec()).collect();
                lies.apply(&words).map_err(|e| format!("--lie '{rule}': {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if runtime_s == 0 || runtime_s > MAX_RUNTIME_S {
        return Err(format!("--max-runtime-s must be 1 to {MAX_RUNTIME_S}"));
    }
    let max_runtime = Duration::from_secs(runtime_s);
    match (listen, upstream, fake) {
        (Some(listen), Some(upstream), None) => {
            if master.is_some() {
                return Err("--master belongs to --fake-redis".into());
            }
            Ok(Args { listen, mode: Mode::Proxy { upstream, lies }, max_runtime })
        }
        (None, None, Some(listen)) => {
            let (master_host, master_port) = master.ok_or("--fake-redis needs --master HOST:PORT")?;
            if !lies.is_empty() {
                return Err("--lie belongs to the proxy".into());
            }
            let spec = FakeSpec { master_host, master_port, run_id, offset, port: listen.port() };
            Ok(Args { listen, mode: Mode::Fake(spec), max_runtime })
        }
        _ => Err("give either --listen and --upstream, or --fake-redis".into()),
    }
}

/// `IP:PORT`, IPv6 in brackets.
fn socket_addr(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{what}: {s:?} is not IP:PORT (IPv6 as [ADDR]:PORT)"))
}

/// `HOST:PORT`, IPv6 in brackets or not (the last colon separates the port).
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (h, p) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    let port = p.parse().map_err(|_| format!("{s:?}: bad port"))?;
    Ok((word("host", h.trim_start_matches('[').trim_end_matches(']'))?, port))
}

/// A non-empty word of visible characters (it ends up in replies and logs).
fn word(what: &str, s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 253 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{what}: {s:?} must be 1 to 253 visible characters"));
    }
    Ok(s.to_string())
}

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{what}: {s:?} is not a number"))
}

async fn run(args: Args) -> ExitCode {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            log(format_args!("cannot listen on {}: {e}", args.listen));
            return ExitCode::from(1);
        }
    };
    let shared: Shared = Arc::default();
    let serve = async {
        match args.mode {
            Mode::Proxy { upstream, lies } => {
                log(format_args!("listening on {} as a lying sentinel in front of {upstream}", args.listen));
                for rule in lies.describe() {
                    log(format_args!("lie from the start: {rule}"));
                }
                lock(&shared).lies = lies;
                accept_loop(listener, shared.clone(), move |id, sock, peer, shared| {
                    tokio::spawn(serve_client(id, sock, peer, upstream, shared));
                })
                .await
            }
            Mode::Fake(spec) => {
                log(format_args!(
                    "listening on {} as a fake replica of {}:{}",
                    args.listen, spec.master_host, spec.master_port
                ));
                let spec = Arc::new(spec);
                accept_loop(listener, shared.clone(), move |id, sock, peer, shared| {
                    tokio::spawn(serve_fake(id, sock, peer, spec.clone(), shared));
                })
                .await
            }
        }
    };
    tokio::select! {
        () = serve => ExitCode::from(1),
        () = tokio::time::sleep(args.max_runtime) => {
            log(format_args!("--max-runtime-s reached; exiting"));
            ExitCode::SUCCESS
        }
    }
}

/// Accepts connections until the process ends, refusing those over [`MAX_CONNECTIONS`].
async fn accept_loop(listener: TcpListener, shared: Shared, spawn: impl Fn(u64, TcpStream, SocketAddr, Shared)) {
    let mut next_id = 0u64;
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                log(format_args!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next_id += 1;
        if lock(&shared).stats.open >= MAX_CONNECTIONS {
            log(format_args!("conn {next_id} from {peer}: refused, {MAX_CONNECTIONS} connections open"));
            continue;
        }
        let _ = sock.set_nodelay(true);
        spawn(next_id, sock, peer, shared.clone());
    }
}

// --- shared state -------------------------------------------------------------------------------

/// What every connection shares.
#[derive(Default)]
struct State {
    lies: Lies,
    triggers: Vec<Trigger>,
    clients: HashMap<u64, Client>,
    stats: Stats,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic elsewhere must not silence the proxy: the state stays usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A proxy client as injection sees it: where its frames go and what it listens to.
struct Client {
    tx: mpsc::Sender<Vec<u8>>,
    resp3: bool,
    /// Channels, patterns and shard channels, as the upstream confirmed them.
    subs: [BTreeSet<Vec<u8>>; 3],
}

/// A `ROGUE.ON` trigger.
#[derive(Clone)]
struct Trigger {
    on: Vec<u8>,
    delay: Duration,
    channel: Vec<u8>,
    payload: Vec<u8>,
}

/// Counts of what was seen; never a password.
#[derive(Default)]
struct Stats {
    connections: u64,
    open: u64,
    injected: u64,
    delivered: u64,
    rewritten: u64,
    auth: u64,
    auth_users: BTreeMap<String, u64>,
    commands: BTreeMap<String, u64>,
}

/// Commands whose first argument names what they do.
const CONTAINERS: [&[u8]; 8] =
    [b"SENTINEL", b"CLIENT", b"CONFIG", b"ACL", b"COMMAND", b"PUBSUB", b"SCRIPT", b"CLUSTER"];

impl Stats {
    /// Counts one command (and its subcommand), and its credentials if it carries any; returns the
    /// user name when it does.
    fn count(&mut self, args: &[Vec<u8>]) -> Option<String> {
        let name = args[0].to_ascii_uppercase();
        bump(&mut self.commands, printable(&name.to_ascii_lowercase()));
        if CONTAINERS.contains(&name.as_slice())
            && let Some(sub) = args.get(1)
        {
            let key = format!("{}|{}", printable(&name), printable(sub)).to_ascii_lowercase();
            bump(&mut self.commands, key);
        }
        let user = match name.as_slice() {
            b"AUTH" if args.len() == 2 => Some("default".to_string()),
            b"AUTH" if args.len() == 3 => Some(printable(&args[1])),
            b"HELLO" => args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH")).and_then(|i| {
                let user = args.get(i + 1)?;
                args.get(i + 2).map(|_| printable(user))
            }),
            _ => None,
        }?;
        self.auth += 1;
        bump(&mut self.auth_users, user.clone());
        Some(user)
    }

    /// The `ROGUE.STATS` text.
    fn render(&self, lies: &Lies, triggers: &[Trigger]) -> Vec<u8> {
        let mut s = format!(
            "connections:{}\r\nopen:{}\r\ninjected:{}\r\ndelivered:{}\r\nrewritten:{}\r\nauth:{}\r\n",
            self.connections, self.open, self.injected, self.delivered, self.rewritten, self.auth
        );
        for (u, n) in &self.auth_users {
            s.push_str(&format!("auth_user:{u}:{n}\r\n"));
        }
        for (c, n) in &self.commands {
            s.push_str(&format!("cmd:{c}:{n}\r\n"));
        }
        for rule in lies.describe() {
            s.push_str(&format!("lie:{rule}\r\n"));
        }
        for t in triggers {
            s.push_str(&format!(
                "trigger:{} {} {} {}\r\n",
                printable(&t.on),
                t.delay.as_millis(),
                printable(&t.channel),
                printable(&t.payload)
            ));
        }
        s.into_bytes()
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: String) {
    let key = if map.len() >= MAX_STAT_KEYS && !map.contains_key(&key) { "(other)".to_string() } else { key };
    *map.entry(key).or_default() += 1;
}

/// Bytes from a peer as one line of text for stats and logs: at most 64 characters, anything
/// but visible ASCII and spaces shown as `?`.
fn printable(b: &[u8]) -> String {
    let mut s: String =
        b.iter().take(64).map(|&c| if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' }).collect();
    if b.len() > 64 {
        s.push('…');
    }
    s
}

/// Like [`printable`], longer, for the events in the log.
fn shown(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(300)]).chars().flat_map(char::escape_default).collect();
    if b.len() > 300 { format!("{s}…") } else { s }
}

fn log(msg: std::fmt::Arguments<'_>) {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    eprintln!("{ms} {msg}");
}

// --- lies ---------------------------------------------------------------------------------------

/// The rules in force.
#[derive(Default)]
struct Lies {
    replicas: Vec<FakeReplica>,
    master_addr: BTreeMap<Vec<u8>, (String, u16)>,
    epoch: BTreeMap<Vec<u8>, u64>,
}

/// A replica that `SENTINEL REPLICAS` lists but no sentinel knows.
struct FakeReplica {
    master: Vec<u8>,
    ip: String,
    port: u16,
    priority: u64,
    offset: u64,
    runid: String,
}

impl Lies {
    fn is_empty(&self) -> bool {
        self.replicas.is_empty() && self.master_addr.is_empty() && self.epoch.is_empty()
    }

    /// Applies one rule (its words); see the top comment for the syntax.
    fn apply(&mut self, words: &[Vec<u8>]) -> Result<(), String> {
        let text: Vec<String> = words.iter().map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        let t: Vec<&str> = text.iter().map(String::as_str).collect();
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?}"));
        match t.first().map(|k| k.to_ascii_lowercase()).as_deref() {
            Some("clear") if t.len() == 1 => *self = Lies::default(),
            Some("replica") if t.len() >= 4 && t.len().is_multiple_of(2) => {
                if self.replicas.len() >= MAX_FAKE_REPLICAS {
                    return Err(format!("at most {MAX_FAKE_REPLICAS} fake replicas"));
                }
                let mut r = FakeReplica {
                    master: words[1].clone(),
                    ip: word("ip", t[2])?,
                    port: port(t[3])?,
                    priority: 1,
                    offset: HUGE_OFFSET,
                    runid: "e".repeat(40),
                };
                for kv in t[4..].chunks(2) {
                    match kv[0].to_ascii_lowercase().as_str() {
                        "priority" => r.priority = number("priority", kv[1])?,
                        "offset" => r.offset = number("offset", kv[1])?,
                        "runid" => r.runid = word("runid", kv[1])?,
                        other => return Err(format!("unknown replica option {other:?} (priority, offset, runid)")),
                    }
                }
                self.replicas.push(r);
            }
            Some("master-addr") if t.len() == 4 => {
                self.master_addr.insert(words[1].clone(), (word("ip", t[2])?, port(t[3])?));
            }
            Some("epoch") if t.len() == 3 => {
                self.epoch.insert(words[1].clone(), number("epoch", t[2])?);
            }
            _ => {
                return Err("rules: replica <master> <ip> <port> [priority N] [offset N] [runid ID] | \
                            master-addr <master> <ip> <port> | epoch <master> <n> | clear"
                    .into());
            }
        }
        Ok(())
    }

    /// One line per rule, as `ROGUE.STATS` lists them.
    fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .replicas
            .iter()
            .map(|r| {
                format!(
                    "replica {} {} {} priority {} offset {} runid {}",
                    printable(&r.master),
                    r.ip,
                    r.port,
                    r.priority,
                    r.offset,
                    r.runid
                )
            })
            .collect();
        out.extend(self.master_addr.iter().map(|(m, (ip, p))| format!("master-addr {} {ip} {p}", printable(m))));
        out.extend(self.epoch.iter().map(|(m, e)| format!("epoch {} {e}", printable(m))));
        out
    }

    /// The reply to send instead of `reply` to a command that `rw` describes, when a rule says so.
    fn falsify(&self, rw: &Rewrite, reply: &Value, resp3: bool) -> Option<Value> {
        match rw {
            Rewrite::Replicas(name) => {
                let fakes: Vec<&FakeReplica> = self.replicas.iter().filter(|r| r.master == *name).collect();
                let Value::Agg(b'*', Some(items)) = reply else { return None };
                if fakes.is_empty() {
                    return None;
                }
                // The same shape as the real entries: flat arrays in RESP2, maps in RESP3.
                let as_map = items.first().map_or(resp3, |i| matches!(i, Value::Agg(b'%', _)));
                let mut items = items.clone();
                items.extend(fakes.iter().map(|f| Value::Agg(if as_map { b'%' } else { b'*' }, Some(f.fields()))));
                Some(Value::Agg(b'*', Some(items)))
            }
            Rewrite::MasterAddr(name) => {
                let (ip, port) = self.master_addr.get(name)?;
                Some(Value::Agg(b'*', Some(vec![bulk(ip.as_bytes()), bulk(port.to_string())])))
            }
            Rewrite::Master(name) => self.falsify_master(name, reply),
            Rewrite::Masters => {
                let Value::Agg(b'*', Some(items)) = reply else { return None };
                let mut changed = false;
                let items = items
                    .iter()
                    .map(|entry| {
                        let name = field(entry, b"name").unwrap_or_default();
                        match self.falsify_master(&name, entry) {
                            Some(v) => {
                                changed = true;
                                v
                            }
                            None => entry.clone(),
                        }
                    })
                    .collect();
                changed.then_some(Value::Agg(b'*', Some(items)))
            }
            Rewrite::None | Rewrite::Hello(_) | Rewrite::Reset => None,
        }
    }

    /// A `SENTINEL MASTER` entry (flat array or map) with the lied-about fields replaced.
    fn falsify_master(&self, name: &[u8], entry: &Value) -> Option<Value> {
        let addr = self.master_addr.get(name);
        let epoch = self.epoch.get(name);
        let Value::Agg(tag @ (b'*' | b'%'), Some(items)) = entry else { return None };
        if addr.is_none() && epoch.is_none() {
            return None;
        }
        let mut items = items.clone();
        for kv in items.chunks_mut(2) {
            let [k, v] = kv else { continue };
            match (k.text(), addr, epoch) {
                (Some(b"ip"), Some((ip, _)), _) => *v = bulk(ip.as_bytes()),
                (Some(b"port"), Some((_, port)), _) => *v = bulk(port.to_string()),
                (Some(b"config-epoch"), _, Some(e)) => *v = bulk(e.to_string()),
                _ => {}
            }
        }
        Some(Value::Agg(*tag, Some(items)))
    }
}

impl FakeReplica {
    /// Its `SENTINEL REPLICAS` entry, field names and values alternating, as Sentinel 7 lists one.
    fn fields(&self) -> Vec<Value> {
        let port = self.port.to_string();
        let pairs: [(&str, String); 22] = [
            ("name", format!("{}:{port}", self.ip)),
            ("ip", self.ip.clone()),
            ("port", port),
            ("runid", self.runid.clone()),
            ("flags", "slave".into()),
            ("link-pending-commands", "0".into()),
            ("link-refcount", "1".into()),
            ("last-ping-sent", "0".into()),
            ("last-ok-ping-reply", "100".into()),
            ("last-ping-reply", "100".into()),
            ("down-after-milliseconds", "1000".into()),
            ("info-refresh", "100".into()),
            ("role-reported", "slave".into()),
            ("role-reported-time", "100000".into()),
            ("master-link-down-time", "0".into()),
            ("master-link-status", "ok".into()),
            ("master-host", "?".into()),
            ("master-port", "0".into()),
            ("slave-priority", self.priority.to_string()),
            ("slave-repl-offset", self.offset.to_string()),
            ("replica-announced", "1".into()),
            ("rogue", "1".into()),
        ];
        pairs.into_iter().flat_map(|(k, v)| [bulk(k.as_bytes()), bulk(v)]).collect()
    }
}

/// The value of `key` in a flat field/value array or a map.
fn field(entry: &Value, key: &[u8]) -> Option<Vec<u8>> {
    let Value::Agg(b'*' | b'%', Some(items)) = entry else { return None };
    items.chunks(2).find(|kv| kv[0].text() == Some(key)).and_then(|kv| kv.get(1)?.text().map(<[u8]>::to_vec))
}

/// How a forwarded command's reply may be rewritten or what it changes about the connection.
#[derive(Debug)]
enum Rewrite {
    None,
    Replicas(Vec<u8>),
    MasterAddr(Vec<u8>),
    Master(Vec<u8>),
    Masters,
    /// `HELLO`: `Some(true)` when it asks for RESP3, `Some(false)` for RESP2.
    Hello(Option<bool>),
    /// `RESET` ends every subscription.
    Reset,
}

fn rewrite_for(args: &[Vec<u8>]) -> Rewrite {
    let up = |i: usize| args.get(i).map(|a| a.to_ascii_uppercase());
    let (cmd, sub) = (up(0), up(1));
    match (cmd.as_deref(), sub.as_deref(), args.len()) {
        (Some(b"SENTINEL"), Some(b"REPLICAS" | b"SLAVES"), 3) => Rewrite::Replicas(args[2].clone()),
        (Some(b"SENTINEL"), Some(b"GET-MASTER-ADDR-BY-NAME"), 3) => Rewrite::MasterAddr(args[2].clone()),
        (Some(b"SENTINEL"), Some(b"MASTER"), 3) => Rewrite::Master(args[2].clone()),
        (Some(b"SENTINEL"), Some(b"MASTERS"), 2) => Rewrite::Masters,
        (Some(b"HELLO"), None, _) => Rewrite::Hello(None),
        (Some(b"HELLO"), Some(v), _) => Rewrite::Hello(Some(v == b"3")),
        (Some(b"RESET"), _, 1) => Rewrite::Reset,
        _ => Rewrite::None,
    }
}

// --- RESP ---------------------------------------------------------------------------------------

/// One RESP2 or RESP3 value, as much as relaying and rewriting need: its type byte and payload.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// `+ - : _ # , (`: one line.
    Line(u8, Vec<u8>),
    /// `$ = !`: a length-prefixed string; `None` is RESP2's null (`$-1`).
    Blob(u8, Option<Vec<u8>>),
    /// `* ~ > % |`: the elements (a map's keys and values alternate); `None` is `*-1`. An
    /// attribute (`|`) carries the value it annotates as its last element.
    Agg(u8, Option<Vec<Value>>),
}

fn bulk(b: impl Into<Vec<u8>>) -> Value {
    Value::Blob(b'$', Some(b.into()))
}

fn error(msg: &str) -> Value {
    Value::Line(b'-', msg.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect())
}

impl Value {
    /// The text of a string or line.
    fn text(&self) -> Option<&[u8]> {
        match self {
            Value::Line(_, s) | Value::Blob(_, Some(s)) => Some(s),
            _ => None,
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, Value::Line(b'-', _) | Value::Blob(b'!', _))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Line(t, s) => {
                out.push(*t);
                out.extend_from_slice(s);
            }
            Value::Blob(t, None) | Value::Agg(t, None) => {
                out.push(*t);
                out.extend_from_slice(b"-1");
            }
            Value::Blob(t, Some(s)) => {
                out.push(*t);
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(s);
            }
            Value::Agg(t, Some(items)) => {
                let n = match t {
                    b'%' => items.len() / 2,
                    b'|' => items.len().saturating_sub(1) / 2,
                    _ => items.len(),
                };
                out.push(*t);
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for i in items {
                    i.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The line starting at `pos` (without its CRLF) and the position after it; `None` until it is
/// complete.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[pos.min(buf.len())..];
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], pos + i + 2))),
        None if rest.len() > MAX_LINE => Err(format!("a line over {MAX_LINE} bytes")),
        None => Ok(None),
    }
}

fn length(s: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad length {:?}", printable(s)))
}

/// Parses the value starting at `pos`: it and the position after it; `None` until it is complete.
fn value(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("aggregates nested over {MAX_DEPTH} levels"));
    }
    let Some(&tag) = buf.get(pos) else { return Ok(None) };
    let Some((head, mut at)) = line(buf, pos + 1)? else { return Ok(None) };
    match tag {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(Some((Value::Line(tag, head.to_vec()), at))),
        b'$' | b'=' | b'!' => {
            let n = length(head)?;
            if n == -1 {
                return Ok(Some((Value::Blob(tag, None), at)));
            }
            let n = usize::try_from(n).map_err(|_| format!("bad length {n}"))?;
            if n > MAX_BULK {
                return Err(format!("a string of {n} bytes (at most {MAX_BULK})"));
            }
            if buf.len() < at + n + 2 {
                return Ok(None);
            }
            if &buf[at + n..at + n + 2] != b"\r\n" {
                return Err("a string not followed by CRLF".into());
            }
            Ok(Some((Value::Blob(tag, Some(buf[at..at + n].to_vec())), at + n + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = length(head)?;
            if n == -1 {
                return Ok(Some((Value::Agg(tag, None), at)));
            }
            let n = usize::try_from(n).map_err(|_| format!("bad length {n}"))?;
            if n > MAX_ELEMENTS {
                return Err(format!("an aggregate of {n} elements (at most {MAX_ELEMENTS})"));
            }
            let count = if matches!(tag, b'%' | b'|') { 2 * n } else { n } + usize::from(tag == b'|');
            let mut items = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                let Some((v, next)) = value(buf, at, depth + 1)? else { return Ok(None) };
                items.push(v);
                at = next;
            }
            Ok(Some((Value::Agg(tag, Some(items)), at)))
        }
        _ => Err(format!("unknown type byte {tag:#04x}")),
    }
}

/// A client command's words, its name first.
type Words = Vec<Vec<u8>>;

/// One client command at the start of `buf`: a RESP array of bulk strings, or an inline command
/// (a line of words, as telnet and vipctl's PING probe send); and its length. An empty command is
/// `Some` with no words (Redis skips those too); `None` until the command is complete.
fn command(buf: &[u8]) -> Result<Option<(Words, usize)>, String> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first != b'*' {
        let window = &buf[..buf.len().min(MAX_LINE + 1)];
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_LINE {
                Err(format!("an inline command over {MAX_LINE} bytes"))
            } else {
                Ok(None)
            };
        };
        let words: Vec<Vec<u8>> =
            buf[..end].split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect();
        if words.len() > MAX_ARGS {
            return Err(format!("a command of over {MAX_ARGS} arguments"));
        }
        return Ok(Some((words, end + 1)));
    }
    let Some((head, mut at)) = line(buf, 1)? else { return Ok(None) };
    let n = length(head)?;
    if n <= 0 {
        return Ok(Some((Vec::new(), at)));
    }
    if n as u64 > MAX_ARGS as u64 {
        return Err(format!("a command of {n} arguments (at most {MAX_ARGS})"));
    }
    let mut args = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(_) => return Err("a command argument that is not a bulk string".into()),
        }
        let Some((v, next)) = value(buf, at, 0)? else { return Ok(None) };
        let Value::Blob(_, Some(arg)) = v else { return Err("a null command argument".into()) };
        args.push(arg);
        at = next;
    }
    Ok(Some((args, at)))
}

/// A command as RESP, to send upstream.
fn encode_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    Value::Agg(b'*', Some(args.iter().map(|a| bulk(a.clone())).collect())).encode(&mut out);
    out
}

/// Redis's glob of `p` over `s` (`*`, `?`, `[...]` with `^` and ranges, `\` escapes). Iterative,
/// backtracking only to the last `*`, so a hostile pattern costs at most |p| × |s| steps.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            if p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            if let Some(len) = glob_one(p, pi, s[si]) {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// When the one-character element of the pattern at `pi` matches `c`: its length in the pattern.
fn glob_one(p: &[u8], pi: usize, c: u8) -> Option<usize> {
    match p[pi] {
        b'?' => Some(1),
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(2),
        b'[' => {
            let mut i = pi + 1;
            let negate = p.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            // Each step consumes at least one pattern byte; an unclosed class ends with the pattern.
            while let Some(&a) = p.get(i) {
                if a == b']' {
                    i += 1;
                    break;
                }
                if a == b'\\' && i + 1 < p.len() {
                    hit |= p[i + 1] == c;
                    i += 2;
                } else if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() {
                    let (lo, hi) = (a.min(p[i + 2]), a.max(p[i + 2]));
                    hit |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    hit |= a == c;
                    i += 1;
                }
            }
            (hit != negate).then_some(i - pi)
        }
        lit => (lit == c).then_some(1),
    }
}

// --- the proxy ----------------------------------------------------------------------------------

/// An answer owed to the client, in the order of its commands.
enum Owed {
    /// The upstream's reply to a forwarded command, rewritten as this says.
    Upstream(Rewrite),
    /// The confirmations of a (un)subscribe command of `kind` (0 channels, 1 patterns, 2 shard
    /// channels): `left` frames, or, for an unsubscribe from all, as many as there are
    /// subscriptions of that kind when its first frame arrives (`None` until then).
    Subscribe { kind: usize, unsub: bool, left: Option<usize> },
    /// The proxy's own answer to a control command.
    Local(Vec<u8>),
}

/// A pub/sub frame from the upstream.
enum PubSub {
    /// An event on a channel.
    Message(Vec<u8>),
    /// A (un)subscribe confirmation: its kind, whether it unsubscribes, the channel (none when
    /// there was nothing to unsubscribe from).
    Confirm(usize, bool, Option<Vec<u8>>),
    /// Any other RESP3 push.
    Other,
}

/// One client connection and its upstream connection.
struct Conn {
    id: u64,
    shared: Shared,
    owed: VecDeque<Owed>,
    resp3: bool,
    /// It sent a subscribe command: RESP2 arrays from the upstream may be pub/sub frames now.
    subscribing: bool,
}

async fn serve_client(id: u64, client: TcpStream, peer: SocketAddr, upstream: SocketAddr, shared: Shared) {
    let up = match tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log(format_args!("conn {id} from {peer}: upstream {upstream}: {e}; closed"));
            return;
        }
        Err(_) => {
            log(format_args!("conn {id} from {peer}: upstream {upstream} did not answer; closed"));
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let (tx, rx) = mpsc::channel(INJECT_QUEUE);
    {
        let mut st = lock(&shared);
        st.stats.connections += 1;
        st.stats.open += 1;
        st.clients.insert(id, Client { tx, resp3: false, subs: Default::default() });
    }
    log(format_args!("conn {id} from {peer}: relayed to {upstream}"));
    let mut conn = Conn { id, shared: shared.clone(), owed: VecDeque::new(), resp3: false, subscribing: false };
    let why = conn.relay(client, up, rx).await;
    {
        let mut st = lock(&shared);
        st.stats.open -= 1;
        st.clients.remove(&id);
    }
    log(format_args!("conn {id} from {peer}: closed ({why})"));
}

/// Writes all of `bytes`, within [`IO_TIMEOUT`].
async fn send(w: &mut (impl AsyncWrite + Unpin), bytes: &[u8], to: &str) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(IO_TIMEOUT, w.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing to the {to}: {e}")),
        Err(_) => Err(format!("the {to} read nothing for {} s", IO_TIMEOUT.as_secs())),
    }
}

impl Conn {
    /// Relays until either side closes or misbehaves; returns why it ended.
    async fn relay(&mut self, client: TcpStream, upstream: TcpStream, mut injected: mpsc::Receiver<Vec<u8>>) -> String {
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let (mut cbuf, mut ubuf) = (Vec::new(), Vec::new());
        let (mut cchunk, mut uchunk) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        // After the client's EOF, the answers it is owed still go out, for a while.
        let mut client_done: Option<Instant> = None;
        loop {
            tokio::select! {
                r = cr.read(&mut cchunk), if client_done.is_none() => {
                    let n = match r {
                        Ok(0) if self.owed.is_empty() => return "the client closed".into(),
                        Ok(0) => {
                            client_done = Some(Instant::now() + IO_TIMEOUT);
                            continue;
                        }
                        Ok(n) => n,
                        Err(e) => return format!("reading from the client: {e}"),
                    };
                    cbuf.extend_from_slice(&cchunk[..n]);
                    let (to_up, to_client) = match self.on_client_bytes(&mut cbuf) {
                        Ok(x) => x,
                        Err(e) => return format!("the client sent bad RESP: {e}"),
                    };
                    if let Err(e) = send(&mut uw, &to_up, "upstream").await {
                        return e;
                    }
                    if let Err(e) = send(&mut cw, &to_client, "client").await {
                        return e;
                    }
                }
                r = ur.read(&mut uchunk) => {
                    let n = match r {
                        Ok(0) => return "the upstream closed".into(),
                        Ok(n) => n,
                        Err(e) => return format!("reading from the upstream: {e}"),
                    };
                    ubuf.extend_from_slice(&uchunk[..n]);
                    let to_client = match self.on_upstream_bytes(&mut ubuf) {
                        Ok(x) => x,
                        Err(e) => return format!("the upstream sent bad RESP: {e}"),
                    };
                    if let Err(e) = send(&mut cw, &to_client, "client").await {
                        return e;
                    }
                    if client_done.is_some() && self.owed.is_empty() {
                        return "the client closed".into();
                    }
                }
                Some(frames) = injected.recv() => {
                    if let Err(e) = send(&mut cw, &frames, "client").await {
                        return e;
                    }
                }
                () = tokio::time::sleep_until(client_done.unwrap_or_else(Instant::now).into()), if client_done.is_some() => {
                    return "the client closed; the upstream still owed answers".into();
                }
            }
        }
    }

    /// Takes the complete commands off `buf`: what to send upstream and what to answer at once.
    fn on_client_bytes(&mut self, buf: &mut Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (mut to_up, mut to_client) = (Vec::new(), Vec::new());
        let mut pos = 0;
        while let Some((args, n)) = command(&buf[pos..])? {
            pos += n;
            if !args.is_empty() {
                self.on_command(args, &mut to_up, &mut to_client);
            }
            if self.owed.len() > MAX_OWED {
                return Err(format!("over {MAX_OWED} commands in flight"));
            }
        }
        buf.drain(..pos);
        if buf.len() > MAX_BUFFER {
            return Err(format!("a command of over {MAX_BUFFER} bytes"));
        }
        Ok((to_up, to_client))
    }

    fn on_command(&mut self, args: Vec<Vec<u8>>, to_up: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        let name = args[0].to_ascii_uppercase();
        if name.starts_with(b"ROGUE.") {
            let answer = control(&self.shared, &args);
            if self.owed.is_empty() {
                to_client.extend_from_slice(&answer);
            } else {
                self.owed.push_back(Owed::Local(answer));
            }
            return;
        }
        if let Some(user) = lock(&self.shared).stats.count(&args) {
            log(format_args!("conn {}: credentials for user {user:?} passed on (secret not kept)", self.id));
        }
        to_up.extend_from_slice(&encode_command(&args));
        let subscribe = match name.as_slice() {
            b"SUBSCRIBE" => Some((0, false)),
            b"PSUBSCRIBE" => Some((1, false)),
            b"SSUBSCRIBE" => Some((2, false)),
            b"UNSUBSCRIBE" => Some((0, true)),
            b"PUNSUBSCRIBE" => Some((1, true)),
            b"SUNSUBSCRIBE" => Some((2, true)),
            _ => None,
        };
        match subscribe {
            // A subscribe without channels is answered with an ordinary error.
            Some((kind, unsub)) if unsub || args.len() > 1 => {
                self.subscribing = true;
                let left = (args.len() > 1).then_some(args.len() - 1);
                self.owed.push_back(Owed::Subscribe { kind, unsub, left });
            }
            _ => self.owed.push_back(Owed::Upstream(rewrite_for(&args))),
        }
    }

    /// Takes the complete frames off `buf`: what to send the client.
    fn on_upstream_bytes(&mut self, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
        let mut to_client = Vec::new();
        let mut pos = 0;
        while let Some((v, end)) = value(buf, pos, 0)? {
            self.on_reply(&v, &buf[pos..end], &mut to_client);
            pos = end;
        }
        buf.drain(..pos);
        if buf.len() > MAX_BUFFER {
            return Err(format!("a reply of over {MAX_BUFFER} bytes"));
        }
        Ok(to_client)
    }

    fn on_reply(&mut self, v: &Value, raw: &[u8], to_client: &mut Vec<u8>) {
        match self.pubsub(v) {
            Some(PubSub::Message(channel)) => {
                to_client.extend_from_slice(raw);
                fire_triggers(&self.shared, self.id, &channel);
            }
            Some(PubSub::Confirm(kind, unsub, channel)) => {
                to_client.extend_from_slice(raw);
                self.confirmed(kind, unsub, channel);
            }
            Some(PubSub::Other) => to_client.extend_from_slice(raw),
            None => match self.owed.pop_front() {
                Some(Owed::Upstream(rw)) => {
                    if !v.is_error() {
                        self.changes_connection(&rw);
                    }
                    let lie = lock(&self.shared).lies.falsify(&rw, v, self.resp3);
                    match lie {
                        Some(lie) => {
                            lock(&self.shared).stats.rewritten += 1;
                            lie.encode(to_client);
                        }
                        None => to_client.extend_from_slice(raw),
                    }
                }
                // A refused (un)subscribe: one error for the whole command.
                Some(Owed::Subscribe { .. }) => to_client.extend_from_slice(raw),
                Some(local @ Owed::Local(_)) => {
                    // Not reached: local answers never stay at the front. Keep the order anyway.
                    self.owed.push_front(local);
                    to_client.extend_from_slice(raw);
                }
                // Nothing was asked (a server-side notice): pass it on.
                None => to_client.extend_from_slice(raw),
            },
        }
        while let Some(Owed::Local(_)) = self.owed.front() {
            if let Some(Owed::Local(answer)) = self.owed.pop_front() {
                to_client.extend_from_slice(&answer);
            }
        }
    }

    /// What a HELLO or RESET the upstream accepted changes.
    fn changes_connection(&mut self, rw: &Rewrite) {
        match rw {
            Rewrite::Hello(Some(resp3)) => {
                self.resp3 = *resp3;
                if let Some(c) = lock(&self.shared).clients.get_mut(&self.id) {
                    c.resp3 = *resp3;
                }
            }
            Rewrite::Reset => {
                self.resp3 = false;
                self.subscribing = false;
                if let Some(c) = lock(&self.shared).clients.get_mut(&self.id) {
                    c.resp3 = false;
                    c.subs = Default::default();
                }
            }
            _ => {}
        }
    }

    /// The pub/sub frame `v` is, if it is one: any RESP3 push, or in RESP2 after a subscribe
    /// command, an array shaped like one.
    fn pubsub(&self, v: &Value) -> Option<PubSub> {
        let (push, items) = match v {
            Value::Agg(b'>', Some(items)) => (true, items),
            Value::Agg(b'*', Some(items)) if self.subscribing && !self.resp3 => (false, items),
            _ => return None,
        };
        let other = || push.then_some(PubSub::Other);
        let Some(kind) = items.first().and_then(Value::text) else { return other() };
        let text = |i: usize| items.get(i).and_then(Value::text).map(<[u8]>::to_vec);
        let confirm = |k, unsub| Some(PubSub::Confirm(k, unsub, text(1)));
        match (kind.to_ascii_lowercase().as_slice(), items.len()) {
            (b"message" | b"smessage", 3) => text(1).map(PubSub::Message).or_else(other),
            (b"pmessage", 4) => text(2).map(PubSub::Message).or_else(other),
            (b"subscribe", 3) => confirm(0, false),
            (b"psubscribe", 3) => confirm(1, false),
            (b"ssubscribe", 3) => confirm(2, false),
            (b"unsubscribe", 3) => confirm(0, true),
            (b"punsubscribe", 3) => confirm(1, true),
            (b"sunsubscribe", 3) => confirm(2, true),
            _ => other(),
        }
    }

    /// Records a confirmed (un)subscription, and counts it against the command that asked.
    fn confirmed(&mut self, kind: usize, unsub: bool, channel: Option<Vec<u8>>) {
        let mut st = lock(&self.shared);
        let Some(c) = st.clients.get_mut(&self.id) else { return };
        let set = &mut c.subs[kind];
        if let Some(Owed::Subscribe { kind: k, unsub: u, left }) = self.owed.front_mut()
            && *k == kind
            && *u == unsub
        {
            // An unsubscribe from all gets one frame per subscription, or one when there is none.
            let n = left.get_or_insert(set.len().max(1));
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owed.pop_front();
            }
        }
        match channel {
            Some(ch) if unsub => {
                set.remove(&ch);
            }
            Some(ch) if set.len() < MAX_SUBSCRIPTIONS => {
                set.insert(ch);
            }
            _ => {}
        }
    }
}

/// Starts the `ROGUE.ON` triggers waiting for an upstream event on `channel`.
fn fire_triggers(shared: &Shared, id: u64, channel: &[u8]) {
    let mut fired = Vec::new();
    lock(shared).triggers.retain(|t| {
        let hit = t.on == channel;
        if hit {
            fired.push(t.clone());
        }
        !hit
    });
    for t in fired {
        log(format_args!(
            "conn {id}: the upstream published on {}: injecting {} in {} ms",
            shown(channel),
            shown(&t.channel),
            t.delay.as_millis()
        ));
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(t.delay).await;
            inject(&shared, &t.channel, &t.payload, "ROGUE.ON");
        });
    }
}

/// Sends one event to every client subscribed to `channel` or to a pattern that matches it;
/// returns how many clients it reached.
fn inject(shared: &Shared, channel: &[u8], payload: &[u8], why: &str) -> usize {
    let mut st = lock(shared);
    let mut reached = 0;
    for (id, c) in &st.clients {
        let tag = if c.resp3 { b'>' } else { b'*' };
        let mut frames = Vec::new();
        if c.subs[0].contains(channel) {
            Value::Agg(tag, Some(vec![bulk("message"), bulk(channel), bulk(payload)])).encode(&mut frames);
        }
        for p in c.subs[1].iter().filter(|p| glob(p, channel)) {
            Value::Agg(tag, Some(vec![bulk("pmessage"), bulk(p.clone()), bulk(channel), bulk(payload)]))
                .encode(&mut frames);
        }
        if frames.is_empty() {
            continue;
        }
        match c.tx.try_send(frames) {
            Ok(()) => reached += 1,
            Err(e) => log(format_args!("conn {id}: injected event dropped ({e})")),
        }
    }
    st.stats.injected += 1;
    st.stats.delivered += reached as u64;
    drop(st);
    log(format_args!("injected ({why}) {} {} to {reached} subscriber(s)", shown(channel), shown(payload)));
    reached
}

/// Answers a `ROGUE.*` command.
fn control(shared: &Shared, args: &[Vec<u8>]) -> Vec<u8> {
    let name = args[0].to_ascii_uppercase();
    let reply = match (name.as_slice(), args.len()) {
        (b"ROGUE.PUBLISH", 3) => {
            let n = inject(shared, &args[1], &args[2], "ROGUE.PUBLISH");
            Value::Line(b':', n.to_string().into_bytes())
        }
        (b"ROGUE.ON", 5) => {
            let delay = std::str::from_utf8(&args[2]).ok().and_then(|d| d.parse::<u64>().ok());
            let mut st = lock(shared);
            match delay {
                Some(ms) if ms <= MAX_DELAY_MS && st.triggers.len() < MAX_TRIGGERS => {
                    let t = Trigger {
                        on: args[1].clone(),
                        delay: Duration::from_millis(ms),
                        channel: args[3].clone(),
                        payload: args[4].clone(),
                    };
                    st.triggers.push(t);
                    drop(st);
                    log(format_args!(
                        "trigger set: on upstream {} inject {} {} after {ms} ms",
                        shown(&args[1]),
                        shown(&args[3]),
                        shown(&args[4])
                    ));
                    Value::Line(b'+', b"OK".to_vec())
                }
                Some(ms) if ms <= MAX_DELAY_MS => error(&format!("ERR at most {MAX_TRIGGERS} triggers")),
                _ => error(&format!("ERR delay-ms must be 0 to {MAX_DELAY_MS}")),
            }
        }
        (b"ROGUE.LIE", 2..) => {
            let mut st = lock(shared);
            match st.lies.apply(&args[1..]) {
                Ok(()) => {
                    let rules = st.lies.describe();
                    drop(st);
                    log(format_args!("lies now: [{}]", rules.join("; ")));
                    Value::Line(b'+', b"OK".to_vec())
                }
                Err(e) => error(&format!("ERR {e}")),
            }
        }
        (b"ROGUE.STATS", 1) => {
            let st = lock(shared);
            bulk(st.stats.render(&st.lies, &st.triggers))
        }
        (b"ROGUE.PUBLISH" | b"ROGUE.ON" | b"ROGUE.LIE" | b"ROGUE.STATS", _) => {
            error(&format!("ERR wrong number of arguments for '{}'", printable(&args[0])))
        }
        _ => error(&format!(
            "ERR unknown control command '{}' (ROGUE.PUBLISH, ROGUE.ON, ROGUE.LIE, ROGUE.STATS)",
            printable(&args[0])
        )),
    };
    let mut out = Vec::new();
    reply.encode(&mut out);
    out
}

// --- the fake replica ---------------------------------------------------------------------------

async fn serve_fake(id: u64, mut sock: TcpStream, peer: SocketAddr, spec: Arc<FakeSpec>, shared: Shared) {
    {
        let mut st = lock(&shared);
        st.stats.connections += 1;
        st.stats.open += 1;
    }
    log(format_args!("conn {id} from {peer}: fake replica"));
    let why = async {
        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 16 * 1024]);
        loop {
            let n = match sock.read(&mut chunk).await {
                Ok(0) => return "the client closed".to_string(),
                Ok(n) => n,
                Err(e) => return format!("reading: {e}"),
            };
            buf.extend_from_slice(&chunk[..n]);
            let (mut out, mut pos, mut quit) = (Vec::new(), 0, false);
            loop {
                match command(&buf[pos..]) {
                    Ok(Some((args, n))) => {
                        pos += n;
                        if !args.is_empty() {
                            quit = fake_answer(id, &args, &spec, &shared, &mut out);
                        }
                        if quit {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return format!("the client sent bad RESP: {e}"),
                }
            }
            buf.drain(..pos);
            if let Err(e) = send(&mut sock, &out, "client").await {
                return e;
            }
            if quit {
                return "QUIT".into();
            }
            if buf.len() > MAX_BUFFER {
                return format!("a command of over {MAX_BUFFER} bytes");
            }
        }
    }
    .await;
    lock(&shared).stats.open -= 1;
    log(format_args!("conn {id} from {peer}: closed ({why})"));
}

/// Answers one command as the fake replica; true when the connection should close after it.
fn fake_answer(id: u64, args: &[Vec<u8>], spec: &FakeSpec, shared: &Shared, out: &mut Vec<u8>) -> bool {
    let name = args[0].to_ascii_uppercase();
    if name == b"ROGUE.STATS" {
        let st = lock(shared);
        bulk(st.stats.render(&st.lies, &st.triggers)).encode(out);
        return false;
    }
    let user = lock(shared).stats.count(args);
    if let Some(user) = &user {
        log(format_args!("conn {id}: received credentials for user {user:?} (secret not kept)"));
    }
    let ok = Value::Line(b'+', b"OK".to_vec());
    let reply = match name.as_slice() {
        b"PING" => match args.get(1) {
            Some(a) => bulk(a.clone()),
            None => Value::Line(b'+', b"PONG".to_vec()),
        },
        b"AUTH" if user.is_some() => ok,
        b"AUTH" => error("ERR wrong number of arguments for 'auth' command"),
        b"HELLO" if args.get(1).is_some_and(|v| v.as_slice() != b"2") => {
            error("NOPROTO this fake replica speaks RESP2 only")
        }
        b"HELLO" => {
            let pairs = [
                ("server", "redis"),
                ("version", "7.0.15"),
                ("proto", "2"),
                ("mode", "standalone"),
                ("role", "replica"),
            ];
            let mut items: Vec<Value> = pairs.iter().flat_map(|(k, v)| [bulk(*k), bulk(*v)]).collect();
            items.extend([bulk("id"), Value::Line(b':', id.to_string().into_bytes())]);
            items.extend([bulk("modules"), Value::Agg(b'*', Some(Vec::new()))]);
            Value::Agg(b'*', Some(items))
        }
        b"ROLE" => Value::Agg(
            b'*',
            Some(vec![
                bulk("slave"),
                bulk(spec.master_host.as_bytes()),
                Value::Line(b':', spec.master_port.to_string().into_bytes()),
                bulk("connected"),
                Value::Line(b':', spec.offset.to_string().into_bytes()),
            ]),
        ),
        b"INFO" => bulk(fake_info(spec)),
        b"REPLICAOF" | b"SLAVEOF" => {
            let target: Vec<String> = args[1..].iter().map(|a| printable(a)).collect();
            log(format_args!("conn {id}: {} {} (ignored)", printable(&name), target.join(" ")));
            ok
        }
        b"CONFIG" | b"CLIENT" => ok,
        b"QUIT" => {
            ok.encode(out);
            return true;
        }
        _ => error(&format!("ERR unknown command '{}' (this is a fake replica)", printable(&args[0]))),
    };
    reply.encode(out);
    false
}

/// The fake replica's `INFO`: the fields vipctl and Sentinel read, whatever section is asked.
fn fake_info(spec: &FakeSpec) -> String {
    let (id, off) = (&spec.run_id, spec.offset);
    [
        "# Server".to_string(),
        "redis_version:7.0.15".into(),
        "redis_mode:standalone".into(),
        format!("run_id:{id}"),
        format!("tcp_port:{}", spec.port),
        String::new(),
        "# Replication".into(),
        "role:slave".into(),
        format!("master_host:{}", spec.master_host),
        format!("master_port:{}", spec.master_port),
        "master_link_status:up".into(),
        "master_last_io_seconds_ago:0".into(),
        "master_sync_in_progress:0".into(),
        format!("slave_read_repl_offset:{off}"),
        format!("slave_repl_offset:{off}"),
        "slave_priority:1".into(),
        "slave_read_only:1".into(),
        "replica_announced:1".into(),
        "connected_slaves:0".into(),
        "master_failover_state:no-failover".into(),
        format!("master_replid:{id}"),
        format!("master_repl_offset:{off}"),
        String::new(),
    ]
    .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn globs_like_redis() {
        for (p, s, want) in [
            ("*", "+switch-master", true),
            ("h?llo", "hello", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b", "ac", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("+*-master", "+switch-master", true),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(glob(p.as_bytes(), s.as_bytes()), want, "{p} over {s}");
        }
    }

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let frames: [&[u8]; 8] = [
            b"+OK\r\n",
            b"-ERR no\r\n",
            b"$-1\r\n",
            b"*2\r\n$13\r\n198.51.100.11\r\n$4\r\n6379\r\n",
            b"%1\r\n$5\r\nproto\r\n:3\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$0\r\n\r\n",
            b"|1\r\n+k\r\n+v\r\n:1\r\n",
            b"*2\r\n_\r\n*-1\r\n",
        ];
        for f in frames {
            for cut in 0..f.len() {
                assert_eq!(value(&f[..cut], 0, 0), Ok(None), "{:?} cut at {cut}", String::from_utf8_lossy(f));
            }
            let (v, n) = value(f, 0, 0).unwrap().unwrap();
            assert_eq!((raw(&v).as_slice(), n), (f, f.len()));
        }
        assert!(value(b"$2000000\r\n", 0, 0).is_err());
        assert!(value(b"$2\r\nabcd\r\n", 0, 0).is_err());
        assert!(value(b"?x\r\n", 0, 0).is_err());
        assert!(value(&b"*1\r\n".repeat(40), 0, 0).is_err());
    }

    #[test]
    fn commands_array_or_inline() {
        let (args, n) = command(b"*2\r\n$4\r\nPING\r\n$1\r\nx\r\nrest").unwrap().unwrap();
        assert_eq!((args, n), (vec![b"PING".to_vec(), b"x".to_vec()], 21));
        assert_eq!(command(b"PING  x\r\n").unwrap().unwrap(), (vec![b"PING".to_vec(), b"x".to_vec()], 9));
        assert_eq!(command(b"*2\r\n$4\r\nPING\r\n").unwrap(), None);
        assert!(command(b"*1\r\n:1\r\n").is_err());
        assert!(command(b"*1\r\n$99999999\r\n").is_err());
        assert!(command(b"*5000\r\n").is_err());
    }

    fn conn() -> Conn {
        let shared: Shared = Arc::default();
        let (tx, _rx) = mpsc::channel(1);
        lock(&shared).clients.insert(1, Client { tx, resp3: false, subs: Default::default() });
        Conn { id: 1, shared, owed: VecDeque::new(), resp3: false, subscribing: false }
    }

    #[test]
    fn control_answers_keep_their_place_in_a_pipeline() {
        let mut c = conn();
        let mut buf = b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n\
                        *1\r\n$11\r\nROGUE.STATS\r\n*2\r\n$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n\
                        *3\r\n$13\r\nROGUE.PUBLISH\r\n$1\r\nx\r\n$1\r\ny\r\n"
            .to_vec();
        let (to_up, to_client) = c.on_client_bytes(&mut buf).unwrap();
        assert!(to_client.is_empty() && buf.is_empty());
        assert!(to_up.starts_with(b"*3\r\n$8\r\nSENTINEL") && to_up.ends_with(b"$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n"));
        let reply = b"*2\r\n$1\r\na\r\n$1\r\n1\r\n";
        let mut up = reply.to_vec();
        let out = c.on_upstream_bytes(&mut up).unwrap();
        assert!(out.starts_with(reply) && out[reply.len()..].starts_with(b"$") && out.ends_with(b"\r\n"), "{out:?}");
        let confirm = b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n";
        let mut up = confirm.to_vec();
        assert_eq!(c.on_upstream_bytes(&mut up).unwrap(), [&confirm[..], b":0\r\n"].concat());
        assert!(c.owed.is_empty() && lock(&c.shared).clients[&1].subs[1].contains(b"*".as_slice()));
    }

    #[test]
    fn lies_rewrite_the_answers_they_name() {
        let mut lies = Lies::default();
        for rule in ["master-addr m 203.0.113.9 7000", "epoch m 99", "replica m 203.0.113.8 6390 priority 5"] {
            let words: Vec<Vec<u8>> = rule.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            lies.apply(&words).unwrap();
        }
        let addr = lies.falsify(&Rewrite::MasterAddr(b"m".to_vec()), &Value::Blob(b'$', None), false).unwrap();
        assert_eq!(raw(&addr), b"*2\r\n$11\r\n203.0.113.9\r\n$4\r\n7000\r\n");
        assert_eq!(lies.falsify(&Rewrite::MasterAddr(b"other".to_vec()), &Value::Blob(b'$', None), false), None);
        let master = Value::Agg(b'*', Some(["name", "m", "ip", "198.51.100.11", "config-epoch", "1"].map(bulk).into()));
        let lied = lies.falsify(&Rewrite::Master(b"m".to_vec()), &master, false).unwrap();
        assert_eq!(
            (field(&lied, b"ip").unwrap(), field(&lied, b"config-epoch").unwrap()),
            (b"203.0.113.9".to_vec(), b"99".to_vec())
        );
        let replicas = Value::Agg(b'*', Some(vec![]));
        let Some(Value::Agg(b'*', Some(list))) = lies.falsify(&Rewrite::Replicas(b"m".to_vec()), &replicas, true)
        else {
            panic!("no replica added")
        };
        assert_eq!(field(&list[0], b"slave-priority"), Some(b"5".to_vec()));
        assert!(matches!(list[0], Value::Agg(b'%', _)), "a RESP3 client gets maps");
        assert!(lies.apply(&[b"replica".to_vec(), b"m".to_vec()]).is_err());
    }
}
