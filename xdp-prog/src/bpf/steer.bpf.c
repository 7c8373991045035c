// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * synack's XDP steering program.
 *
 * For every frame received on the interface it decides whether the frame
 * belongs to synack (then it is redirected into the AF_XDP socket registered
 * for the receive queue it arrived on) or to the kernel (XDP_PASS). A frame
 * is synack's when it is
 *   - IPv4/TCP, not a fragment, to an address in `owned_addrs`, with a
 *     destination port that is a listening port (`listen_ports`) or lies in
 *     the local port range synack opens connections from (`steer_config`);
 *   - ARP whose target protocol address is owned, when steer_arp is set
 *     (synack's address is not assigned to the kernel, so nobody else would
 *     answer or receive ARP for it);
 *   - an ICMP echo request to an owned address, when steer_icmp is set.
 * Everything else, including anything this parser does not understand,
 * passes to the kernel untouched: the program must never break the host's
 * own traffic (SSH, ARP for kernel addresses, IPv6, ...).
 *
 * Every path through the program increments exactly one counter, so the
 * counters explain every frame and the tests can read the decision from them.
 *
 * The Rust loader uses `struct steer_config` and `enum steer_counter` through
 * the types libbpf-cargo generates from this object's BTF (src/counters.rs and
 * src/program.rs check them at compile time).
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
	/* 1: steer ARP whose target address is owned. */
	__u8 steer_arp;
	/* 1: steer ICMP echo requests to owned addresses. */
	__u8 steer_icmp;
};

/* Indexes into the per-CPU `counters` map. Append only; mirrored in Rust. */
enum steer_counter {
	CTR_REDIRECTED = 0,	/* TCP frame redirected to the socket */
	CTR_ARP_REDIRECTED,	/* ARP frame redirected (steer_arp) */
	CTR_ICMP_REDIRECTED,	/* ICMP echo request redirected (steer_icmp) */
	CTR_REDIRECT_FAILED,	/* ours, but no socket on this queue: passed */
	CTR_DROPPED_TEST_KNOB,	/* ours, dropped by drop_permille */
	CTR_PASSED_NOT_IPV4,	/* neither IPv4 nor ARP (IPv6, VLAN, ...) */
	CTR_PASSED_ARP,		/* ARP not steered */
	CTR_PASSED_MALFORMED,	/* IPv4 with version != 4 or IHL < 5 */
	CTR_PASSED_TRUNCATED,	/* frame shorter than the headers it announces */
	CTR_PASSED_NOT_OWNED,	/* destination address not owned */
	CTR_PASSED_FRAGMENT,	/* IPv4 fragment (synack does not reassemble) */
	CTR_PASSED_NOT_TCP,	/* owned address, other protocol */
	CTR_PASSED_PORT_NOT_OURS, /* owned address, TCP, port not synack's */
	CTR_MAX,
};

/*
 * Never read by the program: it puts `enum steer_counter` into the object's
 * BTF, from which libbpf-cargo generates the Rust mirror (skel::types) that
 * the loader checks its counter list against at compile time.
 */
const volatile enum steer_counter steer_counter_max = CTR_MAX;

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
	__type(value, __u8);
} owned_addrs SEC(".maps");

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

static __always_inline int is_owned(__be32 addr)
{
	return bpf_map_lookup_elem(&owned_addrs, &addr) != NULL;
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

static __always_inline int handle_arp(struct xdp_md *ctx,
				      const struct steer_config *cfg,
				      void *l3, void *data_end)
{
	struct arp_eth_ipv4 *arp = l3;

	if (!cfg->steer_arp)
		return pass(CTR_PASSED_ARP);
	if ((void *)(arp + 1) > data_end)
		return pass(CTR_PASSED_TRUNCATED);
	if (arp->hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp->pro != bpf_htons(ETH_P_IP) || arp->hln != ETH_ALEN ||
	    arp->pln != 4)
		return pass(CTR_PASSED_ARP);
	if (!is_owned(arp->tpa))
		return pass(CTR_PASSED_NOT_OWNED);
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

	if (!is_owned(ip->daddr))
		return pass(CTR_PASSED_NOT_OWNED);
	/* More-fragments set or a non-zero offset: synack does not reassemble. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return pass(CTR_PASSED_FRAGMENT);

	if (ip->protocol == IPPROTO_ICMP && cfg->steer_icmp) {
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

	port = bpf_ntohs(tcp->dest);
	if (cfg->local_port_hi != 0 && port >= cfg->local_port_lo &&
	    port <= cfg->local_port_hi)
		return steer(ctx, cfg, CTR_REDIRECTED);
	if (is_listening(port))
		return steer(ctx, cfg, CTR_REDIRECTED);
	return pass(CTR_PASSED_PORT_NOT_OURS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
