// SPDX-License-Identifier: Apache-2.0
// edge XDP L4 load balancer: Maglev + connection table + L2 DSR.
//
// Per packet (Ethernet / IPv4 or IPv6 / TCP or UDP):
//   1. parse to the 5-tuple; anything else goes to the kernel (XDP_PASS);
//   2. services[{vip, port, proto}] -> {index, table_size}, else XDP_PASS;
//   3. conns[5-tuple] -> backend id (established flows keep their backend
//      after it leaves the Maglev table, until its entry is cut/deleted);
//   4. else slot = flow_hash % table_size, id = maglev[index*size + slot]
//      and remember the choice in conns;
//   5. backends[id] -> {MAC, egress ifindex, source MAC}: rewrite both MACs
//      and XDP_TX (egress == ingress) or bpf_redirect_map via tx_ports.
// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent to a VIP quote
// a packet the backend sent (VIP -> client); they are forwarded to the
// backend of that flow (tuple swapped, looked up without recording it), so
// path MTU discovery works under DSR.
//
// flow_hash is SipHash-1-3 with edge's fixed FLOW_KEY over the byte string
// of l4/src/hash.rs `flow_hash` (family tag, address, big-endian port for
// source then destination, then the IP protocol number): 15 bytes for
// IPv4, 39 for IPv6. Userspace builds the Maglev table, so the proxy, this
// program and every node pick the same backend for a flow; the fixtures in
// tests/tests/l4_xdp_fixtures.rs check it packet by packet.
//
// Layouts below are mirrored byte for byte in l4/src/xdp.rs.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define F_HAS_MAC 1 /* dmac resolved from the neighbour table */
#define F_CUT 2     /* drain timeout passed: its flows are rescheduled */

#define NO_BACKEND 0xffffffffu

enum counter {
	C_PASS_OTHER = 0,   /* not for a service */
	C_PASS_UNPARSED,    /* IP fragment, IPv6 extension header, truncated */
	C_PASS_NO_BACKEND,  /* service has no backend taking new flows */
	C_PASS_UNRESOLVED,  /* backend MAC unknown or no egress port */
	C_TX,
	C_REDIRECT,
	C_CONN_HIT,         /* also counted: forwarded via the conn table */
	C_CONN_NEW,         /* also counted: new flow placed by Maglev */
	C_ICMP_TOO_BIG,     /* also counted: PMTU error sent on to its flow's backend */
	C_MAX,
};

struct svc_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, rest zero */
	__u16 port;    /* network order */
	__u8 proto;
	__u8 family;   /* 4 or 6 */
};

struct svc_val {
	__u32 index;
	__u32 table_size;
};

struct backend {
	__u8 addr[16];
	__u8 family;
	__u8 flags;
	__u8 dmac[6];
	__u8 smac[6];
	__u16 pad;
	__u32 ifindex;
};

struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport; /* network order */
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* ICMP (v4) and ICMPv6 headers up to the quoted packet: type, code,
 * checksum, then 4 bytes (unused + next-hop MTU, or the v6 MTU). Defined
 * here because <linux/icmp.h> pulls in glibc headers (LAB-FACTS §4). */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 csum;
	__u32 rest;
};

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

struct counter_val {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
	__uint(max_entries, 64);
} services SEC(".maps");

/* max_entries is set by the loader to max_services * table_size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, 1024);
} backends SEC(".maps");

/* {service index, backend id} -> {weight, state}: not read here; it lets
 * userspace read the programmed state back (Dataplane::observe). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 4096);
} svc_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, __u32);
	__uint(max_entries, 65536);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter_val);
	__uint(max_entries, C_MAX);
} stats SEC(".maps");

static __always_inline int count(__u32 c, __u64 bytes, int verdict)
{
	struct counter_val *v = bpf_map_lookup_elem(&stats, &c);
	if (v) {
		v->packets += 1;
		v->bytes += bytes;
	}
	return verdict;
}

/* ---- SipHash-1-3, as l4/src/hash.rs ---- */

#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
	do {                                                            \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                  \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                  \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)



static __always_inline __u64 load_le64(const __u8 *p)
{
	__u64 w;
	__builtin_memcpy(&w, p, 8);
	return w; /* BPF on x86 is little-endian, as the Rust side assumes */
}

/* msg is zero-padded to 40 bytes; len is 15 or 39 (always 7 tail bytes). */
static __always_inline __u64 siphash13(const __u8 *msg, int nwords, __u64 len)
{
	/* hash.rs FLOW_KEY: ("edge-flw", "5tuple\0\0") */
	__u64 k0 = 0x656467652d666c77ULL, k1 = 0x357475706c650000ULL;
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i < nwords) {
			__u64 m = load_le64(msg + 8 * i);
			v3 ^= m;
			SIPROUND;
			v0 ^= m;
		}
	}
	__u64 b = load_le64(msg + 8 * nwords) | (len << 56);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static __always_inline __u64 flow_hash(const struct flow_key *f)
{
	__u8 m[40 + 8] = {};
	int alen = f->family == 4 ? 4 : 16;
	int o = 0;
	const __u8 *sp = (const __u8 *)&f->sport;
	const __u8 *dp = (const __u8 *)&f->dport;

	m[o++] = f->family;
	if (alen == 4) {
		__builtin_memcpy(&m[o], f->src, 4);
		o += 4;
	} else {
		__builtin_memcpy(&m[o], f->src, 16);
		o += 16;
	}
	m[o++] = sp[0];
	m[o++] = sp[1];
	m[o++] = f->family;
	if (alen == 4) {
		__builtin_memcpy(&m[o], f->dst, 4);
		o += 4;
	} else {
		__builtin_memcpy(&m[o], f->dst, 16);
		o += 16;
	}
	m[o++] = dp[0];
	m[o++] = dp[1];
	m[o++] = f->proto;
	if (alen == 4)
		return siphash13(m, 1, 15);
	return siphash13(m, 4, 39);
}

SEC("xdp")
int edge_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = (__u64)(data_end - data);
	struct ethhdr *eth = data;
	struct flow_key f = {};
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return count(C_PASS_OTHER, bytes, XDP_PASS);

	int too_big = 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return count(C_PASS_OTHER, bytes, XDP_PASS);
		if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP &&
		    ip->protocol != IPPROTO_ICMP)
			return count(C_PASS_OTHER, bytes, XDP_PASS);
		/* Fragments: only the first carries ports; leave all to the kernel. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return count(C_PASS_UNPARSED, bytes, XDP_PASS);
		l4 = (void *)ip + ip->ihl * 4;
		f.family = 4;
		if (ip->protocol == IPPROTO_ICMP) {
			struct icmp_hdr *ic = l4;
			if ((void *)(ic + 1) > data_end)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			if (ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			struct iphdr *in = (void *)(ic + 1);
			if ((void *)(in + 1) > data_end || in->ihl < 5)
				return count(C_PASS_UNPARSED, bytes, XDP_PASS);
			/* Only about packets our backends sent from this VIP. */
			if ((in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
			    in->saddr != ip->daddr)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			l4 = (void *)in + in->ihl * 4;
			f.proto = in->protocol;
			/* The quoted packet went VIP -> client: swap to our direction. */
			__builtin_memcpy(f.src, &in->daddr, 4);
			__builtin_memcpy(f.dst, &in->saddr, 4);
			too_big = 1;
		} else {
			f.proto = ip->protocol;
			__builtin_memcpy(f.src, &ip->saddr, 4);
			__builtin_memcpy(f.dst, &ip->daddr, 4);
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return count(C_PASS_OTHER, bytes, XDP_PASS);
		/* Extension headers are not walked: such packets go to the kernel. */
		if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP &&
		    ip6->nexthdr != IPPROTO_ICMPV6)
			return count(C_PASS_OTHER, bytes, XDP_PASS);
		l4 = (void *)(ip6 + 1);
		f.family = 6;
		if (ip6->nexthdr == IPPROTO_ICMPV6) {
			struct icmp_hdr *ic = l4;
			if ((void *)(ic + 1) > data_end)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			if (ic->type != ICMPV6_PKT_TOOBIG)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			struct ipv6hdr *in = (void *)(ic + 1);
			if ((void *)(in + 1) > data_end)
				return count(C_PASS_UNPARSED, bytes, XDP_PASS);
			if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			const __u32 *a = (const __u32 *)&in->saddr;
			const __u32 *b = (const __u32 *)&ip6->daddr;
			if (a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] != b[3])
				return count(C_PASS_OTHER, bytes, XDP_PASS);
			l4 = (void *)(in + 1);
			f.proto = in->nexthdr;
			__builtin_memcpy(f.src, &in->daddr, 16);
			__builtin_memcpy(f.dst, &in->saddr, 16);
			too_big = 1;
		} else {
			f.proto = ip6->nexthdr;
			__builtin_memcpy(f.src, &ip6->saddr, 16);
			__builtin_memcpy(f.dst, &ip6->daddr, 16);
		}
	} else {
		return count(C_PASS_OTHER, bytes, XDP_PASS);
	}

	/* TCP and UDP both start with source and destination port. */
	__u16 *ports = l4;
	if ((void *)(ports + 2) > data_end)
		return count(C_PASS_UNPARSED, bytes, XDP_PASS);
	if (too_big) {
		f.sport = ports[1];
		f.dport = ports[0];
	} else {
		f.sport = ports[0];
		f.dport = ports[1];
	}

	struct svc_key sk = {};
	__builtin_memcpy(sk.addr, f.dst, 16);
	sk.port = f.dport;
	sk.proto = f.proto;
	sk.family = f.family;
	struct svc_val *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return count(C_PASS_OTHER, bytes, XDP_PASS);

	struct backend *be = 0;
	__u32 *known = bpf_map_lookup_elem(&conns, &f);
	if (known) {
		be = bpf_map_lookup_elem(&backends, known);
		if (be && (be->flags & F_CUT))
			be = 0;
		if (be)
			count(C_CONN_HIT, bytes, 0);
	}
	if (!be) {
		__u32 size = svc->table_size;
		if (size == 0)
			return count(C_PASS_NO_BACKEND, bytes, XDP_PASS);
		__u32 idx = svc->index * size + (__u32)(flow_hash(&f) % size);
		__u32 *id = bpf_map_lookup_elem(&maglev, &idx);
		if (!id || *id == NO_BACKEND)
			return count(C_PASS_NO_BACKEND, bytes, XDP_PASS);
		be = bpf_map_lookup_elem(&backends, id);
		if (!be || (be->flags & F_CUT))
			return count(C_PASS_NO_BACKEND, bytes, XDP_PASS);
		/* An ICMP error does not start a flow. */
		if (!too_big) {
			__u32 chosen = *id;
			bpf_map_update_elem(&conns, &f, &chosen, BPF_ANY);
			count(C_CONN_NEW, bytes, 0);
		}
	}
	if (too_big)
		count(C_ICMP_TOO_BIG, bytes, 0);

	if (!(be->flags & F_HAS_MAC))
		return count(C_PASS_UNRESOLVED, bytes, XDP_PASS);

	__u32 ifindex = be->ifindex;
	if (ifindex == ctx->ingress_ifindex) {
		__builtin_memcpy(eth->h_dest, be->dmac, 6);
		__builtin_memcpy(eth->h_source, be->smac, 6);
		return count(C_TX, bytes, XDP_TX);
	}
	/* Only ports userspace put in tx_ports (from inside this namespace)
	 * are ever used, so a frame can never leave by another device. */
	if (!bpf_map_lookup_elem(&tx_ports, &ifindex))
		return count(C_PASS_UNRESOLVED, bytes, XDP_PASS);
	__builtin_memcpy(eth->h_dest, be->dmac, 6);
	__builtin_memcpy(eth->h_source, be->smac, 6);
	return count(C_REDIRECT, bytes, bpf_redirect_map(&tx_ports, ifindex, 0));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
