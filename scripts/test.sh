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
# The sans-IO core and the runtime again with overflow checks and debug assertions (the
# `checked` profile): unit, simulated-network, property and fuzz-seed tests, with the asserted
# invariants (sequence space, slots, frame accounting) live.
cargo test --profile checked -p synack-proto -p synack "$@"
# The end-to-end tests drive the `synack` binary (bin target of package synack), so build it
# first. Guard: while a branch lacks the bin target (or it fails to build), point the tests at a
# path that does not exist, so each of them fails saying the binary is missing instead of
# running against a stale binary from an earlier build.
if ! cargo build --release -p synack-cli --bin synack; then
  echo "test.sh: building the synack binary failed (see above): the end-to-end tests will fail" >&2
  export SYNACK_BIN=/nonexistent/synack-binary-did-not-build
fi
# One test thread per binary for the end-to-end tests keeps namespaces and veth pairs
# from contending; the rest run in parallel. After the binary's build: the benchmark's
# `concurrency` test drives it too.
cargo test --workspace --profile testing --exclude synack-tests --no-fail-fast "$@"
# --nocapture: the end-to-end tests print their timings (fetches/s, Mbit/s, detach time).
# SYNACK_E2E_BACKEND=kernel runs them against kernel stand-ins instead (harness check).
cargo test --profile testing -p synack-tests --no-fail-fast "$@" -- --test-threads=1 --nocapture
