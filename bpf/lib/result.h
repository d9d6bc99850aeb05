/* Verdicts, dry-run detection and the dry-run report (BPF_PROG_TEST_RUN, `vswctl trace`).
 *
 * vswitchd/datapath parses the VERDICTS X(...) lines and the DRY_RUN_MAGIC_* defines of this
 * file: keep one entry per line.
 */
#ifndef VSW_RESULT_H
#define VSW_RESULT_H

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/flow.h"
#include "lib/flow_key.h"
#include "lib/parse.h"

/* 0 means "no result written". */
#define VERDICTS(X) \
	X(PASS, 1, "pass") \
	X(FORWARD, 2, "forward") \
	X(FLOOD, 3, "flood") \
	X(DROP, 4, "drop")

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

/* skb->cb[0] and cb[1] hold this 64-bit value only when set through BPF_PROG_TEST_RUN ctx_in. */
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
	__u16 in_tag;     /* tag_enc() of the frame as it arrived */
	__u16 out_tag;    /* tag_enc() of out_ifindex (forward) */
	__u16 flood_base; /* tag_enc() of the frame entering the flood (FLOOD_AS_IS targets) */
	__u16 pad3;
	__u16 output_tags[MAX_FLOW_ACTIONS];  /* tag_enc() per outputs[] */
	struct flow_key key;  /* the parsed headers (what was parsed, for a malformed frame) */
	__u32 outputs[MAX_FLOW_ACTIONS];
	__u32 flood[MAX_BRIDGE_PORTS];
	__u8 flood_cls[MAX_BRIDGE_PORTS];  /* per flood[]: FLOOD_AS_IS or FLOOD_CHANGED */
};

/* Not pinned: it belongs to the program instance that the dry run executes. */
BPF_TABLE("percpu_array", __u32, struct dp_result, dp_result, 1);

static __always_inline int is_dry_run(const struct __sk_buff *skb)
{
	return skb->cb[0] == DRY_RUN_MAGIC_LO && skb->cb[1] == DRY_RUN_MAGIC_HI;
}

static __always_inline struct dp_result *result_get(const struct dp_ctx *ctx)
{
	__u32 zero = 0;

	if (!ctx->dry_run)
		return NULL;
	return dp_result.lookup(&zero);
}

static __always_inline void result_set(const struct dp_ctx *ctx, __u32 verdict, __u32 reason,
				       __u32 out_ifindex)
{
	struct dp_result *res = result_get(ctx);

	if (res) {
		res->verdict = verdict;
		res->drop_reason = reason;
		res->out_ifindex = out_ifindex;
	}
}

#endif
