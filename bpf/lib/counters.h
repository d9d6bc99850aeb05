/* Per-port counters in a per-CPU array indexed by the port's slot (port_info.slot): an array
 * lookup is a few instructions, a hash lookup hashes the key. The daemon zeroes a slot before it
 * gives it to a port. Never touched by dry runs: count_rx and count_drop skip them, count_tx is
 * only called where a frame was sent. */
#ifndef VSW_COUNTERS_H
#define VSW_COUNTERS_H

#include "lib/common.h"
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

static __always_inline void count_rx(const struct dp_ctx *ctx)
{
	struct port_stats *st;

	if (ctx->dry_run)
		return;
	st = stats_get(ctx->in_slot);
	if (st) {
		st->rx_packets++;
		st->rx_bytes += ctx->len;
	}
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

#endif
