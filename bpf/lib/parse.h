/* Ethernet parsing. */
#ifndef VSW_PARSE_H
#define VSW_PARSE_H

#include "lib/endian.h"

/* The rest of an inline 802.1Q/802.1ad tag, after the Ethernet header whose h_proto is its TPID
 * (the kernel's struct vlan_hdr). */
struct vsw_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

#define VLAN_VID_MASK 0x0fff   /* the VID bits of a TCI */
#define IPV4_FRAG_OFFSET 0x1fff  /* the fragment offset bits of iphdr.frag_off */

static __always_inline int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1;
}

static __always_inline int mac_is_zero(const __u8 *mac)
{
	return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

/* Where the parser reads a header of len bytes at off: in the frame itself when the linear area
 * holds it, otherwise in a copy made into buf. Frames from TX rings, GSO or virtio may keep
 * only the Ethernet header linear; pulling the rest in (bpf_skb_pull_data) reallocated the head
 * of every such frame. NULL when the frame ends before off + len. len must be a constant no
 * larger than buf. */
static __always_inline void *header_at(struct __sk_buff *skb, __u32 off, __u32 len, void *buf)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *p = data + off;

	if (p + len <= data_end)
		return p;
	if (bpf_skb_load_bytes(skb, off, buf, len))
		return NULL;
	return buf;
}

#endif
