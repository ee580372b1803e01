#!/usr/bin/env bash
# Builds the image the sandbox's Docker backend tests run in, `stakpak-sandbox-test:latest`,
# unless the engine already has it. Nothing is pulled: the root filesystem is busybox-static's
# /bin/busybox with one symlink per applet, imported with `docker import`.
set -euo pipefail

image=${STAKPAK_TEST_IMAGE:-stakpak-sandbox-test:latest}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "image $image is present"
    exit 0
fi

busybox=$(command -v busybox || true)
# The image has no libc: busybox must be the static build (ldd fails on a static binary).
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "a statically linked busybox is needed (apt-get install busybox-static)" >&2
    exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built image $image"
