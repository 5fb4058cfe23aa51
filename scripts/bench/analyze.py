#!/usr/bin/env python3
"""Figures of scripts/bench.sh from the raw logs run-setup.sh saved.

usage: analyze.py OUT N MARKDOWN PNG

OUT holds meta.txt (machine and versions, "key: value" lines) and one folder
per setup (lab.json, rows.tsv, daemons.tsv, writer-SCENARIO-I.log, h1..h3/*.log;
the routed setups also speakers.tsv, cuts.tsv and rt/routes.log, the router's
"ip -ts -o monitor route"), and fence.md when scripts/bench/fence.sh ran (its
Markdown table, taken as it is).  A folder SETUP@base holds the same setup run
with the baseline vipctl (meta.txt's "baseline" lines); its column sits next to
SETUP's.  A folder SETUP~SERVER (SETUP with or without @base) holds the same setup
run in a lab of another server build (LAB_SERVER=SERVER, meta.txt's "server SERVER"
line: its --version); its column follows SETUP's (and SETUP@base's).
The lab's facts (hosts, addresses, VIP, ports) come from that setup's lab.json,
which scripts/lab.sh wrote and run-setup.sh kept with the logs; the routed lab's
differ from the L2 lab's (other addresses, a host-route VIP).
Writes the Markdown report and the timeline chart (matplotlib).  Every
figure is a difference of two logged timestamps on one clock; nothing here
depends on when the benchmark script happened to poll.
"""

import json
import os
import re
import sys
import time
from datetime import datetime, timezone

SETUPS = [
    ("hook", "vipctl hook"),
    ("watch", "vipctl watch"),
    ("both", "vipctl hook + watch"),
    ("early", "vipctl watch, early claim"),
    ("switch", "vipctl switchover (watch, early claim)"),
    ("fast", "vipctl watch, early claim + fail-fast"),
    ("classic", "classic shell hook"),
    ("keepalived", "keepalived + role check"),
    ("routed-bird", "routed VIP, BIRD (hook + watch)"),
    ("routed-frr", "routed VIP, FRR (hook + watch)"),
    ("routed-bird-early", "routed VIP, BIRD (hook + watch, early claim)"),
    ("routed-frr-early", "routed VIP, FRR (hook + watch, early claim)"),
]
SCENARIOS = [
    ("kill", "Master's redis killed (kill -9)"),
    ("partition", "Master's host cut off at the switch, healed after the failover"),
    ("freeze", "Master's redis frozen (SIGSTOP), resumed after the failover"),
    ("switchover", "Planned switchover of a healthy master (`SENTINEL FAILOVER`; `vipctl switchover` in its column)"),
    ("partial", "Master's host cut off from the other Redis hosts but not from its clients (`lab.sh isolate`), healed "
                "2 s after the new master holds the VIP"),
]
ROUTED_SETUPS = {"routed-bird", "routed-frr", "routed-bird-early", "routed-frr-early"}
HOOK_SETUPS = {"hook", "both", "classic"} | ROUTED_SETUPS
DAEMON_SETUPS = {"watch", "both", "early", "switch", "fast", "keepalived"} | ROUTED_SETUPS
# The daemons with [watch] early_claim = true.
EARLY_SETUPS = {"early", "switch", "fast", "routed-bird-early", "routed-frr-early"}
# SETUP@base: SETUP run with the baseline vipctl (BENCH_BASELINE); not for classic or keepalived.
BASE = "@base"
BASE_SETUPS = {s for s, _ in SETUPS} - {"classic", "keepalived"}


# SETUP~SERVER: SETUP (or SETUP@base) in a lab brought up with LAB_SERVER=SERVER instead of the default,
# Debian 12's redis 7.0 (redis7, which takes no suffix); SERVERS: scripts/servers.sh's other builds, in the
# order of their columns.
SERVER_SEP = "~"
SERVERS = ["valkey8", "redis8"]


def split_server(setup):
    """SETUP~SERVER -> (SETUP, SERVER); a setup without the suffix -> (setup, None)."""
    if SERVER_SEP in setup:
        build, srv = setup.rsplit(SERVER_SEP, 1)
        return build, srv
    return setup, None


def server(setup):
    """The server build of SETUP's lab when not the default (its ~SERVER suffix), else None."""
    return split_server(setup)[1]


def with_server(setup, srv):
    """SETUP with the suffix ~SRV (none when SRV is None)."""
    return setup + SERVER_SEP + srv if srv else setup


def is_base(setup):
    """Whether SETUP ran the baseline vipctl (SETUP@base, with or without ~SERVER)."""
    return split_server(setup)[0].endswith(BASE)


def kind(setup):
    """What runs in SETUP: the setup itself, without ~SERVER and @base."""
    setup = split_server(setup)[0]
    return setup[: -len(BASE)] if setup.endswith(BASE) else setup


def server_order(srv):
    """Sort key of a server build: SERVERS' order, unknown ones after them by name."""
    return (SERVERS.index(srv) if srv in SERVERS else len(SERVERS), srv)


def server_label(meta, srv):
    """A column's name for server build SRV from meta.txt's "server SRV" line (its --version, e.g.
    "Valkey server v=8.1.1 sha=..." -> "valkey 8.1.1"); SRV itself when the line is missing."""
    m = re.match(r"(\S+) server v=(\S+)", meta.get(f"server {srv}", ""))
    return f"{m.group(1).lower()} {m.group(2)}" if m else srv


def speaker(setup):
    """The BGP speaker of a routed setup: routed-bird[-early] -> bird."""
    return kind(setup).split("-")[1]


class Facts:
    """The facts of one lab, from the lab.json that scripts/lab.sh wrote."""

    def __init__(self, path):
        with open(path) as f:
            j = json.load(f)
        self.hosts = list(j["redis_hosts"])
        self.ip = {h: j["nodes"][h]["ipv4"] for h in self.hosts}
        self.vip4_cidr = j["vips"]["v4"]
        self.vip4 = self.vip4_cidr.split("/")[0]
        self.redis_port = j["ports"]["redis"]
        # "l2" (a switch) or "routed" (a router; the VIPs are host routes on lo).
        self.mode = j.get("mode", "l2")
        self.speaker = j.get("speaker")

    def same(self, other):
        return (self.mode, self.hosts, self.ip, self.vip4, self.redis_port) == (
            other.mode, other.hosts, other.ip, other.vip4, other.redis_port)


def setup_facts(out, setup):
    """The Facts of OUT/SETUP/lab.json, or None when the setup's lab never came up."""
    path = os.path.join(out, setup, "lab.json")
    if not os.path.exists(path):
        return None
    return Facts(path)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


# --- timestamps -------------------------------------------------------------

REDIS_TS = re.compile(r"^\d+:[A-Z] (\d+ \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3}) ")


def redis_events(path, pattern):
    """(us, line) for lines of a Redis/Sentinel log matching pattern (local time)."""
    rx = re.compile(pattern)
    out = []
    for line in read(path):
        m = REDIS_TS.match(line)
        if not m or not rx.search(line):
            continue
        dt = datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f")
        us = int(time.mktime(dt.timetuple())) * 1_000_000 + dt.microsecond
        out.append((us, line))
    return out


def vip_changes(path, vip4):
    """(us, +1 bound / -1 removed) for the IPv4 VIP from an "ip -ts -o monitor address" log."""
    ipmon = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (Deleted )?.* inet " + re.escape(vip4) + "/")
    out = []
    for line in read(path):
        m = ipmon.match(line)
        if not m:
            continue
        dt = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        us = int(time.mktime(dt.timetuple())) * 1_000_000 + dt.microsecond
        out.append((us, -1 if m.group(2) else +1))
    return out


ROUTE_TS = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (Deleted )?(\S+) (.*)$")


def route_changes(path, vip4):
    """(us, frozenset of hosts) per change of the router's route for the IPv4 VIP (a /32), from
    an "ip -ts -o monitor route" log of the router namespace: the hosts are the router's ports
    (named after the hosts) in the route's "dev" fields; an empty set means no route (deleted).

    One route per prefix (maximum-paths 1 on the router, zebra replaces it in place), several
    "dev" fields only for a multipath route."""
    out = []
    for line in read(path):
        m = ROUTE_TS.match(line)
        if not m or m.group(3) not in (vip4, vip4 + "/32"):
            continue
        rest = m.group(4)
        t = re.search(r"\btable (\S+)", rest)
        if t and t.group(1) != "main":
            continue
        dt = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        us = int(time.mktime(dt.timetuple())) * 1_000_000 + dt.microsecond
        devs = frozenset(re.findall(r"\bdev (\S+)", rest))
        out.append((us, frozenset() if m.group(2) else devs))
    out.sort(key=lambda e: e[0])
    return out


def route_per_host(states, hosts):
    """{host: [(us, +1/-1)]}: when the router started / stopped forwarding the VIP to each host."""
    ch = {h: [] for h in hosts}
    prev = frozenset()
    for us, cur in states:
        for h in hosts:
            if h in cur and h not in prev:
                ch[h].append((us, +1))
            elif h in prev and h not in cur:
                ch[h].append((us, -1))
        prev = cur
    return ch


def time_where(states, lo, hi, pred):
    """Time (us) in [lo, hi) during which pred(set of hosts routed to) held; no route before the
    first change."""
    total, cur, last = 0, frozenset(), lo
    for us, nxt in states:
        if us <= lo:
            cur = nxt
            continue
        if us >= hi:
            break
        if pred(cur):
            total += us - last
        cur, last = nxt, us
    if pred(cur) and hi > last:
        total += hi - last
    return total


def writer(path):
    """(ms, ok, value_or_reason) per attempt of lab_writer."""
    out = []
    for line in read(path):
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        out.append((int(parts[0]) * 1000, parts[1] == "ok", parts[2]))
    return out


def vipctl_hooks(path, vip4):
    """(end_us, decision, elapsed_ms, first_frame_ms, added_vip4) for each hook decision record.

    vipctl writes one JSON record per line (src/record.rs); `timestamp` is when the record was
    written, after `elapsed_ms` of work."""
    out = []
    for line in read(path):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("actor") != "hook" or rec.get("event") != "decision":
            continue
        dt = datetime.strptime(rec["timestamp"].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
        us = int(dt.timestamp()) * 1_000_000 + dt.microsecond
        adds = ("add " + vip4 + "/") in rec.get("actions", "")
        out.append((us, rec.get("decision", "?"), rec.get("elapsed_ms"), rec.get("first_frame_ms"), adds))
    return out


def classic_hooks(path):
    """(start_us, end_us, to_ip) per classic hook call (from the timing wrapper)."""
    out = []
    for line in read(path):
        m = re.match(r"classic start_us=(\d+) end_us=(\d+) rc=\d+ args=(.*)$", line)
        if m:
            args = m.group(3).split()
            out.append((int(m.group(1)), int(m.group(2)), args[5] if len(args) > 5 else ""))
    return out


# --- statistics ---------------------------------------------------------------


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def fmt_stats(values, unit="s", scale=1.0, digits=2, n_expected=None):
    v = [x * scale for x in values if x is not None]
    if not v:
        return "n/a"
    f = f"{{:.{digits}f}}"
    s = f.format(median(v))
    if len(v) > 1:
        s += f" [{f.format(min(v))}–{f.format(max(v))}]"
    s += f" {unit}" if unit else ""
    if n_expected is not None and len(v) < n_expected:
        s += f" (n={len(v)})"
    return s


def overlap_us(intervals_by_host, lo, hi):
    """Time in [lo, hi) during which two or more hosts held the VIP."""
    edges = []
    for ivs in intervals_by_host.values():
        for a, b in ivs:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                edges.append((a, 1))
                edges.append((b, -1))
    edges.sort()
    total, count, last = 0, 0, None
    for t, d in edges:
        if count >= 2 and last is not None:
            total += t - last
        count += d
        last = t
    return total


def overlap_longest_us(intervals_by_host, lo, hi):
    """The longest stretch in [lo, hi) during which two or more hosts held the VIP at once."""
    edges = []
    for ivs in intervals_by_host.values():
        for a, b in ivs:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                edges.append((a, 1))
                edges.append((b, -1))
    # Ends before starts at one instant: a hand-over at the same µs is no overlap.
    edges.sort(key=lambda e: (e[0], e[1]))
    longest, count, since = 0, 0, None
    for t, d in edges:
        count += d
        if count >= 2 and since is None:
            since = t
        elif count < 2 and since is not None:
            longest = max(longest, t - since)
            since = None
    return longest


def hold_intervals(changes, t_end):
    """[(from_us, to_us)] during which the VIP was present, from +1/-1 changes."""
    ivs, since = [], None
    for us, d in sorted(changes):
        if d > 0 and since is None:
            since = us
        elif d < 0 and since is not None:
            ivs.append((since, us))
            since = None
    if since is not None:
        ivs.append((since, t_end))
    return ivs


# --- per failover -------------------------------------------------------------


def analyse_setup(out, setup, facts):
    d = os.path.join(out, setup)
    rows = [r.split("\t") for r in read(os.path.join(d, "rows.tsv")) if r.strip()]
    if facts is None:
        if rows:
            sys.exit(f"analyze.py: {d} has failovers in rows.tsv but no lab.json (the lab's facts); "
                     "these raw logs predate lab.json: rerun scripts/bench.sh")
        return [], {}, {}, {}
    hosts, ip = facts.hosts, facts.ip
    changes = {h: vip_changes(os.path.join(d, h, "ipmon.log"), facts.vip4) for h in hosts}
    t_last = max([int(r[6]) for r in rows] + [0]) + 60_000_000
    holds = {h: hold_intervals(changes[h], t_last) for h in hosts}
    sent = {h: os.path.join(d, h, "sentinel.log") for h in hosts}
    hooks_v = {h: vipctl_hooks(os.path.join(d, h, "vipctl.log"), facts.vip4) for h in hosts}
    hooks_c = {h: classic_hooks(os.path.join(d, h, "classic-hook.log")) for h in hosts}
    # Routed lab: the router's route for the IPv4 VIP over time, per host as hold intervals
    # (as the addresses), and when each "lab.sh cut" was in place.
    routed = facts.mode == "routed"
    rstates, rholds, cuts = [], {}, {}
    if routed:
        rstates = route_changes(os.path.join(d, "rt", "routes.log"), facts.vip4)
        rholds = {h: hold_intervals(ch, t_last) for h, ch in route_per_host(rstates, hosts).items()}
        for line in read(os.path.join(d, "cuts.tsv")):
            p = line.split("\t")
            if len(p) == 5:
                cuts[(p[0], int(p[1]), p[2])] = (int(p[3]), int(p[4]))
    results = []
    carried_max = None
    for r in rows:
        scen, i, old, new = r[0], int(r[1]), r[2], r[3]
        fault, heal, end, settled, fixed = int(r[4]), int(r[5]), int(r[6]), r[7] == "1", r[8] == "1"
        x = dict(setup=setup, scen=scen, i=i, old=old, new=new, fault=fault, heal=heal, end=end,
                 settled=settled, fixed=fixed)

        def first(events):
            ev = [e for e in events if fault <= e[0] <= end]
            return min(ev)[0] if ev else None

        # Valkey logs "PRIMARY MODE enabled" where Redis logs "MASTER MODE enabled".
        x["role"] = first(redis_events(os.path.join(d, new, "redis.log"), "(MASTER|PRIMARY) MODE enabled"))
        prom = []
        for h in hosts:
            prom += redis_events(sent[h], r"\+promoted-slave slave " + re.escape(ip[new]) + ":")
        x["prom"] = first(prom)
        x["odown"] = first(sum((redis_events(sent[h], r"\+odown ") for h in hosts), []))
        x["switch"] = first(sum((redis_events(sent[h], r"\+switch-master ") for h in hosts), []))
        adds = [(us, 0) for us, dd in changes[new] if dd > 0]
        x["bound"] = first(adds)
        sub = lambda a, b: (a - b) / 1e6 if a is not None and b is not None else None
        x["lag_role"] = sub(x["bound"], x["role"])
        x["lag_prom"] = sub(x["bound"], x["prom"])
        x["fault_bound"] = sub(x["bound"], fault)
        x["fault_switch"] = sub(x["switch"], fault)
        x["fault_role"] = sub(x["role"], fault)

        # The client.
        w = writer(os.path.join(d, f"writer-{scen}-{i}.log"))
        x["writes"] = w
        oks = [t for t, ok, _ in w if ok]
        # Leading and trailing failures count too: from the writer's first
        # attempt to its first success, and from its last success to its last attempt.
        marks = ([w[0][0]] if w and not w[0][1] else []) + oks + ([w[-1][0]] if w and not w[-1][1] else [])
        gaps = [b - a for a, b in zip(marks, marks[1:])]
        x["gap"] = max(gaps) / 1e6 if gaps else None
        x["client_ok"] = len(r) > 9 and r[9] == "1"
        sw = sum((redis_events(sent[h], r"\+switch-master ") for h in hosts), [])
        x["switches"] = len({l.split()[-2] for us, l in sw if fault <= us <= end})
        first_err = next((t for t, ok, _ in w if not ok and t >= fault), None)
        if first_err is None:
            x["outage"] = 0.0 if oks else None
        else:
            nxt = next((t for t, ok, _ in w if ok and t > first_err), None)
            x["outage"] = (nxt - fault) / 1e6 if nxt is not None else None
        lost, mx = 0, carried_max
        for _, ok, v in w:
            if not ok:
                continue
            try:
                val = int(v)
            except ValueError:
                continue
            if mx is not None and val <= mx:
                lost += mx - (val - 1)
                mx = val
            else:
                mx = val if mx is None else max(mx, val)
        carried_max = mx
        x["lost"] = lost
        x["readonly"] = sum(1 for _, ok, v in w if not ok and "READONLY" in v)
        x["errors"] = sum(1 for _, ok, _ in w if not ok)
        x["dup"] = overlap_us(holds, fault, end) / 1e6
        x["dup_longest"] = overlap_longest_us(holds, fault, end) / 1e6
        x["dup_heal"] = overlap_us(holds, heal, end) / 1e6 if heal else None
        x["final_ok"] = settled

        if routed:
            # The router's route: the first instant in the window at which it forwards the VIP
            # to the new master, and the instant it stops forwarding it to the old one (the end
            # of the old master's route interval that covers the fault).
            to_new = [max(a, fault) for a, b in rholds[new] if b > fault and a <= end]
            x["route_new"] = min(to_new) if to_new else None
            x["route_lag"] = sub(x["route_new"], x["bound"])
            x["fault_route"] = sub(x["route_new"], fault)
            gone = next((b for a, b in rholds[old] if a <= fault < b), None)
            x["route_gone"] = sub(gone, fault) if gone is not None and gone <= end else None
            x["route_dup"] = overlap_us(rholds, fault, end) / 1e6
            x["route_dup_heal"] = (time_where(rstates, heal, end, lambda c: len(c) >= 2 or old in c) / 1e6
                                   if heal else None)
            c = cuts.get((scen, i, "cut"))
            x["cut_cmd"] = (c[1] - c[0]) / 1e6 if c else None

        # Hooks run during this failover.
        if kind(setup) in ("hook", "both") or kind(setup) in ROUTED_SETUPS:
            claims = [e for e in hooks_v[new] if fault <= e[0] <= end and e[1] == "claim" and e[2] is not None]
            others = [e for h in hosts for e in hooks_v[h] if fault <= e[0] <= end and e not in claims]
            x["hook_wall_claim"] = [e[2] / 1000 for e in claims]
            x["hook_wall_other"] = [e[2] / 1000 for e in others if e[2] is not None]
            x["hook_frame"] = [e[3] / 1000 for e in claims if e[3] is not None]
            # Only when this call added the VIP (with the daemon running, it is often there already).
            adders = [e for e in claims if e[4]]
            x["hook_exec_bound"] = (
                [(x["bound"] - (adders[0][0] - adders[0][2] * 1000)) / 1e6] if adders and x["bound"] else [])
        elif kind(setup) == "classic":
            claims = [e for e in hooks_c[new] if fault <= e[0] <= end and e[2] == ip[new]]
            others = [e for h in hosts for e in hooks_c[h] if fault <= e[0] <= end and e not in claims]
            x["hook_wall_claim"] = [(e[1] - e[0]) / 1e6 for e in claims]
            x["hook_wall_other"] = [(e[1] - e[0]) / 1e6 for e in others]
            x["hook_frame"] = []
            x["hook_exec_bound"] = (
                [(x["bound"] - claims[0][0]) / 1e6] if claims and x["bound"] and x["bound"] >= claims[0][0] else [])
        results.append(x)
    return results, holds, sent, rholds


def daemon_figures(out, setup):
    """{"quiet"|"failovers": (cpu_ms per host, kB per host, wall s)} from daemons.tsv."""
    lines = [l.split("\t") for l in read(os.path.join(out, setup, "daemons.tsv")) if l.strip()]
    by = {}
    for phase, host, pid, us, cpu, rss, hwm, tck in lines:
        by[(phase, host)] = (int(us), int(cpu), int(rss), int(hwm), int(tck))
    return interval_figures(by)


def speaker_figures(out, setup, router=False):
    """As daemon_figures, for the routed lab's BGP speakers from speakers.tsv: per host the sum
    over its speaker's processes (BIRD: bird; FRR: zebra, bgpd and bfdd), or with router=True
    the router's FRR alone."""
    by = {}
    for l in read(os.path.join(out, setup, "speakers.tsv")):
        f = l.split("\t")
        if len(f) != 9:
            continue
        phase, host, _name, _pid, us, cpu, rss, hwm, tck = f
        if (host == "rt") != router:
            continue
        a = by.get((phase, host), (int(us), 0, 0, 0, int(tck)))
        by[(phase, host)] = (a[0], a[1] + int(cpu), a[2] + int(rss), a[3] + int(hwm), a[4])
    return interval_figures(by)


def interval_figures(by):
    """{(phase, host): (us, cpu_ticks, rss_kB, hwm_kB, clk_tck)} -> figures per interval."""
    res = {}
    hosts = sorted({h for _, h in by})
    for a, b, name in (("quiet-start", "quiet-end", "quiet"), ("failovers-start", "failovers-end", "failovers")):
        cpu, rss, wall = [], [], []
        for h in hosts:
            if (a, h) in by and (b, h) in by:
                s, e = by[(a, h)], by[(b, h)]
                cpu.append((e[1] - s[1]) * 1000 / s[4])
                rss.append(e[3] if name == "failovers" else e[2])
                wall.append((e[0] - s[0]) / 1e6)
        if cpu:
            res[name] = (cpu, rss, median(wall))
    return res


# --- report -------------------------------------------------------------------


def main():
    out, n, md_path, png_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    meta = {}
    for line in read(os.path.join(out, "meta.txt")):
        if ": " in line:
            k, v = line.split(": ", 1)
            meta[k] = v
    data, holds, sents, rholds, facts = {}, {}, {}, {}, {}
    # Each setup, and right after it the same setup with the baseline vipctl (SETUP@base); then the two
    # again per other server build that ran (SETUP~SERVER, SETUP@base~SERVER), in SERVERS' order.
    srvs = {server(e) for e in os.listdir(out) if SERVER_SEP in e and os.path.isdir(os.path.join(out, e))}
    srvs = sorted(srvs, key=server_order)
    order = [(with_server(s2, v), s, name) for s, name in SETUPS for v in [None] + srvs
             for s2 in (s, s + BASE) if s2 == s or s in BASE_SETUPS]
    for s, _, _ in order:
        if os.path.isdir(os.path.join(out, s)):
            facts[s] = setup_facts(out, s)
            data[s], holds[s], sents[s], rholds[s] = analyse_setup(out, s, facts[s])
    # Column names: a setup that has a @base column next to it says which build each is.
    base_label = meta.get("baseline label", "baseline")
    m = re.search(r"\(git (\S+?)(,|\))", meta.get("vipctl", ""))
    now_label = f"git {m.group(1)}" + (", modified" if "uncommitted" in meta["vipctl"] else "") if m else "this build"
    present = []
    for s, k, name in order:
        if s not in data:
            continue
        # Another server build than the default: its name and version first ("— valkey 8.1.1").
        srv = server(s)
        sep = " — "
        if srv:
            name += f" — {server_label(meta, srv)}"
            sep = ", "
        if is_base(s):
            name += f"{sep}before ({base_label})"
        elif with_server(k + BASE, srv) in data:
            name += f"{sep}now ({now_label})"
        present.append((s, name))
    # Every setup had a lab of its own, all built by the same lab.sh: the report names the facts
    # once per kind of lab (the L2 lab's, and the routed lab's with its own addresses and VIP).
    known = [f for f in facts.values() if f is not None]
    if not known:
        sys.exit(f"analyze.py: no setup in {out} has a lab.json (no lab came up?)")
    for s, f in facts.items():
        if f is not None and (f.mode == "routed") != (kind(s) in ROUTED_SETUPS):
            sys.exit(f"analyze.py: {out}/{s}/lab.json is a {f.mode} lab's, which setup {s} does not use")
        if f is not None and kind(s) in ROUTED_SETUPS and f.speaker != speaker(s):
            sys.exit(f"analyze.py: {out}/{s}/lab.json names speaker {f.speaker!r}, not the setup's")
        # The server build the lab was made with (run-setup.sh keeps lab.sh's DIR/server; older raw logs have none).
        ran = read(os.path.join(out, s, "server"))[:1]
        if ran and ran[0] != (server(s) or "redis7"):
            sys.exit(f"analyze.py: {out}/{s}/server names server {ran[0]!r}, not the setup's")
    l2 = next((f for f in known if f.mode != "routed"), None)
    rl = next((f for f in known if f.mode == "routed"), None)
    for ref in (l2, rl):
        if ref is not None and not all(ref.same(f) for f in known if f.mode == ref.mode):
            sys.exit(f"analyze.py: the setups' lab.json files in {out} disagree on the lab's hosts or addresses")
    lab = l2 or rl
    if rl is not None and l2 is not None and rl.hosts != l2.hosts:
        sys.exit(f"analyze.py: the L2 and routed labs in {out} have different hosts")
    any_routed = rl is not None

    md = []
    md.append("# Failover benchmark: vipctl against the classic hook and keepalived\n")
    md.append(f"Generated by `scripts/bench.sh {n}` on {meta.get('date', '?')}; total run time "
              f"{meta.get('runtime', '?')}. Do not edit by hand: rerun the script.\n")
    lab_text = ("Each setup ran in its own fresh namespace lab (`scripts/lab.sh`: three hosts with "
                "redis-server and redis-sentinel, quorum 2, "
                f"`down-after-milliseconds {meta.get('down-after-milliseconds', '1000')}`, "
                "`failover-timeout 5000`), with a client in `cl` sending `INCR` every 10 ms through ")
    targets = []
    if l2 is not None:
        targets.append(f"{l2.vip4}:{l2.redis_port}" + (" (L2 setups)" if rl is not None else ""))
    if rl is not None:
        targets.append(f"{rl.vip4}:{rl.redis_port}" + (" (routed setups)" if l2 is not None else ""))
    lab_text += " or ".join(targets) + "."
    if rl is not None:
        lab_text += (" The routed setups' lab (`LAB_ROUTED=1`) has no switch: each host and the client sit in "
                     "a subnet of their own behind a router namespace `rt` running FRR, and the VIP "
                     f"{rl.vip4_cidr} is a host route that vipctl binds on `lo` of the master's host and that "
                     "host's BGP speaker (BIRD 2 or FRR) announces to the router over eBGP with BFD (100 ms × 3).")
    lab_text += (f" {n} failover(s) per setup and scenario; each cell is "
                 "**median [min–max]** over them. Times are in seconds unless marked.\n")
    md.append(lab_text)
    md.append("![Timeline of one kill -9 failover per setup](failover-timeline.png)\n")
    md.append("## Machine and versions\n")
    # The ~SERVER setups' server builds ("server SERVER" lines) right after the default's ("redis").
    keys = ["nproc", "kernel", "redis"] + [k for k in meta if k.startswith("server ")]
    for k in keys + ["keepalived", "bird", "frr", "vipctl", "baseline", "date", "other labs", "scenarios",
                     "down-after-milliseconds", "fence", "failed setups"]:
        if k in meta:
            md.append(f"- {k}: {meta[k]}")
    md.append("")
    md.append("## Setups\n")
    md.append("| column | what runs |\n|---|---|")
    md.append("| vipctl hook | `vipctl` as every sentinel's `client-reconfig-script`; initial `vipctl claim` on h1 |")
    md.append("| vipctl watch | `vipctl watch` on h1 h2 h3, no hook |")
    md.append("| vipctl hook + watch | both of the above |")
    md.append("| vipctl watch, early claim | `vipctl watch` with `[watch] early_claim = true`, no hook |")
    if any(kind(s) == "fast" for s, _ in present):
        md.append("| vipctl watch, early claim + fail-fast | as early claim, with `[watch] fail_fast = true`: the "
                  "master's daemon asks a sentinel for `SENTINEL FAILOVER` when its Redis refuses connections for "
                  "~100 ms, and lets go of the VIP then |")
    md.append("| vipctl switchover | as *early claim*; the planned switchover is `vipctl switchover` run on a "
              "replica's host instead of `SENTINEL FAILOVER` (other faults: not run) |")
    md.append("| classic shell hook | `scripts/bench/classic-hook.sh` (ip addr add + `arping -q -c 3 -A`, else ip addr del; "
              "IPv4 only) as the `client-reconfig-script`, through a timing wrapper; VIP added by hand on h1 first |")
    md.append("| keepalived + role check | Debian's keepalived (VRRP only, unicast peers, same priority, no nopreempt), "
              "`vrrp_script` `redis-cli -h <own ip> info replication \\| grep -q role:master` every 1 s, fall 2 rise 1 "
              "(`scripts/bench/keepalived.sh`); IPv4 VIP only |")
    if any_routed:
        md.append("| routed VIP, BIRD (hook + watch) | as *vipctl hook + watch*, in the routed lab: `mode = \"routed\"`, "
                  "`interface = \"lo\"`, BIRD 2 on each host (`packaging/examples/bird2-host.conf`) announcing the "
                  "VIPs bound on lo over eBGP + BFD to the router's FRR (`frr-tor.conf`, `maximum-paths 1`) |")
        md.append("| routed VIP, FRR (hook + watch) | as *vipctl hook + watch*, in the routed lab, with FRR (zebra, bgpd, "
                  "bfdd) on each host (`packaging/examples/frr-host.conf`) announcing the VIPs bound on lo over "
                  "eBGP + BFD to the router's FRR |")
        md.append("| routed VIP, BIRD / FRR (hook + watch, early claim) | as *routed VIP, BIRD* / *FRR*, the daemons "
                  "with `[watch] early_claim = true` (as *vipctl watch, early claim*) |")
    if any(is_base(s) for s, _ in present):
        md.append(f"| … — before ({base_label}) | the setup of that name with the baseline vipctl, "
                  f"{meta.get('baseline', '?')}, in place of this build, as the daemons, the hook and for "
                  "`vipctl claim` / `vipctl switchover` alike; the lab, the config and the client's `lab_writer` "
                  "are the same as in the column next to it |")
    used = sorted({server(s) for s, _ in present if server(s)}, key=server_order)
    for srv in used:
        md.append(f"| … — {server_label(meta, srv)} | the setup of that name (`SETUP~{srv}` in `BENCH_SETUPS`) in a lab "
                  f"brought up with `LAB_SERVER={srv}` (`scripts/servers.sh`: {meta.get(f'server {srv}', '?')}) as "
                  "every host's server and sentinel, in place of Debian 12's redis (the *redis* line above, which the "
                  "columns without a server name ran); vipctl, the config and the client are the same |")
    md.append("")

    def cell(setup, scen, key, **kw):
        rows = [x for x in data.get(setup, []) if x["scen"] == scen]
        if not rows:
            return "not run"
        vals = []
        for x in rows:
            v = x.get(key)
            if isinstance(v, list):
                vals += v
            else:
                vals.append(v)
        return fmt_stats(vals, **kw)

    def count_cell(setup, scen, key):
        rows = [x for x in data.get(setup, []) if x["scen"] == scen]
        if not rows:
            return "not run"
        v = [x[key] for x in rows]
        return f"{sum(v)} ({'/'.join(str(a) for a in v)})"

    for scen, title in SCENARIOS:
        if not any(x["scen"] == scen for s in data for x in data[s]):
            md.append(f"## {title}\n\nNot run.\n")
            continue
        if scen == "partition" and any_routed:
            title += " (routed lab: its link to the router cut with `lab.sh cut`, both ends staying up)"
        md.append(f"## {title}\n")
        md.append("| figure | " + " | ".join(name for _, name in present) + " |")
        md.append("|---|" + "---|" * len(present))

        def row(label, f, only=None):
            cells = []
            for s, _ in present:
                cells.append(f(s) if only is None or kind(s) in only else "n/a")
            md.append(f"| {label} | " + " | ".join(cells) + " |")

        row("fault → first `+switch-master`", lambda s: cell(s, scen, "fault_switch"))
        row("fault → new master reports `role:master`", lambda s: cell(s, scen, "fault_role"))
        row("fault → VIP bound on the new master", lambda s: cell(s, scen, "fault_bound"))
        row("**VIP lag: bound − `role:master`**", lambda s: cell(s, scen, "lag_role", digits=3))
        row("VIP lag: bound − leader's `+promoted-slave`", lambda s: cell(s, scen, "lag_prom", digits=3))
        if any_routed:
            row("fault → router routes the VIP to the new master", lambda s: cell(s, scen, "fault_route"),
                ROUTED_SETUPS)
            row("**route lag: VIP bound on the new master → router's route to it**",
                lambda s: cell(s, scen, "route_lag", unit="ms", scale=1000, digits=0), ROUTED_SETUPS)
            row("**cut → router withdraws the old master's route**" if scen == "partition"
                else "fault → router drops its route to the old master",
                lambda s: cell(s, scen, "route_gone", digits=3), ROUTED_SETUPS)
        row("**client outage: fault → first successful write**", lambda s: cell(s, scen, "outage"))
        row("client: longest gap between successful writes", lambda s: cell(s, scen, "gap"))
        row("**lost acknowledged writes** (sum; per failover)", lambda s: count_cell(s, scen, "lost"))
        row("writes refused `READONLY` (sum; per failover)", lambda s: count_cell(s, scen, "readonly"))
        row("duplicate VIP holders, total", lambda s: cell(s, scen, "dup", digits=3))
        if scen in ("partition", "partial"):
            row("duplicate VIP holders after the heal", lambda s: cell(s, scen, "dup_heal", digits=3))
        if any_routed:
            # The addresses on lo: what the early claim must keep short (the router routes one path).
            row("**VIP bound on `lo` of two hosts at once: total**",
                lambda s: cell(s, scen, "dup", unit="ms", scale=1000, digits=1), ROUTED_SETUPS)
            row("VIP bound on `lo` of two hosts at once: longest stretch",
                lambda s: cell(s, scen, "dup_longest", unit="ms", scale=1000, digits=1), ROUTED_SETUPS)
            row("router: VIP routed to two hosts at once, total", lambda s: cell(s, scen, "route_dup", digits=3),
                ROUTED_SETUPS)
            if scen == "partition":
                row("**router after the heal: VIP routed to the old master or to two hosts**",
                    lambda s: cell(s, scen, "route_dup_heal", digits=3), ROUTED_SETUPS)
                row("`lab.sh cut` in place (fault stamp → command done)",
                    lambda s: cell(s, scen, "cut_cmd", unit="ms", scale=1000, digits=0), ROUTED_SETUPS)
        row("Sentinel failovers per fault (distinct `+switch-master` targets)",
            lambda s: "/".join(str(x["switches"]) for x in data[s] if x["scen"] == scen))
        row("client writes through the VIP again at the end",
            lambda s: f"{sum(x['client_ok'] for x in data[s] if x['scen'] == scen)}/"
                      f"{sum(1 for x in data[s] if x['scen'] == scen)}")
        row("VIP on the master alone at the end, by itself",
            lambda s: f"{sum(x['settled'] for x in data[s] if x['scen'] == scen)}/"
                      f"{sum(1 for x in data[s] if x['scen'] == scen)}")
        row("hook wall time, claiming calls on the new master", lambda s: cell(s, scen, "hook_wall_claim", unit="ms",
                                                                             scale=1000, digits=1), HOOK_SETUPS)
        row("hook wall time, all other calls", lambda s: cell(s, scen, "hook_wall_other", unit="ms", scale=1000,
                                                             digits=1), HOOK_SETUPS)
        row("hook exec → VIP bound (claiming call that added it)", lambda s: cell(s, scen, "hook_exec_bound", unit="ms", scale=1000,
                                                                    digits=1), HOOK_SETUPS)
        row("hook exec → first announcement frame (claiming calls)", lambda s: cell(s, scen, "hook_frame", unit="ms", scale=1000,
                                                                   digits=2), {"hook", "both"})
        md.append("")

    early_summary(md, data, present)

    md.append("## Daemons: resident memory and CPU\n")
    md.append("Per daemon (one per host; keepalived counted with its VRRP child). *Quiet*: right after "
              "the VIP settled on h1, nothing happening but the sentinels' chatter, for the interval "
              "shown (`BENCH_QUIET_S`, 30 s by default rather than a minute, to keep one full run near "
              "half an hour). *Failovers*: from the "
              "first fault to the end of the last failover of the setup (all scenarios). Values over the three "
              "hosts: median [min–max].\n")
    if any_routed:
        md.append("Routed setups: the daemon rows are `vipctl watch`'s, as in the other columns; the BGP speaker "
                  "rows are the host's speaker, sampled at the same instants (BIRD: the `bird` process; FRR: "
                  "`zebra`, `bgpd` and `bfdd` summed per host), so that the routed design's whole cost on a Redis "
                  "host is vipctl's row plus the speaker's. The router's FRR is shown for scale; it is the "
                  "network's, not the Redis hosts'.\n")
    daemon_cols = [(s, name) for s, name in present if kind(s) in DAEMON_SETUPS]
    md.append("| figure | " + " | ".join(name for s, name in daemon_cols) + " |")
    md.append("|---|" + "---|" * len(daemon_cols))
    figs = {s: daemon_figures(out, s) for s, _ in daemon_cols}

    def drow(label, f):
        md.append(f"| {label} | " + " | ".join(f(figs[s]) for s, _ in daemon_cols) + " |")

    drow("quiet interval", lambda g: f"{g['quiet'][2]:.0f} s" if "quiet" in g else "n/a")
    drow("VmRSS after the quiet interval", lambda g: fmt_stats([v / 1024 for v in g["quiet"][1]], unit="MiB", digits=1)
         if "quiet" in g else "n/a")
    drow("CPU (utime+stime) in the quiet interval", lambda g: fmt_stats(g["quiet"][0], unit="ms", digits=0)
         if "quiet" in g else "n/a")
    drow("failover interval", lambda g: f"{g['failovers'][2]:.0f} s" if "failovers" in g else "n/a")
    drow("peak RSS (VmHWM) at the end", lambda g: fmt_stats([v / 1024 for v in g["failovers"][1]], unit="MiB", digits=1)
         if "failovers" in g else "n/a")
    drow("CPU over the failover interval", lambda g: fmt_stats(g["failovers"][0], unit="ms", digits=0)
         if "failovers" in g else "n/a")
    if any_routed:
        # The routed setups' BGP speakers, next to vipctl's own cost (n/a in the other columns).
        sfigs = {s: speaker_figures(out, s) for s, _ in present if kind(s) in ROUTED_SETUPS}
        rfigs = {s: speaker_figures(out, s, router=True) for s, _ in present if kind(s) in ROUTED_SETUPS}

        def srow(label, figs, f):
            md.append(f"| {label} | " + " | ".join(f(figs[s]) if s in figs else "n/a"
                                                   for s, _ in daemon_cols) + " |")

        srow("BGP speaker per host (BIRD: bird; FRR: zebra+bgpd+bfdd): VmRSS after the quiet interval", sfigs,
             lambda g: fmt_stats([v / 1024 for v in g["quiet"][1]], unit="MiB", digits=1) if "quiet" in g else "n/a")
        srow("BGP speaker per host: CPU in the quiet interval", sfigs,
             lambda g: fmt_stats(g["quiet"][0], unit="ms", digits=0) if "quiet" in g else "n/a")
        srow("BGP speaker per host: peak RSS (sum of VmHWM) at the end", sfigs,
             lambda g: fmt_stats([v / 1024 for v in g["failovers"][1]], unit="MiB", digits=1)
             if "failovers" in g else "n/a")
        srow("BGP speaker per host: CPU over the failover interval", sfigs,
             lambda g: fmt_stats(g["failovers"][0], unit="ms", digits=0) if "failovers" in g else "n/a")
        srow("the router's FRR (zebra+bgpd+bfdd): VmRSS after / CPU in the quiet interval", rfigs,
             lambda g: (fmt_stats([v / 1024 for v in g["quiet"][1]], unit="MiB", digits=1) + " / "
                        + fmt_stats(g["quiet"][0], unit="ms", digits=0)) if "quiet" in g else "n/a")
    md.append("")

    fences(md, out, meta)

    md.append("## How each figure is measured\n")
    # Only with ~SERVER columns (the text of a report without them stays as it was).
    role_note = server_note = ""
    if any(v.startswith("valkey") for v in used):
        role_note = "; Valkey logs `PRIMARY MODE enabled` instead"
    if used:
        server_note = ("- **… — " + " / ".join(server_label(meta, v) for v in used) + "** columns: the setup of that "
                       "name run in a lab of that server build (`LAB_SERVER`, *server* lines above) instead of Debian "
                       "12's redis, measured the same way from the same logs (the sentinels' events, the promoted\n"
                       "  replica's log line, the VIP's and the client's timestamps).\n")
    md.append(f"""All instants are CLOCK_REALTIME on one machine; every figure is the difference of two logged
timestamps, never this script's polling.

- **fault**: `$EPOCHREALTIME` taken by `scripts/bench/run-setup.sh` immediately before `kill -KILL`
  / `kill -STOP` of the master's redis-server, or `ip link set <host> down` on its switch port.
- **`+odown`, `+promoted-slave`, `+switch-master`**: the first such line after the fault in any
  sentinel.log (ms resolution). The leader's `+promoted-slave` names the promoted replica.
- **`role:master`**: the promoted replica's first `MASTER MODE enabled` line in its redis.log
  (the instant its `INFO replication` starts to report `role:master`){role_note}.
- **VIP bound / removed**: `ip -ts -o monitor address` in each host namespace (µs), i.e. when the
  kernel announced RTM_NEWADDR / RTM_DELADDR for {lab.vip4}.
- **client outage**: `lab_writer` in `cl` (`INCR` every 10 ms on one connection, reconnecting after
  any error, 200 ms I/O bound) logs each attempt's start (ms). *fault → first successful write*:
  from the fault to the first `ok` following the first error after the fault (0 if no error).
  *longest gap*: the longest interval without a successful write during the writer's run (between
  consecutive `ok` lines, and from the first attempt / to the last attempt when those failed), from
  1 s before the fault until the window ends (so it also catches outages during the restore, e.g.
  a VIP handed back to the restarted old master, or a client whose neighbour entry still names
  a host that no longer holds the VIP).
- **lost acknowledged writes**: `INCR` returns the counter; an `ok` value ≤ the highest value acknowledged
  before (carried across the failovers of a setup) means acknowledged writes were lost: count =
  highest − (value − 1), then the highest is reset to that value; summed. **READONLY**: `err` lines
  with `READONLY` (a write that reached a replica).
- **duplicate holders**: from the per-host add/delete timeline of the IPv4 VIP, the total time two or
  more hosts held it at once between the fault and the end of the failover's window (lab settled
  again); for the partition, also the part after the heal (`link up`). *Longest stretch*: the
  longest single interval of that time.
- **… — before (…)** columns: the setup of that name run with the baseline vipctl binary
  (`BENCH_BASELINE`, *baseline* above) instead of this build, measured the same way; the
  *— now (…)* column next to it is this build.
{server_note}- **hook wall time / exec → first frame**: vipctl records `elapsed_ms` and `first_frame_ms` in each hook
  decision record (DIR/hN/vipctl.log, JSON lines); exec → VIP bound = VIP bound − (record time − `elapsed_ms`).
  The classic hook is timed by `scripts/bench/classic-hook-timed.sh` (start/end `$EPOCHREALTIME`
  around the script); its first ARP is sent right after `ip addr add`, so exec → VIP bound is
  its exec → first frame within a fork of `arping`.
- **daemons**: VmRSS / VmHWM from /proc/PID/status and utime+stime from /proc/PID/stat (plus
  children, for keepalived's VRRP process), sampled at the start and end of each interval.

Procedure per failover: the writer starts, 1 s later the fault; the failover is done when a host other
than the old master holds the VIP and the sentinels that can see it name that host (bounded: 30 s,
15 s for the partition). Then the fault is undone: kill → `lab.sh start-redis` (it comes back as an
empty master and Sentinel turns it into a replica); partition → `link up` and 10 s of observation;
freeze → SIGCONT (Sentinel demotes it). Then the script waits (≤ 60 s) until every sentinel names
the new master with flags `master` (no failover in progress), two replicas linked, two other sentinels,
the IPv4 VIP on the new master alone, and at least 11 s after the last `+try-failover` /
`+vote-for-leader` (2 × failover-timeout + 1 s), so the next failover is a clean repeat. When the
VIP is not where it belongs by then, the script moves it by hand and the row *VIP on the master alone
at the end, by itself* counts that failover as failed. Finally it waits (≤ 90 s) until the client's
last 20 writes succeeded; the window (and the writer) ends there, so a client still cut off by a
stale neighbour entry is counted in this failover and not the next (*client writes through the VIP
again at the end* counts the windows where that happened within the bound). *Sentinel failovers per
fault* is normally 1; 2 means Sentinel failed over twice in the window (the second time away from
the replica it had just promoted), which makes that row's figures a different story.
""")
    if any_routed:
        md.append("""### Routed setups

The routed lab is built by `LAB_ROUTED=1 LAB_SPEAKER=bird|frr scripts/lab.sh up`; the client reaches the
VIP through the router, so a failover is over for it when the router's route points at the new master.
Everything above applies unchanged (the VIP bound / removed instants are `ip monitor address` lines for
the VIP on `lo`; *client outage* is computed exactly as for the L2 setups), except that the partition is
`lab.sh cut LAB OLD on` (every frame on the old master's link dropped, carrier up on both ends) and its
heal `lab.sh cut LAB OLD off`, and that the lab counts as settled only once the router also routes the
IPv4 VIP to the new master alone (the manual fix, if needed, binds it on `lo`). In addition:

- **router's route**: `ip -ts -o monitor route` in the router namespace (`rt/routes.log`, µs): each
  RTM_NEWROUTE / RTM_DELROUTE zebra makes for the VIP's host route. The router's ports are named after
  the hosts, so the route's `dev` says which host it forwards the VIP to; `Deleted` means no route.
  The router keeps one path (`maximum-paths 1`), so "two hosts at once" can only be two routes.
- **fault → router routes the VIP to the new master**: from the fault to the first instant in the
  window at which the router's route for the IPv4 VIP points at the new master.
- **route lag**: that instant minus the new master's VIP bind (its `ip monitor address` line for the
  IPv4 VIP on `lo`), per failover, median [min–max]. It holds the speaker noticing the address
  (BIRD's `direct` protocol, FRR's `redistribute connected` via zebra), the UPDATE to the router, the
  router's best-path choice (it keeps an older route from the old master as long as that one is
  announced) and zebra's kernel write.
- **cut → router withdraws the old master's route** (partition; the same figure after other faults is
  *fault → router drops its route to the old master*): from the fault stamp, taken right before
  `lab.sh cut LAB OLD on`, to the end of the router's route to the old master (BFD's 3 × 100 ms detection,
  then bgpd and zebra). `lab.sh cut` needs some ms to pin six neighbour entries; *`lab.sh cut` in
  place* gives that (the stamp after the command minus the fault stamp) and is part of the figure.
- **VIP bound on `lo` of two hosts at once**: *duplicate VIP holders* of the routed lab, in ms: from
  each host's `ip monitor address` lines for the IPv4 VIP on `lo`, the total time in the window during
  which two or more hosts had it bound, and the longest single stretch of it.
- **router: VIP routed to two hosts at once**: the time during the window in which the router's
  routes for the VIP named two or more hosts (the routed counterpart of *duplicate VIP holders*; two hosts
  holding the address on `lo` is harmless as long as only one is routed to).
- **router after the heal**: the time from the heal (`lab.sh cut LAB OLD off`) to the end of the window
  in which the router routed the VIP to the old master or to two hosts at once: the cut-off host must
  have let go of the VIP (minority timeout, or its hook) before its BGP session came back.
- **BGP speakers**: the processes named by the lab's pidfiles (`hN/bird.pid`; `hN/frr/{zebra,bgpd,bfdd}.pid`,
  the router's `rt/*.pid`), read from /proc as the daemons are, into `speakers.tsv`.
""")
    md.append("## Raw rows\n")
    md.append("| setup | scenario | # | old → new | fault→`role:master` | fault→VIP | lag vs role | outage | longest gap | lost | READONLY | dup | failovers | client ok at end |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    f3 = lambda v: "n/a" if v is None else f"{v:.3f}"
    for s, name in present:
        for x in data[s]:
            md.append(f"| {s} | {x['scen']} | {x['i']} | {x['old']} → {x['new']} | {f3(x['fault_role'])} | "
                      f"{f3(x['fault_bound'])} | {f3(x['lag_role'])} | {f3(x['outage'])} | {f3(x['gap'])} | "
                      f"{x['lost']} | {x['readonly']} | {f3(x['dup'])} | {x['switches']} | "
                      f"{'yes' if x['client_ok'] else 'NO'} |")
    md.append("")
    if any_routed:
        md.append("### Raw rows, routed setups\n")
        md.append("| setup | scenario | # | old → new | fault→VIP bound | fault→route to new | route lag (ms) | "
                  "old route gone | routed to two | after heal: old or two | outage |")
        md.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for s, name in present:
            if kind(s) not in ROUTED_SETUPS:
                continue
            for x in data[s]:
                lag = "n/a" if x.get("route_lag") is None else f"{x['route_lag'] * 1000:.0f}"
                md.append(f"| {s} | {x['scen']} | {x['i']} | {x['old']} → {x['new']} | {f3(x['fault_bound'])} | "
                          f"{f3(x.get('fault_route'))} | {lag} | {f3(x.get('route_gone'))} | "
                          f"{f3(x.get('route_dup'))} | {f3(x.get('route_dup_heal'))} | {f3(x['outage'])} |")
        md.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(md))

    plot(data, holds, rholds, present, png_path, lab.hosts)


# Early claim in the routed lab: the target the routed early-claim setups were added for.
EARLY_OUTAGE_WITHIN_S = 0.1
EARLY_DUP_MAX_S = 0.020


def early_summary(md, data, present):
    """The early-claim setups side by side after kill -9: the routed ones' client outage against the L2
    early claim's (same build), and how long the VIP was bound on two hosts at once."""
    cols = [(s, name) for s, name in present if kind(s) in EARLY_SETUPS - {"switch"}]
    if not any(kind(s) != "early" for s, _ in cols):
        return

    def rows(s, scen=None):
        return [x for x in data.get(s, []) if scen is None or x["scen"] == scen]

    def ref(s):
        """The L2 early-claim column a routed column is held against: the same build's, the same server's."""
        r = with_server("early" + (BASE if is_base(s) else ""), server(s))
        return r if rows(r, "kill") else None

    def med(s, key, scen="kill"):
        v = [x[key] for x in rows(s, scen) if x.get(key) is not None]
        return median(v) if v else None

    def worst(s, key):
        v = [(x[key], x["scen"]) for x in rows(s) if x.get(key) is not None]
        return max(v) if v else None

    md.append("## Early claim: routed against L2\n")
    md.append(f"The target of the routed early-claim setups: after a kill -9, a client outage within "
              f"{EARLY_OUTAGE_WITHIN_S:.1f} s of the L2 early claim's (the column of the same build), and the VIP "
              f"never bound on two hosts at once for more than {EARLY_DUP_MAX_S * 1000:.0f} ms (judged on the "
              "total per failover over every scenario run, the stricter reading; the longest single stretch is "
              "shown too). Figures as in the tables above: median [min–max] over the failovers.\n")
    md.append("| figure | " + " | ".join(name for _, name in cols) + " |")
    md.append("|---|" + "---|" * len(cols))

    def line(label, f):
        md.append(f"| {label} | " + " | ".join(f(s) for s, _ in cols) + " |")

    def vals(s, key, scen="kill", scale=1.0):
        return [x[key] * scale for x in rows(s, scen) if x.get(key) is not None]

    line("**client outage after kill -9**", lambda s: fmt_stats(vals(s, "outage")) if rows(s, "kill") else "not run")

    def diff(s):
        if kind(s) == "early":
            return "(reference)"
        r, a = ref(s), med(s, "outage")
        if r is None or a is None or med(r, "outage") is None:
            return "n/a"
        return f"{a - med(r, 'outage'):+.3f} s"

    line("outage − the L2 early claim's (medians)", diff)
    line("fault → VIP bound on the new master, kill -9",
         lambda s: fmt_stats(vals(s, "fault_bound")) if rows(s, "kill") else "not run")
    line("route lag: VIP bound → router's route to it, kill -9",
         lambda s: fmt_stats(vals(s, "route_lag"), unit="ms", scale=1000, digits=0) if kind(s) in ROUTED_SETUPS
         else "n/a")
    line("VIP on two hosts at once, kill -9: total per failover",
         lambda s: fmt_stats(vals(s, "dup"), unit="ms", scale=1000, digits=1) if rows(s, "kill") else "not run")

    def worst_cell(s, key):
        w = worst(s, key)
        if w is None:
            return "n/a"
        return f"{w[0] * 1000:.1f} ms" + (f" ({w[1]})" if w[0] > 0 else "")

    line("VIP on two hosts at once, any scenario: largest total per failover", lambda s: worst_cell(s, "dup"))
    line("VIP on two hosts at once, any scenario: longest stretch", lambda s: worst_cell(s, "dup_longest"))

    def met(s):
        if kind(s) == "early":
            return "(reference)"
        r, a, w = ref(s), med(s, "outage"), worst(s, "dup")
        if r is None or a is None or w is None or med(r, "outage") is None:
            return "n/a (needs kill -9 in this column and in the L2 early claim's)"
        why = []
        if abs(a - med(r, "outage")) > EARLY_OUTAGE_WITHIN_S:
            why.append(f"outage {a - med(r, 'outage'):+.2f} s off")
        if w[0] > EARLY_DUP_MAX_S:
            why.append(f"two holders {w[0] * 1000:.0f} ms ({w[1]})")
        return "**yes**" if not why else "**no**: " + ", ".join(why)

    line("target met", met)
    md.append("")


def fences(md, out, meta):
    """The table of scripts/bench/fence.sh, as it printed it (OUT/fence.md)."""
    md.append("## Fences\n")
    md.append("What each write fence vipctl has used does to Sentinel and to a client, measured by "
              "`scripts/bench/fence.sh` on a healthy master (a fresh L2 lab per run, `down-after-milliseconds 1000`, "
              "quorum 2, no failover asked for): the fence is held for the time given under the table while "
              "`lab_writer` sends `INCR` every 10 ms straight to the master, and the sentinels' logs are read for "
              "whether they called the master subjectively down (`+sdown`) or even failed it over (`+switch-master`). "
              "*pause* is `CLIENT PAUSE <hold> WRITE` (vipctl 0.1.0's fence, which also holds the `PUBLISH` of "
              "Sentinel's hello messages); *refuse* is `CONFIG SET min-replicas-to-write` above the replica count "
              "(the fence now, `src/fence.rs`), set back to 0 after the hold. *writes ok*: the client's successful "
              "writes; *refused*: replies `NOREPLICAS`; *stalled*: attempts that timed out (200 ms bound); "
              "*longest gap*: the longest time without a successful write.\n")
    table = read(os.path.join(out, "fence.md"))
    if table:
        md.extend(table)
    else:
        why = meta.get("fence", "not run (no fence.md with the raw logs)")
        md.append(why[:1].upper() + why[1:] + ".")
    md.append("")


def plot(data, holds, rholds, present, png_path, hosts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The first kill -9 failover of each setup that was a single Sentinel failover (a double
    # failover tells another story; the raw rows show it), else the first one.
    def pick(s):
        kills = [x for x in data[s] if x["scen"] == "kill"]
        return next((x for x in kills if x["switches"] == 1), kills[0] if kills else None)

    panels = [(s, name, pick(s)) for s, name in present]
    panels = [p for p in panels if p[2] is not None]
    if not panels:
        return
    x_lo, x_hi = -0.5, 8.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 2.6 * len(panels) + 1), sharex=True)
    if len(panels) == 1:
        axes = [axes]
    colours = {"+odown": "tab:orange", "+promoted-slave": "tab:purple", "+switch-master": "tab:blue",
               "role:master": "tab:green"}
    for ax, (s, name, x) in zip(axes, panels):
        f = x["fault"]
        rel = lambda us: (us - f) / 1e6
        ax.axvline(0, color="black", lw=1.5)
        ax.text(0.02, 4.25, "fault (kill -9)", fontsize=8)
        for h_i, h in enumerate(hosts):
            y = len(hosts) - h_i
            for a, b in holds[s][h]:
                a2, b2 = max(rel(a), x_lo), min(rel(b), x_hi)
                if a2 < b2:
                    ax.plot([a2, b2], [y, y], lw=9, color="tab:green" if h == x["new"] else "tab:red",
                            solid_capstyle="butt", alpha=0.8)
                if x_lo < rel(a) < x_hi:
                    ax.text(rel(a) + 0.03, y + 0.2, f"bound {rel(a):.2f}", fontsize=7)
                if x_lo < rel(b) < x_hi:
                    ax.text(rel(b) + 0.03, y - 0.35, f"removed {rel(b):.2f}", fontsize=7)
            # Routed setups: the router's route to this host, a thin blue bar above the VIP's.
            for a, b in rholds[s].get(h, []):
                a2, b2 = max(rel(a), x_lo), min(rel(b), x_hi)
                if a2 < b2:
                    ax.plot([a2, b2], [y + 0.5, y + 0.5], lw=3, color="tab:blue", solid_capstyle="butt")
                if x_lo < rel(a) < x_hi:
                    ax.text(rel(a) - 0.03, y + 0.56, f"routed {rel(a):.2f}", fontsize=7, color="tab:blue",
                            ha="right")
        marks = [("role:master", x["role"]), ("+odown", x["odown"]), ("+promoted-slave", x["prom"]),
                 ("+switch-master", x["switch"])]
        for k, (label, us) in enumerate(marks):
            if us is None or not x_lo < rel(us) < x_hi:
                continue
            ax.axvline(rel(us), color=colours[label], lw=1, ls="--")
            ax.text(rel(us) + 0.03, 4.25 - 0.0 * k, "", fontsize=7)
            ax.annotate(f"{label} {rel(us):.2f}", (rel(us), 4.6 - 0.3 * (k % 2)), fontsize=7,
                        color=colours[label], xytext=(3, 0), textcoords="offset points")
        ok = [rel(t) for t, good, _ in x["writes"] if good and x_lo < rel(t) < x_hi]
        bad = [rel(t) for t, good, _ in x["writes"] if not good and x_lo < rel(t) < x_hi]
        ax.plot(ok, [0.15] * len(ok), "|", color="tab:green", ms=8, label="write ok")
        ax.plot(bad, [-0.15] * len(bad), "|", color="tab:red", ms=8, label="write failed")
        # y=0 is the client; the first host is on top (y=3 for h1, 2 for h2, 1 for h3).
        ax.set_yticks(list(range(len(hosts) + 1)))
        ax.set_yticklabels(["client INCR"] + [f"VIP on {h}" for h in reversed(hosts)])
        ax.set_ylim(-0.6, 5.0)
        ax.set_xlim(x_lo, x_hi)
        ax.grid(axis="x", alpha=0.3)
        out_txt = "n/a" if x["outage"] is None else f"{x['outage']:.2f} s"
        route_txt = "; thin blue bar = the router's route to that host" if rholds[s] else ""
        ax.set_title(f"{name}: {x['old']} → {x['new']} (kill -9 #{x['i']}); client outage {out_txt}; "
                     f"green bar = VIP on the new master, red = elsewhere{route_txt}", fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds after the fault")
    routes = ", the router's route" if any(rholds[s] for s, _, _ in panels) else ""
    fig.suptitle(f"One kill -9 failover per setup: VIP holders (ip monitor){routes}, sentinel events, client writes",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(png_path, dpi=90)


if __name__ == "__main__":
    main()
