#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, the lab tests (three Redis hosts
# in network namespaces with real redis-server and redis-sentinel), the lab tests again against
# Debian 13's valkey-server 8.1 and redis-server 8.0, then, as root, the Debian package (built,
# installed, checked, used in a lab failover, purged; then under real systemd in Debian 12 and 13
# containers), a fuzz smoke run and a short fault soak (every kind of fault once,
# scripts/bench/soak.sh, strict).
# VIPCTL_QUICK=1 stops after the lab tests. Arguments go to the test binaries (e.g. a name filter).
#
# The lab tests are #[ignore]d (they need root). As root this installs what is missing (Debian
# packages) and runs them with --include-ignored, so one that cannot run fails. Without root they
# are reported as ignored, and this says so loudly, at the start and before the closing line.
# The last line is "N passed, M failed, K ignored" over every test binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lab_args=()
if [[ $(id -u) -eq 0 ]]; then
    scripts/install-deps.sh
    # A lab left behind by a run that was killed must not disturb this one.
    scripts/lab.sh sweep
    lab_args=(--include-ignored)
fi

not_root_banner() {
    cat >&2 <<'NOTE'

************************************************************************************************
* test.sh: NOT ROOT: the lab tests (tests/lab_*.rs) are IGNORED, i.e. SKIPPED: they build      *
* network namespaces, which needs root. cargo test reports them as "ignored". To run them, run *
* scripts/test.sh as root (it installs redis and the other Debian packages they need).         *
************************************************************************************************

NOTE
}
if ((${#lab_args[@]} == 0)); then not_root_banner; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build --examples (the lab's writer and rogue sentinel)"
# `cargo test` builds an example with `test = true` only as a test harness, not as the plain binary
# the lab tests run, so build them explicitly (a clean clone has neither).
cargo build --examples --locked
echo "== cargo test (unit, property and lab tests)"
results=$(mktemp /tmp/vipctl-test-results.XXXXXX)
trap 'rm -f "$results"' EXIT
rc=0
cargo test --locked --no-fail-fast -- --nocapture "${lab_args[@]}" "$@" 2>&1 | tee "$results" || rc=$?

# One closing line for the whole run (cargo's own last line is the doc-test binary's "0 passed").
summary() {
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) p += $i
                if ($(i + 1) ~ /^failed/) f += $i
                if ($(i + 1) ~ /^ignored/) g += $i
            }
        }
        END { printf "%d passed, %d failed, %d skipped\n", p, f, g }' "$results"
}
if ((rc != 0)); then
    echo "test.sh: cargo test failed (exit $rc); packaging and fuzz stages not run" >&2
    if ((${#lab_args[@]} == 0)); then not_root_banner; fi
    summary
    exit "$rc"
fi

# The lab tests again against Debian 13's servers (scripts/servers.sh builds and caches them on
# first use): every tests/lab_*.rs binary, each test as above. VIPCTL_SERVERS picks the builds
# ("" skips the stage).
if [[ $(id -u) -eq 0 ]]; then
    for server in ${VIPCTL_SERVERS-valkey8 redis8}; do
        version=$(scripts/servers.sh version "$server") || {
            echo "test.sh: cannot provide the $server build (scripts/servers.sh, above); the lab tests against it did not run" >&2
            summary
            exit 1
        }
        echo "== lab tests against $server: $version"
        mapfile -t labs < <(cd tests && ls lab_*.rs | sed 's/\.rs$//')
        lab_tests=()
        for t in "${labs[@]}"; do lab_tests+=(--test "$t"); done
        # The ten quiet minutes of tests/lab_fail_fast.rs ran against redis7 above; here one.
        echo "test.sh: NOTE: quiet_minutes_trigger_nothing runs ${VIPCTL_QUIET_S_OTHERS:-60} s against $server (600 s against redis7)" >&2
        VIPCTL_QUIET_S=${VIPCTL_QUIET_S_OTHERS:-60} LAB_SERVER=$server cargo test --locked --no-fail-fast "${lab_tests[@]}" -- --nocapture --include-ignored "$@" \
            2>&1 | sed -u "s/^test \(.*\) \.\.\. /test [$server] \1 ... /" | tee -a "$results" || rc=$?
        if ((rc != 0)); then
            echo "test.sh: the lab tests against $server failed (exit $rc); packaging and fuzz stages not run" >&2
            summary
            exit "$rc"
        fi
    done
fi

if [[ $(id -u) -eq 0 && ${VIPCTL_QUICK:-0} != 1 ]]; then
    echo "== package: build the .deb, install it, check it, run a lab failover with it, purge it"
    deb=$(scripts/package.sh | tail -n 1)
    scripts/package-test.sh "$deb"
    echo "== package under real systemd: Debian 12 and 13 containers (systemd-nspawn), their sentinel units"
    scripts/systemd-test.sh "$deb"
    echo "== fuzz smoke (${VIPCTL_FUZZ_SECONDS:-10} s per target)"
    scripts/fuzz.sh "${VIPCTL_FUZZ_SECONDS:-10}"
    # Every kind of fault once, in an order drawn from a seed that changes from run to run (it is
    # printed first: SOAK_SEED=N replays a run). Strict: every round converges, no acknowledged
    # write is lost but in a partial cut, and at most 10 there.
    seed=${SOAK_SEED:-$(date +%s)}
    echo "== fault soak: vipctl, ${VIPCTL_SOAK_ROUNDS:-12} rounds, seed $seed (scripts/bench/soak.sh)"
    tdir=${CARGO_TARGET_DIR:-target}
    SOAK_STRICT=1 SOAK_MOVERS=vipctl VIPCTL=$tdir/release/vipctl LAB_WRITER=$tdir/debug/examples/lab_writer \
        SOAK_OUT="/tmp/vipctl-test-soak-$$/report.md" scripts/bench/soak.sh "${VIPCTL_SOAK_ROUNDS:-12}" "$seed"
else
    echo "test.sh: packaging, fuzz and soak stages SKIPPED (need root; VIPCTL_QUICK=1 skips them on purpose)" >&2
fi

if ((${#lab_args[@]} == 0)); then not_root_banner; fi
summary
