#!/usr/bin/env bash
# No faults at all, for a long while (prints figures; asserts nothing): the namespace lab with
# `vipctl watch` (early claim) on every host and a client writing INCR through the VIP every
# 10 ms, for MINUTES minutes. What a daemon should do then is nothing: the report counts the write
# fences it placed (every fence_* record of the daemons), the VIP changes, the writes that failed
# and the longest time without a successful write, and each daemon's CPU time.
#
#   scripts/bench/quiet.sh [MINUTES]      (default 10)
#
# Run as root. VIPCTL and LAB_WRITER name the binaries (default: the release build, built if
# missing). Cleans its lab up on every exit path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
minutes=${1:-10}
[[ $minutes =~ ^[1-9][0-9]*$ ]] || { echo "quiet.sh: MINUTES must be a positive number" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "quiet.sh: run as root (the lab builds network namespaces)" >&2; exit 2; }

scripts/install-deps.sh >/dev/null
scripts/lab.sh sweep >/dev/null
target=$(realpath -- "${CARGO_TARGET_DIR:-$repo/target}")
if [[ -z ${VIPCTL:-} || -z ${LAB_WRITER:-} ]]; then
    cargo build --quiet --release --locked --bin vipctl --example lab_writer
fi
vipctl=$(realpath -e -- "${VIPCTL:-$target/release/vipctl}")
writer=$(realpath -e -- "${LAB_WRITER:-$target/release/examples/lab_writer}")

lab=/tmp/vipctl-labs/bench-quiet-$$
cleanup() { scripts/lab.sh down "$lab" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
LAB_OWNER_PID=$$ scripts/lab.sh up "$lab" >/dev/null
ns() { scripts/lab.sh ns "$lab" "$1"; }
ticks=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$ticks" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat"; }

cfg=$lab/early.toml
sed '/^\[watch\]/a early_claim = true' "$lab/vipctl.toml" >"$cfg"
declare -A pid
for h in h1 h2 h3; do
    VIPCTL_SOCKET=$lab/$h/vipctl.sock VIPCTL_LOG_FILE=$lab/$h/watch.log \
        ip netns exec "$(ns "$h")" "$vipctl" --config "$cfg" watch >"$lab/$h/watch.out" 2>&1 &
    pid[$h]=$!
    echo "${pid[$h]}" >>"$lab/extra.pids"
done
for ((t = 0; t < 200; t++)); do
    [[ -n $(ip -n "$(ns h1)" -o addr show dev eth0 | grep ' 198\.51\.100\.100/') ]] && break
    sleep 0.05
done
ip netns exec "$(ns cl)" "$writer" 198.51.100.100 6379 --interval-ms 10 --duration-ms $((minutes * 60000)) \
    >"$lab/writer.log" 2>/dev/null &
echo $! >>"$lab/extra.pids"
wpid=$!
sleep 1
declare -A c0
for h in h1 h2 h3; do c0[$h]=$(cpu_ms "${pid[$h]}"); done
records0=$(cat "$lab"/h?/watch.log | wc -l)
wait "$wpid" || true

fences=$(cat "$lab"/h?/watch.log | tail -n +$((records0 + 1)) | grep -c '"reason_code":"fence' || true)
changes=$(cat "$lab"/h?/watch.log | tail -n +$((records0 + 1)) | grep -cE '"decision":"(claim|release)"' || true)
read -r ok err gap < <(awk '
    $2 == "ok" { ok++; if (last) { g = $1 - last; if (g > gap) gap = g }; last = $1 }
    $2 == "err" { err++ }
    END { printf "%d %d %d\n", ok, err, gap }' "$lab/writer.log")
printf '| figure | %d minutes without a fault |\n|---|---|\n' "$minutes"
printf '| write fences placed (all daemons) | %d |\n' "$fences"
printf '| VIP claims and releases | %d |\n' "$changes"
printf '| writes ok / failed | %d / %d |\n' "$ok" "$err"
printf '| longest time without a successful write | %d ms |\n' "$gap"
for h in h1 h2 h3; do
    c=$(($(cpu_ms "${pid[$h]}") - c0[$h]))
    printf '| daemon CPU on %s%s | %d ms (%s ms/s) |\n' "$h" "$([[ $h == h1 ]] && echo ' (holds the VIP)')" "$c" \
        "$(awk -v c="$c" -v s=$((minutes * 60)) 'BEGIN { printf "%.1f", c / s }')"
done
printf '\nLab: 3 sentinels (down-after 1000 ms), vipctl watch with early claim on every host, %s; %s cores.\n' \
    "$("$vipctl" --version)" "$(nproc)"
