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
 *     IPv4/TCP, not a fragment, whose destination port is a listening port
 *     (`listen_ports`) or lies in the local port range synack opens
 *     connections from (`steer_config`). ARP, ICMP and every other port pass
 *     to the kernel, which answers them.
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
	CTR_PASSED_NOT_IPV4,	/* neither IPv4 nor ARP (IPv6, VLAN, ...) */
	CTR_PASSED_ARP,		/* ARP that is not Ethernet/IPv4 */
	CTR_PASSED_MALFORMED,	/* IPv4 with version != 4 or IHL < 5 */
	CTR_PASSED_TRUNCATED,	/* frame shorter than the headers it announces */
	CTR_PASSED_NOT_OWNED,	/* destination address not owned */
	CTR_PASSED_FRAGMENT,	/* IPv4 fragment (synack does not reassemble) */
	CTR_PASSED_NOT_TCP,	/* owned address, other protocol */
	CTR_PASSED_PORT_NOT_OURS, /* owned address, TCP, port not synack's */
	CTR_PASSED_ARP_SHARED,	/* ARP for a shared address: the kernel's */
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

SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	const struct steer_config *cfg;
	struct iphdr *ip;
	struct tcphdr *tcp;
	struct icmp_echo *icmp;
	__u32 key = 0;
	__u32 ip_len;
	__u16 port;
	int mode;

	cfg = bpf_map_lookup_elem(&steer_config, &key);
	if (!cfg)
		return XDP_PASS; /* cannot happen: array maps have every slot */

	if ((void *)(eth + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);

	/* A VLAN tag (0x8100) lands here too: tagged traffic is not ours. */
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
		return pass(CTR_PASSED_FRAGMENT);

	if (ip->protocol == IPPROTO_ICMP && (mode & OWNED_STEER_ICMP_ECHO)) {
		icmp = (void *)ip + ip_len;
		if ((void *)(icmp + 1) > data_end)
			return pass(CTR_PASSED_TRUNCATED);
		if (icmp->type != ICMP_ECHO)
			return pass(CTR_PASSED_NOT_TCP);
		return steer(ctx, cfg, CTR_ICMP_REDIRECTED);
	}
	if (ip->protocol != IPPROTO_TCP)
		return pass(CTR_PASSED_NOT_TCP);

	tcp = (void *)ip + ip_len;
	if ((void *)(tcp + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);

	/* A dedicated address: synack answers every port, closed ones by RST. */
	if (mode & OWNED_STEER_ALL_TCP)
		return steer(ctx, cfg, CTR_REDIRECTED);
	port = bpf_ntohs(tcp->dest);
	if (cfg->local_port_hi != 0 && port >= cfg->local_port_lo &&
	    port <= cfg->local_port_hi)
		return steer(ctx, cfg, CTR_REDIRECTED);
	if (is_listening(port))
		return steer(ctx, cfg, CTR_REDIRECTED);
	return pass(CTR_PASSED_PORT_NOT_OURS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
