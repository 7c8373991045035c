#!/usr/bin/env bash
# synack's main benchmark. Installs what it needs, then runs the benchmarks and prints
# their figures. Usage: scripts/bench.sh [--quick]   (as root: the system benchmark creates
# network namespaces). Extra arguments go to synack-sysbench (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
measure=5
[ "${1:-}" = "--quick" ] && measure=2
echo "== Core benchmark: the sans-IO TCP core between two in-memory endpoints (one core)"
taskset -c "${SYNACK_BENCH_CPU:-1}" cargo bench -p synack-bench --bench core -- --measurement-time "$measure" 2>&1 \
  | grep -E '^(lifecycle|data_path)|time:|thrpt:'

echo
echo "== System benchmark: synack vs the Linux kernel over veth, and the AF_XDP packet ceiling"
# synack-hold: the Linux client and server of the `concurrency` case.
cargo build --release -q -p synack-bench --bin synack-sysbench --bin synack-hold
# synack's own binary, when the workspace has one (the synack rows are n/a otherwise).
has_synack_bin() {
  cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys
pkgs = json.load(sys.stdin)["packages"]
sys.exit(0 if any(t["name"] == "synack" and "bin" in t["kind"] for p in pkgs for t in p["targets"]) else 1)'
}
if [ -z "${SYNACK_BIN:-}" ] && has_synack_bin; then
  cargo build --release -q --bin synack
fi
exec ./target/release/synack-sysbench "$@"
