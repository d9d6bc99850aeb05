/* Flow actions: the execution of a rule's action list, and the "normal" stage (learn + forward
 * or flood). Both return what the pipeline does next (enum flow_next) or a drop. */
#ifndef VSW_ACTIONS_H
#define VSW_ACTIONS_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/fdb.h"
#include "lib/flow.h"
#include "lib/forward.h"
#include "lib/parse.h"
#include "lib/ports.h"
#include "lib/result.h"
#include "lib/vlan.h"
#include "lib/watch.h"

/* What flow_actions() and normal() leave to the pipeline (or they return a drop). */
enum flow_next {
	FLOW_NEXT_NORMAL = 1,  /* run "normal" */
	FLOW_NEXT_FLOOD,       /* flood */
	FLOW_NEXT_OUTPUT,      /* plain redirect to *out (the final output) */
	FLOW_NEXT_CLONED,      /* copies went out, nothing left for the original: consume it */
	FLOW_NEXT_CONTROLLER,  /* only the controller got it (packet_in.h): consume it */
};

/* L2 switching in the frame's VLAN (ctx->vlan, set by vlan_ingress): learn the source; known
 * unicast goes to its port with the tag state that port needs. Returns FLOW_NEXT_OUTPUT (*out,
 * *out_ref: the port), FLOW_NEXT_FLOOD, or a drop. The caller forwards or floods: one call site
 * of each keeps the verifier's work linear. */
static __always_inline int normal(struct dp_ctx *ctx, const struct flow_key *key, __u32 *out,
				  __u32 *out_ref)
{
	struct fdb_cache_slot *slot;
	struct port_info *pi;
	__u32 port;
	int want, ret;

	result_stage(ctx, STAGE_L2);
	if (!mac_is_zero(key->dl_src)) {
		ret = fdb_learn(ctx, key->dl_src);
		if (IS_DROP(ret))
			return ret;
	}
	if (mac_is_multicast(key->dl_dst))
		return FLOW_NEXT_FLOOD;
	port = fdb_port_slot(ctx->bridge, ctx->vlan, key->dl_dst, &ctx->tun, &slot);
	if (!port && ctx->vlan)
		port = fdb_host_port(ctx->bridge, key->dl_dst);
	if (!port)
		return FLOW_NEXT_FLOOD;
	result_fdb_hit(ctx, port);
	if (port == ctx->in_port)
		return -DROP_SAME_PORT;
	pi = fdb_slot_port(slot, port);
	if (!pi || pi->bridge != ctx->bridge)
		return -DROP_NO_FDB_PORT;
	want = vlan_egress(ctx, port, pi);
	if (want == WANT_NONE)  /* e.g. a static entry to a port outside the VLAN */
		return -DROP_VLAN_MISMATCH;
	*out_ref = PORT_REF(pi);
	ret = XDP_SENDABLE(ctx, *out_ref, TARGET);
	if (ret)
		return ret;
	result_out_tag(ctx, want);
	ret = vlan_apply_want(ctx, want);
	if (ret)
		return ret;
	watch_output(ctx, port);
	*out = port;
	return FLOW_NEXT_OUTPUT;
}

/* An output target: a member of the packet's bridge other than in_port (OpenFlow never sends a
 * frame back out of its in_port by output:PORT). Fills *ref (PORT_REF). */
static __always_inline int output_target(const struct dp_ctx *ctx, __u32 ifindex, __u32 *ref)
{
	struct port_info *pi;

	if (ifindex == ctx->in_port)
		return 0;
	pi = port_lookup(ifindex);
	if (!pi || pi->bridge != ctx->bridge)
		return 0;
	*ref = PORT_REF(pi);
	return 1;
}

/* Runs the matched rule's actions in order: clones for every output but the final one; VLAN
 * actions only record the tag wanted, which each output applies before it sends (vlan.h). The
 * loader marks the last output action `final` when no normal/flood follows it (and rejects
 * normal/flood followed by a VLAN action), so normal, flood and the final output end the list;
 * an output to a tunnel port goes to the VTEP its destination MAC is behind (the FDB);
 * the caller executes them (no flood loop nested in this loop for the verifier). The controller
 * action (actions[0]) was done when the rule matched (packet_in.h): nothing to do here. Returns
 * FLOW_NEXT_* (FLOW_NEXT_OUTPUT: *out, *out_ref; FLOW_NEXT_CONTROLLER: the controller action
 * alone), or a drop (flow-drop: no output at all). */
static __always_inline int flow_actions(struct dp_ctx *ctx, const struct flow_rule *rule,
					struct flow_key *key, __u32 *out, __u32 *out_ref)
{
	__u32 i, sent = 0;
	int ret;

	for (i = 0; i < MAX_FLOW_ACTIONS; i++) {
		const struct flow_action *a;
		__u32 ref = 0;

		if (i >= rule->n_actions)
			break;
		a = &rule->actions[i];
		if (a->type == FLOW_ACT_OUTPUT) {
			if (!output_target(ctx, a->arg, &ref))
				continue;
			if (ctx_is_xdp(ctx) && !a->final)  /* a copy: XDP has no clone */
				return HANDOFF(CLONE);
			ret = XDP_SENDABLE(ctx, ref, TARGET);
			if (ret)
				return ret;
			if (!ctx_is_xdp(ctx) && PORT_REF_KIND(ref) == PORT_KIND_TUNNEL)  /* its VTEP */
				fdb_port(ctx->bridge, ctx->vlan, key->dl_dst, &ctx->tun);
			sent = 1;
			result_output(ctx, a->arg, a->final);
			watch_output(ctx, a->arg);
			ret = vlan_apply(ctx, ctx->flow_tag, ctx->flow_vid);
			if (ret)
				return ret;
			if (a->final) {
				*out = a->arg;
				*out_ref = ref;
				return FLOW_NEXT_OUTPUT;
			}
			if (!ctx->dry_run) {
				flood_clone(ctx, a->arg, ref);
				parse_macs_again(ctx, key);
			}
		} else if (a->type == FLOW_ACT_NORMAL) {
			return FLOW_NEXT_NORMAL;
		} else if (a->type == FLOW_ACT_FLOOD) {
			return FLOW_NEXT_FLOOD;
		} else if (a->type == FLOW_ACT_MOD_VLAN_VID) {  /* lazy: vlan.h */
			ctx->flow_tag = 1;
			ctx->flow_vid = a->arg & VLAN_VID_MASK;
			ctx->vlan = ctx->flow_vid;
			ctx->vlan_forced = 1;
		} else if (a->type == FLOW_ACT_STRIP_VLAN) {
			ctx->flow_tag = 0;
			ctx->flow_vid = 0;
			ctx->vlan_forced = 0;
		}
	}
	if (sent)
		return FLOW_NEXT_CLONED;
	/* no forwarding action */
	return rule->flags & FLOW_F_CONTROLLER ? FLOW_NEXT_CONTROLLER : -DROP_FLOW_DROP;
}

#endif
