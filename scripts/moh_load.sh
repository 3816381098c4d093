#!/usr/bin/env bash
# Music-on-hold load test: N legs stream the built-in tone loop over loopback for S seconds;
# prints packets per stream per second (50 expected) and the worst inter-arrival gaps.
# Runs the ignored test media::leg::tests::moh_load in release mode, under /usr/bin/time when
# available (CPU time, peak memory).
#
# Usage: scripts/moh_load.sh [streams=1000] [seconds=10]
set -euo pipefail
streams="${1:-1000}"
seconds="${2:-10}"
cd "$(dirname "$0")/.."
# Each stream needs one socket on rgsd's side; receivers are shared.
ulimit -n "$((streams + 1024))" 2>/dev/null || echo "warning: could not raise the open-file limit" >&2
cargo test --release --lib --no-run
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f "cpu: %U s user, %S s system; peak memory %M KiB"); fi
RGSD_MOH_STREAMS="$streams" RGSD_MOH_SECONDS="$seconds" \
  "${timer[@]}" cargo test --release --lib media::leg::tests::moh_load -- --ignored --exact --nocapture
