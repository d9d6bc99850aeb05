/* VXLAN tunnel ports: an external (collect_md) VXLAN device per bridge, one VNI each. The
 * pipeline reads the tunnel key of every frame a tunnel port receives (its VNI checked, the
 * sender's VTEP learned with the source MAC: fdb.h) and sets it on every frame it sends there:
 * the VTEP of the destination's FDB entry, or each VTEP of the bridge for a flood (head-end
 * replication). The daemon writes both maps (vswitchd/datapath/tunnels.py). */
#ifndef VSW_TUNNEL_H
#define VSW_TUNNEL_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/fdb.h"

#define MAX_VTEPS 64    /* remote VTEPs of one tunnel port */
#define TUNNEL_TTL 64

struct tunnel_info {
	__u32 vni;
	__u32 flags;            /* reserved (IPv6 underlay) */
	struct tun_addr local;  /* the tunnel's source, 0 = by route */
};

/* A bridge's tunnel port and its remote VTEPs, replaced whole by the daemon (like
 * bridge_members): keyed by the bridge, so a flood finds it with one lookup. */
struct vtep_list {
	__u32 ifindex;          /* the bridge's tunnel port */
	__u32 count;
	struct tun_addr addr[MAX_VTEPS];
};

BPF_TABLE_PINNED("hash", __u32, struct tunnel_info, tunnels, MAX_PORTS,
		 VSW_PIN_DIR "/tunnels", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", __u32, struct vtep_list, vteps, MAX_BRIDGES,
		 VSW_PIN_DIR "/vteps", BPF_F_NO_PREALLOC);

/* A frame received by a tunnel port (TC): its VNI must be the port's; ctx->tun becomes
 * the sender's VTEP. A dry run has no tunnel metadata: it is traced as from an unknown VTEP. */
static __always_inline int tunnel_rx(struct dp_ctx *ctx)
{
	struct bpf_tunnel_key key = {};
	struct tunnel_info *ti;

	if (ctx_is_xdp(ctx) || ctx->dry_run)
		return 0;
	if (bpf_skb_get_tunnel_key(ctx->skb, &key, sizeof(key), 0) < 0)
		return -DROP_TUNNEL_NO_KEY;
	ti = tunnels.lookup(&ctx->in_port);
	if (!ti || key.tunnel_id != ti->vni)
		return -DROP_TUNNEL_VNI;
	ctx->tun = key.remote_ipv4;
	return 0;
}

/* Sets the tunnel key of a frame to the tunnel of TI and VTEP REMOTE (TC only): 0, or -1. */
static __always_inline int tunnel_key_set(const struct dp_ctx *ctx, const struct tunnel_info *ti,
					  __u32 remote)
{
	struct bpf_tunnel_key key = {};

	if (ctx_is_xdp(ctx) || !remote)
		return -1;
	key.tunnel_id = ti->vni;
	key.remote_ipv4 = remote;
	key.local_ipv4 = ti->local.w[0];
	key.tunnel_ttl = TUNNEL_TTL;
	return bpf_skb_set_tunnel_key(ctx->skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0 ? -1 : 0;
}

/* The same for tunnel port IFINDEX. */
static __always_inline int tunnel_set_key(const struct dp_ctx *ctx, __u32 ifindex, __u32 remote)
{
	struct tunnel_info *ti = tunnels.lookup(&ifindex);

	return ti ? tunnel_key_set(ctx, ti, remote) : -1;
}

static __always_inline struct vtep_list *vteps_lookup(__u32 bridge)
{
	return vteps.lookup(&bridge);
}

#endif
