/* The hook layer: one source, two hooks (TC and XDP), in the manner of Cilium's ctx layer.
 *
 * Every program sets dp_ctx.hook to a constant at its entry (datapath.c) and every stage is
 * __always_inline, so the compiler folds each ctx_is_xdp() away: each program keeps only its
 * own hook's code. (Should a branch survive, the verifier would refuse the program at load: an
 * XDP program cannot touch an skb field, nor call an skb helper.)
 *
 * The stages speak TC's verdicts (CTX_ACT_*); the XDP programs translate them at their end
 * (xdp_act). A stage that finds the XDP hook cannot finish a frame returns -HANDOFF_*: the frame
 * goes on unchanged (XDP_PASS) to the TC program of the same port, which does everything that
 * the XDP stage left undone (counters, flow counters, watch events: the XDP hook commits them
 * only for frames it finishes, in finish()). Nothing of the frame is changed before that
 * decision.
 *
 * vswitchd/datapath/constants.py parses the HANDOFF_REASONS X(...) lines: keep one per line.
 */
#ifndef VSW_CTX_H
#define VSW_CTX_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#include "lib/common.h"

#define HOOK_TC 0
#define HOOK_XDP 1

#define CTX_ACT_OK TC_ACT_OK              /* not ours / hand to the kernel */
#define CTX_ACT_DROP TC_ACT_SHOT
#define CTX_ACT_REDIRECT TC_ACT_REDIRECT

/* Why the XDP stage handed a frame to TC (dp_result.handoff, the trace's words). */
#define HANDOFF_REASONS(X) \
	X(NONE, 0, "none") \
	X(TARGET, 1, "the output port cannot take XDP frames") \
	X(FLOOD, 2, "a flood target cannot take XDP frames") \
	X(CLONE, 3, "the rule outputs to several ports") \
	X(CSUM, 4, "the TCP/UDP checksum is left to the receiver (checksum offload)") \
	X(CONTROLLER, 5, "the rule sends the frame to the controllers (packet-in is sent by TC)")

#define VSW_HANDOFF_ENUM(name, value, text) HANDOFF_##name = value,
enum handoff_reason {
	HANDOFF_REASONS(VSW_HANDOFF_ENUM)
};
#undef VSW_HANDOFF_ENUM

/* A handoff travels as a drop does (IS_DROP: every stage passes it up at once), with this bit
 * set beyond every drop reason; finish() tells them apart. */
#define HANDOFF_BIT 0x100
#define IS_HANDOFF(ret) ((ret) < 0 && (-(ret) & HANDOFF_BIT))
#define HANDOFF(reason) (-(HANDOFF_BIT | HANDOFF_##reason))

static __always_inline int ctx_is_xdp(const struct dp_ctx *ctx)
{
	return ctx->hook == HOOK_XDP;
}

/* The u32 at a constant offset of the skb context, loaded there, written out: clang may
 * otherwise compute &skb->field into a register first, or share one computed address between
 * call sites (a modified ctx pointer, which the verifier refuses to dereference). A u64: the
 * load zero-extends, and a pointer made of it needs no shifts. */
#define SKB_LOAD_AT(skb, off) ({						\
	__u64 __v;								\
	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(__v) : "r"(skb), "i"(off));	\
	__v;									\
})

/* The frame's linear data. XDP frames are linear but for multi-buffer frames (jumbo). */
static __always_inline void *ctx_data(const struct dp_ctx *ctx)
{
	if (ctx_is_xdp(ctx))
		return (void *)(long)ctx->xdp->data;
	return (void *)(long)SKB_LOAD_AT(ctx->skb, offsetof(struct __sk_buff, data));
}

static __always_inline void *ctx_data_end(const struct dp_ctx *ctx)
{
	if (ctx_is_xdp(ctx))
		return (void *)(long)ctx->xdp->data_end;
	return (void *)(long)SKB_LOAD_AT(ctx->skb, offsetof(struct __sk_buff, data_end));
}

static __always_inline long ctx_load_bytes(const struct dp_ctx *ctx, __u32 off, void *buf,
					   __u32 len)
{
	if (ctx_is_xdp(ctx))
		return bpf_xdp_load_bytes(ctx->xdp, off, buf, len);
	return bpf_skb_load_bytes(ctx->skb, off, buf, len);
}

static __always_inline long ctx_store_bytes(const struct dp_ctx *ctx, __u32 off, void *buf,
					    __u32 len)
{
	if (ctx_is_xdp(ctx))
		return bpf_xdp_store_bytes(ctx->xdp, off, buf, len);
	return bpf_skb_store_bytes(ctx->skb, off, buf, len, 0);
}

/* The VLAN tag the kernel moved out of the frame (TC: skb->vlan_tci), 0 if none. At XDP a tag
 * is always in the frame. (A NIC's rx-vlan-offload strips it before XDP runs: see README.) */
static __always_inline int ctx_hw_vlan(const struct dp_ctx *ctx, __u16 *tci)
{
	if (ctx_is_xdp(ctx))
		return 0;
	if (!ctx->skb->vlan_present)
		return 0;
	*tci = ctx->skb->vlan_tci;
	return 1;
}

/* Scratch words that live with the packet, not in dp_ctx: skb->cb at TC, a per-CPU array at XDP
 * (XDP programs of one packet run on one CPU, tail calls included). A load from there is a fresh
 * unknown for the verifier each time (see watch_cb in watch.h and flood_class in forward.h). */
#define CTX_CB_FLOOD_FLAGS 2
#define CTX_CB_FLOOD_VLAN 3
#define CTX_CB_WATCH 4
#define CTX_CB_WORDS 5

struct xdp_cb {
	__u32 cb[CTX_CB_WORDS];
};

BPF_PERCPU_ARRAY(xdp_cbs, struct xdp_cb, 1);

static __always_inline __u32 ctx_cb(const struct dp_ctx *ctx, __u32 i)
{
	struct __sk_buff *skb = ctx->skb;
	__u32 *xcb = ctx->xcb;

	if (ctx_is_xdp(ctx)) {
		asm volatile("" : "+r"(xcb));
		return xcb[i];
	}
	/* i is a constant at every (always inlined) call */
	return SKB_LOAD_AT(skb, offsetof(struct __sk_buff, cb) + i * sizeof(__u32));
}

static __always_inline void ctx_cb_set(const struct dp_ctx *ctx, __u32 i, __u32 value)
{
	struct __sk_buff *skb = ctx->skb;
	__u32 *xcb = ctx->xcb;

	if (ctx_is_xdp(ctx)) {
		asm volatile("" : "+r"(xcb));
		xcb[i] = value;
		return;
	}
	/* as in ctx_cb; no "memory" clobber: ctx (on the stack, its address taken) would then be
	 * re-read after every store, and ctx->hook no longer fold to a constant */
	asm volatile("*(u32 *)(%0 + %1) = %2" :
		     : "r"(skb), "i"(offsetof(struct __sk_buff, cb) + i * sizeof(__u32)),
		       "r"(value));
}

/* The per-CPU words of ctx_cb at XDP; NULL only if the map is missing. */
static __always_inline __u32 *xdp_cb_words(void)
{
	__u32 zero = 0;
	struct xdp_cb *c = xdp_cbs.lookup(&zero);

	return c ? c->cb : NULL;
}

/* A TC verdict as the XDP hook says it. */
static __always_inline int xdp_act(int act)
{
	if (act == CTX_ACT_REDIRECT)
		return XDP_REDIRECT;
	if (act == CTX_ACT_DROP)
		return XDP_DROP;
	return XDP_PASS;
}

#endif
