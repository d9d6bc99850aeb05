/* Flow tables: the flow key, its parser, and the tuple-space-search classifier.
 *
 * vswitchd/datapath/flows.py parses the FLOW_ACTIONS X(...) lines and the MAX_FLOW_* defines of
 * this file and packs keys and rules with the layouts below: change both together.
 *
 * Per bridge there are two versions (0/1) of the rules (flow_rules[bridge, version, mask_id,
 * key & mask]). flow_masks[bridge] is the table packets use: the version, and its distinct masks
 * sorted by the highest priority of their rules, descending (no entry = empty table): one
 * lookup per packet finds both. The daemon writes the inactive version's rules, flips by
 * replacing flow_masks[bridge] with one update, then brings the other version in sync.
 */
#ifndef VSW_FLOW_H
#define VSW_FLOW_H

#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/in.h>

#define MAX_FLOW_MASKS 16
#define MAX_FLOW_ACTIONS 8
/* 2 versions x 131072 rules (all bridges). Not preallocated: memory follows the rules. */
#define MAX_FLOW_RULES 262144
#define MAX_FLOW_COUNTERS 262144
#define FLOW_KEY_WORDS 8

/* Action types (flow_action.type). 0 = none. */
#define FLOW_ACTIONS(X) \
	X(DROP, 1, "drop") \
	X(NORMAL, 2, "normal") \
	X(FLOOD, 3, "flood") \
	X(OUTPUT, 4, "output") \
	X(MOD_VLAN_VID, 5, "mod_vlan_vid") \
	X(STRIP_VLAN, 6, "strip_vlan")

#define VSW_FLOW_ACT_ENUM(name, value, text) FLOW_ACT_##name = value,
enum flow_action_type {
	FLOW_ACTIONS(VSW_FLOW_ACT_ENUM)
};
#undef VSW_FLOW_ACT_ENUM

/* Integers in host byte order; addresses as on the wire. 64 bytes, masked word by word. */
struct flow_key {
	__u32 in_port;
	__u16 dl_type;    /* EtherType after any VLAN tag */
	__u16 dl_vlan;    /* VID, 0 = untagged */
	__u8 dl_src[6];
	__u8 dl_dst[6];
	__u8 ip_src[16];  /* IPv4: the 4 address bytes, then 12 zero bytes */
	__u8 ip_dst[16];
	__u16 tp_src;     /* TCP/UDP ports, 0 otherwise */
	__u16 tp_dst;
	__u8 nw_proto;
	__u8 pad[7];
} __attribute__((aligned(8)));

struct flow_lookup_key {
	__u32 bridge;
	__u8 version;
	__u8 mask_id;
	__u16 pad;
	struct flow_key key;  /* already masked */
};

/* need_mask/need: the bits (within mask) on which all of the mask's rules agree, and their
 * value. A packet that differs there matches none of them: its hash lookup is skipped. */
struct flow_mask {
	struct flow_key mask;
	struct flow_key need_mask;
	struct flow_key need;
	__u32 max_prio;   /* highest priority of the mask's rules */
	__u32 mask_id;
};

struct flow_mask_list {
	__u32 n;
	__u32 version;  /* the version of flow_rules these masks find */
	struct flow_mask m[MAX_FLOW_MASKS];  /* sorted by max_prio, descending */
};

struct flow_action {
	__u8 type;
	__u8 final;  /* output: the last forwarding action (plain redirect, not a clone) */
	__u16 pad;
	__u32 arg;   /* output: ifindex; mod_vlan_vid: VID */
};

#define FLOW_F_FORWARDS 1  /* the list has an output, normal or flood */

struct flow_rule {
	__u32 rule_id;
	__u16 priority;
	__u8 n_actions;
	__u8 flags;
	struct flow_action actions[MAX_FLOW_ACTIONS];
};

struct flow_stats_key {
	__u32 bridge;
	__u32 rule_id;
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 last_hit_ns;
};

BPF_TABLE_PINNED("hash", __u32, struct flow_mask_list, flow_masks, MAX_BRIDGES,
		 VSW_PIN_DIR "/flow_masks");
/* The bridges that have a flow_masks entry, as bits (bridge ifindex modulo FLOW_BRIDGE_BITS):
 * a bridge without rules, the common case, skips the classifier's hash lookup for an array
 * read. A bit may stand for several bridges; the lookup then misses as before. The daemon sets
 * a bit after it writes the entry and clears it after it deletes the entry. */
#define FLOW_BRIDGE_BITS 4096
struct flow_bridge_set {
	__u64 bits[FLOW_BRIDGE_BITS / 64];
};

BPF_TABLE_PINNED("array", __u32, struct flow_bridge_set, flow_bridges, 1,
		 VSW_PIN_DIR "/flow_bridges");
BPF_TABLE_PINNED("hash", struct flow_lookup_key, struct flow_rule, flow_rules, MAX_FLOW_RULES,
		 VSW_PIN_DIR "/flow_rules", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("percpu_hash", struct flow_stats_key, struct flow_stats, flow_stats,
		 MAX_FLOW_COUNTERS, VSW_PIN_DIR "/flow_stats", BPF_F_NO_PREALLOC);

/* The masked lookup key lives here, not on the stack: the verifier tracks stack bytes, and the
 * classifier loop's exits (found at mask i or not) would each carry a different stack into the
 * rest of the pipeline, multiplying its verification (1M-insn limit). Map memory is opaque. */
BPF_TABLE("percpu_array", __u32, struct flow_lookup_key, flow_scratch, 1);

/* The largest header the parser reads at once (IPv6). */
#define PARSE_BUF_LEN 40

/* TCP/UDP ports at off. The whole TCP (20) or UDP (8) header must be in the frame. */
static __always_inline int flow_l4(struct __sk_buff *skb, __u32 off, __u8 proto, __u64 *buf,
				   struct flow_key *key)
{
	__u16 *ports;

	if (proto == IPPROTO_TCP)
		ports = header_at(skb, off, 20, buf);
	else if (proto == IPPROTO_UDP)
		ports = header_at(skb, off, 8, buf);
	else
		return 0;
	if (!ports)
		return DROP_MALFORMED;
	key->tp_src = vsw_ntohs(ports[0]);
	key->tp_dst = vsw_ntohs(ports[1]);
	return 0;
}

/* For an IP header cut short at off: DROP_MALFORMED when its version nibble says `version`
 * (or the frame ends at off), 0 (L2-only) otherwise. */
static __always_inline int header_version(struct __sk_buff *skb, __u32 off, __u64 *buf,
					  __u8 version)
{
	__u8 *first = header_at(skb, off, 1, buf);

	return !first || *first >> 4 == version ? DROP_MALFORMED : 0;
}

/* Fills the flow key from the frame. Returns 0, or DROP_MALFORMED when the frame is shorter
 * than an Ethernet header or than the L3/L4 headers it declares. An IP EtherType whose
 * version nibble is not 4/6 is treated as L2-only (nothing declared, nothing to truncate).
 * Each header is read where header_at() finds it (parse.h): one buffer serves them in turn,
 * as nothing is read from a header after the next one is fetched. */
static __always_inline int parse_flow(struct __sk_buff *skb, struct dp_ctx *ctx,
				      struct flow_key *key)
{
	__u64 buf[PARSE_BUF_LEN / 8];
	struct ethhdr *eth;
	__u32 off = sizeof(*eth);
	__u16 proto;

	__builtin_memset(key, 0, sizeof(*key));
	key->in_port = ctx->in_port;
	eth = header_at(skb, 0, sizeof(*eth), buf);
	if (!eth)
		return DROP_MALFORMED;
	__builtin_memcpy(key->dl_dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(key->dl_src, eth->h_source, ETH_ALEN);
	proto = eth->h_proto;
	if (skb->vlan_present) {  /* tag already moved out of the frame by the kernel */
		key->dl_vlan = skb->vlan_tci & VLAN_VID_MASK;
		ctx->tag_now = TAG_ORIG;
	}
	if (proto == vsw_htons(ETH_P_8021Q) || proto == vsw_htons(ETH_P_8021AD)) {  /* tag inline */
		struct vsw_vlan_hdr *vh = header_at(skb, off, sizeof(*vh), buf);

		if (!vh)
			return DROP_MALFORMED;
		if (!skb->vlan_present)
			key->dl_vlan = vsw_ntohs(vh->tci) & VLAN_VID_MASK;
		ctx->tag_now = TAG_ORIG;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	key->dl_type = vsw_ntohs(proto);
	if (proto == vsw_htons(ETH_P_IP)) {
		struct iphdr *ip;
		__u32 ihl;
		__u8 l4;

		ip = header_at(skb, off, sizeof(*ip), buf);
		if (!ip)  /* shorter than an IPv4 header: malformed if it claims to be one */
			return header_version(skb, off, buf, 4);
		if (ip->version != 4)
			return 0;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip) || off + ihl > ctx->len)
			return DROP_MALFORMED;
		key->nw_proto = l4 = ip->protocol;
		__builtin_memcpy(key->ip_src, &ip->saddr, 4);
		__builtin_memcpy(key->ip_dst, &ip->daddr, 4);
		if (ip->frag_off & vsw_htons(IPV4_FRAG_OFFSET))  /* a non-first fragment has no L4 header */
			return 0;
		return flow_l4(skb, off + ihl, l4, buf, key);
	}
	if (proto == vsw_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		__u8 l4;

		ip6 = header_at(skb, off, sizeof(*ip6), buf);
		if (!ip6)
			return header_version(skb, off, buf, 6);
		if (ip6->version != 6)
			return 0;
		key->nw_proto = l4 = ip6->nexthdr;
		__builtin_memcpy(key->ip_src, &ip6->saddr, 16);
		__builtin_memcpy(key->ip_dst, &ip6->daddr, 16);
		return flow_l4(skb, off + sizeof(*ip6), l4, buf, key);
	}
	return 0;
}

/* Tuple space search over the active version: one hash lookup per mask, in descending order
 * of the masks' highest priority, stopping as soon as no later mask can beat the best match,
 * and skipping a mask whose rules all need a value the packet does not have (need_mask).
 * NULL = table miss (or no table: the bridge's bit in flow_bridges is clear). */
static __always_inline struct flow_rule *classify(const struct dp_ctx *ctx,
						  const struct flow_key *key)
{
	struct flow_bridge_set *bs;
	struct flow_lookup_key *lk;
	struct flow_mask_list *ml;
	struct flow_rule *best = NULL, *r;
	const __u64 *kw = (const __u64 *)key;
	__u64 *lw;
	__s32 best_prio = -1;
	__u32 bridge = ctx->bridge, zero = 0, i, j;

	bs = flow_bridges.lookup(&zero);
	if (!bs || !((bs->bits[(bridge >> 6) & (FLOW_BRIDGE_BITS / 64 - 1)] >> (bridge & 63)) & 1))
		return NULL;
	ml = flow_masks.lookup(&bridge);
	if (!ml)
		return NULL;
	lk = flow_scratch.lookup(&zero);
	if (!lk)
		return NULL;
	lk->bridge = bridge;
	lk->version = ml->version & 1;
	lk->pad = 0;
	lw = (__u64 *)&lk->key;
	for (i = 0; i < MAX_FLOW_MASKS; i++) {
		const __u64 *mw, *nm, *nv;
		__u64 differs = 0;

		if (i >= ml->n)
			break;
		if ((__s32)ml->m[i].max_prio <= best_prio)
			break;  /* sorted: no later mask holds a higher priority */
		nm = (const __u64 *)&ml->m[i].need_mask;
		nv = (const __u64 *)&ml->m[i].need;
#pragma unroll
		for (j = 0; j < FLOW_KEY_WORDS; j++)
			differs |= (kw[j] & nm[j]) ^ nv[j];
		if (differs)
			continue;
		mw = (const __u64 *)&ml->m[i].mask;
		lk->mask_id = ml->m[i].mask_id;
#pragma unroll
		for (j = 0; j < FLOW_KEY_WORDS; j++)
			lw[j] = kw[j] & mw[j];
		r = flow_rules.lookup(lk);
		if (r && (__s32)r->priority > best_prio) {
			best = r;
			best_prio = r->priority;
		}
	}
	return best;
}

/* Per-CPU counters of the matched rule; never for dry runs. */
static __always_inline void count_rule(const struct dp_ctx *ctx, const struct flow_rule *rule)
{
	struct flow_stats_key sk = { .bridge = ctx->bridge, .rule_id = rule->rule_id };
	struct flow_stats *st = flow_stats.lookup(&sk);

	if (!st) {
		struct flow_stats zero = {};

		flow_stats.insert(&sk, &zero);
		st = flow_stats.lookup(&sk);
		if (!st)
			return;
	}
	st->packets++;
	st->bytes += ctx->len;
	st->last_hit_ns = bpf_ktime_get_coarse_ns();  /* idle timeouts are in seconds */
}

#endif
