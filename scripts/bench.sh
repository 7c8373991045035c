#!/usr/bin/env bash
# synack's main benchmark. Installs what it needs, then runs the benchmarks and prints
# their figures. Usage: scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
measure=5
[ "${1:-}" = "--quick" ] && measure=2
echo "== Core benchmark: the sans-IO TCP core between two in-memory endpoints (one core)"
taskset -c "${SYNACK_BENCH_CPU:-1}" cargo bench -p synack-bench --bench core -- --measurement-time "$measure" 2>&1 \
  | grep -E '^(lifecycle|data_path)|time:|thrpt:'
