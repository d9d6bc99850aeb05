/* Forwarding database: (bridge, vlan, mac) -> port, with learning. */
#ifndef VSW_FDB_H
#define VSW_FDB_H

#define FDB_F_STATIC 1
/* A learned entry's last_seen_ns is refreshed when at least this many jiffies passed since the
 * last refresh: 0.1 s at HZ=1000, 1 s at HZ=100 (the lowest HZ); aging counts in seconds (300 by
 * default). Jiffies because bpf_jiffies64() is inlined (a load), where the coarse clock is a
 * helper call on every packet. */
#define FDB_REFRESH_JIFFIES 100

struct fdb_key {
	__u32 bridge;
	__u16 vlan;
	__u8 mac[ETH_ALEN];
};

struct fdb_entry {
	__u32 ifindex;
	__u32 flags;          /* FDB_F_STATIC: installed by the daemon, never learned over/aged */
	__u64 last_seen_ns;   /* bpf_ktime_get_coarse_ns() = CLOCK_MONOTONIC_COARSE: at most a
			       * tick behind CLOCK_MONOTONIC, which the daemon compares with */
	__u64 seen_jiffies;   /* bpf_jiffies64() at the last refresh (the datapath's own) */
};

BPF_TABLE_PINNED("hash", struct fdb_key, struct fdb_entry, fdb, MAX_FDB_ENTRIES,
		 VSW_PIN_DIR "/fdb");

static __always_inline void fdb_make_key(struct fdb_key *key, __u32 bridge, __u16 vlan,
					 const __u8 *mac)
{
	key->bridge = bridge;
	key->vlan = vlan;
	__builtin_memcpy(key->mac, mac, ETH_ALEN);
}

static __always_inline struct fdb_entry *fdb_lookup(__u32 bridge, __u16 vlan, const __u8 *mac)
{
	struct fdb_key key;

	fdb_make_key(&key, bridge, vlan, mac);
	return fdb.lookup(&key);
}

/* Learns src on in_port. Static entries are never overwritten. Caller skips dry runs. */
static __always_inline void fdb_learn(const struct dp_ctx *ctx, const __u8 *src)
{
	struct fdb_key key;
	struct fdb_entry *old;
	struct fdb_entry entry = {};
	__u64 jiffies = bpf_jiffies64();

	fdb_make_key(&key, ctx->bridge, ctx->vlan, src);
	old = fdb.lookup(&key);
	if (old) {
		if (old->flags & FDB_F_STATIC)
			return;
		if (old->ifindex == ctx->in_port) {
			/* Refresh in place, at most once per FDB_REFRESH_JIFFIES: aging has second
			 * granularity, and a write per packet would bounce the entry's cache line
			 * between CPUs. */
			if (jiffies - old->seen_jiffies >= FDB_REFRESH_JIFFIES) {
				old->seen_jiffies = jiffies;
				old->last_seen_ns = bpf_ktime_get_coarse_ns();
			}
			return;
		}
	}
	entry.ifindex = ctx->in_port;
	entry.last_seen_ns = bpf_ktime_get_coarse_ns();  /* no clocksource read */
	entry.seen_jiffies = jiffies;
	fdb.update(&key, &entry);
}

#endif
