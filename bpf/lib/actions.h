/* Flow actions: the "normal" stage (learn + forward/flood) and the execution of a rule's action
 * list. Needs forward.h and flow.h. */
#ifndef VSW_ACTIONS_H
#define VSW_ACTIONS_H

/* L2 switching: learn the source, forward known unicast. Returns -1 when the frame is to be
 * flooded (the caller floods: one flood() call site keeps the verifier's work linear). */
static __always_inline int normal(const struct dp_ctx *ctx, const struct flow_key *key)
{
	struct dp_result *res = result_get(ctx);
	struct fdb_entry *entry;
	struct port_info *out;
	__u32 out_port;

	if (!ctx->dry_run && !mac_is_zero(key->dl_src))
		fdb_learn(ctx, key->dl_src);
	if (mac_is_multicast(key->dl_dst))
		return -1;
	entry = fdb_lookup(ctx->bridge, ctx->vlan, key->dl_dst);
	if (!entry)
		return -1;
	out_port = entry->ifindex;
	if (res)
		res->fdb_hit = 1;
	if (out_port == ctx->in_port)
		return drop(ctx, DROP_SAME_PORT);
	out = port_lookup(out_port);
	if (!out || out->bridge != ctx->bridge)
		return drop(ctx, DROP_NO_FDB_PORT);
	return forward(ctx, out_port, out->kind);
}

#define VLAN_VID_MASK 0x0fff
#define ETH_P_8021Q_HOST 0x8100

/* Is there a VLAN tag inline in the frame (not moved to skb->vlan_tci)? */
static __always_inline int vlan_inline(struct __sk_buff *skb)
{
	__u16 proto = 0;

	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return 0;
	return proto == ETH_P_8021Q_BE || proto == ETH_P_8021AD_BE;
}

/* mod_vlan_vid: rewrite the VID of the outer tag (keeping PCP/DEI), or push a new 802.1Q tag.
 * A tag the kernel holds in skb->vlan_tci stays there (pop + push); an inline tag is rewritten
 * in place; an untagged frame gets an inline tag (visible in the frame on every path, and
 * bpf_skb_change_head works for any EtherType, unlike bpf_skb_adjust_room). */
static __always_inline int vlan_set(struct dp_ctx *ctx, __u16 vid)
{
	struct __sk_buff *skb = ctx->skb;
	__u8 macs[12];
	__u16 tag[2];
	__u16 tci;

	vid &= VLAN_VID_MASK;
	if (skb->vlan_present) {
		__u16 proto = skb->vlan_proto;

		tci = (skb->vlan_tci & ~VLAN_VID_MASK) | vid;
		if (bpf_skb_vlan_pop(skb))
			return -1;
		return bpf_skb_vlan_push(skb, proto, tci) ? -1 : 0;
	}
	if (vlan_inline(skb)) {
		if (bpf_skb_load_bytes(skb, 14, &tci, 2))
			return -1;
		tci = (tci & vsw_ntohs(~VLAN_VID_MASK & 0xffff)) | vsw_ntohs(vid);
		return bpf_skb_store_bytes(skb, 14, &tci, 2, 0) ? -1 : 0;
	}
	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return -1;
	if (bpf_skb_change_head(skb, 4, 0))
		return -1;
	ctx->no_peer = 1;
	tag[0] = vsw_ntohs(ETH_P_8021Q_HOST);
	tag[1] = vsw_ntohs(vid);
	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0))
		return -1;
	return bpf_skb_store_bytes(skb, 12, tag, sizeof(tag), 0) ? -1 : 0;
}

/* strip_vlan: remove the outer tag, wherever it is (bpf_skb_vlan_pop handles both). */
static __always_inline int vlan_strip(struct dp_ctx *ctx)
{
	struct __sk_buff *skb = ctx->skb;

	if (!skb->vlan_present && !vlan_inline(skb))
		return 0;
	return bpf_skb_vlan_pop(skb) ? -1 : 0;
}

/* An output target: a member of the packet's bridge other than in_port (OpenFlow never sends a
 * frame back out of its in_port by output:PORT). Fills *kind. */
static __always_inline int output_target(const struct dp_ctx *ctx, __u32 ifindex, __u8 *kind)
{
	struct port_info *pi;

	if (ifindex == ctx->in_port)
		return 0;
	pi = port_lookup(ifindex);
	if (!pi || pi->bridge != ctx->bridge)
		return 0;
	*kind = pi->kind;
	return 1;
}

/* What flow_actions() leaves to its caller. */
enum flow_next {
	FLOW_NEXT_NORMAL = 1,  /* run "normal" */
	FLOW_NEXT_FLOOD,       /* flood */
	FLOW_NEXT_OUTPUT,      /* plain redirect to *out (the final output) */
	FLOW_NEXT_CLONED,      /* copies went out, nothing left for the original: consume it */
	FLOW_NEXT_DROP,        /* no forwarding action: drop, flow-drop */
	FLOW_NEXT_VLAN_FAILED, /* a VLAN helper failed: drop, vlan-failed */
};

/* Runs the matched rule's actions in order: clones for every output but the final one, VLAN
 * changes in place. The loader marks the last output action `final` when no normal/flood follows
 * it (and rejects normal/flood followed by a VLAN action), so normal, flood and the final output
 * end the list; the caller executes them (no flood loop nested in this loop for the verifier). */
static __always_inline int flow_actions(struct dp_ctx *ctx, const struct flow_rule *rule,
					__u32 *out, __u8 *out_kind)
{
	struct dp_result *res = result_get(ctx);
	__u32 i, sent = 0;

	for (i = 0; i < MAX_FLOW_ACTIONS; i++) {
		const struct flow_action *a;
		__u8 kind = 0;

		if (i >= rule->n_actions)
			break;
		a = &rule->actions[i];
		if (a->type == FLOW_ACT_OUTPUT) {
			if (!output_target(ctx, a->arg, &kind))
				continue;
			sent = 1;
			if (res) {
				res->outputs[res->n_outputs & (MAX_FLOW_ACTIONS - 1)] = a->arg;
				res->n_outputs++;
			}
			if (a->final) {
				*out = a->arg;
				*out_kind = kind;
				return FLOW_NEXT_OUTPUT;
			}
			if (!res)
				flood_clone(ctx, a->arg, kind);
		} else if (a->type == FLOW_ACT_NORMAL) {
			return FLOW_NEXT_NORMAL;
		} else if (a->type == FLOW_ACT_FLOOD) {
			return FLOW_NEXT_FLOOD;
		} else if (a->type == FLOW_ACT_MOD_VLAN_VID) {
			if (!ctx->dry_run && vlan_set(ctx, a->arg))
				return FLOW_NEXT_VLAN_FAILED;
		} else if (a->type == FLOW_ACT_STRIP_VLAN) {
			if (!ctx->dry_run && vlan_strip(ctx))
				return FLOW_NEXT_VLAN_FAILED;
		}
	}
	return sent ? FLOW_NEXT_CLONED : FLOW_NEXT_DROP;
}

#endif
