// SPDX-License-Identifier: GPL-2.0
/* vswitchd datapath: flow tables and L2 "normal" switching at TC.
 *
 * Compiled once per daemon by vswitchd/datapath/loader.py (bcc). The loader defines VSW_PIN_DIR
 * and inlines the quoted "lib/..." includes (bcc only rewrites map calls in its main file).
 * Every setting lives in maps; nothing here depends on the bridges or ports configured.
 *
 *   tc_ingress  TC ingress of every port
 *   tc_egress   TC egress of the bridge device (the host's own frames)
 *   tc_flood    tail-called by both to flood (flood_progs[0])
 *
 * Attached with TCX links, or clsact + cls_bpf on kernels without TCX
 * (vswitchd/datapath/tcx.py).
 *
 * Defining VSW_NO_TRACE (Datapath(trace=False), bench/trace_cost.py only) builds it without
 * the watch stage (lib/watch.h).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#include "lib/actions.h"
#include "lib/common.h"
#include "lib/counters.h"
#include "lib/drop_reasons.h"
#include "lib/flow.h"
#include "lib/forward.h"
#include "lib/parse.h"
#include "lib/ports.h"
#include "lib/result.h"
#include "lib/vlan.h"
#include "lib/watch.h"

/* port lookup -> parse -> count rx -> classify -> miss: normal / hit: the rule's actions.
 * Every decision goes through drop(), forward() or flood() (forward.h), which record it in ctx
 * for the one watch event that pipeline() emits after it. */
static __always_inline int pipeline_decide(struct dp_ctx *ctx)
{
	struct __sk_buff *skb = ctx->skb;
	struct dp_result *res = result_get(ctx);
	struct flow_rule *rule;
	struct port_info *in, in_info;
	struct flow_key key;
	int ret, err, next = FLOW_NEXT_NORMAL;

	if (res) {
		res->verdict = 0;
		res->drop_reason = DROP_NONE;
		res->out_ifindex = 0;
		res->fdb_hit = 0;
		res->n_flood = 0;
		res->rule_id = 0;
		res->priority = 0;
		res->n_outputs = 0;
		res->vlan = 0;
		res->stages = 0;
	}

	in = port_lookup(ctx->in_port);
	if (!in) {  /* not ours: the kernel handles it, nothing counted, no event */
		result_set(ctx, VERDICT_PASS, DROP_NONE, 0);
		return TC_ACT_OK;
	}
	in_info = *in;  /* the cache entry may go to the out port (port_lookup) */
	ctx->bridge = in_info.bridge;
	ctx->in_slot = in_info.slot;

	err = parse_flow(skb, ctx, &key);
	watch_begin(ctx, &key);
	if (res) {  /* the trace report: what was parsed, also of a malformed frame */
		__builtin_memcpy(&res->key, &key, sizeof(key));
		res->in_tag = tag_enc(ctx->tag_now != TAG_NONE, key.dl_vlan);
		res->stages = err ? STAGE_PORT : STAGE_PORT | STAGE_PARSE;
	}
	if (err)
		return drop(ctx, DROP_MALFORMED);
	ctx->tag_vid = key.dl_vlan;  /* tag_now set by parse_flow */
	ctx->flow_tag = ctx->tag_now;
	ctx->flow_vid = key.dl_vlan;
	if (!ctx->dry_run)
		count_rx(ctx);

	if (mac_is_multicast(key.dl_src))
		return drop(ctx, DROP_INVALID_SRC_MAC);

	rule = classify(ctx, &key);
	if (res)
		res->stages |= STAGE_FLOW;
	if (rule) {
		__u32 out = 0, ref = 0;

		if (res) {
			res->rule_id = rule->rule_id;
			res->priority = rule->priority;
		} else {
			count_rule(ctx, rule);
		}
		watch_rule(ctx, rule->rule_id);
		next = flow_actions(ctx, rule, &out, &ref);
		if (next == FLOW_NEXT_OUTPUT)
			return forward(ctx, out, ref);
		if (next == FLOW_NEXT_CLONED) {
			ctx->verdict = VERDICT_FORWARD;
			result_set(ctx, VERDICT_FORWARD, DROP_NONE, 0);
			return TC_ACT_SHOT;
		}
		if (next == FLOW_NEXT_DROP)
			return drop(ctx, DROP_FLOW_DROP);
		if (next == FLOW_NEXT_VLAN_FAILED)
			return drop(ctx, DROP_VLAN_FAILED);
	}
	/* normal or flood: switching in the frame's VLAN (vlan.h) */
	if (vlan_ingress(ctx, &in_info))
		return drop(ctx, DROP_VLAN_MISMATCH);
	if (res) {
		res->vlan = ctx->vlan;
		res->stages |= STAGE_VLAN;
	}
	if (next == FLOW_NEXT_FLOOD)
		return flood(ctx);
	ret = normal(ctx, &key);
	if (ret >= 0)
		return ret;
	return flood(ctx);
}

static __always_inline int pipeline(struct __sk_buff *skb, __u8 ingress)
{
	struct dp_ctx ctx = {
		.skb = skb,
		.in_port = skb->ifindex,
		.in_slot = NO_SLOT,
		.len = skb->len,
		.vlan = 0,  /* set by vlan_ingress() */
		.ingress = ingress,
		.dry_run = is_dry_run(skb),
	};
	int ret;

	watch_cb_set(&ctx, 0);  /* no watcher until watch_begin() says so */
	ret = pipeline_decide(&ctx);
	watch_emit(&ctx);  /* a flood's event is emitted by tc_flood */
	return ret;
}

/* Tail-called by flood(): the flood of the packet in skb. */
int tc_flood(struct __sk_buff *skb)
{
	struct dp_ctx ctx = {
		.skb = skb,
		.in_port = skb->ifindex,
		.in_slot = NO_SLOT,
		.len = skb->len,
		.ingress = skb->cb[2] & FLOOD_CB_INGRESS ? 1 : 0,
		.no_peer = skb->cb[2] & FLOOD_CB_NO_PEER ? 1 : 0,
		.vlan = skb->cb[3] & 0xfff,  /* FLOOD_CB_VLAN */
		.tag_vid = (skb->cb[3] >> 12) & 0xfff,
		.tag_now = (skb->cb[3] >> 24) & 3,
		.dry_run = is_dry_run(skb),
	};
	struct port_info *in = port_lookup(ctx.in_port);
	int ret;

	if (!in) {
		ret = drop(&ctx, DROP_NO_FLOOD_TARGET);
	} else {
		ctx.bridge = in->bridge;
		ctx.in_slot = in->slot;
		ret = flood_run(&ctx);
	}
	watch_emit(&ctx);  /* the packet's event, started by the pipeline (watch_cb) */
	return ret;
}

int tc_ingress(struct __sk_buff *skb)
{
	return pipeline(skb, 1);
}

int tc_egress(struct __sk_buff *skb)
{
	return pipeline(skb, 0);
}
