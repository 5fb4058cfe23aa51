#!/usr/bin/env bash
# A seeded fault soak, in the spirit of Jepsen's nemesis: N rounds of faults
# drawn from a seed, each aimed at whoever is the Redis master at that moment
# (the sentinels are asked), played against two VIP movers in turn, each in a
# lab of its own (scripts/lab.sh) with one writer through the VIP for the
# whole run; afterwards a checker computes, from the logs alone, the
# acknowledged writes lost, the time with the VIP on two hosts, the longest
# time without a successful write, the double failovers and the rounds that
# did not converge, per round and per mover side by side.
#
# Usage (as root): scripts/bench/soak.sh [ROUNDS] [SEED]
#   ROUNDS  rounds of faults (default 12)
#   SEED    a number for Python's random.Random (default: drawn, and printed)
#
# Movers (SOAK_MOVERS, default "vipctl classic"):
#   vipctl    vipctl watch with [watch] early_claim = true on every host (as
#             bench's "early" setup), no hook; IPv4 and IPv6 VIP
#   classic   the classic shell hook (scripts/bench/classic-hook.sh, through
#             classic-hook-timed.sh) as every sentinel's client-reconfig-script
#             (as bench's "classic" setup); it handles the IPv4 VIP only
# Kinds of fault (SOAK_KINDS restricts the set; default all), each healed
# before the next round:
#   kill            kill -9 of the master's Redis, restarted empty after the failover
#   stop            SIGSTOP of the master's Redis, SIGCONT after the failover
#   cut             the master's switch port down, up after the failover
#   partial         the partial cut (lab.sh isolate): the master's host loses the
#                   other Redis hosts while the client still reaches it; healed
#                   2 s after a new master holds the VIP (at most 20 s)
#   replica-cut     a replica's switch port down for 3 s
#   sentinel        the master host's sentinel killed (-9), restarted after 3 s
#   rolling         the three sentinels restarted one at a time, each back
#                   before the next
#   failover        SENTINEL FAILOVER
#   switchover      vipctl switchover (classic: SENTINEL FAILOVER, so noted)
#   daemon-restart  SIGTERM of the master host's vipctl watch, a new one started
#   daemon-kill     SIGKILL of it, a new one started (both n/a for classic)
#   vip-del         the VIP deleted by hand on the master's host (ip addr del);
#                   nobody puts it back but the mover
# The seed deals the kinds like cards (every kind once, in a seeded order,
# before any repeats; so 12 rounds try every fault) and draws a number per
# round that picks among what exists at run time
# (which replica is cut, which sentinel is asked): the same seed gives both
# movers, and any replay, the same sequence.
#
# Rounds are spaced by Sentinel's own guard (2 x failover-timeout, plus its
# random delay: 11 s after the latest +try-failover/+vote-for-leader in the
# sentinels' logs, as scripts/bench/run-setup.sh) and by the lab settling
# (bounded).  After each heal, convergence is checked within 30 s: the three
# sentinels name one master, exactly one Redis reports role:master (ROLE),
# the VIP (the families the mover handles) is on that host alone, and a write
# through the VIP succeeds after that.  A round that does not converge is
# recorded with the reason; then what the faults broke is repaired (dead or
# stopped Redis and sentinels, dead daemons, ports, isolation; never the
# movers' VIPs) and the run goes on.
#
# Environment:
#   SOAK_MOVERS   movers to run, in order (default "vipctl classic")
#   SOAK_KINDS    kinds to draw from (default: all of the above)
#   SOAK_OUT      the Markdown report (default /tmp/vipctl-soak-PID/report.md);
#                 the raw logs go beside it, one folder per mover
#   SOAK_STRICT   1: exit 1 when a round of the vipctl mover did not converge,
#                 or it lost acknowledged writes outside partial rounds, or more
#                 than 10 in a partial round (says why)
#   VIPCTL, LAB_WRITER  use these binaries instead of building (release) with
#                 cargo build --release --locked --bin vipctl --example lab_writer
#   CARGO_TARGET_DIR  honoured for the build
#
# Exit status: 0 when the run completed, whatever the figures (a benchmark,
# it asserts nothing about timing; SOAK_STRICT aside); 1 when a lab could not
# be built, a mover could not be started, or a run broke off.  Every lab is
# torn down on every exit path (lab.sh down; LAB_OWNER_PID is this script, so
# "lab.sh sweep" removes a lab whose run died).  Run it niced on a shared
# machine: nice -n 10 scripts/bench/soak.sh 4 1

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly REPO=${HERE%/scripts/bench}
readonly LABSH=$REPO/scripts/lab.sh
readonly DRIVER=$HERE/soak.py

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
say() {
    printf '[%s] %s\n' "$(date +%T)" "$*"
}

[[ $(id -u) -eq 0 ]] || die "run as root (the lab builds network namespaces)"
(($# <= 2)) || die "usage: $PROG [ROUNDS] [SEED]"
ROUNDS=${1:-12}
SEED=${2:-$((RANDOM * 32768 + RANDOM))}
[[ $ROUNDS =~ ^[1-9][0-9]{0,3}$ ]] || die "ROUNDS must be a number from 1 to 9999 (got '$ROUNDS')"
[[ $SEED =~ ^[0-9]{1,18}$ ]] || die "SEED must be a non-negative number (got '$SEED')"
read -r -a MOVERS <<<"${SOAK_MOVERS:-vipctl classic}"
((${#MOVERS[@]} > 0)) || die "SOAK_MOVERS names no mover"
for m in "${MOVERS[@]}"; do
    case $m in vipctl | classic) ;; *) die "unknown mover '$m' in SOAK_MOVERS (vipctl or classic)" ;; esac
done
read -r -a KINDS <<<"${SOAK_KINDS:-}"
STRICT=${SOAK_STRICT:-0}
[[ $STRICT == 0 || $STRICT == 1 ]] || die "SOAK_STRICT must be 0 or 1 (got '$STRICT')"
REPORT=${SOAK_OUT:-/tmp/vipctl-soak-$$/report.md}
[[ $REPORT == /* ]] || REPORT=$PWD/$REPORT
OUT=$(dirname -- "$REPORT")
command -v python3 >/dev/null || die "python3 is missing (Debian package python3)"
# The plan first: it checks SOAK_KINDS, and a run can be replayed from it.
PLAN=$(python3 "$DRIVER" plan "$ROUNDS" "$SEED" "${KINDS[@]}") || die "bad SOAK_KINDS '${SOAK_KINDS:-}'"
say "soak: $PLAN"

# --- dependencies and build ----------------------------------------------------

missing=0
for t in ip redis-server redis-sentinel redis-cli flock timeout; do command -v "$t" >/dev/null || missing=1; done
if ((missing)); then
    say "installing the lab's dependencies (scripts/install-deps.sh)"
    "$REPO/scripts/install-deps.sh" >/dev/null || die "scripts/install-deps.sh failed"
fi
if [[ " ${MOVERS[*]} " == *" classic "* ]] && ! command -v arping >/dev/null; then
    # The classic hook announces with arping (as bench.sh installs it).
    say "installing iputils-arping for the classic hook"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iputils-arping >/dev/null ||
        die "apt-get install iputils-arping failed"
fi
if [[ -z ${VIPCTL:-} || -z ${LAB_WRITER:-} ]]; then
    say "building (cargo build --release --locked --bin vipctl --example lab_writer)"
    (cd "$REPO" && cargo build --release --locked --bin vipctl --example lab_writer) || die "the build failed"
    TARGET=$(cd "$REPO" && realpath -- "${CARGO_TARGET_DIR:-target}")
    VIPCTL=${VIPCTL:-$TARGET/release/vipctl}
    LAB_WRITER=${LAB_WRITER:-$TARGET/release/examples/lab_writer}
fi
VIPCTL=$(realpath -e -- "$VIPCTL" 2>/dev/null) || die "VIPCTL '$VIPCTL' does not exist"
LAB_WRITER=$(realpath -e -- "$LAB_WRITER" 2>/dev/null) || die "LAB_WRITER '$LAB_WRITER' does not exist"
[[ -x $VIPCTL && -x $LAB_WRITER ]] || die "VIPCTL and LAB_WRITER must be executables"
export VIPCTL LAB_WRITER

# --- the runs ------------------------------------------------------------------

LABS=()
CHILD=
cleanup() {
    local rc=$? lab i
    trap '' INT TERM HUP
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        # Our own driver: it tears its lab down itself on TERM.
        kill -TERM "$CHILD" 2>/dev/null || true
        for ((i = 0; i < 600; i++)); do
            kill -0 "$CHILD" 2>/dev/null || break
            sleep 0.1
        done
    fi
    for lab in "${LABS[@]}"; do
        "$LABSH" down "$lab" >/dev/null 2>&1 || printf '%s: warning: lab.sh down %s failed; run: %s down %s\n' "$PROG" "$lab" "$LABSH" "$lab" >&2
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p -- "$OUT"
say "soak: movers ${MOVERS[*]}; vipctl $("$VIPCTL" --version 2>&1 | head -n 1); raw logs in $OUT"
{
    echo "seed: $SEED"
    echo "rounds: $ROUNDS"
    echo "plan: $PLAN"
    echo "movers: ${MOVERS[*]}"
    echo "vipctl: $VIPCTL ($("$VIPCTL" --version 2>&1 | head -n 1); git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "machine: $(nproc) cores, $(uname -r), $(redis-server --version | head -n 1)"
    echo "started: $(date -u +%FT%TZ)"
} >"$OUT/meta.txt"
failed=0
for m in "${MOVERS[@]}"; do
    lab=/tmp/vipctl-labs/soak-$m-$$
    LABS+=("$lab")
    say "soak: mover $m"
    SOAK_OWNER_PID=$$ python3 "$DRIVER" run "$m" "$ROUNDS" "$SEED" "$OUT" "$lab" "${KINDS[@]}" &
    CHILD=$!
    rc=0
    wait "$CHILD" || rc=$?
    CHILD=
    ((rc == 0)) || {
        printf '%s: mover %s: the run did not complete (exit %d); see %s/%s/driver.log\n' "$PROG" "$m" "$rc" "$OUT" "$m" >&2
        failed=1
    }
done
rc=0
python3 "$DRIVER" report "$OUT" "$REPORT" "${MOVERS[@]}" || rc=$?
say "soak: report in $REPORT, raw logs in $OUT"
((failed == 0)) || exit 1
exit "$rc"
