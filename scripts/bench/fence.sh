#!/usr/bin/env bash
# Which write fence hurts Sentinel (prints figures; asserts nothing): on a healthy master, in the
# namespace lab (down-after-milliseconds 1000), each fence is held for HOLD_MS while a client
# writes INCR through the master every 10 ms, and the sentinels' logs are read for what they made
# of it:
#   pause   CLIENT PAUSE <HOLD_MS> WRITE       (vipctl 0.1.0's fence)
#   refuse  CONFIG SET min-replicas-to-write above the replica count (vipctl's fence now,
#           src/fence.rs), lifted after HOLD_MS
# Per run: whether the sentinels called the master down (+sdown) or failed it over
# (+switch-master), the writes the client got through, refused (NOREPLICAS) or saw time out
# (stalled), and the longest time without a successful write.
#
#   scripts/bench/fence.sh [RUNS]       (default 3; HOLD_MS=3000 sets the hold)
#
# Run as root. Builds nothing but the lab writer (nothing at all when LAB_WRITER names a built
# one, as scripts/bench.sh does); cleans its labs up on every exit path.  Prints the Markdown
# table on stdout (scripts/bench.sh puts it in the report), everything else on stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
runs=${1:-3}
hold_ms=${HOLD_MS:-3000}
[[ $runs =~ ^[1-9][0-9]*$ && $hold_ms =~ ^[1-9][0-9]*$ ]] || { echo "fence.sh: RUNS and HOLD_MS must be positive numbers" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "fence.sh: run as root (the lab builds network namespaces)" >&2; exit 2; }

scripts/install-deps.sh >/dev/null
scripts/lab.sh sweep >/dev/null
if [[ -n ${LAB_WRITER:-} ]]; then
    [[ -x $LAB_WRITER ]] || { echo "fence.sh: LAB_WRITER '$LAB_WRITER' is not an executable" >&2; exit 2; }
    writer=$LAB_WRITER
else
    cargo build --quiet --release --locked --example lab_writer
    writer=$(realpath -- "${CARGO_TARGET_DIR:-$repo/target}")/release/examples/lab_writer
fi

lab=
cleanup() { [[ -z $lab ]] || scripts/lab.sh down "$lab" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ns() { scripts/lab.sh ns "$lab" "$1"; }
# The master's address and Redis port, from the lab's facts (lab.json, written by lab.sh up).
master_addr() {
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(next(n["ipv4"] for n in j["nodes"].values() if n["role"] == "master"), j["ports"]["redis"])
' "$lab/lab.json"
}
cli() { timeout --foreground -k 1 5 ip netns exec "$(ns cl)" redis-cli -h "$mip" -p "$mport" "$@"; }

# sentinel_lines PATTERN: lines matching PATTERN in the three sentinels' logs.
sentinel_lines() { cat "$lab"/h{1,2,3}/sentinel.log | grep -c -- "$1" || true; }

printf '| fence | run | +sdown of the master | failed over | writes ok | refused | stalled | longest gap |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for kind in pause refuse; do
    for ((r = 1; r <= runs; r++)); do
        lab=/tmp/vipctl-labs/bench-fence-$$-$kind-$r
        LAB_OWNER_PID=$$ scripts/lab.sh up "$lab" >/dev/null
        read -r mip mport < <(master_addr)
        out=$lab/writer.log
        ip netns exec "$(ns cl)" "$writer" "$mip" "$mport" --interval-ms 10 --duration-ms $((hold_ms + 6000)) >"$out" 2>/dev/null &
        wpid=$!
        sleep 1
        sdown0=$(sentinel_lines '+sdown master')
        switch0=$(sentinel_lines '+switch-master')
        case $kind in
            pause) cli CLIENT PAUSE "$hold_ms" WRITE >/dev/null ;;
            refuse)
                cli CONFIG SET min-replicas-to-write 1000000020 >/dev/null
                sleep "$(awk -v m="$hold_ms" 'BEGIN { print m / 1000 }')"
                cli CONFIG SET min-replicas-to-write 0 >/dev/null
                ;;
        esac
        wait "$wpid" || true
        sdown=$(($(sentinel_lines '+sdown master') - sdown0))
        switched=$(($(sentinel_lines '+switch-master') - switch0))
        # The writer's lines: "<unix ms> ok <value>" or "<unix ms> err <why>" (examples/lab_writer.rs).
        # The gap also counts failures at either end: from the first attempt to the first success,
        # and from the last success to the last attempt.
        read -r ok refused stalled gap < <(awk '
            $1 !~ /^[0-9]+$/ { next }
            !first { first = $1 }
            { t = $1 }
            $2 == "ok" { ok++; g = $1 - (last ? last : first); if (g > gap) gap = g; last = $1 }
            $2 == "err" && /NOREPLICAS/ { refused++ }
            $2 == "err" && /timed out|timeout|WouldBlock|Resource temporarily/ { stalled++ }
            END { g = t - (last ? last : first); if (g > gap) gap = g; printf "%d %d %d %d\n", ok, refused, stalled, gap }' "$out")
        printf '| %s | %d | %d | %s | %d | %d | %d | %d ms |\n' "$kind" "$r" "$sdown" \
            "$([[ $switched -gt 0 ]] && echo "yes ($switched lines)" || echo no)" "$ok" "$refused" "$stalled" "$gap"
        scripts/lab.sh down "$lab" >/dev/null
        lab=
    done
done
printf '\nEach fence held %d ms on a healthy master; down-after-milliseconds 1000, quorum 2.\n' "$hold_ms"
