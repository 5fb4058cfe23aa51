#!/usr/bin/env bash
# The Redis and Valkey server builds the lab (scripts/lab.sh), its tests and the bench run, by
# name:
#
#   redis7   Debian 12's redis-server 7.0 from the host (the default)
#   valkey8  Debian 13's valkey-server 8.1
#   redis8   Debian 13's redis-server 8.0
#
# Debian 13's binaries need its glibc, so they come from a minimal trixie root that
# scripts/debian-roots.sh builds once and caches outside the repository. Each server binary is
# copied out of that root and pointed at the root's own loader and libraries (patchelf), so that
# it runs on the host with the host's paths and under its own name: the lab's configs, pidfiles,
# sockets and client-reconfig-script stay where lab.sh puts them, and /proc/PID/comm says
# valkey-server, valkey-sentinel, redis-server or redis-sentinel, as on a real host.
#
# Usage (as root for a first build):
#   servers.sh bin SERVER server|sentinel   print the path of that binary
#   servers.sh version SERVER               print the server's --version line
#   servers.sh names                        print the known SERVERs
#
# Exit status: 0 ok; 1 the root could not be built; 2 usage or unknown SERVER.

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
HERE=$(dirname "${BASH_SOURCE[0]}")
readonly HERE

# die MESSAGE [STATUS]
die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit "${2:-1}"
}

usage() {
    echo "usage: $PROG bin SERVER server|sentinel | version SERVER | names" >&2
    echo "SERVER: redis7 (Debian 12's redis 7.0, the default), valkey8 (Debian 13's valkey 8.1), redis8 (Debian 13's redis 8.0)" >&2
    exit 2
}

# server_bin SERVER KIND -> path.
server_bin() {
    local server=$1 kind=$2 name root
    case $kind in
    server | sentinel) ;;
    *) usage ;;
    esac
    case $server in
    redis7)
        name=redis-$kind
        command -v "$name" >/dev/null || die "$name is missing (Debian 12 package $name; run scripts/install-deps.sh as root)"
        command -v "$name"
        ;;
    valkey8 | redis8)
        name=${server%8}-$kind
        root=$("$HERE/debian-roots.sh" path trixie-servers) || exit 1
        [[ -x $root/.vipctl-bin/$name ]] || die "$root/.vipctl-bin/$name is missing: remove $root and run again"
        echo "$root/.vipctl-bin/$name"
        ;;
    *) die "unknown server '$server': choose redis7, valkey8 or redis8" 2 ;;
    esac
}

main() {
    (($# >= 1)) || usage
    case $1 in
    bin)
        (($# == 3)) || usage
        server_bin "$2" "$3"
        ;;
    version)
        (($# == 2)) || usage
        local bin
        bin=$(server_bin "$2" server) || exit $?
        "$bin" --version
        ;;
    names) echo "redis7 valkey8 redis8" ;;
    *) usage ;;
    esac
}

main "$@"
