#!/usr/bin/env bash
# Comparative failover benchmark: vipctl (hook, watch, both, watch with early
# claim) against the classic Sentinel shell hook and keepalived with a Redis
# role check, each in its own fresh namespace lab with real sentinels, over
# three faults (kill -9, host cut off and healed, redis frozen and resumed)
# and a planned switchover; and vipctl (hook + watch, without and with early
# claim) with routed VIPs, in the routed lab (LAB_ROUTED=1: a router, host
# routes on lo announced over BGP + BFD by BIRD or FRR), over the same.
# Optionally the same vipctl setups with an older vipctl binary (BENCH_BASELINE,
# setups named SETUP@base), side by side with the current build's, any setup
# against another Redis/Valkey server build (setups named SETUP~SERVER), and the
# write fences' effect on Sentinel (scripts/bench/fence.sh).
# Writes docs/BENCHMARKS.md and docs/failover-timeline.png.
#
# Usage (as root): scripts/bench.sh [N]      N failovers per setup and scenario (default 3)
#
# A full run with N=3 takes ~25 minutes for the seven L2 setups, ~3-4 more
# per routed setup (each failover ~12-30 s, because Sentinel allows the next
# failover of a master only 2 x failover-timeout after the last, and takes
# ~10 s to turn a restarted master into a replica), as much again per @base
# or ~SERVER setup as for its counterpart, and ~2 minutes for the fences.
#
# Setups:
#   hook              vipctl as every sentinel's client-reconfig-script
#   watch             vipctl watch on every host, no hook
#   both              hook + watch
#   early             watch with [watch] early_claim = true, no hook
#   switch            as early; the planned switchover by `vipctl switchover`
#   fast              as early, with [watch] fail_fast = true (SENTINEL FAILOVER when the
#                     master's Redis dies; compare with early and classic at BENCH_DOWN_AFTER)
#   classic           the classic shell hook (scripts/bench/classic-hook.sh)
#   keepalived        keepalived with a Redis role check (scripts/bench/keepalived.sh)
#   routed-bird       hook + watch in the routed lab, BIRD on the hosts
#   routed-frr        hook + watch in the routed lab, FRR on the hosts
#   routed-bird-early as routed-bird, the daemons with early_claim = true
#   routed-frr-early  as routed-frr, the daemons with early_claim = true
#   SETUP@base        any of the vipctl setups above (not classic, keepalived) run with
#                     the BENCH_BASELINE binary instead of the fresh build (daemons, hook,
#                     `vipctl claim` and `vipctl switchover` alike); the lab writer is the
#                     current build's for every setup.  E.g. "early early@base".
#   SETUP~SERVER      any setup above, @base ones included (suffix last: SETUP@base~SERVER),
#                     run exactly as SETUP but in a lab whose Redis hosts run another server
#                     build (LAB_SERVER=SERVER for its `lab.sh up`): valkey8 (Debian 13's
#                     valkey 8.1) or redis8 (Debian 13's redis 8.0), see scripts/servers.sh,
#                     which builds and caches them on first use (~30 s).  Without a suffix a
#                     setup runs Debian 12's redis 7.0 (redis7, the default), as always;
#                     LAB_SERVER from the environment is ignored.  Each server's version goes
#                     into meta.txt and the report, and its column sits next to SETUP's.
#                     E.g. "early early~valkey8 classic classic~redis8".
#
# Environment:
#   BENCH_SETUPS      setups to run (default: hook watch both early switch classic keepalived
#                     routed-bird routed-frr routed-bird-early routed-frr-early)
#   BENCH_SCENARIOS   scenarios to run (default: kill partition freeze switchover partial; partial: L2 labs only)
#   BENCH_BASELINE    an older vipctl binary for the SETUP@base setups (e.g. one built from
#                     the previous release); required when BENCH_SETUPS has one.  Its path
#                     and --version go into meta.txt and the report.
#   BENCH_BASELINE_REV  the git revision BENCH_BASELINE was built from, for the report's
#                     column names ("before (git SHA)"); default: they say "before (baseline)"
#   BENCH_FENCE       1 (default): also run scripts/bench/fence.sh 3 (CLIENT PAUSE WRITE
#                     against the min-replicas-to-write fence on a healthy master) into the
#                     report's "Fences" section; 0: skip it
#   BENCH_DOWN_AFTER  the sentinels' down-after-milliseconds in every lab (default 1000; LAB_DOWN_AFTER
#                     of scripts/lab.sh), in meta.txt and the report
#   BENCH_QUIET_S     quiet interval for the daemons' CPU and memory (default 30)
#   BENCH_SOAK_ROUNDS rounds of the fault soak, scripts/bench/soak.sh, both movers (default 40;
#                     0: skip); BENCH_SOAK_SEED its seed (default 1)
#   BENCH_QUIET_MIN   minutes of scripts/bench/quiet.sh, no faults at all (default 10; 0: skip)
#   BENCH_SCALE       master counts for scripts/bench/scale.sh 10 (default "1 256"; empty: skip);
#                     with BENCH_BASELINE it runs that build too
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
read -r -a SETUPS <<<"${BENCH_SETUPS:-hook watch both early switch classic keepalived routed-bird routed-frr routed-bird-early routed-frr-early}"
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-kill partition freeze switchover partial}"
OUT=${BENCH_OUT:-/tmp/vipctl-bench-$$}
VENV=${BENCH_VENV:-/tmp/vipctl-bench-venv}
export BENCH_QUIET_S=${BENCH_QUIET_S:-30}
FENCE=${BENCH_FENCE:-1}
export LAB_DOWN_AFTER=${BENCH_DOWN_AFTER:-1000}
[[ $LAB_DOWN_AFTER =~ ^[1-9][0-9]{2,5}$ ]] || die "BENCH_DOWN_AFTER must be milliseconds from 100 to 600000 (got '$LAB_DOWN_AFTER')"
[[ $FENCE == 0 || $FENCE == 1 ]] || die "BENCH_FENCE must be 0 or 1 (got '$FENCE')"

# Every setup checked before anything is installed or built; a SETUP@base
# needs the baseline binary, checked here as well.  SETUP~SERVER: SETUP (with
# or without @base) against the server build SERVER, one of scripts/servers.sh's
# names other than the default redis7.
((${#SETUPS[@]} > 0)) || die "BENCH_SETUPS names no setup"
read -r -a ALL_SERVERS <<<"$("$REPO/scripts/servers.sh" names)"
((${#ALL_SERVERS[@]} > 0)) || die "scripts/servers.sh names printed no server"
OTHER_SERVERS=()
for s in "${ALL_SERVERS[@]}"; do [[ $s == redis7 ]] || OTHER_SERVERS+=("$s"); done
want_base=0
SERVERS_USED=()
for setup in "${SETUPS[@]}"; do
    name=$setup server=
    if [[ $setup == *"~"* ]]; then
        name=${setup%"~"*} server=${setup##*"~"}
        [[ $name != *"~"* ]] || die "setup '$setup' has more than one ~SERVER suffix"
        [[ $server != redis7 ]] ||
            die "setup '$setup': redis7 is the default server; name the setup without the suffix ('$name')"
        [[ " ${OTHER_SERVERS[*]} " == *" $server "* ]] ||
            die "setup '$setup': unknown server '$server' (the ~SERVER suffix comes last, e.g. early@base~valkey8; SERVER is one of: ${OTHER_SERVERS[*]})"
        [[ " ${SERVERS_USED[*]} " == *" $server "* ]] || SERVERS_USED+=("$server")
    fi
    case ${name%@base} in
    hook | watch | both | early | switch | fast | routed-bird | routed-frr | routed-bird-early | routed-frr-early) ;;
    classic | keepalived) [[ $name != *@base ]] || die "setup '$setup': ${name%@base} runs no vipctl, so it has no @base" ;;
    *) die "unknown setup '$setup' (see the list at the top of $PROG)" ;;
    esac
    [[ $name != *@base ]] || want_base=1
done
# The server build is the setup's suffix, nothing else (the extra scripts below use the default).
[[ -z ${LAB_SERVER:-} ]] || warn "LAB_SERVER=$LAB_SERVER is ignored: name the server in a setup's ~SERVER suffix"
unset LAB_SERVER
BASELINE= BASELINE_VERSION= BASELINE_LABEL=
if ((want_base)); then
    [[ -n ${BENCH_BASELINE:-} ]] ||
        die "BENCH_SETUPS has @base setups but BENCH_BASELINE is not set (the baseline vipctl binary, e.g. BENCH_BASELINE=/path/to/old/vipctl)"
fi
if [[ -n ${BENCH_BASELINE:-} ]]; then
    BASELINE=$(realpath -e -- "$BENCH_BASELINE" 2>/dev/null) || die "BENCH_BASELINE '$BENCH_BASELINE' does not exist"
    [[ -f $BASELINE && -x $BASELINE ]] || die "BENCH_BASELINE '$BENCH_BASELINE' is not an executable file"
    # It becomes the sentinels' client-reconfig-script in the hook setups, which takes no quoting.
    [[ $BASELINE =~ ^/[A-Za-z0-9._/+@=,-]+$ ]] || die "BENCH_BASELINE '$BASELINE' has characters a sentinel.conf cannot take unquoted"
    BASELINE_VERSION=$("$BASELINE" --version 2>&1 | head -n 1) || die "BENCH_BASELINE '$BASELINE' --version failed: $BASELINE_VERSION"
    [[ $BASELINE_VERSION == vipctl* ]] || die "BENCH_BASELINE '$BASELINE' is not vipctl (--version says '$BASELINE_VERSION')"
    BASELINE_LABEL=baseline
    if [[ -n ${BENCH_BASELINE_REV:-} ]]; then
        BASELINE_LABEL="git $(git -C "$REPO" rev-parse --short "${BENCH_BASELINE_REV}^{commit}" 2>/dev/null || echo "$BENCH_BASELINE_REV")"
    fi
    ((want_base)) || warn "BENCH_BASELINE is set but no setup in BENCH_SETUPS ends in @base: the baseline is not run"
    export BENCH_BASELINE=$BASELINE
fi

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
        # run-setup.sh's lab, or fence.sh's (bench-fence-PID-KIND-RUN).
        for lab in /tmp/vipctl-labs/bench-*-"$CHILD" /tmp/vipctl-labs/bench-fence-"$CHILD"-*; do
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

# The ~SERVER setups' server builds: scripts/servers.sh builds and caches Debian 13's on first use.
declare -A SERVER_VERSION=()
for s in "${SERVERS_USED[@]}"; do
    say "server build $s (scripts/servers.sh version $s)"
    SERVER_VERSION[$s]=$("$REPO/scripts/servers.sh" version "$s" | head -n 1) || die "scripts/servers.sh version $s failed"
    [[ -n ${SERVER_VERSION[$s]} ]] || die "scripts/servers.sh version $s printed nothing"
done

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
    # The ~SERVER setups' builds (none without such setups: the redis line above is the default's).
    for s in "${SERVERS_USED[@]}"; do
        echo "server $s: ${SERVER_VERSION[$s]}"
    done
    echo "keepalived: $(keepalived --version 2>&1 | head -n 1)"
    echo "bird: $(bird --version 2>&1 | head -n 1)"
    echo "frr: $(/usr/lib/frr/zebra --version 2>&1 | head -n 1)"
    # The build is of the work tree: say so when it differs from HEAD where the binaries come from.
    dirty=
    [[ -z $(git -C "$REPO" status --porcelain -- src examples Cargo.toml Cargo.lock build.rs 2>/dev/null) ]] ||
        dirty=", with uncommitted changes"
    echo "vipctl: $("$VIPCTL" --version) (git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty)"
    if [[ -n $BASELINE ]]; then
        echo "baseline: $BASELINE_VERSION ($BASELINE)"
        echo "baseline label: $BASELINE_LABEL"
    fi
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "other labs: $others other lab(s) running when this run started (they share the CPUs)"
    echo "scenarios: ${SCENARIOS[*]}; N=$N; setups: ${SETUPS[*]}"
    echo "down-after-milliseconds: $LAB_DOWN_AFTER"
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

# The fences, on a healthy master in labs of their own: fence.sh prints a Markdown table,
# which the report takes as it is (OUT/fence.md).
fence_failed=0
if ((FENCE)); then
    say "fences (scripts/bench/fence.sh 3)"
    # LAB_WRITER (exported above): fence.sh uses this build's writer instead of building again.
    "$REPO/scripts/bench/fence.sh" 3 >"$OUT/fence.md.tmp" 2>"$OUT/fence.err" &
    CHILD=$!
    if wait "$CHILD"; then
        mv -f -- "$OUT/fence.md.tmp" "$OUT/fence.md"
        echo "fence: scripts/bench/fence.sh 3" >>"$OUT/meta.txt"
    else
        warn "scripts/bench/fence.sh failed (its output is in $OUT/fence.md.tmp and $OUT/fence.err): $(tail -n 3 "$OUT/fence.err" | tr '\n' ' ')"
        echo "fence: scripts/bench/fence.sh 3 failed (see fence.err with the raw logs)" >>"$OUT/meta.txt"
        fence_failed=1
    fi
    CHILD=
else
    echo "fence: not run (BENCH_FENCE=0)" >>"$OUT/meta.txt"
fi

# The long fault soak (both movers, one seeded sequence), a long run without faults, and the
# scale figures: scripts of their own, each into a section appended to the report.
extra_failed=()
extra() {
    local name=$1
    shift
    say "$name ($*)"
    if "$@" >"$OUT/$name.md.tmp" 2>"$OUT/$name.err"; then
        mv -f -- "$OUT/$name.md.tmp" "$OUT/$name.md"
    else
        warn "$name failed (see $OUT/$name.err): $(tail -n 3 "$OUT/$name.err" | tr '\n' ' ')"
        extra_failed+=("$name")
    fi
}
export VIPCTL LAB_WRITER
if ((${BENCH_SOAK_ROUNDS:-40} > 0)); then
    SOAK_OUT=$OUT/soak/report.md extra soak "$REPO/scripts/bench/soak.sh" "${BENCH_SOAK_ROUNDS:-40}" "${BENCH_SOAK_SEED:-1}"
    [[ ! -f $OUT/soak/report.md ]] || cp -f -- "$OUT/soak/report.md" "$OUT/soak.md"
fi
if ((${BENCH_QUIET_MIN:-10} > 0)); then
    extra quiet "$REPO/scripts/bench/quiet.sh" "${BENCH_QUIET_MIN:-10}"
fi
if [[ -n ${BENCH_SCALE-1 256} ]]; then
    SCALE_MASTERS=${BENCH_SCALE-1 256} SCALE_BASELINE=${BENCH_BASELINE:-} extra scale "$REPO/scripts/bench/scale.sh" 10
fi

runtime=$((SECONDS - T0))
echo "runtime: $((runtime / 60)) min $((runtime % 60)) s (N=$N)" >>"$OUT/meta.txt"
((${#failed[@]} == 0)) || echo "failed setups: ${failed[*]} (their tables hold what was measured before the failure)" >>"$OUT/meta.txt"

DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
PNG=${BENCH_PNG:-docs/failover-timeline.png}
mkdir -p "$(dirname "$DOC")" "$(dirname "$PNG")"
"$VENV/bin/python" "$REPO/scripts/bench/analyze.py" "$OUT" "$N" "$DOC" "$PNG"
{
    if [[ -f $OUT/soak.md ]]; then
        printf '\n## Fault soak (`scripts/bench/soak.sh %s %s`)\n\n' "${BENCH_SOAK_ROUNDS:-40}" "${BENCH_SOAK_SEED:-1}"
        # Its own title line is this section's heading.
        tail -n +2 "$OUT/soak.md" | sed 's/^## /### /'
    fi
    if [[ -f $OUT/quiet.md ]]; then
        printf '\n## No faults (`scripts/bench/quiet.sh %s`)\n\n' "${BENCH_QUIET_MIN:-10}"
        cat "$OUT/quiet.md"
    fi
    if [[ -f $OUT/scale.md ]]; then
        printf '\n## Scale (`SCALE_MASTERS="%s" scripts/bench/scale.sh 10`%s)\n\n```\n' "${BENCH_SCALE-1 256}" \
            "${BENCH_BASELINE:+, SCALE_BASELINE: the baseline build}"
        cat "$OUT/scale.md"
        printf '```\n'
    fi
} >>"$DOC"
say "wrote $DOC and $PNG (raw logs in $OUT); total $((runtime / 60)) min $((runtime % 60)) s"
((${#failed[@]} == 0)) || die "setups failed: ${failed[*]}"
((fence_failed == 0)) || die "scripts/bench/fence.sh failed (see $OUT/fence.err)"
((${#extra_failed[@]} == 0)) || die "failed: ${extra_failed[*]} (see their .err files in $OUT)"
