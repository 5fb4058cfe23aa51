#!/usr/bin/env bash
# Scale benchmark (prints figures; asserts nothing about timing):
#  1. one `vipctl watch` following 1, 16 and 256 masters (each its own redis-server and VIP, all
#     monitored by the lab's three sentinels): time from daemon start until every VIP is bound,
#     resident memory, and CPU time over a quiet period;
#  2. 1,000 unrelated addresses on the interface: hook wall time and the daemon's quiet CPU, with
#     and without them, side by side.
# Part 1 also counts the requests each sentinel gets from the daemon per second while quiet
# (INFO's total_commands_processed over the quiet period, less the same count over a period with
# no daemon, which is the sentinels' own traffic). With SCALE_BASELINE=/path/to/an/older/vipctl,
# part 1 runs each count with that binary too, side by side (same lab settings, same run).
#
#   scripts/bench/scale.sh [QUIET_SECONDS]      (default 20; SCALE_MASTERS="1 16 256" picks the counts)
#
# Run as root. Builds vipctl (release), installs what it needs, cleans up on every exit path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
quiet=${1:-20}
[[ $quiet =~ ^[0-9]+$ ]] || { echo "scale.sh: QUIET_SECONDS must be a whole number" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "scale.sh: run as root (the lab builds network namespaces)" >&2; exit 2; }

scripts/install-deps.sh >/dev/null
scripts/lab.sh sweep >/dev/null
cargo build --quiet --release --locked --bin vipctl
vipctl=${CARGO_TARGET_DIR:-$repo/target}/release/vipctl
case $vipctl in /*) ;; *) vipctl=$repo/$vipctl ;; esac

lab=
cleanup() { [[ -z $lab ]] || scripts/lab.sh down "$lab" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ms() { date +%s%3N; }
ticks=$(getconf CLK_TCK)
# cpu_ms PID: utime + stime of PID in milliseconds.
cpu_ms() { awk -v t="$ticks" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
ns() { scripts/lab.sh ns "$lab" "$1"; }

new_lab() {
    lab=/tmp/vipctl-labs/bench-scale-$$-$1
    LAB_OWNER_PID=$$ scripts/lab.sh up "$lab" >/dev/null
}

# start_daemon HOST CONFIG: runs vipctl watch in HOST's namespace; prints its PID.
start_daemon() {
    VIPCTL_SOCKET=$lab/$1/vipctl.sock VIPCTL_LOG_FILE=$lab/$1/watch.log \
        ip netns exec "$(ns "$1")" "$vipctl" --config "$2" watch >"$lab/$1/watch.out" 2>&1 &
    echo $! >>"$lab/extra.pids"
    echo $!
}

# commands N: total_commands_processed summed over the three sentinels.
commands() {
    local h sum=0 v
    for h in h1 h2 h3; do
        v=$(ip netns exec "$(ns "$h")" redis-cli -p 26379 INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" {print $2}')
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# --- 1. many masters ---------------------------------------------------------------------------
declare -A converge_ms rss_after cpu_quiet per_sentinel
read -r -a counts <<<"${SCALE_MASTERS:-1 16 256}"
builds=(now)
[[ -z ${SCALE_BASELINE:-} ]] || {
    [[ -x $SCALE_BASELINE ]] || { echo "scale.sh: SCALE_BASELINE=$SCALE_BASELINE is not an executable" >&2; exit 2; }
    builds+=(before)
}
current=$vipctl
for build in "${builds[@]}"; do
[[ $build == now ]] && vipctl=$current || vipctl=$SCALE_BASELINE
for n in "${counts[@]}"; do
    new_lab "m$n-$build"
    h1=$(ns h1)
    cfg=$lab/scale.toml
    {
        echo 'sentinels = ["198.51.100.11:26379", "198.51.100.12:26379", "198.51.100.13:26379"]'
        echo '[masters.mymaster]'
        echo 'vips = ["198.51.100.100/24", "2001:db8:51::100/64"]'
        echo 'interface = "eth0"'
    } >"$cfg"
    # Masters 2..n: a redis-server each on h1 (ports 7001…), monitored by all three sentinels.
    for ((i = 1; i < n; i++)); do
        port=$((7000 + i))
        mkdir -p "$lab/extra-$i"
        ip netns exec "$h1" redis-server --port "$port" --bind 198.51.100.11 --protected-mode no --save '' \
            --appendonly no --daemonize yes --dir "$lab/extra-$i" --pidfile "$lab/extra-$i/redis.pid" \
            --logfile "$lab/extra-$i/redis.log" >/dev/null
        printf '[masters.m%d]\nvips = ["2001:db8:51::2:%x/64"]\ninterface = "eth0"\n' "$i" "$i" >>"$cfg"
    done
    for ((i = 1; i < n; i++)); do
        for ((t = 0; t < 50; t++)); do [[ -s $lab/extra-$i/redis.pid ]] && break; sleep 0.1; done
        cat "$lab/extra-$i/redis.pid" >>"$lab/extra.pids"
        for h in h1 h2 h3; do
            ip netns exec "$(ns "$h")" redis-cli -p 26379 SENTINEL MONITOR "m$i" 198.51.100.11 $((7000 + i)) 2 >/dev/null
        done
    done
    # The sentinels' own traffic, before any daemon runs.
    q0=$(commands)
    sleep "$quiet"
    own=$(($(commands) - q0))
    start=$(ms)
    pid=$(start_daemon h1 "$cfg")
    want=$((n + 1)) # every master's VIP, plus mymaster's second (IPv4 and IPv6)
    got=0
    for ((t = 0; t < 1200; t++)); do
        got=$(ip -n "$h1" -o addr show dev eth0 | grep -cE ' (198\.51\.100\.100|2001:db8:51::100|2001:db8:51::2:[0-9a-f]+)/' || true)
        ((got >= want)) && break
        sleep 0.05
    done
    k=$n/$build
    converge_ms[$k]=$(($(ms) - start))
    ((got >= want)) || converge_ms[$k]="timeout (${got}/${want} VIPs after ${converge_ms[$k]} ms)"
    sleep 2
    rss_after[$k]=$(rss_kb "$pid")
    c0=$(cpu_ms "$pid")
    q0=$(commands)
    sleep "$quiet"
    cpu_quiet[$k]=$(($(cpu_ms "$pid") - c0))
    per_sentinel[$k]=$(awk -v d=$(($(commands) - q0 - own)) -v s="$quiet" 'BEGIN { printf "%.1f", d / s / 3 }')
    echo "$build masters=$n: converged in ${converge_ms[$k]} ms; RSS ${rss_after[$k]} kB; CPU ${cpu_quiet[$k]} ms over ${quiet} s quiet; ${per_sentinel[$k]} requests/s per sentinel" >&2
    scripts/lab.sh down "$lab" >/dev/null
    lab=
done
done
vipctl=$current

# --- 2. 1,000 unrelated addresses --------------------------------------------------------------
new_lab addrs
h1=$(ns h1)
cfg=$lab/one-round.toml
# One announcement round, so the hook's wall time is its own work, not the announce spacing.
sed 's/^\[masters.mymaster\]/[announce]\nrounds = 1\n\n&/' "$lab/vipctl.toml" >"$cfg"
# hook_ms: "wall median / vipctl's own elapsed_ms median" of 21 claim hooks on h1 (VIP already
# bound: ask the sentinels, read the host, re-announce). The wall time includes `ip netns exec`
# (a few ms of namespace and mount setup that Sentinel's fork+exec does not pay).
hook_ms() {
    local i s log=$lab/hook-$RANDOM.log
    for ((i = 0; i < 21; i++)); do
        s=$(date +%s%N)
        VIPCTL_LOG_FILE=$log ip netns exec "$h1" "$vipctl" --config "$cfg" --log-level warn mymaster leader start \
            198.51.100.12 6379 198.51.100.11 6379 >/dev/null 2>&1
        echo $((($(date +%s%N) - s) / 1000))
    done | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)] / 1000}'
    printf ' / '
    grep -o '"elapsed_ms":[0-9.]*' "$log" | cut -d: -f2 | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}'
}
ip netns exec "$h1" "$vipctl" --config "$cfg" claim >/dev/null 2>&1
hook_plain=$(hook_ms)
pid=$(start_daemon h1 "$cfg")
sleep 2
c0=$(cpu_ms "$pid")
sleep "$quiet"
cpu_plain=$(($(cpu_ms "$pid") - c0))
# 1,000 addresses in a batch (ip -batch keeps this quick); nodad so none is tentative.
for ((i = 1; i <= 1000; i++)); do printf 'address add 2001:db8:54::%x/64 dev eth0 nodad\n' "$i"; done >"$lab/addrs.batch"
ip -n "$h1" -batch "$lab/addrs.batch"
hook_many=$(hook_ms)
c0=$(cpu_ms "$pid")
sleep "$quiet"
cpu_many=$(($(cpu_ms "$pid") - c0))
naddr=$(ip -n "$h1" -o addr show | wc -l)

echo
echo "== one daemon, many masters (lab: 3 sentinels, redis per master on h1; $(nproc) cores) =="
printf '%-8s %-8s %-22s %-14s %-24s %s\n' masters build "converge after start" "RSS" "CPU over ${quiet} s quiet" "requests/s per sentinel"
for n in "${counts[@]}"; do
    for build in "${builds[@]}"; do
        k=$n/$build
        printf '%-8s %-8s %-22s %-14s %-24s %s\n' "$n" "$build" "${converge_ms[$k]} ms" "${rss_after[$k]} kB" \
            "${cpu_quiet[$k]} ms ($(awk -v c="${cpu_quiet[$k]}" -v s="$quiet" 'BEGIN { printf "%.1f", c / s }') ms/s)" "${per_sentinel[$k]}"
    done
done
[[ -z ${SCALE_BASELINE:-} ]] || echo "before: $("$SCALE_BASELINE" --version) ($SCALE_BASELINE)"
echo
echo "== 1,000 unrelated addresses on h1 ($naddr addresses in all at the end) =="
printf '%-34s %-14s %s\n' figure "plain" "with 1,000 addresses"
printf '%-34s %-14s %s\n' "hook ms: wall / own elapsed (med.)" "$hook_plain" "$hook_many"
printf '%-34s %-14s %s\n' "daemon CPU over ${quiet} s quiet (ms)" "$cpu_plain" "$cpu_many"
echo
echo "machine: $(nproc) cores, kernel $(uname -r), $(redis-server --version | cut -d' ' -f1-3), $("$vipctl" --version)"
