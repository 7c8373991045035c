#!/usr/bin/env bash
# Checks the layering that the crate split promises (ARCHITECTURE.md, "Crates"):
# - synack-proto (the sans-IO core) depends on no I/O, AF_XDP, BPF or CLI crate;
# - the runtime crate `synack` depends on no CLI crate;
# - `unsafe` appears only in synack-xsk (stack/xsk/), outside test code of other crates.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fail=0
# Normal dependencies (what is linked in); build tools such as libbpf-cargo are not checked.
deps_of() { cargo tree -q -p "$1" -e normal --prefix none --no-dedupe | awk '{print $1}' | sort -u; }

forbidden_core='^(xsk-rs|libxdp-sys|libbpf-sys|libbpf-rs|libbpf-cargo|rustix|libc|clap|anyhow|mimalloc|signal-hook|synack-xsk|synack-xdp|synack|core_affinity|crossbeam-channel)$'
bad=$(deps_of synack-proto | grep -E "$forbidden_core" || true)
if [ -n "$bad" ]; then
  echo "check-layers: synack-proto depends on: $bad" >&2; fail=1
fi
bad=$(deps_of synack | grep -E '^(clap|anyhow|mimalloc|signal-hook|synack-cli)$' || true)
if [ -n "$bad" ]; then
  echo "check-layers: synack (runtime) depends on CLI crates: $bad" >&2; fail=1
fi
# `unsafe` as code (not in comments or strings) outside stack/xsk; test-only counting
# allocators (a GlobalAlloc impl needs it) are allowed in tests/ and benches, and the test kit's
# one counting allocator (stack/testkit/src/counting_alloc.rs) is the one exception under stack/.
hits=$(git ls-files 'stack/*.rs' | grep -v '^stack/xsk/' | grep -v '/tests/' \
  | grep -v '^stack/testkit/src/counting_alloc\.rs$' \
  | xargs grep -nE '^\s*[^/]*\bunsafe\b' | grep -vE '^\S+:\s*//|unsafe_code' || true)
if [ -n "$hits" ]; then
  echo "check-layers: unsafe outside synack-xsk:" >&2; echo "$hits" >&2; fail=1
fi
grep -q '#!\[forbid(unsafe_code)\]' stack/proto/src/lib.rs || { echo "check-layers: synack-proto lost #![forbid(unsafe_code)]" >&2; fail=1; }
[ "$fail" = 0 ] && echo "check-layers: ok (synack-proto: $(deps_of synack-proto | grep -v '^synack-proto$' | tr '\n' ' '))"
exit "$fail"
