#!/usr/bin/env bash
# Starts a Docker engine for the sandbox's Docker backend tests, unless one already answers
# on /var/run/docker.sock; waits up to 60 s for it. Needs root (CI runs as root).
#
# The engine's defaults work on the project's machines (overlay2 on ext4, cgroup v1); where
# they do not, STAKPAK_DOCKERD_FLAGS adds flags, e.g. `--storage-driver vfs`.
set -euo pipefail

sock=/var/run/docker.sock
log=/var/log/dockerd.log

if docker -H "unix://$sock" version >/dev/null 2>&1; then
    echo "dockerd already answers on $sock"
    exit 0
fi

read -r -a flags <<<"${STAKPAK_DOCKERD_FLAGS:-}"
echo "starting dockerd ${flags[*]:-} (log: $log)"
nohup dockerd --host "unix://$sock" ${flags[@]+"${flags[@]}"} >>"$log" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 120); do
    if docker -H "unix://$sock" version >/dev/null 2>&1; then
        echo "dockerd answers on $sock (pid $pid, log: $log)"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
echo "dockerd did not answer on $sock within 60 s or exited; its log, $log, ends with:" >&2
tail -n 30 "$log" >&2 || true
exit 1
