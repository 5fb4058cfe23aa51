#!/usr/bin/env bash
# Fuzzes the parsers that take outside input: Sentinel's hook arguments, the config file (and the
# sentinel.conf / unit files `check` reads), Sentinel's event payloads, and frames on the wire.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60; CI runs a short smoke)
#
# Installs cargo-fuzz when missing. cargo-fuzz wants nightly-only flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them (this project has no nightly). No sanitizer: the code is safe Rust,
# and the search is for panics, which libFuzzer catches without one, at a fraction of the build time.
# A crash fails the run; its input is in fuzz/artifacts/TARGET/: turn it into a unit test next to
# the parser before fixing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-60}
[[ $secs =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version '^0.13'
fi
export RUSTC_BOOTSTRAP=1
targets=(hook_args config sentinel_events frames)
cargo fuzz build --sanitizer none -O
for t in "${targets[@]}"; do
    # fuzz/seeds (committed) start the corpus; fuzz/corpus (ignored by git) keeps what a run finds.
    mkdir -p "fuzz/corpus/$t"
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    echo "== fuzz $t for ${secs}s"
    # -max_total_time bounds the run.
    cargo fuzz run --sanitizer none -O "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1 |
        grep -E 'Done|stat::number_of_executed_units|crash|panicked|ERROR' || true
    if compgen -G "fuzz/artifacts/$t/crash-*" >/dev/null; then
        echo "fuzz.sh: $t crashed; inputs in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "fuzz.sh: no crash in ${#targets[@]} targets x ${secs}s"
