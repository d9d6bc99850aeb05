/* Ethernet parsing. */
#ifndef VSW_PARSE_H
#define VSW_PARSE_H

struct l2_hdr {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
};

static __always_inline int mac_is_multicast(const __u8 *mac)
{
	return mac[0] & 1;
}

static __always_inline int mac_is_zero(const __u8 *mac)
{
	return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

/* Copies the addresses out of the frame (later helpers may invalidate packet pointers).
 * Returns 0, or DROP_MALFORMED when the frame is shorter than an Ethernet header. */
static __always_inline int parse_eth(struct __sk_buff *skb, struct l2_hdr *l2)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if (data + sizeof(*eth) > data_end)
		return DROP_MALFORMED;
	__builtin_memcpy(l2->dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(l2->src, eth->h_source, ETH_ALEN);
	return 0;
}

#endif
