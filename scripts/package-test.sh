#!/usr/bin/env bash
# Tests the vipctl .deb made by scripts/package.sh: installs it, checks every file, the conffile,
# the user, the lock folder, the man page, the completions and the systemd units (offline: no
# running systemd is needed); reinstalls it under a mimic of Debian's sandboxed redis-sentinel (a
# private mount namespace) to check that the hook stays executable across an upgrade; runs a lab
# failover with the installed binary; checks that prerm refuses `dpkg -r` while sentinel.conf runs
# the hook; then purges it and checks that everything is gone. One `ok`/`FAIL`/`SKIPPED` line per
# item; exit 1 if anything FAILed, 2 on a usage or setup error.
#
#   scripts/package-test.sh [PATH.deb]    # default: the newest target/debian/vipctl_*.deb
#                                         # (honours CARGO_TARGET_DIR, like package.sh)
#
# Runs as root, on Debian 12 (CI: after scripts/package.sh). Installs, when missing: man-db,
# bash-completion, zsh, fish, and systemd (only for `systemd-analyze`; installing it does not
# start it). The package is purged on exit, on failure and on Ctrl-C too. The prerm check appends
# one line to /etc/redis/sentinel.conf (when redis-sentinel is installed and no sentinel runs with
# that file): the original is restored on every exit path, and checked to be byte for byte the same.
#
# Env: VIPCTL_MAX_EXPOSURE (default 2.0): the highest acceptable `systemd-analyze security`
# exposure score for vipctl-watch.service.
set -euo pipefail

readonly PROG=${0##*/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly MAX_EXPOSURE=${VIPCTL_MAX_EXPOSURE:-2.0}
readonly UNIT=/usr/lib/systemd/system/vipctl-watch.service
readonly DROPIN=/usr/lib/systemd/system/redis-sentinel.service.d/vipctl.conf
readonly VALKEY_DROPIN=/usr/lib/systemd/system/valkey-sentinel.service.d/vipctl.conf
readonly CONFFILE=/etc/vipctl/vipctl.toml
# The real binary (and the hook's path in sentinel.conf); /usr/bin/vipctl is a symlink to it.
readonly LIBEXEC_DIR=/usr/libexec/vipctl
readonly HOOK=$LIBEXEC_DIR/vipctl
readonly TMPFILES=/usr/lib/tmpfiles.d/vipctl.conf
readonly LOCK_DIR=/run/vipctl-lock
readonly SENTINEL_CONF=/etc/redis/sentinel.conf

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 2; }

FAILED=0
ok() { printf 'ok       %s\n' "$*"; }
fail() { printf 'FAIL     %s\n' "$*"; FAILED=$((FAILED + 1)); }
skipped() { printf 'SKIPPED  %s\n' "$*"; }
# check DESCRIPTION COMMAND...: ok if the command succeeds (its output is shown on failure only).
check() {
    local what=$1 out
    shift
    if out=$(timeout 60 "$@" 2>&1); then
        ok "$what"
    else
        fail "$what"
        [[ -z $out ]] || printf '%s\n' "$out" | sed 's/^/         | /' | head -n 30
    fi
}

# True while dpkg has any trace of the package (installed, unpacked, config-files, half-…).
present() {
    local st
    st=$(dpkg-query -W -f='${Status}' vipctl 2>/dev/null) || return 1
    [[ $st != *" not-installed" ]]
}

[[ $(id -u) -eq 0 ]] || die "run as root (it installs and purges the package)"
command -v dpkg >/dev/null || die "not a Debian system (no dpkg)"

DEB=${1:-}
if [[ -z $DEB ]]; then
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    case $target_dir in /*) ;; *) target_dir=$ROOT/$target_dir ;; esac
    # shellcheck disable=SC2012 # our own file names; newest first
    DEB=$(ls -t "$target_dir"/debian/vipctl_*.deb 2>/dev/null | head -n1 || true)
    [[ -n $DEB ]] || die "no .deb in $target_dir/debian; run scripts/package.sh first, or pass the path"
fi
[[ -f $DEB ]] || die "no such file: $DEB"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
readonly DEB
[[ $(dpkg-deb -f "$DEB" Package) == vipctl ]] || die "$DEB is not the vipctl package"
VERSION=$(dpkg-deb -f "$DEB" Version)
readonly VERSION

if present; then
    die "vipctl is already installed here; this test installs and purges it: run \`dpkg -P vipctl\` first"
fi

WORK=$(mktemp -d /tmp/vipctl-pkgtest.XXXXXX)
readonly WORK
# `vipctl check` with the example config would try to reach the example sentinels: it runs in a
# network namespace of its own, with nothing but loopback, so that no packet leaves this machine.
NS=vipctl-pkgtest-$$
readonly NS
# Set while $SENTINEL_CONF differs from its backup (the prerm check); PIDs of the mount-namespace
# probes while they run.
SENTINEL_BACKUP=""
PROBE_PIDS=()
restore_sentinel_conf() {
    [[ -n $SENTINEL_BACKUP ]] || return 0
    # cp onto the existing file keeps its inode; -p its owner, mode and times.
    if cp -p "$SENTINEL_BACKUP" "$SENTINEL_CONF" && cmp -s "$SENTINEL_BACKUP" "$SENTINEL_CONF"; then
        SENTINEL_BACKUP=""
        return 0
    fi
    log "error: could not restore $SENTINEL_CONF; its original is $SENTINEL_BACKUP (kept)"
    return 1
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PROBE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    restore_sentinel_conf || { rc=2; keep_work=1; }
    ip netns del "$NS" 2>/dev/null || true
    "$ROOT/scripts/lab.sh" down "/tmp/vipctl-labs/pkgtest-$$" >/dev/null 2>&1 || true
    if present; then
        log "cleanup: purging vipctl"
        # Our own install: prerm must not refuse because of a line we may have failed to remove.
        VIPCTL_FORCE_REMOVE=1 timeout 120 dpkg -P vipctl >/dev/null 2>&1 || log "cleanup: dpkg -P vipctl failed"
    fi
    ((${keep_work:-0})) || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "testing $DEB (version $VERSION)"

# --- tools --------------------------------------------------------------------------------------
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1; then
        timeout 300 apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1 || {
            tail -n 20 "$WORK/apt.log" >&2
            return 1
        }
    fi
}
apt_install man-db bash-completion zsh fish || die "cannot install the test tools (man-db bash-completion zsh fish)"

SYSTEMD_SKIP=""
if ! command -v systemd-analyze >/dev/null; then
    # Installing systemd in a container is normally harmless (it is not started), but refuse if apt
    # would remove anything (e.g. another init system) to make room for it.
    if ! dry=$(timeout 120 apt-get install --dry-run --no-install-recommends systemd 2>&1); then
        SYSTEMD_SKIP="apt-get cannot install systemd here: $(printf '%s' "$dry" | tail -n1)"
    elif printf '%s\n' "$dry" | grep -q '^Remv '; then
        SYSTEMD_SKIP="installing systemd would remove: $(printf '%s\n' "$dry" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')"
    elif ! apt_install systemd; then
        SYSTEMD_SKIP="apt-get install systemd failed (see above)"
    fi
fi

# dpkg may be told to drop docs and man pages (minimal images: path-exclude in dpkg.cfg.d).
excluded() {
    local path=$1 key pat excl=1
    while read -r key pat; do
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        case $key in
        path-exclude) [[ $path == $pat ]] && excl=0 ;;
        path-include) [[ $path == $pat ]] && excl=1 ;;
        esac
    done < <(cat /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/* 2>/dev/null | sed -n 's/^\(path-[a-z]*\)[= ][[:space:]]*/\1 /p')
    return $excl
}

# --- install ------------------------------------------------------------------------------------
user_before=$(getent passwd vipctl || true)
[[ -z $user_before ]] || log "note: user vipctl exists before the install: $user_before"

if timeout 300 dpkg -i "$DEB" >"$WORK/dpkg-i.log" 2>&1; then
    ok "dpkg -i $(basename "$DEB")"
else
    fail "dpkg -i $(basename "$DEB")"
    sed 's/^/         | /' "$WORK/dpkg-i.log"
    exit 1
fi

# --- files --------------------------------------------------------------------------------------
# path mode owner
readonly FILES=(
    "$HOOK 755 root:root"
    "$TMPFILES 644 root:root"
    "$CONFFILE 644 root:root"
    "/usr/share/man/man1/vipctl.1.gz 644 root:root"
    "/usr/share/bash-completion/completions/vipctl 644 root:root"
    "/usr/share/zsh/vendor-completions/_vipctl 644 root:root"
    "/usr/share/fish/vendor_completions.d/vipctl.fish 644 root:root"
    "$UNIT 644 root:root"
    "$DROPIN 644 root:root"
    "$VALKEY_DROPIN 644 root:root"
    "/usr/share/doc/vipctl/README.md 644 root:root"
    "/usr/share/doc/vipctl/CHANGELOG.md 644 root:root"
    "/usr/share/doc/vipctl/copyright 644 root:root"
    "/usr/share/doc/vipctl/examples/sentinel.conf.snippet 644 root:root"
    "/usr/share/doc/vipctl/examples/bird2-host.conf 644 root:root"
    "/usr/share/doc/vipctl/examples/frr-host.conf 644 root:root"
    "/usr/share/doc/vipctl/examples/frr-tor.conf 644 root:root"
)
for entry in "${FILES[@]}"; do
    read -r path mode owner <<<"$entry"
    if [[ ! -f $path ]] && excluded "$path"; then
        skipped "$path: dpkg path-exclude drops it on this system"
        continue
    fi
    if [[ ! -f $path ]]; then
        fail "$path exists"
        continue
    fi
    got=$(stat -c '%a %U:%G' "$path")
    if [[ $got == "$mode $owner" ]]; then
        ok "$path ($got)"
    else
        fail "$path is $got, expected $mode $owner"
    fi
done
# path target (as stored: relative)
readonly SYMLINKS=(
    "/usr/bin/vipctl ../libexec/vipctl/vipctl"
)
for entry in "${SYMLINKS[@]}"; do
    read -r path target <<<"$entry"
    if [[ ! -L $path ]]; then
        fail "$path is a symlink (it is $(stat -c %F "$path" 2>/dev/null || echo missing))"
    elif [[ $(readlink "$path") != "$target" ]]; then
        fail "$path points to $(readlink "$path"), expected $target"
    elif [[ $(readlink -f "$path") != "$HOOK" ]]; then
        fail "$path resolves to $(readlink -f "$path"), expected $HOOK"
    else
        ok "$path -> $target (resolves to $HOOK)"
    fi
done
listed=$(dpkg -L vipctl)
for entry in "${FILES[@]}" "${SYMLINKS[@]}"; do
    read -r path _ <<<"$entry"
    grep -qxF "$path" <<<"$listed" || fail "dpkg -L vipctl does not list $path"
done
in_libexec=$(find "$LIBEXEC_DIR" -mindepth 1 -printf '%f ' 2>&1 || true)
if [[ $in_libexec == "vipctl " ]]; then
    ok "$LIBEXEC_DIR holds only vipctl (sentinel's drop-in makes the whole folder executable)"
else
    fail "$LIBEXEC_DIR does not hold just vipctl: $in_libexec"
fi

# The lock folder: made by postinst (systemd-tmpfiles, or its fallback below) as the tmpfiles.d entry says.
if grep -qxF "d $LOCK_DIR 0755 vipctl vipctl -" "$TMPFILES"; then
    ok "$TMPFILES: d $LOCK_DIR 0755 vipctl vipctl -"
else
    fail "$TMPFILES does not say 'd $LOCK_DIR 0755 vipctl vipctl -': $(grep -vE '^\s*(#|$)' "$TMPFILES" | tr '\n' ' ')"
fi
got=$(stat -c '%F %U:%G %a' "$LOCK_DIR" 2>/dev/null || echo missing)
if [[ ! -L $LOCK_DIR && $got == "directory vipctl:vipctl 755" ]]; then
    ok "postinst made the lock folder $LOCK_DIR ($got)"
else
    fail "the lock folder $LOCK_DIR is '$got', expected 'directory vipctl:vipctl 755'"
fi
if command -v systemd-tmpfiles >/dev/null; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    check "systemd-tmpfiles --create vipctl.conf succeeds and keeps $LOCK_DIR as it is" bash -c \
        'systemd-tmpfiles --create vipctl.conf && [[ $(stat -c "%F %U:%G %a" "$1") == "directory vipctl:vipctl 755" ]]' \
        check-tmpfiles "$LOCK_DIR"
fi
# postinst without systemd-tmpfiles (a host without systemd): its fallback must make the folder
# without ever following a symlink in the way, and fix a folder of root's (as a vipctl run as root
# makes one when it is missing). PATH: every command of this host but systemd-tmpfiles.
no_tmpfiles=$WORK/path-without-tmpfiles
mkdir -p "$no_tmpfiles"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [[ -d $d && ! -L $d ]] || continue
    for f in "$d"/*; do
        n=${f##*/}
        [[ $n == systemd-tmpfiles || -e $no_tmpfiles/$n ]] || ln -s "$f" "$no_tmpfiles/$n"
    done
done
victim=$WORK/lock-victim
mkdir -m 0700 "$victim"
for case in symlink root-folder; do
    rm -rf "$LOCK_DIR"
    if [[ $case == symlink ]]; then ln -s "$victim" "$LOCK_DIR"; else mkdir -m 0700 "$LOCK_DIR"; fi
    PATH=$no_tmpfiles timeout 60 /var/lib/dpkg/info/vipctl.postinst configure "$VERSION" >"$WORK/postinst-$case.log" 2>&1 || true
    got=$(stat -c '%F %U:%G %a' "$LOCK_DIR" 2>/dev/null || echo missing)
    kept=$(stat -c '%U:%G %a' "$victim")
    if [[ ! -L $LOCK_DIR && $got == "directory vipctl:vipctl 755" && $kept == "root:root 700" ]]; then
        ok "postinst without systemd-tmpfiles, $case at $LOCK_DIR: a real folder of vipctl's ($got); nothing else changed"
    else
        fail "postinst without systemd-tmpfiles, $case at $LOCK_DIR: it is '$got' (expected 'directory vipctl:vipctl 755'), $victim is '$kept' (expected 'root:root 700')"
        sed 's/^/         | /' "$WORK/postinst-$case.log"
    fi
done

conffiles=$(dpkg-query -W -f='${Conffiles}' vipctl)
if grep -q "^ $CONFFILE [0-9a-f]\{32\}" <<<"$conffiles"; then
    ok "conffile registered: $(tr -s ' \n' ' ' <<<"$conffiles")"
else
    fail "conffile $CONFFILE not registered (dpkg-query Conffiles: '$conffiles')"
fi
check "the shipped config is the example (packaging/vipctl.toml)" cmp "$CONFFILE" "$ROOT/packaging/vipctl.toml"

# The daemon's unit: restarted whatever ends it, never given up on, watched, with its own small
# descriptor limit, writing only the lock folder of /run, allowed capset (to empty its inheritable
# set before it starts a notify command).
want=(Type=notify NotifyAccess=main WatchdogSec=10s Restart=always RestartSec=1s StartLimitIntervalSec=0
    LimitNOFILE=4096 "ReadWritePaths=$LOCK_DIR" "ExecStartPre=+systemd-tmpfiles --create vipctl.conf"
    SystemCallFilter=capset)
missing=()
for w in "${want[@]}"; do grep -qxF "$w" "$UNIT" || missing+=("$w"); done
if ((${#missing[@]} == 0)); then
    ok "vipctl-watch.service: ${want[*]}"
else
    fail "vipctl-watch.service lacks: ${missing[*]}"
fi
if grep -qE '^\s*ReadWritePaths=.*/run(/lock)?/?(\s|$)' "$UNIT"; then fail "vipctl-watch.service makes all of /run or /run/lock writable"; fi

# --- binary, man page, completions --------------------------------------------------------------
upstream=${VERSION%-*}
for exe in /usr/bin/vipctl "$HOOK"; do
    out=$(timeout 10 "$exe" --version 2>&1 || true)
    if [[ $out == "vipctl $upstream" ]]; then ok "$exe --version: $out"; else fail "$exe --version: '$out', expected 'vipctl $upstream'"; fi
done
out=$(timeout 10 /usr/bin/vipctl --help 2>&1 || true)
if grep -q generate <<<"$out"; then fail "vipctl --help shows the hidden generate"; else ok "vipctl --help hides generate"; fi

if [[ -f /usr/share/man/man1/vipctl.1.gz ]]; then
    man_out=$(MANPAGER=cat MANWIDTH=100 timeout 30 man vipctl 2>"$WORK/man.err" || true)
    if grep -q '^NAME' <<<"$man_out" && grep -q 'COMMANDS' <<<"$man_out" && grep -q 'vipctl watch' <<<"$man_out"; then
        ok "man vipctl renders ($(wc -l <<<"$man_out") lines): $(sed -n '1p' <<<"$man_out" | tr -s ' ')"
    else
        fail "man vipctl does not render"
        head -n 10 <<<"$man_out" | sed 's/^/         | /'
        sed 's/^/         | /' "$WORK/man.err"
    fi
    check "man page has no roff warnings (man --warnings)" \
        bash -c '! MANPAGER=cat man --warnings vipctl 2>&1 >/dev/null | grep .'
else
    skipped "man vipctl: no man page installed"
fi

check "bash completion loads (complete -p vipctl)" \
    bash -c 'source /usr/share/bash-completion/completions/vipctl && complete -p vipctl'
# shellcheck disable=SC2016 # expanded by the inner shells
check "bash completion completes 'vipctl cl' to claim" bash -c '
    source /usr/share/bash-completion/completions/vipctl
    COMP_WORDS=(vipctl cl); COMP_CWORD=1; COMP_LINE="vipctl cl"; COMP_POINT=${#COMP_LINE}
    _vipctl vipctl cl vipctl
    printf "%s\n" "${COMPREPLY[@]}" | grep -qx claim'
check "zsh completion parses (zsh -n)" zsh -n /usr/share/zsh/vendor-completions/_vipctl
# shellcheck disable=SC2016
check "zsh completion is on zsh's default fpath" \
    zsh -fc '[[ ${fpath[(ie)/usr/share/zsh/vendor-completions]} -le ${#fpath} ]] && head -n1 /usr/share/zsh/vendor-completions/_vipctl | grep -qx "#compdef vipctl"'
check "fish completion parses (fish -n)" fish -n /usr/share/fish/vendor_completions.d/vipctl.fish
check "fish completes 'vipctl cl' to claim" \
    bash -c 'HOME='"$WORK"' fish -c "complete -C\"vipctl cl\"" | cut -f1 | grep -qx claim'

# --- user ---------------------------------------------------------------------------------------
if pw=$(getent passwd vipctl); then
    IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
    grp=$(getent group "$gid" | cut -d: -f1)
    if ((uid < 1000)) && [[ $grp == vipctl && $home == /nonexistent && $shell == */nologin ]]; then
        ok "system user vipctl: $pw (group $grp)"
    else
        fail "user vipctl is not a system user in group vipctl with home /nonexistent and nologin: $pw (group $grp)"
    fi
else
    fail "user vipctl exists"
fi

# The daemon's privileges as the unit gives them: user vipctl, only CAP_NET_ADMIN + CAP_NET_RAW
# (ambient, bounding), no new privileges. `vipctl check` must see both capabilities and be able to
# open a packet socket; its other checks (sentinels, interfaces) depend on this host and are shown
# for information only.
if command -v setpriv >/dev/null && getent passwd vipctl >/dev/null; then
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    set +e
    timeout 60 ip netns exec "$NS" setpriv --reuid=vipctl --regid=vipctl --clear-groups --no-new-privs \
        --inh-caps=-all,+net_admin,+net_raw --ambient-caps=-all,+net_admin,+net_raw \
        --bounding-set=-all,+net_admin,+net_raw \
        /usr/bin/vipctl check --config "$CONFFILE" >"$WORK/check.out" 2>&1
    rc=$?
    set -e
    if ((rc > 2)); then
        fail "vipctl check as the daemon's user ran (exit $rc)"
    elif grep -qE '^ok +has CAP_NET_ADMIN' "$WORK/check.out" && grep -qE '^ok +has CAP_NET_RAW' "$WORK/check.out" &&
        ! grep -qE '^FAIL.*(CAP_NET|packet socket)' "$WORK/check.out"; then
        ok "vipctl check as user vipctl with only CAP_NET_ADMIN+CAP_NET_RAW: privileges ok (exit $rc; host-specific checks below)"
    else
        fail "vipctl check as user vipctl with only CAP_NET_ADMIN+CAP_NET_RAW does not see its privileges"
    fi
    sed 's/^/         | /' "$WORK/check.out" | head -n 40
    # vipctl check also reads the sentinel unit: with the drop-in, the hook may be executed.
    if [[ -f /lib/systemd/system/redis-sentinel.service || -f /usr/lib/systemd/system/redis-sentinel.service ]]; then
        if grep -qE '^ok .*redis-sentinel\.service' "$WORK/check.out" && ! grep -qE '^FAIL .*redis-sentinel\.service' "$WORK/check.out"; then
            ok "vipctl check accepts redis-sentinel.service with the drop-in"
        else
            fail "vipctl check still finds fault with redis-sentinel.service and the drop-in"
        fi
    else
        skipped "vipctl check of redis-sentinel.service: redis-sentinel is not installed here"
    fi
else
    skipped "vipctl check with the daemon's privileges: setpriv (util-linux) is missing"
fi

# --- systemd units (offline) --------------------------------------------------------------------
if [[ -n $SYSTEMD_SKIP ]]; then
    printf '\n*** SKIPPED: systemd-analyze verify/security: %s ***\n\n' "$SYSTEMD_SKIP"
    skipped "systemd-analyze verify $UNIT"
    skipped "systemd-analyze verify redis-sentinel.service + $DROPIN"
    skipped "systemd-analyze security $UNIT"
else
    # verify prints problems but exits 0 for mere warnings: any output is a failure.
    verify() {
        local out rc=0
        out=$(cd "$WORK" && SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze verify "$@" 2>&1) || rc=$?
        printf '%s' "$out"
        return $rc
    }
    out=$(verify "$UNIT") && rc=0 || rc=$?
    if ((rc == 0)) && [[ -z $out ]]; then ok "systemd-analyze verify $UNIT"; else
        fail "systemd-analyze verify $UNIT (exit $rc)"
        printf '%s\n' "$out" | sed 's/^/         | /'
    fi

    # The drop-in, merged into Debian's redis-sentinel.service. verify reads drop-ins from
    # UNIT.d/ next to the unit file it is given, so a copy of the unit with the drop-in beside it
    # works whether or not redis-sentinel is installed (then the unit comes from its .deb).
    mkdir -p "$WORK/units/redis-sentinel.service.d"
    sentinel_unit=""
    for u in /etc/systemd/system/redis-sentinel.service /usr/lib/systemd/system/redis-sentinel.service /lib/systemd/system/redis-sentinel.service; do
        [[ -f $u ]] && { sentinel_unit=$u; break; }
    done
    strict=1
    if [[ -z $sentinel_unit ]]; then
        if (cd "$WORK" && timeout 120 apt-get download -q redis-sentinel >/dev/null 2>&1) &&
            dpkg-deb -x "$WORK"/redis-sentinel_*.deb "$WORK/rs" &&
            sentinel_unit=$(find "$WORK/rs" -path '*/systemd/system/redis-sentinel.service' | head -n1) &&
            [[ -n $sentinel_unit ]]; then
            strict=0   # its ExecStart binary is not installed: judge only what concerns the drop-in
        else
            sentinel_unit=""
        fi
    fi
    if [[ -z $sentinel_unit ]]; then
        skipped "systemd-analyze verify redis-sentinel.service + drop-in: no redis-sentinel.service here and apt-get download redis-sentinel failed"
    else
        cp "$sentinel_unit" "$WORK/units/redis-sentinel.service"
        # Canary: a broken drop-in must be reported, or a clean run below would prove nothing.
        printf '[Service]\nExecPaths=not/absolute\n' >"$WORK/units/redis-sentinel.service.d/vipctl.conf"
        canary=$(verify "$WORK/units/redis-sentinel.service" || true)
        cp "$DROPIN" "$WORK/units/redis-sentinel.service.d/vipctl.conf"
        out=$(verify "$WORK/units/redis-sentinel.service") && rc=0 || rc=$?
        if ! grep -q 'vipctl.conf' <<<"$canary"; then
            fail "systemd-analyze verify does not read drop-ins beside the unit; cannot check $DROPIN"
        elif grep -q 'vipctl.conf' <<<"$out" || { ((strict)) && { ((rc != 0)) || [[ -n $out ]]; }; }; then
            fail "systemd-analyze verify $sentinel_unit + $DROPIN (exit $rc)"
            printf '%s\n' "$out" | sed 's/^/         | /'
        else
            ok "systemd-analyze verify $sentinel_unit + $DROPIN$( ((strict)) || echo ' (unit from the redis-sentinel .deb; only drop-in messages judged)')"
        fi
    fi
    for d in "$DROPIN" "$VALKEY_DROPIN"; do
        if [[ $(grep -vE '^\s*(#|$)' "$d" | tr -d ' ') == $'[Service]\nExecPaths=/usr/libexec/vipctl/' ]]; then
            ok "$d only adds ExecPaths=/usr/libexec/vipctl/ (a folder: survives upgrades)"
        else
            fail "$d is not just ExecPaths=/usr/libexec/vipctl/: $(grep -vE '^\s*(#|$)' "$d" | tr '\n' ' ')"
        fi
    done

    sec=$(cd "$WORK" && { SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze security --no-pager --offline=yes "$UNIT" 2>&1 || true; })
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' <<<"$sec")
    if [[ -z $score ]]; then
        fail "systemd-analyze security --offline=yes $UNIT gave no score"
        printf '%s\n' "$sec" | tail -n 20 | sed 's/^/         | /'
    else
        costs=$(grep '✗' <<<"$sec" | awk '{print $NF, $2}' | sort -rn | head -n 6 | awk '{printf "%s %s; ", $2, $1}')
        if awk -v s="${score%% *}" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
            ok "systemd-analyze security: exposure $score (<= $MAX_EXPOSURE); costliest: $costs"
        else
            fail "systemd-analyze security: exposure $score, above $MAX_EXPOSURE; costliest: $costs"
        fi
    fi
fi

# --- an upgrade while sentinel runs in its sandbox -------------------------------------------------
# systemd turns ExecPaths= into bind mounts in the service's own mount namespace. dpkg replaces a
# file by renaming the new one over it, and the kernel (>= 3.18) then detaches every bind mount of
# the old file in other mount namespaces: with ExecPaths= naming the binary itself (the old
# drop-in), a sandboxed sentinel could no longer execute the hook after an upgrade. A bind mount of
# the folder (ExecPaths=/usr/libexec/vipctl/) stays, and shows the new file.
#
# ns_probe EXEC_PATH HOOK LOG SECONDS: in a private mount namespace made like Debian's
# redis-sentinel.service (NoExecPaths=/ and ExecPaths=/usr/lib /lib, plus EXEC_PATH), runs
# HOOK --version every 0.2 s until LOG.stop exists or SECONDS have passed: one line per try in
# LOG, "EPOCHREALTIME ok|FAIL OUTPUT".
ns_probe() {
    # The exec-allowed mounts first (each bound onto itself), then /usr bound onto itself
    # recursively (the new mount carries copies of them) and made noexec: the mount tree systemd
    # makes. Only bash builtins after that, since every program lives in /usr (merged /usr).
    # shellcheck disable=SC2016 # expanded by the inner bash
    unshare --mount --propagation private bash -c '
        set -e
        mount --bind "$1" "$1"
        mount --bind /usr/lib /usr/lib
        mount --rbind /usr /usr
        mount -o remount,bind,noexec /usr
        set +e
        end=$(( ${EPOCHREALTIME%.*} + $4 ))
        while (( ${EPOCHREALTIME%.*} < end )) && [[ ! -e $3.stop ]]; do
            if out=$("$2" --version 2>&1); then r=ok; else r=FAIL; fi
            printf "%s %s %s\n" "$EPOCHREALTIME" "$r" "${out//$'"'"'\n'"'"'/ }" >>"$3"
            read -rt 0.2 <> <(:) || true
        done' ns-probe "$@" &
    PROBE_PIDS+=($!)
}
# tries LOG FROM TO RESULT: how many tries in LOG between the two times had RESULT (ok, FAIL).
tries() { awk -v a="$2" -v b="$3" -v r="$4" '$1 >= a && $1 <= b && $2 == r { n++ } END { print n + 0 }' "$1"; }
if ! command -v unshare >/dev/null; then
    skipped "upgrade under a sentinel-like sandbox: unshare (util-linux) is missing"
elif ! unshare --mount --propagation private true 2>/dev/null; then
    skipped "upgrade under a sentinel-like sandbox: cannot make a mount namespace here"
else
    P=$WORK/probe
    mkdir -p "$P"
    # canary: the mimic must refuse what is not in ExecPaths= (else nothing below means anything);
    # file: the old drop-in's form (ExecPaths= on the binary itself); dir, link: the new drop-in,
    # calling the hook by its libexec path and through the /usr/bin symlink.
    ns_probe /usr/lib "$HOOK" "$P/canary" 30
    ns_probe "$HOOK" "$HOOK" "$P/file" 30
    ns_probe "$LIBEXEC_DIR" "$HOOK" "$P/dir" 30
    ns_probe "$LIBEXEC_DIR" /usr/bin/vipctl "$P/link" 30
    for ((i = 0; i < 50; i++)); do
        n=0
        for f in canary file dir link; do (($(wc -l 2>/dev/null <"$P/$f" || echo 0) >= 3)) && n=$((n + 1)); done
        ((n == 4)) && break
        sleep 0.1
    done
    t0=$EPOCHREALTIME
    if timeout 120 dpkg -i "$DEB" >"$WORK/dpkg-reinstall.log" 2>&1; then
        ok "dpkg -i $(basename "$DEB") again (a reinstall: dpkg renames each new file over the old one)"
    else
        fail "dpkg -i $(basename "$DEB") again"
        sed 's/^/         | /' "$WORK/dpkg-reinstall.log"
    fi
    t1=$EPOCHREALTIME
    sleep 1.5
    touch "$P/canary.stop" "$P/file.stop" "$P/dir.stop" "$P/link.stop"
    for pid in "${PROBE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PROBE_PIDS=()
    summary() { # LOG: "before: N ok, N FAIL; during: …; after: …"
        printf 'before: %s ok, %s FAIL; during: %s ok, %s FAIL; after: %s ok, %s FAIL' \
            "$(tries "$1" 0 "$t0" ok)" "$(tries "$1" 0 "$t0" FAIL)" "$(tries "$1" "$t0" "$t1" ok)" \
            "$(tries "$1" "$t0" "$t1" FAIL)" "$(tries "$1" "$t1" 9e12 ok)" "$(tries "$1" "$t1" 9e12 FAIL)"
    }
    last() { awk -v a="$2" '$1 >= a { $1 = ""; l = $0 } END { sub(/^ /, "", l); print l }' "$1"; }
    if (($(tries "$P/canary" 0 9e12 ok) == 0 && $(tries "$P/canary" 0 9e12 FAIL) > 0)); then
        ok "sentinel-like sandbox refuses a hook outside ExecPaths= ($(last "$P/canary" 0))"
    else
        fail "the sentinel-like sandbox does not refuse a hook outside ExecPaths=: $(summary "$P/canary")"
    fi
    if (($(tries "$P/file" 0 "$t0" ok) > 0 && $(tries "$P/file" 0 "$t0" FAIL) == 0 && $(tries "$P/file" "$t1" 9e12 FAIL) > 0)); then
        ok "reproduced: with ExecPaths=$HOOK (a file, as the old drop-in), the hook is no longer executable after the reinstall ($(summary "$P/file"); last: $(last "$P/file" "$t1"))"
    else
        skipped "not reproduced here: with ExecPaths=$HOOK (a file) the hook stayed executable after the reinstall ($(summary "$P/file"))"
    fi
    for f in dir link; do
        exe=$HOOK
        [[ $f == link ]] && exe=/usr/bin/vipctl
        if (($(tries "$P/$f" 0 "$t0" ok) > 0 && $(tries "$P/$f" "$t1" 9e12 ok) >= 3 && $(tries "$P/$f" 0 9e12 FAIL) == 0)); then
            ok "with ExecPaths=$LIBEXEC_DIR/ (the drop-in), $exe stays executable across the reinstall ($(summary "$P/$f"); last: $(last "$P/$f" "$t1"))"
        else
            fail "with ExecPaths=$LIBEXEC_DIR/, $exe does not stay executable across the reinstall ($(summary "$P/$f"))"
            sed 's/^/         | /' "$P/$f" | tail -n 5
        fi
    done
fi

# --- a failover in the lab with the installed binary -----------------------------------------------
# The lab's sentinels run /usr/libexec/vipctl/vipctl as their hook (as sentinel.conf.snippet
# says), and a daemon of the installed /usr/bin/vipctl (as the unit runs it) on each host with the
# installed example config (the lab uses that very file). Bounded; the lab is always torn down.
LAB=/tmp/vipctl-labs/pkgtest-$$
lab() { "$ROOT/scripts/lab.sh" "$@"; }
lab_scenario() {
    local h ns i new=
    LAB_HOOK=$HOOK LAB_CONFIG=$CONFFILE LAB_OWNER_PID=$$ lab up "$LAB" >/dev/null || return 1
    for h in h1 h2 h3; do
        ns=$(lab ns "$LAB" "$h")
        VIPCTL_SOCKET=$LAB/$h/vipctl.sock VIPCTL_LOG_FILE=$LAB/$h/watch.log \
            ip netns exec "$ns" /usr/bin/vipctl --config "$CONFFILE" watch >"$LAB/$h/watch.out" 2>&1 &
        echo $! >>"$LAB/extra.pids"
    done
    for ((i = 0; i < 100; i++)); do
        [[ $(lab vips "$LAB" | awk '$2 != "-" {print $1}') == h1 ]] && break
        sleep 0.1
    done
    [[ $(lab vips "$LAB" | awk '$2 != "-" {print $1}') == h1 ]] || { echo "the installed daemon did not claim on h1"; return 1; }
    lab kill-redis "$LAB" h1 >/dev/null || return 1
    for ((i = 0; i < 300; i++)); do
        new=$(lab vips "$LAB" | awk '$2 != "-" {print $1}')
        [[ $new == h2 || $new == h3 ]] && break
        sleep 0.1
    done
    [[ $new == h2 || $new == h3 ]] || { echo "the VIP did not move to one new master: $(lab vips "$LAB" | tr '\n' ' ')"; return 1; }
    echo "VIP moved from h1 to $new"
}
if out=$(lab_scenario 2>&1); then
    ok "lab failover with the installed $HOOK (hook), /usr/bin/vipctl (daemon) and $CONFFILE: $out"
else
    fail "lab failover with the installed $HOOK and /usr/bin/vipctl"
    printf '%s\n' "$out" | sed 's/^/         | /' | head -n 20
fi
lab down "$LAB" >/dev/null 2>&1 || true

# --- removal while sentinel.conf runs the hook ------------------------------------------------------
# Sentinel refuses to start with a client-reconfig-script that does not exist, so prerm refuses
# `dpkg -r` while a sentinel.conf names vipctl as one, unless VIPCTL_FORCE_REMOVE=1. Tried on the
# system's own sentinel.conf (what prerm reads): one line is appended, and the original put back
# byte for byte (here, and by the EXIT trap on any other way out).
names_hook() {
    grep -niE '^[[:space:]]*sentinel[[:space:]]+client-reconfig-script[[:space:]]+[^[:space:]]+[[:space:]]+["'"'"']?(/usr/bin/vipctl|/bin/vipctl|/usr/libexec/vipctl/vipctl)["'"'"']?([[:space:]]|$)' "$1"
}
FORCE_PURGE=""
if [[ ! -f $SENTINEL_CONF ]]; then
    skipped "prerm refuses removal while sentinel.conf runs the hook: no $SENTINEL_CONF (redis-sentinel is not installed)"
elif pgrep -f -- "sentinel.*${SENTINEL_CONF//./\\.}" >/dev/null; then
    skipped "prerm refuses removal while sentinel.conf runs the hook: a running sentinel uses $SENTINEL_CONF (it rewrites the file; not touching it)"
elif names_hook "$SENTINEL_CONF" >/dev/null; then
    skipped "prerm refuses removal while sentinel.conf runs the hook: $SENTINEL_CONF names vipctl already: $(names_hook "$SENTINEL_CONF" | head -n1)"
    FORCE_PURGE=1
else
    cp -p "$SENTINEL_CONF" "$WORK/sentinel.conf.orig"
    SENTINEL_BACKUP=$WORK/sentinel.conf.orig
    printf 'sentinel client-reconfig-script vipctl-pkgtest %s\n' "$HOOK" >>"$SENTINEL_CONF"
    hook_line="$SENTINEL_CONF:$(wc -l <"$SENTINEL_CONF"):sentinel client-reconfig-script vipctl-pkgtest $HOOK"

    rc=0
    timeout 120 dpkg -r vipctl >"$WORK/dpkg-r-refused.log" 2>&1 || rc=$?
    st=$(dpkg-query -W -f='${Status}' vipctl 2>/dev/null || true)
    if ((rc != 0)) && grep -q 'REFUSING TO REMOVE vipctl' "$WORK/dpkg-r-refused.log" &&
        grep -qF "$hook_line" "$WORK/dpkg-r-refused.log" && grep -qF 'VIPCTL_FORCE_REMOVE=1' "$WORK/dpkg-r-refused.log" &&
        [[ $st == *" ok installed" && -x $HOOK ]]; then
        # The selection is "deinstall" now (dpkg was asked to remove it); the state stays "installed".
        ok "dpkg -r vipctl refused (exit $rc) while $SENTINEL_CONF runs the hook; vipctl stays installed ($st)"
        grep -E 'REFUSING|    /etc/|VIPCTL_FORCE_REMOVE=1 dpkg' "$WORK/dpkg-r-refused.log" | sed 's/^/         | /'
    else
        fail "dpkg -r vipctl with the hook in $SENTINEL_CONF: exit $rc, status '$st', expected a refusal naming '$hook_line'"
        sed 's/^/         | /' "$WORK/dpkg-r-refused.log"
    fi

    rc=0
    VIPCTL_FORCE_REMOVE=1 timeout 120 dpkg -r vipctl >"$WORK/dpkg-r-forced.log" 2>&1 || rc=$?
    st=$(dpkg-query -W -f='${Status}' vipctl 2>/dev/null || true)
    if ((rc == 0)) && [[ $st == "deinstall ok config-files" && ! -e $HOOK ]] && grep -q 'WARNING' "$WORK/dpkg-r-forced.log"; then
        ok "VIPCTL_FORCE_REMOVE=1 dpkg -r vipctl removes it anyway, with a warning ($st)"
    else
        fail "VIPCTL_FORCE_REMOVE=1 dpkg -r vipctl: exit $rc, status '$st'"
        sed 's/^/         | /' "$WORK/dpkg-r-forced.log"
    fi

    if restore_sentinel_conf; then
        ok "$SENTINEL_CONF restored (identical to the original)"
    else
        fail "$SENTINEL_CONF could not be restored; the original is in $WORK/sentinel.conf.orig"
    fi
    # Installed again, for the purge below: with the line gone, prerm lets it go.
    if timeout 300 dpkg -i "$DEB" >"$WORK/dpkg-i-again.log" 2>&1; then
        ok "dpkg -i $(basename "$DEB") again after the forced removal"
    else
        fail "dpkg -i $(basename "$DEB") again after the forced removal"
        sed 's/^/         | /' "$WORK/dpkg-i-again.log"
    fi
fi

# --- purge --------------------------------------------------------------------------------------
if [[ -n $FORCE_PURGE ]]; then export VIPCTL_FORCE_REMOVE=1; fi
if timeout 300 dpkg -P vipctl >"$WORK/dpkg-p.log" 2>&1; then
    ok "dpkg -P vipctl$([[ -n $FORCE_PURGE ]] && echo ' (VIPCTL_FORCE_REMOVE=1: sentinel.conf named vipctl before the test)' || echo " (prerm allows it: no sentinel.conf names the hook)")"
else
    fail "dpkg -P vipctl"
    sed 's/^/         | /' "$WORK/dpkg-p.log"
fi
if present; then fail "dpkg still has vipctl: $(dpkg-query -W -f='${Status}' vipctl)"; else ok "vipctl is no longer installed, not even its config files"; fi
left=()
for entry in "${FILES[@]}" "${SYMLINKS[@]}"; do
    read -r path _ <<<"$entry"
    [[ -e $path || -L $path ]] && left+=("$path")
done
for d in /etc/vipctl /usr/share/doc/vipctl /usr/lib/systemd/system/redis-sentinel.service.d /usr/lib/systemd/system/valkey-sentinel.service.d /var/log/vipctl "$LIBEXEC_DIR"; do
    [[ -e $d ]] && left+=("$d")
done
if ((${#left[@]} == 0)); then ok "every packaged file is gone, the conffile included"; else fail "left after purge: ${left[*]}"; fi
# vipctl run as root (other tests on this host, a hook) makes the default lock folder, root's, when
# it is missing: that may happen right after the purge and is not the package's.
if [[ ! -e $LOCK_DIR && ! -L $LOCK_DIR ]]; then
    ok "purge removed the lock folder $LOCK_DIR"
elif [[ $(stat -c %u "$LOCK_DIR") == 0 ]]; then
    skipped "purge removed the lock folder: $LOCK_DIR exists again, root's ($(stat -c '%y' "$LOCK_DIR")): made by a vipctl run as root since"
else
    fail "left after purge: $LOCK_DIR ($(stat -c '%F %U:%G %a' "$LOCK_DIR"))"
fi
if [[ -n $user_before ]]; then
    skipped "user vipctl removed on purge: it existed before the test"
elif getent passwd vipctl >/dev/null || getent group vipctl >/dev/null; then
    fail "user/group vipctl still exist after purge: $(getent passwd vipctl) $(getent group vipctl)"
else
    ok "user and group vipctl removed on purge"
fi

echo
if ((FAILED)); then
    log "$FAILED check(s) FAILED"
    exit 1
fi
log "all checks passed"
