#!/usr/bin/env bash
# Music-on-hold load benchmark (benches/moh.rs): rgsd's media engine streams music on hold to N
# legs on loopback, then a bare UDP sender sends the same packet rate, in one run; receivers in
# a child process measure loss and pacing error (|gap - 20 ms|, kernel receive timestamps), and
# the sending process's CPU time is compared per stream.
#
# Usage: scripts/moh_load.sh [streams=1000,10000] [seconds=10]
#        scripts/moh_load.sh ceiling [start=1000] [seconds=5]   # each sender's ceiling, searched
set -euo pipefail
if [ "${1:-}" = ceiling ]; then
    cd "$(dirname "$0")/.."
    ulimit -n 40000 2>/dev/null || echo "warning: could not raise the open-file limit" >&2
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
    exec cargo bench --bench moh -- --ceiling "${2:-1000}" "${3:-5}"
fi
streams="${1:-1000,10000}"
seconds="${2:-10}"
cd "$(dirname "$0")/.."
# One socket per stream on the sending side (the engine's legs, then the bare sender's).
max=$(tr ',' '\n' <<<"$streams" | sort -n | tail -1)
ulimit -n "$((max + 1024))" 2>/dev/null || echo "warning: could not raise the open-file limit" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
cargo bench --bench moh -- "$streams" "$seconds"
