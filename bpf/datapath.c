// SPDX-License-Identifier: GPL-2.0
/* vswitchd datapath: flow tables and L2 "normal" switching at TC and XDP.
 *
 * Compiled once per daemon by vswitchd/datapath/build.py (bcc). The loader defines VSW_PIN_DIR
 * and inlines the quoted "lib/..." includes (bcc only rewrites map calls in its main file).
 * Every setting lives in maps; nothing here depends on the bridges or ports configured.
 *
 *   tc_ingress   TC ingress of every port
 *   tc_egress    TC egress of the bridge device (the host's own frames)
 *   tc_flood     tail-called by both to flood (flood_progs[0])
 *   tc_vteps     tail-called by tc_flood: a flood's copies to the remote VTEPs of the bridge's
 *                tunnel port (vtep_progs[0], lib/tunnel.h)
 *   xdp_ingress  XDP of the tap and system ports: the same pipeline (lib/ctx.h: one source, two
 *                hooks); what it cannot finish goes on to tc_ingress (a handoff)
 *   xdp_flood    tail-called by xdp_ingress for a dry run's flood report (xdp_flood_progs[0])
 *   xdp_egress   the devmap program of every XDP flood copy (lib/xdp.h): its tag, its tx count
 *
 * TC programs are attached with TCX links, or clsact + cls_bpf on kernels without TCX
 * (vswitchd/datapath/tcx.py); XDP programs with XDP links (vswitchd/datapath/xdp.py).
 *
 * Each stage returns a verdict (a TC action, or what the pipeline does next) or a drop as
 * -DROP_* (drop_reasons.h); both programs end in finish() (lib/forward.h), which does the drop
 * and emits the watch event. The dry-run report is written through the result_*() helpers
 * (lib/result.h).
 *
 * A rule's controller action sends a packet-in from TC when the rule matches (lib/packet_in.h;
 * XDP hands such frames to TC).
 *
 * Defining VSW_NO_TRACE (Datapath(trace=False), bench/trace_cost.py only) builds it without
 * the watch stage (lib/watch.h).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#include "lib/actions.h"
#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/counters.h"
#include "lib/drop_reasons.h"
#include "lib/flow.h"
#include "lib/forward.h"
#include "lib/packet_in.h"
#include "lib/parse.h"
#include "lib/ports.h"
#include "lib/result.h"
#include "lib/tunnel.h"
#include "lib/vlan.h"
#include "lib/watch.h"

/* port lookup -> parse -> count rx -> classify -> hit: its packet-in (a controller action) and
 * the rule's actions / miss: normal -> forward, flood or drop. Returns a verdict (CTX_ACT_*), a drop (-DROP_*) or at XDP a handoff
 * (-HANDOFF_*), for finish() (forward.h). */
static __always_inline int pipeline_decide(struct dp_ctx *ctx, const int hook)
{
	struct flow_rule *rule;
	struct port_info *in, in_info;
	struct flow_key *key;
	__u32 out = 0, ref = 0;
	int ret, next = FLOW_NEXT_NORMAL;

	result_begin(ctx);
	in = port_lookup(ctx->in_port);
	if (!in) {  /* not ours: the kernel handles it, nothing counted, no event */
		result_verdict(ctx, VERDICT_PASS, 0);
		return CTX_ACT_OK;
	}
	in_info = *in;  /* the cache entry may go to the out port (port_lookup) */
	ctx->bridge = in_info.bridge;
	ctx->in_slot = in_info.slot;
	key = flow_key_scratch();
	if (!key)  /* never: index 0 of a one-entry array */
		return CTX_ACT_OK;

	ret = parse_flow(ctx, key);
	watch_begin(ctx, key);
	result_parsed(ctx, key, ret);
	if (IS_DROP(ret))
		return ret;
	ctx->tag_vid = key->dl_vlan;  /* tag_now set by parse_flow */
	ctx->flow_tag = ctx->tag_now;
	ctx->flow_vid = key->dl_vlan;
	count_rx(ctx);
	/* HOOK, not ctx->hook: clang does not always fold the latter here, and the XDP program
	 * must not contain the tunnel helpers (no XDP runs on a tunnel port anyway) */
	if (hook == HOOK_TC && in_info.kind == PORT_KIND_TUNNEL) {
		ret = tunnel_rx(ctx);
		if (IS_DROP(ret))
			return ret;
	}

	if (mac_is_multicast(key->dl_src))
		return -DROP_INVALID_SRC_MAC;

	rule = classify(ctx, key);
	result_stage(ctx, STAGE_FLOW);
	if (rule) {
		count_rule(ctx, rule);
		result_rule(ctx, rule);
		watch_rule(ctx, rule->rule_id);
		if (rule->flags & FLOW_F_CONTROLLER) {  /* before the actions change the frame */
			ret = packet_in(ctx, rule, &in_info, hook);
			if (IS_DROP(ret))  /* at XDP: to TC */
				return ret;
		}
		next = flow_actions(ctx, rule, key, &out, &ref);
		if (IS_DROP(next))
			return next;
		if (next == FLOW_NEXT_OUTPUT)
			return forward(ctx, out, ref);
		if (next == FLOW_NEXT_CLONED || next == FLOW_NEXT_CONTROLLER) {
			/* the copies went out, or only the controllers wanted it: nothing left to send */
			result_verdict(ctx, next == FLOW_NEXT_CLONED ? VERDICT_FORWARD :
					    VERDICT_CONTROLLER, 0);
			return CTX_ACT_DROP;
		}
	}
	/* normal or flood: switching in the frame's VLAN (vlan.h) */
	ret = vlan_ingress(ctx, &in_info);
	if (IS_DROP(ret))
		return ret;
	result_vlan(ctx);
	if (next == FLOW_NEXT_NORMAL) {
		next = normal(ctx, key, &out, &ref);
		if (IS_DROP(next))
			return next;
		if (next == FLOW_NEXT_OUTPUT)
			return forward(ctx, out, ref);
	}
	return flood(ctx, hook);
}

static __always_inline int pipeline(struct __sk_buff *skb, __u8 ingress)
{
	struct dp_ctx ctx = {
		.skb = skb,
		.hook = HOOK_TC,
		.in_port = skb->ifindex,
		.in_slot = NO_SLOT,
		.len = skb->len,
		.vlan = 0,  /* set by vlan_ingress() */
		.ingress = ingress,
		.dry_run = is_dry_run(skb),
	};

	watch_cb_set(&ctx, 0);  /* no watcher until watch_begin() says so */
	return finish(&ctx, pipeline_decide(&ctx, HOOK_TC));  /* a flood's event: tc_flood's */
}

/* The flood program of either hook (ctx: in_port, len, dry_run set): the flood of the packet,
 * with the state flood() left in ctx_cb. */
static __always_inline int flood_entry(struct dp_ctx *ctx, const int hook, const int vteps)
{
	__u32 flags = ctx_cb(ctx, CTX_CB_FLOOD_FLAGS), vlan = ctx_cb(ctx, CTX_CB_FLOOD_VLAN);
	struct port_info *in = port_lookup(ctx->in_port);
	int ret = -DROP_NO_FLOOD_TARGET;

	ctx->in_slot = NO_SLOT;
	ctx->ingress = flags & FLOOD_CB_INGRESS ? 1 : 0;
	ctx->no_peer = flags & FLOOD_CB_NO_PEER ? 1 : 0;
	ctx->vlan = FLOOD_CB_VLAN_ID(vlan);
	ctx->tag_vid = FLOOD_CB_TAG_VID(vlan);
	ctx->tag_now = FLOOD_CB_TAG_NOW(vlan);
	if (in) {
		ctx->bridge = in->bridge;
		ctx->in_slot = in->slot;
		ret = vteps ? vtep_flood(ctx) : flood_run(ctx, hook);
	}
	return finish(ctx, ret);  /* the packet's event, started by the pipeline (watch_cb) */
}

/* The TC flood programs' entry (VTEPS: tc_vteps' part of the flood, else tc_flood's). */
static __always_inline int tc_flood_entry(struct __sk_buff *skb, const int vteps)
{
	struct dp_ctx ctx = {
		.skb = skb,
		.hook = HOOK_TC,
		.in_port = skb->ifindex,
		.len = skb->len,
		.dry_run = is_dry_run(skb),
	};

	return flood_entry(&ctx, HOOK_TC, vteps);
}

/* Tail-called by flood(): the flood of the packet in skb. */
int tc_flood(struct __sk_buff *skb)
{
	return tc_flood_entry(skb, 0);
}

/* Tail-called by flood_tunnel(): the copies of the flood to the bridge's remote VTEPs. */
int tc_vteps(struct __sk_buff *skb)
{
	return tc_flood_entry(skb, 1);
}

int tc_ingress(struct __sk_buff *skb)
{
	return pipeline(skb, 1);
}

int tc_egress(struct __sk_buff *skb)
{
	return pipeline(skb, 0);
}

static __always_inline __u32 xdp_len(struct xdp_md *xdp)
{
	return bpf_xdp_get_buff_len(xdp);  /* the frags of a multi-buffer frame included */
}

int xdp_ingress(struct xdp_md *xdp)
{
	struct dp_ctx ctx = {
		.xdp = xdp,
		.hook = HOOK_XDP,
		.xcb = xdp_cb_words(),
		.in_port = xdp->ingress_ifindex,
		.in_slot = NO_SLOT,
		.len = xdp_len(xdp),
		.ingress = 1,
		.dry_run = xdp_is_dry_run(xdp),
	};

	if (!ctx.xcb)
		return XDP_PASS;
	watch_cb_set(&ctx, 0);
	return xdp_act(finish(&ctx, pipeline_decide(&ctx, HOOK_XDP)));
}

/* Tail-called by flood() at XDP in a dry run: the report of the flood's targets. */
int xdp_flood(struct xdp_md *xdp)
{
	struct dp_ctx ctx = {
		.xdp = xdp,
		.hook = HOOK_XDP,
		.xcb = xdp_cb_words(),
		.in_port = xdp->ingress_ifindex,
		.len = xdp_len(xdp),
		.dry_run = xdp_is_dry_run(xdp),
	};

	if (!ctx.xcb)
		return XDP_PASS;
	return xdp_act(flood_entry(&ctx, HOOK_XDP, 0));
}

/* The devmap program of an XDP flood's copy to one port (lib/xdp.h): the frame left
 * xdp_ingress tagged with its VLAN (or VLAN 0 as it was): the tag goes for a port that sends
 * that VLAN untagged; counts the port's tx. */
int xdp_egress(struct xdp_md *xdp)
{
	struct dp_ctx ctx = {
		.xdp = xdp,
		.hook = HOOK_XDP,
		.in_port = xdp->ingress_ifindex,
		.len = xdp_len(xdp),
		.tag_now = TAG_ORIG,
	};
	__u32 ifindex = xdp->egress_ifindex;
	struct port_info *pi = port_lookup(ifindex);
	struct vsw_vlan_hdr *vh;
	struct ethhdr *eth;

	if (!pi)
		return XDP_DROP;
	eth = ctx_data(&ctx);
	if ((void *)(eth + 1) > ctx_data_end(&ctx))
		return XDP_DROP;
	if (eth->h_proto == vsw_htons(ETH_P_8021Q) || eth->h_proto == vsw_htons(ETH_P_8021AD)) {
		vh = (void *)(eth + 1);
		if ((void *)(vh + 1) > ctx_data_end(&ctx))
			return XDP_DROP;
		ctx.vlan = vsw_ntohs(vh->tci) & VLAN_VID_MASK;
		if (ctx.vlan && vlan_egress(&ctx, ifindex, pi) == WANT_UNTAGGED &&
		    xdp_vlan_pop(&ctx))
			return XDP_DROP;
	}
	count_tx(&ctx, pi->slot);
	return XDP_PASS;
}
