#!/usr/bin/env bash
# Comparative failover benchmark: vipctl (hook, watch, both, watch with early
# claim) against the classic Sentinel shell hook and keepalived with a Redis
# role check, each in its own fresh namespace lab with real sentinels, over
# three faults (kill -9, host cut off and healed, redis frozen and resumed)
# and a planned switchover; and vipctl (hook + watch) with routed VIPs, in the
# routed lab (LAB_ROUTED=1: a router, host routes on lo announced over BGP +
# BFD by BIRD or FRR), over the same.
# Writes docs/BENCHMARKS.md and docs/failover-timeline.png.
#
# Usage (as root): scripts/bench.sh [N]      N failovers per setup and scenario (default 3)
#
# A full run with N=3 takes ~25 minutes for the seven L2 setups and ~3-4
# more per routed setup (each failover ~12-30 s, because Sentinel allows the
# next failover of a master only 2 x failover-timeout after the last, and
# takes ~10 s to turn a restarted master into a replica).
#
# Environment:
#   BENCH_SETUPS      setups to run (default: hook watch both early switch classic keepalived
#                     routed-bird routed-frr)
#   BENCH_SCENARIOS   scenarios to run (default: kill partition freeze switchover)
#   BENCH_QUIET_S     quiet interval for the daemons' CPU and memory (default 30)
#   BENCH_OUT         where the raw logs and rows go (default /tmp/vipctl-bench-PID; kept)
#   BENCH_DOC         the report to write (default docs/BENCHMARKS.md)
#   BENCH_PNG         the timeline chart to write (default docs/failover-timeline.png)
#   BENCH_VENV        Python venv for matplotlib (default /tmp/vipctl-bench-venv)
#   CARGO_TARGET_DIR  honoured for the build
#
# Installs what it needs (scripts/install-deps.sh; keepalived, iputils-arping
# and python3-venv from Debian; matplotlib from PyPI into BENCH_VENV), builds
# vipctl and the lab writer in release mode, and removes every lab it made on
# every exit path.  Traffic never leaves the lab's namespaces.

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly REPO=$PWD
readonly LABSH=$REPO/scripts/lab.sh

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

[[ $(id -u) -eq 0 ]] || die "run as root (the lab builds network namespaces)"
(($# <= 1)) || die "usage: $PROG [N]"
N=${1:-3}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of failovers (got '$N')"
read -r -a SETUPS <<<"${BENCH_SETUPS:-hook watch both early switch classic keepalived routed-bird routed-frr}"
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-kill partition freeze switchover}"
OUT=${BENCH_OUT:-/tmp/vipctl-bench-$$}
VENV=${BENCH_VENV:-/tmp/vipctl-bench-venv}
export BENCH_QUIET_S=${BENCH_QUIET_S:-30}

# --- cleanup -----------------------------------------------------------------------

# The setup being run is a child (run-setup.sh) with its own trap that tears
# its lab down; we forward TERM to it and wait, then remove any lab of it
# that is left (e.g. the child was killed with SIGKILL).
CHILD=
POLICY_OURS=0
cleanup() {
    local rc=$? lab
    trap '' INT TERM HUP
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        # Bounded: the child's teardown takes a few seconds at most.
        timeout 30 tail --pid="$CHILD" -f /dev/null || warn "setup process $CHILD still running"
    fi
    if [[ -n $CHILD ]]; then
        for lab in /tmp/vipctl-labs/bench-*-"$CHILD"; do
            [[ -d $lab ]] || continue
            "$LABSH" down "$lab" >/dev/null 2>&1 || warn "lab.sh down $lab failed; run: $LABSH down $lab"
        done
    fi
    if ((POLICY_OURS)); then rm -f /usr/sbin/policy-rc.d; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

T0=$SECONDS

# --- dependencies and build ------------------------------------------------------------

say "installing dependencies (scripts/install-deps.sh, keepalived, arping, python3-venv)"
scripts/install-deps.sh >/dev/null
missing=()
command -v keepalived >/dev/null || missing+=(keepalived)
command -v arping >/dev/null || missing+=(iputils-arping)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]} > 0)); then
    # Debian starts a service when it installs it; keepalived must run only
    # inside the lab, so forbid service starts for the install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# Temporary, from vipctl scripts/bench.sh: start no services.\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_OURS=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    if ((POLICY_OURS)); then
        rm -f /usr/sbin/policy-rc.d
        POLICY_OURS=0
    fi
fi
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $VENV (PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q matplotlib || die "pip install matplotlib failed"
fi

say "building (cargo build --release --locked --bin vipctl --example lab_writer)"
cargo build --release --locked --bin vipctl --example lab_writer
TARGET=$(realpath -- "${CARGO_TARGET_DIR:-target}")
export VIPCTL=$TARGET/release/vipctl LAB_WRITER=$TARGET/release/examples/lab_writer
[[ -x $VIPCTL && -x $LAB_WRITER ]] || die "the build did not produce $VIPCTL and $LAB_WRITER"

# Labs left behind by dead runs (anyone's) would share the CPUs with ours;
# sweep removes only labs whose owner is gone.
"$LABSH" sweep >/dev/null
# One namespace per lab names it: the switch (L2 lab) or the router (routed lab).
others=$(find /run/netns -maxdepth 1 \( -name 'vl*-sw' -o -name 'vl*-rt' \) 2>/dev/null | wc -l)

rm -rf -- "$OUT"
mkdir -p "$OUT"
{
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "redis: $(redis-server --version)"
    echo "keepalived: $(keepalived --version 2>&1 | head -n 1)"
    echo "bird: $(bird --version 2>&1 | head -n 1)"
    echo "frr: $(/usr/lib/frr/zebra --version 2>&1 | head -n 1)"
    echo "vipctl: $("$VIPCTL" --version) (git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "other labs: $others other lab(s) running when this run started (they share the CPUs)"
    echo "scenarios: ${SCENARIOS[*]}; N=$N; setups: ${SETUPS[*]}"
} >"$OUT/meta.txt"

# --- the setups --------------------------------------------------------------------------

failed=()
for setup in "${SETUPS[@]}"; do
    # In the background so that our traps run (and forward TERM) while it works.
    "$REPO/scripts/bench/run-setup.sh" "$setup" "$N" "$OUT" "${SCENARIOS[@]}" &
    CHILD=$!
    if ! wait "$CHILD"; then
        warn "setup $setup failed; its logs are in $OUT/$setup; continuing with the next setup"
        failed+=("$setup")
    fi
done
CHILD=

runtime=$((SECONDS - T0))
echo "runtime: $((runtime / 60)) min $((runtime % 60)) s (N=$N)" >>"$OUT/meta.txt"
((${#failed[@]} == 0)) || echo "failed setups: ${failed[*]} (their tables hold what was measured before the failure)" >>"$OUT/meta.txt"

DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
PNG=${BENCH_PNG:-docs/failover-timeline.png}
mkdir -p "$(dirname "$DOC")" "$(dirname "$PNG")"
"$VENV/bin/python" "$REPO/scripts/bench/analyze.py" "$OUT" "$N" "$DOC" "$PNG"
say "wrote $DOC and $PNG (raw logs in $OUT); total $((runtime / 60)) min $((runtime % 60)) s"
((${#failed[@]} == 0)) || die "setups failed: ${failed[*]}"
