#!/usr/bin/env bash
# The classic Sentinel client-reconfig-script, as people write it today
# (docs: field-notes, "The classic Sentinel hook script").  It is the
# baseline of scripts/bench.sh, not something vipctl ships: kept deliberately
# naive, with exactly the usual behaviour and its flaws (IPv4 only, trusts its
# arguments, no check of the current master, always exits 0).
#
# Sentinel calls: <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
#
# The one liberty taken: the host's own IP, usually hard-coded per host, is
# read from eth0 here, so one file serves the three lab hosts.

set -euo pipefail

readonly VIP=198.51.100.100
readonly PREFIX=24
readonly DEV=eth0

# The first IPv4 address of eth0 that is not the VIP: the host's own.
own_ip() {
    ip -4 -o addr show dev "$DEV" | awk -v vip="$VIP" '{ split($4, a, "/"); if (a[1] != vip) { print a[1]; exit } }'
}

main() {
    local new_master=${6:-} me
    me=$(own_ip) || me=
    if [[ -n $new_master && $new_master == "$me" ]]; then
        # Errors are ignored, as in the usual script: "already there" is fine.
        ip addr add "$VIP/$PREFIX" dev "$DEV" 2>/dev/null || true
        # Three unsolicited ARP replies, one per second: the script takes ~2 s.
        arping -q -c 3 -A -I "$DEV" "$VIP" || true
    else
        ip addr del "$VIP/$PREFIX" dev "$DEV" 2>/dev/null || true
    fi
}

main "$@"
# The usual script exits 0 whatever happened, so Sentinel never retries it.
exit 0
