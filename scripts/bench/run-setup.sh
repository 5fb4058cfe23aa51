#!/usr/bin/env bash
# One setup of scripts/bench.sh: builds one namespace lab (scripts/lab.sh)
# with real sentinels, puts the VIP mover of SETUP in place, and runs N
# failovers of each scenario, recording raw timestamps only.  The figures are
# computed afterwards from the saved logs (scripts/bench/analyze.py), so that
# this script's polling never blurs a measurement.
#
# Usage (as root): run-setup.sh SETUP N OUT SCENARIO...
#   SETUP     KIND or, for a vipctl KIND, KIND@base; either with ~SERVER after it
#   KIND      hook | watch | both | early | switch | fast | classic | keepalived |
#             routed-bird | routed-frr | routed-bird-early | routed-frr-early
#             (switch: the daemons with early claim, and the planned switchover done by
#             `vipctl switchover` instead of SENTINEL FAILOVER;
#             routed-bird, routed-frr: as `both` (hook and daemons) in the routed lab,
#             LAB_ROUTED=1, with BIRD or FRR as the hosts' BGP speaker: the VIPs are host
#             routes bound on lo;
#             routed-*-early: as routed-bird / routed-frr, the daemons with
#             `[watch] early_claim = true`, as in `early`;
#             fast: as early, with `[watch] fail_fast = true`)
#   @base     the same KIND with the baseline vipctl (BENCH_BASELINE) instead of VIPCTL:
#             as the daemons, the hook, and for `vipctl claim` / `vipctl switchover`; the
#             lab writer stays LAB_WRITER.  Not for classic or keepalived.
#   ~SERVER   the same setup in a lab brought up with LAB_SERVER=SERVER (scripts/servers.sh:
#             valkey8 or redis8) instead of Debian 12's redis 7.0 (redis7, the default, which
#             takes no suffix); e.g. early~valkey8, early@base~valkey8.  Every later lab.sh
#             call uses the build the lab was made with (LAB/server, kept as OUT/SETUP/server).
#             LAB_SERVER from the environment is ignored: the suffix alone picks the build.
#   SCENARIO  kill | partition | freeze | switchover | partial
#             (partial, L2 lab only: the master's host loses the other Redis hosts, their
#             sentinels and replicas, while the client still reaches it (lab.sh isolate);
#             healed 2 s after the new master holds the VIP)
#   OUT       results folder; this writes OUT/SETUP/ (lab.json, rows.tsv,
#             daemons.tsv, vipctl.txt (the binary under test and its --version),
#             the writer's output per failover, and every host's logs;
#             routed: also speakers.tsv, cuts.tsv, rt/routes.log and the speakers' logs)
# Environment (set by scripts/bench.sh): VIPCTL, LAB_WRITER (absolute paths),
# BENCH_BASELINE (absolute path of the baseline vipctl; needed for KIND@base only),
# BENCH_QUIET_S (quiet interval for the daemons' CPU/RSS, default 30).
#
# Timestamps, all CLOCK_REALTIME:
#   fault / heal   $EPOCHREALTIME right before the kill/link change (routed: the
#                  "lab.sh cut"; cuts.tsv has when that command was done)
#   VIP changes    "ip -ts -o monitor address" per host namespace
#   routes         routed: "ip -ts -o monitor route" in the router namespace
#   Redis/Sentinel their logs (ms); the writer prints ms per INCR attempt
#
# Exits non-zero when the lab cannot be brought back to a clean state; it
# always tears its lab down (trap), and lab.sh down kills every PID it
# recorded in LAB/extra.pids (monitors, writers, daemons, keepalived).

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly REPO=${HERE%/scripts/bench}
readonly LABSH=$REPO/scripts/lab.sh
# The lab's facts: load_facts fills these from the lab's lab.json once it is up.
HOSTS=() VIP4='' VIP4_CIDR='' REDIS_PORT='' SENTINEL_PORT='' MASTER='' LAB_MODE='' SERVER_COMM=''
declare -A NODE_NS=() NODE_IP4=()
# Sentinel refuses another failover of a master for 2x failover-timeout
# (5000 ms in the lab) after the last start or vote, plus up to 1 s of random
# delay: 11 s after the latest +try-failover/+vote-for-leader.
readonly NEXT_FAILOVER_MS=11000
# Bounds on every wait (seconds).  The partition wait is the issue's 15 s.
readonly T_SETUP=20 T_FAILOVER=30 T_PARTITION=15 T_HEALED=10 T_SETTLE=60 T_FIX=30 T_CLIENT=90

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
warn() {
    printf '%s: warning: %s\n' "$PROG" "$*" >&2
}
say() {
    printf '[%s] %s\n' "$(date +%T)" "$*"
}
now_us() {
    echo "${EPOCHREALTIME/./}"
}

(($# >= 4)) || die "usage: $PROG SETUP N OUT SCENARIO..."
SETUP=$1 N=$2 OUT=$3
shift 3
SCENARIOS=("$@")
# KIND says what runs; SETUP (KIND, KIND@base, either with ~SERVER) names the results and the lab;
# SERVER is the lab's server build.
SERVER=redis7 BUILD=$SETUP
if [[ $SETUP == *"~"* ]]; then
    BUILD=${SETUP%"~"*} SERVER=${SETUP##*"~"}
    [[ $BUILD != *"~"* ]] || die "setup '$SETUP' has more than one ~SERVER suffix"
    [[ $SERVER != redis7 ]] || die "setup '$SETUP': redis7 is the default server; name the setup without the suffix"
    read -r -a servers <<<"$("$REPO/scripts/servers.sh" names)"
    [[ " ${servers[*]} " == *" $SERVER "* ]] || die "setup '$SETUP': unknown server '$SERVER' (one of: ${servers[*]})"
fi
# Every lab.sh up below (L2 or routed) brings its lab up with this build.
export LAB_SERVER=$SERVER
KIND=${BUILD%@base}
BASE=0
[[ $KIND == "$BUILD" ]] || BASE=1
case $KIND in
hook | watch | both | early | switch | fast | classic | keepalived | routed-bird | routed-frr | routed-bird-early | routed-frr-early) ;;
*) die "unknown setup '$SETUP'" ;;
esac
# Routed setups: the routed lab (a router, a subnet per host, the VIPs as host
# routes on lo announced over BGP + BFD) with SPEAKER on the hosts.
ROUTED=0 SPEAKER=
case $KIND in routed-*) ROUTED=1 SPEAKER=${KIND#routed-} SPEAKER=${SPEAKER%-early} ;; esac
# The daemons with [watch] early_claim = true.
EARLY=0
case $KIND in early | switch | fast | routed-*-early) EARLY=1 ;; esac
# And with [watch] fail_fast = true.
FAST=0
[[ $KIND != fast ]] || FAST=1
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number (got '$N')"
[[ -x ${VIPCTL:-} && -x ${LAB_WRITER:-} ]] || die "VIPCTL and LAB_WRITER must name the built binaries"
if ((BASE)); then
    case $KIND in classic | keepalived) die "setup '$SETUP': $KIND runs no vipctl, so it has no @base" ;; esac
    [[ ${BENCH_BASELINE:-} == /* && -f $BENCH_BASELINE && -x $BENCH_BASELINE ]] ||
        die "setup '$SETUP' needs BENCH_BASELINE, the absolute path of the baseline vipctl (got '${BENCH_BASELINE:-}')"
    # The binary under test, everywhere this script or the lab runs vipctl.
    VIPCTL=$BENCH_BASELINE
fi
QUIET_S=${BENCH_QUIET_S:-30}
[[ $QUIET_S =~ ^[0-9]+$ ]] || die "BENCH_QUIET_S must be a number of seconds"
RES=$OUT/$SETUP
mkdir -p "$RES"
LAB=${SETUP/@/-}
LAB=/tmp/vipctl-labs/bench-${LAB/"~"/-}-$$

# load_facts: the lab's hosts, namespaces, addresses, VIP and ports from
# LAB/lab.json, which scripts/lab.sh (the one place that defines them) wrote.
# A copy stays with the raw logs: scripts/bench/analyze.py reads the same facts.
load_facts() {
    local kind a b c name bin
    cp -p -- "$LAB/lab.json" "$RES/lab.json"
    # The server build the lab was made with (its name), kept too; its binary from servers.sh.
    cp -p -- "$LAB/server" "$RES/server"
    read -r name <"$LAB/server" || die "could not read $LAB/server"
    [[ $name == "$SERVER" ]] || die "the lab runs server '$name', not $SERVER"
    bin=$("$REPO/scripts/servers.sh" bin "$name" server) || die "no binary for server $name"
    # As /proc/PID/comm shows the server: its binary's name, 15 characters at most.
    bin=${bin##*/}
    SERVER_COMM=${bin:0:15}
    while read -r kind a b c; do
        case $kind in
        host) HOSTS+=("$a") ;;
        node) NODE_NS[$a]=$b NODE_IP4[$a]=$c ;;
        switch) NODE_NS[sw]=$a ;;
        router) NODE_NS[rt]=$a ;;
        mode) LAB_MODE=$a ;;
        vip4) VIP4=${a%/*} VIP4_CIDR=$a ;;
        ports) REDIS_PORT=$a SENTINEL_PORT=$b ;;
        master) MASTER=$a ;;
        esac
    done < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
for h in j["redis_hosts"]:
    print("host", h)
for h, n in j["nodes"].items():
    print("node", h, n["ns"], n["ipv4"])
print("mode", j.get("mode", "l2"))
# The routed lab has no switch ("switch": null) but a router.
if j.get("switch"):
    print("switch", j["switch"]["ns"])
if j.get("router"):
    print("router", j["router"]["ns"])
print("vip4", j["vips"]["v4"])
print("ports", j["ports"]["redis"], j["ports"]["sentinel"])
print("master", j["master_name"])
' "$LAB/lab.json")
    if ((${#HOSTS[@]} == 0)) || [[ -z $VIP4 || -z $REDIS_PORT || -z $SENTINEL_PORT || -z $MASTER ]]; then
        die "could not read the lab's facts from $LAB/lab.json"
    fi
    if ((ROUTED)); then
        [[ $LAB_MODE == routed && -n ${NODE_NS[rt]:-} ]] || die "$LAB/lab.json is not a routed lab's (mode '$LAB_MODE')"
    else
        [[ $LAB_MODE == l2 && -n ${NODE_NS[sw]:-} ]] || die "$LAB/lab.json is not an L2 lab's (mode '$LAB_MODE')"
    fi
}
ip_of() {
    [[ -n ${NODE_IP4[$1]:-} ]] || die "unknown host '$1'"
    echo "${NODE_IP4[$1]}"
}
host_of() {
    local h
    for h in "${HOSTS[@]}"; do
        if [[ ${NODE_IP4[$h]} == "$1" ]]; then
            echo "$h"
            return 0
        fi
    done
    return 1
}

# save_logs: every log of the lab into RES (also after a failure, for a look).
save_logs() {
    local h f
    [[ -f $LAB/id ]] || return 0
    [[ ! -f $LAB/lab.json ]] || cp -p "$LAB/lab.json" "$RES/"
    for h in "${HOSTS[@]}"; do
        mkdir -p "$RES/$h"
        for f in sentinel.log redis.log ipmon.log vipctl.log watch.log watch.out classic-hook.log keepalived.log keepalived.conf; do
            [[ ! -f $LAB/$h/$f ]] || cp -p "$LAB/$h/$f" "$RES/$h/"
        done
        # Routed lab: the host's BGP speaker's logs (BIRD, or FRR's daemons).
        [[ ! -f $LAB/$h/bird.log ]] || cp -p "$LAB/$h/bird.log" "$RES/$h/"
        if [[ -d $LAB/$h/frr ]]; then
            mkdir -p "$RES/$h/frr"
            for f in "$LAB/$h"/frr/*.log; do
                [[ ! -f $f ]] || cp -p "$f" "$RES/$h/frr/"
            done
        fi
    done
    # Routed lab: the router's route changes and its FRR logs.
    if [[ -d $LAB/rt ]]; then
        mkdir -p "$RES/rt"
        for f in "$LAB"/rt/*.log; do
            [[ ! -f $f ]] || cp -p "$f" "$RES/rt/"
        done
    fi
}

cleanup() {
    local rc=$?
    trap '' INT TERM HUP
    save_logs || true
    "$LABSH" down "$LAB" >/dev/null 2>&1 || warn "lab.sh down $LAB failed; run: $LABSH down $LAB"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

lab_ns() {
    [[ -n ${NODE_NS[$1]:-} ]] || die "unknown host '$1'"
    echo "${NODE_NS[$1]}"
}

rcli() {
    local ns=$1 ip=$2 port=$3
    shift 3
    timeout --foreground -k 1 2 ip netns exec "$ns" redis-cli -h "$ip" -p "$port" "$@" 2>/dev/null
}

kv() {
    awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'
}

# spawn LOGFILE CMD...: background CMD for the lab's life; its PID goes to
# LAB/extra.pids at once so "lab.sh down" kills it whatever happens to us.
spawn() {
    local log=$1
    shift
    "$@" </dev/null >>"$log" 2>&1 &
    SPAWNED=$!
    echo "$SPAWNED" >>"$LAB/extra.pids"
    disown "$SPAWNED"
}

# holders4: the hosts holding the IPv4 VIP now (space-separated).  Three
# "ip" calls, no lab.sh start-up, to keep the polling light.
holders4() {
    local h s=
    for h in "${HOSTS[@]}"; do
        if ip -n "$(lab_ns "$h")" -o -4 addr show | grep -qF " $VIP4/"; then s+=" $h"; fi
    done
    echo "${s# }"
}

# routed_to4: routed lab, the hosts the router forwards the IPv4 VIP's host
# route to now (space-separated; nothing when it has no route), read from the
# router's kernel table as "lab.sh routes" does (its ports are named after the
# hosts), in one "ip" call.
routed_to4() {
    local out i s=
    local -a w
    out=$(ip -n "$(lab_ns rt)" -4 -o route show exact "$VIP4_CIDR" 2>/dev/null) || out=
    read -r -a w <<<"${out//\\/ }"
    for ((i = 0; i + 1 < ${#w[@]}; i++)); do
        if [[ ${w[i]} == dev ]]; then s+=" ${w[i + 1]}"; fi
    done
    echo "${s# }"
}

# named_by HOST...: the master each listed host's sentinel names (- if none).
named_by() {
    local h out m
    local -a named=()
    for h in "$@"; do
        out=$(rcli "$(lab_ns "$h")" "$(ip_of "$h")" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER") || out=
        m=$(host_of "$(awk 'NR == 1' <<<"$out")") || m=-
        named+=("$m")
    done
    echo "${named[*]}"
}

# log_latest_us AFTER_US REGEX FILE...: the newest timestamp (us) of a Redis
# or Sentinel log line matching REGEX at or after AFTER_US, or nothing.
log_latest_us() {
    local after=$1 re=$2 line us pid d mo y t best=
    shift 2
    while read -r line; do
        read -r pid d mo y t _ <<<"$line"
        [[ $pid == *:* ]] || continue
        us=$(date -d "$d $mo $y $t" +%s%6N 2>/dev/null) || continue
        if ((us >= after)) && [[ -z $best || $us -gt $best ]]; then best=$us; fi
    done < <(grep -hE -- "$re" "$@" 2>/dev/null || true)
    echo "$best"
}

# unsettled MASTER READY_US: what keeps the next failover from being a clean
# repeat (nothing when ready): the failover-timeout guard, the IPv4 VIP on
# MASTER alone (routed lab: and the router's route for it to MASTER alone),
# every sentinel naming MASTER with flags "master" (no failover in progress),
# 2 replicas and 2 other sentinels, and both replicas linked.
unsettled() {
    local master=$1 ready=$2 mip h ns ip out
    mip=$(ip_of "$master")
    (($(now_us) >= ready)) || echo " failover-timeout guard ($(((ready - $(now_us)) / 1000)) ms left);"
    out=$(holders4)
    [[ $out == "$master" ]] || echo " IPv4 VIP held by '$out', not $master alone;"
    if ((ROUTED)); then
        out=$(routed_to4)
        [[ $out == "$master" ]] || echo " router routes $VIP4_CIDR to '$out', not $master alone;"
    fi
    for h in "${HOSTS[@]}"; do
        ns=$(lab_ns "$h")
        ip=$(ip_of "$h")
        out=$(rcli "$ns" "$ip" "$SENTINEL_PORT" SENTINEL master "$MASTER") || out=
        [[ $(kv ip <<<"$out") == "$mip" ]] || echo " sentinel $h names '$(kv ip <<<"$out")';"
        [[ $(kv flags <<<"$out") == master ]] || echo " sentinel $h flags '$(kv flags <<<"$out")';"
        [[ $(kv num-slaves <<<"$out") == 2 ]] || echo " sentinel $h num-slaves $(kv num-slaves <<<"$out");"
        [[ $(kv num-other-sentinels <<<"$out") == 2 ]] || echo " sentinel $h num-other-sentinels $(kv num-other-sentinels <<<"$out");"
        [[ $h == "$master" ]] && continue
        out=$(rcli "$ns" "$ip" "$REDIS_PORT" INFO replication | tr -d '\r') || out=
        [[ $out == *master_host:"$mip"* && $out == *master_link_status:up* ]] || echo " redis $h not linked to $master;"
    done
}

# consensus: the host all three sentinels name as master, or nothing.
consensus() {
    local a b c
    read -r a b c <<<"$(named_by "${HOSTS[@]}")"
    if [[ $a =~ ^h[123]$ && $a == "$b" && $b == "$c" ]]; then echo "$a"; fi
}

# wait_settled MASTER READY_US SECONDS: 0 when settled in time; prints the
# last reasons otherwise.  When all sentinels name another host than MASTER
# (Sentinel failed over a second time, away from the replica it had just
# promoted), that host is the one to settle on.
wait_settled() {
    local master=$1 ready=$2 deadline=$((SECONDS + $3)) pending="" i m
    for ((i = 0; i < 4 * $3; i++)); do
        m=$(consensus)
        pending=$(unsettled "${m:-$master}" "$ready")
        [[ -n $pending ]] || return 0
        ((SECONDS < deadline)) || break
        sleep 0.5
    done
    echo "$pending" | tr '\n' ' '
    return 1
}

# fix_vip MASTER: put the IPv4 VIP on MASTER alone by hand, as an operator
# would, when the setup under test left it elsewhere.  Counted in rows.tsv.
# Routed lab: the VIP is a host route bound on lo, which the host's speaker
# then announces (or withdraws).
fix_vip() {
    local master=$1 h ns dev=eth0
    if ((ROUTED)); then dev=lo; fi
    for h in "${HOSTS[@]}"; do
        ns=$(lab_ns "$h")
        if [[ $h == "$master" ]]; then
            ip -n "$ns" addr add "$VIP4_CIDR" dev "$dev" 2>/dev/null || true
        else
            ip -n "$ns" addr del "$VIP4_CIDR" dev "$dev" 2>/dev/null || true
        fi
    done
}

# client_writes LOG: true when the writer's last 20 attempts (~0.2 s) all
# succeeded.  The VIP being on the right host is not enough: a client whose
# neighbour entry still names another host's MAC keeps timing out until the
# entry expires, and that outage belongs to this failover, not the next.
client_writes() {
    local n
    n=$(tail -n 20 "$1" 2>/dev/null | grep -c ' ok ') || n=0
    ((n == 20))
}

# --- daemons' resources ----------------------------------------------------------

DAEMONS=() # "HOST PID"
CLK_TCK=$(getconf CLK_TCK)

# proc_cpu PID: utime+stime (ticks) of PID plus its children (keepalived's
# VRRP process); proc_mem PID FIELD: VmRSS/VmHWM (kB), summed the same way.
family() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}
proc_cpu() {
    local p stat rest sum=0
    local -a f
    for p in $(family "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
proc_mem() {
    local p v sum=0
    for p in $(family "$1"); do
        v=$(awk -v k="$2:" '$1 == k { print $2 }' "/proc/$p/status" 2>/dev/null) || v=0
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# daemon_sample PHASE: one line per daemon into daemons.tsv.
daemon_sample() {
    local d h p
    for d in "${DAEMONS[@]}"; do
        read -r h p <<<"$d"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$h" "$p" "$(now_us)" "$(proc_cpu "$p")" \
            "$(proc_mem "$p" VmRSS)" "$(proc_mem "$p" VmHWM)" "$CLK_TCK" >>"$RES/daemons.tsv"
    done
}

# Routed lab: the BGP speakers, sampled like the daemons into speakers.tsv,
# one line per process (the report sums FRR's zebra, bgpd and bfdd per host).
SPEAKERS=() # "HOST NAME PID"; HOST rt is the router's FRR
speaker_sample() {
    local d h n p
    for d in "${SPEAKERS[@]}"; do
        read -r h n p <<<"$d"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$h" "$n" "$p" "$(now_us)" "$(proc_cpu "$p")" \
            "$(proc_mem "$p" VmRSS)" "$(proc_mem "$p" VmHWM)" "$CLK_TCK" >>"$RES/speakers.tsv"
    done
}
# find_speakers: fill SPEAKERS from the lab's pidfiles (BIRD: LAB/hN/bird.pid;
# FRR: LAB/hN/frr/NAME.pid, the router's LAB/rt/NAME.pid), each checked to
# be the program it names.
find_speakers() {
    local h n p dir
    local -a names
    for h in "${HOSTS[@]}" rt; do
        if [[ $h == rt ]]; then
            dir=$LAB/rt names=(zebra bgpd bfdd)
        elif [[ $SPEAKER == bird ]]; then
            dir=$LAB/$h names=(bird)
        else
            dir=$LAB/$h/frr names=(zebra bgpd bfdd)
        fi
        for n in "${names[@]}"; do
            p=$(cat "$dir/$n.pid" 2>/dev/null) || die "no pidfile $dir/$n.pid"
            [[ $p =~ ^[0-9]+$ && $(cat "/proc/$p/comm" 2>/dev/null) == "$n" ]] || die "$dir/$n.pid ($p) is not a running $n"
            SPEAKERS+=("$h $n $p")
        done
    done
}

# --- bring-up ----------------------------------------------------------------------

say "$SETUP: building the lab $LAB"
rm -rf -- "$RES"
mkdir -p "$RES"
: >"$RES/rows.tsv"
printf '%s\t%s\n' "$VIPCTL" "$("$VIPCTL" --version 2>&1 | head -n 1)" >"$RES/vipctl.txt"
case $KIND in
hook | both | routed-*) export LAB_HOOK=$VIPCTL ;;
classic) export LAB_HOOK=$HERE/classic-hook-timed.sh ;;
*) unset LAB_HOOK ;;
esac
if ((ROUTED)); then
    LAB_ROUTED=1 LAB_SPEAKER=$SPEAKER LAB_OWNER_PID=$$ "$LABSH" up "$LAB" >/dev/null
else
    LAB_OWNER_PID=$$ "$LABSH" up "$LAB" >/dev/null
fi
load_facts
for h in "${HOSTS[@]}"; do
    spawn "$LAB/$h/ipmon.log" ip -ts -o -n "$(lab_ns "$h")" monitor address
done
if ((ROUTED)); then
    # The router's forwarding table: every route zebra installs, replaces or
    # deletes (the VIPs' host routes from bgpd's best path).
    spawn "$LAB/rt/routes.log" ip -ts -o -n "$(lab_ns rt)" monitor route
    find_speakers
fi
# "ip monitor" prints nothing once subscribed; give it a moment.
sleep 0.3

CONF=$LAB/vipctl.toml
if ((EARLY)); then
    # The lab config already has a [watch] table: add the key under it
    # (a second [watch] table would be refused).
    CONF=$LAB/vipctl-early.toml
    sed '/^\[watch\]/a early_claim = true' "$LAB/vipctl.toml" >"$CONF"
    grep -q '^early_claim = true' "$CONF" || die "could not add early_claim to $CONF"
fi
if ((FAST)); then
    sed -i '/^\[watch\]/a fail_fast = true' "$CONF"
    grep -q '^fail_fast = true' "$CONF" || die "could not add fail_fast to $CONF"
fi

case $KIND in
hook)
    # Only the hook: nothing binds the VIP until the first failover, so the
    # operator's initial claim.
    ip netns exec "$(lab_ns h1)" env VIPCTL_LOG_FILE="$LAB/h1/vipctl.log" \
        "$VIPCTL" --config "$CONF" claim >"$RES/claim.out" 2>&1 || die "vipctl claim on h1 failed: $(cat "$RES/claim.out")"
    ;;
classic)
    # "The VIP must be added by hand the first time": the hook's own claim
    # branch, run once on h1 (not through the timing wrapper).
    ip netns exec "$(lab_ns h1)" "$HERE/classic-hook.sh" "$MASTER" leader start 0.0.0.0 0 "$(ip_of h1)" "$REDIS_PORT"
    ;;
watch | both | early | switch | fast | routed-*)
    for h in "${HOSTS[@]}"; do
        spawn "$LAB/$h/watch.out" env VIPCTL_SOCKET="$LAB/$h/vipctl.sock" VIPCTL_LOG_FILE="$LAB/$h/watch.log" \
            ip netns exec "$(lab_ns "$h")" "$VIPCTL" --config "$CONF" watch
        # env and ip netns exec both exec: SPAWNED is vipctl's own PID.
        DAEMONS+=("$h $SPAWNED")
    done
    for h in "${HOSTS[@]}"; do
        for ((i = 0; i < 10 * T_SETUP; i++)); do
            [[ -S $LAB/$h/vipctl.sock ]] && break
            sleep 0.1
        done
        [[ -S $LAB/$h/vipctl.sock ]] || die "vipctl watch on $h did not open its socket: $(tail -n 5 "$LAB/$h/watch.out")"
    done
    ;;
keepalived)
    for h in "${HOSTS[@]}"; do
        DAEMONS+=("$h $("$HERE/keepalived.sh" start "$LAB" "$h")")
    done
    ;;
esac

for ((i = 0; i < 10 * T_SETUP; i++)); do
    [[ $(holders4) == h1 ]] && break
    sleep 0.1
done
[[ $(holders4) == h1 ]] || die "the IPv4 VIP is not on h1 alone after ${T_SETUP}s (held by '$(holders4)')"
if ((ROUTED)); then
    for ((i = 0; i < 10 * T_SETUP; i++)); do
        [[ $(routed_to4) == h1 ]] && break
        sleep 0.1
    done
    [[ $(routed_to4) == h1 ]] || die "the router does not route $VIP4_CIDR to h1 alone after ${T_SETUP}s (routes to '$(routed_to4)')"
    say "$SETUP: VIP on h1, routed to h1"
else
    say "$SETUP: VIP on h1"
fi

if ((${#DAEMONS[@]} > 0)); then
    # Quiet interval: nothing happens in the lab but the sentinels' chatter
    # (routed: and the speakers' BGP keepalives and BFD packets).
    daemon_sample quiet-start
    ((${#SPEAKERS[@]} == 0)) || speaker_sample quiet-start
    sleep "$QUIET_S"
    daemon_sample quiet-end
    ((${#SPEAKERS[@]} == 0)) || speaker_sample quiet-end
fi

# --- failovers ---------------------------------------------------------------------

# failover SCENARIO I OLD: one measured failover away from OLD; sets NEW.
failover() {
    local scen=$1 i=$2 old=$3 pid fault heal=0 end new="" h named j ready w_pid bound settle fixed=0 settled=1 client final m others=()
    for h in "${HOSTS[@]}"; do [[ $h == "$old" ]] || others+=("$h"); done
    pid=$(<"$LAB/$old/redis.pid")
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$SERVER_COMM" ]] || die "$SERVER_COMM on $old (pid $pid) is not running"

    # The client writes through the VIP from 1 s before the fault until the
    # lab has settled (bounded by its own --duration-ms as well).
    spawn "$RES/writer-$scen-$i.log" ip netns exec "$(lab_ns cl)" "$LAB_WRITER" "$VIP4" "$REDIS_PORT" --interval-ms 10 --duration-ms 180000
    w_pid=$SPAWNED
    sleep 1

    # The fault itself is a builtin (kill) or one "ip" call, right after the stamp.
    fault=$(now_us)
    case $scen in
    kill) kill -KILL "$pid" ;;
    freeze) kill -STOP "$pid" ;;
    partial) "$LABSH" isolate "$LAB" "$old" on >/dev/null ;;
    partition)
        if ((ROUTED)); then
            # The link drops every packet while both ends stay up: only BFD notices.
            "$LABSH" cut "$LAB" "$old" on >/dev/null
            # When the cut was complete (lab.sh does a few "ip neigh" calls).
            printf '%s\t%s\tcut\t%s\t%s\n' "$scen" "$i" "$fault" "$(now_us)" >>"$RES/cuts.tsv"
        else
            ip -n "$(lab_ns sw)" link set "$old" down
        fi
        ;;
    switchover)
        # A planned switchover, asked of another host's sentinel: with vipctl switchover in its
        # setup, SENTINEL FAILOVER otherwise (in the background: it returns at once anyway).
        if [[ $KIND == switch ]]; then
            spawn "$RES/switchover-$i.out" env VIPCTL_LOG_FILE="$LAB/${others[0]}/vipctl.log" \
                ip netns exec "$(lab_ns "${others[0]}")" "$VIPCTL" --config "$CONF" switchover
        else
            rcli "$(lab_ns "${others[0]}")" "$(ip_of "${others[0]}")" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER" >/dev/null
        fi
        ;;
    esac

    # The failover is done when another host holds the VIP and the sentinels
    # that can see it name that host (the cut-off host's sentinel cannot).
    bound=$T_FAILOVER
    [[ $scen != partition && $scen != partial ]] || bound=$T_PARTITION
    local -a askers=("${HOSTS[@]}")
    [[ $scen != partition && $scen != partial ]] || askers=("${others[@]}")
    for ((j = 0; j < 10 * bound; j++)); do
        for h in $(holders4); do
            [[ $h != "$old" ]] || continue
            named=$(named_by "${askers[@]}")
            if [[ $named == "$h $h"* && $named == *"$h" ]]; then
                new=$h
                break 2
            fi
        done
        ((j % 10 != 9)) || [[ $(now_us) -lt $((fault + bound * 1000000)) ]] || break
        sleep 0.1
    done
    if [[ -z $new ]]; then
        # No VIP on a new master in time: follow Sentinel anyway, so the rest
        # of the run continues; the analysis shows the missing VIP.
        named=$(named_by "${askers[@]}")
        new=$(awk '{ print $1 }' <<<"$named")
        warn "$SETUP $scen #$i: no VIP on a new master within ${bound}s (holders '$(holders4)', sentinels name '$named')"
        [[ $new =~ ^h[123]$ && $new != "$old" ]] || {
            sleep 5
            new=$(named_by "${askers[@]}" | awk '{ print $1 }')
        }
        [[ $new =~ ^h[123]$ && $new != "$old" ]] || die "$SETUP $scen #$i: Sentinel did not fail over"
    fi

    # Undo the fault.
    case $scen in
    kill) "$LABSH" start-redis "$LAB" "$old" >/dev/null ;;
    freeze) kill -CONT "$pid" ;;
    partial)
        # The issue's setup: healed 2 s after the new master holds the VIP.
        sleep 2
        heal=$(now_us)
        "$LABSH" isolate "$LAB" "$old" off >/dev/null
        sleep "$T_HEALED"
        ;;
    partition)
        heal=$(now_us)
        if ((ROUTED)); then
            "$LABSH" cut "$LAB" "$old" off >/dev/null
            printf '%s\t%s\theal\t%s\t%s\n' "$scen" "$i" "$heal" "$(now_us)" >>"$RES/cuts.tsv"
        else
            ip -n "$(lab_ns sw)" link set "$old" up
        fi
        sleep "$T_HEALED"
        ;;
    esac

    ready=$(log_latest_us "$fault" ' [+](try-failover|vote-for-leader) ' "$LAB"/h?/sentinel.log)
    ready=$((${ready:-$fault} + NEXT_FAILOVER_MS * 1000))
    if ! settle=$(wait_settled "$new" "$ready" "$T_SETTLE"); then
        settled=0
        m=$(consensus)
        warn "$SETUP $scen #$i: not settled within ${T_SETTLE}s:$settle; putting the VIP on ${m:-$new} by hand"
        fix_vip "${m:-$new}"
        fixed=1
        settle=$(wait_settled "$new" "$ready" "$T_FIX") || die "$SETUP $scen #$i: the lab did not settle:$settle"
    fi
    # The master the next failover starts from (differs from NEW after a double failover).
    final=$(consensus)
    final=${final:-$new}
    [[ $final == "$new" ]] || warn "$SETUP $scen #$i: Sentinel failed over again, to $final"
    # The window ends when the client writes through the VIP again (bounded).
    client=0
    for ((j = 0; j < 10 * T_CLIENT; j++)); do
        if client_writes "$RES/writer-$scen-$i.log"; then
            client=1
            break
        fi
        sleep 0.1
    done
    ((client)) || warn "$SETUP $scen #$i: the client still cannot write through the VIP ${T_CLIENT}s after the lab settled"
    end=$(now_us)
    kill "$w_pid" 2>/dev/null || true
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$i" "$old" "$new" "$fault" "$heal" "$end" "$settled" "$fixed" "$client" >>"$RES/rows.tsv"
    say "  $SETUP $scen #$i: $old -> $new ($(((end - fault) / 1000)) ms to settle)"
    NEW=$final
}

master=h1
((${#DAEMONS[@]} == 0)) || daemon_sample failovers-start
((${#SPEAKERS[@]} == 0)) || speaker_sample failovers-start
for scen in "${SCENARIOS[@]}"; do
    case $scen in kill | partition | freeze | switchover) ;; partial) ((ROUTED == 0)) || continue ;; *) die "unknown scenario '$scen'" ;; esac
    # The switchover setup is about the planned switchover only.
    [[ $KIND != switch || $scen == switchover ]] || continue
    for ((i = 1; i <= N; i++)); do
        failover "$scen" "$i" "$master"
        master=$NEW
    done
done
((${#DAEMONS[@]} == 0)) || daemon_sample failovers-end
((${#SPEAKERS[@]} == 0)) || speaker_sample failovers-end
say "$SETUP: done"
