/* Constants and the per-packet context shared by every stage. */
#ifndef VSW_COMMON_H
#define VSW_COMMON_H

/* Upper bound of members per bridge (bounded loops over the members map). Power of two. */
#define MAX_BRIDGE_PORTS 128
#define MAX_PORTS 4096
#define MAX_BRIDGES 256
#define MAX_FDB_ENTRIES 65536

/* The pin directory of the daemon instance is defined by the loader before this file. */
#ifndef VSW_PIN_DIR
#error "VSW_PIN_DIR must be defined by the loader"
#endif

/* Per-packet state, kept small: it lives on the BPF stack. */
struct dp_ctx {
	struct __sk_buff *skb;
	__u32 in_port;
	__u32 bridge;
	__u32 len;      /* skb->len, read before any helper may change the skb */
	__u16 vlan;
	__u8 ingress;   /* 1 at TC ingress of a port, 0 at TC egress of the bridge device */
	__u8 dry_run;   /* 1: decide only, no side effects, report in dp_result */
	__u8 no_peer;   /* a VLAN tag was inserted into the frame: skb->protocol is stale, so
			 * no redirect_peer (a plain redirect re-parses the frame) */
};

#endif
