#!/usr/bin/env bash
# keepalived + a Redis role check, the "other common answer" baseline of
# scripts/bench.sh, in one host of a scripts/lab.sh lab.
#
# Usage (as root): keepalived.sh start LAB HOST
#   Writes LAB/HOST/keepalived.conf and LAB/HOST/keepalived-check.sh, starts
#   Debian's keepalived (VRRP only) inside HOST's namespace in the
#   background, records its PID in LAB/extra.pids (so "lab.sh down" stops it
#   whatever happens to the caller) and prints the PID.  keepalived logs to
#   LAB/HOST/keepalived.log.
#
# The configuration is the usual one: a vrrp_script asking the host's own
# Redis for its role every second (fall 2, rise 1), one VRRP instance holding
# the IPv4 VIP, the same priority everywhere, no nopreempt.  Peers are
# unicast so the result does not depend on multicast on the lab bridge.  The
# IPv6 VIP is left out: a VRRPv2 instance carries one address family, and the
# classic hook has no IPv6 either, so both baselines move the IPv4 VIP only.

set -euo pipefail

readonly PROG=${0##*/}
readonly VIP4=198.51.100.100

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

ip_of() {
    case $1 in
    h1) echo 198.51.100.11 ;;
    h2) echo 198.51.100.12 ;;
    h3) echo 198.51.100.13 ;;
    *) die "unknown host '$1' (expected h1, h2 or h3)" ;;
    esac
}

# write_conf LAB HOST: the check script and keepalived.conf of HOST.
write_conf() {
    local lab=$1 host=$2 me peer peers=
    me=$(ip_of "$host")
    for peer in h1 h2 h3; do
        [[ $peer == "$host" ]] || peers+=" $(ip_of "$peer")"
    done
    # keepalived runs a script without a shell, so the pipe lives in a file.
    # enable_script_security wants it owned by root and not writable by
    # others, which is how we create it.
    cat >"$lab/$host/keepalived-check.sh" <<CHECK
#!/bin/sh
# Written by scripts/bench/keepalived.sh: succeed only while this host's Redis is master.
exec /bin/sh -c 'redis-cli -h $me info replication | grep -q role:master'
CHECK
    chmod 755 "$lab/$host/keepalived-check.sh"
    cat >"$lab/$host/keepalived.conf" <<CONF
# Written by scripts/bench/keepalived.sh for lab host $host.
global_defs {
    router_id lab-$host
    script_user root
    enable_script_security
}

vrrp_script chk_redis_master {
    script "$lab/$host/keepalived-check.sh"
    interval 1
    # A frozen Redis makes redis-cli hang: count that as a failure.
    timeout 1
    fall 2
    rise 1
}

vrrp_instance VI_REDIS {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    unicast_src_ip $me
    unicast_peer {
$(for peer in $peers; do printf '        %s\n' "$peer"; done)
    }
    virtual_ipaddress {
        $VIP4/24 dev eth0
    }
    track_script {
        chk_redis_master
    }
}
CONF
}

cmd_start() {
    local lab=$1 host=$2 ns pid here
    [[ $(id -u) -eq 0 ]] || die "run as root"
    command -v keepalived >/dev/null || die "keepalived is not installed (apt-get install keepalived)"
    [[ -f $lab/id ]] || die "no lab in $lab"
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    ns=$("$here/../lab.sh" ns "$lab" "$host")
    ip_of "$host" >/dev/null
    write_conf "$lab" "$host"
    keepalived -t"$lab/$host/keepalived.conftest.log" -f "$lab/$host/keepalived.conf" ||
        die "keepalived rejects $lab/$host/keepalived.conf: $(tr '\n' ' ' <"$lab/$host/keepalived.conftest.log")"
    # Per-host pid files: the hosts share one file system, and keepalived
    # refuses to start when its pid file names a live keepalived.
    # --dont-fork keeps the recorded PID the real parent; -P: VRRP only;
    # -l -D: log to our file with details; -G: not to the machine's syslog.
    ip netns exec "$ns" keepalived --dont-fork -P -l -D -G \
        -f "$lab/$host/keepalived.conf" \
        -p "$lab/$host/keepalived.pid" \
        -r "$lab/$host/keepalived-vrrp.pid" \
        -c "$lab/$host/keepalived-checkers.pid" \
        </dev/null >>"$lab/$host/keepalived.log" 2>&1 &
    pid=$!
    echo "$pid" >>"$lab/extra.pids"
    disown "$pid"
    echo "$pid"
}

main() {
    case ${1:-} in
    start)
        (($# == 3)) || die "usage: $PROG start LAB HOST"
        cmd_start "$2" "$3"
        ;;
    *) die "usage: $PROG start LAB HOST" ;;
    esac
}

main "$@"
