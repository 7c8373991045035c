#!/usr/bin/env bash
# Builds deploy/container/Containerfile where no container registry is reachable, and checks the
# image: a Debian base made with debootstrap from Debian's package mirror is imported into
# podman as both stages' base; the build stage uses this machine's Rust toolchain (~/.rustup and
# ~/.cargo, mounted). Then the image's synack serves curl in a test namespace with exactly the
# capabilities of deploy/capabilities.txt, and refuses to start without CAP_BPF.
# As root. Needs podman and debootstrap (apt-get install podman debootstrap runc). Slow: a base
# system, clang and a full build (about 10 minutes here with PROFILE=testing).
# Usage: deploy/container/build-local.sh [PROFILE] [--no-build]   (--no-build: test the image)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${1:-release}
build=1
[ "${2:-}" = --no-build ] && build=0
base=localhost/synack-debian:bookworm
image=localhost/synack:local
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
# Containers inherit this host's rlimits (a root without CAP_SYS_RESOURCE cannot raise them to
# podman's defaults), with cgroupfs; runc where installed (crun refuses hybrid cgroup hierarchies).
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF=$(mktemp /tmp/synack-containers.XXXXXX.conf)
  printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' > "$CONTAINERS_CONF"
fi
runtime=()
command -v runc >/dev/null && runtime=(--runtime runc)
root=$(mktemp -d /tmp/synack-debootstrap.XXXXXX)
ns=ctr$$
cleanup() {
  ip netns del "${ns}s" 2>/dev/null || true
  ip netns del "${ns}p" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

if ! podman image exists "$base"; then
  echo "== debootstrap bookworm (minbase) into $root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | podman import - "$base" >/dev/null
fi

if [ "$build" = 1 ]; then
  echo "== podman build ($profile)"
  podman "${runtime[@]}" build --network host -f deploy/container/Containerfile -t "$image" \
    --build-arg BUILDER="$base" --build-arg BASE="$base" --build-arg PROFILE="$profile" \
    -v "$HOME/.rustup:/root/.rustup" -v "$HOME/.cargo:/root/.cargo" .
fi
podman image ls "$image"

echo "== run in a test namespace"
ip netns add "${ns}s"; ip netns add "${ns}p"
ip link add name "${ns}s" type veth peer name "${ns}p"
ip link set dev "${ns}s" netns "${ns}s"; ip link set dev "${ns}p" netns "${ns}p"
ip -n "${ns}s" addr add 198.18.99.1/24 dev "${ns}s"; ip -n "${ns}p" addr add 198.18.99.2/24 dev "${ns}p"
for side in s p; do ip -n "${ns}$side" link set dev "${ns}$side" up; ip -n "${ns}$side" link set dev lo up; done
ip netns exec "${ns}p" ethtool -K "${ns}p" tx off >/dev/null
caps=$(grep -o '^CAP_[A-Z_]*' deploy/capabilities.txt | paste -sd, -)
run() { # capabilities, then synack's arguments
  local c=$1; shift
  # The runtime's default seccomp profile allows bpf(2) only with CAP_SYS_ADMIN (deploy/README.md).
  podman "${runtime[@]}" run --rm --network "ns:/run/netns/${ns}s" --cap-drop all --cap-add "$c" \
    --security-opt seccomp=unconfined "$image" "$@"
}
run "$caps" serve --iface "${ns}s" --ip 198.18.99.3 --port 80 --app http > /tmp/synack-ctr.out 2>&1 &
for _ in $(seq 1 50); do grep -q ready /tmp/synack-ctr.out && break; sleep 0.2; done
code=$(ip netns exec "${ns}p" curl -s -m 5 -o /dev/null -w '%{http_code}' http://198.18.99.3/ || true)
podman ps -q --filter ancestor="$image" | xargs -r podman "${runtime[@]}" stop -t 10 >/dev/null
wait || true
cat /tmp/synack-ctr.out
[ "$code" = 200 ] || { echo "FAIL: curl got $code from the container"; exit 1; }
echo "ok: curl 200 from synack in the container with $caps"
if run "${caps/CAP_BPF,/}" serve --iface "${ns}s" --ip 198.18.99.3 --port 80 --app http > /tmp/synack-ctr.out 2>&1; then
  echo "FAIL: started without CAP_BPF"; exit 1
fi
grep -q "CAP_BPF" /tmp/synack-ctr.out && echo "ok: without CAP_BPF: $(grep 'synack: error' /tmp/synack-ctr.out)"
