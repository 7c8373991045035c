#!/usr/bin/env bash
# Installs what building and testing synack needs on Debian 12, idempotently.
# Usage: scripts/deps.sh [build|test|bench]   (each level includes the previous ones)
set -euo pipefail
level=${1:-build}
need_root() { [ "$(id -u)" = 0 ] || { echo "deps.sh: must run as root to install packages" >&2; exit 1; }; }

build_pkgs=(clang llvm libelf-dev zlib1g-dev pkg-config make m4 linux-libc-dev libbpf-dev bpftool)
test_pkgs=(iproute2 ethtool nftables curl socat python3 python3-scapy tshark wrk nginx-light procps hping3 util-linux systemd python3-prometheus-client iperf3)
bench_pkgs=(sockperf gnuplot-nox linux-perf haproxy libnginx-mod-stream)

pkgs=("${build_pkgs[@]}")
case "$level" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "deps.sh: unknown level '$level' (build|test|bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi


# A Rust toolchain, when the machine has none: rustup's installer (needs its download site).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps.sh: no cargo found; installing the stable toolchain with rustup" >&2
  need_root
  apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi

# The Rust toolchain pieces the checks use.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
