/* Verdicts, dry-run detection and the dry-run report (BPF_PROG_TEST_RUN, `vswctl trace`).
 *
 * vswitchd/datapath parses the VERDICTS X(...) lines and the DRY_RUN_MAGIC_* defines of this
 * file: keep one entry per line.
 */
#ifndef VSW_RESULT_H
#define VSW_RESULT_H

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
	__u32 pad2;
	__u32 outputs[MAX_FLOW_ACTIONS];
	__u32 flood[MAX_BRIDGE_PORTS];
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
