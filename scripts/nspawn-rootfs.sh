#!/usr/bin/env bash
# Makes, once, the Debian bookworm root filesystem the installed-suite test boots with
# systemd-nspawn (tests/tests/installed.rs), and prints its path. Later runs print the
# cached path at once; tests never write to it (each run boots an overlay of it).
#
# STAKPAK_NSPAWN_ROOTFS chooses the folder (default /var/cache/stakpak-nspawn/bookworm):
# outside the clone, so it survives fresh clones on the same machine.
set -euo pipefail

root=${STAKPAK_NSPAWN_ROOTFS:-/var/cache/stakpak-nspawn/bookworm}
# What the container needs beyond minbase: systemd as PID 1, the system bus, `ps`/`kill`
# for the checks and certificates for apt. Changing this list (or the mirror) makes a new
# root filesystem: the stamp records what the cached one was made with.
packages=systemd,systemd-sysv,dbus,procps,ca-certificates
# The mirror this machine's apt uses, so the container reaches the same one.
mirror=$(grep -hoE '^(URIs:|deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    2>/dev/null | grep -oE 'https?://[^[:space:]]+' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
stamp="bookworm minbase $packages $mirror"

if [[ -f $root/.stakpak-rootfs && $(cat "$root/.stakpak-rootfs") == "$stamp" ]]; then
    echo "$root"
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    echo "nspawn-rootfs: making $root needs root" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends debootstrap systemd-container >/dev/null
fi

# Built beside the final folder and renamed into place, so an interrupted run never
# leaves a half-made root filesystem that looks finished.
parent=$(dirname "$root")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.bookworm.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
echo "nspawn-rootfs: debootstrap bookworm from $mirror into $root" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$work/root" "$mirror" >&2

# No first-boot questions, no machine id baked in (systemd makes one per boot), a
# hostname, and no services the test does not need slowing the boot down.
rm -f "$work/root/etc/machine-id"
: >"$work/root/etc/machine-id"
echo stakpak-test >"$work/root/etc/hostname"
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    fstrim.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$work/root/etc/systemd/system/$unit"
done
# The root password stays locked; the test enters the container with nsenter. The
# package lists stay, so `apt-get install ./stakpak.deb` inside resolves dependencies
# from what is here; the downloaded archives go.
rm -f "$work/root/var/cache/apt/archives/"*.deb
echo "$stamp" >"$work/root/.stakpak-rootfs"

rm -rf --one-file-system "$root"
mv "$work/root" "$root"
echo "$root"
