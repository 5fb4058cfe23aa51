#!/usr/bin/env bash
# Benchmark: how soon the VIP follows a Redis failover, with vipctl run by
# Sentinel as its client-reconfig-script ("hook") versus the "vipctl watch"
# daemon on every host ("watch").  A benchmark, not a test: it prints figures
# and asserts nothing about timing.
#
# Usage (as root): scripts/bench/hook-vs-watch.sh [N]      N failovers per setup (default 5)
#
# For each setup it builds one namespace lab (scripts/lab.sh), puts the VIP on
# the master, then N times: kill -9 of the master's redis, wait until the VIP
# is on the new master only, restart the killed redis (it rejoins as a
# replica), and wait until Sentinel will fail the master over again.
#
# Every figure comes from timestamps on one clock (CLOCK_REALTIME), never from
# this script's polling, whose period would blur them:
#   fault          this script, just before the kill
#   +promoted-slave  the leader sentinel's log (ms resolution)
#   role:master    the promoted redis's log, "MASTER MODE enabled" (ms)
#   VIP bound      "ip -ts monitor address" in each host namespace (us), i.e.
#                  when the RTM_NEWADDR notification reached the monitor
#
# Environment:
#   CARGO_TARGET_DIR  honoured for the build (binary in $CARGO_TARGET_DIR/release)
#   BENCH_LOGS=DIR    copy each lab's logs to DIR/SETUP/HOST/ before teardown
#                     (the directory is named SETUP-PID after a failure)
#
# Installs what it needs (scripts/install-deps.sh), builds vipctl in release
# mode, and removes every lab it made on every exit path.

set -euo pipefail
# C locale: Redis and ip print English month names and "." decimal points,
# and $EPOCHREALTIME uses the locale's decimal separator.
export LC_ALL=C

readonly PROG=${0##*/}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
readonly REPO=$PWD
readonly LABSH=$REPO/scripts/lab.sh
readonly HOSTS=(h1 h2 h3)
readonly VIP4=198.51.100.100
readonly VIP6=2001:db8:51::100
# The lab's "sentinel failover-timeout" is 5000 ms, and Sentinel refuses to
# start another failover of a master for 2x that after the last start; 1 s
# more covers the random delay (up to 1 s) a voting sentinel adds to it.
# (Redis 7.0 clears the guard on +switch-master, but a sentinel that has not
# switched keeps it; the wait costs nothing, as Sentinel takes ~10 s to turn
# the restarted redis, which comes back as a master, into a replica.)
readonly NEXT_FAILOVER_MS=11000
# Bounds on every wait (seconds).
readonly T_SETUP=15 T_FAILOVER=30 T_SETTLE=60

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

# now_us: wall clock in microseconds without forking ($EPOCHREALTIME is
# gettimeofday), so the fault time is taken right before the kill.
now_us() {
    echo "${EPOCHREALTIME/./}"
}

ip_of() {
    case $1 in
    h1) echo 198.51.100.11 ;;
    h2) echo 198.51.100.12 ;;
    h3) echo 198.51.100.13 ;;
    *) die "unknown host '$1'" ;;
    esac
}

host_of() {
    case $1 in
    198.51.100.11) echo h1 ;;
    198.51.100.12) echo h2 ;;
    198.51.100.13) echo h3 ;;
    *) return 1 ;;
    esac
}

# --- setup and cleanup ---------------------------------------------------------

[[ $(id -u) -eq 0 ]] || die "run as root (the lab builds network namespaces)"
N=${1:-5}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of failovers (got '$N')"
(($# <= 1)) || die "usage: $PROG [N]"
BENCH_LOGS=${BENCH_LOGS:-}

# save_logs LAB SETUP: with BENCH_LOGS set, keep the lab's logs (redis,
# sentinel, vipctl, ip monitor) for a closer look, also after a failure.
save_logs() {
    local h
    [[ -n $BENCH_LOGS && -f $1/id ]] || return 0
    for h in "${HOSTS[@]}"; do
        mkdir -p "$BENCH_LOGS/$2/$h"
        cp -p "$1/$h"/*.log "$1/$h"/*.out "$BENCH_LOGS/$2/$h/" 2>/dev/null || true
    done
}

LABS=()
cleanup() {
    local rc=$? lab
    # A second Ctrl-C must not stop the teardown half way; lab.sh down is
    # bounded in time by itself.
    trap '' INT TERM HUP
    for lab in "${LABS[@]}"; do
        [[ ! -d $lab ]] || save_logs "$lab" "${lab##*/bench-}"
        "$LABSH" down "$lab" >/dev/null 2>&1 || warn "lab.sh down $lab failed; run: $LABSH down $lab"
    done
    if ((rc != 0)) && [[ -n $BENCH_LOGS ]]; then warn "the labs' logs are in $BENCH_LOGS"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

T0=$SECONDS
say "installing dependencies (scripts/install-deps.sh)"
scripts/install-deps.sh >/dev/null
# Labs left behind by runs that died (ours and other people's) would share
# the CPUs with this one; sweep removes only those whose owner is gone.
"$LABSH" sweep >/dev/null
say "building vipctl (cargo build --release --locked --bin vipctl)"
cargo build --release --locked --bin vipctl
VIPCTL=$(realpath -- "${CARGO_TARGET_DIR:-target}/release/vipctl")
readonly VIPCTL
[[ -x $VIPCTL ]] || die "$VIPCTL was not built"

# --- small lab helpers ---------------------------------------------------------

# lab_ns LAB HOST: the namespace of HOST (lab.sh's naming, vl<ID>-<HOST>),
# without spawning lab.sh on every poll.
lab_ns() {
    echo "vl$(<"$1/id")-$2"
}

# rcli NS IP PORT ARGS...: redis-cli inside a namespace, bounded in time.
rcli() {
    local ns=$1 ip=$2 port=$3
    shift 3
    timeout --foreground -k 1 2 ip netns exec "$ns" redis-cli -h "$ip" -p "$port" "$@" 2>/dev/null
}

# kv KEY: the value after KEY in a flat key/value reply on stdin.
kv() {
    awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'
}

# spawn LAB LOGFILE CMD...: run CMD in the background for the rest of the
# lab's life.  Its PID goes into LAB/extra.pids at once, so that "lab.sh
# down" kills it whatever happens to us; disown keeps bash from reporting
# its death when we kill it.
spawn() {
    local lab=$1 log=$2
    shift 2
    "$@" </dev/null >>"$log" 2>&1 &
    echo "$!" >>"$lab/extra.pids"
    SPAWNED=$!
    disown "$SPAWNED"
}

# vips_now LAB: "HOST ADDR/PREFIX..." per host for the VIPs it holds on any
# interface, as "lab.sh vips" prints it, but with three "ip" calls instead of
# a lab.sh start-up: polled during the failover, it must not compete for the
# CPUs with what is being measured.
vips_now() {
    local h
    for h in "${HOSTS[@]}"; do
        ip -n "$(lab_ns "$1" "$h")" -o addr show |
            awk -v h="$h" -v v4="$VIP4/" -v v6="$VIP6/" 'index($4, v4) == 1 || index($4, v6) == 1 { s = s " " $4 } END { print h (s ? s : " -") }'
    done
}

# holders VIPS_OUTPUT VIP: the hosts holding VIP according to VIPS_OUTPUT
# (vips_now's format), space-separated.
holders() {
    awk -v v="$2" '{ for (i = 2; i <= NF; i++) if (index($i, v "/") == 1) { printf "%s%s", sep, $1; sep = " " } } END { print "" }' <<<"$1"
}

# wait_vip_only LAB HOST SECONDS: until both VIPs are on HOST and nowhere else.
wait_vip_only() {
    local lab=$1 host=$2 deadline=$((SECONDS + $3)) vips i
    for ((i = 0; i < 10 * $3; i++)); do
        vips=$(vips_now "$lab") || vips=
        if [[ $(holders "$vips" "$VIP4") == "$host" && $(holders "$vips" "$VIP6") == "$host" ]]; then
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    die "the VIPs were not on $host alone within $3 s; the hosts hold: $(tr '\n' ';' <<<"$vips")"
}

# --- reading timestamps --------------------------------------------------------

# log_events AFTER_US REGEX FILE...: "US LINE" for every line of a Redis or
# Sentinel log matching REGEX stamped at or after AFTER_US, oldest first.
# Lines look like "PID:X 22 Nov 2026 00:00:04.720 # +promoted-slave ...", in
# local time, which is how date -d reads them.
log_events() {
    local after=$1 re=$2 line us pid d mo y t
    shift 2
    { grep -hE -- "$re" "$@" 2>/dev/null || true; } | while read -r line; do
        read -r pid d mo y t _ <<<"$line"
        [[ $pid == *:* ]] || continue
        us=$(date -d "$d $mo $y $t" +%s%6N 2>/dev/null) || continue
        if ((us >= after)); then printf '%s %s\n' "$us" "$line"; fi
    done | sort -n
}

# vip_adds AFTER_US FILE: "US" for every addition of VIP4 in an "ip -ts -o
# monitor address" log at or after AFTER_US, oldest first.  Lines look like
# "[2026-11-22T00:20:13.149260] 2: eth0    inet 198.51.100.100/24 ...";
# removals carry "Deleted" after the stamp.
vip_adds() {
    local after=$1 file=$2 stamp us
    { awk -v v=" inet $VIP4/" '!/ Deleted / && index($0, v) { print substr($1, 2, length($1) - 2) }' "$file" 2>/dev/null || true; } |
        while read -r stamp; do
            us=$(date -d "$stamp" +%s%6N 2>/dev/null) || continue
            if ((us >= after)); then echo "$us"; fi
        done | sort -n
}

# first_us: the timestamp of the first "US ..." line on stdin, or NA.
first_us() {
    awk 'NF && !found { print $1; found = 1 } END { if (!found) print "NA" }'
}

# masters_named LAB: the master each sentinel names, "h1 h3 h3" (- for no
# answer), in host order.
masters_named() {
    local lab=$1 h out m
    local -a named=()
    for h in "${HOSTS[@]}"; do
        out=$(rcli "$(lab_ns "$lab" "$h")" "$(ip_of "$h")" 26379 SENTINEL get-master-addr-by-name mymaster) || out=
        m=$(host_of "$(awk 'NR == 1' <<<"$out")") || m=-
        named+=("$m")
    done
    echo "${named[*]}"
}

# --- waiting for Sentinel to allow the next failover ----------------------------

# unsettled LAB MASTER READY_US: prints what keeps the next failover from
# being a clean repeat of this one (nothing when all is ready): every
# sentinel names MASTER, sees no failover in progress and two healthy,
# linked replicas; both replicas report their link up; and Sentinel's
# failover-timeout guard has expired (READY_US).
unsettled() {
    local lab=$1 master=$2 ready=$3 mip h ns ip out n
    mip=$(ip_of "$master")
    if (($(now_us) < ready)); then
        echo " Sentinel's 2x failover-timeout guard ($(((ready - $(now_us)) / 1000)) ms left);"
    fi
    out=$(vips_now "$lab") || out=
    [[ $(holders "$out" "$VIP4") == "$master" && $(holders "$out" "$VIP6") == "$master" ]] ||
        echo " the VIPs are not on $master alone ($(tr '\n' ';' <<<"$out"));"
    for h in "${HOSTS[@]}"; do
        ns=$(lab_ns "$lab" "$h")
        ip=$(ip_of "$h")
        out=$(rcli "$ns" "$ip" 26379 SENTINEL master mymaster) || out=
        [[ $(kv ip <<<"$out") == "$mip" ]] || echo " sentinel $h names $(kv ip <<<"$out") as master;"
        [[ $(kv flags <<<"$out") == master ]] || echo " sentinel $h master flags '$(kv flags <<<"$out")';"
        [[ $(kv num-slaves <<<"$out") == 2 ]] || echo " sentinel $h num-slaves $(kv num-slaves <<<"$out");"
        [[ $(kv num-other-sentinels <<<"$out") == 2 ]] || echo " sentinel $h num-other-sentinels $(kv num-other-sentinels <<<"$out");"
        out=$(rcli "$ns" "$ip" 26379 SENTINEL replicas mymaster) || out=
        n=$(awk -v m="$mip" 'prev == "flags" && $0 == "slave" { f++ } prev == "master-link-status" && $0 == "ok" { l++ }
            prev == "master-host" && $0 == m { h++ } { prev = $0 } END { print f + 0, l + 0, h + 0 }' <<<"$out")
        [[ $n == "2 2 2" ]] || echo " sentinel $h replicas healthy/linked/following: $n of 2;"
        [[ $h == "$master" ]] && continue
        out=$(rcli "$ns" "$ip" 6379 INFO replication | tr -d '\r') || out=
        [[ $out == *master_host:"$mip"* && $out == *master_link_status:up* ]] || echo " redis $h is not linked to $master;"
    done
}

wait_settled() {
    local lab=$1 master=$2 ready=$3 deadline=$((SECONDS + T_SETTLE)) pending i
    for ((i = 0; i < 2 * T_SETTLE; i++)); do
        pending=$(unsettled "$lab" "$master" "$ready")
        [[ -n $pending ]] || return 0
        ((SECONDS < deadline)) || break
        sleep 0.5
    done
    die "the lab did not settle after the failover within ${T_SETTLE}s:$(tr '\n' ' ' <<<"$pending")"
}

# --- one setup -----------------------------------------------------------------

ROWS=() # "SETUP I OLD NEW FAULT_US PROMOTED_US ROLE_US BOUND_US"

# failover LAB SETUP I OLD: one measured failover away from OLD; sets NEW.
failover() {
    local lab=$1 setup=$2 i=$3 old=$4 pid fault vips h new="" named deadline j ready lines prom role bound
    # The kill itself is the builtin, not "lab.sh kill-redis", whose start-up
    # would put tens of ms between the fault stamp and the fault; the checks
    # are lab.sh's (live redis-server that started after the lab).
    pid=$(<"$lab/$old/redis.pid")
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server ]] || die "redis on $old (pid $pid) is not running"
    fault=$(now_us)
    kill -KILL "$pid"

    # Done when both VIPs are on one other host and every sentinel names that
    # host: the VIP alone could be passing through a host that Sentinel does
    # not end up with (two failovers racing in different epochs).  The
    # sentinels are asked only then, to keep the polling light.
    deadline=$((SECONDS + T_FAILOVER))
    named=
    for ((j = 0; j < 10 * T_FAILOVER; j++)); do
        vips=$(vips_now "$lab") || vips=
        h=$(holders "$vips" "$VIP4")
        if [[ $h =~ ^h[123]$ && $h != "$old" && $(holders "$vips" "$VIP6") == "$h" ]]; then
            named=$(masters_named "$lab")
            if [[ $named == "$h $h $h" ]]; then
                new=$h
                break
            fi
        fi
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    [[ -n $new ]] || die "failover $setup #$i: no new master with the VIPs within ${T_FAILOVER}s; the hosts hold: $(tr '\n' ';' <<<"$vips") the sentinels name: ${named:-$(masters_named "$lab")}"
    NEW=$new

    # Back as a replica: start-redis brings it up with its own config, as
    # master, and Sentinel converts it.
    "$LABSH" start-redis "$lab" "$old" >/dev/null

    # Sentinel's guard runs from the failover's start (+try-failover on the
    # leader) and from each vote (+vote-for-leader); the latest of them counts.
    ready=$(log_events "$fault" ' [+](try-failover|vote-for-leader) ' "$lab"/h?/sentinel.log |
        awk -v f="$fault" '{ t = $1 } END { print (t ? t : f) }')
    wait_settled "$lab" "$new" $((ready + NEXT_FAILOVER_MS * 1000))

    # All timestamps after the fault.  Logs are written line by line and the
    # monitors flush per event, and the lab has been settled for seconds, so
    # every line of this failover is in place by now.
    # The promotion of the host that ended up master; another one first would
    # mean two failovers raced, which makes the row suspect.
    lines=$(log_events "$fault" ' [+]promoted-slave ' "$lab"/h?/sentinel.log)
    prom=$({ grep -F " slave $(ip_of "$new"):6379 " <<<"$lines" || true; } | first_us)
    [[ $(awk 'NR == 1' <<<"$lines") == *" slave $(ip_of "$new"):6379 "* ]] ||
        warn "failover $setup #$i: another replica was promoted first: $(awk 'NR == 1' <<<"$lines")"
    role=$(log_events "$fault" 'MASTER MODE enabled' "$lab/$new/redis.log" | first_us)
    bound=$(vip_adds "$fault" "$lab/$new/ipmon.log" | first_us)
    for h in "${HOSTS[@]}"; do
        [[ $h == "$new" || -z $(vip_adds "$fault" "$lab/$h/ipmon.log") ]] ||
            warn "failover $setup #$i: the VIP was also bound on $h after the fault (new master: $new)"
    done
    [[ $prom != NA && $role != NA && $bound != NA ]] ||
        warn "failover $setup #$i: missing timestamp(s): +promoted-slave=$prom role:master=$role VIP bound=$bound"
    ROWS+=("$setup $i $old $new $fault $prom $role $bound")
    say "  $setup #$i: $old -> $new, VIP bound $(delta "$bound" "$fault") s after the fault"
}

# delta A_US B_US: A - B in seconds with ms decimals, or NA.
delta() {
    if [[ $1 == NA || $2 == NA ]]; then
        echo NA
    else
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (a - b) / 1e6 }'
    fi
}

run_setup() {
    local setup=$1 lab h ns master i
    lab=/tmp/vipctl-labs/bench-$setup-$$
    LABS+=("$lab")
    say "$setup: building the lab $lab"
    if [[ $setup == hook ]]; then
        LAB_HOOK=$VIPCTL LAB_OWNER_PID=$$ "$LABSH" up "$lab" >/dev/null
    else
        LAB_OWNER_PID=$$ "$LABSH" up "$lab" >/dev/null
    fi

    # The monitors run for the whole run, before anything binds a VIP.
    for h in "${HOSTS[@]}"; do
        spawn "$lab" "$lab/$h/ipmon.log" ip -ts -o -n "$(lab_ns "$lab" "$h")" monitor address
    done
    # "ip monitor" prints nothing when it is subscribed; give it a moment.
    sleep 0.3

    if [[ $setup == hook ]]; then
        # With only the hook nothing binds the VIP until the first failover:
        # the operator's initial claim.
        ip netns exec "$(lab_ns "$lab" h1)" env VIPCTL_LOG_FILE="$lab/h1/vipctl.log" \
            "$VIPCTL" --config "$lab/vipctl.toml" claim >"$lab/h1/claim.out" 2>&1 ||
            die "vipctl claim on h1 failed: $(cat "$lab/h1/claim.out")"
    else
        for h in "${HOSTS[@]}"; do
            ns=$(lab_ns "$lab" "$h")
            spawn "$lab" "$lab/$h/watch.out" env VIPCTL_SOCKET="$lab/$h/vipctl.sock" VIPCTL_LOG_FILE="$lab/$h/watch.log" \
                ip netns exec "$ns" "$VIPCTL" --config "$lab/vipctl.toml" watch
        done
        for h in "${HOSTS[@]}"; do
            for ((i = 0; i < 10 * T_SETUP; i++)); do
                [[ -S $lab/$h/vipctl.sock ]] && break
                sleep 0.1
            done
            [[ -S $lab/$h/vipctl.sock ]] || die "vipctl watch on $h did not open its socket within ${T_SETUP}s: $(tail -n 5 "$lab/$h/watch.out")"
        done
    fi
    wait_vip_only "$lab" h1 "$T_SETUP"
    say "$setup: VIP on h1; $N failover(s)"

    master=h1
    for ((i = 1; i <= N; i++)); do
        failover "$lab" "$setup" "$i" "$master"
        master=$NEW
    done

    save_logs "$lab" "$setup"
    "$LABSH" down "$lab" >/dev/null
    say "$setup: lab torn down"
}

# --- figures -------------------------------------------------------------------

# stats SETUP COLUMN: "median [min..max]" in seconds over the rows of SETUP of
# figure COLUMN (1: bound - promoted, 2: bound - role, 3: bound - fault).
stats() {
    local row s i old new f p r b
    for row in "${ROWS[@]}"; do
        read -r s i old new f p r b <<<"$row"
        [[ $s == "$1" ]] || continue
        case $2 in
        1) delta "$b" "$p" ;;
        2) delta "$b" "$r" ;;
        3) delta "$b" "$f" ;;
        esac
    done | awk '$1 != "NA" && NF { v[n++] = $1 + 0 }
        END {
            if (!n) { print "n/a"; exit }
            for (i = 1; i < n; i++) for (j = i; j > 0 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            m = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
            printf "%.3f [%.3f..%.3f]", m, v[0], v[n - 1]
            if (n < N) printf " (n=%d)", n
        }' N="$N"
}

readonly FIGURES=("VIP bound - leader's +promoted-slave" "VIP bound - replica reports role:master" "VIP bound - fault (kill -9)")

print_setup() {
    local c
    echo "$1: $N failover(s), median [min..max] in seconds"
    for c in 1 2 3; do
        printf '  %-40s %s\n' "${FIGURES[c - 1]}" "$(stats "$1" "$c")"
    done
}

hhmmss() {
    if [[ $1 == NA ]]; then echo NA; else date -d "@${1:0:-6}.${1: -6}" +%T.%3N; fi
}

# --- run -----------------------------------------------------------------------

# Other labs (other people's tests) compete for the same CPUs: say so.
others=$(find /run/netns -maxdepth 1 -name 'vl*-sw' 2>/dev/null | wc -l)
for setup in hook watch; do
    run_setup "$setup"
    print_setup "$setup"
done

echo
echo "== hook vs watch: $N kill -9 failovers each, median [min..max] in seconds =="
printf '%-40s %-26s %s\n' figure hook watch
for c in 1 2 3; do
    printf '%-40s %-26s %s\n' "${FIGURES[c - 1]}" "$(stats hook "$c")" "$(stats watch "$c")"
done
echo
echo "raw rows (times of day are local; deltas in seconds):"
printf '%-5s %2s %-3s %-3s %-12s %-12s %-12s %-12s %9s %9s %9s\n' \
    setup '#' old new fault +promoted role:master 'VIP bound' b-prom b-role b-fault
for row in "${ROWS[@]}"; do
    read -r s i old new f p r b <<<"$row"
    printf '%-5s %2s %-3s %-3s %-12s %-12s %-12s %-12s %9s %9s %9s\n' "$s" "$i" "$old" "$new" \
        "$(hhmmss "$f")" "$(hhmmss "$p")" "$(hhmmss "$r")" "$(hhmmss "$b")" \
        "$(delta "$b" "$p")" "$(delta "$b" "$r")" "$(delta "$b" "$f")"
done
echo
echo "machine: nproc $(nproc), kernel $(uname -r)"
echo "         $(redis-server --version)"
echo "         $("$VIPCTL" --version) ($VIPCTL)"
echo "         other labs running when this one started: $others (they share the CPUs)"
echo "total run time: $((SECONDS - T0)) s"
