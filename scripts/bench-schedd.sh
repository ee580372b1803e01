#!/usr/bin/env bash
# schedd with 10,000 schedules: idle CPU between firings (from /proc/<pid>/stat), RSS, and
# the lateness of firings (tests/benches/schedd_load.rs). Targets (issue 8): idle CPU near
# zero, RSS under 64 MiB, firings within 1 s of due.
#
#   scripts/bench-schedd.sh
#   SCHEDULES=10000 FIRING=20 FIRE_SECS=12 IDLE_SECS=10 scripts/bench-schedd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p stakpak-e2e --bench schedd_load
