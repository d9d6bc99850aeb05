// SPDX-License-Identifier: GPL-2.0
/* vswitchd datapath: L2 "normal" switching at TC.
 *
 * Compiled once per daemon by vswitchd/datapath/loader.py (bcc). The loader defines VSW_PIN_DIR
 * and inlines the quoted "lib/..." includes (bcc only rewrites map calls in its main file).
 * Every setting lives in maps; nothing here depends on the bridges or ports configured.
 *
 *   tc_ingress  TC clsact ingress of every port
 *   tc_egress   TC clsact egress of the bridge device (the host's own frames)
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/ports.h"
#include "lib/fdb.h"
#include "lib/counters.h"
#include "lib/result.h"
#include "lib/parse.h"
#include "lib/forward.h"

static __always_inline int pipeline(struct __sk_buff *skb, __u8 ingress)
{
	struct dp_ctx ctx = {
		.skb = skb,
		.in_port = skb->ifindex,
		.len = skb->len,
		.vlan = 0,  /* untagged only for now */
		.ingress = ingress,
		.dry_run = is_dry_run(skb),
	};
	struct dp_result *res = result_get(&ctx);
	struct port_info *in, *out;
	struct fdb_entry *entry;
	struct l2_hdr l2;
	__u32 out_port;

	if (res) {
		res->verdict = 0;
		res->drop_reason = DROP_NONE;
		res->out_ifindex = 0;
		res->fdb_hit = 0;
		res->n_flood = 0;
	}

	in = port_lookup(ctx.in_port);
	if (!in) {  /* not ours: the kernel handles it, nothing counted */
		result_set(&ctx, VERDICT_PASS, DROP_NONE, 0);
		return TC_ACT_OK;
	}
	ctx.bridge = in->bridge;

	if (parse_eth(skb, &l2))
		return drop(&ctx, DROP_MALFORMED);
	if (!ctx.dry_run)
		count_rx(&ctx);

	if (mac_is_multicast(l2.src))
		return drop(&ctx, DROP_INVALID_SRC_MAC);
	if (!ctx.dry_run && !mac_is_zero(l2.src))
		fdb_learn(&ctx, l2.src);

	if (mac_is_multicast(l2.dst))
		return flood(&ctx);
	entry = fdb_lookup(ctx.bridge, ctx.vlan, l2.dst);
	if (!entry)
		return flood(&ctx);
	out_port = entry->ifindex;
	if (res)
		res->fdb_hit = 1;
	if (out_port == ctx.in_port)
		return drop(&ctx, DROP_SAME_PORT);
	out = port_lookup(out_port);
	if (!out || out->bridge != ctx.bridge)
		return drop(&ctx, DROP_NO_FDB_PORT);
	return forward(&ctx, out_port, out->kind);
}

int tc_ingress(struct __sk_buff *skb)
{
	return pipeline(skb, 1);
}

int tc_egress(struct __sk_buff *skb)
{
	return pipeline(skb, 0);
}
