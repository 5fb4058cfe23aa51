#!/usr/bin/env bash
# Timing wrapper around classic-hook.sh for scripts/bench.sh: Sentinel runs
# this as its client-reconfig-script; it logs one line per call,
#   classic start_us=<us> end_us=<us> args=<sentinel's arguments>
# next to the host's other lab logs (the lab's sentinels export
# VIPCTL_LOG_FILE=DIR/HOST/vipctl.log to their hooks), and exits with the
# hook's status.  $EPOCHREALTIME costs no fork, so start_us is the exec time
# of this wrapper within a few hundred microseconds.

set -uo pipefail
start=${EPOCHREALTIME/./}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/classic-hook.sh" "$@"
rc=$?
end=${EPOCHREALTIME/./}
log=${VIPCTL_LOG_FILE:-/dev/null}
log=${log%/*}/classic-hook.log
printf 'classic start_us=%s end_us=%s rc=%s args=%s\n' "$start" "$end" "$rc" "$*" >>"$log" 2>/dev/null || true
exit "$rc"
