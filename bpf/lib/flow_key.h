/* The flow key: the headers of a frame as parse_flow (parse.h) fills it, the classifier (flow.h)
 * matches it and watchers (watch.h) filter it. vswitchd/datapath/flows.py packs keys with this
 * layout (read from bcc's ctypes): change both together. */
#ifndef VSW_FLOW_KEY_H
#define VSW_FLOW_KEY_H

#include <linux/types.h>

#define FLOW_KEY_WORDS 8  /* sizeof(struct flow_key) / 8 */

/* Integers in host byte order; addresses as on the wire. 64 bytes, masked word by word. */
struct flow_key {
	__u32 in_port;
	__u16 dl_type;    /* EtherType after any VLAN tag */
	__u16 dl_vlan;    /* VID, 0 = untagged */
	__u8 dl_src[6];
	__u8 dl_dst[6];
	__u8 ip_src[16];  /* IPv4: the 4 address bytes, then 12 zero bytes */
	__u8 ip_dst[16];
	__u16 tp_src;     /* TCP/UDP ports, 0 otherwise */
	__u16 tp_dst;
	__u8 nw_proto;
	__u8 pad[7];
} __attribute__((aligned(8)));

#endif
