#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, the lab tests (three Redis hosts
# in network namespaces with real redis-server and redis-sentinel), then, as root, the Debian
# package (built, installed, checked, used in a lab failover, purged) and a fuzz smoke run.
# VIPCTL_QUICK=1 stops after the lab tests.
#
# As root it installs what is missing (Debian packages) and the lab tests must run: a lab test
# that cannot run fails instead of skipping. Without root the lab tests skip, loudly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -eq 0 ]]; then
    scripts/install-deps.sh
    # A lab left behind by a run that was killed must not disturb this one.
    scripts/lab.sh sweep
    export VIPCTL_REQUIRE_LAB=1
else
    echo "test.sh: not root: the lab tests will be SKIPPED (they need root for network namespaces)." >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (unit, property and lab tests)"
results=$(mktemp /tmp/vipctl-test-results.XXXXXX)
trap 'rm -f "$results"' EXIT
cargo test --locked -- --nocapture "$@" 2>&1 | tee "$results"

if [[ $(id -u) -eq 0 && ${VIPCTL_QUICK:-0} != 1 ]]; then
    echo "== package: build the .deb, install it, check it, run a lab failover with it, purge it"
    deb=$(scripts/package.sh | tail -n 1)
    scripts/package-test.sh "$deb"
    echo "== fuzz smoke (${VIPCTL_FUZZ_SECONDS:-10} s per target)"
    scripts/fuzz.sh "${VIPCTL_FUZZ_SECONDS:-10}"
else
    echo "test.sh: packaging and fuzz stages SKIPPED (need root; VIPCTL_QUICK=1 skips them on purpose)" >&2
fi

# One closing line for the whole run (cargo's own last line is the doc-test binary's "0 passed").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
    END { printf "%d passed, %d failed\n", p, f }' "$results"

