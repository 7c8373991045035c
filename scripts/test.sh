#!/usr/bin/env bash
# Runs every synack test: unit, simulated-network, property and allocation tests, the XDP
# program's BPF_PROG_TEST_RUN tests, and the privileged end-to-end tests over veth (as root).
# Installs what it needs first. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: not root: the XDP and end-to-end tests will report SKIP (needs root)" >&2
fi
# One test thread per binary for the end-to-end tests keeps namespaces and veth pairs
# from contending; the rest run in parallel.
cargo test --workspace --release --exclude synack-tests "$@"
cargo test --release -p synack-tests "$@" -- --test-threads=1
