/* Parsing: Ethernet, 802.1Q, IPv4/IPv6 and TCP/UDP headers into the flow key. */
#ifndef VSW_PARSE_H
#define VSW_PARSE_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/endian.h"
#include "lib/flow_key.h"

/* The rest of an inline 802.1Q/802.1ad tag, after the Ethernet header whose h_proto is its TPID
 * (the kernel's struct vlan_hdr). */
struct vsw_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

#define VLAN_VID_MASK 0x0fff   /* the VID bits of a TCI */
#define IPV4_FRAG_OFFSET 0x1fff  /* the fragment offset bits of iphdr.frag_off */

static __always_inline int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1;
}

static __always_inline int mac_is_zero(const __u8 *mac)
{
	return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

/* Where the parser reads a header of len bytes at off: in the frame itself when the linear area
 * holds it, otherwise in a copy made into buf. Frames from TX rings, GSO or virtio may keep
 * only the Ethernet header linear; pulling the rest in (bpf_skb_pull_data) reallocated the head
 * of every such frame. NULL when the frame ends before off + len. len must be a constant no
 * larger than buf. */
static __always_inline void *header_at(const struct dp_ctx *ctx, __u32 off, __u32 len, void *buf)
{
	void *p = ctx_data(ctx) + off;

	if (p + len <= ctx_data_end(ctx))
		return p;
	if (ctx_load_bytes(ctx, off, buf, len))
		return NULL;
	return buf;
}

/* header_at for a header of len bytes at off and what may follow it: when the frame must be
 * copied, up to `more` bytes are, in one load (a helper call each), as far as the frame goes.
 * *copied: how many bytes from off the copy holds (0: the frame itself is read). */
static __always_inline void *headers_at(const struct dp_ctx *ctx, __u32 off, __u32 len,
					__u32 more, void *buf, __u32 *copied)
{
	void *p = ctx_data(ctx) + off;

	*copied = 0;
	if (p + len <= ctx_data_end(ctx))
		return p;
	if (off + more <= ctx->len) {
		if (ctx_load_bytes(ctx, off, buf, more))
			return NULL;
		*copied = more;
		return buf;
	}
	if (ctx_load_bytes(ctx, off, buf, len))
		return NULL;
	*copied = len;
	return buf;
}

/* The largest header the parser reads at once (IPv6), or IPv4 and TCP copied together. */
#define PARSE_BUF_LEN 40
#define IPV4_L4_COPY 40  /* an IPv4 header without options and a TCP (or UDP) header */

/* One's complement sum helpers, on 16-bit words as loaded (byte order does not matter as long
 * as every word is loaded the same way). */
static __always_inline __u32 csum_words(const __u16 *w, __u32 n)
{
	__u32 sum = 0, i;

#pragma unroll
	for (i = 0; i < 8; i++)
		if (i < n)
			sum += w[i];
	return sum;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* At XDP: a TCP/UDP checksum that the sending stack left for the device to finish
 * (CHECKSUM_PARTIAL: the field holds the folded sum of the pseudo-header, `pseudo`). A veth
 * peer's stack sends such frames, and so does a VM with virtio checksum offload; an XDP
 * redirect of the raw frame would lose that state and the receiver drop the frame as corrupt,
 * so these go through TC (HANDOFF_CSUM), which keeps it. A complete checksum that happens to
 * equal the sum (1 in 65536) goes through TC too, unharmed. */
static __always_inline void check_csum_partial(struct dp_ctx *ctx, __u16 field, __u32 pseudo)
{
	if (ctx_is_xdp(ctx) && field && field == csum_fold(pseudo))
		ctx->csum_partial = 1;
}

/* TCP/UDP ports at off. The whole TCP (20) or UDP (8) header must be in the frame. pseudo: the
 * unfolded sum of the IP pseudo-header but for the protocol and length (check_csum_partial).
 * copied: the 20 bytes at off, already copied with the IP header (headers_at), or NULL. */
static __always_inline int parse_l4(struct dp_ctx *ctx, __u32 off, __u8 proto, __u64 *buf,
				   struct flow_key *key, __u32 pseudo, __u32 l4_len, __u16 *copied)
{
	__u16 *ports;
	__u16 field;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	if (copied)
		ports = copied;
	else if (proto == IPPROTO_TCP)
		ports = header_at(ctx, off, 20, buf);
	else
		ports = header_at(ctx, off, 8, buf);
	if (!ports)
		return -DROP_MALFORMED;
	key->tp_src = vsw_ntohs(ports[0]);
	key->tp_dst = vsw_ntohs(ports[1]);
	field = proto == IPPROTO_TCP ? ports[8] : ports[3];
	check_csum_partial(ctx, field, pseudo + vsw_htons(proto) + vsw_htons(l4_len));
	return 0;
}

/* For an IP header cut short at off: -DROP_MALFORMED when its version nibble says `version`
 * (or the frame ends at off), 0 (L2-only) otherwise. */
static __always_inline int header_version(const struct dp_ctx *ctx, __u32 off, __u64 *buf,
					  __u8 version)
{
	__u8 *first = header_at(ctx, off, 1, buf);

	return !first || *first >> 4 == version ? -DROP_MALFORMED : 0;
}

static __always_inline void parse_macs(struct flow_key *key, const struct ethhdr *eth)
{
	__builtin_memcpy(key->dl_dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(key->dl_src, eth->h_source, ETH_ALEN);
}

/* Fills the flow key from the frame. Returns 0, or -DROP_MALFORMED when the frame is shorter
 * than an Ethernet header or than the L3/L4 headers it declares. An IP EtherType whose
 * version nibble is not 4/6 is treated as L2-only (nothing declared, nothing to truncate).
 * Each header is read where header_at() finds it: one buffer serves them in turn,
 * as nothing is read from a header after the next one is fetched. */
static __always_inline int parse_flow(struct dp_ctx *ctx, struct flow_key *key)
{
	__u64 buf[PARSE_BUF_LEN / 8];
	struct ethhdr *eth;
	__u32 off = sizeof(*eth);
	__u16 proto, hw_tci = 0;
	int hw_tag;

	__builtin_memset(key, 0, sizeof(*key));
	key->in_port = ctx->in_port;
	eth = header_at(ctx, 0, sizeof(*eth), buf);
	if (!eth)
		return -DROP_MALFORMED;
	parse_macs(key, eth);
	proto = eth->h_proto;
	hw_tag = ctx_hw_vlan(ctx, &hw_tci);
	if (hw_tag) {  /* tag already moved out of the frame by the kernel */
		key->dl_vlan = hw_tci & VLAN_VID_MASK;
		ctx->tag_now = TAG_ORIG;
	}
	if (proto == vsw_htons(ETH_P_8021Q) || proto == vsw_htons(ETH_P_8021AD)) {  /* tag inline */
		struct vsw_vlan_hdr *vh = header_at(ctx, off, sizeof(*vh), buf);

		if (!vh)
			return -DROP_MALFORMED;
		if (!hw_tag)
			key->dl_vlan = vsw_ntohs(vh->tci) & VLAN_VID_MASK;
		ctx->tag_now = TAG_ORIG;
		proto = vh->proto;
		off += sizeof(*vh);
		/* An inner tag (QinQ) is payload to the switch, but a pop of the outer tag moves it
		 * into skb->vlan_tci (skb_vlan_pop), which fails on a cut one: such a runt is
		 * malformed, as a cut outer tag is, not a partial flood ending in vlan-failed. */
		if ((proto == vsw_htons(ETH_P_8021Q) || proto == vsw_htons(ETH_P_8021AD)) &&
		    off + sizeof(*vh) > ctx->len)
			return -DROP_MALFORMED;
	}
	key->dl_type = vsw_ntohs(proto);
	if (proto == vsw_htons(ETH_P_IP)) {
		struct iphdr *ip;
		__u32 ihl, copied;
		__u8 l4;

		ip = headers_at(ctx, off, sizeof(*ip), IPV4_L4_COPY, buf, &copied);
		if (!ip)  /* shorter than an IPv4 header: malformed if it claims to be one */
			return header_version(ctx, off, buf, 4);
		if (ip->version != 4)
			return 0;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip) || off + ihl > ctx->len)
			return -DROP_MALFORMED;
		key->nw_proto = l4 = ip->protocol;
		__builtin_memcpy(key->ip_src, &ip->saddr, 4);
		__builtin_memcpy(key->ip_dst, &ip->daddr, 4);
		/* a non-first fragment has no L4 header */
		if (ip->frag_off & vsw_htons(IPV4_FRAG_OFFSET))
			return 0;
		return parse_l4(ctx, off + ihl, l4, buf, key,
				ctx_is_xdp(ctx) ? csum_words((__u16 *)&ip->saddr, 4) : 0,
				vsw_ntohs(ip->tot_len) - ihl,
				copied == IPV4_L4_COPY && ihl == sizeof(*ip) ?
				(__u16 *)((void *)buf + sizeof(*ip)) : NULL);
	}
	if (proto == vsw_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		__u8 l4;

		ip6 = header_at(ctx, off, sizeof(*ip6), buf);
		if (!ip6)
			return header_version(ctx, off, buf, 6);
		if (ip6->version != 6)
			return 0;
		key->nw_proto = l4 = ip6->nexthdr;
		__builtin_memcpy(key->ip_src, &ip6->saddr, 16);
		__builtin_memcpy(key->ip_dst, &ip6->daddr, 16);
		return parse_l4(ctx, off + sizeof(*ip6), l4, buf, key,
				ctx_is_xdp(ctx) ? csum_words((__u16 *)&ip6->saddr, 8) +
						  csum_words((__u16 *)&ip6->daddr, 8) : 0,
				vsw_ntohs(ip6->payload_len), NULL);
	}
	return 0;
}

/* The key's MACs read from the frame again, after a clone. The key is per CPU
 * (flow_key_scratch, flow.h), and a clone into a VXLAN port whose underlay leaves through the
 * bridge device runs tc_egress at once, nested on this CPU, which parses its own frame into it.
 * After its clones the pipeline reads only the MACs (the FDB, learning); tag changes leave
 * them where they were. */
static __always_inline void parse_macs_again(const struct dp_ctx *ctx, struct flow_key *key)
{
	__u64 buf[PARSE_BUF_LEN / 8];
	struct ethhdr *eth = header_at(ctx, 0, sizeof(*eth), buf);

	if (eth)
		parse_macs(key, eth);
}

#endif
