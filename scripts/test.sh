#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, and the lab tests, which build
# three Redis hosts in network namespaces with real redis-server and redis-sentinel.
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
echo "== cargo test"
cargo test --locked -- --nocapture "$@"
