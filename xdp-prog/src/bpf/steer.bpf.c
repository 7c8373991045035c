// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * synack's XDP steering program.
 *
 * For every frame received on the interface it decides whether the frame
 * belongs to synack (then it is redirected into the AF_XDP socket registered
 * for the receive queue it arrived on) or to the kernel (XDP_PASS).
 *
 * synack owns IPv4 addresses (`owned_addrs`) in one of two modes, stored as
 * the map's value (`enum owned_mode`, bit flags):
 *   - SHARED with the kernel, which has the address too. synack gets only
 *     IPv4/TCP, not a fragment (fragments of its flows are dropped, see
 *     handle_fragment), whose destination port is a listening port
 *     (`listen_ports`) or lies in the local port range synack opens
 *     connections from (`steer_config`). ARP, ICMP and every other port pass
 *     to the kernel, which answers them, except ICMP fragmentation-needed
 *     about a segment synack sent (see handle_icmp).
 *   - DEDICATED to synack: the kernel does not have the address, so nobody
 *     else would answer for it. synack gets ARP whose target protocol address
 *     is this one, ICMP echo requests to it, and all unfragmented TCP to it
 *     whatever the port, so that it can answer closed ports with a RST.
 *
 * Neighbours: every Ethernet/IPv4 ARP request or reply whose target protocol
 * address is owned (in either mode) records its sender's IPv4 address and
 * MAC in the LRU map `neighbors` before the frame is passed or redirected.
 * For a shared address the kernel keeps receiving those ARP replies, yet
 * synack, which sends its own ARP requests from the same address for the
 * connections it opens, learns the peer's MAC from this map.
 *
 * VLANs: synack serves untagged frames only. A frame with an 802.1Q or
 * 802.1ad tag in it passes to the kernel (`passed_vlan`), and so does one
 * whose tag the driver took out into metadata (VLAN RX offload): the second
 * program, `xdp_steer_dev`, loaded bound to the interface
 * (BPF_F_XDP_DEV_BOUND_ONLY) where the kernel allows it, asks the driver with
 * the bpf_xdp_metadata_rx_vlan_tag kfunc (Linux 6.8; veth implements it)
 * first. Where that program cannot be loaded or attached (an older kernel,
 * generic XDP) the loader falls back to `xdp_steer`, which sees only tags in
 * the frame: a stripped tag then goes unnoticed.
 *
 * Jumbo frames: both programs are `xdp.frags` (BPF_F_XDP_HAS_FRAGS), so a
 * driver may hand them a frame in several buffers; veth refuses a program
 * without it once the peer's MTU exceeds what one page holds (about 3.5 KB).
 * The program reads headers only, within the first buffer (data..data_end)
 * with the bounds checks below, so a multi-buffer frame is parsed as any
 * other; its redirect lands in the AF_XDP socket as a chain of descriptors
 * (XDP_USE_SG), which synack reassembles.
 *
 * Everything else, including anything this parser does not understand,
 * passes to the kernel untouched: the program must never break the host's
 * own traffic (SSH, ARP for kernel addresses, IPv6, ...).
 *
 * Every path through the program increments exactly one counter, so the
 * counters explain every frame and the tests can read the decision from them.
 *
 * The Rust loader uses `struct steer_config`, `struct neighbor`,
 * `enum steer_counter` and `enum owned_mode` through the types libbpf-cargo
 * generates from this object's BTF (src/counters.rs and src/program.rs check
 * them at compile time).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Queues an interface may have that synack can serve (XSKMAP size). */
#define MAX_QUEUES 64
/* Owned IPv4 addresses the map can hold. */
#define MAX_OWNED_ADDRS 256
/* Neighbours (IPv4 -> MAC) remembered; the least recently used go first. */
#define MAX_NEIGHBORS 4096
/* Listening ports as a bitmap: 65536 bits in 1024 words of 64 bits. */
#define PORT_WORDS (65536 / 64)

/* IPv4 flags and fragment offset (RFC 791), not in the uapi headers. */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* VLAN tags (IEEE 802.1Q, 802.1ad, and the pre-standard QinQ 0x9100). */
#define ETH_P_8021Q_TAG 0x8100
#define ETH_P_8021AD_TAG 0x88A8
#define ETH_P_QINQ_TAG 0x9100

/*
 * The VLAN tag the driver stripped from the frame (Linux 6.8). A weak symbol:
 * on a kernel without it, the call below is dead code the verifier removes.
 * Only a program loaded bound to a device may call it; the driver's
 * implementation replaces the call, or a default that returns -EOPNOTSUPP.
 */
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx,
					__be16 *vlan_proto,
					__u16 *vlan_tci) __ksym __weak;
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/*
 * linux/icmp.h and linux/if_arp.h are not included: they pull in glibc's
 * sys/socket.h, which does not compile for the BPF target. The few
 * definitions needed are here.
 */
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

/* ICMP echo request (RFC 792). */
#define ICMP_ECHO 8
struct icmp_echo {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

/*
 * ICMP destination unreachable, fragmentation needed and DF set (RFC 792,
 * with RFC 1191's next-hop MTU), followed by the IPv4 header and at least
 * 8 bytes of the datagram that did not fit.
 */
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
struct icmp_frag_needed {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;
};

/*
 * The single entry of the `steer_config` map. Ports are in host byte order.
 * The local port range is disabled while local_port_hi is 0 (port 0 is never
 * a valid destination, and a zeroed map must steer nothing).
 */
struct steer_config {
	__u16 local_port_lo;
	__u16 local_port_hi;
	/* Test-only: drop this many per thousand of steered frames (0 = off). */
	__u16 drop_permille;
};

/*
 * The value of an `owned_addrs` entry: what synack takes for that address
 * besides TCP to its own ports (which it takes in every mode). The loader
 * writes only OWNED_SHARED or OWNED_DEDICATED; the program tests the bits.
 */
enum owned_mode {
	OWNED_STEER_ARP = 1 << 0,	/* ARP whose target is the address */
	OWNED_STEER_ICMP_ECHO = 1 << 1,	/* ICMP echo requests to it */
	OWNED_STEER_ALL_TCP = 1 << 2,	/* TCP to it, whatever the port */
	OWNED_SHARED = 0,
	OWNED_DEDICATED = OWNED_STEER_ARP | OWNED_STEER_ICMP_ECHO |
			  OWNED_STEER_ALL_TCP,
};

/* The value of a `neighbors` entry: a MAC address, padded to 8 bytes. */
struct neighbor {
	__u8 mac[ETH_ALEN];
	__u8 pad[2];
};

/* Indexes into the per-CPU `counters` map. Append only; mirrored in Rust. */
enum steer_counter {
	CTR_REDIRECTED = 0,	/* TCP frame redirected to the socket */
	CTR_ARP_REDIRECTED,	/* ARP for a dedicated address redirected */
	CTR_ICMP_REDIRECTED,	/* ICMP echo to a dedicated address redirected */
	CTR_REDIRECT_FAILED,	/* ours, but no socket on this queue: passed */
	CTR_DROPPED_TEST_KNOB,	/* ours, dropped by drop_permille */
	CTR_PASSED_NOT_IPV4,	/* neither IPv4 nor ARP (IPv6, ...) */
	CTR_PASSED_ARP,		/* ARP that is not Ethernet/IPv4 */
	CTR_PASSED_MALFORMED,	/* IPv4 with version != 4 or IHL < 5 */
	CTR_PASSED_TRUNCATED,	/* frame shorter than the headers it announces */
	CTR_PASSED_NOT_OWNED,	/* destination address not owned */
	CTR_PASSED_FRAGMENT,	/* IPv4 fragment (synack does not reassemble) */
	CTR_PASSED_NOT_TCP,	/* owned address, other protocol */
	CTR_PASSED_PORT_NOT_OURS, /* owned address, TCP, port not synack's */
	CTR_PASSED_ARP_SHARED,	/* ARP for a shared address: the kernel's */
	CTR_DROPPED_FRAGMENT,	/* IPv4 fragment of a flow synack owns */
	CTR_ICMP_FRAG_NEEDED_REDIRECTED, /* frag-needed about synack's flow */
	CTR_PASSED_VLAN,	/* VLAN-tagged, in the frame or stripped */
	CTR_MAX,
};

/*
 * Never read by the program: it puts `enum steer_counter` into the object's
 * BTF, from which libbpf-cargo generates the Rust mirror (skel::types) that
 * the loader checks its counter list against at compile time.
 */
const volatile enum steer_counter steer_counter_max = CTR_MAX;
/* The same for `enum owned_mode`. */
const volatile enum owned_mode owned_mode_dedicated = OWNED_DEDICATED;

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OWNED_ADDRS);
	__type(key, __be32);
	__type(value, __u8); /* enum owned_mode */
} owned_addrs SEC(".maps");

/*
 * Filled by the program from ARP for owned addresses, read by synack. An LRU
 * map, so that ARP from many hosts (or a flood of forged senders) evicts old
 * entries instead of failing to insert new ones.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_NEIGHBORS);
	__type(key, __be32);
	__type(value, struct neighbor);
} neighbors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} listen_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} steer_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* ARP for IPv4 over Ethernet (RFC 826), the only kind synack answers. */
struct arp_eth_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

static __always_inline void count(enum steer_counter counter)
{
	__u32 key = counter;
	__u64 *value = bpf_map_lookup_elem(&counters, &key);

	/* Per-CPU slot: no other CPU writes it, no atomic needed. */
	if (value)
		*value += 1;
}

static __always_inline int pass(enum steer_counter counter)
{
	count(counter);
	return XDP_PASS;
}

/* The mode of `addr` (enum owned_mode), or -1 when synack does not own it. */
static __always_inline int owned_mode(__be32 addr)
{
	__u8 *mode = bpf_map_lookup_elem(&owned_addrs, &addr);

	return mode ? *mode : -1;
}

/*
 * The frame is synack's: apply the test drop knob, then redirect it to the
 * socket of its receive queue. With XDP_PASS in the flags, bpf_redirect_map
 * returns XDP_PASS instead of XDP_REDIRECT when no socket is registered for
 * the queue (or the queue index is out of the map), so the kernel still gets
 * the frame; that case is counted apart because it means a misconfiguration.
 */
static __always_inline int steer(struct xdp_md *ctx,
				 const struct steer_config *cfg,
				 enum steer_counter redirected)
{
	int action;

	if (cfg->drop_permille &&
	    bpf_get_prandom_u32() % 1000 < cfg->drop_permille) {
		count(CTR_DROPPED_TEST_KNOB);
		return XDP_DROP;
	}

	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(action == XDP_REDIRECT ? redirected : CTR_REDIRECT_FAILED);
	return action;
}

static __always_inline int is_listening(__u16 port)
{
	__u32 word = port / 64;
	__u64 *bits = bpf_map_lookup_elem(&listen_ports, &word);

	return bits && ((*bits >> (port % 64)) & 1);
}

/* Whether TCP to `port` of a shared address is synack's. */
static __always_inline int port_is_ours(const struct steer_config *cfg,
					__u16 port)
{
	if (cfg->local_port_hi != 0 && port >= cfg->local_port_lo &&
	    port <= cfg->local_port_hi)
		return 1;
	return is_listening(port);
}

/*
 * An IPv4 fragment to an owned address. synack does not reassemble, and
 * neither may the kernel for synack's flows: on a shared address it would
 * answer the reassembled segment with a RST (no socket of its own), on a
 * dedicated one it has no use for it. So a TCP fragment of a flow synack owns
 * is dropped and counted (the sender's PMTU discovery or retransmission
 * recovers): every TCP fragment to a dedicated address, and the first
 * fragment (offset 0, which carries the ports) to synack's ports of a shared
 * address. A later fragment of a shared address carries no ports and cannot be
 * told apart: it passes, and without its first fragment the kernel never
 * reassembles it (nor, lacking fragment 0, sends "reassembly time exceeded").
 */
static __always_inline int handle_fragment(const struct steer_config *cfg,
					   struct iphdr *ip, __u32 ip_len,
					   int mode, void *data_end)
{
	__be16 *ports = (void *)ip + ip_len;

	if (ip->protocol != IPPROTO_TCP)
		return pass(CTR_PASSED_FRAGMENT);
	if (mode & OWNED_STEER_ALL_TCP)
		goto drop;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return pass(CTR_PASSED_FRAGMENT);
	/* Fragment 0 holds at least 8 bytes of TCP (offsets count 8 bytes). */
	if ((void *)(ports + 2) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (!port_is_ours(cfg, bpf_ntohs(ports[1])))
		return pass(CTR_PASSED_FRAGMENT);
drop:
	count(CTR_DROPPED_FRAGMENT);
	return XDP_DROP;
}

/*
 * ICMP to an owned address. Echo requests are synack's for a dedicated
 * address. Fragmentation-needed (path MTU discovery, RFC 1191) is synack's in
 * both modes when the datagram it quotes is one synack sent: TCP from this
 * address and, for a shared address, from one of synack's ports (any port of
 * a dedicated one). Without it a path with a smaller MTU black-holes synack's
 * connections, as every segment has DF set. synack checks the rest against
 * the connection (RFC 5927); everything else passes to the kernel.
 */
static __always_inline int handle_icmp(struct xdp_md *ctx,
				       const struct steer_config *cfg,
				       struct iphdr *ip, __u32 ip_len,
				       int mode, void *data_end)
{
	struct icmp_frag_needed *icmp = (void *)ip + ip_len;
	struct iphdr *quoted;
	__u32 quoted_len;
	__be16 *ports;

	if ((void *)(icmp + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (icmp->type == ICMP_ECHO && (mode & OWNED_STEER_ICMP_ECHO))
		return steer(ctx, cfg, CTR_ICMP_REDIRECTED);
	if (icmp->type != ICMP_DEST_UNREACH || icmp->code != ICMP_FRAG_NEEDED)
		return pass(CTR_PASSED_NOT_TCP);
	quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (quoted->version != 4 || quoted->ihl < 5)
		return pass(CTR_PASSED_MALFORMED);
	if (quoted->protocol != IPPROTO_TCP || quoted->saddr != ip->daddr)
		return pass(CTR_PASSED_NOT_TCP);
	/* IHL is 4 bits: quoted_len is in [20, 60], a bounded offset. */
	quoted_len = quoted->ihl * 4;
	ports = (void *)quoted + quoted_len;
	if ((void *)(ports + 2) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (!(mode & OWNED_STEER_ALL_TCP) &&
	    !port_is_ours(cfg, bpf_ntohs(ports[0])))
		return pass(CTR_PASSED_PORT_NOT_OURS);
	return steer(ctx, cfg, CTR_ICMP_FRAG_NEEDED_REDIRECTED);
}

/* clang has no memcmp for the BPF target; six bytes are compared by hand. */
static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	int same = 1;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		same &= a[i] == b[i];
	return same;
}

/*
 * Records the sender of `arp` (Ethernet/IPv4, target owned) as a neighbour.
 * Only requests and replies: other operations (RARP, InARP) do not announce
 * the sender's own binding. Skipped: an unspecified sender address (an RFC
 * 5227 probe, which has none yet), a sender that claims the target address
 * itself (gratuitous ARP or a conflict: our own address is no neighbour), and
 * a group (multicast or broadcast) sender MAC, which no host may have.
 */
static __always_inline void learn_neighbor(const struct arp_eth_ipv4 *arp)
{
	struct neighbor neighbor = {};
	struct neighbor *known;
	__be32 sender = arp->spa;

	if (arp->op != bpf_htons(ARPOP_REQUEST) &&
	    arp->op != bpf_htons(ARPOP_REPLY))
		return;
	if (sender == 0 || sender == arp->tpa || (arp->sha[0] & 1))
		return;
	__builtin_memcpy(neighbor.mac, arp->sha, ETH_ALEN);
	/* Unchanged entries are not rewritten: ARP floods cost lookups only. */
	known = bpf_map_lookup_elem(&neighbors, &sender);
	if (known && same_mac(known->mac, neighbor.mac))
		return;
	/* Failure (no memory) leaves synack to resolve the peer again. */
	bpf_map_update_elem(&neighbors, &sender, &neighbor, BPF_ANY);
}

static __always_inline int handle_arp(struct xdp_md *ctx,
				      const struct steer_config *cfg,
				      void *l3, void *data_end)
{
	struct arp_eth_ipv4 *arp = l3;
	int mode;

	if ((void *)(arp + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (arp->hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp->pro != bpf_htons(ETH_P_IP) || arp->hln != ETH_ALEN ||
	    arp->pln != 4)
		return pass(CTR_PASSED_ARP);
	mode = owned_mode(arp->tpa);
	if (mode < 0)
		return pass(CTR_PASSED_NOT_OWNED);
	/* In both modes, and before the frame leaves for the kernel or synack. */
	learn_neighbor(arp);
	if (!(mode & OWNED_STEER_ARP))
		return pass(CTR_PASSED_ARP_SHARED);
	return steer(ctx, cfg, CTR_ARP_REDIRECTED);
}

static __always_inline int steer_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	const struct steer_config *cfg;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 key = 0;
	__u32 ip_len;
	__u16 port;
	int mode;

	cfg = bpf_map_lookup_elem(&steer_config, &key);
	if (!cfg)
		return XDP_PASS; /* cannot happen: array maps have every slot */

	if ((void *)(eth + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);

	/* synack serves untagged frames only. */
	if (eth->h_proto == bpf_htons(ETH_P_8021Q_TAG) ||
	    eth->h_proto == bpf_htons(ETH_P_8021AD_TAG) ||
	    eth->h_proto == bpf_htons(ETH_P_QINQ_TAG))
		return pass(CTR_PASSED_VLAN);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return handle_arp(ctx, cfg, eth + 1, data_end);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass(CTR_PASSED_NOT_IPV4);

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (ip->version != 4 || ip->ihl < 5)
		return pass(CTR_PASSED_MALFORMED);
	/* IHL is a 4-bit field, so ip_len is in [20, 60]: a bounded offset. */
	ip_len = ip->ihl * 4;
	if ((void *)ip + ip_len > data_end)
		return pass(CTR_PASSED_TRUNCATED);

	mode = owned_mode(ip->daddr);
	if (mode < 0)
		return pass(CTR_PASSED_NOT_OWNED);
	/* More-fragments set or a non-zero offset: synack does not reassemble. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return handle_fragment(cfg, ip, ip_len, mode, data_end);

	if (ip->protocol == IPPROTO_ICMP)
		return handle_icmp(ctx, cfg, ip, ip_len, mode, data_end);
	if (ip->protocol != IPPROTO_TCP)
		return pass(CTR_PASSED_NOT_TCP);

	tcp = (void *)ip + ip_len;
	if ((void *)(tcp + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);

	/* A dedicated address: synack answers every port, closed ones by RST. */
	if (mode & OWNED_STEER_ALL_TCP)
		return steer(ctx, cfg, CTR_REDIRECTED);
	port = bpf_ntohs(tcp->dest);
	if (port_is_ours(cfg, port))
		return steer(ctx, cfg, CTR_REDIRECTED);
	return pass(CTR_PASSED_PORT_NOT_OURS);
}

/* Sees tags in the frame only; any kernel, any XDP mode, BPF_PROG_TEST_RUN. */
SEC("xdp.frags")
int xdp_steer(struct xdp_md *ctx)
{
	return steer_frame(ctx);
}

/*
 * Loaded bound to the interface: also passes a frame whose tag the driver
 * stripped (a driver without the kfunc answers -EOPNOTSUPP: no tag known).
 */
SEC("xdp.frags")
int xdp_steer_dev(struct xdp_md *ctx)
{
	__be16 vlan_proto;
	__u16 vlan_tci;

	if (bpf_ksym_exists(bpf_xdp_metadata_rx_vlan_tag) &&
	    bpf_xdp_metadata_rx_vlan_tag(ctx, &vlan_proto, &vlan_tci) == 0)
		return pass(CTR_PASSED_VLAN);
	return steer_frame(ctx);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
