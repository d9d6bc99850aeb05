/* Verdict stages: forward to one port, flood to the bridge, and finish(), where every program
 * ends and a drop is done. Each stage serves both the real and the dry run: the decision is
 * made once, only its effect depends on ctx->dry_run. */
#ifndef VSW_FORWARD_H
#define VSW_FORWARD_H

#include <uapi/linux/pkt_cls.h>

#include "lib/common.h"
#include "lib/counters.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/flow.h"
#include "lib/loop.h"
#include "lib/ports.h"
#include "lib/result.h"
#include "lib/tunnel.h"
#include "lib/vlan.h"
#include "lib/watch.h"
#include "lib/xdp.h"

/* The end of every program (pipeline, flood), with a stage's answer: a verdict (CTX_ACT_*), a
 * drop (IS_DROP, drop_reasons.h), which is counted on the in port (a dry run reports it
 * instead), recorded for the watch event, and becomes CTX_ACT_DROP, or at XDP a handoff to TC
 * (ctx.h), which passes the frame on and leaves every count and the event to TC. Then the
 * packet's watch event is emitted, with the final decision. */
static __always_inline int finish(struct dp_ctx *ctx, int ret)
{
	if (IS_HANDOFF(ret)) {
		result_handoff(ctx, -ret & ~HANDOFF_BIT);
		count_handoff(ctx);
		watch_release(ctx);  /* TC builds the frame's event */
		return CTX_ACT_OK;
	}
	if (ctx_is_xdp(ctx) && !ctx->dry_run) {  /* what the pipeline left to the end (ctx.h) */
		count_xdp(ctx);
		if (ctx->parsed)
			count_rx_now(ctx);
		if (ctx->rule_id)
			count_rule_now(ctx, ctx->rule_id);
	}
	if (IS_DROP(ret)) {
		result_drop(ctx, -ret);
		count_drop(ctx, -ret);
		ret = CTX_ACT_DROP;
	}
	watch_emit(ctx);
	return ret;
}

/* The redirect for a port kind: at XDP through xdp_tx; at TC, redirect_peer (valid at TC
 * ingress only) into a namespace; into a tunnel with the key of ctx->tun. */
static __always_inline long redirect_port(const struct dp_ctx *ctx, __u32 ifindex, __u32 ref)
{
	__u32 kind = PORT_REF_KIND(ref);

	if (ctx_is_xdp(ctx))
		return xdp_tx.redirect_map(ifindex, 0);
	if (kind == PORT_KIND_TUNNEL && tunnel_set_key(ctx, ifindex, ctx->tun))
		return TC_ACT_SHOT;
	if (kind == PORT_KIND_BRIDGE)
		return bpf_redirect(ifindex, BPF_F_INGRESS);
	if (kind == PORT_KIND_PEER && ctx->ingress && !ctx->no_peer)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/* The final redirect of a forward or flood (ref: PORT_REF of the target); counts tx on
 * success. */
static __always_inline int redirect_last(struct dp_ctx *ctx, __u32 ifindex, __u32 ref)
{
	long ret = redirect_port(ctx, ifindex, ref);

	if (ret != (ctx_is_xdp(ctx) ? XDP_REDIRECT : TC_ACT_REDIRECT))
		return -DROP_REDIRECT_FAILED;
	count_tx(ctx, PORT_REF_SLOT(ref));
	return CTX_ACT_REDIRECT;
}

/* 0 if the frame can be sent to the port of ref from this hook (always at TC; at XDP when the
 * port takes XDP frames and the frame's checksum is complete, parse.h), else the handoff to
 * TC (HANDOFF_CSUM, or REASON). Asked before the frame is changed. */
#define XDP_SENDABLE(ctx, ref, reason) \
	(!ctx_is_xdp(ctx) ? 0 : (ctx)->csum_partial ? HANDOFF(CSUM) : \
	 !(PORT_REF_FLAGS(ref) & PORT_F_XDP_TX) ? HANDOFF(reason) : 0)

/* Known unicast to out (ref: its PORT_REF); a dry run stops at the decision. To a tunnel port
 * it needs the VTEP its destination is behind (ctx->tun, from the FDB). */
static __always_inline int forward(struct dp_ctx *ctx, __u32 out, __u32 ref)
{
	if (PORT_REF_KIND(ref) == PORT_KIND_TUNNEL) {
		if (!ctx->tun)
			return -DROP_TUNNEL_NO_REMOTE;
		result_tunnel(ctx, ctx->tun);
	}
	result_verdict(ctx, VERDICT_FORWARD, out);
	if (ctx->dry_run)
		return TC_ACT_REDIRECT;
	return redirect_last(ctx, out, ref);
}

/* A copy to ifindex (real runs only), the packet goes on: counts tx, or a redirect-failed drop
 * on the in port. */
static __always_inline void flood_clone(const struct dp_ctx *ctx, __u32 ifindex, __u32 ref)
{
	__u64 flags = PORT_REF_KIND(ref) == PORT_KIND_BRIDGE ? BPF_F_INGRESS : 0;

	if (ctx_is_xdp(ctx))  /* no clones at XDP: such frames are handed to TC (HANDOFF_CLONE) */
		return;
	if (PORT_REF_KIND(ref) == PORT_KIND_TUNNEL && tunnel_set_key(ctx, ifindex, ctx->tun)) {
		count_drop(ctx, DROP_TUNNEL_NO_REMOTE);
		return;
	}
	if (bpf_clone_redirect(ctx->skb, ifindex, flags) == 0)
		count_tx(ctx, PORT_REF_SLOT(ref));
	else
		count_drop(ctx, DROP_REDIRECT_FAILED);
}

/* What the flood program cannot re-derive travels in ctx_cb (ctx.h; at TC skb->cb, whose
 * cb[0..1] are the dry-run magic):
 *   CTX_CB_FLOOD_FLAGS  FLOOD_CB_INGRESS, FLOOD_CB_NO_PEER
 *   CTX_CB_FLOOD_VLAN   the frame's VLAN (bits 0-11), the tag's VID (12-23), tag_now (24-25)
 *   CTX_CB_WATCH        watch_cb (watch.h), the packet's watchers; the flood emits their event */
#define FLOOD_CB_INGRESS 1
#define FLOOD_CB_NO_PEER 2
#define FLOOD_CB_SENT 4     /* tc_vteps: the local copies went out already */
#define FLOOD_CB_VLAN(ctx) ((ctx)->vlan | ((__u32)(ctx)->tag_vid << 12) | \
			    ((__u32)(ctx)->tag_now << 24))
#define FLOOD_CB_VLAN_ID(cb) ((cb) & VLAN_VID_MASK)
#define FLOOD_CB_TAG_VID(cb) (((cb) >> 12) & VLAN_VID_MASK)
#define FLOOD_CB_TAG_NOW(cb) (((cb) >> 24) & 3)

/* members->ifindex[i] for a flood: 0 = not a target (in_port, elsewhere, not carrying the
 * frame's VLAN), FLOOD_AS_IS = takes the frame as it is, FLOOD_CHANGED = takes it after the one
 * tag change (pop if tagged now, push if not). Fills *ref (PORT_REF). Mirrors vlan_egress().
 *
 * Verifier: the VLAN and tag state are re-read from ctx_cb (FLOOD_CB_VLAN, written before
 * the tail call) and combined without branches on every call. Kept in registers or on the
 * stack, each branch on them narrowed them differently per path (the bitmap index made them
 * precise), the states at the loop head stopped pruning, and the verifier's work multiplied;
 * a load from the context is a fresh unknown every time. */
#define FLOOD_AS_IS 1
#define FLOOD_CHANGED 2

static __always_inline int flood_class(const struct dp_ctx *ctx, __u32 target, __u32 *ref)
{
	struct port_info *pi;
	struct port_trunk *t;
	__u32 cb, vlan, tag, now, nonzero;
	__u8 mode;

	if (target == ctx->in_port)
		return 0;
	/* Not through the port cache: a flood looks each member up once, and the cache would
	 * only add its fill branch to the flood callback. */
	pi = ports.lookup(&target);
	if (!pi || pi->bridge != ctx->bridge)
		return 0;
	*ref = PORT_REF(pi);
	cb = ctx_cb(ctx, CTX_CB_FLOOD_VLAN);
	vlan = FLOOD_CB_VLAN_ID(cb);
	tag = FLOOD_CB_TAG_NOW(cb);
	now = (tag | (tag >> 1)) & 1;               /* tagged now */
	nonzero = ((vlan + VLAN_VID_MASK) >> 12) & 1;  /* VLAN N, not 0 */
	mode = pi->flags & PORT_F_VLAN_MODE;
	if (!mode)  /* tagged N, or VLAN 0 as it is */
		return FLOOD_AS_IS + (nonzero & (now ^ 1));
	/* VLAN 0 matches no access VID nor native VID: compare with 0xffff instead */
	vlan += (nonzero ^ 1) * 0xffff;
	if (mode == PORT_F_ACCESS)  /* untagged */
		return pi->vlan == vlan ? FLOOD_AS_IS + now : 0;
	t = trunk_lookup(target);
	if (!t)
		return 0;
	if (t->native == vlan)  /* untagged */
		return FLOOD_AS_IS + now;
	if ((t->bits[(cb >> 6) & (VLAN_BITMAP_WORDS - 1)] >> (cb & 63)) & 1)  /* tagged */
		return FLOOD_AS_IS + (now ^ 1);
	return 0;
}

/* The bridge's tunnel's copies (head-end replication) come from a program of their own,
 * tc_vteps, reached by a tail call once the local copies went out (its 64-VTEP loop verified
 * once there, not on every path through the flood's member loops). The prog array is pinned
 * like flood_progs. */
BPF_TABLE_PINNED("prog", __u32, __u32, vtep_progs, 1, VSW_PIN_DIR "/vtep_progs");

/* flood_run's end when the bridge has a tunnel: the last local target gets a copy too (a dry
 * run recorded it), the frame's tag state now and whether copies went out go to ctx_cb, then
 * tc_vteps. CHANGED: copies went out before a tag change. */
static __always_inline int flood_tunnel(struct dp_ctx *ctx, __u32 prev, __u32 prev_ref,
					__u32 changed, const int hook)
{
	if (hook == HOOK_XDP)  /* never: XDP hands floods with a tunnel target to TC */
		return -DROP_NO_FLOOD_TARGET;
	if (prev && !ctx->dry_run)
		flood_clone(ctx, prev, prev_ref);
	ctx_cb_set(ctx, CTX_CB_FLOOD_VLAN, FLOOD_CB_VLAN(ctx));
	ctx_cb_set(ctx, CTX_CB_FLOOD_FLAGS, ctx_cb(ctx, CTX_CB_FLOOD_FLAGS) |
		   (prev || changed ? FLOOD_CB_SENT : 0));
	vtep_progs.call(ctx->skb, 0);
	return -DROP_NO_FLOOD_TARGET;  /* tail call failed: no tc_vteps installed */
}

/* tc_vteps (ctx: in_port, bridge, VLAN and tag state as flood_tunnel left them): one copy to
 * each remote VTEP of the bridge's tunnel, the tunnel key set on each; the last one is the
 * frame itself. */
static __always_inline int vtep_flood(struct dp_ctx *ctx)
{
	struct vtep_list *tl = vteps_lookup(ctx->bridge);
	struct dp_result *res = result_get(ctx);
	struct tunnel_info *ti = NULL;
	__u32 ref = 0, i, last;
	int cls = 0;

	if (tl && tl->count) {
		cls = flood_class(ctx, tl->ifindex, &ref);
		ti = tunnels.lookup(&tl->ifindex);
	}
	if (!cls || !ti) {  /* the tunnel does not carry the frame's VLAN (or went meanwhile) */
		if (res ? !res->n_flood : !(ctx_cb(ctx, CTX_CB_FLOOD_FLAGS) & FLOOD_CB_SENT))
			return -DROP_NO_FLOOD_TARGET;
		result_verdict(ctx, VERDICT_FLOOD, 0);
		return res ? TC_ACT_REDIRECT : TC_ACT_SHOT;  /* the local copies went out */
	}
	result_verdict(ctx, VERDICT_FLOOD, 0);
	if (res) {
		result_flood_add(res, tl->ifindex, cls);
		return TC_ACT_REDIRECT;
	}
	if (cls == FLOOD_CHANGED) {
		if (ctx->tag_now ? vlan_pop(ctx) : vlan_push(ctx, ctx->vlan))
			return -DROP_VLAN_FAILED;
	}
	for (i = 0; i < MAX_VTEPS - 1; i++) {
		if (i + 1 >= tl->count)
			break;
		if (tunnel_key_set(ctx, ti, tl->addr[i].w[0]) == 0 &&
		    bpf_clone_redirect(ctx->skb, tl->ifindex, 0) == 0)
			count_tx(ctx, PORT_REF_SLOT(ref));
		else
			count_drop(ctx, DROP_REDIRECT_FAILED);
		watch_copy(ctx);
	}
	last = (tl->count - 1) & (MAX_VTEPS - 1);
	watch_copy(ctx);
	if (tunnel_key_set(ctx, ti, tl->addr[last].w[0]) ||
	    bpf_redirect(tl->ifindex, 0) != TC_ACT_REDIRECT)
		return -DROP_REDIRECT_FAILED;
	count_tx(ctx, PORT_REF_SLOT(ref));
	return CTX_ACT_REDIRECT;
}

/* flood_run's pass over the bridge's members (bpf_loop), kept on its stack. */
struct flood_loop {
	struct dp_ctx ctx;      /* a copy: the program's own ctx must not escape into bpf_loop,
				 * or the compiler could no longer take its hook for a constant */
	struct bridge_members *m;
	struct dp_result *res;  /* a dry run's report, else NULL */
	__u32 pass;             /* the targets this pass takes: FLOOD_AS_IS or FLOOD_CHANGED */
	__u32 other;            /* a FLOOD_CHANGED target was passed over */
	__u32 prev, prev_ref;   /* the last target taken, not yet sent */
};

/* A copy of ctx that the compiler knows the hook of (a constant), so that a function of its own
 * keeps only its hook's code: a const object never changes. */
static __always_inline struct dp_ctx ctx_with_hook(const struct dp_ctx *ctx, const int hook)
{
	struct dp_ctx copy = *ctx;

	copy.hook = hook;
	return copy;
}

/* Member i of flood_run's pass: a target of the pass is recorded (dry run), or the previous
 * target cloned and this one becomes the previous. Returns 1 past the last member. */
static __always_inline long flood_member(__u32 i, struct flood_loop *st, const int hook)
{
	struct bridge_members *m = st->m;
	const struct dp_ctx ctx = ctx_with_hook(&st->ctx, hook);
	__u32 target, ref = 0;
	int cls;

	if (i >= m->count)
		return 1;
	target = m->ifindex[i & (MAX_BRIDGE_PORTS - 1)];  /* bpf_loop's count bounds i */
	cls = flood_class(&ctx, target, &ref);
	if (!cls || PORT_REF_KIND(ref) == PORT_KIND_TUNNEL)  /* below: flood_vteps */
		return 0;
	if (cls != st->pass) {
		st->other |= cls == FLOOD_CHANGED;
		return 0;
	}
	if (st->res)
		result_flood_add(st->res, target, cls);
	else if (st->prev)
		flood_clone(&ctx, st->prev, st->prev_ref);
	watch_copy(&ctx);
	st->prev = target;
	st->prev_ref = ref;
	return 0;
}

long flood_member_tc(__u64 unused)
{
	struct flood_loop *st;
	__u64 i;

	LOOP_ARGS(i, st);
	return flood_member(i, st, HOOK_TC);
}

long flood_member_xdp(__u64 unused)
{
	struct flood_loop *st;
	__u64 i;

	LOOP_ARGS(i, st);
	return flood_member(i, st, HOOK_XDP);
}

#define FLOOD_PASS(st, hook)							\
	bpf_loop(MAX_BRIDGE_PORTS, (hook) == HOOK_XDP ? LOOP_CALLBACK(LOOP_FLOOD_XDP) :	\
		 LOOP_CALLBACK(LOOP_FLOOD_TC), (st), 0)

/* Every member of the bridge but in_port that carries the frame's VLAN: clone to all targets
 * but the last, plain redirect to the last (no clone in the two-member case, and a host flood
 * never ends in TC_ACT_SHOT). Two passes: first the targets that take the frame as it is now
 * (flood() already set a tag's VID to the VLAN), then, after one tag change (push or pop), the
 * others; a tag pushed by this program is never popped again (vlan.h).
 *
 * Each pass is a bpf_loop (loop.h): the verifier checks a member once, so a bridge's member
 * count (MAX_BRIDGE_PORTS) costs it nothing. */
static __always_inline int flood_run(struct dp_ctx *ctx, const int hook)
{
	struct flood_loop st = {
		.ctx = *ctx, .m = members_lookup(ctx->bridge), .res = result_get(ctx),
		.pass = FLOOD_AS_IS,
	};
	struct vtep_list *tl;
	__u32 changed = 0;

	if (!st.m)
		return -DROP_NO_FLOOD_TARGET;
	FLOOD_PASS(&st, hook);
	if (!st.other)
		goto last;
	if (!st.res) {
		if (st.prev)
			flood_clone(ctx, st.prev, st.prev_ref);
		st.prev = 0;
		if (!ctx->tag_now) {
			if (vlan_push(ctx, ctx->vlan))
				return -DROP_VLAN_FAILED;
		} else if (ctx->tag_now == TAG_PUSHED || vlan_pop(ctx)) {
			return -DROP_VLAN_FAILED;
		}
	}
	st.ctx = *ctx;  /* its tag changed */
	st.pass = FLOOD_CHANGED;
	FLOOD_PASS(&st, hook);
	changed = 1;
last:
	/* the bridge's tunnel, unless the frame came from it: its copies go last, from tc_vteps
	 * (which also decides whether the tunnel carries the frame's VLAN) */
	tl = vteps_lookup(ctx->bridge);
	if (tl && tl->count && tl->ifindex != ctx->in_port)
		return flood_tunnel(ctx, st.prev, st.prev_ref, changed, hook);
	if (!st.prev && changed && !st.res) {  /* copies went out; the members changed under us */
		result_verdict(ctx, VERDICT_FLOOD, 0);
		return TC_ACT_SHOT;
	}
	if (!st.prev)
		return -DROP_NO_FLOOD_TARGET;
	result_verdict(ctx, VERDICT_FLOOD, 0);
	if (st.res)
		return TC_ACT_REDIRECT;
	return redirect_last(ctx, st.prev, st.prev_ref);
}
#undef FLOOD_PASS

/* Flooding runs in a program of its own, tc_flood, reached by a tail call: its member loop
 * verified once there, instead of once per distinct path into it here (the classifier and
 * the action list multiply those paths). The prog
 * array is pinned, so the entry survives a daemon restart (an unpinned one is emptied when the
 * daemon's last fd closes, and attached programs would stop flooding). A prog array holds one
 * program type: the XDP hook's (xdp_flood, which reports a dry run's targets) has its own. */
BPF_TABLE_PINNED("prog", __u32, __u32, flood_progs, 1, VSW_PIN_DIR "/flood_progs");
BPF_TABLE_PINNED("prog", __u32, __u32, xdp_flood_progs, 1, VSW_PIN_DIR "/xdp_flood_progs");

/* At XDP, before the frame is changed: whether the flood of the frame's (bridge, VLAN) can be
 * done here, every member but in_port taking XDP frames (else a handoff to TC), and how many
 * copies it makes (a drop when none). */
static __always_inline int xdp_flood_check(struct dp_ctx *ctx)
{
	struct flood_group_key k = { .bridge = ctx->bridge, .vlan = ctx->vlan };
	struct flood_group_info *info = flood_group_info.lookup(&k);
	struct port_info *in = port_lookup(ctx->in_port);
	__u32 in_member = 0, in_other = 0;

	if (ctx->csum_partial)
		return HANDOFF(CSUM);
	if (!info || !in || !flood_groups.lookup(&k))
		return HANDOFF(FLOOD);
	if (vlan_egress(ctx, ctx->in_port, in) != WANT_NONE) {
		in_member = 1;
		in_other = !(in->flags & PORT_F_XDP_TX);
	}
	if (info->non_targets > in_other)
		return HANDOFF(FLOOD);
	if (info->members <= in_member)
		return -DROP_NO_FLOOD_TARGET;
	watch_copies(ctx, info->members - in_member);
	return 0;
}

/* At XDP: one copy to each member of the group but in_port, by the kernel (BPF_F_BROADCAST);
 * each copy's devmap program, xdp_egress, gives it the tag its port wants. */
static __always_inline int xdp_broadcast(struct dp_ctx *ctx)
{
	struct flood_group_key k = { .bridge = ctx->bridge, .vlan = ctx->vlan };
	void *group = flood_groups.lookup(&k);

	if (!group)
		return -DROP_NO_FLOOD_TARGET;
	result_verdict(ctx, VERDICT_FLOOD, 0);
	if (bpf_redirect_map(group, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS) != XDP_REDIRECT)
		return -DROP_REDIRECT_FAILED;
	return CTX_ACT_REDIRECT;
}

/* Floods the frame in its VLAN: a tail call to the flood program (flood_run), or at XDP a
 * broadcast (a dry run there still takes the tail call, to report the targets). VLAN 0 floods to
 * unconfigured ports only, each taking the frame as the flow actions left it: that tag state is
 * applied once here. A tagged frame of VLAN N gets VID N here (a no-op but for priority-tagged
 * or native-tagged frames), so its tagged targets take it as it is; at XDP every frame of VLAN
 * N leaves here tagged, and xdp_egress untags the copies of untagged targets. */
static __always_inline int flood(struct dp_ctx *ctx, const int hook)
{
	int ret = 0;

	if (ctx_is_xdp(ctx)) {
		ret = xdp_flood_check(ctx);
		if (ret)
			return ret;
	}
	result_flood_base(ctx);  /* before it is applied (dry runs change nothing) */
	if (!ctx->vlan)
		ret = vlan_apply(ctx, ctx->flow_tag, ctx->flow_vid);
	else if (ctx->tag_now || ctx_is_xdp(ctx))  /* (priority tag, native tagged: VID := VLAN) */
		ret = vlan_apply(ctx, 1, ctx->vlan);
	if (ret)
		return ret;
	if (ctx_is_xdp(ctx) && !ctx->dry_run)
		return xdp_broadcast(ctx);
	ctx_cb_set(ctx, CTX_CB_FLOOD_VLAN, FLOOD_CB_VLAN(ctx));
	ctx_cb_set(ctx, CTX_CB_FLOOD_FLAGS, (ctx->ingress ? FLOOD_CB_INGRESS : 0) |
					    (ctx->no_peer ? FLOOD_CB_NO_PEER : 0));
	if (hook == HOOK_XDP)  /* HOOK: a prog array takes programs of one type only */
		xdp_flood_progs.call(ctx->xdp, 0);
	else
		flood_progs.call(ctx->skb, 0);
	return -DROP_NO_FLOOD_TARGET;  /* tail call failed: no flood program installed */
}

#endif
