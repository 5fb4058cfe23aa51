#!/usr/bin/env bash
# A live failover, start to finish, in a lab of network namespaces built for the occasion:
# three hosts with redis-server + redis-sentinel and vipctl as Sentinel's client-reconfig-script,
# and a client writing INCR through the VIP every 10 ms. Kills the master's redis and prints a
# timeline: fault, Sentinel's view, promotion, the VIP's move, the client's first write after.
#
# vipctl runs both ways, as a careful operator would set it up: as every sentinel's hook, and as a
# `vipctl watch` daemon on every host with early claim on.
#
# Run as root on a fresh Debian/Ubuntu machine; it installs what it needs. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

[[ $(id -u) -eq 0 ]] || { echo "demo.sh: run as root (the lab builds network namespaces)" >&2; exit 2; }
scripts/install-deps.sh >/dev/null
scripts/lab.sh sweep >/dev/null

echo "Building vipctl (release) ..."
cargo build --quiet --release --locked --bin vipctl --example lab_writer
vipctl=$repo/target/release/vipctl
writer=$repo/target/release/examples/lab_writer

lab=/tmp/vipctl-labs/demo-$$
cleanup() { "$repo/scripts/lab.sh" down "$lab" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "Building the lab: switch, h1 h2 h3 (redis + sentinel), client ..."
LAB_HOOK=$vipctl LAB_OWNER_PID=$$ scripts/lab.sh up "$lab" >/dev/null
ns() { scripts/lab.sh ns "$lab" "$1"; }
ms() { date +%s%3N; }
vipctl_on() { ip netns exec "$(ns "$1")" env VIPCTL_LOG_FILE="$lab/$1/vipctl.log" VIPCTL_SOCKET="$lab/$1/vipctl.sock" "$vipctl" --config "$lab/vipctl.toml" "${@:2}"; }

echo "Config shared by all three hosts ($lab/vipctl.toml):"
sed 's/^/    /' "$lab/vipctl.toml"
echo
# The daemons' config: the lab's (the packaged example) with early claim switched on.
sed 's/^\[watch\]$/[watch]\nearly_claim = true/' "$lab/vipctl.toml" >"$lab/watch.toml"
echo "Starting vipctl watch (early_claim = true) on h1 h2 h3; no first claim by hand is needed"
for h in h1 h2 h3; do
    VIPCTL_SOCKET=$lab/$h/vipctl.sock VIPCTL_LOG_FILE=$lab/$h/watch.log \
        ip netns exec "$(ns "$h")" "$vipctl" --config "$lab/watch.toml" watch >"$lab/$h/watch.out" 2>&1 &
    echo $! >>"$lab/extra.pids"
done
for ((i = 0; i < 100; i++)); do
    [[ $(scripts/lab.sh vips "$lab" | awk '$1 == "h1" {print $2}') != - ]] && break
    sleep 0.1
done
vipctl_on h1 status 2>/dev/null | sed 's/^/    /'

ip netns exec "$(ns cl)" "$writer" 198.51.100.100 6379 --interval-ms 10 --duration-ms 12000 >"$lab/writer.log" 2>/dev/null &
writer_pid=$!
echo "$writer_pid" >>"$lab/extra.pids"
sleep 1.5
before_mac=$(scripts/lab.sh neigh "$lab" 198.51.100.100)

fault=$(ms)
scripts/lab.sh kill-redis "$lab" h1 >/dev/null
echo
echo "kill -9 of redis on h1 at $(date -u -d @"${fault:0:10}" +%T).${fault:10:3} UTC; waiting for the failover ..."

# Bounded wait for a new master to hold the VIP.
new=
for ((i = 0; i < 300; i++)); do
    vips=$(scripts/lab.sh vips "$lab")
    new=$(awk '$1 != "h1" && $2 != "-" {print $1}' <<<"$vips")
    [[ -n $new && $(awk '$1 == "h1" {print $2}' <<<"$vips") == "-" ]] && break
    new=
    sleep 0.05
done
[[ -n $new ]] || { echo "demo.sh: the VIP did not move within 15 s" >&2; exit 1; }
sleep 2.5 # let the writer record its recovery and the hooks log their decisions
kill "$writer_pid" 2>/dev/null || true

# Timeline: every source has millisecond timestamps; print them relative to the fault.
# A source with no matching line is normal (a host had no such event), so no errexit here.
set +e +o pipefail
to_ms() { date -u -d "$1" +%s%3N; }
# A string or number field of one JSON record line (flat objects; quotes inside strings escaped).
field() { grep -oE "\"$1\":\"([^\"\\\\]|\\\\.)*\"" | head -n 1 | cut -d: -f2- | sed 's/^"//; s/"$//; s/\\"/"/g'; }
num() { grep -oE "\"$1\":[0-9.]+" | head -n 1 | cut -d: -f2; }
{
    for h in h1 h2 h3; do
        # Sentinel/redis log lines look like: "PID:X 22 Nov 2026 00:00:04.720 # +promoted-slave ..."
        grep -hE ' (\+sdown master|\+odown|\+elected-leader|\+selected-slave|\+promoted-slave|\+switch-master)' "$lab/$h/sentinel.log" 2>/dev/null |
            while read -r _ d mo y t _ ev rest; do
                echo "$(($(to_ms "$d $mo $y $t") - fault)) sentinel on $h: $ev ${rest%% @*}"
            done
        grep -hE 'MASTER MODE enabled' "$lab/$h/redis.log" 2>/dev/null | while read -r _ d mo y t _; do
            echo "$(($(to_ms "$d $mo $y $t") - fault)) redis on $h reports role:master (promotion)"
        done
        # vipctl's decision records are JSON lines (src/record.rs): hooks in vipctl.log, the
        # daemon in watch.log (decisions, answers to another host's claim, fencing steps). The timestamp is when the record was written, after elapsed_ms of work.
        for log in "$lab/$h/vipctl.log" "$lab/$h/watch.log"; do
            grep -hE '"event":"(decision|conflict|fence)"' "$log" 2>/dev/null | while read -r rec; do
                end=$(to_ms "$(field timestamp <<<"$rec")")
                el=$(num elapsed_ms <<<"$rec")
                start=$((end - ${el%.*}))
                ((start >= fault)) || continue
                actor=$(field actor <<<"$rec")
                if [[ $actor == hook ]]; then
                    role=$(grep -o 'role=[a-z]*' <<<"$(field trigger <<<"$rec")" | cut -d= -f2)
                    acts=$(field actions <<<"$rec")
                    printf '%s vipctl hook on %s (%s): %s, %s, %.1f ms wall\n' "$((start - fault))" "$h" "$role" \
                        "$(field decision <<<"$rec")" "${acts:-nothing left to change}" "$el"
                elif [[ $(field event <<<"$rec") == fence ]]; then
                    res=$(field result <<<"$rec")
                    [[ $res == ok ]] || res="FAILED: $(field error <<<"$rec")"
                    echo "$((start - fault)) vipctl watch on $h: fence: $(field reason <<<"$rec") ($res)"
                else
                    echo "$((start - fault)) vipctl watch on $h: $(field decision <<<"$rec") ($(field reason <<<"$rec"))"
                fi
            done
        done
    done
    # Writes already in flight at the fault may still succeed; the outage starts at the first failure.
    awk -v f="$fault" '$1 >= f && $2 == "err" && !bad {bad = $1} $2 == "ok" && !bad {last = $1}
        $2 == "ok" && bad && !back {back = $1}
        END {printf "%d client: last successful write before the outage\n%d client: first successful write through the VIP after the outage (%.3f s without writes)\n", last - f, back - f, (back - last) / 1000}' "$lab/writer.log"
} | sort -n | awk '{t = $1; $1 = ""; printf "  %+8.3f s %s\n", t / 1000, $0}'

after_mac=$(scripts/lab.sh neigh "$lab" 198.51.100.100)
echo
awk -v f="$fault" '$2 == "ok" {if (prev && $1 - prev > gap) gap = $1 - prev; prev = $1; n++} $2 == "err" {e++}
    END {printf "client: %d writes ok, %d failed; longest gap between successful writes %.3f s\n", n, e, gap / 1000}' "$lab/writer.log"
echo "client's ARP entry for 198.51.100.100: $before_mac before, $after_mac after (h1 is 02:00:00:00:00:11; $new is $(ip -n "$(ns "$new")" link show eth0 | awk '/ether/ {print $2}')); nothing was flushed"
echo "VIPs now:"
scripts/lab.sh vips "$lab" | sed 's/^/    /'
