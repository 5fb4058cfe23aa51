#!/usr/bin/env bash
# Builds the vipctl Debian package: release binary, generated man page and shell completions,
# then `cargo deb --no-build`. Prints the .deb's path as the last line of stdout.
#
#   scripts/package.sh                 # -> target/debian/vipctl_<version>-1_<arch>.deb
#   CARGO_TARGET_DIR=/tmp/t scripts/package.sh   # -> /tmp/t/debian/…
#
# Idempotent: re-running rebuilds only what changed and overwrites the generated files and the .deb.
# Checks the package's layout (binary in /usr/libexec/vipctl/, /usr/bin/vipctl a symlink to it).
# Installs cargo-deb (3.x, --locked) when missing. Packaging metadata: [package.metadata.deb] in
# Cargo.toml; files: packaging/.
set -euo pipefail

readonly PROG=${0##*/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
cd "$ROOT"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
command -v gzip >/dev/null || die "gzip is not installed"

# cargo-deb resolves `target/release/…` assets to the real target dir (it asks `cargo metadata`,
# which honours CARGO_TARGET_DIR); the generated assets live in the source tree's target/assets/,
# as Cargo.toml names them.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
readonly TARGET_DIR
readonly ASSETS=$ROOT/target/assets
readonly OUT=$TARGET_DIR/debian

t0=$SECONDS

if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install cargo-deb --locked --version ^3)"
    t=$SECONDS
    cargo install cargo-deb --locked --version '^3'
    log "cargo-deb installed in $((SECONDS - t)) s"
fi
log "using $(cargo deb --version 2>/dev/null | head -n1)"

t=$SECONDS
log "cargo build --release --locked (target dir $TARGET_DIR)"
cargo build --release --locked
readonly BIN=$TARGET_DIR/release/vipctl
[[ -x $BIN ]] || die "the build did not produce $BIN"
log "built in $((SECONDS - t)) s: $("$BIN" --version)"

# Generate into a temporary folder first, so a failed run never leaves half-written assets.
mkdir -p "$ASSETS"
tmp=$(mktemp -d "$ASSETS/.gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$BIN" generate man >"$tmp/vipctl.1"
gzip -9n <"$tmp/vipctl.1" >"$tmp/vipctl.1.gz"
rm -f "$tmp/vipctl.1"
"$BIN" generate complete-bash >"$tmp/vipctl.bash"
"$BIN" generate complete-zsh >"$tmp/_vipctl"
"$BIN" generate complete-fish >"$tmp/vipctl.fish"
for f in vipctl.1.gz vipctl.bash _vipctl vipctl.fish; do
    [[ -s $tmp/$f ]] || die "vipctl generate produced an empty $f"
    chmod 0644 "$tmp/$f"
    mv -f "$tmp/$f" "$ASSETS/$f"
done
log "generated the man page and completions in $ASSETS"

mkdir -p "$OUT"
version=$(cargo metadata --no-deps --format-version 1 --locked |
    sed -n 's/.*"name":"vipctl","version":"\([^"]*\)".*/\1/p')
[[ -n $version ]] || die "cannot read the crate's version from cargo metadata"
# Remove this version's older builds so the path printed below is the one just made.
rm -f "$OUT"/vipctl_"$version"-*.deb
cargo deb --no-build --locked --output "$OUT/" >&2
deb=$(find "$OUT" -maxdepth 1 -name "vipctl_${version}-*.deb" | head -n1)
[[ -n $deb && -s $deb ]] || die "cargo deb produced no package in $OUT"
# The layout that the sentinel drop-in (ExecPaths=/usr/libexec/vipctl/), sentinel.conf.snippet and
# the maintainer scripts rely on: the binary alone in /usr/libexec/vipctl/, /usr/bin/vipctl a
# relative symlink to it, the lock folder's tmpfiles.d entry.
contents=$(dpkg-deb -c "$deb")
grep -qE '^-rwxr-xr-x .* \./usr/libexec/vipctl/vipctl$' <<<"$contents" ||
    die "$deb has no executable /usr/libexec/vipctl/vipctl"
[[ $(grep -c ' \./usr/libexec/vipctl/[^/]' <<<"$contents") == 1 ]] ||
    die "$deb has more than vipctl in /usr/libexec/vipctl/ (sentinel may execute all of it)"
grep -qE '^l.* \./usr/bin/vipctl -> \.\./libexec/vipctl/vipctl$' <<<"$contents" ||
    die "$deb has no symlink /usr/bin/vipctl -> ../libexec/vipctl/vipctl"
grep -qE ' \./usr/lib/tmpfiles\.d/vipctl\.conf$' <<<"$contents" ||
    die "$deb has no /usr/lib/tmpfiles.d/vipctl.conf"

log "done in $((SECONDS - t0)) s"
dpkg-deb --info "$deb" >&2 2>/dev/null || true
echo "$deb"
