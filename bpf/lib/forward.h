/* Verdict stages: drop, forward to one port, flood to the bridge. Each stage serves both the
 * real and the dry run: the decision is made once, only its effect depends on ctx->dry_run. */
#ifndef VSW_FORWARD_H
#define VSW_FORWARD_H

static __always_inline int drop(const struct dp_ctx *ctx, __u32 reason)
{
	if (ctx->dry_run)
		result_set(ctx, VERDICT_DROP, reason, 0);
	else
		count_drop(ctx, reason);
	return TC_ACT_SHOT;
}

/* The redirect for a port kind. redirect_peer is valid at TC ingress only. */
static __always_inline long redirect_port(const struct dp_ctx *ctx, __u32 ifindex, __u8 kind)
{
	if (kind == PORT_KIND_BRIDGE)
		return bpf_redirect(ifindex, BPF_F_INGRESS);
	if (kind == PORT_KIND_PEER && ctx->ingress && !ctx->no_peer)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/* The final redirect of a forward or flood; counts tx on success. */
static __always_inline int redirect_last(const struct dp_ctx *ctx, __u32 ifindex, __u8 kind)
{
	long ret = redirect_port(ctx, ifindex, kind);

	if (ret != TC_ACT_REDIRECT)
		return drop(ctx, DROP_REDIRECT_FAILED);
	count_tx(ctx, ifindex);
	return TC_ACT_REDIRECT;
}

static __always_inline int forward(const struct dp_ctx *ctx, __u32 out, __u8 kind)
{
	if (ctx->dry_run) {
		result_set(ctx, VERDICT_FORWARD, DROP_NONE, out);
		return TC_ACT_REDIRECT;
	}
	return redirect_last(ctx, out, kind);
}

static __always_inline void flood_clone(const struct dp_ctx *ctx, __u32 ifindex, __u8 kind)
{
	__u64 flags = kind == PORT_KIND_BRIDGE ? BPF_F_INGRESS : 0;

	if (bpf_clone_redirect(ctx->skb, ifindex, flags) == 0)
		count_tx(ctx, ifindex);
	else
		count_drop(ctx, DROP_REDIRECT_FAILED);
}

/* Is members->ifindex[i] a flood target? Fills *kind. Shared by real and dry runs. */
static __always_inline int flood_target(const struct dp_ctx *ctx, __u32 target, __u8 *kind)
{
	struct port_info *pi;

	if (target == ctx->in_port)
		return 0;
	pi = port_lookup(target);
	if (!pi || pi->bridge != ctx->bridge)
		return 0;
	*kind = pi->kind;
	return 1;
}

/* Every member of the bridge but in_port: clone to all targets but the last, plain redirect to
 * the last (no clone in the two-member case, and a host flood never ends in TC_ACT_SHOT).
 *
 * Verifier: only the loop index is a precise scalar. The dry-run count lives in the result map
 * and the real run only remembers the previous target, so states at the loop head prune and the
 * cost stays linear in MAX_BRIDGE_PORTS (a counter in a register made it exponential). */
static __always_inline int flood_run(const struct dp_ctx *ctx)
{
	struct bridge_members *m = members_lookup(ctx->bridge);
	struct dp_result *res = result_get(ctx);
	__u32 prev = 0, i;
	__u8 prev_kind = 0;

	if (!m)
		return drop(ctx, DROP_NO_FLOOD_TARGET);
	for (i = 0; i < MAX_BRIDGE_PORTS; i++) {
		__u32 target;
		__u8 kind = 0;

		if (i >= m->count)
			break;
		target = m->ifindex[i];
		if (!flood_target(ctx, target, &kind))
			continue;
		if (res) {
			res->flood[res->n_flood & (MAX_BRIDGE_PORTS - 1)] = target;
			res->n_flood++;
		} else if (prev) {
			flood_clone(ctx, prev, prev_kind);
		}
		prev = target;
		prev_kind = kind;
	}
	if (!prev)
		return drop(ctx, DROP_NO_FLOOD_TARGET);
	if (res) {
		res->verdict = VERDICT_FLOOD;
		return TC_ACT_REDIRECT;
	}
	return redirect_last(ctx, prev, prev_kind);
}

/* Flooding runs in a program of its own, tc_flood, reached by a tail call: its 128-member loop
 * verified once there, instead of once per distinct path into it here (the classifier and
 * the action list multiply those paths beyond the verifier's 1M-instruction budget).
 * skb->cb[2] carries what tc_flood cannot re-derive (cb[0..1] are the dry-run magic). The prog
 * array is pinned, so the entry survives a daemon restart (an unpinned one is emptied when the
 * daemon's last fd closes, and attached programs would stop flooding). */
#define FLOOD_CB_INGRESS 1
#define FLOOD_CB_NO_PEER 2

BPF_TABLE_PINNED("prog", __u32, __u32, flood_progs, 1, VSW_PIN_DIR "/flood_progs");

static __always_inline int flood(const struct dp_ctx *ctx)
{
	ctx->skb->cb[2] = (ctx->ingress ? FLOOD_CB_INGRESS : 0) |
			  (ctx->no_peer ? FLOOD_CB_NO_PEER : 0);
	flood_progs.call(ctx->skb, 0);
	return drop(ctx, DROP_NO_FLOOD_TARGET);  /* tail call failed: no tc_flood installed */
}

#endif
