/* The device maps the XDP hook redirects through, and its per-(bridge, VLAN) flood groups.
 *
 *   xdp_tx              DEVMAP_HASH ifindex -> the port, for every port that takes XDP frames
 *                       (PORT_F_XDP_TX): known unicast leaves with XDP_REDIRECT through it.
 *   flood_groups        HASH_OF_MAPS (bridge, VLAN) -> a DEVMAP_HASH of the group's members that
 *                       take XDP frames, each with xdp_egress as its devmap program (the tag each
 *                       copy leaves with, its tx counter): a flood is one bpf_redirect_map with
 *                       BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS.
 *   flood_group_info    (bridge, VLAN) -> how many members the group has, and how many of them
 *                       cannot take XDP frames (then the flood goes through TC).
 *
 * The daemon creates and pins xdp_tx and flood_groups before the build
 * (vswitchd/datapath/xdpmaps.py): bcc cannot create a DEVMAP_HASH of struct bpf_devmap_val nor a
 * map of such maps, and it reuses a pinned map as it finds it. The declarations below only name
 * them for the programs and give bcc's rewriter its lookup/redirect_map calls.
 */
#ifndef VSW_XDP_H
#define VSW_XDP_H

#include "lib/common.h"

#define MAX_FLOOD_GROUPS 4096

/* A pinned map that bcc does not create, with the methods the programs call. */
#define VSW_DEVICE_MAP_PINNED(_name, _key_type, _leaf_type, _max_entries, _pinned)	\
	struct _name##_table_t {							\
		_key_type key;								\
		_leaf_type leaf;							\
		_leaf_type *(*lookup)(_key_type *);					\
		u64 (*redirect_map)(int, int);						\
		u32 max_entries;							\
		int flags;								\
	};										\
	__attribute__((section("maps/hash:" _pinned)))					\
	struct _name##_table_t _name = { .max_entries = (_max_entries) }

struct flood_group_key {
	__u32 bridge;
	__u16 vlan;
	__u16 pad;
};

struct flood_group_info {
	__u32 members;      /* ports of the bridge that carry the VLAN (the bridge device too) */
	__u32 non_targets;  /* of them, those that cannot take XDP frames */
};

VSW_DEVICE_MAP_PINNED(xdp_tx, __u32, struct bpf_devmap_val, MAX_PORTS, VSW_PIN_DIR "/xdp_tx");
VSW_DEVICE_MAP_PINNED(flood_groups, struct flood_group_key, __u32, MAX_FLOOD_GROUPS,
		      VSW_PIN_DIR "/flood_groups");
BPF_TABLE_PINNED("hash", struct flood_group_key, struct flood_group_info, flood_group_info,
		 MAX_FLOOD_GROUPS, VSW_PIN_DIR "/flood_group_info");

#endif
