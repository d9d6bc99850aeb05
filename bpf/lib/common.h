/* Constants and the per-packet context shared by every stage. */
#ifndef VSW_COMMON_H
#define VSW_COMMON_H

#include <uapi/linux/bpf.h>

/* Upper bound of members per bridge (bounded loops over the members map). Power of two. */
#define MAX_BRIDGE_PORTS 1024
#define MAX_BRIDGES 256
/* Defaults of the sizes the daemon's config may set (`datapath:`, build.Limits), which then
 * defines them before this file. */
#ifndef MAX_PORTS
#define MAX_PORTS 4096
#endif
#ifndef MAX_FDB_ENTRIES
#define MAX_FDB_ENTRIES 65536
#endif

/* The pin directory of the daemon instance is defined by the loader before this file. */
#ifndef VSW_PIN_DIR
#error "VSW_PIN_DIR must be defined by the loader"
#endif

/* dp_ctx.tag_now: the tag the skb carries now. */
#define TAG_NONE 0
#define TAG_ORIG 1    /* as it arrived (skb->vlan_tci or inline) */
#define TAG_PUSHED 2  /* inserted inline by this program */

/* Per-packet state, kept small: it lives on the BPF stack. */
#define NO_SLOT 0xffff  /* dp_ctx.in_slot of a frame from a device that is not a port */

struct dp_ctx {
	union {
		struct __sk_buff *skb;  /* hook HOOK_TC */
		struct xdp_md *xdp;     /* hook HOOK_XDP */
	};
	__u32 *xcb;     /* XDP: the packet's scratch words (ctx_cb, ctx.h) */
	__u64 dry_run;  /* 1: decide only, no side effects, report in dp_result. A u64: the result_*()
			 * helpers test it at every step, and a narrower field costs a mask each time */
	__u32 in_port;
	__u16 in_slot;  /* the in port's port_info.slot (counters.h), NO_SLOT until known */
	__u32 bridge;
	__u32 len;      /* skb->len, read before any helper may change the skb */
	__u16 vlan;     /* the frame's VLAN inside the switch (FDB, flooding): vlan.h */
	__u16 tag_vid;  /* VID of the tag the skb carries now (tag_now != TAG_NONE) */
	__u16 flow_vid; /* the tag the flow actions want (flow_tag = 1) */
	__u8 tag_now;   /* TAG_NONE / TAG_ORIG / TAG_PUSHED (vlan.h) */
	__u8 flow_tag;  /* 1: the flow actions want a tag (flow_vid), 0: none */
	__u8 vlan_forced; /* mod_vlan_vid set ctx->vlan: no ingress classification */
	__u8 ingress;   /* 1 at TC ingress of a port, 0 at TC egress of the bridge device */
	__u8 no_peer;   /* a VLAN tag was inserted into the frame: skb->protocol is stale, so
			 * no redirect_peer (a plain redirect re-parses the frame) */
	__u8 verdict;   /* the decision (VERDICT_*: result_verdict/result_drop, result.h), for the
			 * watch event (watch.h) */
	__u8 reason;    /* its drop reason */
	__u8 hook;      /* HOOK_TC / HOOK_XDP (ctx.h): a constant set at the program's entry */
	__u8 parsed;    /* the frame parsed: rx is counted (XDP: in finish, if it finishes it) */
	__u32 rule_id;  /* the matched flow rule, 0 = none (XDP: counted in finish) */
	__u8 csum_partial; /* XDP: a TCP/UDP checksum left for the receiver to finish (parse.h) */
	/* A VTEP (tunnel.h): first the one the frame came from, when in_port is a tunnel (it is
	 * learned with the source MAC), then the one of its destination's FDB entry, when that is
	 * a tunnel port (never both: a frame is not sent back into its tunnel). */
	__u32 tun;
};

#endif
