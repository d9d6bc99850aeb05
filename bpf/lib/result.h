/* Verdicts, dry-run detection and the dry-run report (BPF_PROG_TEST_RUN, `vswctl trace`).
 *
 * The stages write the report through the result_*() helpers below, which do nothing in a real
 * run; result_verdict() and result_drop() also record the decision in ctx for the watch event.
 *
 * vswitchd/datapath parses the VERDICTS X(...) lines and the DRY_RUN_MAGIC_* defines of this
 * file: keep one entry per line.
 */
#ifndef VSW_RESULT_H
#define VSW_RESULT_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/flow.h"
#include "lib/flow_key.h"
#include "lib/parse.h"
#include "lib/vlan.h"

/* 0 means "no result written". "controller": a rule's controller action took the frame and no
 * other action forwarded it (packet-in only, packet_in.h); neither a forward nor a drop. */
#define VERDICTS(X) \
	X(PASS, 1, "pass") \
	X(FORWARD, 2, "forward") \
	X(FLOOD, 3, "flood") \
	X(DROP, 4, "drop") \
	X(HANDOFF, 5, "to-tc") \
	X(CONTROLLER, 6, "controller")

#define VSW_VERDICT_ENUM(name, value, text) VERDICT_##name = value,
enum verdict {
	VERDICTS(VSW_VERDICT_ENUM)
};
#undef VSW_VERDICT_ENUM

/* The stages a dry run reached (dp_result.stages, a bitmask). */
#define TRACE_STAGES(X) \
	X(PORT, 1, "port") \
	X(PARSE, 2, "parse") \
	X(FLOW, 4, "flow") \
	X(VLAN, 8, "vlan") \
	X(L2, 16, "l2")

#define VSW_STAGE_ENUM(name, value, text) STAGE_##name = value,
enum trace_stage {
	TRACE_STAGES(VSW_STAGE_ENUM)
};
#undef VSW_STAGE_ENUM

/* A tag state on the wire, as the dry run reports it (0 = not reported): untagged, or tagged
 * with the VID in bits 0-11. */
#define TAG_ENC_TAGGED 0x1000
#define TAG_ENC_UNTAGGED 0x2000

static __always_inline __u16 tag_enc(__u8 tagged, __u16 vid)
{
	return tagged ? TAG_ENC_TAGGED | (vid & VLAN_VID_MASK) : TAG_ENC_UNTAGGED;
}

/* A dry run carries this 64-bit value: at TC in skb->cb[0] and cb[1], which only
 * BPF_PROG_TEST_RUN's ctx_in can set; at XDP as the frame's 8 bytes of metadata, which only
 * the test run (ctx_in.data) or an XDP program can put before a frame. */
#define DRY_RUN_MAGIC_LO 0x74726163
#define DRY_RUN_MAGIC_HI 0x76737764

struct dp_result {
	__u32 verdict;
	__u32 drop_reason;
	__u32 out_ifindex;
	__u32 fdb_hit;
	__u32 n_flood;
	__u32 vlan;       /* the frame's VLAN (set once the ingress classification passed) */
	__u32 rule_id;    /* matched flow rule, 0 = table miss */
	__u32 priority;   /* of the matched rule */
	__u32 n_outputs;  /* output:PORT actions of the matched rule, in order */
	__u32 stages;     /* STAGE_* reached */
	__u32 hook;       /* HOOK_TC / HOOK_XDP: the program that wrote this report */
	__u32 handoff;    /* VERDICT_HANDOFF: why (HANDOFF_*, ctx.h) */
	__u16 in_tag;     /* tag_enc() of the frame as it arrived */
	__u16 out_tag;    /* tag_enc() of out_ifindex (forward) */
	__u16 flood_base; /* tag_enc() of the frame entering the flood (FLOOD_AS_IS targets) */
	__u16 pad3;
	__u16 output_tags[MAX_FLOW_ACTIONS];  /* tag_enc() per outputs[] */
	struct flow_key key;  /* the parsed headers (what was parsed, for a malformed frame) */
	__u32 outputs[MAX_FLOW_ACTIONS];
	__u32 flood[MAX_BRIDGE_PORTS];
	__u8 flood_cls[MAX_BRIDGE_PORTS];  /* per flood[]: FLOOD_AS_IS or FLOOD_CHANGED */
	__u32 tun_remote;  /* forward to a tunnel port: the VTEP of the key it sets (tunnel.h) */
};

/* Not pinned: it belongs to the program instance that the dry run executes. */
BPF_TABLE("percpu_array", __u32, struct dp_result, dp_result, 1);

static __always_inline int is_dry_run(const struct __sk_buff *skb)
{
	return skb->cb[0] == DRY_RUN_MAGIC_LO && skb->cb[1] == DRY_RUN_MAGIC_HI;
}

static __always_inline int xdp_is_dry_run(const struct xdp_md *xdp)
{
	__u32 *meta = (void *)(long)xdp->data_meta;

	if ((void *)(meta + 2) > (void *)(long)xdp->data)
		return 0;
	return meta[0] == DRY_RUN_MAGIC_LO && meta[1] == DRY_RUN_MAGIC_HI;
}

static __always_inline struct dp_result *result_get(const struct dp_ctx *ctx)
{
	__u32 zero = 0;

	if (!ctx->dry_run)
		return NULL;
	return dp_result.lookup(&zero);
}

/* At the start of the pipeline: the report's fields that not every packet writes. */
static __always_inline void result_begin(const struct dp_ctx *ctx)
{
	struct dp_result *res = result_get(ctx);

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
		res->hook = ctx->hook;
		res->tun_remote = 0;
		res->handoff = HANDOFF_NONE;
	}
}

/* The packet's decision (not a drop; out_ifindex: forward's port, else 0). */
static __always_inline void result_verdict(struct dp_ctx *ctx, __u8 verdict, __u32 out_ifindex)
{
	struct dp_result *res = result_get(ctx);

	ctx->verdict = verdict;
	if (res) {
		res->verdict = verdict;
		res->drop_reason = DROP_NONE;
		res->out_ifindex = out_ifindex;
	}
}

static __always_inline void result_drop(struct dp_ctx *ctx, __u32 reason)
{
	struct dp_result *res = result_get(ctx);

	ctx->verdict = VERDICT_DROP;
	ctx->reason = reason;
	if (res) {
		res->verdict = VERDICT_DROP;
		res->drop_reason = reason;
		res->out_ifindex = 0;
	}
}

/* The XDP hook hands the frame to TC (ctx.h). Not a decision for the watch event: TC's is.
 * out_ifindex stays the FDB's port, if the L2 stage found one. */
static __always_inline void result_handoff(const struct dp_ctx *ctx, __u32 reason)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		res->verdict = VERDICT_HANDOFF;
		res->handoff = reason;
		res->drop_reason = DROP_NONE;
	}
}

static __always_inline void result_stage(const struct dp_ctx *ctx, __u32 stage)
{
	struct dp_result *res = result_get(ctx);

	if (res)
		res->stages |= stage;
}

/* What was parsed (ret: parse_flow's), also of a malformed frame. */
static __always_inline void result_parsed(const struct dp_ctx *ctx, const struct flow_key *key,
					  int ret)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		__builtin_memcpy(&res->key, key, sizeof(*key));
		res->in_tag = tag_enc(ctx->tag_now != TAG_NONE, key->dl_vlan);
		res->stages = ret ? STAGE_PORT : STAGE_PORT | STAGE_PARSE;
	}
}

static __always_inline void result_rule(const struct dp_ctx *ctx, const struct flow_rule *rule)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		res->rule_id = rule->rule_id;
		res->priority = rule->priority;
	}
}

/* An output:PORT action; the final one is also what the frame leaves with. */
static __always_inline void result_output(const struct dp_ctx *ctx, __u32 ifindex, __u8 final)
{
	struct dp_result *res = result_get(ctx);
	__u16 tag;

	if (!res)
		return;
	tag = tag_enc(ctx->flow_tag, ctx->flow_vid);
	res->output_tags[res->n_outputs & (MAX_FLOW_ACTIONS - 1)] = tag;
	res->outputs[res->n_outputs & (MAX_FLOW_ACTIONS - 1)] = ifindex;
	res->n_outputs++;
	if (final)
		res->out_tag = tag;
}

/* The frame's VLAN, once the ingress classification passed (vlan_ingress). */
static __always_inline void result_vlan(const struct dp_ctx *ctx)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		res->vlan = ctx->vlan;
		res->stages |= STAGE_VLAN;
	}
}

/* The destination's port in the FDB (out_ifindex until a verdict says otherwise). */
/* Known unicast into a tunnel: the VTEP the frame is sent to. */
static __always_inline void result_tunnel(const struct dp_ctx *ctx, __u32 remote)
{
	struct dp_result *res = result_get(ctx);

	if (res)
		res->tun_remote = remote;
}

static __always_inline void result_fdb_hit(const struct dp_ctx *ctx, __u32 port)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		res->fdb_hit = 1;
		res->out_ifindex = port;
	}
}

/* The tag state normal() sends with, for a vlan_egress() answer other than WANT_NONE. */
static __always_inline void result_out_tag(const struct dp_ctx *ctx, int want)
{
	struct dp_result *res = result_get(ctx);

	if (res)
		res->out_tag = want == WANT_TAGGED ? tag_enc(1, ctx->vlan) :
			       want == WANT_UNTAGGED ? tag_enc(0, 0) :
			       tag_enc(ctx->flow_tag, ctx->flow_vid);
}

/* The tag state the flood's FLOOD_AS_IS targets get (flood(), before it applies it). */
static __always_inline void result_flood_base(const struct dp_ctx *ctx)
{
	struct dp_result *res = result_get(ctx);

	if (res)
		res->flood_base = ctx->vlan ? tag_enc(ctx->tag_now != TAG_NONE, ctx->vlan) :
					      tag_enc(ctx->flow_tag, ctx->flow_vid);
}

/* A flood target (cls: FLOOD_AS_IS or FLOOD_CHANGED). Takes the report itself, not ctx: the
 * flood loop keeps it in a register (forward.h, flood_run). */
static __always_inline void result_flood_add(struct dp_result *res, __u32 target, __u8 cls)
{
	res->flood_cls[res->n_flood & (MAX_BRIDGE_PORTS - 1)] = cls;
	res->flood[res->n_flood & (MAX_BRIDGE_PORTS - 1)] = target;
	res->n_flood++;
}

#endif
