#!/usr/bin/env bash
# Tests the vipctl .deb under real systemd, with the distributions' own sentinel units: for each
# release and server, three systemd-nspawn containers booted from a cached Debian root
# (scripts/debian-roots.sh), one per lab host, each in that host's network namespace of a lab
# (scripts/lab.sh, LAB_SERVERS=0: the network only; Redis and Sentinel run in the containers as
# Debian ships them). In each run:
#   - the .deb installs with dpkg -i; Debian's sentinel unit runs the hook (sentinel.conf names
#     /usr/libexec/vipctl/vipctl) in its sandbox, and the hook hands its event to
#     vipctl-watch.service over the socket and exits with the daemon's verdict;
#   - vipctl-watch.service is Type=notify, runs with CAP_NET_ADMIN and CAP_NET_RAW only, and the
#     watchdog restarts it when it hangs (SIGSTOP); systemd-analyze security <= 2.0;
#   - a failover (the master's Redis stopped) moves the VIP to the new master alone;
#   - dpkg -i of a newer build while sentinel runs leaves the hook executable in sentinel's
#     sandbox, and a second failover (SENTINEL FAILOVER) still runs it;
#   - dpkg -r refuses while sentinel.conf names the hook; dpkg -P then removes everything.
# One `ok`/`FAIL`/`SKIPPED` line per item; exit 1 if anything FAILed, 2 on a usage or setup error.
#
#   scripts/systemd-test.sh [PATH.deb]      # default: the newest target/debian/vipctl_*.deb
#
# Env: VIPCTL_SYSTEMD_RUNS  release:server pairs (default "bookworm:redis trixie:valkey trixie:redis")
#      VIPCTL_MAX_EXPOSURE  highest acceptable `systemd-analyze security` score (default 2.0)
# Runs as root. Every container, overlay and lab it made is removed on every exit path.
set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly MAX_EXPOSURE=${VIPCTL_MAX_EXPOSURE:-2.0}
readonly RUNS=${VIPCTL_SYSTEMD_RUNS:-bookworm:redis trixie:valkey trixie:redis}
readonly HOOK=/usr/libexec/vipctl/vipctl
readonly HOSTS=(h1 h2 h3)

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    log "error: $*"
    exit 2
}
FAILED=0
ok() { printf 'ok       %s\n' "$*"; }
fail() {
    printf 'FAIL     %s\n' "$*"
    FAILED=$((FAILED + 1))
}
# detail TEXT: indented under the last line.
detail() { printf '%s\n' "$1" | sed 's/^/         | /' | tail -n "${2:-8}"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, overlay mounts, systemd-nspawn)"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing (Debian package systemd-container; scripts/install-deps.sh installs it)"
DEB=${1:-$(ls -t "${CARGO_TARGET_DIR:-$ROOT/target}"/debian/vipctl_*.deb 2>/dev/null | head -n 1 || true)}
[[ -f $DEB ]] || die "no .deb (run scripts/package.sh, or pass its path)"
# The lab's client, writing INCR through the VIP across both failovers (cargo build --examples).
WRITER=${LAB_WRITER:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/lab_writer}
[[ -x $WRITER ]] || die "no lab writer at $WRITER (cargo build --example lab_writer, or set LAB_WRITER)"
WORK=$(mktemp -d /tmp/vipctl-systemd-test.XXXXXX)
readonly WORK

# --- containers -----------------------------------------------------------------------------------
# Per container: WORK/RUN/HOST/{up,work,root} (overlay upper, work and merged dirs over the cached
# root), nspawn.pid (systemd-nspawn's PID, which we started), pid1 (its systemd).
declare -a LABS=()

# ct RUN HOST CMD...: run CMD in that container (all its namespaces), bounded.
ct() {
    local run=$1 host=$2
    shift 2
    timeout 30 nsenter -t "$(<"$WORK/$run/$host/pid1")" -a -- "$@"
}

boot() {
    local run=$1 host=$2 release=$3 ns=$4 d=$WORK/$1/$2 nspawn i pid1=
    mkdir -p "$d/up" "$d/work" "$d/root"
    mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$d/up,workdir=$d/work" "$d/root"
    echo "$host" >"$d/root/etc/hostname"
    prepare_root "$d/root" "$host"
    local -a env=()
    [[ $release == bookworm ]] || env=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
    env "${env[@]}" systemd-nspawn --register=no --keep-unit -q -b -D "$d/root" --machine="$host" \
        --network-namespace-path="/run/netns/$ns" --capability=CAP_NET_ADMIN,CAP_NET_RAW \
        </dev/null >"$d/console.log" 2>&1 &
    nspawn=$!
    echo "$nspawn" >"$d/nspawn.pid"
    for ((i = 0; i < 100; i++)); do
        pid1=$(ps -o pid= --ppid "$nspawn" 2>/dev/null | tr -d ' ' | head -n 1) || pid1=
        [[ -n $pid1 && $(cat "/proc/$pid1/comm" 2>/dev/null) == systemd ]] && break
        pid1=
        sleep 0.1
    done
    [[ -n $pid1 ]] || die "$run/$host: systemd did not start in the container: $(tail -n 5 "$d/console.log")"
    echo "$pid1" >"$d/pid1"
}

# stop_container DIR: power off (bounded), then kill nspawn (ours, by PID) if still there.
stop_container() {
    local d=$1 pid i
    [[ -f $d/nspawn.pid ]] || return 0
    pid=$(<"$d/nspawn.pid")
    if [[ -f $d/pid1 ]] && kill -0 "$pid" 2>/dev/null; then
        timeout 10 nsenter -t "$(<"$d/pid1")" -a -- systemctl poweroff --no-block >/dev/null 2>&1 || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Its systemd, had it outlived nspawn (ours: recorded when we started it).
    [[ ! -f $d/pid1 ]] || kill -KILL "$(<"$d/pid1")" 2>/dev/null || true
    rm -f -- "$d/nspawn.pid"
}

# The writers and address monitors we started, killed on every exit path.
declare -a BG_PIDS=()

cleanup() {
    local d lab
    ((${#BG_PIDS[@]} == 0)) || kill "${BG_PIDS[@]}" 2>/dev/null || true
    for d in "$WORK"/*/h?; do
        [[ -d $d ]] || continue
        stop_container "$d"
        if mountpoint -q "$d/root"; then umount "$d/root" 2>/dev/null || umount -l "$d/root" || true; fi
    done
    for lab in "${LABS[@]}"; do "$ROOT/scripts/lab.sh" down "$lab" >/dev/null 2>&1 || true; done
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the containers run --------------------------------------------------------------------
# Set per run: ROOTFS, SERVER (redis|valkey), and from the lab: IP[host], NS[host] (its network
# namespace; cl too), VIP4, SENTINELS.
declare -A IP=() NS=()

server_unit() { echo "$SERVER-server.service"; }
sentinel_unit() { echo "$SERVER-sentinel.service"; }
etc_dir() { echo "/etc/$SERVER"; }
server_conf() { if [[ $SERVER == redis ]]; then echo /etc/redis/redis.conf; else echo /etc/valkey/valkey.conf; fi; }
cli() { echo "$SERVER-cli"; }

# prepare_root DIR HOST: the server's and sentinel's config for this lab host (Debian's files with
# the lab's lines appended: later directives win), the other server's units masked.
prepare_root() {
    local r=$1 host=$2 other=redis conf sconf
    [[ $SERVER == redis ]] && other=valkey
    ln -sf /dev/null "$r/etc/systemd/system/$other-server.service"
    ln -sf /dev/null "$r/etc/systemd/system/$other-sentinel.service"
    conf=$r$(server_conf)
    {
        echo "# the lab's (scripts/systemd-test.sh)"
        echo "bind * -::*"
        echo "protected-mode no"
        echo "replica-announce-ip ${IP[$host]}"
        echo "repl-diskless-sync-delay 0"
        echo 'save ""'
        [[ $host == h1 ]] || echo "replicaof ${IP[h1]} 6379"
    } >>"$conf"
    sconf=$r$(etc_dir)/sentinel.conf
    # Truncate and rewrite in place: the file keeps Debian's owner and mode (sentinel rewrites it).
    local keep
    keep=$(grep -vE '^\s*(sentinel |bind |protected-mode )' "$sconf")
    {
        printf '%s\n' "$keep"
        echo "# the lab's (scripts/systemd-test.sh)"
        echo "bind * -::*"
        echo "protected-mode no"
        echo "sentinel announce-ip ${IP[$host]}"
        echo "sentinel monitor mymaster ${IP[h1]} 6379 2"
        echo "sentinel down-after-milliseconds mymaster 1000"
        echo "sentinel failover-timeout mymaster 5000"
    } >"$sconf"
}

# vipctl's config, the same on every host; no hook_users: the units' users are served.
write_vipctl_conf() {
    local r=$1
    cat >"$r/etc/vipctl/vipctl.toml" <<EOF
sentinels = [$SENTINELS]

[masters.mymaster]
vips = ["$VIP4"]
interface = "eth0"
EOF
}

holders() {
    local h out=
    for h in "${HOSTS[@]}"; do
        ip -n "${NS[$h]}" -o addr show dev eth0 | grep -q " ${VIP4%/*}/" && out+="$h "
    done
    echo "${out% }"
}

# vip_only_on HOSTS: the VIP is on exactly HOSTS ("h2"); master_is RUN HOST: the sentinels say so.
vip_only_on() { [[ $(holders) == "$1" ]]; }
master_is() { [[ $(master_host "$1") == "$2" ]]; }

# wait_for SECONDS CMD...: until CMD succeeds (every 0.1 s), for SECONDS at most (plus the last
# try's own bound: a ct call's 30 s).
wait_for() {
    local end=$((SECONDS + $1))
    shift
    while ((SECONDS < end)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# pid_ok VALUE: a PID systemctl show gave us (0 or empty: the unit has no main process now).
pid_ok() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

master_host() {
    local run=$1 m h
    m=$(ct "$run" h2 timeout 5 "$(cli)" -p 26379 SENTINEL get-master-addr-by-name mymaster 2>/dev/null | head -n 1) || return 1
    for h in "${HOSTS[@]}"; do [[ ${IP[$h]} != "$m" ]] || echo "$h"; done
}

sentinel_log() {
    local run=$1 host=$2 f
    f=$(awk '$1 == "logfile" {gsub(/"/, "", $2); print $2}' "$WORK/$run/$host/root$(etc_dir)/sentinel.conf")
    cat "$WORK/$run/$host/root$f" 2>/dev/null || ct "$run" "$host" journalctl -u "$(sentinel_unit)" --no-pager 2>/dev/null
}

# hook_handed RUN HOST SINCE: the daemon on HOST served a hook from the sentinel unit's user since
# SINCE (a journalctl --since time).
hook_handed() {
    local run=$1 host=$2 since=$3 uid
    uid=$(ct "$run" "$host" id -u "$SERVER") || return 1
    # The whole journal is read (no grep -q: an early exit would SIGPIPE journalctl under pipefail).
    ct "$run" "$host" journalctl -u vipctl-watch --since "$since" --no-pager -o verbose | grep -F "hook from uid $uid args" >/dev/null
}

# install_deb RUN HOST FILE: dpkg -i FILE in that container (a FAIL line when it fails).
install_deb() {
    local out
    cp -- "$3" "$WORK/$1/$2/root/root/${3##*/}"
    out=$(ct "$1" "$2" env DEBIAN_FRONTEND=noninteractive dpkg -i "/root/${3##*/}" 2>&1) && return 0
    fail "$1: dpkg -i ${3##*/} on $2"
    detail "$out"
    return 1
}

# await_new_master RUN OLD -> the host the sentinels name once it is not OLD (within 30 s).
await_new_master() {
    local m end=$((SECONDS + 30))
    while ((SECONDS < end)); do
        m=$(master_host "$1" 2>/dev/null) || m=
        [[ -n $m && $m != "$2" ]] && {
            echo "$m"
            return 0
        }
        sleep 0.1
    done
    return 1
}

# lost_writes FILE: acknowledged INCR values that a later acknowledged value did not exceed: a
# regression from the last value m to v loses m - v + 1, counted once (the count goes on from v),
# as tests/support's lost_writes.
lost_writes() {
    awk '$2 == "ok" { v = $3 + 0; if (seen && v <= m) lost += m - v + 1; m = v; seen = 1 } END { print lost + 0 }' "$1"
}
max_acked() { awk '$2 == "ok" && $3 + 0 > m { m = $3 + 0 } END { print m + 0 }' "$1"; }

# --- one run: RELEASE SERVER --------------------------------------------------------------------
one_run() {
    local release=$1 run="$1-$2" lab h ns sp mp before since newm caps out score i rc
    SERVER=$2
    ROOTFS=$("$ROOT/scripts/debian-roots.sh" path "$release-systemd") || die "no $release root"
    lab=/tmp/vipctl-labs/systemd-$run-$$
    LABS+=("$lab")
    LAB_SERVERS=0 LAB_OWNER_PID=$$ "$ROOT/scripts/lab.sh" up "$lab" >/dev/null || die "lab.sh up $lab failed"
    SENTINELS=
    for h in "${HOSTS[@]}" cl; do NS[$h]=$("$ROOT/scripts/lab.sh" ns "$lab" "$h"); done
    for h in "${HOSTS[@]}"; do
        IP[$h]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][sys.argv[2]]["ipv4"])' "$lab/lab.json" "$h")
        SENTINELS+="${SENTINELS:+, }\"${IP[$h]}:26379\""
    done
    VIP4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vips"]["v4"])' "$lab/lab.json")
    echo "== $release with $(sentinel_unit) (vipctl $(dpkg-deb -f "$DEB" Version))"

    for h in "${HOSTS[@]}"; do boot "$run" "$h" "$release" "${NS[$h]}"; done
    for h in "${HOSTS[@]}"; do
        # Until PID 1 has its bus up, systemctl cannot even ask (bounded: 30 tries).
        for ((i = 0; i < 30; i++)); do
            out=$(ct "$run" "$h" systemctl is-system-running --wait 2>&1) || true
            [[ $out == *"Failed to connect to bus"* ]] || break
            sleep 0.5
        done
        [[ $out == running ]] || {
            fail "$run: $h booted $out: $(ct "$run" "$h" systemctl --failed --no-legend --no-pager 2>&1 | tr '\n' ' ')"
            return
        }
    done
    ok "$run: three containers booted to 'running' ($(ct "$run" h1 systemctl --version | head -n 1)), $(sentinel_unit) as shipped"

    # Install, configure, start the daemon; then the hook line, as README's install steps.
    for h in "${HOSTS[@]}"; do
        install_deb "$run" "$h" "$DEB" || return 0
        write_vipctl_conf "$WORK/$run/$h/root"
        ct "$run" "$h" systemctl enable --now vipctl-watch.service >/dev/null 2>&1 || true
    done
    ok "$run: dpkg -i on three hosts; vipctl-watch.service enabled"
    if wait_for 15 vip_only_on h1; then ok "$run: the daemon claimed the VIP on the master, h1"; else
        fail "$run: the VIP is on '$(holders)', not on the master h1"
        detail "$(ct "$run" h1 journalctl -u vipctl-watch --no-pager -o cat 2>&1)"
    fi
    for h in "${HOSTS[@]}"; do
        ct "$run" "$h" systemctl stop "$(sentinel_unit)"
        sp=$WORK/$run/$h/root$(etc_dir)/sentinel.conf
        echo "sentinel client-reconfig-script mymaster $HOOK" >>"$sp"
        ct "$run" "$h" systemctl daemon-reload
        ct "$run" "$h" systemctl start "$(sentinel_unit)"
    done

    # vipctl doctor finds this server's sentinel.conf and unit by itself (the other server's are masked).
    wait_for 10 ct "$run" h2 "$(cli)" -p 26379 PING || true
    out=$(ct "$run" h2 vipctl doctor 2>&1) && rc=0 || rc=$?
    if ((rc == 0)) && grep -q "$(etc_dir)/sentinel.conf" <<<"$out" && grep -q "^ok .*$(sentinel_unit) lets sentinel execute" <<<"$out"; then
        ok "$run: vipctl doctor passes, and checks $(etc_dir)/sentinel.conf and $(sentinel_unit) by itself"
    else
        fail "$run: vipctl doctor (exit $rc)"
        detail "$out" 20
    fi

    # The unit: Type=notify, two capabilities, exposure.
    mp=$(ct "$run" h2 systemctl show -p MainPID --value vipctl-watch) || mp=
    out=$(ct "$run" h2 systemctl show -p Type,ActiveState --value vipctl-watch | tr '\n' ' ') || true
    caps=$(pid_ok "$mp" && ct "$run" h2 awk '/^Cap(Eff|Prm|Inh|Bnd|Amb):/ {printf "%s%s ", $1, $2}' "/proc/$mp/status") || caps="(no main process)"
    # 0x3000: CAP_NET_ADMIN (12) and CAP_NET_RAW (13). The daemon clears its ambient set at start,
    # so that the notify commands it runs inherit nothing.
    if [[ $out == "notify active " && $caps == "CapInh:0000000000000000 CapPrm:0000000000003000 CapEff:0000000000003000 CapBnd:0000000000003000 CapAmb:0000000000000000 " ]]; then
        ok "$run: vipctl-watch.service is Type=notify and active with CAP_NET_ADMIN and CAP_NET_RAW only ($caps)"
    else
        fail "$run: vipctl-watch.service: $out; $caps"
    fi
    out=$(ct "$run" h2 systemd-analyze security vipctl-watch.service --no-pager 2>&1 | tail -n 1) || true
    score=$(grep -oE '[0-9]+\.[0-9]+' <<<"$out" | tail -n 1)
    if [[ -n $score ]] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        ok "$run: systemd-analyze security vipctl-watch.service: $score (<= $MAX_EXPOSURE)"
    else
        fail "$run: systemd-analyze security: '$out' (want <= $MAX_EXPOSURE)"
    fi

    # Failover 1: the master's Redis stopped; the hook runs in sentinel's sandbox.
    wait_for 20 master_is "$run" h1 || true
    sleep 2 # the sentinels learn of each other and the replicas (hello messages)
    ip netns exec "${NS[cl]}" "$WRITER" "${VIP4%/*}" 6379 --duration-ms 120000 \
        --key systemd-test >"$WORK/$run/writer.log" 2>/dev/null &
    local writer=$! monitors=()
    BG_PIDS+=("$writer")
    # Every address change on every host, timestamped: on a loss, who held the VIP when.
    for h in "${HOSTS[@]}"; do
        timeout 300 ip -n "${NS[$h]}" -ts -o monitor address >"$WORK/$run/$h.addr.log" 2>&1 &
        monitors+=($!)
        BG_PIDS+=($!)
    done
    sleep 1
    since=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
    ct "$run" h1 systemctl stop "$(server_unit)"
    newm=$(await_new_master "$run" h1) || true
    if [[ -n $newm && $newm != h1 ]] && wait_for 15 vip_only_on "$newm"; then
        ok "$run: after the master's Redis stopped, the VIP is on the new master $newm alone"
    else
        fail "$run: failover: new master '${newm:-none}', VIP on '$(holders)'"
        detail "$(sentinel_log "$run" h2 | tail -n 8)"
    fi
    if wait_for 10 hook_handed "$run" "$newm" "$since"; then
        ok "$run: $(sentinel_unit) ran the hook as $SERVER; it handed its event to vipctl-watch on $newm"
    else
        fail "$run: no hook from $SERVER reached vipctl-watch on $newm"
        detail "$(ct "$run" "$newm" journalctl -u vipctl-watch --since "$since" --no-pager -o cat 2>&1)"
    fi
    out=$(for h in "${HOSTS[@]}"; do sentinel_log "$run" "$h"; done | grep -E 'script-error|script-timeout' || true)
    if [[ -z $out ]]; then ok "$run: no sentinel logged a script error or timeout"; else
        fail "$run: sentinel logged script errors"
        detail "$out"
    fi
    ct "$run" h1 systemctl start "$(server_unit)"

    # Watchdog: a hung daemon is restarted.
    mp=$(ct "$run" h3 systemctl show -p MainPID --value vipctl-watch) || mp=
    before=$(ct "$run" h3 systemctl show -p NRestarts --value vipctl-watch) || before=
    if ! pid_ok "$mp" || [[ ! $before =~ ^[0-9]+$ ]]; then
        fail "$run: vipctl-watch on h3 has no main process to stop (MainPID '$mp', NRestarts '$before')"
    elif ct "$run" h3 kill -STOP "$mp" && wait_for 25 sh -c "[ \"\$(timeout 5 nsenter -t $(<"$WORK/$run/h3/pid1") -a -- systemctl show -p NRestarts --value vipctl-watch)\" -gt $before ]" &&
        wait_for 10 sh -c "timeout 5 nsenter -t $(<"$WORK/$run/h3/pid1") -a -- systemctl is-active -q vipctl-watch"; then
        ok "$run: the watchdog (WatchdogSec=10s) restarted vipctl-watch after SIGSTOP"
    else
        fail "$run: vipctl-watch was not restarted after SIGSTOP (NRestarts $before -> $(ct "$run" h3 systemctl show -p NRestarts --value vipctl-watch))"
    fi

    # dpkg -i of a newer build while sentinel runs; the hook stays executable in its sandbox.
    for h in "${HOSTS[@]}"; do install_deb "$run" "$h" "$WORK/newer.deb" || true; done
    sp=$(ct "$run" h2 systemctl show -p MainPID --value "$(sentinel_unit)") || sp=
    if ! pid_ok "$sp"; then
        fail "$run: $(sentinel_unit) on h2 has no main process (MainPID '$sp')"
    elif out=$(ct "$run" h2 nsenter -t "$sp" -m -- "$HOOK" --version 2>&1); then
        ok "$run: after dpkg -i of $NEWER_VERSION, sentinel's sandbox still executes $HOOK ($out)"
    else
        fail "$run: after the upgrade, sentinel's sandbox cannot execute $HOOK: $out"
    fi
    # The canary: the same sandbox refuses what its ExecPaths= do not list, or the check above
    # proves nothing.
    out=$(pid_ok "$sp" && ct "$run" h2 nsenter -t "$sp" -m -- /usr/bin/true 2>&1) && rc=0 || rc=$?
    if ((rc != 0)) && [[ $out == *"Permission denied"* ]]; then
        ok "$run: sentinel's sandbox refuses /usr/bin/true (NoExecPaths=/ in force: $out)"
    else
        fail "$run: sentinel's sandbox did not refuse /usr/bin/true for lack of exec permission (exit $rc: $out): the check above proves nothing"
    fi
    newm=$(master_host "$run") || newm=
    sleep 11 # Sentinel's guard: 2 x failover-timeout since the last failover
    since=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
    ct "$run" h1 "$(cli)" -p 26379 SENTINEL FAILOVER mymaster >/dev/null 2>&1 || true
    local newer
    newer=$(await_new_master "$run" "$newm") || true
    if [[ -n $newer && $newer != "$newm" ]] && wait_for 15 vip_only_on "$newer" &&
        wait_for 10 hook_handed "$run" "$newer" "$since"; then
        ok "$run: after the upgrade, SENTINEL FAILOVER moved the VIP to $newer, and the hook ran"
    else
        fail "$run: after the upgrade: master '${newer:-?}' (was $newm), VIP on '$(holders)'"
    fi

    sleep 1
    kill "$writer" "${monitors[@]}" 2>/dev/null || true
    wait "$writer" "${monitors[@]}" 2>/dev/null || true
    local lost final max
    lost=$(lost_writes "$WORK/$run/writer.log")
    max=$(max_acked "$WORK/$run/writer.log")
    final=$(ct "$run" "${newer:-h1}" "$(cli)" GET systemd-test 2>/dev/null) || final=
    if ((lost == 0 && max > 0)) && [[ $final =~ ^[0-9]+$ ]] && ((final >= max)); then
        ok "$run: 0 acknowledged writes lost through the VIP in both failovers ($(grep -c ' ok ' "$WORK/$run/writer.log") acknowledged, highest $max, the final master has $final)"
    else
        fail "$run: lost $lost acknowledged writes (highest acknowledged $max, the final master has '${final}')"
        detail "$(awk '$2 == "ok" { v = $3 + 0; if (seen && v <= m) print "regression at " $1 " ms: " v " after " m; m = v; seen = 1 }' "$WORK/$run/writer.log" | head -n 5)"
        for h in "${HOSTS[@]}"; do
            detail "$h: $(grep -F "${VIP4%/*}" "$WORK/$run/$h.addr.log" | tail -n 6)" 8
            detail "$h: $(sentinel_log "$run" "$h" | grep -E 'switch-master|convert-to-slave|\+sdown master|odown' | tail -n 6)" 8
            detail "$h: $(ct "$run" "$h" journalctl -u vipctl-watch --no-pager -o cat 2>/dev/null | grep -E 'claim|release|fence|demote' | tail -n 6)" 8
        done
    fi

    # dpkg -r refuses while sentinel.conf names the hook; dpkg -P removes everything.
    if out=$(ct "$run" h3 dpkg -r vipctl 2>&1); then
        fail "$run: dpkg -r vipctl succeeded although $(etc_dir)/sentinel.conf names the hook"
    elif grep -q "sentinel.conf" <<<"$out" && ct "$run" h3 dpkg -s vipctl >/dev/null 2>&1; then
        ok "$run: dpkg -r refuses while $(etc_dir)/sentinel.conf names the hook ($(grep -m1 sentinel.conf <<<"$out"))"
    else
        fail "$run: dpkg -r failed without naming sentinel.conf, or left vipctl broken"
        detail "$out"
    fi
    ct "$run" h3 systemctl stop "$(sentinel_unit)"
    sp=$WORK/$run/h3/root$(etc_dir)/sentinel.conf
    out=$(grep -v 'client-reconfig-script' "$sp")
    printf '%s\n' "$out" >"$sp"
    if out=$(ct "$run" h3 env DEBIAN_FRONTEND=noninteractive dpkg -P vipctl 2>&1); then
        local left=()
        for p in /usr/libexec/vipctl /usr/bin/vipctl /etc/vipctl /usr/lib/systemd/system/vipctl-watch.service \
            /usr/lib/systemd/system/redis-sentinel.service.d/vipctl.conf \
            /usr/lib/systemd/system/valkey-sentinel.service.d/vipctl.conf /var/log/vipctl; do
            [[ -e $WORK/$run/h3/root$p || -L $WORK/$run/h3/root$p ]] && left+=("$p")
        done
        ct "$run" h3 getent passwd vipctl >/dev/null && left+=("user vipctl")
        if ((${#left[@]} == 0)); then ok "$run: dpkg -P removed every file, the config and the user"; else
            fail "$run: left after dpkg -P: ${left[*]}"
        fi
    else
        fail "$run: dpkg -P vipctl"
        detail "$out"
    fi

    for h in "${HOSTS[@]}"; do
        stop_container "$WORK/$run/$h"
        umount "$WORK/$run/$h/root"
    done
    "$ROOT/scripts/lab.sh" down "$lab" >/dev/null
}

# The "newer build": the same package with a higher version, as an upgrade is.
NEWER_VERSION="$(dpkg-deb -f "$DEB" Version)+systemdtest1"
readonly NEWER_VERSION
dpkg-deb -R "$DEB" "$WORK/newer"
sed -i "s/^Version: .*/Version: $NEWER_VERSION/" "$WORK/newer/DEBIAN/control"
dpkg-deb -b --root-owner-group "$WORK/newer" "$WORK/newer.deb" >/dev/null

for r in $RUNS; do
    case $r in
    bookworm:redis | trixie:valkey | trixie:redis) one_run "${r%%:*}" "${r#*:}" ;;
    *) die "VIPCTL_SYSTEMD_RUNS: unknown '$r' (bookworm:redis trixie:valkey trixie:redis)" ;;
    esac
done

if ((FAILED)); then
    echo "systemd-test: $FAILED FAILED"
    exit 1
fi
echo "systemd-test: all passed"
