#!/usr/bin/env bash
# Measures the embedded suite: time from `stakpak up` to all five daemons ready, and the
# summed idle RSS of the five daemons. Prints min / median / max over N runs.
#
#   scripts/bench-up.sh            # release build, 20 runs
#   RUNS=50 PROFILE=debug scripts/bench-up.sh
#
# Targets (issue 2): ready in under 500 ms, idle RSS under 50 MiB in total.
set -euo pipefail

runs=${RUNS:-20}
profile=${PROFILE:-release}
idle=${IDLE_SECONDS:-1}
cd "$(dirname "$0")/.."

if [ "$profile" = release ]; then
    cargo build --quiet --release --workspace --bins
else
    cargo build --quiet --workspace --bins
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
stakpak="$target_dir/$profile/stakpak"

work=$(mktemp -d /tmp/stakpak-bench-XXXXXX)
trap '"$stakpak" --state-dir "$work/s" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/config"

ready_ms=()
reported_ms=()
rss_kib=()
for i in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    out=$("$stakpak" --state-dir "$work/s" --config-dir "$work/config" up)
    end=$(date +%s%N)
    ready_ms+=($(( (end - start) / 1000000 )))
    reported_ms+=("$(sed -n 's/.*ready in \([0-9]*\) ms.*/\1/p' <<<"$out")")
    sleep "$idle"
    pids=$("$stakpak" --state-dir "$work/s" status --json | python3 -c '
import json, sys
print(" ".join(str(d["pid"]) for d in json.load(sys.stdin)["daemons"]))')
    total=0
    for pid in $pids; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        total=$((total + kib))
    done
    rss_kib+=("$total")
    "$stakpak" --state-dir "$work/s" down >/dev/null
done

python3 - "$profile" "$runs" "${ready_ms[*]}" "${reported_ms[*]}" "${rss_kib[*]}" <<'PY'
import statistics, sys
profile, runs = sys.argv[1], sys.argv[2]
ready = [int(x) for x in sys.argv[3].split()]
reported = [int(x) for x in sys.argv[4].split()]
rss = [int(x) / 1024 for x in sys.argv[5].split()]
def line(name, xs, unit, target):
    med = statistics.median(xs)
    verdict = "ok" if med < target else "OVER TARGET"
    print(f"{name:<34} min {min(xs):7.1f}  median {med:7.1f}  max {max(xs):7.1f} {unit:<4} (target < {target} {unit}: {verdict})")
print(f"stakpak up bench: {runs} runs, {profile} build")
line("up -> all five ready (wall clock)", ready, "ms", 500)
line("up -> ready (supervisor's count)", reported, "ms", 500)
line("idle RSS of the five daemons", rss, "MiB", 50)
PY
