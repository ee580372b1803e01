#!/usr/bin/env bash
# Measures `stakpak policy check` as a whole process (start, load the policy, judge, exit),
# with no suite running, and prints min / median / p95 over N runs of several commands.
#
#   scripts/bench-policy.sh            # release build, 200 runs per command
#
# Target (issue 3): median under 5 ms. For the per-verdict numbers run
#   cargo bench -p stakpak-policy --bench verdicts
set -euo pipefail
runs=${RUNS:-200}
cd "$(dirname "$0")/.."
cargo build --quiet --release -p stakpak
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
stakpak="$target_dir/release/stakpak"
work=$(mktemp -d /tmp/stakpak-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 - "$stakpak" "$work" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
stakpak, work, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
commands = [
    "kubectl get pods -A",
    "rm -rf /",
    "echo cm0gLXJmIC8K | base64 -d | sh",
    "sudo sh -c 'systemctl restart nginx && journalctl -u nginx -n 20'",
]
env = {k: v for k, v in os.environ.items() if not k.startswith("STAKPAK_")}
base = [stakpak, "--state-dir", f"{work}/s", "--config-dir", f"{work}/c", "policy", "check", "--"]
print(f"stakpak policy check, whole process, {runs} runs each, no suite running")
all_ms = []
for cmd in commands:
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(base + [cmd], stdout=subprocess.DEVNULL, env=env)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    all_ms += ms
    print(f"  {cmd[:60]:<60} min {ms[0]:5.2f}  median {statistics.median(ms):5.2f}  p95 {ms[int(len(ms)*0.95)]:5.2f} ms")
med = statistics.median(all_ms)
print(f"overall median {med:.2f} ms (target < 5 ms: {'ok' if med < 5 else 'OVER TARGET'})")
PY
