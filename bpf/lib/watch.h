/* Live watch (`vswctl watch`): one event per packet decision, for the watchers whose filter the
 * packet passed, evaluated here in the datapath.
 *
 *   watch_ctl[0]       active: bitmask of the watcher slots in use. 0 = nobody watches: the
 *                      per-packet cost is this one array read (watch_begin).
 *   watch_filters[0]   every slot's filter: bridge, a masked flow key (in_port in it).
 *   watch_scratch      per-CPU: the event being built (headers at parse time, the rule and
 *                      outputs as they happen; tc_flood finishes the event of a flood). Two
 *                      slots: a clone into a VXLAN port whose underlay leaves through the
 *                      bridge device runs tc_egress at once, nested on this CPU, while the
 *                      cloning packet's event is still being built.
 *   watch_claimed      per-CPU: bit i = slot i holds an event being built (watch_begin claims
 *                      a free slot, watch_emit frees it; the slot is in the packet's watch_cb).
 *   watch_bucket       per-CPU token bucket (bucket.h): at most watch_ctl.rate events/s per
 *                      CPU, bursts of up to one second's worth.
 *   watch_lost[i]      per-CPU: events of watcher i lost to the rate limit or a full ring.
 *   watch_events       the ring buffer that carries the events to the daemon.
 *
 * Not pinned: they belong to the program instance, like dp_result (the daemon that loaded it
 * reads its ring). Dry runs emit nothing. vswitchd/datapath/constants.py parses the WATCH_*
 * defines; vswitchd/datapath/watch.py decodes events with the layout of struct watch_event
 * (bcc's ctypes of watch_scratch): change both together, and bump WATCH_EVENT_VERSION when the
 * event changes.
 *
 * Compiled out with VSW_NO_TRACE (bench/trace_cost.py's baseline only).
 */
#ifndef VSW_WATCH_H
#define VSW_WATCH_H

#include "lib/bucket.h"
#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/flow_key.h"
#include "lib/result.h"

#define MAX_WATCHERS 8
#define WATCH_EVENT_VERSION 2
#define WATCH_EVENT_DECISION 1  /* event type: a packet decision */
#define WATCH_MAX_OUTPUTS 8
#define WATCH_RING_PAGES 256    /* 1 MiB */
#define WATCH_DEFAULT_RATE 10000

struct watch_ctl {
	__u32 active;      /* bitmask of slots in use */
	__u32 drops_only;  /* bitmask of slots that want drops only */
	__u64 rate;        /* events per second per CPU */
};

/* A watcher's filter. in_port (0 = any) is folded into key/mask by the daemon. */
struct watch_filter {
	__u32 bridge;
	__u32 pad;
	struct flow_key key;    /* already masked */
	struct flow_key mask;
};

/* All slots in one value: one lookup per packet while someone watches. The daemon writes a
 * slot before it sets its bit in watch_ctl.active (readers never use a slot being written). */
struct watch_filters {
	struct watch_filter f[MAX_WATCHERS];
};

/* The event. The first 4 bytes are the versioned header (version, type, length of the whole
 * event); readers refuse a version or type they do not know. */
struct watch_event {
	__u8 version;      /* WATCH_EVENT_VERSION */
	__u8 type;         /* WATCH_EVENT_DECISION */
	__u16 length;      /* sizeof(struct watch_event) */
	__u32 watchers;    /* bitmask of the watchers that get this event */
	__u64 time_ns;     /* bpf_ktime_get_ns() = CLOCK_MONOTONIC */
	__u32 bridge;
	__u32 in_port;
	__u32 pkt_len;     /* skb->len at ingress */
	__u32 rule_id;     /* matched flow rule, 0 = table miss */
	__u8 verdict;      /* VERDICT_* (result.h) */
	__u8 drop_reason;  /* DROP_* (drop_reasons.h) */
	__u8 n_outputs;    /* outputs[] used: output:PORT actions and the normal forward */
	__u8 hook;         /* HOOK_TC / HOOK_XDP (ctx.h): where the decision was made */
	__u32 n_copies;    /* flood: the number of copies */
	__u32 outputs[WATCH_MAX_OUTPUTS];
	struct flow_key key;  /* the parsed headers (what was parsed, for a malformed frame) */
};

#ifndef VSW_NO_TRACE
BPF_ARRAY(watch_ctl, struct watch_ctl, 1);
BPF_ARRAY(watch_filters, struct watch_filters, 1);
#define WATCH_SLOTS 2
#define WATCH_CB_SLOT (1u << MAX_WATCHERS)  /* watch_cb: the packet's event is in slot 1 */
BPF_PERCPU_ARRAY(watch_scratch, struct watch_event, WATCH_SLOTS);
BPF_PERCPU_ARRAY(watch_claimed, __u32, 1);
BPF_PERCPU_ARRAY(watch_bucket, struct token_bucket, 1);
BPF_PERCPU_ARRAY(watch_lost, __u64, MAX_WATCHERS);
BPF_RINGBUF_OUTPUT(watch_events, WATCH_RING_PAGES);

/* The packet's watcher bitmask lives in ctx_cb (ctx.h; skb->cb[4] at TC), not in dp_ctx: a load
 * from there is a fresh unknown each time, so no narrowed copy of it rides along the
 * pipeline's paths (kept on the stack it took tc_ingress from 69k to over 1M verified
 * instructions). It also carries the mask into the flood program. */
static __always_inline __u32 watch_cb(const struct dp_ctx *ctx)
{
	return ctx_cb(ctx, CTX_CB_WATCH);
}

static __always_inline void watch_cb_set(const struct dp_ctx *ctx, __u32 mask)
{
	ctx_cb_set(ctx, CTX_CB_WATCH, mask);
}

/* The event the packet builds (watch_cb says it has one): WATCH_CB_SLOT, its slot. */
static __always_inline struct watch_event *watch_scratch_get(const struct dp_ctx *ctx)
{
	__u32 slot = watch_cb(ctx) & WATCH_CB_SLOT ? 1 : 0;

	return watch_scratch.lookup(&slot);
}

/* Frees the packet's event slot, if it has one: at its emission, or when XDP hands the frame
 * to TC (which starts the event again). */
static __always_inline void watch_release(const struct dp_ctx *ctx)
{
	__u32 cb = watch_cb(ctx), zero = 0, *claimed;

	if (!(cb & ((1u << MAX_WATCHERS) - 1)))
		return;
	claimed = watch_claimed.lookup(&zero);
	if (claimed)
		*claimed &= ~(cb & WATCH_CB_SLOT ? 2u : 1u);
}

/* After parsing (or failing to): sets watch_cb (zeroed by the pipeline first) to the watchers
 * whose filter the packet passes and starts their event. Nobody watching: one array read.
 *
 * Verifier: the filter loop has no branches (a branch per slot made 2^8 paths into the rest of
 * the pipeline, which did not prune: 69k -> 273k insns). */
static __always_inline void watch_begin(struct dp_ctx *ctx, const struct flow_key *key)
{
	const __u64 *kw = (const __u64 *)key;
	struct watch_filters *fs;
	struct watch_event *ev;
	struct watch_ctl *c;
	__u32 zero = 0, active, mask = 0, i, j, slot, *claimed;

	c = watch_ctl.lookup(&zero);
	if (!c || !c->active || ctx->dry_run)
		return;
	active = c->active;
	fs = watch_filters.lookup(&zero);
	if (!fs)
		return;
#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_WATCHERS; i++) {
		const __u64 *fk = (const __u64 *)&fs->f[i].key;
		const __u64 *fm = (const __u64 *)&fs->f[i].mask;
		__u64 diff = fs->f[i].bridge ^ ctx->bridge;

		if (!(active >> i))  /* no slot left: the daemon fills the lowest free slot */
			break;
#pragma unroll
		for (j = 0; j < FLOW_KEY_WORDS; j++)
			diff |= (kw[j] & fm[j]) ^ fk[j];
		/* (diff | -diff) >> 63: 1 when diff != 0 */
		mask |= ((((diff | -diff) >> 63) ^ 1) & (active >> i) & 1) << i;
	}
	if (!mask)
		return;
	claimed = watch_claimed.lookup(&zero);
	if (!claimed || (*claimed & 3) == 3)  /* both slots building events: none for this one */
		return;
	slot = *claimed & 1;  /* slot 0 unless it is taken (by the packet this one is nested in) */
	ev = watch_scratch.lookup(&slot);
	if (!ev)
		return;
	*claimed |= 1u << slot;
	ev->version = WATCH_EVENT_VERSION;
	ev->type = WATCH_EVENT_DECISION;
	ev->length = sizeof(*ev);
	ev->bridge = ctx->bridge;
	ev->in_port = ctx->in_port;
	ev->pkt_len = ctx->len;
	ev->rule_id = 0;
	ev->n_outputs = 0;
	ev->n_copies = 0;
	ev->hook = ctx->hook;
	__builtin_memcpy(&ev->key, key, sizeof(*key));
	watch_cb_set(ctx, mask | (slot ? WATCH_CB_SLOT : 0));
}

static __always_inline void watch_rule(const struct dp_ctx *ctx, __u32 rule_id)
{
	struct watch_event *ev;

	if (!watch_cb(ctx))
		return;
	ev = watch_scratch_get(ctx);
	if (ev)
		ev->rule_id = rule_id;
}

static __always_inline void watch_output(const struct dp_ctx *ctx, __u32 ifindex)
{
	struct watch_event *ev;
	__u32 n;

	if (!watch_cb(ctx))
		return;
	ev = watch_scratch_get(ctx);
	if (!ev)
		return;
	n = ev->n_outputs;
	if (n < WATCH_MAX_OUTPUTS) {
		ev->outputs[n] = ifindex;
		ev->n_outputs = n + 1;
	}
}

/* A flood copy (tc_flood). */
static __always_inline void watch_copy(const struct dp_ctx *ctx)
{
	struct watch_event *ev;

	if (!watch_cb(ctx))
		return;
	ev = watch_scratch_get(ctx);
	if (ev)
		ev->n_copies++;
}

/* The copies of an XDP flood, made by the kernel (BPF_F_BROADCAST). */
static __always_inline void watch_copies(const struct dp_ctx *ctx, __u32 n)
{
	struct watch_event *ev;

	if (!watch_cb(ctx))
		return;
	ev = watch_scratch_get(ctx);
	if (ev)
		ev->n_copies = n;
}

static __always_inline void watch_count_lost(__u32 mask)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < MAX_WATCHERS; i++) {
		__u32 slot = i;
		__u64 *lost;

		if (!(mask & (1u << i)))
			continue;
		lost = watch_lost.lookup(&slot);
		if (lost)
			(*lost)++;
	}
}

/* At the final decision (ctx->verdict, ctx->reason): drops-only watchers get drops only; the
 * per-CPU token bucket and the ring may refuse the event (counted per watcher as lost). */
static __always_inline void watch_emit(const struct dp_ctx *ctx)
{
	struct token_bucket *b;
	struct watch_event *ev;
	struct watch_ctl *c;
	__u64 now;
	__u32 zero = 0, mask = watch_cb(ctx) & ((1u << MAX_WATCHERS) - 1);

	if (!mask)
		return;
	watch_release(ctx);  /* nothing below runs another program on this CPU */
	c = watch_ctl.lookup(&zero);
	if (!c)
		return;
	mask &= c->active;  /* removed meanwhile */
	if (ctx->verdict != VERDICT_DROP)
		mask &= ~c->drops_only;
	if (!mask)
		return;
	ev = watch_scratch_get(ctx);
	if (!ev || ev->in_port != ctx->in_port)  /* not this packet's (see tc_flood) */
		return;
	b = watch_bucket.lookup(&zero);
	if (!b)
		return;
	now = bpf_ktime_get_ns();
	if (!bucket_take(b, c->rate, now)) {
		watch_count_lost(mask);
		return;
	}
	ev->watchers = mask;
	ev->time_ns = now;
	ev->verdict = ctx->verdict;
	ev->drop_reason = ctx->reason;
	if (watch_events.ringbuf_output(ev, sizeof(*ev), 0))
		watch_count_lost(mask);
}

#else  /* VSW_NO_TRACE: no watch stage at all */
static __always_inline void watch_cb_set(const struct dp_ctx *ctx, __u32 mask) {}
static __always_inline void watch_begin(struct dp_ctx *ctx, const struct flow_key *key) {}
static __always_inline void watch_rule(const struct dp_ctx *ctx, __u32 rule_id) {}
static __always_inline void watch_output(const struct dp_ctx *ctx, __u32 ifindex) {}
static __always_inline void watch_copy(const struct dp_ctx *ctx) {}
static __always_inline void watch_copies(const struct dp_ctx *ctx, __u32 n) {}
static __always_inline void watch_emit(const struct dp_ctx *ctx) {}
static __always_inline void watch_release(const struct dp_ctx *ctx) {}
#endif

#endif
