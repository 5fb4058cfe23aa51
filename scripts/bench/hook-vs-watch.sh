#!/usr/bin/env bash
# The hook against the watch daemon, kill -9 of the master's redis only: for N failovers each, the
# time from the promotion being visible (the leader's +promoted-slave, and the replica's own
# role:master) to the VIP bound, median and spread, side by side.
#
#   scripts/bench/hook-vs-watch.sh [N]     (default 5; as root)
#
# A focused run of scripts/bench.sh (same labs, same measurements): the report goes to a temporary
# folder and its kill -9 table is printed, so docs/BENCHMARKS.md is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
n=${1:-5}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "hook-vs-watch.sh: N must be a positive whole number" >&2; exit 2; }
out=$(mktemp -d /tmp/vipctl-hook-vs-watch.XXXXXX)
BENCH_SETUPS="hook watch" BENCH_SCENARIOS=kill BENCH_QUIET_S=${BENCH_QUIET_S:-5} \
    BENCH_OUT=$out/raw BENCH_DOC=$out/report.md BENCH_PNG=$out/timeline.png scripts/bench.sh "$n"
echo
awk '/^## Machine and versions/ {p = 1} /^## Setups/ {p = 0} p' "$out/report.md"
awk '/^## Master.s redis killed/ {p = 1; print; next} /^## / {p = 0} p' "$out/report.md"
echo "full report: $out/report.md"
