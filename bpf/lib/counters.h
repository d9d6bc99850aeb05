/* Per-port counters in a per-CPU array indexed by the port's slot (port_info.slot): an array
 * lookup is a few instructions, a hash lookup hashes the key. The daemon zeroes a slot before it
 * gives it to a port. Never touched by dry runs: count_rx and count_drop skip them, count_tx is
 * only called where a frame was sent. */
#ifndef VSW_COUNTERS_H
#define VSW_COUNTERS_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"

struct port_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 drops[DROP_REASON_MAX];
};

BPF_TABLE_PINNED("percpu_array", __u32, struct port_stats, port_stats, MAX_PORTS,
		 VSW_PIN_DIR "/port_stats");

/* NULL for NO_SLOT (a frame from a device that is not a port). */
static __always_inline struct port_stats *stats_get(__u32 slot)
{
	return port_stats.lookup(&slot);
}

static __always_inline void count_rx_now(const struct dp_ctx *ctx)
{
	struct port_stats *st = stats_get(ctx->in_slot);

	if (st) {
		st->rx_packets++;
		st->rx_bytes += ctx->len;
	}
}

/* A parsed frame's rx count. At XDP it waits for finish(): a frame handed to TC is counted
 * there (count_xdp_finished). */
static __always_inline void count_rx(struct dp_ctx *ctx)
{
	ctx->parsed = 1;
	if (ctx->dry_run || ctx_is_xdp(ctx))
		return;
	count_rx_now(ctx);
}

static __always_inline void count_tx(const struct dp_ctx *ctx, __u32 slot)
{
	struct port_stats *st = stats_get(slot);

	if (st) {
		st->tx_packets++;
		st->tx_bytes += ctx->len;
	}
}

/* Drops are counted on the port the frame came in on. */
static __always_inline void count_drop(const struct dp_ctx *ctx, __u32 reason)
{
	struct port_stats *st;

	if (ctx->dry_run)
		return;
	st = stats_get(ctx->in_slot);
	if (st && reason < DROP_REASON_MAX)
		st->drops[reason]++;
}

/* Per port, what its XDP hook did: frames it finished (forwarded, flooded, dropped) and frames it
 * handed to TC. Slot-indexed like port_stats. */
struct xdp_stats {
	__u64 finished;
	__u64 handoffs;
};

BPF_TABLE_PINNED("percpu_array", __u32, struct xdp_stats, xdp_stats, MAX_PORTS,
		 VSW_PIN_DIR "/xdp_stats");

static __always_inline void count_handoff(const struct dp_ctx *ctx)
{
	__u32 slot = ctx->in_slot;
	struct xdp_stats *st;

	if (ctx->dry_run)
		return;
	st = xdp_stats.lookup(&slot);
	if (st)
		st->handoffs++;
}

static __always_inline void count_xdp(const struct dp_ctx *ctx)
{
	__u32 slot = ctx->in_slot;
	struct xdp_stats *st = xdp_stats.lookup(&slot);

	if (st)
		st->finished++;
}

#endif
