#!/usr/bin/env bash
# Starts a Docker engine for the sandbox's Docker backend tests, unless one already answers
# on /var/run/docker.sock; waits up to 60 s for it. Needs root (CI runs as root).
#
# The engine runs inside a container here, whose root filesystem cannot carry overlayfs, so
# the storage driver is `vfs` (slow to build big images, fine for the tiny test image).
# STAKPAK_DOCKERD_FLAGS replaces the extra flags when another setup needs others.
set -euo pipefail

sock=/var/run/docker.sock
log=/var/log/dockerd.log

if docker -H "unix://$sock" version >/dev/null 2>&1; then
    echo "dockerd already answers on $sock"
    exit 0
fi

read -r -a flags <<<"${STAKPAK_DOCKERD_FLAGS:---storage-driver vfs}"
echo "starting dockerd ${flags[*]} (log: $log)"
nohup dockerd --host "unix://$sock" "${flags[@]}" >>"$log" 2>&1 </dev/null &

for _ in $(seq 1 120); do
    if docker -H "unix://$sock" version >/dev/null 2>&1; then
        echo "dockerd answers on $sock (log: $log)"
        exit 0
    fi
    sleep 0.5
done
echo "dockerd did not answer on $sock within 60 s; its log, $log, ends with:" >&2
tail -n 30 "$log" >&2 || true
exit 1
