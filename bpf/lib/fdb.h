/* Forwarding database: (bridge, vlan, mac) -> port, with learning. */
#ifndef VSW_FDB_H
#define VSW_FDB_H

#include <uapi/linux/if_ether.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/ports.h"

#define FDB_F_STATIC 1
/* The entry's port is a tunnel: fdb_remote holds the VTEP the MAC is behind. Written before the
 * entry, so a reader that sees the flag finds the remote. */
#define FDB_F_REMOTE 2
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

/* An underlay address (a VTEP): IPv4 in w[0], host byte order as struct bpf_tunnel_key has it;
 * w[1..3] 0 (room for IPv6). */
struct tun_addr {
	__u32 w[4];
};

/* The remote VTEP of each FDB_F_REMOTE entry (a map of its own: fdb's layout stays that of
 * the running datapath, which a restarted daemon adopts). */
BPF_TABLE_PINNED("hash", struct fdb_key, struct tun_addr, fdb_remote, MAX_FDB_ENTRIES,
		 VSW_PIN_DIR "/fdb_remote", BPF_F_NO_PREALLOC);

/* A per-CPU cache of the fdb hash, in front of it for both lookups of every packet (its source
 * when learning, its destination): a slot chosen by a hash of the key, read in a few
 * instructions where the hash map hashes and compares in a call. A slot is valid while fdb_gen
 * holds the value it was filled under, read before the hash lookup that filled it: a fill that
 * raced with a change is invalid at once.
 *
 * fdb_gen changes after every change of an entry's port or flags, never goes back, and never
 * repeats a value: the program adds 1 (atomically) after it learns a new or moved address; the
 * daemon, after it adds or deletes entries, writes its value read + FDB_GEN_DAEMON_STEP, above
 * anything the program's additions can reach meanwhile (a plain write would otherwise undo
 * them). Refreshes of last_seen_ns change no port and bump nothing. Only this CPU's programs
 * write its slots, so no reader sees a half-written one. */
#define FDB_CACHE_BITS 10
#define FDB_CACHE_SIZE (1 << FDB_CACHE_BITS)
#define FDB_GEN_DAEMON_STEP 0x100000000  /* 2^32 */

struct fdb_cache_slot {
	__u64 gen;           /* fdb_gen when filled */
	__u64 key_lo;        /* the fdb_key: bridge, vlan, mac[0..1] */
	__u32 key_hi;        /* mac[2..5] */
	__u32 ifindex;       /* 0 = empty */
	__u32 flags;
	__u32 remote;        /* FDB_F_REMOTE: the VTEP (fdb_remote's w[0]) */
	__u64 seen_jiffies;  /* the entry's, as this CPU last read or set it */
	/* ifindex's port_info, copied by fdb_slot_port when port_gen + 1 was out_gen (0: not
	 * copied): the destination's port without a port_lookup of its own. */
	__u64 out_gen;
	struct port_info out;
	__u32 pad;
};

BPF_TABLE_PINNED("array", __u32, __u64, fdb_gen, 1, VSW_PIN_DIR "/fdb_gen");
BPF_PERCPU_ARRAY(fdb_cache, struct fdb_cache_slot, FDB_CACHE_SIZE);

/* The key as the hash map has it, and as two words for the cache. */
struct fdb_ref {
	struct fdb_key key;
	__u64 lo;
	__u32 hi;
	__u64 gen;                   /* fdb_gen, read by fdb_ref_make before any lookup */
	__u64 *genp;                 /* where: the learning step bumps it */
	struct fdb_cache_slot *slot; /* fdb_ref_locate's; NULL if fdb_gen could not be read */
};

/* The key, its words and fdb_gen; the cache slot is fdb_ref_locate's (not needed when the in
 * port's entry already knows the source, fdb_learn). */
static __always_inline void fdb_ref_make(struct fdb_ref *r, __u32 bridge, __u16 vlan,
					 const __u8 *mac)
{
	__u32 zero = 0;

	r->key.bridge = bridge;
	r->key.vlan = vlan;
	__builtin_memcpy(r->key.mac, mac, ETH_ALEN);
	r->lo = bridge | (__u64)vlan << 32 | (__u64)mac[0] << 48 | (__u64)mac[1] << 56;
	r->hi = mac[2] | (__u32)mac[3] << 8 | (__u32)mac[4] << 16 | (__u32)mac[5] << 24;
	r->slot = NULL;
	r->genp = fdb_gen.lookup(&zero);
	if (r->genp)
		r->gen = *r->genp;
}

/* r's FDB cache slot, chosen by a hash of its key (after fdb_ref_make). */
static __always_inline void fdb_ref_locate(struct fdb_ref *r)
{
	__u32 i;

	if (!r->genp)
		return;
	i = (((__u32)r->lo ^ (__u32)(r->lo >> 32) ^ r->hi) * 0x9e3779b1) >> (32 - FDB_CACHE_BITS);
	r->slot = fdb_cache.lookup(&i);
}

/* r's VLAN and MAC in one word, as the port cache keeps a source (port_cache_entry.src_key,
 * ports.h): r's words without the bridge, which the port implies. Never 0 for a source that
 * is learned (a zero MAC is not). */
static __always_inline __u64 fdb_ref_src_key(const struct fdb_ref *r)
{
	return r->lo >> 32 | (__u64)r->hi << 32;
}

/* The cached entry of r's key, or NULL. */
static __always_inline struct fdb_cache_slot *fdb_cached(const struct fdb_ref *r)
{
	struct fdb_cache_slot *c = r->slot;

	if (c && c->ifindex && c->gen == r->gen && c->key_lo == r->lo && c->key_hi == r->hi)
		return c;
	return NULL;
}

static __always_inline void fdb_cache_fill(const struct fdb_ref *r, const struct fdb_entry *e,
					  __u32 remote)
{
	struct fdb_cache_slot *c = r->slot;

	if (!c)
		return;
	c->gen = r->gen;
	c->key_lo = r->lo;
	c->key_hi = r->hi;
	c->ifindex = e->ifindex;
	c->flags = e->flags;
	c->remote = remote;
	c->seen_jiffies = e->seen_jiffies;
	c->out_gen = 0;
}

/* The VTEP of an FDB_F_REMOTE entry (0 if none). */
static __always_inline __u32 fdb_remote_of(const struct fdb_ref *r, const struct fdb_entry *e)
{
	struct tun_addr *a;

	if (!(e->flags & FDB_F_REMOTE))
		return 0;
	a = fdb_remote.lookup(&r->key);
	return a ? a->w[0] : 0;
}

/* The port of (bridge, vlan, mac), 0 if unknown; *remote: the VTEP when it is a tunnel's;
 * *slot: the key's FDB cache slot (NULL: no caching), for fdb_slot_port. */
static __always_inline __u32 fdb_port_slot(__u32 bridge, __u16 vlan, const __u8 *mac,
					   __u32 *remote, struct fdb_cache_slot **slot)
{
	struct fdb_cache_slot *c;
	struct fdb_entry *e;
	struct fdb_ref r;

	fdb_ref_make(&r, bridge, vlan, mac);
	fdb_ref_locate(&r);
	*slot = r.slot;
	c = fdb_cached(&r);
	if (c) {
		*remote = c->remote;
		return c->ifindex;
	}
	e = fdb.lookup(&r.key);
	if (!e)
		return 0;
	*remote = fdb_remote_of(&r, e);
	fdb_cache_fill(&r, e, *remote);
	return e->ifindex;
}

static __always_inline __u32 fdb_port(__u32 bridge, __u16 vlan, const __u8 *mac,
				      __u32 *remote)
{
	struct fdb_cache_slot *slot;

	return fdb_port_slot(bridge, vlan, mac, remote, &slot);
}

/* The port_info of port, found by fdb_port_slot in slot s: the copy in s while port_gen is
 * what it was when copied, else port_lookup's (copied into s under the port_gen read before
 * it, so a copy that raced with a port change is stale at once). The info depends on the
 * ifindex alone: any slot holding that ifindex serves. */
static __always_inline struct port_info *fdb_slot_port(struct fdb_cache_slot *s, __u32 port)
{
	__u32 zero = 0;
	__u64 *genp = port_gen.lookup(&zero);
	struct port_info *pi;
	__u64 gen;

	if (!genp)
		return NULL;
	gen = *genp + 1;
	if (s && s->ifindex == port && s->out_gen == gen)
		return &s->out;
	pi = port_lookup(port);
	if (pi && s && s->ifindex == port) {
		s->out = *pi;
		s->out_gen = gen;
	}
	return pi;
}

/* The host's MACs (static entries on the bridge device, kept in VLAN 0) are known in every
 * VLAN: a frame for the gateway in VLAN N goes to the host alone, not flooded to the VLAN's
 * ports. Asked on a miss in VLAN N only. The bridge's ifindex, or 0. */
static __always_inline __u32 fdb_host_port(__u32 bridge, const __u8 *mac)
{
	struct fdb_key k = { .bridge = bridge, .vlan = 0 };
	struct fdb_entry *e;

	__builtin_memcpy(k.mac, mac, ETH_ALEN);
	e = fdb.lookup(&k);
	return e && e->flags & FDB_F_STATIC && e->ifindex == bridge ? bridge : 0;
}

/* A source address pinned by a static entry to IFINDEX: never learned over. The host's own MAC
 * (the bridge device's entry) sent by any other port is a spoof: the frame is dropped, or the
 * host's frames would go to that port. */
static __always_inline int fdb_static_src(const struct dp_ctx *ctx, __u32 ifindex)
{
	if (ifindex == ctx->bridge && ctx->in_port != ctx->bridge)
		return -DROP_HOST_MAC_SPOOF;
	return 0;
}

/* Learns src on in_port (not in a dry run); returns 0, or a drop for a spoof of the host's MAC
 * (also in a dry run). Static entries are never overwritten; the host's MAC, whose entry is in
 * VLAN 0, is protected in every VLAN. A known address on the same port costs a read of the
 * in port's cache entry (its src_key, ports.h), or else of its FDB cache slot; its entry is
 * refreshed (in place) at most once per FDB_REFRESH_JIFFIES: aging has second
 * granularity, and a write per packet would bounce the entry's cache line between CPUs.
 * From a tunnel (ctx->tun), the address is learned behind that VTEP: the same port
 * from another VTEP is a move. */
static __always_inline int fdb_learn(const struct dp_ctx *ctx, const __u8 *src)
{
	struct fdb_cache_slot *c;
	struct fdb_entry *old, *host;
	struct fdb_entry entry = {};
	struct fdb_ref r;
	__u64 jiffies = bpf_jiffies64();

	/* not from a tunnel: the in port's cache entry does not hold the VTEP */
	struct port_cache_entry *pc = ctx->tun ? NULL : port_cached(ctx->in_port);
	__u64 src_key;

	fdb_ref_make(&r, ctx->bridge, ctx->vlan, src);
	src_key = fdb_ref_src_key(&r);
	if (pc && r.genp && pc->src_key == src_key && pc->src_gen == r.gen &&
	    jiffies - pc->src_jiffies < FDB_REFRESH_JIFFIES)
		return 0;  /* learned here, nothing changed since, no refresh due */
	fdb_ref_locate(&r);
	c = fdb_cached(&r);
	if (c && c->flags & FDB_F_STATIC)
		return fdb_static_src(ctx, c->ifindex);
	if (c && c->ifindex == ctx->in_port && c->remote == ctx->tun &&
	    jiffies - c->seen_jiffies < FDB_REFRESH_JIFFIES) {
		if (pc) {  /* under the fdb_gen the slot was valid for */
			pc->src_key = src_key;
			pc->src_gen = r.gen;
			pc->src_jiffies = c->seen_jiffies;
		}
		return 0;
	}
	old = fdb.lookup(&r.key);
	if (old && old->flags & FDB_F_STATIC) {
		fdb_cache_fill(&r, old, fdb_remote_of(&r, old));
		return fdb_static_src(ctx, old->ifindex);
	}
	if (ctx->vlan) {  /* the host's MAC has its entry in VLAN 0 only */
		struct fdb_key host_key = r.key;

		host_key.vlan = 0;
		host = fdb.lookup(&host_key);
		if (host && host->flags & FDB_F_STATIC && fdb_static_src(ctx, host->ifindex))
			return -DROP_HOST_MAC_SPOOF;
	}
	if (ctx->dry_run)
		return 0;
	if (old && old->ifindex == ctx->in_port && fdb_remote_of(&r, old) == ctx->tun) {
		if (jiffies - old->seen_jiffies >= FDB_REFRESH_JIFFIES) {
			old->seen_jiffies = jiffies;
			old->last_seen_ns = bpf_ktime_get_coarse_ns();
		}
		fdb_cache_fill(&r, old, ctx->tun);
		return 0;
	}
	entry.ifindex = ctx->in_port;
	entry.last_seen_ns = bpf_ktime_get_coarse_ns();  /* no clocksource read */
	entry.seen_jiffies = jiffies;
	if (ctx->tun) {  /* the remote first: a reader seeing the flag finds it */
		struct tun_addr a = { .w = { ctx->tun } };

		fdb_remote.update(&r.key, &a);
		entry.flags = FDB_F_REMOTE;
	}
	fdb.update(&r.key, &entry);
	if (r.genp)
		__sync_fetch_and_add(r.genp, 1);
	return 0;
}

#endif
