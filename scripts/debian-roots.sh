#!/usr/bin/env bash
# Minimal Debian roots (debootstrap --variant=minbase) that the lab and the tests use, built once
# and cached outside the repository in VIPCTL_ROOTS (default /var/cache/vipctl-lab), one folder
# per root, root-owned:
#
#   trixie-servers    Debian 13's valkey-server/-sentinel 8.1 and redis-server/-sentinel 8.0,
#                     their binaries copied to .vipctl-bin/ and pointed at the root's own loader
#                     and libraries (patchelf), so they run on the host (scripts/servers.sh)
#   bookworm-systemd  Debian 12 with systemd, redis-server and redis-sentinel: booted with
#                     systemd-nspawn by scripts/systemd-test.sh
#   trixie-systemd    Debian 13 with systemd, redis and valkey (server and sentinel): the same
#
# Usage (as root for a first build):  debian-roots.sh path NAME    print the root's path
#                                     debian-roots.sh names        print the known NAMEs
# Exit status: 0 ok; 1 a root could not be built; 2 usage or unknown NAME.

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
readonly ROOTS=${VIPCTL_ROOTS:-/var/cache/vipctl-lab}
readonly MIRROR=${VIPCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly ARCH_LIBDIR=usr/lib/x86_64-linux-gnu
# Bump when a root's package list changes, so that cached roots are rebuilt.
readonly FORMAT=2

# die MESSAGE [STATUS]
die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit "${2:-1}"
}

usage() {
    echo "usage: $PROG path NAME | names    (NAME: trixie-servers bookworm-systemd trixie-systemd)" >&2
    exit 2
}

# spec NAME -> "SUITE PACKAGES" of that root.
spec() {
    local base=systemd,systemd-sysv,dbus,iproute2,procps,redis-server,redis-sentinel
    case $1 in
    trixie-servers) echo "trixie valkey-server,valkey-sentinel,redis-server,redis-sentinel" ;;
    bookworm-systemd) echo "bookworm $base" ;;
    trixie-systemd) echo "trixie $base,valkey-server,valkey-sentinel" ;;
    *) die "unknown root '$1': choose trixie-servers, bookworm-systemd or trixie-systemd" 2 ;;
    esac
}

# A cache that another user could write to would hand root a binary to run.
check_owned_by_root() {
    local p=$1 st uid mode
    st=$(stat -c '%u %a' -- "$p") || die "cannot stat $p"
    read -r uid mode <<<"$st"
    [[ $uid == 0 ]] || die "$p is owned by uid $uid, not root: remove it or set VIPCTL_ROOTS to a root-owned folder"
    (((8#$mode & 8#022) == 0)) || die "$p is writable by group or others (mode $mode): chmod go-w $p"
}

# make_bins TMP ROOT: copies each server out of the root under the name it runs as, pointed at
# ROOT's loader and libraries (ROOT is where TMP ends up).
make_bins() {
    local tmp=$1 root=$2 entry name src
    command -v patchelf >/dev/null || die "patchelf is missing (run scripts/install-deps.sh as root)"
    mkdir -p -- "$tmp/.vipctl-bin"
    for entry in valkey-server:valkey-server valkey-sentinel:valkey-server \
        redis-server:redis-server redis-sentinel:redis-server; do
        name=${entry%%:*}
        src=$(chroot "$tmp" readlink -f "/usr/bin/${entry#*:}") || die "no /usr/bin/${entry#*:} in $tmp"
        cp -- "$tmp$src" "$tmp/.vipctl-bin/$name"
        # DT_RPATH (not RUNPATH) so that the libraries' own dependencies come from the root too.
        patchelf --set-interpreter "$root/$ARCH_LIBDIR/ld-linux-x86-64.so.2" \
            --force-rpath --set-rpath "$root/$ARCH_LIBDIR" "$tmp/.vipctl-bin/$name" ||
            die "patchelf of $name failed"
    done
}

# root_path NAME -> the cached root's path, built on first use (under a lock: tests run at once).
root_path() {
    local name=$1 root=$ROOTS/$1 suite packages tmp spec_out
    spec_out=$(spec "$name") || exit 2
    read -r suite packages <<<"$spec_out"
    if [[ ! -d $ROOTS ]]; then
        [[ $(id -u) -eq 0 ]] || die "$ROOTS does not exist; run as root once to build the Debian roots there"
        install -d -m 0755 -o root -g root -- "$ROOTS"
    fi
    check_owned_by_root "$ROOTS"
    if [[ $(cat "$root/.vipctl-complete" 2>/dev/null) != "$FORMAT" ]]; then
        [[ $(id -u) -eq 0 ]] || die "no root $name in $root yet; run as root once to build it"
        command -v debootstrap >/dev/null || die "debootstrap is missing (run scripts/install-deps.sh as root)"
        exec 8>"$ROOTS/.lock"
        flock -w 900 8 || die "another build has held $ROOTS/.lock for 15 minutes"
        if [[ $(cat "$root/.vipctl-complete" 2>/dev/null) != "$FORMAT" ]]; then
            tmp=$root.building
            rm -rf --one-file-system -- "$tmp" "$root"
            echo "$PROG: building $name (Debian $suite: $packages) in $root, once; a minute or two" >&2
            # --force-check-gpg: root runs these binaries, so the archive's signature must check out.
            if ! timeout 900 debootstrap --force-check-gpg --variant=minbase --include="$packages" "$suite" "$tmp" "$MIRROR" \
                >"$ROOTS/$name.debootstrap.log" 2>&1; then
                rm -rf --one-file-system -- "$tmp"
                die "debootstrap $suite failed (log: $ROOTS/$name.debootstrap.log): $(tail -n 3 "$ROOTS/$name.debootstrap.log" | tr '\n' ' ')"
            fi
            [[ $name != trixie-servers ]] || make_bins "$tmp" "$root"
            # No package cache: the roots are copied into containers and read by tests only.
            rm -rf -- "$tmp"/var/cache/apt/archives/*.deb
            mv -- "$tmp" "$root"
            echo "$FORMAT" >"$root/.vipctl-complete"
        fi
        exec 8>&-
    fi
    check_owned_by_root "$root"
    echo "$root"
}

main() {
    case ${1:-} in
    path)
        (($# == 2)) || usage
        case $2 in
        trixie-servers | bookworm-systemd | trixie-systemd) ;;
        *) die "unknown root '$2': choose trixie-servers, bookworm-systemd or trixie-systemd" 2 ;;
        esac
        root_path "$2"
        ;;
    names) echo "trixie-servers bookworm-systemd trixie-systemd" ;;
    *) usage ;;
    esac
}

main "$@"
