#!/usr/bin/env python3
"""Driver and checker of scripts/bench/soak.sh, the seeded fault soak.

usage:
  soak.py plan ROUNDS SEED [KIND...]
      print the seeded sequence of faults (what soak.sh shows at the start)
  soak.py run MOVER ROUNDS SEED OUTDIR LAB [KIND...]
      build the lab LAB (scripts/lab.sh up), start MOVER (vipctl | classic),
      one writer through the VIP, play the sequence, record raw logs and one
      JSON line per round into OUTDIR/MOVER/, tear the lab down on every exit
      path.  Environment: VIPCTL, LAB_WRITER (absolute paths), SOAK_OWNER_PID
      (the lab's owner for "lab.sh sweep", default our parent).
      Exit 0: the run completed; 1: the lab could not be built, the mover
      could not be started, or the run broke off (printed why).
  soak.py report OUTDIR REPORT MOVER...
      compute the figures from the raw logs of OUTDIR/MOVER/, print the
      Markdown report and write it to REPORT.  With SOAK_STRICT=1 exit 1
      when a round of the vipctl mover did not converge, or it lost
      acknowledged writes outside partial rounds, or more than 10 in one
      partial round (printed why); 0 otherwise.

Figures come from logs only, never from this driver's polling: the writer's
lines (unix ms per INCR attempt), "ip -ts -o monitor address" per host
namespace, and the sentinels' logs.  A round's window runs from its fault to
the next round's fault (the last one to the end of the run); its figures are
those of its window.  Stdlib only.
"""

import calendar
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LABSH = os.path.join(REPO, "scripts", "lab.sh")
CLASSIC_HOOK = os.path.join(HERE, "classic-hook.sh")
CLASSIC_HOOK_TIMED = os.path.join(HERE, "classic-hook-timed.sh")

KINDS = ["kill", "stop", "cut", "partial", "replica-cut", "sentinel", "rolling", "failover",
         "switchover", "daemon-restart", "daemon-kill", "vip-del"]
MOVERS = ["vipctl", "classic"]
# What each mover manages: the classic hook is IPv4 only (scripts/bench/classic-hook.sh).
FAMILIES = {"vipctl": ("v4", "v6"), "classic": ("v4",)}
WRITER_KEY = "lab_writer"  # lab_writer's default key

# Sentinel refuses another failover of a master for 2 x failover-timeout
# (5000 ms in the lab) after the last start or vote, plus up to 1 s of random
# delay: 11 s after the latest +try-failover/+vote-for-leader (run-setup.sh).
NEXT_FAILOVER_US = 11_000_000
# Bounds (seconds).
T_SETUP = 20          # the mover's first claim, the writer's first write
T_FAILOVER = 30       # a new master with the VIP after kill, stop, failover
T_CUT = 20            # ... after a cut or a partial cut (then healed anyway)
PARTIAL_HOLD = 2.0    # a partial cut is healed this long after a new master holds the VIP
T_HOLD = 3.0          # replica-cut, sentinel: the fault lasts this long (> down-after 1 s)
T_CONVERGE = 30       # convergence after the heal
T_SETTLE = 30         # the lab settled before the next round (beyond the guard)
T_SWITCHOVER = 45     # vipctl switchover
T_SENTINEL_BACK = 10  # rolling: each sentinel back before the next
T_DAEMON = 20         # a (re)started vipctl watch opens its socket
WRITER_MS = 600_000   # lab_writer's longest run; a new one follows on the same key
POLL = 0.1


def now_us():
    return time.time_ns() // 1000


def fmt_s(us):
    return f"{us / 1e6:.3f} s"


# --- the plan -----------------------------------------------------------------


def make_plan(rounds, seed, kinds):
    """The seeded sequence: per round a kind and one number in [0, 1) that picks
    among what exists at run time (which replica, which sentinel asks). Kinds are
    dealt like cards: every kind once, in a seeded order, before any repeats, so
    that a run of len(kinds) rounds tries each fault."""
    rng = random.Random(seed)
    deck = []
    plan = []
    for i in range(1, rounds + 1):
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        plan.append({"round": i, "kind": deck.pop(), "pick": rng.random()})
    return plan


def parse_kinds(args):
    kinds = args or list(KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise SystemExit(f"soak.py: unknown kind(s) {' '.join(bad)} (known: {' '.join(KINDS)})")
    # Keep the given order (it is part of what the seed replays), without repeats.
    return list(dict.fromkeys(kinds))


def plan_text(plan):
    return ", ".join(f"{p['round']} {p['kind']}" for p in plan)


# --- the driver ---------------------------------------------------------------


class Broken(Exception):
    """The lab or the mover could not be set up (exit 1)."""


class Interrupted(BaseException):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signum)


class Driver:
    def __init__(self, mover, seed, plan, outdir, lab, vipctl, writer):
        self.mover = mover
        self.seed = seed
        self.plan = plan
        self.out = os.path.join(outdir, mover)
        self.lab = lab
        self.vipctl = vipctl
        self.writer_bin = writer
        self.families = FAMILIES[mover]
        self.daemons = {}
        self.pids_lock = threading.Lock()
        self.log = None
        self.pool = ThreadPoolExecutor(max_workers=9)
        self.writer_stop = threading.Event()
        self.writer_thread = None
        self.writer_proc = None
        self.writer_note = ""
        self.sent_offsets = {}
        self.sent_events = []  # (us, host, line) of the sentinels' logs, in order per host
        self.lab_up = False

    # - small helpers -

    def say(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {self.mover}: {msg}"
        print(line, flush=True)
        if self.log:
            self.log.write(f"{now_us()} {msg}\n")
            self.log.flush()

    def run(self, args, timeout=10, env=None):
        """Run a command bounded in time; (rc, stdout+stderr) and rc None on timeout."""
        try:
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=timeout, env=env, text=True, errors="replace")
            return p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            return None, out if isinstance(out, str) else out.decode(errors="replace")

    def labsh(self, *args, timeout=30):
        return self.run([LABSH, *args], timeout=timeout)

    def record_pid(self, pid):
        with self.pids_lock:
            with open(os.path.join(self.lab, "extra.pids"), "a") as f:
                f.write(f"{pid}\n")

    def spawn(self, args, log, env=None):
        """A background process for the lab's life, its PID in LAB/extra.pids at once."""
        f = open(log, "ab")
        try:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        finally:
            f.close()
        self.record_pid(p.pid)
        return p

    def ns(self, h):
        return self.nodes[h]["ns"]

    def ip(self, h):
        return self.nodes[h]["ipv4"]

    def host_of(self, ip):
        for h in self.hosts:
            if self.nodes[h]["ipv4"] == ip:
                return h
        return None

    def rcli(self, h, port, *args, timeout=2):
        rc, out = self.run(["ip", "netns", "exec", self.ns(h), "redis-cli", "-h", self.ip(h), "-p", str(port),
                            *args], timeout=timeout)
        if rc != 0:
            return None
        return out.replace("\r", "")

    def par(self, fn, items):
        return list(self.pool.map(fn, items))

    # - the lab's state, asked -

    def named(self, h):
        """The master h's sentinel names (a host), or None."""
        out = self.rcli(h, self.sport, "SENTINEL", "get-master-addr-by-name", self.master_name)
        if not out:
            return None
        return self.host_of(out.split("\n")[0].strip())

    def named_all(self, hosts=None):
        hosts = hosts or self.hosts
        return dict(zip(hosts, self.par(self.named, hosts)))

    def role(self, h):
        out = self.rcli(h, self.rport, "ROLE")
        return out.split("\n")[0].strip() if out else None

    def holders(self, fam):
        addr = self.vips[fam]
        flag = "-4" if fam == "v4" else "-6"
        out = []
        for h in self.hosts:
            rc, text = self.run(["ip", "-n", self.ns(h), "-o", flag, "addr", "show"], timeout=3)
            if rc == 0 and f" {addr}/" in text:
                out.append(h)
        return out

    def sentinel_master(self, h):
        out = self.rcli(h, self.sport, "SENTINEL", "master", self.master_name)
        if not out:
            return {}
        w = out.split("\n")
        return {w[i]: w[i + 1] for i in range(0, len(w) - 1, 2)}

    def sentinel_replicas(self, h):
        """h's sentinel's view of the replicas: one dict per replica, or None."""
        out = self.rcli(h, self.sport, "SENTINEL", "replicas", self.master_name)
        if out is None:
            return None
        w = out.split("\n")
        reps, cur = [], None
        for i in range(0, len(w) - 1, 2):
            if w[i] == "name":
                cur = {}
                reps.append(cur)
            if cur is not None:
                cur[w[i]] = w[i + 1]
        return reps

    def replication(self, h):
        out = self.rcli(h, self.rport, "INFO", "replication") or ""
        return dict(l.split(":", 1) for l in out.split("\n") if ":" in l)

    def majority(self, named):
        counts = {}
        for m in named.values():
            if m:
                counts[m] = counts.get(m, 0) + 1
        best = [m for m, c in counts.items() if c * 2 > len(self.hosts)]
        return best[0] if best else None

    def current_master(self, bound=10):
        """The master all sentinels name, else one a majority names (bounded wait for one)."""
        deadline = time.monotonic() + bound
        for _ in range(int(bound / 0.2) + 1):
            named = self.named_all()
            vals = set(named.values())
            if len(vals) == 1 and None not in vals:
                return vals.pop()
            m = self.majority(named)
            if m:
                return m
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return None

    # - logs, read as they grow -

    def sentinel_lines(self):
        """New lines of the sentinels' logs since the last call, as (us, host, text)."""
        new = []
        for h in self.hosts:
            path = os.path.join(self.lab, h, "sentinel.log")
            off = self.sent_offsets.get(h, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            self.sent_offsets[h] = off + end
            for line in data[:end].decode(errors="replace").splitlines():
                us = sentinel_us(line)
                if us is not None:
                    new.append((us, h, line))
        self.sent_events.extend(new)
        return new

    def guard_until(self):
        self.sentinel_lines()
        latest = max((us for us, _, l in self.sent_events if re.search(r" \+(try-failover|vote-for-leader) ", l)),
                     default=0)
        return latest + NEXT_FAILOVER_US

    def last_ok_since(self, since_ms):
        """The first successful write at or after since_ms in the writer's log's tail, or None."""
        path = os.path.join(self.out, "writer.log")
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 32768))
                data = f.read().decode(errors="replace")
        except OSError:
            return None
        for line in data.splitlines():
            w = line.split(" ")
            if len(w) >= 3 and w[1] == "ok" and w[0].isdigit() and int(w[0]) >= since_ms:
                return int(w[0])
        return None

    # - the writer: one through the VIP for the whole run -

    def writer_loop(self):
        args = ["ip", "netns", "exec", self.ns("cl"), self.writer_bin, self.vips["v4"], str(self.rport),
                "--interval-ms", "10", "--duration-ms", str(WRITER_MS), "--key", WRITER_KEY]
        quick = 0
        # Bounded: a run of 10 h needs 60 writers.
        for _ in range(1000):
            if self.writer_stop.is_set():
                return
            t0 = time.monotonic()
            with open(os.path.join(self.out, "writer.log"), "ab") as out, \
                    open(os.path.join(self.out, "writer.err"), "ab") as err:
                p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            self.record_pid(p.pid)
            self.writer_proc = p
            while p.poll() is None:
                if self.writer_stop.wait(0.2):
                    p.terminate()
                    try:
                        p.wait(5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(5)
                    return
            if time.monotonic() - t0 < 1:
                quick += 1
                if quick >= 3:
                    self.writer_note = f"the writer exits at once (status {p.returncode}); see writer.err"
                    return
        self.writer_note = "the writer was restarted 1000 times"

    def start_writer(self):
        self.writer_thread = threading.Thread(target=self.writer_loop, daemon=True)
        self.writer_thread.start()

    def stop_writer(self):
        self.writer_stop.set()
        if self.writer_thread:
            self.writer_thread.join(10)

    # - vipctl watch -

    def start_daemon(self, h):
        env = dict(os.environ, VIPCTL_SOCKET=os.path.join(self.lab, h, "vipctl.sock"),
                   VIPCTL_LOG_FILE=os.path.join(self.out, h, "watch.log"))
        # ip netns exec execs vipctl: the PID is vipctl's own.
        self.daemons[h] = self.spawn(["ip", "netns", "exec", self.ns(h), self.vipctl, "--config", self.conf, "watch"],
                                     os.path.join(self.out, h, "watch.out"), env=env)

    def daemon_ready(self, h, bound=T_DAEMON):
        path = os.path.join(self.lab, h, "vipctl.sock")
        deadline = time.monotonic() + bound
        for _ in range(int(bound / POLL) + 1):
            if self.daemons[h].poll() is not None:
                return False
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect(path)
                return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
        return False

    def stop_daemon(self, h, sig):
        p = self.daemons[h]
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            return "did not stop within 5 s of the signal; SIGKILL"
        return ""

    # - processes of the lab -

    def instance_pid(self, h, kind):
        try:
            pid = int(open(os.path.join(self.lab, h, f"{kind}.pid")).read().strip())
            comm = open(f"/proc/{pid}/comm").read().strip()
            stat = open(f"/proc/{pid}/stat").read()
        except (OSError, ValueError):
            return None, None
        state = stat.rsplit(")", 1)[1].split()[0]
        want = "redis-server" if kind == "redis" else "redis-sentinel"
        if comm != want or state in ("Z", "X"):
            return None, None
        return pid, state

    def wait_gone(self, pid, bound=5):
        for _ in range(int(bound / POLL) + 1):
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            if state in ("Z", "X"):
                return True
            time.sleep(POLL)
        return False

    def start_redis(self, h):
        # "An empty data set": no RDB from an earlier full sync either.
        for name in os.listdir(os.path.join(self.lab, h)):
            if name == "dump.rdb" or (name.startswith("temp-") and name.endswith(".rdb")):
                os.unlink(os.path.join(self.lab, h, name))
        return self.labsh("start-redis", self.lab, h)

    # - set-up -

    def load_facts(self):
        j = json.load(open(os.path.join(self.lab, "lab.json")))
        shutil.copy(os.path.join(self.lab, "lab.json"), os.path.join(self.out, "lab.json"))
        self.hosts = j["redis_hosts"]
        self.nodes = j["nodes"]
        self.switch = j["switch"]["ns"]
        self.vips = {"v4": j["vips"]["v4"].split("/")[0], "v6": j["vips"]["v6"].split("/")[0]}
        self.cidrs = {"v4": j["vips"]["v4"], "v6": j["vips"]["v6"]}
        self.rport = j["ports"]["redis"]
        self.sport = j["ports"]["sentinel"]
        self.master_name = j["master_name"]

    def setup(self):
        os.makedirs(self.out, exist_ok=True)
        self.log = open(os.path.join(self.out, "driver.log"), "a")
        env = dict(os.environ, LAB_OWNER_PID=os.environ.get("SOAK_OWNER_PID", str(os.getppid())))
        env.pop("LAB_HOOK", None)
        if self.mover == "classic":
            env["LAB_HOOK"] = CLASSIC_HOOK_TIMED
        self.say(f"building the lab {self.lab}")
        self.lab_up = True  # from here on, teardown (lab.sh down is idempotent)
        rc, out = self.run([LABSH, "up", self.lab], timeout=120, env=env)
        if rc != 0:
            raise Broken(f"lab.sh up {self.lab} failed: {out.strip()[-2000:]}")
        self.load_facts()
        for h in self.hosts:
            os.makedirs(os.path.join(self.out, h), exist_ok=True)
            self.spawn(["ip", "-ts", "-o", "-n", self.ns(h), "monitor", "address"],
                       os.path.join(self.out, h, "ipmon.log"), env=dict(os.environ, TZ="UTC"))
        # "ip monitor" prints nothing once subscribed; give it a moment.
        time.sleep(0.3)
        first = "h1"
        if self.mover == "vipctl":
            # As bench's "early" setup: [watch] early_claim = true on every host.
            src = open(os.path.join(self.lab, "vipctl.toml")).read()
            conf, n = re.subn(r"^\[watch\]\n", "[watch]\nearly_claim = true\n", src, count=1, flags=re.M)
            if n != 1:
                raise Broken("the lab's vipctl.toml has no [watch] table to add early_claim to")
            self.conf = os.path.join(self.lab, "vipctl-early.toml")
            open(self.conf, "w").write(conf)
            for h in self.hosts:
                self.start_daemon(h)
            for h in self.hosts:
                if not self.daemon_ready(h):
                    tail = open(os.path.join(self.out, h, "watch.out"), errors="replace").read()[-1500:]
                    raise Broken(f"vipctl watch on {h} did not open its socket within {T_DAEMON} s: {tail}")
        else:
            # "The VIP must be added by hand the first time": the hook's own claim, on h1.
            rc, out = self.run(["ip", "netns", "exec", self.ns(first), CLASSIC_HOOK, self.master_name, "leader",
                                "start", "0.0.0.0", "0", self.ip(first), str(self.rport)], timeout=20)
            if rc != 0:
                raise Broken(f"the classic hook's first claim on {first} failed: {out}")
        deadline = time.monotonic() + T_SETUP
        while True:
            where = {f: self.holders(f) for f in self.families}
            if all(v == [first] for v in where.values()):
                break
            if time.monotonic() > deadline:
                raise Broken(f"the VIP is not on {first} alone {T_SETUP} s after the start: {where}")
            time.sleep(POLL)
        self.start_writer()
        t0 = now_us() // 1000
        deadline = time.monotonic() + T_SETUP
        while self.last_ok_since(t0) is None:
            if time.monotonic() > deadline or self.writer_note:
                raise Broken(f"the writer did not write through the VIP within {T_SETUP} s {self.writer_note}")
            time.sleep(POLL)
        self.say(f"{self.mover} holds the VIP on {first}; the writer writes through it")

    # - settling, convergence, repair -

    def unsettled(self):
        """What keeps the next round from starting on a clean lab (Sentinel's and
        Redis's side; the VIP is the mover's business and the round's figure)."""
        named = self.named_all()
        vals = set(named.values())
        if len(vals) != 1 or None in vals:
            return [f"sentinels name {' '.join(str(named[h]) for h in self.hosts)}"]
        m = vals.pop()
        why = []
        infos = self.par(self.sentinel_master, self.hosts)
        for h, info in zip(self.hosts, infos):
            if info.get("flags") != "master":
                why.append(f"sentinel {h} flags '{info.get('flags')}'")
            if info.get("num-other-sentinels") != "2":
                why.append(f"sentinel {h} knows {info.get('num-other-sentinels')} other sentinels")
        reps = [h for h in self.hosts if h != m]
        for h, r in zip(reps, self.par(self.replication, reps)):
            if r.get("master_host") != self.ip(m) or r.get("master_link_status") != "up":
                why.append(f"redis {h} not linked to {m}")
        # Every sentinel has seen every replica as one (INFO every 10 s): a sentinel that still
        # believes an old master reports role:master converts it once more later, maybe just as
        # the next failover promotes it, which aborts that failover.
        want = {self.ip(h) for h in reps}
        for h, view in zip(self.hosts, self.par(self.sentinel_replicas, self.hosts)):
            seen = {r.get("ip"): r for r in view or []}
            for ip in sorted(want):
                r = seen.get(ip)
                if (r is None or r.get("flags") != "slave" or r.get("role-reported") != "slave"
                        or r.get("master-host") != self.ip(m) or r.get("master-link-status") != "ok"):
                    why.append(f"sentinel {h} does not see {self.host_of(ip)} as a linked replica of {m} yet")
        r = self.replication(m)
        if r.get("role") != "master":
            why.append(f"redis {m} reports role '{r.get('role')}'")
        return why

    def wait_ready(self, guard=True):
        """Sentinel's guard passed and the lab settled (bounded); returns what was left unsettled."""
        t_deadline = time.monotonic() + T_SETTLE
        why = []
        for _ in range(int((T_SETTLE + 15) / 0.2) + 1):
            g = self.guard_until() if guard else 0
            why = self.unsettled()
            if now_us() >= g and not why:
                return []
            if time.monotonic() > t_deadline and now_us() >= g:
                break
            time.sleep(0.2)
        return why

    def converge_state(self):
        named = self.named_all()
        roles = dict(zip(self.hosts, self.par(self.role, self.hosts)))
        where = dict(zip(self.families, self.par(self.holders, self.families)))
        why = []
        vals = set(named.values())
        m = None
        if len(vals) == 1 and None not in vals:
            m = vals.pop()
        else:
            why.append("sentinels disagree (" + ", ".join(f"{h} names {named[h]}" for h in self.hosts) + ")")
        masters = [h for h in self.hosts if roles[h] == "master"]
        silent = [h for h in self.hosts if roles[h] is None]
        if silent:
            why.append(f"no ROLE answer from redis on {' '.join(silent)}")
        if len(masters) != 1:
            why.append(f"role:master on {' '.join(masters) or 'no host'}")
        elif m and masters[0] != m:
            why.append(f"role:master on {masters[0]}, the sentinels name {m}")
        for f in self.families:
            if m and where[f] != [m]:
                why.append(f"{'IPv4' if f == 'v4' else 'IPv6'} VIP on {' '.join(where[f]) or 'no host'}, not {m} alone")
        return m, why

    def wait_converged(self, bound=T_CONVERGE):
        """(converged, moment us, master, reasons): bounded; the last reasons when it did not."""
        deadline = time.monotonic() + bound
        why = ["not checked"]
        m = None
        for _ in range(int(bound / 0.2) + 2):
            m, why = self.converge_state()
            if not why:
                t_ok = now_us()
                # A write through the VIP after the rest converged.
                for _ in range(20):
                    w = self.last_ok_since(t_ok // 1000)
                    if w is not None:
                        return True, w * 1000, m, []
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                why = [f"no successful write through the VIP since {time.strftime('%H:%M:%S', time.gmtime(t_ok / 1e6))}"]
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return False, now_us(), m, why

    def repair(self):
        """Bring back what the driver's faults may have left broken; never the mover's VIPs."""
        done = []
        for h in self.hosts:
            rc, out = self.run(["ip", "-n", self.switch, "-o", "link", "show", h], timeout=3)
            flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if rc == 0 and "<" in out else ["UP"]
            if "UP" not in flags:
                self.run(["ip", "-n", self.switch, "link", "set", h, "up"], timeout=3)
                done.append(f"switch port of {h} up")
            rc, out = self.run(["ip", "-n", self.ns(h), "neigh", "show", "nud", "permanent"], timeout=3)
            if rc == 0 and "02:00:00:00:de:ad" in out:
                self.labsh("isolate", self.lab, h, "off")
                done.append(f"isolate {h} off")
        for h in self.hosts:
            pid, state = self.instance_pid(h, "redis")
            if pid is None:
                rc, out = self.start_redis(h)
                done.append(f"redis on {h} started" + ("" if rc == 0 else f" (failed: {out.strip()})"))
            elif state == "T":
                os.kill(pid, signal.SIGCONT)
                done.append(f"redis on {h} continued")
            pid, state = self.instance_pid(h, "sentinel")
            if pid is None:
                rc, out = self.labsh("start-sentinel", self.lab, h)
                done.append(f"sentinel on {h} started" + ("" if rc == 0 else f" (failed: {out.strip()})"))
            elif state == "T":
                os.kill(pid, signal.SIGCONT)
                done.append(f"sentinel on {h} continued")
            if self.mover == "vipctl" and self.daemons[h].poll() is not None:
                self.start_daemon(h)
                ok = self.daemon_ready(h)
                done.append(f"vipctl watch on {h} started" + ("" if ok else " (no socket)"))
        return done

    # - one round -

    def wait_new_master(self, old, bound, askers=None):
        """(host, us) once the sentinels in askers (a majority, or all of them when
        they are two) name a host other than old and it holds the IPv4 VIP; (named
        host or None, None) at the bound."""
        askers = askers or self.hosts
        need = len(askers) // 2 + 1
        deadline = time.monotonic() + bound
        cand = None
        for _ in range(int(bound / POLL) + 1):
            named = self.named_all(askers)
            counts = {}
            for m in named.values():
                if m and m != old:
                    counts[m] = counts.get(m, 0) + 1
            cand = next((m for m, c in counts.items() if c >= need), None)
            if cand and cand in self.holders("v4"):
                return cand, now_us()
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
        return cand, None

    def play(self, p, pre):
        kind, pick = p["kind"], p["pick"]
        rec = {"round": p["round"], "kind": kind, "target": None, "detail": "", "na": False,
               "unsettled_before": pre, "notes": []}
        master = self.current_master()
        rec["t_fault"] = now_us()
        if master is None:
            rec.update(converged=False, reasons=["no master to aim at (no majority of the sentinels names one)"],
                       t_heal=rec["t_fault"], t_end=now_us())
            return rec
        rec["target"] = master
        others = [h for h in self.hosts if h != master]
        other = others[int(pick * len(others))]
        new = None
        if kind in ("daemon-restart", "daemon-kill") and self.mover == "classic":
            rec.update(na=True, detail="n/a: the classic hook has no daemon", t_heal=rec["t_fault"],
                       converged=None, reasons=[], t_end=now_us())
            return rec
        if kind in ("kill", "stop"):
            pid, _ = self.instance_pid(master, "redis")
            if pid is None:
                rec["notes"].append(f"redis on {master} was not running")
            else:
                rec["t_fault"] = now_us()
                os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
            new, t_new = self.wait_new_master(master, T_FAILOVER)
            if kind == "kill":
                rc, out = self.start_redis(master)
                if rc != 0:
                    rec["notes"].append(f"start-redis {master} failed: {out.strip()}")
                rec["detail"] = "restarted empty"
            elif pid is not None:
                os.kill(pid, signal.SIGCONT)
        elif kind == "cut":
            rec["t_fault"] = now_us()
            self.run(["ip", "-n", self.switch, "link", "set", master, "down"], timeout=5)
            new, t_new = self.wait_new_master(master, T_CUT, askers=others)
            self.run(["ip", "-n", self.switch, "link", "set", master, "up"], timeout=5)
        elif kind == "partial":
            rec["t_fault"] = now_us()
            rc, out = self.labsh("isolate", self.lab, master, "on")
            if rc != 0:
                rec["notes"].append(f"isolate failed: {out.strip()}")
            new, t_new = self.wait_new_master(master, T_CUT, askers=others)
            if t_new is not None:
                time.sleep(max(0.0, t_new / 1e6 + PARTIAL_HOLD - time.time()))
                rec["detail"] = f"healed {PARTIAL_HOLD:g} s after {new} held the VIP"
            else:
                rec["detail"] = f"healed at the {T_CUT} s bound"
            self.labsh("isolate", self.lab, master, "off")
        elif kind == "replica-cut":
            rec["target"] = other
            rec["detail"] = f"master {master}"
            rec["t_fault"] = now_us()
            self.run(["ip", "-n", self.switch, "link", "set", other, "down"], timeout=5)
            time.sleep(T_HOLD)
            self.run(["ip", "-n", self.switch, "link", "set", other, "up"], timeout=5)
        elif kind == "sentinel":
            pid, _ = self.instance_pid(master, "sentinel")
            rec["detail"] = "its sentinel, kill -9"
            rec["t_fault"] = now_us()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                self.wait_gone(pid)
            time.sleep(T_HOLD)
            rc, out = self.labsh("start-sentinel", self.lab, master)
            if rc != 0:
                rec["notes"].append(f"start-sentinel {master} failed: {out.strip()}")
        elif kind == "rolling":
            rec["detail"] = "sentinels " + " ".join(self.hosts)
            rec["t_fault"] = now_us()
            for h in self.hosts:
                pid, _ = self.instance_pid(h, "sentinel")
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
                    if not self.wait_gone(pid):
                        os.kill(pid, signal.SIGKILL)
                        self.wait_gone(pid)
                        rec["notes"].append(f"sentinel {h} ignored SIGTERM for 5 s")
                rc, out = self.labsh("start-sentinel", self.lab, h)
                if rc != 0:
                    rec["notes"].append(f"start-sentinel {h} failed: {out.strip()}")
                if not self.sentinel_back(h):
                    rec["notes"].append(f"sentinel {h} not back within {T_SENTINEL_BACK} s")
        elif kind == "failover" or (kind == "switchover" and self.mover == "classic"):
            if kind == "switchover":
                rec["detail"] = f"SENTINEL FAILOVER via {other} (classic has no switchover)"
            else:
                rec["detail"] = f"via {other}"
            rec["t_fault"] = now_us()
            out = self.rcli(other, self.sport, "SENTINEL", "FAILOVER", self.master_name)
            if (out or "").strip() != "OK":
                rec["notes"].append(f"SENTINEL FAILOVER answered {(out or 'nothing').strip()}")
            new, t_new = self.wait_new_master(master, T_FAILOVER)
        elif kind == "switchover":
            rec["detail"] = f"vipctl switchover on {other}"
            rec["t_fault"] = now_us()
            env = dict(os.environ, VIPCTL_LOG_FILE=os.path.join(self.out, f"switchover-{p['round']}.log"))
            rc, out = self.run(["ip", "netns", "exec", self.ns(other), self.vipctl, "--config", self.conf,
                                "switchover"], timeout=T_SWITCHOVER, env=env)
            open(os.path.join(self.out, f"switchover-{p['round']}.out"), "w").write(out)
            if rc != 0:
                rec["notes"].append(f"vipctl switchover exited {rc if rc is not None else 'late (killed)'}")
            new, t_new = self.wait_new_master(master, 10)
        elif kind in ("daemon-restart", "daemon-kill"):
            sig = signal.SIGTERM if kind == "daemon-restart" else signal.SIGKILL
            rec["detail"] = f"vipctl watch {'SIGTERM' if sig == signal.SIGTERM else 'SIGKILL'}, started again"
            rec["t_fault"] = now_us()
            note = self.stop_daemon(master, sig)
            if note:
                rec["notes"].append(note)
            self.start_daemon(master)
            if not self.daemon_ready(master):
                rec["notes"].append(f"the new vipctl watch on {master} did not open its socket")
        elif kind == "vip-del":
            rec["detail"] = "ip addr del"
            rec["t_fault"] = now_us()
            for f in ("v4", "v6"):
                self.run(["ip", "-n", self.ns(master), "addr", "del", self.cidrs[f], "dev", "eth0"], timeout=3)
        rec["new_master"] = new
        rec["t_heal"] = now_us()
        ok, t_conv, m, why = self.wait_converged()
        rec.update(converged=ok, t_conv=t_conv, reasons=why, master_after=m)
        rec["repairs"] = self.repair()
        rec["t_end"] = now_us()
        return rec

    def sentinel_back(self, h):
        """h's sentinel answers, knows the master and the two other sentinels, and
        the other sentinels do not count it down."""
        ip = self.ip(h)
        deadline = time.monotonic() + T_SENTINEL_BACK
        for _ in range(int(T_SENTINEL_BACK / 0.2) + 1):
            info = self.sentinel_master(h)
            if info.get("flags") == "master" and info.get("num-other-sentinels") == "2":
                fine = True
                for o in self.hosts:
                    if o == h:
                        continue
                    out = self.rcli(o, self.sport, "SENTINEL", "sentinels", self.master_name) or ""
                    w = out.split("\n")
                    # Flat key/value lists, one per sentinel: find ours and its flags.
                    for i in range(len(w) - 1):
                        if w[i] == "ip" and w[i + 1] == ip:
                            block = w[i:i + 40]
                            fl = block[block.index("flags") + 1] if "flags" in block else ""
                            if "down" in fl:
                                fine = False
                if fine:
                    return True
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return False

    # - the whole run -

    def save_logs(self):
        for h in getattr(self, "hosts", []):
            d = os.path.join(self.out, h)
            os.makedirs(d, exist_ok=True)
            for f in ("sentinel.log", "redis.log", "classic-hook.log", "vipctl.log", "sentinel.conf"):
                src = os.path.join(self.lab, h, f)
                if os.path.isfile(src):
                    shutil.copy(src, os.path.join(d, f))

    def main(self):
        status = {"mover": self.mover, "completed": False, "error": ""}
        rounds_path = os.path.join(self.out, "rounds.jsonl")
        try:
            os.makedirs(self.out, exist_ok=True)
            json.dump({"seed": self.seed, "plan": self.plan, "families": self.families},
                      open(os.path.join(self.out, "plan.json"), "w"))
            self.setup()
            status["t_start"] = now_us()
            open(rounds_path, "w").close()
            for p in self.plan:
                pre = self.wait_ready()
                if pre:
                    self.say(f"round {p['round']}: the lab did not settle: {'; '.join(pre)}")
                rec = self.play(p, pre)
                with open(rounds_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if rec["na"]:
                    res = "n/a"
                elif rec["converged"]:
                    res = f"converged {(rec['t_conv'] - rec['t_heal']) / 1e6:.1f} s after the heal on {rec['master_after']}"
                else:
                    res = "did NOT converge: " + "; ".join(rec["reasons"])
                extra = (" [" + "; ".join(rec["notes"] + rec.get("repairs", [])) + "]") if rec["notes"] or rec.get("repairs") else ""
                self.say(f"round {p['round']} {p['kind']} on {rec['target']}: {res} "
                         f"({(rec['t_end'] - rec['t_fault']) / 1e6:.1f} s){extra}")
            left = self.wait_ready(guard=False)
            if left:
                self.say(f"at the end the lab did not settle: {'; '.join(left)}")
            self.stop_writer()
            t_end = now_us()
            m = self.current_master()
            got = self.rcli(m, self.rport, "GET", WRITER_KEY) if m else None
            final = {"t_end": t_end, "master": m, "get": int(got.strip()) if got and got.strip().isdigit() else None,
                     "writer_note": self.writer_note}
            json.dump(final, open(os.path.join(self.out, "final.json"), "w"))
            self.say(f"done: final master {m}, GET {WRITER_KEY} = {final['get']}")
            status["completed"] = True
            return 0
        except Broken as e:
            status["error"] = str(e)
            self.say(f"error: {e}")
            return 1
        except Interrupted as e:
            status["error"] = f"interrupted by signal {e.args[0]}"
            self.say(status["error"])
            return 128 + e.args[0]
        except KeyboardInterrupt:
            status["error"] = "interrupted (SIGINT)"
            self.say(status["error"])
            return 130
        except Exception as e:  # the run broke off: say where, keep the logs
            import traceback
            status["error"] = f"the driver failed: {e!r}"
            self.say(status["error"])
            traceback.print_exc()
            return 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            try:
                self.stop_writer()
                if self.lab_up:
                    self.save_logs()
                    rc, out = self.run([LABSH, "down", self.lab], timeout=120)
                    if rc != 0:
                        print(f"soak.py: lab.sh down {self.lab} failed: {out}", file=sys.stderr)
            finally:
                os.makedirs(self.out, exist_ok=True)
                json.dump(status, open(os.path.join(self.out, "status.json"), "w"))
                self.pool.shutdown(wait=False)


# --- the checker --------------------------------------------------------------

SENT_TS = re.compile(r"^\d+:[A-Z] (\d+) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d)\.(\d{3}) ")
MONTHS = {m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                      "Dec"], 1)}
IPMON = re.compile(r"^\[(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d+)\] (Deleted )?\d+: \S+\s+(inet6?) ([^/\s]+)/")


def sentinel_us(line):
    """The UTC time (us) of a Redis/Sentinel log line (the lab runs them with TZ=UTC)."""
    m = SENT_TS.match(line)
    if not m:
        return None
    d, mo, y, hh, mm, ss, ms = m.groups()
    if mo not in MONTHS:
        return None
    return calendar.timegm((int(y), MONTHS[mo], int(d), int(hh), int(mm), int(ss))) * 1_000_000 + int(ms) * 1000


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def vip_intervals(path, addr):
    """Intervals (us) during which this host held addr, from its ip monitor log
    (run with TZ=UTC); an interval still open at the end runs to None."""
    held, since, out = False, None, []
    for line in read_lines(path):
        m = IPMON.match(line)
        if not m or m.group(10) != addr:
            continue
        y, mo, d, hh, mm, ss, frac = m.groups()[:7]
        us = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mm), int(ss))) * 1_000_000 + int(frac.ljust(6, "0")[:6])
        if m.group(8):
            if held:
                out.append((since, us))
            held = False
        elif not held:
            held, since = True, us
    if held:
        out.append((since, None))
    return out


def doubled(intervals_per_host, end):
    """Intervals during which two or more hosts held the address."""
    pts = []
    for ivs in intervals_per_host:
        for a, b in ivs:
            pts.append((a, 1))
            pts.append((b if b is not None else end, -1))
    pts.sort(key=lambda p: (p[0], p[1]))
    out, n, start = [], 0, None
    for t, d in pts:
        n += d
        if n >= 2 and start is None:
            start = t
        elif n < 2 and start is not None:
            if t > start:
                out.append((start, t))
            start = None
    return out


def union(ivs):
    out = []
    for a, b in sorted(ivs):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap(ivs, a, b):
    return sum(max(0, min(y, b) - max(x, a)) for x, y in ivs)


def writer_lines(path):
    out = []
    for line in read_lines(path):
        w = line.split(" ", 2)
        if len(w) < 2 or not w[0].isdigit():
            continue
        ok = w[1] == "ok"
        val = int(w[2]) if ok and len(w) == 3 and w[2].lstrip("-").isdigit() else None
        out.append((int(w[0]) * 1000, ok, val))
    return out


def load_mover(outdir, mover):
    d = os.path.join(outdir, mover)
    res = {"mover": mover, "dir": d}
    try:
        res["status"] = json.load(open(os.path.join(d, "status.json")))
    except (OSError, ValueError):
        res["status"] = {"completed": False, "error": "no status.json (the driver did not run)"}
    try:
        res["plan"] = json.load(open(os.path.join(d, "plan.json")))
    except (OSError, ValueError):
        res["plan"] = {"plan": [], "families": list(FAMILIES.get(mover, ("v4",)))}
    res["rounds"] = [json.loads(l) for l in read_lines(os.path.join(d, "rounds.jsonl")) if l.strip()]
    try:
        res["final"] = json.load(open(os.path.join(d, "final.json")))
    except (OSError, ValueError):
        res["final"] = {}
    try:
        lab = json.load(open(os.path.join(d, "lab.json")))
    except (OSError, ValueError):
        lab = None
    res["lab"] = lab
    if not lab or not res["rounds"]:
        return res
    hosts = lab["redis_hosts"]
    ipof = {lab["nodes"][h]["ipv4"]: h for h in hosts}
    writes = writer_lines(os.path.join(d, "writer.log"))
    rounds = res["rounds"]
    t_end = res["final"].get("t_end") or max([r["t_end"] for r in rounds] + [w[0] for w in writes] or [0])
    t_begin = res["status"].get("t_start") or (writes[0][0] if writes else rounds[0]["t_fault"])
    starts = [r["t_fault"] for r in rounds]
    wins = [(starts[i], starts[i + 1] if i + 1 < len(starts) else t_end) for i in range(len(starts))]

    def win_of(t):
        for i in range(len(wins) - 1, -1, -1):
            if t >= wins[i][0]:
                return i
        return None  # before the first fault

    # Lost acknowledged writes: a value at or below the highest so far (as tests' lost_writes).
    lost = [0] * len(rounds)
    lost_before = 0
    regressions = [[] for _ in rounds]
    m = None
    for t, ok, v in writes:
        if not ok or v is None:
            continue
        if m is not None and v <= m:
            i = win_of(t)
            if i is None:
                lost_before += m - v + 1
            else:
                lost[i] += m - v + 1
                regressions[i].append((t, m, v))
        m = v
    final_get = res["final"].get("get")
    missing = max(0, m - final_get) if m is not None and final_get is not None else 0
    # VIP on two hosts, either family the mover manages.
    fams = res["plan"].get("families", ["v4"])
    doubles = []
    for f in fams:
        addr = lab["vips"][f].split("/")[0]
        per_host = [vip_intervals(os.path.join(d, h, "ipmon.log"), addr) for h in hosts]
        doubles += doubled(per_host, t_end)
    doubles = union(doubles)
    # Gaps between successful writes.
    oks = [t for t, ok, _ in writes if ok]

    def longest_gap(a, b):
        # Clipped to [a, b): an outage that began in an earlier window counts there up to its end.
        seq = [a] + [t for t in oks if a <= t < b]
        nxt = min([t for t in oks if t >= b], default=b)
        seq.append(min(nxt, b))
        return max((y - x for x, y in zip(seq, seq[1:])), default=0)

    # Failovers: +switch-master lines per sentinel in the window; the most any one logged.
    sw = []
    events = []
    for h in hosts:
        for line in read_lines(os.path.join(d, h, "sentinel.log")):
            us = sentinel_us(line)
            if us is None:
                continue
            mt = re.search(r"\+switch-master \S+ (\S+) \d+ (\S+) \d+", line)
            if mt:
                sw.append((us, h, ipof.get(mt.group(1), mt.group(1)), ipof.get(mt.group(2), mt.group(2))))
            if re.search(r" [#*] [+-][a-z]", line):
                events.append((us, h, line.split(" ", 5)[-1] if line.count(" ") >= 5 else line))
    sw.sort()
    events.sort()
    per_round = []
    for i, r in enumerate(rounds):
        a, b = wins[i]
        in_win = [s for s in sw if a <= s[0] < b]
        per_sent = {}
        for s in in_win:
            per_sent[s[1]] = per_sent.get(s[1], 0) + 1
        fo = max(per_sent.values(), default=0)
        detail = None
        if fo > 1:
            # The sentinel that saw the most, its switches, and what all sentinels logged up to the second.
            who = max(per_sent, key=lambda h: per_sent[h])
            mine = [s for s in in_win if s[1] == who]
            ctx = [e for e in events if a <= e[0] <= mine[1][0]]
            detail = {"switches": [s for s in in_win], "context": ctx[-80:]}
        per_round.append({
            "lost": lost[i], "regressions": regressions[i],
            "double_us": overlap(doubles, a, b),
            "gap_us": longest_gap(a, b),
            "failovers": fo, "double_failover": detail,
            "window": (a, b),
        })
    res.update(per_round=per_round, lost_before=lost_before, missing=missing, highest=m, final_get=final_get,
               double_total=overlap(doubles, t_begin, t_end), gap_total=longest_gap(t_begin, t_end),
               outage_total=sum(y - x for x, y in zip(oks, oks[1:]) if y - x > 100_000),
               acked=len(oks), attempts=len(writes), t_begin=t_begin, t_end=t_end)
    return res


def conv_cell(r):
    if r.get("na"):
        return "n/a"
    if r.get("converged"):
        return f"yes ({(r['t_conv'] - r['t_heal']) / 1e6:.1f} s)"
    return "**no**: " + "; ".join(r.get("reasons") or ["?"])


def target_cell(r):
    t = r.get("target") or "-"
    return f"{t} ({r['detail']})" if r.get("detail") and not r.get("na") else t


def report(outdir, path, movers):
    data = [load_mover(outdir, m) for m in movers]
    L = []
    plan = next((x["plan"]["plan"] for x in data if x["plan"]["plan"]), [])
    seed = next((x["plan"]["seed"] for x in data if "seed" in x["plan"]), "?")
    L.append(f"# vipctl fault soak: seed {seed}, {len(plan)} round{'' if len(plan) == 1 else 's'}")
    L.append("")
    L.append(f"Sequence (`random.Random({seed})`): {plan_text(plan) if plan else '(none)'}.")
    L.append("")
    L.append("Movers: " + "; ".join({
        "vipctl": "`vipctl` = `vipctl watch` with `[watch] early_claim = true` on every host (IPv4 and IPv6 VIP)",
        "classic": "`classic` = the classic shell hook `scripts/bench/classic-hook.sh` as every sentinel's "
                   "client-reconfig-script (IPv4 VIP only: it knows nothing else)",
    }[m] for m in movers) + ".")
    L.append("")
    for x in data:
        st = x["status"]
        if not st.get("completed"):
            err = " ".join((st.get("error") or "?").split())
            L.append(f"**{x['mover']}: the run did not complete: {err}**")
            L.append("")
    # Totals side by side.
    L.append("## Totals")
    L.append("")
    L.append("| | " + " | ".join(x["mover"] for x in data) + " |")
    L.append("|---|" + "---|" * len(data))

    def row(name, fn):
        cells = []
        for x in data:
            try:
                cells.append(fn(x) if x.get("per_round") is not None else "-")
            except (KeyError, ValueError, TypeError):
                cells.append("-")
        L.append(f"| {name} | " + " | ".join(cells) + " |")

    def conv_total(x):
        rs = [r for r in x["rounds"] if not r.get("na")]
        na = len(x["rounds"]) - len(rs)
        return f"{sum(1 for r in rs if r.get('converged'))} of {len(rs)}" + (f" ({na} n/a)" if na else "")

    def lost_split(x, partial):
        return sum(p["lost"] for r, p in zip(x["rounds"], x["per_round"]) if (r["kind"] == "partial") == partial)

    row("rounds", lambda x: str(len(x["rounds"])))
    row("rounds converged", conv_total)
    row("acknowledged writes lost, all rounds", lambda x: str(sum(p["lost"] for p in x["per_round"]) + x["missing"] + x["lost_before"]))
    row("… in partial rounds", lambda x: str(lost_split(x, True)))
    row("… in the other rounds", lambda x: str(lost_split(x, False)))
    row("… missing from the final master's count", lambda x: f"{x['missing']} (highest acknowledged {x['highest']}, final GET {x['final_get']})")
    row("VIP on two hosts", lambda x: fmt_s(x["double_total"]))
    row("longest gap without a successful write", lambda x: fmt_s(x["gap_total"]))
    row("time in gaps > 0.1 s", lambda x: fmt_s(x["outage_total"]))
    row("rounds with more than one failover", lambda x: str(sum(1 for p in x["per_round"] if p["failovers"] > 1)))
    row("writes acknowledged / attempted", lambda x: f"{x['acked']} / {x['attempts']}")
    row("run length", lambda x: fmt_s(x["t_end"] - x["t_begin"]))
    L.append("")
    # Per kind.
    kinds = [k for k in KINDS if any(r["kind"] == k for x in data for r in x["rounds"])]
    if kinds:
        L.append("## Per kind")
        L.append("")
        L.append("Rounds, lost acknowledged writes, VIP on two hosts, longest gap, rounds converged.")
        L.append("")
        L.append("| kind | " + " | ".join(x["mover"] for x in data) + " |")
        L.append("|---|" + "---|" * len(data))
        for k in kinds:
            cells = []
            for x in data:
                sel = [(r, p) for r, p in zip(x["rounds"], x.get("per_round") or []) if r["kind"] == k]
                if not sel:
                    cells.append("-")
                    continue
                rs = [r for r, _ in sel if not r.get("na")]
                if not rs:
                    cells.append(f"{len(sel)} round{'s' if len(sel) > 1 else ''}: n/a")
                    continue
                cells.append(f"{len(sel)} round{'s' if len(sel) > 1 else ''}: lost {sum(p['lost'] for _, p in sel)}, two hosts "
                             f"{sum(p['double_us'] for _, p in sel) / 1e6:.3f} s, gap "
                             f"{max(p['gap_us'] for _, p in sel) / 1e6:.2f} s, converged "
                             f"{sum(1 for r in rs if r.get('converged'))}/{len(rs)}")
            L.append(f"| {k} | " + " | ".join(cells) + " |")
        L.append("")
    # Per round, per mover.
    for x in data:
        L.append(f"## Per round: {x['mover']}")
        L.append("")
        if not x.get("per_round"):
            L.append("(no rounds)")
            L.append("")
            continue
        L.append("| # | kind | target | lost | VIP on two hosts | longest gap | failovers | converged |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r, p in zip(x["rounds"], x["per_round"]):
            L.append(f"| {r['round']} | {r['kind']} | {target_cell(r)} | {p['lost']} | {fmt_s(p['double_us'])} | "
                     f"{fmt_s(p['gap_us'])} | {p['failovers']} | {conv_cell(r)} |")
        notes = [(r["round"], n) for r in x["rounds"] for n in r.get("notes", []) + r.get("repairs", [])]
        notes += [(r["round"], "before it, unsettled: " + "; ".join(r["unsettled_before"])) for r in x["rounds"]
                  if r.get("unsettled_before")]
        if notes:
            L.append("")
            L.append("Notes: " + "; ".join(f"round {i}: {n}" for i, n in sorted(notes)) + ".")
        if x["lost_before"]:
            L.append("")
            L.append(f"Lost before the first fault: {x['lost_before']}.")
        if x["final"].get("writer_note"):
            L.append("")
            L.append(f"Writer: {x['final']['writer_note']}.")
        L.append("")
    # Rounds that did not converge.
    bad = [(x["mover"], r) for x in data for r in x["rounds"] if not r.get("na") and not r.get("converged")]
    L.append("## Rounds that did not converge")
    L.append("")
    if not bad:
        L.append("None.")
    for mover, r in bad:
        L.append(f"- {mover}, round {r['round']} ({r['kind']} on {r.get('target')}): " + "; ".join(r.get("reasons") or ["?"]))
    L.append("")
    # Double failovers.
    dbl = [(x, r, p) for x in data for r, p in zip(x["rounds"], x.get("per_round") or []) if p["double_failover"]]
    L.append("## More than one failover in a round")
    L.append("")
    if not dbl:
        L.append("None.")
        L.append("")
    for x, r, p in dbl:
        det = p["double_failover"]
        L.append(f"### {x['mover']}, round {r['round']} ({r['kind']} on {r.get('target')})")
        L.append("")
        L.append(f"Fault at {utc(r['t_fault'])}. `+switch-master` lines:")
        L.append("")
        for us, h, a, b in det["switches"]:
            L.append(f"- {utc(us)} sentinel {h}: {a} → {b} (+{(us - r['t_fault']) / 1e6:.3f} s)")
        L.append("")
        L.append("Sentinel events from the fault up to the second switch (every sentinel):")
        L.append("")
        L.append("```")
        for us, h, text in det["context"]:
            L.append(f"{utc(us)} +{(us - r['t_fault']) / 1e6:7.3f} s {h}: {text}")
        L.append("```")
        L.append("")
    L.append("## Method")
    L.append("")
    L.append(
        "One lab (`scripts/lab.sh`) and one writer (`examples/lab_writer.rs`, `INCR` through the IPv4 VIP every "
        "10 ms; a new one on the same key every 10 minutes) per mover; both movers face the same seeded sequence, "
        "each fault aimed at the master the sentinels name at that moment. A round's window runs from its fault to "
        "the next round's fault. **Lost**: an acknowledged value at or below the highest acknowledged before it "
        "(m − v + 1 lost, as `lost_writes` in tests/support), counted in the round in which the regression "
        "shows; and at the end, the final master's `GET` below the highest acknowledged value. **VIP on two "
        "hosts**: from `ip -ts -o monitor address` in every host namespace, either family the mover manages. "
        "**Longest gap**: between successful writes, clipped to the window. **Failovers**: the most "
        "`+switch-master` lines any one sentinel logged in the window. **Converged**: within "
        f"{T_CONVERGE} s of the heal, the three sentinels name one master, exactly one Redis reports role:master "
        "(`ROLE`) and it is that one, the VIP(s) the mover manages are on that host alone, and a write through the "
        "VIP succeeded after that; the time is from the heal. Rounds start once Sentinel's guard has passed (11 s "
        "after the latest `+try-failover`/`+vote-for-leader`) and the lab has settled (at most "
        f"{T_SETTLE} s: every sentinel names the master with flags `master` and knows the other two, both replicas "
        "are linked, and every sentinel sees both as linked replicas of it); faults are healed "
        f"within the round (kill: Redis restarted empty; stop: SIGCONT; cut, replica-cut: the switch port up; "
        f"partial: `lab.sh isolate HOST off` {PARTIAL_HOLD:g} s after a new master holds the VIP, at most "
        f"{T_CUT} s; sentinel: restarted after {T_HOLD:g} s). A round that did not converge is followed by "
        "repairs of what the faults broke (dead or stopped Redis and sentinels, dead daemons, ports, isolation), "
        "never of the movers' VIPs.")
    L.append("")
    text = "\n".join(L)
    with open(path, "w") as f:
        f.write(text)
    print(text)
    rc = 0
    if os.environ.get("SOAK_STRICT") == "1":
        why = strict(data)
        if why:
            print("\nsoak: SOAK_STRICT=1: " + "; ".join(why), file=sys.stderr)
            rc = 1
        else:
            print("\nsoak: SOAK_STRICT=1: the vipctl mover passed", file=sys.stderr)
    return rc


def strict(data):
    why = []
    for x in data:
        if x["mover"] != "vipctl":
            continue
        if not x["status"].get("completed"):
            why.append(f"the vipctl run did not complete ({x['status'].get('error')})")
        for r, p in zip(x["rounds"], x.get("per_round") or []):
            tag = f"vipctl round {r['round']} ({r['kind']})"
            if not r.get("converged"):
                why.append(f"{tag} did not converge: " + "; ".join(r.get("reasons") or ["?"]))
            if r["kind"] == "partial":
                if p["lost"] > 10:
                    why.append(f"{tag} lost {p['lost']} acknowledged writes (more than 10)")
            elif p["lost"]:
                why.append(f"{tag} lost {p['lost']} acknowledged writes")
        if x.get("missing"):
            why.append(f"vipctl: {x['missing']} acknowledged writes missing from the final master's count")
        if x.get("lost_before"):
            why.append(f"vipctl: {x['lost_before']} acknowledged writes lost before the first fault")
    return why


def utc(us):
    return time.strftime("%H:%M:%S", time.gmtime(us / 1e6)) + f".{us % 1_000_000 // 1000:03d}"


# --- main ---------------------------------------------------------------------


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "plan" and len(argv) >= 4:
        rounds, seed = int(argv[2]), int(argv[3])
        plan = make_plan(rounds, seed, parse_kinds(argv[4:]))
        print(f"seed {seed}, {rounds} round{'' if rounds == 1 else 's'}: {plan_text(plan)}")
        return 0
    if cmd == "run" and len(argv) >= 7:
        mover, rounds, seed, outdir, lab = argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6]
        if mover not in MOVERS:
            print(f"soak.py: unknown mover '{mover}' (known: {' '.join(MOVERS)})", file=sys.stderr)
            return 2
        plan = make_plan(rounds, seed, parse_kinds(argv[7:]))
        vipctl, writer = os.environ.get("VIPCTL", ""), os.environ.get("LAB_WRITER", "")
        for name, p in (("VIPCTL", vipctl), ("LAB_WRITER", writer)):
            if not (os.path.isabs(p) and os.access(p, os.X_OK)):
                print(f"soak.py: {name} must name the built binary (got '{p}')", file=sys.stderr)
                return 1
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, on_signal)
        d = Driver(mover, seed, plan, outdir, lab, vipctl, writer)
        if os.path.isdir(d.out):
            shutil.rmtree(d.out)
        return d.main()
    if cmd == "report" and len(argv) >= 5:
        return report(argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
