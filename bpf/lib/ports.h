/* Port table, bridge membership and per-port VLAN configuration. Written by the daemon, read
 * by the pipeline. */
#ifndef VSW_PORTS_H
#define VSW_PORTS_H

#include "lib/common.h"

enum port_kind {
	PORT_KIND_PEER = 1,   /* veth whose peer is in another netns: redirect_peer at ingress */
	PORT_KIND_DEVICE = 2, /* tap, system NIC: plain redirect (egress of the device) */
	PORT_KIND_BRIDGE = 3, /* the bridge device itself = the host: redirect to its ingress */
	PORT_KIND_TUNNEL = 4, /* a VXLAN device: the tunnel key set, then redirect (tunnel.h) */
};

/* port_info.flags: the VLAN mode. Neither bit = unconfigured (carries every VLAN: untagged =
 * VLAN 0, tagged = its VID, sent as it is). */
#define PORT_F_ACCESS 1  /* untagged on the wire, VLAN port_info.vlan inside */
#define PORT_F_TRUNK 2   /* allowed VIDs + native in port_trunks[ifindex] */
#define PORT_F_VLAN_MODE (PORT_F_ACCESS | PORT_F_TRUNK)
/* The XDP programs may redirect to the port: it takes XDP frames (a TAP; a veth whose peer has
 * NAPI; a NIC in native mode). Without it, a frame for the port goes through TC (ctx.h). */
#define PORT_F_XDP_TX 4

struct port_info {
	__u32 bridge;  /* ifindex of the bridge device = bridge id */
	__u16 vlan;    /* PORT_F_ACCESS: the access VID; otherwise 0 */
	__u8 kind;     /* enum port_kind */
	__u8 flags;    /* PORT_F_* */
	__u16 slot;    /* the port's counters: port_stats[slot] (< MAX_PORTS, daemon-assigned) */
	__u16 pad;
};

/* A forwarding target as the stages pass it around: kind, counter slot and flags in one
 * scalar. */
#define PORT_REF(pi) ((__u32)(pi)->kind | ((__u32)(pi)->slot << 8) | ((__u32)(pi)->flags << 24))
#define PORT_REF_KIND(ref) ((ref) & 0xff)
#define PORT_REF_SLOT(ref) (((ref) >> 8) & 0xffff)
#define PORT_REF_FLAGS(ref) ((ref) >> 24)

/* A trunk: 4096-bit membership bitmap (bit v of word v/64) and the native VID (0 = none; it is
 * a member whether or not its bit is set, sent untagged). One value holds the whole trunk, so a
 * reconfiguration is one atomic replacement for packets. The daemon writes this entry before a
 * port_info with PORT_F_TRUNK and deletes it after a port_info without it. */
#define VLAN_BITMAP_WORDS 64

struct port_trunk {
	__u16 native;
	__u16 pad[3];
	__u64 bits[VLAN_BITMAP_WORDS];
};

/* Replacing a whole value is atomic: the daemon rewrites the list, never patches it. */
struct bridge_members {
	__u32 count;
	__u32 ifindex[MAX_BRIDGE_PORTS];
};

BPF_TABLE_PINNED("hash", __u32, struct port_info, ports, MAX_PORTS, VSW_PIN_DIR "/ports");
BPF_TABLE_PINNED("hash", __u32, struct bridge_members, members, MAX_BRIDGES,
		 VSW_PIN_DIR "/members");
BPF_TABLE_PINNED("hash", __u32, struct port_trunk, port_trunks, MAX_PORTS,
		 VSW_PIN_DIR "/port_trunks", BPF_F_NO_PREALLOC);

/* A per-CPU cache of the ports hash in front of it: an array read instead of a hash lookup
 * (the in port of every packet; a known destination's port mostly comes from its FDB cache
 * slot, fdb_slot_port in fdb.h). Only this CPU's programs write its copy, so no reader sees a
 * half-written entry. An entry is valid while port_gen holds the value it was
 * filled under: the daemon bumps port_gen after every change of the ports map (pinned, so
 * every program instance's cache sees the bump), and a fill uses the port_gen read before its
 * hash lookup, so a fill that raced with a change is invalid at once. */
#define PORT_CACHE_SIZE 256  /* power of two: entry ifindex & (PORT_CACHE_SIZE - 1) */

struct port_cache_entry {
	__u64 gen;      /* port_gen when filled */
	__u32 ifindex;  /* 0 = empty */
	struct port_info info;
	/* The last source address found learned on this port (fdb_learn): its VLAN and MAC
	 * (fdb_ref_src_key, 0 = none), fdb_gen then, and its entry's seen_jiffies. While fdb_gen holds
	 * that value no FDB entry changed, so the next frame from it skips the FDB cache. */
	__u64 src_key;
	__u64 src_gen;
	__u64 src_jiffies;
};

BPF_TABLE_PINNED("array", __u32, __u64, port_gen, 1, VSW_PIN_DIR "/port_gen");
BPF_PERCPU_ARRAY(port_cache, struct port_cache_entry, PORT_CACHE_SIZE);

/* The port's info, or NULL if ifindex is not a port. The pointer is into the cache: valid
 * until the next port_lookup (another ifindex may take the entry). */
static __always_inline struct port_info *port_lookup(__u32 ifindex)
{
	__u32 zero = 0, i = ifindex & (PORT_CACHE_SIZE - 1);
	struct port_cache_entry *c = port_cache.lookup(&i);
	__u64 *genp = port_gen.lookup(&zero);
	struct port_info *pi;
	__u64 gen;

	if (!c || !genp)
		return NULL;
	gen = *genp;
	if (c->ifindex == ifindex && c->gen == gen)
		return &c->info;
	pi = ports.lookup(&ifindex);
	if (!pi)
		return NULL;
	c->info = *pi;
	c->ifindex = ifindex;
	c->gen = gen;
	c->src_key = 0;
	return &c->info;
}

/* The cache entry of ifindex, port_lookup'ed earlier by this packet, or NULL if another port
 * has taken it since. */
static __always_inline struct port_cache_entry *port_cached(__u32 ifindex)
{
	__u32 i = ifindex & (PORT_CACHE_SIZE - 1);
	struct port_cache_entry *c = port_cache.lookup(&i);

	return c && c->ifindex == ifindex ? c : NULL;
}

static __always_inline struct bridge_members *members_lookup(__u32 bridge)
{
	return members.lookup(&bridge);
}

static __always_inline struct port_trunk *trunk_lookup(__u32 ifindex)
{
	return port_trunks.lookup(&ifindex);
}

#endif
