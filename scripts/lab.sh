#!/usr/bin/env bash
# Network-namespace test lab for vipctl.
#
# Builds a private L2 segment out of network namespaces: one "switch"
# namespace holding a bridge, three Redis hosts (h1 h2 h3, each running
# redis-server and redis-sentinel) and one client (cl).  Nothing is ever
# attached to the root namespace or to a real interface, so the lab cannot
# disturb the machine's own networking.  Only documentation address space is
# used (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and
# documentation AS numbers (64496, 64497).
#
# With LAB_ROUTED=1 "up" builds the routed lab instead (project issue "Routed
# VIPs"): no switch; a router namespace (rt, running FRR: zebra, bgpd, bfdd)
# with each host and the client in a subnet of its own behind it, linked by
# one veth pair each (the router's end is named after the host, as the
# switch port is).  The VIPs are host routes outside every subnet that vipctl
# binds on lo; each Redis host runs a BGP speaker (BIRD 2, or FRR with
# LAB_SPEAKER=frr) that announces them to the router over eBGP with BFD.  The
# speakers' configs are packaging/examples/*.conf with only their
# @PLACEHOLDERS@ filled in, so the shipped examples cannot rot.
#
# Usage (run as root):
#   lab.sh up DIR                  build a lab, state in DIR
#   lab.sh down DIR                tear it down (idempotent)
#   lab.sh sweep [ROOT]            tear down labs under ROOT whose owner died
#   lab.sh ns DIR HOST             print the namespace name of HOST
#   lab.sh exec DIR HOST CMD...    run CMD inside HOST's namespace
#   lab.sh kill-redis DIR HOST [SIGNAL]   signal HOST's redis-server
#   lab.sh start-redis DIR HOST    start HOST's redis-server again
#   lab.sh signal-sentinel DIR HOST SIGNAL   signal HOST's redis-sentinel
#   lab.sh start-sentinel DIR HOST start HOST's redis-sentinel again
#   lab.sh link DIR HOST up|down   plug or pull HOST's port on the switch
#                                  (routed: HOST's link at the router)
#   lab.sh master DIR [HOST]       print "IP PORT" of the master per sentinel
#   lab.sh vips DIR                print the VIPs present on each host (any interface)
#   lab.sh neigh DIR VIP           print the client's neighbour MAC for VIP
# L2 lab only:
#   lab.sh isolate DIR HOST on|off the partial cut: HOST (h1 h2 h3) loses every
#                                  other Redis host (their Redis, sentinels and
#                                  daemons) both ways, while it keeps the client
#                                  and the switch and its link stays up
# Routed lab only:
#   lab.sh routes DIR              print each VIP prefix with the host(s) the
#                                  router forwards it to ("-": none)
#   lab.sh cut DIR HOST on|off     drop all traffic on HOST's link to the
#                                  router while both ends stay up
#   lab.sh speaker DIR NODE ARGS...  birdc or vtysh of NODE (h1 h2 h3 rt)
# HOST is one of h1 h2 h3 cl sw (routed: rt instead of sw).  See usage()
# below for the environment.
#
# The lab's facts (addresses, MACs, VIPs, ports, roles) are defined here and
# nowhere else: "up" writes them to DIR/lab.json for the Rust tests
# (tests/support) and the benchmark (scripts/bench), which read that file
# instead of repeating them.  See write_lab_json for its layout.

set -euo pipefail

readonly PROG=${0##*/}
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR
readonly HOSTS=(h1 h2 h3)
readonly ALL_NODES=(h1 h2 h3 cl)
# The namespaces that are no lab host, in either kind of lab: teardown
# deletes whichever exist.
readonly INFRA_NODES=(sw rt)
# The VIPs.  L2 lab: in the hosts' own subnet, with its prefix length.
# Routed lab: host routes outside every subnet (set_mode sets them).
VIP4=198.51.100.100
VIP6=2001:db8:51::100
PREFIX4=24
PREFIX6=64
# L2 lab (ROUTED=0) or routed lab (ROUTED=1, SPEAKER bird or frr): set by
# set_mode, from the environment in "up" and from DIR/mode afterwards.
ROUTED=0
SPEAKER=
# Routed lab: the router's AS and the one AS of all Redis hosts, the ranges
# the router accepts host routes (VIPs) from and BGP sessions in.
readonly ROUTER_AS=64496
readonly HOSTS_AS=64497
readonly VIP_RANGE4=192.0.2.0/24
readonly VIP_RANGE6=2001:db8:ff::/64
readonly HOSTS_RANGE4=198.51.100.0/24
readonly HOSTS_RANGE6=2001:db8:1::/48
readonly ROUTER_ID=198.51.100.1
# Where Debian's frr package keeps its daemons.
readonly FRR_LIBDIR=/usr/lib/frr
# No interface has this MAC: "cut" pins neighbour entries to it.
readonly NOBODY_MAC=02:00:00:00:de:ad
readonly REDIS_PORT=6379
readonly SENTINEL_PORT=26379
# Only when LAB_TLS_DIR is set.
readonly SENTINEL_TLS_PORT=26380
readonly MASTER_NAME=mymaster
# The master when the lab comes up; the other hosts start as its replicas.
readonly FIRST_MASTER=h1
readonly DEFAULT_ROOT=/tmp/vipctl-labs

# --- small helpers ---------------------------------------------------------

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

usage() {
    cat >&2 <<'EOF'
usage: lab.sh up DIR | down DIR | sweep [ROOT] | ns DIR HOST
       lab.sh exec DIR HOST CMD... | kill-redis DIR HOST [SIGNAL]
       lab.sh start-redis DIR HOST | master DIR [HOST] | vips DIR
       lab.sh signal-sentinel DIR HOST SIGNAL | start-sentinel DIR HOST
       lab.sh link DIR HOST up|down
       lab.sh neigh DIR VIP
L2 lab only:
       lab.sh isolate DIR HOST on|off
routed lab only:
       lab.sh routes DIR | cut DIR HOST on|off | speaker DIR NODE ARGS...
HOST: h1 h2 h3 cl sw (routed: rt instead of sw).  Callers should create labs
as /tmp/vipctl-labs/NAME.
Environment for "up":
  LAB_ROUTED      1: the routed lab (a router, a subnet per host, VIPs as
                  host routes on lo announced over BGP) instead of the L2 one
  LAB_SPEAKER     routed lab: the hosts' BGP speaker, bird (default) or frr
  LAB_HOOK        absolute path set as each sentinel's client-reconfig-script
  LAB_CONFIG      vipctl config exported to the hook (default DIR/vipctl.toml,
                  which "up" writes; when set elsewhere nothing is written)
  LAB_OWNER_PID   process owning the lab, for "sweep" (default: our parent)
  LAB_UP_TIMEOUT  seconds to wait for the lab to become ready (default 30)
  LAB_TLS_DIR     folder with ca.crt, server.crt, server.key: sentinels also
                  serve TLS on port 26380
  LAB_SENTINEL_PASS  sentinels require this password (requirepass)
  LAB_REDIS_PASS  Redis requires this password (requirepass, masterauth;
                  the sentinels get it as auth-pass)
  LAB_REDIS_TLS_DIR  folder with ca.crt, server.crt, server.key: Redis speaks
                  TLS only (port 0, tls-port 6379), replication and the
                  sentinels' links to Redis too
  LAB_HOSTNAMES   1: Redis and the sentinels announce host names (hN.lab)
                  instead of addresses (announce-hostnames, resolve-hostnames)
  LAB_REPLICA_CONF  lines appended to the replicas' redis.conf (e.g. a
                  rename-command that makes a promotion fail)
  LAB_DOWN_AFTER  the sentinels' down-after-milliseconds (default 1000; 100
                  to 600000)
  LAB_SERVERS     0: the network only, no Redis and no sentinels (for hosts
                  that bring their own, e.g. systemd-nspawn containers joined
                  to the host namespaces: scripts/systemd-test.sh)
  LAB_SERVER      the server build: redis7 (Debian 12's redis 7.0, the
                  default), valkey8 (Debian 13's valkey 8.1) or redis8
                  (Debian 13's redis 8.0); scripts/servers.sh builds and
                  caches Debian 13's on first use
EOF
}

now_ms() {
    date +%s%3N
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces need CAP_SYS_ADMIN)"
}

# need_tools: every command this lab needs, as COMMAND:DEBIAN-PACKAGE (the one
# list; the Rust tests rely on its message).
need_tools() {
    local t missing=
    local -a tools=(ip:iproute2 redis-server:redis-server redis-sentinel:redis-sentinel
        redis-cli:redis-tools sysctl:procps flock:util-linux timeout:coreutils)
    if ((ROUTED)); then
        tools+=(vtysh:frr "$FRR_LIBDIR/zebra:frr" "$FRR_LIBDIR/bgpd:frr" "$FRR_LIBDIR/bfdd:frr")
        [[ $SPEAKER != bird ]] || tools+=(bird:bird2 birdc:bird2)
    fi
    for t in "${tools[@]}"; do
        command -v "${t%:*}" >/dev/null 2>&1 || missing+="${missing:+; }\`${t%:*}\` (Debian package ${t##*:})"
    done
    [[ -z $missing ]] ||
        die "missing commands: $missing (run scripts/install-deps.sh as root)"
}

# set_mode l2|routed [SPEAKER]: the kind of lab the other functions describe.
set_mode() {
    case $1 in
    l2) ROUTED=0 SPEAKER= ;;
    routed)
        ROUTED=1
        SPEAKER=${2:-bird}
        case $SPEAKER in bird | frr) ;; *) die "LAB_SPEAKER must be bird or frr (got '$SPEAKER')" ;; esac
        VIP4=192.0.2.100 PREFIX4=32
        VIP6=2001:db8:ff::100 PREFIX6=128
        ;;
    *) die "unknown lab mode '$1'" ;;
    esac
}

# routed_net HOST -> "SUBNET4 ROUTER4 SUBNET6 ROUTER6": in the routed lab,
# HOST's own subnets and the router's addresses in them (its gateways).
routed_net() {
    case $1 in
    h1) echo 198.51.100.0/26 198.51.100.1 2001:db8:1:1::/64 2001:db8:1:1::1 ;;
    h2) echo 198.51.100.64/26 198.51.100.65 2001:db8:1:2::/64 2001:db8:1:2::1 ;;
    h3) echo 198.51.100.128/26 198.51.100.129 2001:db8:1:3::/64 2001:db8:1:3::1 ;;
    cl) echo 203.0.113.0/24 203.0.113.1 2001:db8:4::/64 2001:db8:4::1 ;;
    *) die "unknown host '$1'" ;;
    esac
}

# net_field HOST N -> field N (1-4) of routed_net HOST.
net_field() {
    local -a f
    read -r -a f <<<"$(routed_net "$1")"
    echo "${f[$(($2 - 1))]}"
}

# host_cidr4 HOST / host_cidr6 HOST -> the node's address with the prefix
# length of its subnet, as on its eth0.
host_cidr4() {
    local net
    if ((ROUTED)); then net=$(net_field "$1" 1); else net=x/$PREFIX4; fi
    echo "$(host_ip4 "$1")/${net#*/}"
}

host_cidr6() {
    local net
    if ((ROUTED)); then net=$(net_field "$1" 3); else net=x/$PREFIX6; fi
    echo "$(host_ip6 "$1")/${net#*/}"
}

# host_ip4 HOST -> the fixed IPv4 of a node.
host_ip4() {
    if ((ROUTED)); then
        case $1 in
        h1) echo 198.51.100.11 ;;
        h2) echo 198.51.100.75 ;;
        h3) echo 198.51.100.139 ;;
        cl) echo 203.0.113.50 ;;
        *) die "unknown host '$1'" ;;
        esac
        return
    fi
    case $1 in
    h1) echo 198.51.100.11 ;;
    h2) echo 198.51.100.12 ;;
    h3) echo 198.51.100.13 ;;
    cl) echo 198.51.100.50 ;;
    *) die "unknown host '$1'" ;;
    esac
}

host_ip6() {
    if ((ROUTED)); then
        case $1 in
        h1) echo 2001:db8:1:1::11 ;;
        h2) echo 2001:db8:1:2::12 ;;
        h3) echo 2001:db8:1:3::13 ;;
        cl) echo 2001:db8:4::50 ;;
        *) die "unknown host '$1'" ;;
        esac
        return
    fi
    case $1 in
    h1) echo 2001:db8:51::11 ;;
    h2) echo 2001:db8:51::12 ;;
    h3) echo 2001:db8:51::13 ;;
    cl) echo 2001:db8:51::50 ;;
    *) die "unknown host '$1'" ;;
    esac
}

# Fixed MACs make packet captures and neighbour tables easy to read.
host_mac() {
    case $1 in
    h1) echo 02:00:00:00:00:11 ;;
    h2) echo 02:00:00:00:00:12 ;;
    h3) echo 02:00:00:00:00:13 ;;
    cl) echo 02:00:00:00:00:50 ;;
    *) die "unknown host '$1'" ;;
    esac
}

# router_mac HOST -> the MAC of the router's port to HOST (routed lab).
router_mac() {
    case $1 in
    h1) echo 02:00:00:00:01:11 ;;
    h2) echo 02:00:00:00:01:12 ;;
    h3) echo 02:00:00:00:01:13 ;;
    cl) echo 02:00:00:00:01:50 ;;
    *) die "unknown host '$1'" ;;
    esac
}

# infra_node -> the namespace between the hosts: sw (L2) or rt (routed).
infra_node() {
    if ((ROUTED)); then echo rt; else echo sw; fi
}

# host_role HOST -> the node's role when the lab comes up.
host_role() {
    case $1 in
    "$FIRST_MASTER") echo master ;;
    h1 | h2 | h3) echo replica ;;
    cl) echo client ;;
    *) die "unknown host '$1'" ;;
    esac
}

check_host() {
    case $1 in
    h1 | h2 | h3 | cl | "$(infra_node)") ;;
    sw | rt) die "this lab has no '$1' (its hosts meet at $(infra_node))" ;;
    *) die "unknown host '$1' (expected h1, h2, h3, cl or $(infra_node))" ;;
    esac
}

need_routed() {
    ((ROUTED)) || die "$1 needs a routed lab (lab.sh up with LAB_ROUTED=1)"
}

check_redis_host() {
    case $1 in
    h1 | h2 | h3) ;;
    *) die "host '$1' runs no redis (expected h1, h2 or h3)" ;;
    esac
}

# abs_dir PATH -> absolute, normalised path (need not exist).  The path ends
# up unquoted-safe in redis config files, so refuse anything exotic instead
# of trying to escape it.
abs_dir() {
    local d
    [[ -n ${1:-} ]] || die "missing DIR argument"
    d=$(realpath -m -- "$1")
    [[ $d =~ ^/[A-Za-z0-9._/+@=,-]+$ ]] ||
        die "DIR '$d' contains characters not allowed in a lab path (use [A-Za-z0-9._/+@=,-])"
    [[ $d != / ]] || die "refusing to use / as a lab directory"
    echo "$d"
}

# proc_field PID N -> field N (1-based, as in proc(5)) of /proc/PID/stat.
# The comm field may contain spaces and parentheses, so split after the last
# ')' instead of naively on whitespace.
proc_field() {
    local stat rest
    local -a f
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    # rest starts at field 3 (state).
    echo "${f[$(($2 - 3))]}"
}

# pid_alive PID: true if PID exists and is not a zombie.  Zombies matter
# here: daemonised redis is re-parented to PID 1, which may reap late, and
# kill -0 succeeds on a zombie.
pid_alive() {
    local st
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    st=$(proc_field "$1" 3) || return 1
    [[ $st != Z && $st != X ]]
}

# pid_is_ours DIR PID: alive and started no earlier than the lab itself.
# This is the guard against PID reuse: a stale pidfile (e.g. after
# kill-redis KILL) could otherwise point at an unrelated newer process...
# which would then have started after the lab, so we also check comm for
# redis PIDs (see redis_pid).
pid_is_ours() {
    local dir=$1 pid=$2 start lab_start
    pid_alive "$pid" || return 1
    lab_start=$(cat "$dir/start.ticks" 2>/dev/null) || lab_start=0
    start=$(proc_field "$pid" 22) || return 1
    ((start >= lab_start))
}

# redis_pid DIR HOST KIND -> PID of that host's redis-server/redis-sentinel,
# if the recorded PID is really that live process.  Fails otherwise.
redis_pid() {
    local dir=$1 host=$2 kind=$3 pid comm
    pid=$(cat "$dir/$host/$kind.pid" 2>/dev/null) || return 1
    pid_is_ours "$dir" "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$(kind_comm "$kind")" ]] || return 1
    echo "$pid"
}

# speaker_pids DIR -> the PIDs of the routed lab's BGP speakers that are
# really running: BIRD or FRR on the hosts, FRR on the router.  Each daemon
# forks into the background and writes its own pidfile; a PID counts only
# if it is ours (pid_is_ours) and names the expected program.
speaker_pids() {
    local dir=$1 node name pid comm
    for node in "${HOSTS[@]}" rt; do
        for name in bird zebra bgpd bfdd; do
            if [[ $name == bird ]]; then
                pid=$(cat "$dir/$node/bird.pid" 2>/dev/null) || continue
            else
                pid=$(cat "$(frr_dir "$dir" "$node")/$name.pid" 2>/dev/null) || continue
            fi
            pid_is_ours "$dir" "$pid" || continue
            comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
            [[ $comm == "$name" ]] && echo "$pid"
        done
    done
    return 0
}

# frr_dir DIR NODE -> the folder of NODE's FRR: config, pidfiles, vty
# sockets, logs.  The router's is DIR/rt; a host's is DIR/HOST/frr, apart
# from its redis files.
frr_dir() {
    if [[ $2 == rt ]]; then echo "$1/rt"; else echo "$1/$2/frr"; fi
}

# kill_pids PID...: TERM, wait up to ~3 s, then KILL and wait up to ~1 s.
# Callers pass only PIDs already checked with pid_is_ours.
kill_pids() {
    local pid i
    local -a alive
    (($# > 0)) || return 0
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 30; i++)); do
        alive=()
        for pid in "$@"; do
            if pid_alive "$pid"; then alive+=("$pid"); fi
        done
        ((${#alive[@]} > 0)) || return 0
        sleep 0.1
    done
    local names=
    for pid in "${alive[@]}"; do names+=" $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone))"; done
    warn "pids$names ignored SIGTERM for 3 s; sending SIGKILL"
    for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 10; i++)); do
        local any=0
        for pid in "${alive[@]}"; do
            if pid_alive "$pid"; then any=1; fi
        done
        ((any)) || return 0
        sleep 0.1
    done
    warn "pids ${alive[*]} still alive after SIGKILL"
}

# lock_dir DIR [flock options]: serialise up/down/sweep on one lab.  flock on
# the directory itself is released by the kernel when we exit however we
# exit, so a crashed run never leaves a stale lock.
# The lock lives on fd 9; every long-lived process we spawn closes it
# (spawn_daemon), or it would keep the lab locked for as long as it runs.
lock_dir() {
    local dir=$1
    shift
    exec 9<"$dir" || return 1
    flock "$@" 9
}

ns_name() {
    echo "vl${1}-${2}"
}

ns_exists() {
    [[ -e /run/netns/$1 ]]
}

# load_lab DIR: set LAB_DIR, LAB_ID and the mode for the non-up subcommands.
load_lab() {
    local -a mode=(l2)
    LAB_DIR=$(abs_dir "$1")
    [[ -f $LAB_DIR/id ]] || die "no lab in $LAB_DIR (missing $LAB_DIR/id; run 'lab.sh up $LAB_DIR')"
    LAB_ID=$(<"$LAB_DIR/id")
    [[ $LAB_ID =~ ^[0-9a-f]{6}$ ]] || die "corrupt lab id in $LAB_DIR/id"
    # "l2" or "routed bird|frr"; labs from before the routed lab have none.
    [[ ! -f $LAB_DIR/mode ]] || read -r -a mode <"$LAB_DIR/mode"
    set_mode "${mode[@]}"
    load_server "$LAB_DIR"
}

# pick_server: SERVER_NAME, SERVER_BIN and SENTINEL_BIN from LAB_SERVER
# (scripts/servers.sh knows the builds).
pick_server() {
    local servers
    servers=$(dirname "${BASH_SOURCE[0]}")/servers.sh
    SERVER_NAME=${LAB_SERVER:-redis7}
    SERVER_BIN=$("$servers" bin "$SERVER_NAME" server) || die "LAB_SERVER=$SERVER_NAME: no server binary (see above)"
    SENTINEL_BIN=$("$servers" bin "$SERVER_NAME" sentinel) || die "LAB_SERVER=$SERVER_NAME: no sentinel binary (see above)"
}

# load_server DIR: the server build a lab was made with (labs from before
# LAB_SERVER have no DIR/server: Debian 12's redis from PATH). The file names
# the build only: the binaries' paths come from servers.sh again, never from a
# file in the lab folder.
load_server() {
    local name=redis7
    if [[ -f $1/server ]]; then
        read -r name <"$1/server" || die "corrupt $1/server"
        [[ $name =~ ^(redis7|valkey8|redis8)$ ]] || die "$1/server names an unknown server build '$name'"
    fi
    LAB_SERVER=$name pick_server
}

# kind_bin KIND -> the binary of KIND (redis or sentinel); kind_comm KIND ->
# the name the kernel shows for it (/proc/PID/comm: 15 characters at most).
kind_bin() {
    if [[ $1 == redis ]]; then echo "$SERVER_BIN"; else echo "$SENTINEL_BIN"; fi
}
kind_comm() {
    local b
    b=$(kind_bin "$1")
    b=${b##*/}
    echo "${b:0:15}"
}

# rcli NS IP PORT ARGS...: redis-cli inside a namespace, bounded in time.
# --foreground keeps timeout in our process group so Ctrl-C reaches it.
rcli() {
    local ns=$1 ip=$2 port=$3 pass=
    shift 3
    # Sentinels of a lab made with LAB_SENTINEL_PASS want AUTH (redis-cli reads REDISCLI_AUTH).
    if [[ $port == "$SENTINEL_PORT" && -s ${LAB_DIR:-${UP_DIR:-/nonexistent}}/sentinel.pass ]]; then
        pass=$(<"${LAB_DIR:-$UP_DIR}/sentinel.pass")
    fi
    local -a tls=()
    local lab=${LAB_DIR:-${UP_DIR:-/nonexistent}}
    if [[ $port == "$REDIS_PORT" && $ip != 127.0.0.1 ]]; then
        # Redis of a lab made with LAB_REDIS_PASS / LAB_REDIS_TLS_DIR.
        [[ ! -s $lab/redis.pass ]] || pass=$(<"$lab/redis.pass")
        [[ ! -s $lab/redis.tls ]] || tls=(--tls --cacert "$(<"$lab/redis.tls")/ca.crt")
    fi
    REDISCLI_AUTH=$pass timeout --foreground -k 1 2 ip netns exec "$ns" redis-cli "${tls[@]}" -h "$ip" -p "$port" "$@" 2>/dev/null
}

# kv_get KEY: read a flat key/value reply (one item per line) on stdin.
kv_get() {
    awk -v k="$1" 'prev == k { print; found = 1; exit } { prev = $0 } END { exit !found }'
}

# --- teardown --------------------------------------------------------------

# teardown DIR: kill everything the lab started, delete its namespaces and
# remove DIR.  Works on half-built labs and when run twice.  The caller holds
# the lab lock (or has just created the lab).
teardown() {
    local dir=$1 id pid host ns round kind ino
    local -a pids
    if [[ ! -f $dir/id ]]; then
        # No id means "up" died before it created anything but maybe the
        # owner files: only remove what is unmistakably ours.
        [[ -d $dir ]] || return 0
        rm -f -- "$dir/owner.pid" "$dir/owner.start" "$dir/start.ticks"
        rmdir -- "$dir" 2>/dev/null || warn "$dir is not a lab directory (no id file); left in place"
        return 0
    fi
    id=$(<"$dir/id")
    [[ $id =~ ^[0-9a-f]{6}$ ]] || {
        warn "corrupt id in $dir/id; not touching it"
        return 1
    }

    # Which processes are the lab's servers depends on the build it ran.
    if [[ -f $dir/server || -z ${SERVER_BIN:-} ]]; then load_server "$dir"; fi

    # Test helpers first (vipctl daemon, writer), then sentinels so no
    # failover or hook starts while the redis servers go away, then redis.
    pids=()
    if [[ -f $dir/extra.pids ]]; then
        while read -r pid; do
            pid=${pid//[[:space:]]/}
            [[ -n $pid ]] || continue
            if pid_is_ours "$dir" "$pid"; then pids+=("$pid"); fi
        done <"$dir/extra.pids"
    fi
    kill_pids "${pids[@]}"
    for kind in sentinel redis; do
        pids=()
        for host in "${HOSTS[@]}"; do
            if pid=$(redis_pid "$dir" "$host" "$kind"); then pids+=("$pid"); fi
        done
        kill_pids "${pids[@]}"
    done
    # Routed lab: the BGP speakers (BIRD, FRR) on the hosts and the router.
    # shellcheck disable=SC2207 # PIDs: digits only.
    pids=($(speaker_pids "$dir"))
    kill_pids "${pids[@]}"

    # Anything still running inside the lab's namespaces (a hook orphaned by
    # its sentinel, a process started via "lab.sh exec ... &" and not
    # recorded, a redis whose pidfile was not written yet because "up" was
    # interrupted) would keep the namespace and its veths alive after
    # "ip netns del", so kill those too.  Bounded rounds, in case something
    # forks while we look.
    for ((round = 0; round < 3; round++)); do
        pids=()
        for host in "${ALL_NODES[@]}" "${INFRA_NODES[@]}"; do
            ns=$(ns_name "$id" "$host")
            ns_exists "$ns" || continue
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                if pid_is_ours "$dir" "$pid"; then pids+=("$pid"); fi
            done
        done
        ((${#pids[@]} > 0)) || break
        kill_pids "${pids[@]}"
    done

    # Deleting a host namespace destroys its eth0 and with it the veth peer
    # in the switch or router; deleting the switch destroys the bridge.
    for host in "${ALL_NODES[@]}" "${INFRA_NODES[@]}"; do
        ns=$(ns_name "$id" "$host")
        rm -rf -- "/etc/netns/$ns"
        ns_exists "$ns" || continue
        # vipctl's lock files carry the namespace's inode in their name (the
        # default lock_dir is the host's own): nobody holds them any more.
        if ino=$(stat -L -c %i -- "/run/netns/$ns" 2>/dev/null) && [[ $ino =~ ^[0-9]+$ ]]; then
            rm -f -- /run/lock/vipctl/vipctl-*-"$ino".lock
        fi
        ip netns del "$ns" 2>/dev/null || warn "could not delete namespace $ns"
    done
    rm -rf -- "$dir"
}

# --- up --------------------------------------------------------------------

UP_DIR=
UP_ARMED=0

# EXIT trap of "up": on any failure or interruption undo everything.
up_on_exit() {
    local rc=$?
    if ((UP_ARMED)) && ((rc != 0)); then
        # A second Ctrl-C must not abort the cleanup half way; the cleanup
        # is bounded in time by itself.
        trap '' INT TERM HUP
        case $rc in
        129) printf '%s: up interrupted (SIGHUP); tearing down %s\n' "$PROG" "$UP_DIR" >&2 ;;
        130) printf '%s: up interrupted (SIGINT); tearing down %s\n' "$PROG" "$UP_DIR" >&2 ;;
        143) printf '%s: up interrupted (SIGTERM); tearing down %s\n' "$PROG" "$UP_DIR" >&2 ;;
        *) printf '%s: up failed (exit %d); tearing down %s\n' "$PROG" "$rc" "$UP_DIR" >&2 ;;
        esac
        teardown "$UP_DIR" || true
    fi
    exit "$rc"
}

# close_inherited_fds: in a subshell about to exec a daemon, close every
# inherited descriptor above stderr: our lock (fd 9) and anything the caller
# leaked to us (e.g. a pipe its harness waits on) would otherwise stay open
# as long as the daemon runs.
close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
    done
}

# spawn_daemon DIR HOST KIND CONF: start redis-server/redis-sentinel inside
# the host's namespace.  They daemonise themselves and write their own
# pidfile, so the recorded PID is the real redis process (not a wrapper),
# and they detach from our stdout, so a caller reading our output (a Rust
# test using Command::output) is not kept waiting.
spawn_daemon() {
    local dir=$1 host=$2 kind=$3 conf=$4 ns bin
    ns=$(ns_name "$LAB_ID" "$host")
    bin=$(kind_bin "$kind")
    rm -f -- "$dir/$host/$kind.pid"
    if ! (
        close_inherited_fds
        # Sentinel passes its environment to client-reconfig-script, which
        # is how the hook learns its config and log file.
        export VIPCTL_CONFIG=$LAB_CONFIG VIPCTL_LOG_FILE=$dir/$host/vipctl.log VIPCTL_SOCKET=$dir/$host/vipctl.sock
        # Logs in UTC, as vipctl's records, so that tests can line them up.
        export TZ=UTC
        exec ip netns exec "$ns" "$bin" "$conf" </dev/null >>"$dir/$host/$kind.start.log" 2>&1
    ); then
        die "$bin on $host failed to start: $(tail -n 5 "$dir/$host/$kind.start.log" "$dir/$host/$kind.log" 2>/dev/null | tr '\n' ' ')"
    fi
}

# wait_pidfile DIR HOST KIND DEADLINE_S: redis writes its pidfile only once
# it is listening, so this also waits for the ports to be bound.
wait_pidfile() {
    local dir=$1 host=$2 kind=$3 deadline=$4 i
    for ((i = 0; i < 300; i++)); do
        redis_pid "$dir" "$host" "$kind" >/dev/null && return 0
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    die "$kind on $host did not write a valid pidfile ($dir/$host/$kind.pid); log: $(tail -n 5 "$dir/$host/$kind.log" 2>/dev/null | tr '\n' ' ')"
}

write_redis_conf() {
    local dir=$1 host=$2 ip
    ip=$(host_ip4 "$host")
    {
        echo "# redis-server for lab host $host (written by lab.sh)"
        echo "port $REDIS_PORT"
        echo "bind * -::*"
        echo "protected-mode no"
        echo "daemonize yes"
        echo "pidfile $dir/$host/redis.pid"
        echo "dir $dir/$host"
        echo "logfile $dir/$host/redis.log"
        echo 'save ""'
        echo "appendonly no"
        # Sentinel must see the address clients can reach (or, with LAB_HOSTNAMES, the name).
        if [[ ${LAB_HOSTNAMES:-0} == 1 ]]; then
            echo "replica-announce-ip $host.lab"
        else
            echo "replica-announce-ip $ip"
        fi
        # Full sync at once instead of the default 5 s diskless delay.
        echo "repl-diskless-sync-delay 0"
        [[ $host == "$FIRST_MASTER" ]] || echo "replicaof $(host_ip4 "$FIRST_MASTER") $REDIS_PORT"
        if [[ -n ${LAB_REDIS_PASS:-} ]]; then
            echo "requirepass $LAB_REDIS_PASS"
            echo "masterauth $LAB_REDIS_PASS"
        fi
        if [[ -n ${LAB_REDIS_TLS_DIR:-} ]]; then
            echo "port 0"
            echo "tls-port $REDIS_PORT"
            echo "tls-cert-file $LAB_REDIS_TLS_DIR/server.crt"
            echo "tls-key-file $LAB_REDIS_TLS_DIR/server.key"
            echo "tls-ca-cert-file $LAB_REDIS_TLS_DIR/ca.crt"
            echo "tls-auth-clients no"
            echo "tls-replication yes"
        fi
        [[ $host == "$FIRST_MASTER" || -z ${LAB_REPLICA_CONF:-} ]] || printf '%s\n' "$LAB_REPLICA_CONF"
    } >"$dir/$host/redis.conf"
}

write_sentinel_conf() {
    local dir=$1 host=$2 ip
    ip=$(host_ip4 "$host")
    {
        echo "# redis-sentinel for lab host $host (written by lab.sh; sentinel rewrites it)"
        echo "port $SENTINEL_PORT"
        # Names resolve to both families (lab_etc), and Sentinel may pick either: with names the
        # sentinels must be reachable over IPv6 too.
        if [[ ${LAB_HOSTNAMES:-0} == 1 ]]; then
            echo "bind $ip $(host_ip6 "$host") 127.0.0.1"
        else
            echo "bind $ip 127.0.0.1"
        fi
        echo "protected-mode no"
        echo "daemonize yes"
        echo "pidfile $dir/$host/sentinel.pid"
        echo "dir $dir/$host"
        echo "logfile $dir/$host/sentinel.log"
        if [[ ${LAB_HOSTNAMES:-0} == 1 ]]; then
            echo "sentinel resolve-hostnames yes"
            echo "sentinel announce-hostnames yes"
            echo "sentinel announce-ip $host.lab"
            echo "sentinel monitor $MASTER_NAME $FIRST_MASTER.lab $REDIS_PORT 2"
        else
            echo "sentinel announce-ip $ip"
            echo "sentinel monitor $MASTER_NAME $(host_ip4 "$FIRST_MASTER") $REDIS_PORT 2"
        fi
        echo "sentinel down-after-milliseconds $MASTER_NAME ${LAB_DOWN_AFTER:-1000}"
        echo "sentinel failover-timeout $MASTER_NAME 5000"
        echo "sentinel parallel-syncs $MASTER_NAME 1"
        [[ -z ${LAB_HOOK:-} ]] || echo "sentinel client-reconfig-script $MASTER_NAME $LAB_HOOK"
        [[ -z ${LAB_REDIS_PASS:-} ]] || echo "sentinel auth-pass $MASTER_NAME $LAB_REDIS_PASS"
        if [[ -n ${LAB_REDIS_TLS_DIR:-} && -z ${LAB_TLS_DIR:-} ]]; then
            # Sentinel reaches the TLS-only Redis over TLS, and then the other sentinels too: it
            # announces its tls-port to them. Clients keep the plain port.
            echo "tls-replication yes"
            echo "tls-port $SENTINEL_TLS_PORT"
            echo "tls-cert-file $LAB_REDIS_TLS_DIR/server.crt"
            echo "tls-key-file $LAB_REDIS_TLS_DIR/server.key"
            echo "tls-ca-cert-file $LAB_REDIS_TLS_DIR/ca.crt"
            echo "tls-auth-clients no"
        fi
        # LAB_SENTINEL_PASS: sentinels want AUTH from clients and from each other.
        if [[ -n ${LAB_SENTINEL_PASS:-} ]]; then
            echo "requirepass $LAB_SENTINEL_PASS"
            echo "sentinel sentinel-pass $LAB_SENTINEL_PASS"
        fi
        # LAB_TLS_DIR (ca.crt, server.crt, server.key): sentinels also accept TLS on SENTINEL_TLS_PORT.
        if [[ -n ${LAB_TLS_DIR:-} ]]; then
            echo "tls-port $SENTINEL_TLS_PORT"
            echo "tls-cert-file $LAB_TLS_DIR/server.crt"
            echo "tls-key-file $LAB_TLS_DIR/server.key"
            echo "tls-ca-cert-file $LAB_TLS_DIR/ca.crt"
            echo "tls-auth-clients no"
        fi
    } >"$dir/$host/sentinel.conf"
}

# The lab uses the very example config that the package installs, so the
# documented one cannot rot (its addresses are the lab's already).
write_vipctl_conf() {
    local v
    cp -- "$REPO_DIR/packaging/vipctl.toml" "$1"
    # lab.json tells the tests which VIPs the lab uses: they must be the config's.
    for v in "$VIP4/$PREFIX4" "$VIP6/$PREFIX6"; do
        grep -qF "\"$v\"" "$1" || die "packaging/vipctl.toml does not list the lab's VIP $v (lab.sh and the example config disagree)"
    done
}

# json_str STRING -> STRING as a JSON string literal.  Lab paths are
# restricted to safe characters already (abs_dir); this covers the rest
# (LAB_CONFIG may be any path without control characters: cmd_up checks).
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# write_lab_json DIR: the lab's facts, for the tests and the benchmark, as
# DIR/lab.json (written last by "up", so its presence means the lab is
# ready).  Layout (roles are those at "up"; Sentinel may change them later):
#   {"id": "...", "dir": "...", "config": "...", "master_name": "mymaster",
#    "mode": "l2",
#    "redis_hosts": ["h1", "h2", "h3"], "client": "cl",
#    "switch": {"ns": "...", "bridge": "br0"},
#    "nodes": {"h1": {"ns", "interface", "ipv4", "ipv6", "mac", "role"}, ...},
#    "vips": {"v4": "ADDR/PREFIX", "v6": "ADDR/PREFIX"},
#    "ports": {"redis": N, "sentinel": N, "sentinel_tls": N or null}}
# The routed lab (LAB_ROUTED=1) differs in:
#   "mode": "routed", "speaker": "bird" or "frr",
#   "switch": null,
#   "router": {"ns": "...", "as": 64496, "router_id": "198.51.100.1",
#              "vty_socket": "DIR/rt" (vtysh --vty_socket),
#              "vip_ranges": {"v4": "192.0.2.0/24", "v6": "2001:db8:ff::/64"},
#              "ports": {"h1": {"interface": "h1", "ipv4", "ipv6", "mac"}, ...}},
#   each node also has "subnet4", "subnet6", "gateway4", "gateway6" (the
#   router's port), and "as" and "speaker_socket" (birdc -s, or vtysh
#   --vty_socket) for the Redis hosts, null for the client;
#   "vips": {"v4": "192.0.2.100/32", "v6": "2001:db8:ff::100/128"}.
write_lab_json() {
    local dir=$1 host sep tls_port=null extra
    [[ -z ${LAB_TLS_DIR:-} ]] || tls_port=$SENTINEL_TLS_PORT
    {
        printf '{\n'
        printf '  "id": %s,\n' "$(json_str "$LAB_ID")"
        printf '  "dir": %s,\n' "$(json_str "$dir")"
        printf '  "config": %s,\n' "$(json_str "$LAB_CONFIG")"
        printf '  "master_name": %s,\n' "$(json_str "$MASTER_NAME")"
        if ((ROUTED)); then
            printf '  "mode": "routed",\n  "speaker": %s,\n' "$(json_str "$SPEAKER")"
        else
            printf '  "mode": "l2",\n'
        fi
        printf '  "redis_hosts": ['
        sep=
        for host in "${HOSTS[@]}"; do
            printf '%s%s' "$sep" "$(json_str "$host")"
            sep=', '
        done
        printf '],\n'
        printf '  "client": %s,\n' "$(json_str cl)"
        if ((ROUTED)); then
            printf '  "switch": null,\n'
            printf '  "router": {"ns": %s, "as": %d, "router_id": %s, "vty_socket": %s,\n' \
                "$(json_str "$(ns_name "$LAB_ID" rt)")" "$ROUTER_AS" "$(json_str "$ROUTER_ID")" \
                "$(json_str "$(frr_dir "$dir" rt)")"
            printf '    "vip_ranges": {"v4": %s, "v6": %s},\n' "$(json_str "$VIP_RANGE4")" "$(json_str "$VIP_RANGE6")"
            printf '    "ports": {\n'
            sep=
            for host in "${ALL_NODES[@]}"; do
                printf '%s      %s: {"interface": %s, "ipv4": %s, "ipv6": %s, "mac": %s}' \
                    "$sep" "$(json_str "$host")" "$(json_str "$host")" "$(json_str "$(net_field "$host" 2)")" \
                    "$(json_str "$(net_field "$host" 4)")" "$(json_str "$(router_mac "$host")")"
                sep=$',\n'
            done
            printf '\n    }\n  },\n'
        else
            printf '  "switch": {"ns": %s, "bridge": "br0"},\n' "$(json_str "$(ns_name "$LAB_ID" sw)")"
        fi
        printf '  "nodes": {\n'
        sep=
        for host in "${ALL_NODES[@]}"; do
            extra=
            if ((ROUTED)); then
                extra=$(printf ', "subnet4": %s, "subnet6": %s, "gateway4": %s, "gateway6": %s' \
                    "$(json_str "$(net_field "$host" 1)")" "$(json_str "$(net_field "$host" 3)")" \
                    "$(json_str "$(net_field "$host" 2)")" "$(json_str "$(net_field "$host" 4)")")
                if [[ $host == cl ]]; then
                    extra+=', "as": null, "speaker_socket": null'
                elif [[ $SPEAKER == bird ]]; then
                    extra+=$(printf ', "as": %d, "speaker_socket": %s' "$HOSTS_AS" "$(json_str "$dir/$host/bird.ctl")")
                else
                    extra+=$(printf ', "as": %d, "speaker_socket": %s' "$HOSTS_AS" "$(json_str "$(frr_dir "$dir" "$host")")")
                fi
            fi
            printf '%s    %s: {"ns": %s, "interface": "eth0", "ipv4": %s, "ipv6": %s, "mac": %s, "role": %s%s}' \
                "$sep" "$(json_str "$host")" "$(json_str "$(ns_name "$LAB_ID" "$host")")" \
                "$(json_str "$(host_ip4 "$host")")" "$(json_str "$(host_ip6 "$host")")" \
                "$(json_str "$(host_mac "$host")")" "$(json_str "$(host_role "$host")")" "$extra"
            sep=$',\n'
        done
        printf '\n  },\n'
        printf '  "vips": {"v4": %s, "v6": %s},\n' "$(json_str "$VIP4/$PREFIX4")" "$(json_str "$VIP6/$PREFIX6")"
        printf '  "ports": {"redis": %d, "sentinel": %d, "sentinel_tls": %s}\n' "$REDIS_PORT" "$SENTINEL_PORT" "$tls_port"
        printf '}\n'
    } >"$dir/lab.json.tmp"
    mv -f -- "$dir/lab.json.tmp" "$dir/lab.json"
}

# lab_etc NS: "ip netns exec" bind-mounts /etc/netns/NS/* over /etc, so each
# lab host resolves names from its own /etc/hosts only (the lab has no DNS):
# lab names resolve, and an unknown name fails at once as "no such name"
# instead of timing out against a resolver the namespace cannot reach.
lab_etc() {
    local etc=/etc/netns/$1 h
    mkdir -p "$etc"
    printf 'hosts: files\n' >"$etc/nsswitch.conf"
    {
        printf '127.0.0.1 localhost\n::1 localhost\n'
        for h in "${ALL_NODES[@]}"; do
            printf '%s %s\n%s %s\n' "$(host_ip4 "$h")" "$h.lab" "$(host_ip6 "$h")" "$h.lab"
        done
    } >"$etc/hosts"
}

# ns_sysctls NS: no duplicate address detection, so addresses (including
# link-local ones) are usable at once.  "default" must be set before eth0
# exists so eth0 inherits it; eth0 is set explicitly later as well.
ns_sysctls() {
    ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 >/dev/null
}

build_network() {
    local sw host ns
    if ((ROUTED)); then
        build_routed_network
        return
    fi
    sw=$(ns_name "$LAB_ID" sw)
    ip netns add "$sw"
    ns_sysctls "$sw"
    # No STP (ports forward at once) and no multicast snooping (neighbour
    # advertisements to ff02::1 always flood to every port).
    ip -n "$sw" link add br0 type bridge stp_state 0 mcast_snooping 0
    ip -n "$sw" link set lo up
    ip -n "$sw" link set br0 up
    for host in "${ALL_NODES[@]}"; do
        ns=$(ns_name "$LAB_ID" "$host")
        ip netns add "$ns"
        ns_sysctls "$ns"
        lab_etc "$ns"
        # Created inside the host namespace with the peer moved straight
        # into the switch: no interface ever appears in the root namespace.
        ip -n "$ns" link add eth0 address "$(host_mac "$host")" type veth peer name "$host" netns "$sw"
        ip netns exec "$ns" sysctl -q -w net.ipv6.conf.eth0.accept_dad=0 >/dev/null
        ip -n "$sw" link set "$host" master br0
        ip -n "$sw" link set "$host" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(host_ip4 "$host")/$PREFIX4" dev eth0
        ip -n "$ns" addr add "$(host_ip6 "$host")/$PREFIX6" dev eth0 nodad
        ip -n "$ns" link set eth0 up
    done
}

# --- routed lab ------------------------------------------------------------

# build_routed_network: the router namespace and, for each host and the
# client, a namespace of its own linked to the router by a veth pair: eth0 on
# the host's side, a port named after the host on the router's (as on the
# switch, so "link" works alike).  Each host routes by a default route via
# the router; the VIPs are host routes the router learns over BGP.
build_routed_network() {
    local rt host ns net4 gw4 net6 gw6
    rt=$(ns_name "$LAB_ID" rt)
    ip netns add "$rt"
    ns_sysctls "$rt"
    lab_etc "$rt"
    ip -n "$rt" link set lo up
    # frr-tor.conf says "ip forwarding" too; set here so the lab forwards
    # from the start, not only once zebra has read its config.  A router
    # keeps its IPv6 addresses while a port is down ("link HOST down"), as
    # it keeps its IPv4 ones; Linux drops them unless told otherwise.
    ip netns exec "$rt" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1 >/dev/null
    for host in "${ALL_NODES[@]}"; do
        ns=$(ns_name "$LAB_ID" "$host")
        read -r net4 gw4 net6 gw6 <<<"$(routed_net "$host")"
        ip netns add "$ns"
        ns_sysctls "$ns"
        lab_etc "$ns"
        # Created inside the host namespace with the peer moved straight
        # into the router: no interface ever appears in the root namespace.
        ip -n "$ns" link add eth0 address "$(host_mac "$host")" type veth peer name "$host" netns "$rt"
        ip netns exec "$ns" sysctl -q -w net.ipv6.conf.eth0.accept_dad=0 >/dev/null
        ip netns exec "$rt" sysctl -q -w "net.ipv6.conf.$host.accept_dad=0" "net.ipv6.conf.$host.keep_addr_on_down=1" >/dev/null
        ip -n "$rt" link set "$host" address "$(router_mac "$host")"
        ip -n "$rt" addr add "$gw4/${net4#*/}" dev "$host"
        ip -n "$rt" addr add "$gw6/${net6#*/}" dev "$host" nodad
        ip -n "$rt" link set "$host" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(host_cidr4 "$host")" dev eth0
        ip -n "$ns" addr add "$(host_cidr6 "$host")" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$gw4"
        ip -n "$ns" -6 route add default via "$gw6"
    done
}

# fill_template SRC DST COMMENT KEY=VALUE...: copy the example config SRC
# to DST with each @KEY@ replaced by VALUE, except in comment lines (those
# starting with COMMENT: they document the placeholders and stay as they
# are).  Fails when SRC lacks a KEY or keeps a placeholder the lab does not
# fill in: the shipped example and the lab must not drift apart.
fill_template() {
    local src=$1 dst=$2 cmt=$3 kv key line out=
    local -A val=() used=()
    shift 3
    [[ -f $src ]] || die "missing $src"
    for kv in "$@"; do val[${kv%%=*}]=${kv#*=}; done
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line == *@* && ! $line =~ ^[[:space:]]*"$cmt" ]]; then
            for key in "${!val[@]}"; do
                [[ $line == *"@$key@"* ]] || continue
                line=${line//"@$key@"/"${val[$key]}"}
                used[$key]=1
            done
            [[ ! $line =~ @[A-Z0-9_]+@ ]] ||
                die "$src: placeholder ${BASH_REMATCH[0]} that lab.sh does not fill in: $line"
        fi
        out+=$line$'\n'
    done <"$src"
    for key in "${!val[@]}"; do
        [[ -n ${used[$key]:-} ]] || die "$src has no @$key@ (lab.sh and the example disagree)"
    done
    printf '%s' "$out" >"$dst"
}

# write_speaker_confs DIR: the router's FRR config from frr-tor.conf, and
# each host's BIRD (bird2-host.conf) or FRR (frr-host.conf) config, each
# checked by its own parser before anything starts.
write_speaker_confs() {
    local dir=$1 host fdir out
    local ex=$REPO_DIR/packaging/examples
    fdir=$(frr_dir "$dir" rt)
    mkdir -p -- "$fdir"
    fill_template "$ex/frr-tor.conf" "$fdir/frr.conf" '!' \
        ROUTER_ID="$ROUTER_ID" LOCAL_AS="$ROUTER_AS" PEER_AS="$HOSTS_AS" \
        HOSTS_RANGE4="$HOSTS_RANGE4" HOSTS_RANGE6="$HOSTS_RANGE6" \
        VIP_RANGE4="$VIP_RANGE4" VIP_RANGE6="$VIP_RANGE6"
    frr_check "$fdir"
    for host in "${HOSTS[@]}"; do
        mkdir -p -- "$dir/$host"
        local -a common=(ROUTER_ID="$(host_ip4 "$host")" LOCAL_AS="$HOSTS_AS" PEER_AS="$ROUTER_AS"
            PEER_IP4="$(net_field "$host" 2)" PEER_IP6="$(net_field "$host" 4)" INTERFACE=lo)
        if [[ $SPEAKER == bird ]]; then
            fill_template "$ex/bird2-host.conf" "$dir/$host/bird-host.conf" '#' "${common[@]}" \
                VIP_PREFIXES4="$VIP4/$PREFIX4" VIP_PREFIXES6="$VIP6/$PREFIX6"
            # The lab's own lines stay out of the example: a log file that
            # shows the sessions' state changes.
            {
                echo "# BIRD for lab host $host (written by lab.sh): the lab's log file, then"
                echo "# packaging/examples/bird2-host.conf with its placeholders filled in."
                echo "log \"$dir/$host/bird.log\" all;"
                echo "debug protocols { states, events };"
                echo "include \"$dir/$host/bird-host.conf\";"
            } >"$dir/$host/bird.conf"
            out=$(bird -p -c "$dir/$host/bird.conf" 2>&1) ||
                die "bird -p rejects $dir/$host/bird.conf (from packaging/examples/bird2-host.conf): $out"
        else
            fdir=$(frr_dir "$dir" "$host")
            mkdir -p -- "$fdir"
            fill_template "$ex/frr-host.conf" "$fdir/frr.conf" '!' "${common[@]}" \
                VIP_PREFIX4="$VIP4/$PREFIX4" VIP_PREFIX6="$VIP6/$PREFIX6"
            frr_check "$fdir"
        fi
    done
}

# frr_check FDIR: vtysh's own parser accepts FDIR/frr.conf.  vtysh reads
# FDIR/vtysh.conf (empty) instead of /etc/frr's.
frr_check() {
    local out
    : >"$1/vtysh.conf"
    out=$(vtysh --config_dir "$1" --dryrun -f "$1/frr.conf" 2>&1) ||
        die "vtysh --dryrun rejects $1/frr.conf (from packaging/examples): $out"
}

# spawn_in_ns NS LOG CMD...: run CMD, a daemon that forks into the
# background by itself, inside namespace NS.
spawn_in_ns() {
    local ns=$1 log=$2
    shift 2
    if ! (
        close_inherited_fds
        TZ=UTC exec ip netns exec "$ns" "$@" </dev/null >>"$log" 2>&1
    ); then
        die "${1##*/} in $ns failed to start: $(tail -n 5 "$log" 2>/dev/null | tr '\n' ' ')"
    fi
}

# wait_daemon PIDFILE COMM DEADLINE_S LOG: the daemon wrote its pidfile and
# runs as COMM.
wait_daemon() {
    local pidfile=$1 comm=$2 deadline=$3 log=$4 i pid
    for ((i = 0; i < 300; i++)); do
        pid=$(cat "$pidfile" 2>/dev/null) || pid=
        if [[ -n $pid ]] && pid_is_ours "$UP_DIR" "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    die "$comm did not write a valid pidfile ($pidfile); log: $(tail -n 5 "$log" 2>/dev/null | tr '\n' ' ')"
}

# start_frr DIR NODE DEADLINE_S: zebra, bfdd and bgpd in NODE's namespace,
# each with its pidfile, vty socket, zebra socket and log in NODE's FRR
# folder (nothing in /etc/frr or /run/frr, so labs and a system FRR never
# meet), then frr.conf applied through vtysh, which hands each daemon its
# part.  Run as root with group frrvty: FRR insists that its user be in
# that group, and root need not own the lab folder's parents' permissions.
# -P 0: no TCP vty port.
start_frr() {
    local dir=$1 node=$2 deadline=$3 fdir ns d i out
    local -a args
    fdir=$(frr_dir "$dir" "$node")
    ns=$(ns_name "$LAB_ID" "$node")
    printf '! empty: lab.sh applies frr.conf through vtysh once the daemons run\n' >"$fdir/daemon.conf"
    for d in zebra bfdd bgpd; do
        args=(-d -u root -g frrvty -P 0 -f "$fdir/daemon.conf" -i "$fdir/$d.pid"
            -z "$fdir/zserv.api" --vty_socket "$fdir" --log "file:$fdir/$d.log")
        [[ $d != bfdd ]] || args+=(--bfdctl "$fdir/bfdd.sock")
        rm -f -- "$fdir/$d.pid"
        spawn_in_ns "$ns" "$fdir/$d.start.log" "$FRR_LIBDIR/$d" "${args[@]}"
        wait_daemon "$fdir/$d.pid" "$d" "$deadline" "$fdir/$d.log"
        [[ $d == zebra ]] || continue
        # bgpd and bfdd retry a missing zebra socket only every few seconds.
        for ((i = 0; i < 50; i++)); do
            [[ ! -S $fdir/zserv.api ]] || break
            sleep 0.1
        done
    done
    # The lab's own settings first, apart from the example: the sessions'
    # state changes in bgpd.log.
    out=$(timeout -k 1 10 vtysh --vty_socket "$fdir" --config_dir "$fdir" -c 'configure terminal' \
        -c 'debug bgp neighbor-events' 2>&1) ||
        die "FRR on $node did not take the lab's log settings: $out"
    # On the router also every UPDATE received, with microseconds (the
    # precision applies to a "log file" target, not to --log), in
    # updates.log: a route's lag then splits into the host's part (bind ->
    # UPDATE received) and the router's (UPDATE -> route installed).
    if [[ $node == rt ]]; then
        out=$(timeout -k 1 10 vtysh --vty_socket "$fdir" --config_dir "$fdir" -d bgpd -c 'configure terminal' \
            -c "log file $fdir/updates.log debugging" -c 'log timestamp precision 6' -c 'debug bgp updates in' 2>&1) ||
            die "the router's bgpd did not take the lab's update log: $out"
    fi
    out=$(timeout -k 1 10 vtysh --vty_socket "$fdir" --config_dir "$fdir" -f "$fdir/frr.conf" 2>&1) ||
        die "FRR on $node did not take $fdir/frr.conf: $out"
}

# start_bird DIR HOST DEADLINE_S: BIRD in HOST's namespace, its control
# socket, pidfile and log in DIR/HOST.
start_bird() {
    local dir=$1 host=$2 deadline=$3
    rm -f -- "$dir/$host/bird.pid"
    spawn_in_ns "$(ns_name "$LAB_ID" "$host")" "$dir/$host/bird.start.log" \
        bird -c "$dir/$host/bird.conf" -s "$dir/$host/bird.ctl" -P "$dir/$host/bird.pid"
    wait_daemon "$dir/$host/bird.pid" bird "$deadline" "$dir/$host/bird.log"
}

# start_speakers DIR DEADLINE_S: FRR on the router, then each host's
# speaker.  They connect while Redis starts; wait_routing_ready waits.
start_speakers() {
    local dir=$1 deadline=$2 host
    start_frr "$dir" rt "$deadline"
    for host in "${HOSTS[@]}"; do
        if [[ $SPEAKER == bird ]]; then
            start_bird "$dir" "$host" "$deadline"
        else
            start_frr "$dir" "$host" "$deadline"
        fi
    done
}

# rt_vtysh DIR ARGS...: vtysh on the router's FRR, bounded in time.
rt_vtysh() {
    local fdir
    fdir=$(frr_dir "$1" rt)
    shift
    timeout --foreground -k 1 5 vtysh --vty_socket "$fdir" --config_dir "$fdir" "$@" 2>/dev/null
}

# wait_routing_ready DIR DEADLINE_S: the router has an Established BGP
# session and an Up BFD session with every host, over IPv4 and over IPv6.
wait_routing_ready() {
    local dir=$1 deadline=$2 host addr bgp bfd pending i
    for ((i = 0; i < 300; i++)); do
        pending=
        # Compact JSON: one peer's fields are then one {...} without nesting.
        bgp=$(rt_vtysh "$dir" -c 'show bgp summary json' | tr -d ' \t\n') || bgp=
        bfd=$(rt_vtysh "$dir" -c 'show bfd peers json' | tr -d ' \t\n') || bfd=
        for host in "${HOSTS[@]}"; do
            for addr in "$(host_ip4 "$host")" "$(host_ip6 "$host")"; do
                [[ $bgp =~ "\"$addr\":{"[^}]*'"state":"Established"' ]] ||
                    pending+=" BGP session with $host ($addr) is not Established;"
                [[ $bfd =~ "\"peer\":\"$addr\""[^}]*'"status":"up"' ]] ||
                    pending+=" BFD session with $host ($addr) is not up;"
            done
        done
        [[ -n $pending ]] || return 0
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    die "routing not ready after ${LAB_UP_TIMEOUT}s:$pending (logs: $(frr_dir "$dir" rt)/*.log)"
}

# write_routed_vipctl_conf FILE: the routed lab's vipctl config.  Not the
# packaged example (that one is the L2 lab's): a minimal routed config.
write_routed_vipctl_conf() {
    local host sep=
    {
        echo "# vipctl config of a routed lab (written by lab.sh).  The VIPs are host routes that"
        echo "# vipctl binds on lo of the master's host; the host's BGP speaker announces them"
        echo "# (packaging/examples/bird2-host.conf, frr-host.conf)."
        printf 'sentinels = ['
        for host in "${HOSTS[@]}"; do
            printf '%s"%s:%d"' "$sep" "$(host_ip4 "$host")" "$SENTINEL_PORT"
            sep=', '
        done
        printf ']\n\n'
        echo '[watch]'
        echo 'hook_users = ["redis"]'
        echo
        echo "[masters.$MASTER_NAME]"
        echo 'mode = "routed"'
        echo "vips = [\"$VIP4/$PREFIX4\", \"$VIP6/$PREFIX6\"]"
        echo 'interface = "lo"'
    } >"$1"
}

# wait_ready DIR DEADLINE_S: every redis answers PING, replicas are linked,
# every sentinel knows the two other sentinels and both replicas.  On
# timeout, name what was not ready.
wait_redis_ready() {
    local dir=$1 deadline=$2 host ns ip out pending i
    for ((i = 0; i < 300; i++)); do
        pending=
        for host in "${HOSTS[@]}"; do
            ns=$(ns_name "$LAB_ID" "$host")
            ip=$(host_ip4 "$host")
            out=$(rcli "$ns" "$ip" "$REDIS_PORT" PING) || out=
            if [[ $out != PONG ]]; then
                pending+=" redis $host does not answer PING;"
                continue
            fi
            [[ $host == "$FIRST_MASTER" ]] && continue
            out=$(rcli "$ns" "$ip" "$REDIS_PORT" INFO replication | tr -d '\r') || out=
            [[ $out == *master_link_status:up* ]] ||
                pending+=" redis $host master_link_status is not up;"
        done
        [[ -n $pending ]] || return 0
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    die "lab not ready after ${LAB_UP_TIMEOUT}s:$pending"
}

wait_sentinels_ready() {
    local dir=$1 deadline=$2 host ns ip out pending i nos nsl
    for ((i = 0; i < 300; i++)); do
        pending=
        for host in "${HOSTS[@]}"; do
            ns=$(ns_name "$LAB_ID" "$host")
            ip=$(host_ip4 "$host")
            out=$(rcli "$ns" "$ip" "$SENTINEL_PORT" SENTINEL master "$MASTER_NAME") || out=
            nos=$(kv_get num-other-sentinels <<<"$out") || nos='?'
            nsl=$(kv_get num-slaves <<<"$out") || nsl='?'
            [[ $nos == 2 && $nsl == 2 ]] ||
                pending+=" sentinel $host sees num-other-sentinels=$nos num-slaves=$nsl (want 2 and 2);"
        done
        [[ -n $pending ]] || return 0
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    die "lab not ready after ${LAB_UP_TIMEOUT}s:$pending"
}

cmd_up() {
    (($# == 1)) || {
        usage
        exit 2
    }
    need_root
    case ${LAB_ROUTED:-0} in
    0) set_mode l2 ;;
    1) set_mode routed "${LAB_SPEAKER:-bird}" ;;
    *) die "LAB_ROUTED must be 0 or 1 (got '$LAB_ROUTED')" ;;
    esac
    [[ ${LAB_DOWN_AFTER:-1000} =~ ^[1-9][0-9]{2,5}$ ]] && ((${LAB_DOWN_AFTER:-1000} <= 600000)) ||
        die "LAB_DOWN_AFTER must be milliseconds from 100 to 600000 (got '${LAB_DOWN_AFTER:-}')"
    need_tools
    pick_server
    local dir id i host t0 deadline owner owner_start
    t0=$(now_ms)
    dir=$(abs_dir "$1")
    LAB_UP_TIMEOUT=${LAB_UP_TIMEOUT:-30}
    [[ $LAB_UP_TIMEOUT =~ ^[0-9]+$ ]] || die "LAB_UP_TIMEOUT must be a number of seconds"
    deadline=$((SECONDS + LAB_UP_TIMEOUT))
    if [[ -n ${LAB_HOOK:-} ]]; then
        [[ $LAB_HOOK == /* ]] || die "LAB_HOOK must be an absolute path (got '$LAB_HOOK')"
        [[ -f $LAB_HOOK && -x $LAB_HOOK ]] || die "LAB_HOOK '$LAB_HOOK' is not an executable file"
        [[ $LAB_HOOK =~ ^/[A-Za-z0-9._/+@=,-]+$ ]] || die "LAB_HOOK '$LAB_HOOK' contains characters sentinel's config cannot take unquoted"
    fi
    LAB_CONFIG=${LAB_CONFIG:-$dir/vipctl.toml}
    LAB_CONFIG=$(realpath -m -- "$LAB_CONFIG")
    [[ $LAB_CONFIG != *[[:cntrl:]]* ]] || die "LAB_CONFIG must not contain control characters"
    owner=${LAB_OWNER_PID:-$PPID}
    [[ $owner =~ ^[0-9]+$ ]] || die "LAB_OWNER_PID must be a PID (got '$owner')"
    owner_start=$(proc_field "$owner" 22) || die "owner process $owner does not exist"

    mkdir -p -- "$dir"
    lock_dir "$dir" -w 10 || die "$dir is locked by another lab.sh (up/down in progress?)"
    [[ ! -e $dir/id ]] || die "a lab already exists in $dir (id $(<"$dir/id")); run 'lab.sh down $dir' first"
    [[ -z $(ls -A -- "$dir") ]] || die "$dir is not empty; refusing to turn it into a lab directory"

    # From here on every failure, Ctrl-C or kill tears down what we made.
    UP_DIR=$dir
    UP_ARMED=1
    trap up_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    for ((i = 0; i < 10; i++)); do
        id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
        ns_exists "$(ns_name "$id" sw)" || ns_exists "$(ns_name "$id" rt)" || break
    done
    if ns_exists "$(ns_name "$id" sw)" || ns_exists "$(ns_name "$id" rt)"; then die "could not pick an unused lab id"; fi
    LAB_ID=$id
    # id first: teardown treats a directory with an id as a lab it may remove.
    echo "$id" >"$dir/id"
    if ((ROUTED)); then echo "routed $SPEAKER" >"$dir/mode"; else echo l2 >"$dir/mode"; fi
    if [[ -n ${LAB_SENTINEL_PASS:-} ]]; then
        (umask 077 && printf '%s' "$LAB_SENTINEL_PASS" >"$dir/sentinel.pass")
    fi
    if [[ -n ${LAB_REDIS_PASS:-} ]]; then
        (umask 077 && printf '%s' "$LAB_REDIS_PASS" >"$dir/redis.pass")
    fi
    [[ -z ${LAB_REDIS_TLS_DIR:-} ]] || printf '%s' "$LAB_REDIS_TLS_DIR" >"$dir/redis.tls"
    # Every process of the lab starts after this one, which lets teardown
    # reject recorded PIDs that were reused by older processes.
    proc_field "$BASHPID" 22 >"$dir/start.ticks"
    echo "$owner" >"$dir/owner.pid"
    echo "$owner_start" >"$dir/owner.start"
    : >"$dir/extra.pids"
    # start-redis needs the same environment later.
    echo "$LAB_CONFIG" >"$dir/config.path"
    printf '%s\n' "$SERVER_NAME" >"$dir/server"

    build_network

    if [[ $LAB_CONFIG == "$dir/vipctl.toml" ]]; then
        if ((ROUTED)); then write_routed_vipctl_conf "$LAB_CONFIG"; else write_vipctl_conf "$LAB_CONFIG"; fi
    fi
    for host in "${HOSTS[@]}"; do
        mkdir -p -- "$dir/$host"
        write_redis_conf "$dir" "$host"
        write_sentinel_conf "$dir" "$host"
    done
    # Routed lab: the BGP sessions come up while Redis starts.
    if ((ROUTED)); then
        write_speaker_confs "$dir"
        start_speakers "$dir" "$deadline"
    fi

    # Redis first and replicas linked before any sentinel starts: sentinel
    # learns replicas from the master's INFO, which it refreshes only every
    # 10 s, so starting it early would make "up" slow.
    if [[ ${LAB_SERVERS:-1} != 0 ]]; then
        for host in "${HOSTS[@]}"; do
            spawn_daemon "$dir" "$host" redis "$dir/$host/redis.conf"
        done
        for host in "${HOSTS[@]}"; do
            wait_pidfile "$dir" "$host" redis "$deadline"
        done
        wait_redis_ready "$dir" "$deadline"
        for host in "${HOSTS[@]}"; do
            spawn_daemon "$dir" "$host" sentinel "$dir/$host/sentinel.conf"
        done
        for host in "${HOSTS[@]}"; do
            wait_pidfile "$dir" "$host" sentinel "$deadline"
        done
        wait_sentinels_ready "$dir" "$deadline"
    fi
    ((ROUTED == 0)) || wait_routing_ready "$dir" "$deadline"
    write_lab_json "$dir"

    UP_ARMED=0
    trap - EXIT INT TERM HUP
    print_summary "$dir" "$(($(now_ms) - t0))"
}

print_summary() {
    local dir=$1 ms=$2 host
    printf 'lab up in %d.%03ds: %s (id %s)\n' $((ms / 1000)) $((ms % 1000)) "$dir" "$LAB_ID"
    if ((ROUTED)); then
        printf '  %-3s %-12s router, AS %s, FRR (zebra pid %s, bgpd pid %s, bfdd pid %s)\n' rt "$(ns_name "$LAB_ID" rt)" \
            "$ROUTER_AS" "$(<"$dir/rt/zebra.pid")" "$(<"$dir/rt/bgpd.pid")" "$(<"$dir/rt/bfdd.pid")"
    else
        printf '  %-3s %-12s bridge br0 (STP off, multicast snooping off)\n' sw "$(ns_name "$LAB_ID" sw)"
    fi
    for host in "${ALL_NODES[@]}"; do
        printf '  %-3s %-12s %-14s %-16s %s  %s' "$host" "$(ns_name "$LAB_ID" "$host")" \
            "$(host_ip4 "$host")" "$(host_ip6 "$host")" "$(host_mac "$host")" "$(host_role "$host")"
        if [[ $host != cl && -f $dir/$host/redis.pid ]]; then
            printf '  redis pid %s  sentinel pid %s' "$(<"$dir/$host/redis.pid")" "$(<"$dir/$host/sentinel.pid")"
            if ((ROUTED)) && [[ $SPEAKER == bird ]]; then
                printf '  bird pid %s' "$(<"$dir/$host/bird.pid")"
            elif ((ROUTED)); then
                printf '  bgpd pid %s' "$(<"$(frr_dir "$dir" "$host")/bgpd.pid")"
            fi
        fi
        printf '\n'
    done
    printf '  hook    %s\n' "${LAB_HOOK:-(none)}"
    printf '  config  %s\n' "$LAB_CONFIG"
    if ((ROUTED)); then
        printf '  vips    %s/%s %s/%s (bound on lo by vipctl, announced by %s over eBGP + BFD, AS %s)\n' \
            "$VIP4" "$PREFIX4" "$VIP6" "$PREFIX6" "$SPEAKER" "$HOSTS_AS"
    else
        printf '  vips    %s/%s %s/%s (assigned by vipctl)\n' "$VIP4" "$PREFIX4" "$VIP6" "$PREFIX6"
    fi
    printf '  facts   %s\n' "$dir/lab.json"
}

# --- down / sweep ----------------------------------------------------------

cmd_down() {
    (($# == 1)) || {
        usage
        exit 2
    }
    need_root
    local dir
    dir=$(abs_dir "$1")
    [[ -d $dir ]] || return 0
    # The directory may vanish between the test and the open: a concurrent
    # down won then, nothing left to do.
    lock_dir "$dir" -w 15 2>/dev/null || {
        [[ -d $dir ]] || return 0
        die "could not lock $dir (another lab.sh is busy with it)"
    }
    trap '' INT TERM HUP
    teardown "$dir"
}

# owner_alive DIR: the owner PID exists and is the same process that owned
# the lab (same start time), not a later process that reused its PID.
owner_alive() {
    local dir=$1 pid start
    pid=$(cat "$dir/owner.pid" 2>/dev/null) || return 1
    pid_alive "$pid" || return 1
    [[ -f $dir/owner.start ]] || return 0
    start=$(proc_field "$pid" 22) || return 1
    [[ $start == "$(<"$dir/owner.start")" ]]
}

cmd_sweep() {
    (($# <= 1)) || {
        usage
        exit 2
    }
    need_root
    local root dir id owner rc n=0
    root=$(abs_dir "${1:-$DEFAULT_ROOT}")
    [[ -d $root ]] || {
        echo "sweep: $root does not exist; nothing to do"
        return 0
    }
    for dir in "$root"/*/; do
        dir=${dir%/}
        [[ -d $dir ]] || continue
        # Only directories that "up" claimed: an empty one may be about to
        # be used by a caller.
        [[ -f $dir/id || -f $dir/owner.pid ]] || continue
        if owner_alive "$dir"; then continue; fi
        id=$(cat "$dir/id" 2>/dev/null) || id='?'
        owner=$(cat "$dir/owner.pid" 2>/dev/null) || owner='?'
        # A subshell so each lab's lock is released right after.  The wait
        # covers short-lived children of a killed "up" that still hold its
        # lock; a lab busy for longer is left to whoever is busy with it.
        rc=0
        (
            lock_dir "$dir" -w 5 2>/dev/null || exit 3
            [[ -e $dir ]] || exit 5
            if owner_alive "$dir"; then exit 4; fi
            teardown "$dir"
        ) || rc=$?
        case $rc in
        0)
            printf 'sweep: removed %s (id %s, owner pid %s gone)\n' "$dir" "$id" "$owner"
            n=$((n + 1))
            ;;
        3) printf 'sweep: skipped %s (locked by another lab.sh for more than 5 s)\n' "$dir" ;;
        4 | 5) ;; # Adopted by a live owner or removed meanwhile.
        *) printf 'sweep: failed to remove %s (exit %d)\n' "$dir" "$rc" ;;
        esac
    done
    echo "sweep: removed $n lab(s) under $root"
}

# --- queries and actions on a running lab ----------------------------------

cmd_ns() {
    (($# == 2)) || {
        usage
        exit 2
    }
    load_lab "$1"
    check_host "$2"
    ns_name "$LAB_ID" "$2"
}

cmd_exec() {
    (($# >= 3)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    check_host "$2"
    local ns
    ns=$(ns_name "$LAB_ID" "$2")
    ns_exists "$ns" || die "namespace $ns does not exist (lab half torn down?)"
    shift 2
    exec ip netns exec "$ns" "$@"
}

# signal_instance KIND DIR HOST SIGNAL: sends SIGNAL to HOST's redis-server
# (KIND redis) or redis-sentinel (KIND sentinel), by recorded PID.
signal_instance() {
    local kind=$1 sig=${4^^} pid name
    load_lab "$2"
    name=$(kind_comm "$kind")
    check_redis_host "$3"
    pid=$(redis_pid "$LAB_DIR" "$3" "$kind") ||
        die "$name on $3 is not running (pidfile $LAB_DIR/$3/$kind.pid is missing or stale)"
    kill -s "${sig#SIG}" "$pid" || die "could not send SIG${sig#SIG} to $name on $3 (pid $pid)"
    echo "sent SIG${sig#SIG} to $name on $3 (pid $pid)"
}

# start_instance KIND DIR HOST: starts HOST's redis-server or redis-sentinel
# again with its own config file and waits (bounded) for its pidfile.
start_instance() {
    local kind=$1 host=$3 deadline name
    load_lab "$2"
    name=$(kind_comm "$kind")
    check_redis_host "$host"
    if redis_pid "$LAB_DIR" "$host" "$kind" >/dev/null; then
        die "$name on $host is already running"
    fi
    LAB_CONFIG=$(cat "$LAB_DIR/config.path" 2>/dev/null) || LAB_CONFIG=$LAB_DIR/vipctl.toml
    deadline=$((SECONDS + 10))
    lock_dir "$LAB_DIR" -w 10 || die "could not lock $LAB_DIR"
    spawn_daemon "$LAB_DIR" "$host" "$kind" "$LAB_DIR/$host/$kind.conf"
    wait_pidfile "$LAB_DIR" "$host" "$kind" "$deadline"
}

# kill-redis DIR HOST [SIGNAL]: default KILL.
cmd_kill_redis() {
    (($# == 2 || $# == 3)) || {
        usage
        exit 2
    }
    need_root
    signal_instance redis "$1" "$2" "${3:-KILL}"
}

# start-redis: bring back a killed redis-server with its original config (a
# former master comes back as master; sentinel then turns it into a replica).
cmd_start_redis() {
    (($# == 2)) || {
        usage
        exit 2
    }
    need_root
    local host=$2 out i
    start_instance redis "$1" "$host"
    for ((i = 0; i < 50; i++)); do
        out=$(rcli "$(ns_name "$LAB_ID" "$host")" "$(host_ip4 "$host")" "$REDIS_PORT" PING) || out=
        [[ $out != PONG ]] || {
            echo "started $(kind_comm redis) on $host (pid $(<"$LAB_DIR/$host/redis.pid"))"
            return 0
        }
        sleep 0.1
    done
    die "$(kind_comm redis) on $host does not answer PING"
}

# signal-sentinel DIR HOST SIGNAL: e.g. STOP/CONT to make a sentinel
# unreachable and back, KILL to kill it (start-sentinel brings it back).
cmd_signal_sentinel() {
    (($# == 3)) || {
        usage
        exit 2
    }
    need_root
    signal_instance sentinel "$1" "$2" "$3"
}

# start-sentinel DIR HOST: bring back a killed sentinel with its own
# (rewritten) config, so it remembers the current epoch.
cmd_start_sentinel() {
    (($# == 2)) || {
        usage
        exit 2
    }
    need_root
    start_instance sentinel "$1" "$2"
    echo "started $(kind_comm sentinel) on $2 (pid $(<"$LAB_DIR/$2/sentinel.pid"))"
}

# link DIR HOST up|down: plug or pull HOST's cable, i.e. its port on the
# switch, or in the routed lab its port on the router. The host's own eth0
# stays administratively up (it loses carrier).  On the router that is a
# cable cut the routers notice at once (the port goes down, so do its
# connected routes and BGP sessions); "cut" is the one they do not notice.
cmd_link() {
    (($# == 3)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    case $2 in h1 | h2 | h3 | cl) ;; *) die "unknown host '$2'" ;; esac
    case $3 in up | down) ;; *) die "link state must be up or down, not '$3'" ;; esac
    ip -n "$(ns_name "$LAB_ID" "$(infra_node)")" link set "$2" "$3"
    if ((ROUTED)); then echo "router port of $2 is $3"; else echo "switch port of $2 is $3"; fi
}

# cut DIR HOST on|off (routed lab): drop every packet between HOST and the
# router while both ends of the link stay up with carrier, as a failed
# switch in between or a hung host looks; only BFD (or the BGP hold timer)
# notices.  This kernel has no netem (no qdiscs at all) and the lab uses no
# packet filter, so each end's neighbour entries for the other end's
# addresses (IPv4, IPv6, IPv6 link-local) are pinned to a MAC no interface
# has: every unicast frame is still sent, and the receiving interface drops
# it as addressed to another host.  "off" removes the pinned entries; the
# kernel resolves the neighbours again on the next packet.
cmd_cut() {
    (($# == 3)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    need_routed cut
    local host=$2 rt ns addr
    case $host in h1 | h2 | h3 | cl) ;; *) die "unknown host '$host'" ;; esac
    case $3 in on | off) ;; *) die "cut must be on or off, not '$3'" ;; esac
    rt=$(ns_name "$LAB_ID" rt)
    ns=$(ns_name "$LAB_ID" "$host")
    local -a rt_side host_side
    # What the router sends to the host, and what the host sends to the router.
    rt_side=("$(host_ip4 "$host")" "$(host_ip6 "$host")" "$(link_local "$ns" eth0)")
    host_side=("$(net_field "$host" 2)" "$(net_field "$host" 4)" "$(link_local "$rt" "$host")")
    for addr in "${rt_side[@]}"; do
        cut_neigh "$3" "$rt" "$host" "$addr"
    done
    for addr in "${host_side[@]}"; do
        cut_neigh "$3" "$ns" eth0 "$addr"
    done
    if [[ $3 == on ]]; then
        echo "link of $host to the router is cut (both ends stay up)"
    else
        echo "link of $host to the router is whole again"
    fi
}

# link_local NS DEV -> DEV's IPv6 link-local address.
link_local() {
    local a
    a=$(ip -n "$1" -6 -o addr show dev "$2" scope link | awk '{ sub("/.*", "", $4); print $4; exit }')
    [[ -n $a ]] || die "$2 in $1 has no IPv6 link-local address"
    echo "$a"
}

# cut_neigh on|off NS DEV ADDR: pin ADDR's neighbour entry to NOBODY_MAC, or
# remove the pinned entry.
cut_neigh() {
    if [[ $1 == on ]]; then
        ip -n "$2" neigh replace "$4" lladdr "$NOBODY_MAC" dev "$3" nud permanent
    elif ip -n "$2" neigh show "$4" dev "$3" | grep -q "lladdr $NOBODY_MAC"; then
        ip -n "$2" neigh del "$4" dev "$3"
    fi
}

# isolate DIR HOST on|off (L2 lab): the partial cut.  HOST (h1, h2 or h3)
# loses every other Redis host, both ways: their Redis, sentinels and vipctl
# daemons, on IPv4 and IPv6; it keeps the client and the switch, and its link
# stays up with carrier, so the client still reaches HOST (and the VIP, where
# it is) while the other hosts' sentinels call HOST's Redis down.  The trick
# of "cut": for each pair (HOST, other host) each end's neighbour entries for
# the other's addresses (IPv4, IPv6, IPv6 link-local) are pinned to a MAC no
# interface has (nud permanent); frames are still sent, flooded by the bridge
# as unknown unicast, and dropped by every receiver as addressed to another
# host.  Nothing received repairs it: the kernel never replaces a permanent
# entry on a received ARP or neighbour advertisement (gratuitous or not; only
# "ip neigh" does), and the announcements of vipctl or of a hook concern the
# VIP's address, whose entries are left alone.  "off" removes the pinned
# entries between HOST and the others; the kernel resolves them again on the
# next packet.  Not in the routed lab: there every host's traffic crosses the
# router (see cut).
cmd_isolate() {
    (($# == 3)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    ((ROUTED == 0)) || die "isolate needs the L2 lab (in the routed lab every host's traffic crosses the router; see cut)"
    local host=$2 other ns ons addr
    check_redis_host "$host"
    case $3 in on | off) ;; *) die "isolate must be on or off, not '$3'" ;; esac
    ns=$(ns_name "$LAB_ID" "$host")
    ns_exists "$ns" || die "namespace $ns does not exist"
    for other in "${HOSTS[@]}"; do
        [[ $other != "$host" ]] || continue
        ons=$(ns_name "$LAB_ID" "$other")
        ns_exists "$ons" || die "namespace $ons does not exist"
        # What HOST sends to the other host, and what the other host sends to HOST.
        for addr in "$(host_ip4 "$other")" "$(host_ip6 "$other")" "$(link_local "$ons" eth0)"; do
            cut_neigh "$3" "$ns" eth0 "$addr"
        done
        for addr in "$(host_ip4 "$host")" "$(host_ip6 "$host")" "$(link_local "$ns" eth0)"; do
            cut_neigh "$3" "$ons" eth0 "$addr"
        done
    done
    if [[ $3 == on ]]; then
        echo "$host is cut off from the other Redis hosts (it keeps the client and the switch)"
    else
        echo "$host reaches the other Redis hosts again"
    fi
}

# routes DIR (routed lab): for each VIP prefix, the host(s) the router's
# kernel forwards it to, one line each: "192.0.2.100/32 h2", or "... -" when
# it has no route.  Read from the router's forwarding table (what packets
# actually follow), which zebra fills from bgpd's best path; the router's
# port names are the host names.
cmd_routes() {
    (($# == 1)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    need_routed routes
    local rt prefix fam out i
    local -a w hosts
    rt=$(ns_name "$LAB_ID" rt)
    ns_exists "$rt" || die "namespace $rt does not exist"
    for prefix in "$VIP4/$PREFIX4" "$VIP6/$PREFIX6"; do
        fam=-4
        [[ $prefix != *:* ]] || fam=-6
        out=$(ip -n "$rt" "$fam" -o route show exact "$prefix") || die "ip route show $prefix failed on the router"
        read -r -a w <<<"${out//\\/ }"
        hosts=()
        for ((i = 0; i + 1 < ${#w[@]}; i++)); do
            [[ ${w[i]} == dev ]] && hosts+=("${w[i + 1]}")
        done
        ((${#hosts[@]} > 0)) || hosts=(-)
        echo "$prefix ${hosts[*]}"
    done
}

# speaker DIR NODE ARGS... (routed lab): NODE's BGP speaker's own client
# with the lab's socket: birdc -s ... on a BIRD host, vtysh --vty_socket ...
# on an FRR host or the router (rt).  E.g. "speaker DIR h2 show protocols"
# or "speaker DIR rt -c 'show bgp summary'".
cmd_speaker() {
    (($# >= 2)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    need_routed speaker
    local node=$2 fdir
    shift 2
    case $node in h1 | h2 | h3 | rt) ;; *) die "no BGP speaker on '$node' (expected h1, h2, h3 or rt)" ;; esac
    if [[ $node != rt && $SPEAKER == bird ]]; then
        exec birdc -s "$LAB_DIR/$node/bird.ctl" "$@"
    fi
    fdir=$(frr_dir "$LAB_DIR" "$node")
    exec vtysh --vty_socket "$fdir" --config_dir "$fdir" "$@"
}

cmd_master() {
    (($# == 1 || $# == 2)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    local -a ask=("${HOSTS[@]}")
    local host out ip port
    if (($# == 2)); then
        check_redis_host "$2"
        ask=("$2")
    fi
    for host in "${ask[@]}"; do
        out=$(rcli "$(ns_name "$LAB_ID" "$host")" 127.0.0.1 "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME") || continue
        {
            read -r ip
            read -r port
        } <<<"$out" || true
        if [[ -n ${ip:-} && ${port:-} =~ ^[0-9]+$ ]]; then
            echo "$ip $port"
            return 0
        fi
    done
    die "no sentinel answered get-master-addr-by-name $MASTER_NAME (asked: ${ask[*]})"
}

cmd_vips() {
    (($# == 1)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    local host ns line
    local -a f found
    for host in "${HOSTS[@]}"; do
        ns=$(ns_name "$LAB_ID" "$host")
        ns_exists "$ns" || die "namespace $ns does not exist"
        found=()
        while read -r line; do
            read -r -a f <<<"$line"
            # -o format: IDX DEV FAMILY ADDR/PREFIX ...
            case ${f[3]:-} in
            "$VIP4"/* | "$VIP6"/*) found+=("${f[3]}") ;;
            esac
        # Every interface, not just eth0: "the VIP is nowhere else" includes lo.
        done < <(ip -n "$ns" -o addr show)
        ((${#found[@]} > 0)) || found=(-)
        echo "$host ${found[*]}"
    done
}

cmd_neigh() {
    (($# == 2)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    ((ROUTED == 0)) || die "neigh: in a routed lab the VIPs are not on the client's link (see lab.sh routes)"
    local ns out mac
    ns=$(ns_name "$LAB_ID" cl)
    ns_exists "$ns" || die "namespace $ns does not exist"
    out=$(ip -n "$ns" neigh show "$2") || die "ip neigh show '$2' failed"
    # Entries without lladdr (INCOMPLETE, FAILED) count as absent.
    mac=$(awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") { print $(i + 1); exit } }' <<<"$out")
    echo "${mac:--}"
}

main() {
    (($# >= 1)) || {
        usage
        exit 2
    }
    local cmd=$1
    shift
    case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    sweep) cmd_sweep "$@" ;;
    ns) cmd_ns "$@" ;;
    exec) cmd_exec "$@" ;;
    kill-redis) cmd_kill_redis "$@" ;;
    start-redis) cmd_start_redis "$@" ;;
    master) cmd_master "$@" ;;
    signal-sentinel) cmd_signal_sentinel "$@" ;;
    start-sentinel) cmd_start_sentinel "$@" ;;
    link) cmd_link "$@" ;;
    vips) cmd_vips "$@" ;;
    neigh) cmd_neigh "$@" ;;
    routes) cmd_routes "$@" ;;
    cut) cmd_cut "$@" ;;
    isolate) cmd_isolate "$@" ;;
    speaker) cmd_speaker "$@" ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        usage
        die "unknown subcommand '$cmd'"
        ;;
    esac
}

main "$@"
