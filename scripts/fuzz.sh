#!/usr/bin/env bash
# Runs one cargo-fuzz target on the stable toolchain (no sanitizer: --sanitizer none needs no
# nightly), seeded from the committed seeds, for a number of seconds.
# Usage: scripts/fuzz.sh TARGET SECONDS        (targets: ls stack/proto/fuzz/fuzz_targets)
# New corpus entries go to stack/proto/fuzz/corpus/TARGET (not committed); crashes to
# stack/proto/fuzz/artifacts/TARGET. Commit a small, minimised input that found something under
# stack/proto/fuzz/seeds/TARGET/, so that CI replays it (stack/proto/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/../stack/proto"
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi
[ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "fuzz.sh: no target '$target' (see stack/proto/fuzz/fuzz_targets)" >&2; exit 2; }
mkdir -p "fuzz/corpus/$target"
seeds=()
[ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
# -fork=1 keeps going past a crash to count them; a crash still exits non-zero at the end.
exec cargo fuzz run --sanitizer none --release "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
  -max_total_time="$seconds" -print_final_stats=1 -max_len=4096
