#!/usr/bin/env bash
# The agent's overhead per tool-call turn (zero-latency LLM double; the command's own run
# through sandboxd subtracted) and turns per second with 50 concurrent sessions
# (tests/benches/agent_turns.rs). Target (issue 6): under 5 ms per turn.
#
#   scripts/bench-agent.sh
#   TURNS=400 SESSIONS=50 SESSION_TURNS=10 scripts/bench-agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p stakpak-e2e --bench agent_turns
