#!/usr/bin/env bash
# Preflight for running synack on this host: checks the kernel, the interface, the limits and
# the privileges synack needs, says what is wrong and how to fix it, and with --apply makes the
# safe changes (the service user, bpffs, the reserved client ports, the queue count) and says
# what it changed. Exit status: 0 when nothing is left to fix, 1 otherwise, 2 on bad usage.
#
#   deploy/setup.sh --iface IF [--ip IPV4] [--queues N] [--local-ports LO-HI] [--user NAME] [--apply]
#
# --ip: synack's address; if the kernel has it too (a shared address), synack's client ports
# must be outside the kernel's ephemeral range or reserved. --local-ports: synack's client port
# range (default 61000-65535, RuntimeConfig::local_ports). --queues: the workers synack will run.
set -uo pipefail

iface="" ip="" queues=1 local_ports="61000-65535" user="synack" apply=0
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --iface) iface=${2:-}; shift 2 ;;
    --ip) ip=${2:-}; shift 2 ;;
    --queues) queues=${2:-}; shift 2 ;;
    --local-ports) local_ports=${2:-}; shift 2 ;;
    --user) user=${2:-}; shift 2 ;;
    --apply) apply=1; shift ;;
    -h|--help) usage ;;
    *) echo "setup.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$iface" ] || { echo "setup.sh: --iface is required" >&2; usage; }
[[ "$queues" =~ ^[0-9]+$ ]] && [ "$queues" -ge 1 ] || { echo "setup.sh: --queues must be a number >= 1" >&2; exit 2; }
[[ "$local_ports" =~ ^([0-9]+)-([0-9]+)$ ]] || { echo "setup.sh: --local-ports must be LO-HI" >&2; exit 2; }
port_lo=${BASH_REMATCH[1]} port_hi=${BASH_REMATCH[2]}

here=$(cd "$(dirname "$0")" && pwd)
caps=$(grep -o '^CAP_[A-Z_]*' "$here/capabilities.txt" 2>/dev/null | tr '\n' ' ')
problems=0
ok() { printf '  ok    %s\n' "$*"; }
warn() { printf '  warn  %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; problems=$((problems + 1)); }
fix() { printf '        fix: %s\n' "$*"; }
changed() { printf '  CHANGED %s\n' "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }
# Runs a change when --apply is given and we are root; returns 1 if it did not run.
can_apply() { [ "$apply" = 1 ] && is_root; }

echo "synack preflight for interface $iface${ip:+, address $ip}, $queues queue(s)"

echo "kernel"
kver=$(uname -r)
kmaj=${kver%%.*} kmin=${kver#*.}; kmin=${kmin%%.*}
if [ "$kmaj" -gt 5 ] || { [ "$kmaj" = 5 ] && [ "$kmin" -ge 11 ]; }; then
  ok "kernel $kver (>= 5.11: CAP_BPF/CAP_PERFMON, AF_XDP need_wakeup, BPF memory charged to the cgroup)"
elif [ "$kmaj" = 5 ] && [ "$kmin" -ge 8 ]; then
  warn "kernel $kver: works, but BPF maps count against RLIMIT_MEMLOCK before 5.11"
else
  bad "kernel $kver is older than 5.8: no CAP_BPF (synack would need CAP_SYS_ADMIN)"
  fix "run a kernel >= 5.11 (Debian 12 ships 6.1)"
fi
if [ -r /sys/kernel/btf/vmlinux ]; then
  ok "BTF at /sys/kernel/btf/vmlinux"
else
  warn "no /sys/kernel/btf/vmlinux: libbpf loads synack's program without it, but bpftool cannot show its maps' types"
  fix "a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)"
fi
if grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  ok "bpffs mounted at /sys/fs/bpf (synack pins nothing; bpftool uses it)"
elif can_apply; then
  mount -t bpf bpf /sys/fs/bpf && changed "mounted bpffs at /sys/fs/bpf"
else
  warn "bpffs is not mounted at /sys/fs/bpf (synack pins nothing; useful for bpftool)"
  fix "mount -t bpf bpf /sys/fs/bpf   (or run with --apply)"
fi

echo "interface $iface"
if ! ip link show dev "$iface" >/dev/null 2>&1; then
  bad "no interface $iface in this network namespace"
  fix "ip -br link   lists the interfaces; run setup.sh in synack's namespace"
else
  driver=$(ethtool -i "$iface" 2>/dev/null | sed -n 's/^driver: //p')
  # Drivers with native XDP, and those of them with AF_XDP zero-copy (kernel 6.x).
  case "$driver" in
    i40e|ice|ixgbe|igc|igb|mlx5_core|stmmac|idpf|ena|bnxt_en|virtio_net|veth|mlx4_en|nfp|qede|tun|xsk_veth)
      mode="native XDP" ;;
    "") mode="unknown" ;;
    *) mode="generic XDP (SKB mode: works, slower)" ;;
  esac
  case "$driver" in
    i40e|ice|ixgbe|igc|mlx5_core|stmmac|idpf|virtio_net) zc="zero-copy AF_XDP" ;;
    *) zc="copy-mode AF_XDP" ;;
  esac
  if [ -z "$driver" ]; then
    warn "cannot read the driver of $iface (ethtool -i): XDP mode unknown"
  else
    ok "driver $driver: $mode, $zc"
  fi
  attached=$(ip -d link show dev "$iface" | grep -o 'prog/xdp id [0-9]*' | head -1)
  if [ -n "$attached" ]; then
    bad "an XDP program is already attached to $iface ($attached): synack attaches its own"
    fix "ip link set dev $iface xdp off   (if it is a stale one of synack's after a kill -9)"
  else
    ok "no XDP program attached"
  fi
  # synack serves at the interface's MTU (MSS = MTU - 40): 2048-byte UMEM frames up to 1778,
  # 4096-byte ones up to 3826, and above that chains of them (AF_XDP multi-buffer, Linux 6.6).
  mtu=$(cat "/sys/class/net/$iface/mtu" 2>/dev/null || echo 0)
  if [ "$mtu" -le 1778 ]; then
    ok "MTU $mtu (fits synack's 2048-byte frames)"
  elif [ "$mtu" -le 3826 ]; then
    ok "MTU $mtu (synack uses 4096-byte frames)"
  elif [ "$kmaj" -gt 6 ] || { [ "$kmaj" = 6 ] && [ "$kmin" -ge 6 ]; }; then
    ok "MTU $mtu: frames over 3.8 KB travel as chains of 4096-byte frames (AF_XDP multi-buffer, kernel $kver >= 6.6)"
  else
    bad "MTU $mtu: frames over 3.8 KB need AF_XDP multi-buffer (XDP_USE_SG), which kernel $kver (< 6.6) lacks"
    fix "run a kernel >= 6.6, or ip link set dev $iface mtu 3826 (or less)"
  fi
  # `ethtool -l`: the combined (or RX) channels, current and maximum.
  channels=$(ethtool -l "$iface" 2>/dev/null)
  cur=$(printf '%s\n' "$channels" | awk '/Current hardware settings/{c=1} c&&/^(Combined|RX):/&&$2~/^[0-9]+$/{if($2+0>n)n=$2+0} END{print n+0}')
  max=$(printf '%s\n' "$channels" | awk '/Pre-set maximums/{c=1} /Current hardware/{c=0} c&&/^(Combined|RX):/&&$2~/^[0-9]+$/{if($2+0>n)n=$2+0} END{print n+0}')
  [ "$cur" = 0 ] && cur=$(ls -d /sys/class/net/"$iface"/queues/rx-* 2>/dev/null | wc -l)
  if [ "$cur" -ge "$queues" ]; then
    ok "$cur RX queue(s) (synack serves queues 0..$((queues - 1)))"
    [ "$cur" -gt "$queues" ] && warn "queues $queues..$((cur - 1)) are not served: frames RSS puts there reach the kernel, not synack" \
      && fix "ethtool -L $iface combined $queues   (or --queues $cur)"
  elif [ "${max:-0}" -ge "$queues" ] && can_apply; then
    if ethtool -L "$iface" combined "$queues" 2>/dev/null || ethtool -L "$iface" rx "$queues" 2>/dev/null; then
      changed "RX queues of $iface: $cur -> $queues"
    else
      bad "could not set $queues queues on $iface"
    fi
  else
    bad "$iface has $cur RX queue(s), synack would serve $queues"
    if [ "${max:-0}" -ge "$queues" ]; then fix "ethtool -L $iface combined $queues   (or run with --apply)"
    else fix "the driver allows at most ${max:-$cur}: run synack with --queues ${max:-$cur}"; fi
  fi
fi

echo "limits and privileges"
memlock=$(ulimit -l)
ok "locked-memory limit: $memlock KiB (synack's UMEM is 16 MiB per queue at the default --rx-ring; CAP_IPC_LOCK exempts it)"
if [ -n "$caps" ]; then
  ok "synack needs exactly: $caps(deploy/capabilities.txt)"
else
  bad "cannot read $here/capabilities.txt"
fi
if id "$user" >/dev/null 2>&1; then
  ok "service user $user exists"
elif can_apply; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user" \
    && changed "created the system user $user"
else
  bad "no user $user for the service (deploy/systemd/synack@.service runs as it)"
  fix "useradd --system --no-create-home --shell /usr/sbin/nologin $user   (or run with --apply)"
fi
if ! command -v setpriv >/dev/null 2>&1; then
  warn "setpriv is missing (util-linux): needed to run synack by hand with only its capabilities"
fi
if ! is_root; then
  have=$(grep '^CapEff' /proc/self/status | awk '{print $2}')
  warn "not root (effective capabilities $have): the checks that need root were limited"
fi

echo "ports"
read -r k_lo k_hi < /proc/sys/net/ipv4/ip_local_port_range
reserved=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports)
shared=0
if [ -n "$ip" ] && ip -o -4 addr show | grep -q "inet $ip/"; then shared=1; fi
covered() { # whether the reserved list ("1,2,10-20") covers ports $1-$2
  printf '%s\n' "$reserved" | tr ',' '\n' | awk -v lo="$1" -v hi="$2" -F- '
    NF { a[NR]=$1+0; b[NR]=($2==""?$1:$2)+0; n=NR }
    END { for (p=lo; p<=hi; p++) { f=0; for (i=1;i<=n;i++) if (p>=a[i] && p<=b[i]) { f=1; break } if (!f) exit 1 } }'
}
if [ "$port_hi" -lt "$k_lo" ] || [ "$port_lo" -gt "$k_hi" ]; then
  ok "synack's client ports $port_lo-$port_hi are outside the kernel's ephemeral range $k_lo-$k_hi"
else
  o_lo=$((port_lo > k_lo ? port_lo : k_lo)) o_hi=$((port_hi < k_hi ? port_hi : k_hi))
  if covered "$o_lo" "$o_hi"; then
    ok "synack's client ports $port_lo-$port_hi overlap the kernel's $k_lo-$k_hi, but $o_lo-$o_hi are reserved"
  elif [ "$shared" = 0 ] && [ -n "$ip" ]; then
    ok "$ip is synack's alone (no kernel interface has it): the kernel's ephemeral range does not matter"
  elif can_apply; then
    new=${reserved:+$reserved,}$o_lo-$o_hi
    sysctl -q -w net.ipv4.ip_local_reserved_ports="$new" \
      && printf 'net.ipv4.ip_local_reserved_ports = %s\n' "$new" > /etc/sysctl.d/60-synack.conf \
      && changed "net.ipv4.ip_local_reserved_ports = $new (also in /etc/sysctl.d/60-synack.conf)"
  else
    bad "synack's client ports $port_lo-$port_hi overlap the kernel's ephemeral range $k_lo-$k_hi${ip:+ on the shared address $ip}: synack refuses to start (it would steer the kernel's own connections)"
    fix "sysctl -w net.ipv4.ip_local_reserved_ports=$o_lo-$o_hi (and in /etc/sysctl.d/; or run with --apply), or give synack another --local-ports range"
  fi
fi

if [ "$problems" = 0 ]; then
  echo "result: ready"
  exit 0
fi
echo "result: $problems problem(s) to fix"
exit 1
