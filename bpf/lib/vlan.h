/* VLANs: ingress classification, egress tag state per target, and the tag operations.
 *
 * The frame's VLAN (ctx->vlan, what the FDB and flooding use) comes from the in_port's mode and
 * the frame's tag (ports.h). Tag changes are tracked in ctx so that no helper runs for a
 * change that is not needed, and so that each output gets exactly the tag state it needs:
 *
 *   tag_now/tag_vid   what the skb carries now (TAG_ORIG: as it arrived, in skb->vlan_tci or
 *                     inline; TAG_PUSHED: inserted inline by this program)
 *   flow_tag/flow_vid what the flow actions asked for (mod_vlan_vid, strip_vlan are lazy: they
 *                     only set these; an output:PORT applies them right before it sends)
 *
 * Flow actions and VLANs:
 *   - output:PORT sends the frame as the actions left it, whatever the port's VLAN mode
 *     (OpenFlow: an explicit output is raw).
 *   - mod_vlan_vid:V then normal/flood switches the frame in VLAN V (no ingress check of
 *     in_port: the rule is the operator's explicit crossing); egress tags follow the targets.
 *   - strip_vlan then normal/flood classifies the frame as an untagged frame of in_port.
 *   - flood floods the frame's VLAN only, like normal.
 * A tag inserted by this program cannot be removed again in the same pass (skb->protocol is
 * stale after bpf_skb_change_head, so bpf_skb_vlan_pop ignores it): such an output is dropped
 * as vlan-failed. It only happens after an output:PORT that needed a pushed tag, followed by an
 * output that needs none; normal and flood order their targets so that it never happens.
 */
#ifndef VSW_VLAN_H
#define VSW_VLAN_H

#include <uapi/linux/if_ether.h>

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/drop_reasons.h"
#include "lib/endian.h"
#include "lib/parse.h"
#include "lib/ports.h"

/* What a target needs. The values of UNTAGGED and TAGGED are the flood classes. */
enum vlan_want {
	WANT_NONE = 0,      /* the port does not carry the frame's VLAN */
	WANT_UNTAGGED = 1,
	WANT_TAGGED = 2,    /* tagged with ctx->vlan */
	WANT_KEEP = 3,      /* VLAN 0 to an unconfigured port: as the flow actions left it */
};

static __always_inline int vlan_bit(const struct port_trunk *t, __u32 vid)
{
	return (t->bits[(vid >> 6) & (VLAN_BITMAP_WORDS - 1)] >> (vid & 63)) & 1;
}

/* Sets ctx->vlan from in_port's mode and the frame's tag (after the flow actions). VID 0 (a
 * priority tag) counts as untagged. Returns 0, or -DROP_VLAN_MISMATCH. */
static __always_inline int vlan_ingress(struct dp_ctx *ctx, const struct port_info *in)
{
	__u16 vid = ctx->flow_tag ? ctx->flow_vid : 0;
	struct port_trunk *t;
	__u8 mode;

	if (ctx->vlan_forced)  /* mod_vlan_vid: ctx->vlan is set */
		return 0;
	mode = in->flags & PORT_F_VLAN_MODE;
	if (!mode) {
		ctx->vlan = vid;
		return 0;
	}
	if (mode == PORT_F_ACCESS) {
		if (vid)
			return -DROP_VLAN_MISMATCH;
		ctx->vlan = in->vlan;
		return 0;
	}
	t = trunk_lookup(ctx->in_port);
	if (!t)  /* being reconfigured from trunk to something else */
		return -DROP_VLAN_MISMATCH;
	if (!vid) {
		if (!t->native)
			return -DROP_VLAN_MISMATCH;
		ctx->vlan = t->native;
		return 0;
	}
	if (vid != t->native && !vlan_bit(t, vid))
		return -DROP_VLAN_MISMATCH;
	ctx->vlan = vid;
	return 0;
}

/* What the port `ifindex` (its port_info `pi`) needs to send a frame of ctx->vlan. */
static __always_inline int vlan_egress(const struct dp_ctx *ctx, __u32 ifindex,
				       const struct port_info *pi)
{
	__u8 mode = pi->flags & PORT_F_VLAN_MODE;
	struct port_trunk *t;

	if (!mode)
		return ctx->vlan ? WANT_TAGGED : WANT_KEEP;
	if (!ctx->vlan)
		return WANT_NONE;
	if (mode == PORT_F_ACCESS)
		return pi->vlan == ctx->vlan ? WANT_UNTAGGED : WANT_NONE;
	t = trunk_lookup(ifindex);
	if (!t)
		return WANT_NONE;
	if (t->native == ctx->vlan)
		return WANT_UNTAGGED;
	return vlan_bit(t, ctx->vlan) ? WANT_TAGGED : WANT_NONE;
}

/* Rewrites the VID of the tag the frame carries (PCP/DEI kept). A tag the kernel holds in
 * skb->vlan_tci stays there (pop + push); an inline tag is rewritten in place. */
static __always_inline int vlan_rewrite(struct dp_ctx *ctx, __u16 vid)
{
	__u16 tci, hw_tci = 0;

	if (ctx_hw_vlan(ctx, &hw_tci)) {
		struct __sk_buff *skb = ctx->skb;
		__u16 proto = skb->vlan_proto;

		tci = (hw_tci & ~VLAN_VID_MASK) | vid;
		if (bpf_skb_vlan_pop(skb))
			return -DROP_VLAN_FAILED;
		return bpf_skb_vlan_push(skb, proto, tci) ? -DROP_VLAN_FAILED : 0;
	}
	if (ctx_load_bytes(ctx, ETH_HLEN, &tci, 2))  /* the TCI follows the Ethernet header */
		return -DROP_VLAN_FAILED;
	tci = (tci & vsw_htons(~VLAN_VID_MASK & 0xffff)) | vsw_htons(vid);
	return ctx_store_bytes(ctx, ETH_HLEN, &tci, 2) ? -DROP_VLAN_FAILED : 0;
}

/* XDP: a tag inserted (vid) or removed (vid < 0) after the MAC addresses, moving them. */
#define VLAN_TAG_LEN 4
#define ETH_MACS_LEN (2 * ETH_ALEN)

static __always_inline int xdp_vlan_push(struct dp_ctx *ctx, __u16 vid)
{
	__u8 macs[ETH_MACS_LEN];
	__be16 *tag;
	void *data;

	if (bpf_xdp_load_bytes(ctx->xdp, 0, macs, sizeof(macs)))
		return -DROP_VLAN_FAILED;
	if (bpf_xdp_adjust_head(ctx->xdp, -VLAN_TAG_LEN))
		return -DROP_VLAN_FAILED;
	data = ctx_data(ctx);
	if (data + ETH_MACS_LEN + VLAN_TAG_LEN > ctx_data_end(ctx))
		return -DROP_VLAN_FAILED;
	__builtin_memcpy(data, macs, sizeof(macs));
	tag = data + ETH_MACS_LEN;
	tag[0] = vsw_htons(ETH_P_8021Q);
	tag[1] = vsw_htons(vid);
	return 0;
}

static __always_inline int xdp_vlan_pop(struct dp_ctx *ctx)
{
	__u8 macs[ETH_MACS_LEN];
	void *data;

	if (bpf_xdp_load_bytes(ctx->xdp, 0, macs, sizeof(macs)))
		return -DROP_VLAN_FAILED;
	if (bpf_xdp_adjust_head(ctx->xdp, VLAN_TAG_LEN))
		return -DROP_VLAN_FAILED;
	data = ctx_data(ctx);
	if (data + ETH_MACS_LEN > ctx_data_end(ctx))
		return -DROP_VLAN_FAILED;
	__builtin_memcpy(data, macs, sizeof(macs));
	return 0;
}

/* Pushes an 802.1Q tag on an untagged frame and sets ctx->tag_now. Inline (visible in the
 * frame on every path, test runs included; bpf_skb_change_head works for any EtherType,
 * unlike bpf_skb_adjust_room): skb->protocol stays the inner type, so no redirect_peer
 * afterwards (a plain redirect re-parses the frame) and no pop later in this pass (TAG_PUSHED;
 * the XDP hook follows the same rule, so both hooks decide alike).
 * A GSO frame gets the kernel's own tag in skb->vlan_tci instead: segmentation and offloads
 * read skb->protocol, which an inline tag leaves stale. */
static __always_inline int vlan_push(struct dp_ctx *ctx, __u16 vid)
{
	struct __sk_buff *skb = ctx->skb;
	__u8 macs[ETH_MACS_LEN];
	__be16 tag[2];  /* TPID, TCI: between the MAC addresses and the EtherType */

	if (ctx_is_xdp(ctx)) {
		ctx->tag_now = TAG_PUSHED;
		return xdp_vlan_push(ctx, vid);
	}
	if (skb->gso_size) {
		ctx->tag_now = TAG_ORIG;
		return bpf_skb_vlan_push(skb, vsw_htons(ETH_P_8021Q), vid) ? -DROP_VLAN_FAILED : 0;
	}
	ctx->tag_now = TAG_PUSHED;
	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return -DROP_VLAN_FAILED;
	if (bpf_skb_change_head(skb, sizeof(tag), 0))
		return -DROP_VLAN_FAILED;
	ctx->no_peer = 1;
	tag[0] = vsw_htons(ETH_P_8021Q);
	tag[1] = vsw_htons(vid);
	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0))
		return -DROP_VLAN_FAILED;
	return bpf_skb_store_bytes(skb, sizeof(macs), tag, sizeof(tag), 0) ? -DROP_VLAN_FAILED : 0;
}

/* Removes the tag the frame carries as it arrived (TAG_ORIG). */
static __always_inline int vlan_pop(struct dp_ctx *ctx)
{
	if (ctx_is_xdp(ctx))
		return xdp_vlan_pop(ctx);
	return bpf_skb_vlan_pop(ctx->skb) ? -DROP_VLAN_FAILED : 0;
}

/* Brings the frame to the tag state wanted (tagged with vid, or untagged). Dry runs change
 * nothing. Returns 0, or -DROP_VLAN_FAILED. */
static __always_inline int vlan_apply(struct dp_ctx *ctx, __u8 tagged, __u16 vid)
{
	int err = 0;

	if (ctx->dry_run)
		return 0;
	vid &= VLAN_VID_MASK;
	if (tagged) {
		if (ctx->tag_now) {
			if (ctx->tag_vid == vid)
				return 0;
			err = vlan_rewrite(ctx, vid);
		} else {
			err = vlan_push(ctx, vid);
		}
		ctx->tag_vid = vid;
		return err;
	}
	if (!ctx->tag_now)
		return 0;
	if (ctx->tag_now == TAG_PUSHED)
		return -DROP_VLAN_FAILED;
	ctx->tag_now = TAG_NONE;
	ctx->tag_vid = 0;
	return vlan_pop(ctx);
}

/* vlan_apply for a vlan_egress() answer other than WANT_NONE. */
static __always_inline int vlan_apply_want(struct dp_ctx *ctx, int want)
{
	if (want == WANT_TAGGED)
		return vlan_apply(ctx, 1, ctx->vlan);
	if (want == WANT_UNTAGGED)
		return vlan_apply(ctx, 0, 0);
	return vlan_apply(ctx, ctx->flow_tag, ctx->flow_vid);
}

#endif
