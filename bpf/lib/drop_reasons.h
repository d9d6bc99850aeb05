/* Drop reasons: the ONE table shared by C and Python.
 *
 * vswitchd/datapath/constants.py parses the X(...) lines of this file, so keep one entry per
 * line, in the form X(NAME, value, "name-for-humans"). Values are stable (they index the drops[]
 * counters of pinned maps): never renumber, only append below DROP_REASON_MAX.
 */
#ifndef VSW_DROP_REASONS_H
#define VSW_DROP_REASONS_H

#define DROP_REASONS(X) \
	X(NONE, 0, "none") \
	X(MALFORMED, 1, "malformed") \
	X(SAME_PORT, 2, "same-port") \
	X(NO_FDB_PORT, 3, "no-fdb-port") \
	X(NO_FLOOD_TARGET, 4, "no-flood-target") \
	X(INVALID_SRC_MAC, 5, "invalid-src-mac") \
	X(REDIRECT_FAILED, 6, "redirect-failed") \
	X(FLOW_DROP, 7, "flow-drop") \
	X(VLAN_FAILED, 8, "vlan-failed") \
	X(VLAN_MISMATCH, 9, "vlan-mismatch") \
	X(HOST_MAC_SPOOF, 10, "host-mac-spoof") \
	X(TUNNEL_NO_KEY, 11, "tunnel-no-key") \
	X(TUNNEL_VNI, 12, "tunnel-vni") \
	X(TUNNEL_NO_REMOTE, 13, "tunnel-no-remote")

/* Size of the drops[] array in port_stats. Fixed with room to spare (flow-drop, vlan-mismatch,
 * ...) so adding a reason does not change the layout of an already pinned map. */
#define DROP_REASON_MAX 16

#define VSW_DROP_ENUM(name, value, text) DROP_##name = value,
enum drop_reason {
	DROP_REASONS(VSW_DROP_ENUM)
};
#undef VSW_DROP_ENUM

/* The stages' return convention: a drop is its reason negated (`return -DROP_MALFORMED;`, as
 * the kernel returns -errno); any value >= 0 is a verdict (a TC action, or what the caller does
 * next). The drop itself (counter, dry-run report, watch event) is done once, by finish()
 * (forward.h), where every program ends. */
#define IS_DROP(ret) ((ret) < 0)

#endif
