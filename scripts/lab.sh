#!/usr/bin/env bash
# Network-namespace test lab for vipctl.
#
# Builds a private L2 segment out of network namespaces: one "switch"
# namespace holding a bridge, three Redis hosts (h1 h2 h3, each running
# redis-server and redis-sentinel) and one client (cl).  Nothing is ever
# attached to the root namespace or to a real interface, so the lab cannot
# disturb the machine's own networking.  Only documentation address space is
# used (198.51.100.0/24, 2001:db8::/32).
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
#   lab.sh master DIR [HOST]       print "IP PORT" of the master per sentinel
#   lab.sh vips DIR                print the VIPs present on each host (any interface)
#   lab.sh neigh DIR VIP           print the client's neighbour MAC for VIP
# HOST is one of h1 h2 h3 cl sw.  See usage() below for the environment.
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
# The VIPs sit in the hosts' own subnets, with the same prefix lengths.
readonly VIP4=198.51.100.100
readonly VIP6=2001:db8:51::100
readonly PREFIX4=24
readonly PREFIX6=64
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
HOST: h1 h2 h3 cl sw.  Callers should create labs as /tmp/vipctl-labs/NAME.
Environment for "up":
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
EOF
}

now_ms() {
    date +%s%3N
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces need CAP_SYS_ADMIN)"
}

need_tools() {
    local t missing=()
    for t in ip redis-server redis-sentinel redis-cli sysctl flock timeout; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) ||
        die "missing commands: ${missing[*]} (run scripts/install-deps.sh as root)"
}

# host_ip4 HOST -> the fixed IPv4 of a node.
host_ip4() {
    case $1 in
    h1) echo 198.51.100.11 ;;
    h2) echo 198.51.100.12 ;;
    h3) echo 198.51.100.13 ;;
    cl) echo 198.51.100.50 ;;
    *) die "unknown host '$1'" ;;
    esac
}

host_ip6() {
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
    h1 | h2 | h3 | cl | sw) ;;
    *) die "unknown host '$1' (expected h1, h2, h3, cl or sw)" ;;
    esac
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
    case $kind in
    redis) [[ $comm == redis-server ]] || return 1 ;;
    sentinel) [[ $comm == redis-sentinel ]] || return 1 ;;
    esac
    echo "$pid"
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
    warn "pids ${alive[*]} ignored SIGTERM for 3 s; sending SIGKILL"
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

# load_lab DIR: set LAB_DIR and LAB_ID for the non-up subcommands.
load_lab() {
    LAB_DIR=$(abs_dir "$1")
    [[ -f $LAB_DIR/id ]] || die "no lab in $LAB_DIR (missing $LAB_DIR/id; run 'lab.sh up $LAB_DIR')"
    LAB_ID=$(<"$LAB_DIR/id")
    [[ $LAB_ID =~ ^[0-9a-f]{6}$ ]] || die "corrupt lab id in $LAB_DIR/id"
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
    local dir=$1 id pid host ns round kind
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

    # Anything still running inside the lab's namespaces (a hook orphaned by
    # its sentinel, a process started via "lab.sh exec ... &" and not
    # recorded, a redis whose pidfile was not written yet because "up" was
    # interrupted) would keep the namespace and its veths alive after
    # "ip netns del", so kill those too.  Bounded rounds, in case something
    # forks while we look.
    for ((round = 0; round < 3; round++)); do
        pids=()
        for host in "${ALL_NODES[@]}" sw; do
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
    # in the switch; deleting the switch destroys the bridge.
    for host in "${ALL_NODES[@]}" sw; do
        ns=$(ns_name "$id" "$host")
        rm -rf -- "/etc/netns/$ns"
        ns_exists "$ns" || continue
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

# spawn_daemon DIR HOST KIND CONF: start redis-server/redis-sentinel inside
# the host's namespace.  They daemonise themselves and write their own
# pidfile, so the recorded PID is the real redis process (not a wrapper),
# and they detach from our stdout, so a caller reading our output (a Rust
# test using Command::output) is not kept waiting.
spawn_daemon() {
    local dir=$1 host=$2 kind=$3 conf=$4 ns bin
    ns=$(ns_name "$LAB_ID" "$host")
    case $kind in
    redis) bin=redis-server ;;
    sentinel) bin=redis-sentinel ;;
    esac
    rm -f -- "$dir/$host/$kind.pid"
    if ! (
        # Close every inherited descriptor above stderr: our lock (fd 9)
        # and anything the caller leaked to us (e.g. a pipe its harness
        # waits on) would otherwise stay open as long as the daemon runs.
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
        done
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
        echo "bind $ip 127.0.0.1"
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
        echo "sentinel down-after-milliseconds $MASTER_NAME 1000"
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
#    "redis_hosts": ["h1", "h2", "h3"], "client": "cl",
#    "switch": {"ns": "...", "bridge": "br0"},
#    "nodes": {"h1": {"ns", "interface", "ipv4", "ipv6", "mac", "role"}, ...},
#    "vips": {"v4": "ADDR/PREFIX", "v6": "ADDR/PREFIX"},
#    "ports": {"redis": N, "sentinel": N, "sentinel_tls": N or null}}
write_lab_json() {
    local dir=$1 host sep tls=null
    [[ -z ${LAB_TLS_DIR:-} ]] || tls=$SENTINEL_TLS_PORT
    {
        printf '{\n'
        printf '  "id": %s,\n' "$(json_str "$LAB_ID")"
        printf '  "dir": %s,\n' "$(json_str "$dir")"
        printf '  "config": %s,\n' "$(json_str "$LAB_CONFIG")"
        printf '  "master_name": %s,\n' "$(json_str "$MASTER_NAME")"
        printf '  "redis_hosts": ['
        sep=
        for host in "${HOSTS[@]}"; do
            printf '%s%s' "$sep" "$(json_str "$host")"
            sep=', '
        done
        printf '],\n'
        printf '  "client": %s,\n' "$(json_str cl)"
        printf '  "switch": {"ns": %s, "bridge": "br0"},\n' "$(json_str "$(ns_name "$LAB_ID" sw)")"
        printf '  "nodes": {\n'
        sep=
        for host in "${ALL_NODES[@]}"; do
            printf '%s    %s: {"ns": %s, "interface": "eth0", "ipv4": %s, "ipv6": %s, "mac": %s, "role": %s}' \
                "$sep" "$(json_str "$host")" "$(json_str "$(ns_name "$LAB_ID" "$host")")" \
                "$(json_str "$(host_ip4 "$host")")" "$(json_str "$(host_ip6 "$host")")" \
                "$(json_str "$(host_mac "$host")")" "$(json_str "$(host_role "$host")")"
            sep=$',\n'
        done
        printf '\n  },\n'
        printf '  "vips": {"v4": %s, "v6": %s},\n' "$(json_str "$VIP4/$PREFIX4")" "$(json_str "$VIP6/$PREFIX6")"
        printf '  "ports": {"redis": %d, "sentinel": %d, "sentinel_tls": %s}\n' "$REDIS_PORT" "$SENTINEL_PORT" "$tls"
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
    need_tools
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
        ns_exists "$(ns_name "$id" sw)" || break
    done
    if ns_exists "$(ns_name "$id" sw)"; then die "could not pick an unused lab id"; fi
    LAB_ID=$id
    # id first: teardown treats a directory with an id as a lab it may remove.
    echo "$id" >"$dir/id"
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

    build_network

    [[ $LAB_CONFIG != "$dir/vipctl.toml" ]] || write_vipctl_conf "$LAB_CONFIG"
    for host in "${HOSTS[@]}"; do
        mkdir -p -- "$dir/$host"
        write_redis_conf "$dir" "$host"
        write_sentinel_conf "$dir" "$host"
    done

    # Redis first and replicas linked before any sentinel starts: sentinel
    # learns replicas from the master's INFO, which it refreshes only every
    # 10 s, so starting it early would make "up" slow.
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
    write_lab_json "$dir"

    UP_ARMED=0
    trap - EXIT INT TERM HUP
    print_summary "$dir" "$(($(now_ms) - t0))"
}

print_summary() {
    local dir=$1 ms=$2 host
    printf 'lab up in %d.%03ds: %s (id %s)\n' $((ms / 1000)) $((ms % 1000)) "$dir" "$LAB_ID"
    printf '  %-3s %-12s bridge br0 (STP off, multicast snooping off)\n' sw "$(ns_name "$LAB_ID" sw)"
    for host in "${ALL_NODES[@]}"; do
        printf '  %-3s %-12s %-14s %-16s %s  %s' "$host" "$(ns_name "$LAB_ID" "$host")" \
            "$(host_ip4 "$host")" "$(host_ip6 "$host")" "$(host_mac "$host")" "$(host_role "$host")"
        if [[ $host != cl ]]; then
            printf '  redis pid %s  sentinel pid %s' "$(<"$dir/$host/redis.pid")" "$(<"$dir/$host/sentinel.pid")"
        fi
        printf '\n'
    done
    printf '  hook    %s\n' "${LAB_HOOK:-(none)}"
    printf '  config  %s\n' "$LAB_CONFIG"
    printf '  vips    %s/%s %s/%s (assigned by vipctl)\n' "$VIP4" "$PREFIX4" "$VIP6" "$PREFIX6"
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
    local kind=$1 sig=${4^^} pid name=redis-sentinel
    [[ $kind != redis ]] || name=redis-server
    load_lab "$2"
    check_redis_host "$3"
    pid=$(redis_pid "$LAB_DIR" "$3" "$kind") ||
        die "$name on $3 is not running (pidfile $LAB_DIR/$3/$kind.pid is missing or stale)"
    kill -s "${sig#SIG}" "$pid" || die "could not send SIG${sig#SIG} to $name on $3 (pid $pid)"
    echo "sent SIG${sig#SIG} to $name on $3 (pid $pid)"
}

# start_instance KIND DIR HOST: starts HOST's redis-server or redis-sentinel
# again with its own config file and waits (bounded) for its pidfile.
start_instance() {
    local kind=$1 host=$3 deadline name=redis-sentinel
    [[ $kind != redis ]] || name=redis-server
    load_lab "$2"
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
            echo "started redis-server on $host (pid $(<"$LAB_DIR/$host/redis.pid"))"
            return 0
        }
        sleep 0.1
    done
    die "redis-server on $host does not answer PING"
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
    echo "started redis-sentinel on $2 (pid $(<"$LAB_DIR/$2/sentinel.pid"))"
}

# link DIR HOST up|down: plug or pull HOST's cable, i.e. its port on the
# switch. The host's own eth0 stays administratively up (it loses carrier).
cmd_link() {
    (($# == 3)) || {
        usage
        exit 2
    }
    need_root
    load_lab "$1"
    case $2 in h1 | h2 | h3 | cl) ;; *) die "unknown host '$2'" ;; esac
    case $3 in up | down) ;; *) die "link state must be up or down, not '$3'" ;; esac
    ip -n "$(ns_name "$LAB_ID" sw)" link set "$2" "$3"
    echo "switch port of $2 is $3"
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
