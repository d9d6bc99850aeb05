/* Per-port counters in a per-CPU hash. Never touched by dry runs. */
#ifndef VSW_COUNTERS_H
#define VSW_COUNTERS_H

struct port_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 drops[DROP_REASON_MAX];
};

BPF_TABLE_PINNED("percpu_hash", __u32, struct port_stats, port_stats, MAX_PORTS,
		 VSW_PIN_DIR "/port_stats");

static __always_inline struct port_stats *stats_get(__u32 ifindex)
{
	struct port_stats *st = port_stats.lookup(&ifindex);

	if (!st) {
		struct port_stats zero = {};

		port_stats.insert(&ifindex, &zero);  /* BPF_NOEXIST: never resets a racing insert */
		st = port_stats.lookup(&ifindex);
	}
	return st;
}

static __always_inline void count_rx(const struct dp_ctx *ctx)
{
	struct port_stats *st = stats_get(ctx->in_port);

	if (st) {
		st->rx_packets++;
		st->rx_bytes += ctx->len;
	}
}

static __always_inline void count_tx(const struct dp_ctx *ctx, __u32 ifindex)
{
	struct port_stats *st = stats_get(ifindex);

	if (st) {
		st->tx_packets++;
		st->tx_bytes += ctx->len;
	}
}

/* Drops are counted on the port the frame came in on. */
static __always_inline void count_drop(const struct dp_ctx *ctx, __u32 reason)
{
	struct port_stats *st = stats_get(ctx->in_port);

	if (st && reason < DROP_REASON_MAX)
		st->drops[reason]++;
}

#endif
