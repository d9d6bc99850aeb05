/* Flow tables: rules, their maps, and the tuple-space-search classifier over the flow key
 * (flow_key.h, filled by parse_flow in parse.h).
 *
 * vswitchd/datapath/constants.py parses the FLOW_ACTIONS X(...) lines and the MAX_FLOW_* defines
 * of this file; vswitchd/datapath/flows.py packs keys and rules with the layouts below and in
 * flow_key.h: change both together.
 *
 * Per bridge there are two versions (0/1) of the rules (flow_rules[bridge, version, mask_id,
 * key & mask]). flow_masks[bridge] is the table packets use: the version, and its distinct masks
 * sorted by the highest priority of their rules, descending (no entry = empty table): one
 * lookup per packet finds both. The daemon writes the inactive version's rules, flips by
 * replacing flow_masks[bridge] with one update, then brings the other version in sync.
 */
#ifndef VSW_FLOW_H
#define VSW_FLOW_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/flow_key.h"

#define MAX_FLOW_MASKS 16
#define MAX_FLOW_ACTIONS 8
/* 2 versions x 131072 rules (all bridges). Not preallocated: memory follows the rules. */
#define MAX_FLOW_RULES 262144
#define MAX_FLOW_COUNTERS 262144

/* Action types (flow_action.type). 0 = none. */
#define FLOW_ACTIONS(X) \
	X(DROP, 1, "drop") \
	X(NORMAL, 2, "normal") \
	X(FLOOD, 3, "flood") \
	X(OUTPUT, 4, "output") \
	X(MOD_VLAN_VID, 5, "mod_vlan_vid") \
	X(STRIP_VLAN, 6, "strip_vlan") \
	X(CONTROLLER, 7, "controller")

#define VSW_FLOW_ACT_ENUM(name, value, text) FLOW_ACT_##name = value,
enum flow_action_type {
	FLOW_ACTIONS(VSW_FLOW_ACT_ENUM)
};
#undef VSW_FLOW_ACT_ENUM

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
	__u32 arg;   /* output: ifindex; mod_vlan_vid: VID; controller: max_len */
};

#define FLOW_F_FORWARDS 1  /* the list has an output, normal or flood */
/* The list has a controller action, put first by the loader (actions[0]): the packet-in is
 * sent when the rule matches, before any action changes the frame (packet_in.h). */
#define FLOW_F_CONTROLLER 2

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

/* The packet's flow key (parse_flow fills it) lives in map memory too, for the same reason, and
 * because clang splits a key on the stack into its bytes (each MAC and IP address byte a
 * value of its own, spilled and put together again for the word-wise classifier and watch
 * filter): about 5 ns a packet. One entry per CPU. A program nested on the CPU overwrites it:
 * a clone into a VXLAN port whose underlay leaves through the bridge device runs tc_egress at
 * once, so flow_actions reads the MACs again after each clone (parse_macs_again, parse.h). */
BPF_TABLE("percpu_array", __u32, struct flow_key, flow_key_scratch_map, 1);

static __always_inline struct flow_key *flow_key_scratch(void)
{
	__u32 zero = 0;

	return flow_key_scratch_map.lookup(&zero);
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

/* Per-CPU counters of a rule; never for dry runs. */
static __always_inline void count_rule_now(const struct dp_ctx *ctx, __u32 rule_id)
{
	struct flow_stats_key sk = { .bridge = ctx->bridge, .rule_id = rule_id };
	struct flow_stats *st;

	if (ctx->dry_run)
		return;
	st = flow_stats.lookup(&sk);
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

/* The matched rule's counters. At XDP they wait for finish(), like the rx count (counters.h). */
static __always_inline void count_rule(struct dp_ctx *ctx, const struct flow_rule *rule)
{
	ctx->rule_id = rule->rule_id;
	if (ctx_is_xdp(ctx))
		return;
	count_rule_now(ctx, rule->rule_id);
}

#endif
