#!/usr/bin/env bash
# `true` through the whole sandboxd path (D-Bus → sandboxd → warden → secretd → local
# sandbox → redacted reply), the local sandbox alone, a bare `sh -c true`, bwrap and
# `docker run --rm`, median and p99 from one run (tests/benches/sandbox_path.rs).
#
#   scripts/bench-sandbox.sh                   # 300 runs each, 20 for docker
#   BENCH_RUNS=1000 DOCKER_RUNS=50 scripts/bench-sandbox.sh
#
# Targets (issue 5): whole path under 10 ms median; local sandbox within 3x of a bare spawn.
# For the bwrap and docker rows: apt-get install bubblewrap docker.io, then
# scripts/start-dockerd.sh and scripts/docker-test-image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p stakpak-e2e --bench sandbox_path
