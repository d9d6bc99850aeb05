/* Packet-in: a rule's `controller[:max_len]` action sends the frame's first max_len bytes, with
 * where it came from, to the daemon, which hands them to the controllers subscribed to the
 * bridge (SubscribePacketIn).
 *
 *   packet_in_ctl[0]      the rate limit: packet-ins per second per CPU (the daemon writes it
 *                         at load; 0 refuses all)
 *   packet_in_bridges     the bridges a controller subscribed to (key PACKET_IN_ALL_BRIDGES:
 *                         every bridge); per CPU, the packet-ins of the entry's bridges lost to
 *                         the rate limit or a full ring (the daemon's `lost N` per stream)
 *   packet_in_bucket      per-CPU token bucket (bucket.h): bursts of one second's worth
 *   packet_in_stats       per-CPU counters: sent, rate_limited, ring_full, unwatched (no
 *                         controller subscribed to the frame's bridge)
 *   packet_in_scratch     per-CPU: the event being built (header and frame bytes)
 *   packet_in_events      the ring buffer to the daemon; a record is the header and only the
 *                         bytes copied (default 128), not the whole scratch
 *
 * Only TC sends packet-ins: at XDP a rule with a controller action hands the frame to TC
 * (HANDOFF_CONTROLLER) before anything changed it. The packet-in goes when the rule matches,
 * before its other actions run (the loader puts the controller action first and sets
 * FLOW_F_CONTROLLER), so the frame is the one received: a tag the kernel took out of it
 * (skb->vlan_tci) is put back in the copy. Dry runs send and count nothing.
 *
 * Not pinned: they belong to the program instance (its daemon reads the ring and owns the
 * subscriptions), like the watch maps. vswitchd/datapath/constants.py parses the PACKET_IN_*
 * defines; vswitchd/datapath/packet_in.py decodes events with the layout of struct
 * packet_in_event (bcc's ctypes of packet_in_scratch): change both together, and bump
 * PACKET_IN_EVENT_VERSION when the event changes.
 */
#ifndef VSW_PACKET_IN_H
#define VSW_PACKET_IN_H

#include "lib/bucket.h"
#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/endian.h"
#include "lib/flow.h"
#include "lib/ports.h"
#include "lib/vlan.h"

#define PACKET_IN_EVENT_VERSION 1
#define PACKET_IN_EVENT_FRAME 1      /* event type: a frame for the controllers */
#define PACKET_IN_MAX_LEN 1518       /* bytes of a frame sent at most (max_len's limit) */
#define PACKET_IN_DEFAULT_LEN 128    /* max_len 0 in the API */
#define PACKET_IN_DEFAULT_RATE 1000
#define PACKET_IN_RING_PAGES 512     /* 2 MiB: ~12 000 packet-ins of 128 bytes */
#define PACKET_IN_ALL_BRIDGES 0      /* packet_in_bridges key of a subscription to every bridge */
/* A copy's length as the verifier sees it: ((n - 1) & PACKET_IN_LEN_MASK) + 1, in 1..MASK + 1
 * whatever clang knows of n (a bound checked on one register is lost on its spilled copies).
 * data[] has room for that past the tag the copy may insert. */
#define PACKET_IN_LEN_MASK 2047

struct packet_in_ctl {
	__u64 rate;  /* packet-ins per second per CPU */
};

struct packet_in_stats {
	__u64 sent;
	__u64 rate_limited;
	__u64 ring_full;
	__u64 unwatched;
};

struct packet_in_watch {
	__u64 lost;  /* rate-limited or ring-full packet-ins of the entry's bridges */
};

/* The first 4 bytes are the versioned header (version, type, length of the record: the
 * header and data_len bytes); readers refuse a version or type they do not know. */
struct packet_in_event {
	__u8 version;      /* PACKET_IN_EVENT_VERSION */
	__u8 type;         /* PACKET_IN_EVENT_FRAME */
	__u16 length;      /* offsetof(data) + data_len */
	__u32 bridge;      /* ifindex of the bridge device */
	__u32 in_port;     /* ifindex */
	__u32 rule_id;     /* the rule whose controller action sent it */
	__u32 total_len;   /* the frame's whole length, tags included */
	__u16 vlan;        /* the frame's VLAN in the switch (in_port's classification; 0: none) */
	__u8 hook;         /* HOOK_TC (ctx.h) */
	__u8 pad;
	__u64 time_ns;     /* bpf_ktime_get_ns() = CLOCK_MONOTONIC */
	__u32 data_len;    /* bytes of data[] sent: min(total_len, max_len) */
	__u32 pad2;
	__u8 data[PACKET_IN_LEN_MASK + 1 + ETH_MACS_LEN + VLAN_TAG_LEN];  /* data_len used */
};

#define PACKET_IN_HDR_LEN offsetof(struct packet_in_event, data)

BPF_ARRAY(packet_in_ctl, struct packet_in_ctl, 1);
BPF_PERCPU_HASH(packet_in_bridges, __u32, struct packet_in_watch, MAX_BRIDGES + 1);
BPF_PERCPU_ARRAY(packet_in_bucket, struct token_bucket, 1);
BPF_PERCPU_ARRAY(packet_in_stats, struct packet_in_stats, 1);
BPF_PERCPU_ARRAY(packet_in_scratch, struct packet_in_event, 1);
BPF_RINGBUF_OUTPUT(packet_in_events, PACKET_IN_RING_PAGES);

/* n (at least 1) as a copy length the verifier can bound (PACKET_IN_LEN_MASK). */
static __always_inline __u32 packet_in_len(__u32 n)
{
	asm volatile("" : "+r"(n));  /* clang must not drop the mask on what it knows of n */
	return ((n - 1) & PACKET_IN_LEN_MASK) + 1;
}

/* Copies the frame's first n bytes (1..PACKET_IN_MAX_LEN) into ev->data, with the tag the
 * kernel holds (hw: skb->vlan_tci, tci) put back after the MAC addresses. 0 on success. */
static __always_inline int packet_in_copy(const struct dp_ctx *ctx, struct packet_in_event *ev,
					  __u32 n, int hw, __u16 tci)
{
	if (!hw)
		return ctx_load_bytes(ctx, 0, ev->data, packet_in_len(n)) ? -1 : 0;
	/* MACs, the tag, then the rest from where the tag would be: always 16 bytes copied (the
	 * scratch is larger than any frame sent), data_len says how many count */
	if (ctx_load_bytes(ctx, 0, ev->data, ETH_MACS_LEN))
		return -1;
	*(__u16 *)&ev->data[ETH_MACS_LEN] = (__u16)ctx->skb->vlan_proto;  /* network order */
	*(__u16 *)&ev->data[ETH_MACS_LEN + 2] = vsw_htons(tci);
	if (n <= ETH_MACS_LEN + VLAN_TAG_LEN)
		return 0;
	return ctx_load_bytes(ctx, ETH_MACS_LEN, ev->data + ETH_MACS_LEN + VLAN_TAG_LEN,
			      packet_in_len(n - (ETH_MACS_LEN + VLAN_TAG_LEN))) ? -1 : 0;
}

/* The frame's VLAN in the switch as in_port classifies it (vlan.h, before any flow action):
 * an access port's VLAN, a trunk's native VLAN for an untagged frame, else the tag's VID. A
 * frame the port will refuse (vlan-mismatch) still says what it carried. */
static __always_inline __u16 packet_in_vlan(const struct dp_ctx *ctx, const struct port_info *in)
{
	__u8 mode = in->flags & PORT_F_VLAN_MODE;
	__u16 vid = ctx->flow_tag ? ctx->flow_vid : 0;  /* the frame's tag: no action ran yet */
	struct port_trunk *t;

	if (mode == PORT_F_ACCESS)
		return in->vlan;
	if (mode == PORT_F_TRUNK && !vid) {
		t = trunk_lookup(ctx->in_port);
		return t ? t->native : 0;
	}
	return vid;
}

/* The packet-in of a frame (real runs at TC only): counted unwatched when no controller
 * subscribed to its bridge, refused by the rate limit or a full ring (counted, and as lost for
 * the subscribers of the bridge), else sent. */
static __always_inline void packet_in_send(const struct dp_ctx *ctx, __u32 rule_id,
					   __u32 max_len, const struct port_info *in)
{
	struct packet_in_stats *st;
	struct packet_in_watch *w;
	struct packet_in_event *ev;
	struct packet_in_ctl *c;
	struct token_bucket *b;
	__u32 zero = 0, key = ctx->bridge, total, n;
	__u16 tci = 0;
	__u64 now;
	int hw;

	st = packet_in_stats.lookup(&zero);
	if (!st)
		return;
	w = packet_in_bridges.lookup(&key);
	if (!w) {
		key = PACKET_IN_ALL_BRIDGES;
		w = packet_in_bridges.lookup(&key);
	}
	if (!w) {
		st->unwatched++;
		return;
	}
	c = packet_in_ctl.lookup(&zero);
	b = packet_in_bucket.lookup(&zero);
	ev = packet_in_scratch.lookup(&zero);
	if (!c || !b || !ev)
		return;
	now = bpf_ktime_get_ns();
	if (!bucket_take(b, c->rate, now)) {
		st->rate_limited++;
		w->lost++;
		return;
	}
	hw = ctx_hw_vlan(ctx, &tci);
	total = ctx->len + (hw ? VLAN_TAG_LEN : 0);
	n = total < max_len ? total : max_len;  /* the loader keeps max_len in 1..MAX_LEN */
	if (!n)
		return;
	n = packet_in_len(n);
	if (packet_in_copy(ctx, ev, n, hw, tci))
		return;
	ev->version = PACKET_IN_EVENT_VERSION;
	ev->type = PACKET_IN_EVENT_FRAME;
	ev->length = PACKET_IN_HDR_LEN + n;
	ev->bridge = ctx->bridge;
	ev->in_port = ctx->in_port;
	ev->rule_id = rule_id;
	ev->total_len = total;
	ev->vlan = packet_in_vlan(ctx, in);
	ev->hook = ctx->hook;
	ev->pad = 0;
	ev->time_ns = now;
	ev->data_len = n;
	ev->pad2 = 0;
	if (packet_in_events.ringbuf_output(ev, PACKET_IN_HDR_LEN + n, 0)) {
		st->ring_full++;
		w->lost++;
		return;
	}
	st->sent++;
}

/* The matched rule has a controller action (FLOW_F_CONTROLLER, actions[0]): at XDP the frame
 * goes to TC (a handoff, returned before anything changed); at TC the packet-in is sent, unless
 * this is a dry run. Returns 0 or the handoff. */
static __always_inline int packet_in(const struct dp_ctx *ctx, const struct flow_rule *rule,
				     const struct port_info *in, const int hook)
{
	if (hook == HOOK_XDP)  /* HOOK, as in pipeline_decide: no skb helper in the XDP program */
		return HANDOFF(CONTROLLER);
	if (!ctx->dry_run)
		packet_in_send(ctx, rule->rule_id, rule->actions[0].arg, in);
	return 0;
}

#endif
