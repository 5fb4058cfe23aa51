#!/usr/bin/env bash
# Installs what the vipctl namespace lab (scripts/lab.sh) and its tests need,
# on Debian/Ubuntu.  Idempotent: only packages whose commands are missing
# are installed, and "apt-get update" runs at most once, only then.
#
# Exit status: 0 all present (or installed); 1 install failed; 2 packages are
# missing and we are not root; 3 cargo is missing or too old (the system
# packages are still installed first).
#
# Debian packages: redis-server redis-sentinel redis-tools iproute2 debootstrap and patchelf
# (Debian 13's servers for the lab, scripts/servers.sh), systemd-container (systemd-nspawn)
# util-linux procps openssl libcap2-bin (setcap, for the test of a capable binary),
# bird2 and frr (the BGP speakers of the routed lab, LAB_ROUTED=1).  The lab
# runs its own redis, BIRD and FRR processes inside network namespaces, so a
# system-wide service (if one exists) does not collide with it; we still keep
# the package scripts from starting one, and leave no unit of bird2 or frr
# enabled that would start BIRD or FRR in the root namespace at the next boot
# (only for packages this script installed: an operator's choice for a
# package installed before is left alone).

set -euo pipefail

readonly PROG=${0##*/}
# Rust 1.85 is the first release with edition 2024, which the crate uses.
readonly MIN_RUST_MINOR=85

# command -> Debian package providing it.  Every command lab.sh relies on
# that is not part of an essential package, and the C++ compiler that
# scripts/fuzz.sh needs (libfuzzer-sys builds libFuzzer from C++ source).
readonly -a NEEDS=(
    debootstrap:debootstrap
    python3:python3
    patchelf:patchelf
    systemd-nspawn:systemd-container
    redis-server:redis-server
    redis-sentinel:redis-sentinel
    redis-cli:redis-tools
    ip:iproute2
    flock:util-linux
    setsid:util-linux
    nsenter:util-linux
    sysctl:procps
    pgrep:procps
    openssl:openssl
    setcap:libcap2-bin
    prlimit:util-linux
    unshare:util-linux
    bird:bird2
    birdc:bird2
    vtysh:frr
    /usr/lib/frr/zebra:frr
    /usr/lib/frr/bgpd:frr
    /usr/lib/frr/bfdd:frr
    c++:g++
)

# Package -> service units (systemd unit names; the same names as the SysV
# init scripts) that its maintainer scripts enable on installation.
readonly -a SERVICES=(
    bird2:bird
    frr:frr
)

log() {
    printf '%s: %s\n' "$PROG" "$*"
}

err() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
}

# Keep package maintainer scripts from starting redis services while we
# install (Debian's policy-rc.d convention: exit 101 = "action forbidden";
# honoured by invoke-rc.d and deb-systemd-invoke).  Only when no policy is
# in place already, and always removed again on exit.
POLICY=/usr/sbin/policy-rc.d
POLICY_OURS=0
remove_policy() {
    if ((POLICY_OURS)); then
        rm -f -- "$POLICY"
    fi
}

# disable_services PKG...: for each package just installed, disable the
# services its postinst enabled.  "systemctl disable" edits the unit links
# whether systemd runs or not (this container has none), and deb-systemd-
# helper then sees the unit as disabled, so an upgrade does not enable it
# again; update-rc.d covers SysV init (rc?.d links become K01).
disable_services() {
    local pkg entry unit rc=0
    for pkg in "$@"; do
        for entry in "${SERVICES[@]}"; do
            [[ ${entry%%:*} == "$pkg" ]] || continue
            unit=${entry#*:}
            if command -v systemctl >/dev/null 2>&1 && [[ -e /lib/systemd/system/$unit.service ]]; then
                systemctl disable --quiet "$unit.service" >/dev/null 2>&1 ||
                    err "could not disable $unit.service (systemctl disable $unit.service)"
            fi
            if [[ -x /etc/init.d/$unit ]] && command -v update-rc.d >/dev/null 2>&1; then
                update-rc.d "$unit" disable >/dev/null 2>&1 ||
                    err "could not disable the SysV service $unit (update-rc.d $unit disable)"
            fi
            # Check rather than trust: no link may start it at boot.
            if compgen -G "/etc/systemd/system/*.wants/$unit.service" >/dev/null ||
                compgen -G "/etc/rc[2345].d/S??$unit" >/dev/null; then
                err "$unit is still enabled at boot; disable it (systemctl disable $unit; update-rc.d $unit disable)"
                rc=1
            else
                log "$unit: service left disabled (the lab runs its own $unit processes in namespaces)"
            fi
        done
    done
    return "$rc"
}

missing_packages() {
    local entry cmd pkg
    local -a pkgs=()
    for entry in "${NEEDS[@]}"; do
        cmd=${entry%%:*}
        pkg=${entry#*:}
        command -v "$cmd" >/dev/null 2>&1 && continue
        # One package may provide several commands: list it once.
        [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
    done
    # Debian's python3 has the venv module but not ensurepip, which making the cloud tests' venv
    # needs: python3-venv, in the same single install.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
    echo "${pkgs[*]}"
}

install_packages() {
    local -a pkgs
    read -r -a pkgs <<<"$(missing_packages)"
    if ((${#pkgs[@]} == 0)); then
        local entry all=" "
        for entry in "${NEEDS[@]}"; do
            [[ $all == *" ${entry#*:} "* ]] || all+="${entry#*:} "
        done
        log "system packages: all present (${all:1:-1})"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        err "missing packages: ${pkgs[*]}; run this script as root (e.g. sudo $0) or: apt-get install ${pkgs[*]}"
        exit 2
    fi
    command -v apt-get >/dev/null 2>&1 || {
        err "missing packages: ${pkgs[*]}, and apt-get is not available to install them"
        exit 1
    }
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\n# Temporary, from vipctl scripts/install-deps.sh: start no services.\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        POLICY_OURS=1
        trap remove_policy EXIT
    fi
    log "installing: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || {
        err "apt-get update failed"
        exit 1
    }
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" || {
        err "apt-get install ${pkgs[*]} failed"
        exit 1
    }
    remove_policy
    POLICY_OURS=0
    disable_services "${pkgs[@]}" || exit 1

    read -r -a pkgs <<<"$(missing_packages)"
    if ((${#pkgs[@]} > 0)); then
        err "still missing after install: ${pkgs[*]}"
        exit 1
    fi
}

check_cargo() {
    local cargo ver minor
    cargo=$(command -v cargo 2>/dev/null) || cargo=
    if [[ -z $cargo ]]; then
        if [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
            err "cargo is installed in ${HOME:-/root}/.cargo/bin but not on PATH: export PATH=\"\$HOME/.cargo/bin:\$PATH\""
        else
            err "cargo not found. Install a Rust toolchain >= 1.$MIN_RUST_MINOR (edition 2024) with rustup, see https://rustup.rs (Debian's own cargo package is too old for edition 2024)"
        fi
        return 3
    fi
    ver=$("$cargo" --version 2>/dev/null) || ver=
    if [[ $ver =~ ^cargo\ 1\.([0-9]+)\. ]]; then
        minor=${BASH_REMATCH[1]}
        if ((minor < MIN_RUST_MINOR)); then
            err "$ver is too old: edition 2024 needs Rust >= 1.$MIN_RUST_MINOR (rustup update stable)"
            return 3
        fi
    fi
    log "cargo: ${ver:-$cargo}"
}

# The cloud tests' Python (tests/lab_cloud.rs): moto's server mode, an emulator of EC2's wire
# protocol, and boto3, the real AWS SDK for Python that reads moto's state back. Pinned, in a
# venv of their own under the lab's root-owned cache, never in the system's Python.
readonly PY_DIR=/var/cache/vipctl-lab/py
readonly -a PY_PACKAGES=("moto[server]==5.2.1" "boto3==1.43.11")
install_python_tools() {
    if [[ -x $PY_DIR/bin/moto_server ]] && "$PY_DIR/bin/python3" -c 'import boto3, moto' 2>/dev/null; then
        return 0
    fi
    if ((EUID != 0)); then
        err "$PY_DIR (moto, boto3 for the cloud tests) is missing; run as root"
        return 2
    fi
    local py
    py=$(command -v python3) || { err "python3 not found (apt-get install python3 python3-venv)"; return 1; }
    "$py" -c 'import ensurepip' >/dev/null 2>&1 || { err "python3 lacks ensurepip: apt-get install python3-venv"; return 1; }
    install -d -m 0755 -o root -g root "$(dirname "$PY_DIR")"
    "$py" -m venv "$PY_DIR" || { err "cannot make the venv $PY_DIR"; return 1; }
    "$PY_DIR/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}" ||
        { err "pip install ${PY_PACKAGES[*]} into $PY_DIR failed"; return 1; }
    log "installed ${PY_PACKAGES[*]} into $PY_DIR"
}

main() {
    local before after rc=0
    before=$(missing_packages)
    install_packages
    after=$(missing_packages)
    if [[ -n $before && -z $after ]]; then
        log "installed packages: $before"
    fi
    install_python_tools || rc=$?
    check_cargo || rc=$?
    exit "$rc"
}

main "$@"
