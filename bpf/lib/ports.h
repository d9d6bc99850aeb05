/* Port table and bridge membership. Written by the daemon, read by the pipeline. */
#ifndef VSW_PORTS_H
#define VSW_PORTS_H

enum port_kind {
	PORT_KIND_PEER = 1,   /* veth whose peer is in another netns: redirect_peer at ingress */
	PORT_KIND_DEVICE = 2, /* tap, system NIC: plain redirect (egress of the device) */
	PORT_KIND_BRIDGE = 3, /* the bridge device itself = the host: redirect to its ingress */
};

struct port_info {
	__u32 bridge;  /* ifindex of the bridge device = bridge id */
	__u16 vlan;    /* 0 for now; VLANs come later */
	__u8 kind;     /* enum port_kind */
	__u8 flags;
};

/* Replacing a whole value is atomic: the daemon rewrites the list, never patches it. */
struct bridge_members {
	__u32 count;
	__u32 ifindex[MAX_BRIDGE_PORTS];
};

BPF_TABLE_PINNED("hash", __u32, struct port_info, ports, MAX_PORTS, VSW_PIN_DIR "/ports");
BPF_TABLE_PINNED("hash", __u32, struct bridge_members, members, MAX_BRIDGES,
		 VSW_PIN_DIR "/members");

static __always_inline struct port_info *port_lookup(__u32 ifindex)
{
	return ports.lookup(&ifindex);
}

static __always_inline struct bridge_members *members_lookup(__u32 bridge)
{
	return members.lookup(&bridge);
}

#endif
