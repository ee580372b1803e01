#!/usr/bin/env bash
# Builds the release binaries, then the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) of
# the suite from them, and prints the two package paths on stdout, the .deb first (all else
# goes to stderr). Installs the two cargo tools when they are missing. The packages land in
# the tools' default folders: <target>/debian/ and <target>/generate-rpm/, <target> being
# $CARGO_TARGET_DIR or the workspace's target/.
#
#   packaging/build.sh              build, then package
#   packaging/build.sh --no-build   package what <target>/release holds
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *) echo "usage: packaging/build.sh [--no-build]" >&2; exit 2 ;;
esac

target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in
    /*) ;;
    *) target_dir=$root/$target_dir ;;
esac
export CARGO_TARGET_DIR=$target_dir

for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "packaging: installing $tool" >&2
        cargo install --locked "$tool" >&2
    fi
done

if [ "$build" = 1 ]; then
    cargo build --release --workspace --bins --locked >&2
fi

# --no-strip: the packages hold exactly the binaries of the release profile (which drops
# debug info and keeps the symbol table, for readable backtraces), the same bytes in both
# formats; cargo-generate-rpm never strips.
deb=$(cargo deb -p stakpak --no-build --no-strip --locked | tail -n 1)

# cargo-generate-rpm finds target/release below the current folder unless told otherwise;
# the package is named <name>-<version>-<release>.<arch>.rpm.
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
cargo generate-rpm -p bins/stakpak --target-dir "$target_dir" >&2
rpm=$(find "$target_dir/generate-rpm" -maxdepth 1 -name 'stakpak-*.rpm' -newer "$stamp" -print | head -n 1)

if [ ! -f "$deb" ] || [ -z "$rpm" ]; then
    echo "packaging: a package is missing (deb: '$deb', rpm: '$rpm')" >&2
    exit 1
fi
echo "$deb"
echo "$rpm"
