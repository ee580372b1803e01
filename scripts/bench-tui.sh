#!/usr/bin/env bash
# Frame times of the TUI with a 10,000-line tool output in the chat: collapsed, expanded
# (first frame and paging), streaming text under it, resized every frame, and at 80x24
# (bins/stakpak/benches/tui_frames.rs). Target (issue 9): under 16 ms per frame.
#
#   scripts/bench-tui.sh
#   FRAMES=500 WIDTH=200 HEIGHT=60 scripts/bench-tui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p stakpak --bench tui_frames
