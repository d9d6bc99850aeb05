"""The XDP hook's device maps (bpf/lib/xdp.h): xdp_tx, the ports the XDP programs may redirect
to, and flood_groups, one device map per (bridge, VLAN) of the members that take XDP frames,
with flood_group_info beside it.

bcc cannot create these (a DEVMAP_HASH of struct bpf_devmap_val, a map of such maps), and it
reuses a pinned map as it finds it: ensure_pins() creates and pins them before the build, and
XdpMaps writes them with the bpf() syscall. A group is written whole the first time (a new
inner map swapped in with one update); after that, members come and go in place, one entry
each, because an update of a map of maps waits for an RCU grace period (10 ms here): a bridge
of n ports took n of them for each port added or removed. A flood sees the members before or
after each single change.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
from collections.abc import Iterable

from vswitchd.datapath.bpfsys import (
    map_create,
    map_delete,
    map_fd_by_id,
    map_keys,
    map_lookup,
    map_update,
    obj_get,
    obj_pin,
    object_id,
)
from vswitchd.datapath.constants import MAX_BRIDGE_PORTS, MAX_FLOOD_GROUPS, MAX_PORTS
from vswitchd.datapath.pins import DEVICE_MAP_PIN_NAMES, map_shape
from vswitchd.datapath.vlan import UNCONFIGURED, VlanConfig

log = logging.getLogger(__name__)

MAP_TYPE_HASH_OF_MAPS = 13
MAP_TYPE_DEVMAP_HASH = 25
PIN_NAMES = (TX_PIN, GROUPS_PIN) = DEVICE_MAP_PIN_NAMES
_DEVMAP_VAL = struct.Struct("=Ii")   # struct bpf_devmap_val: ifindex, bpf_prog.fd
_IFINDEX = struct.Struct("=I")
_GROUP_KEY = struct.Struct("=IHH")   # struct flood_group_key: bridge, vlan, pad
_GROUP_VAL = struct.Struct("=I")     # an inner map's fd (written), its id (read)
# A bridge's groups: VLAN 0 and every VLAN a port names, up to this many; a flood in a VLAN
# without a group goes through TC.
MAX_GROUPS_PER_BRIDGE = 256


def _shape(name: str, max_ports: int) -> tuple[int, int, int, int]:
    """(type, key size, value size, max entries) of a pin; xdp_tx has a slot per port."""
    if name == TX_PIN:
        return (MAP_TYPE_DEVMAP_HASH, _IFINDEX.size, _DEVMAP_VAL.size, max_ports)
    return (MAP_TYPE_HASH_OF_MAPS, _GROUP_KEY.size, _GROUP_VAL.size, MAX_FLOOD_GROUPS)


def _inner_map(name: str = "flood_group") -> int:
    return map_create(MAP_TYPE_DEVMAP_HASH, _IFINDEX.size, _DEVMAP_VAL.size, MAX_BRIDGE_PORTS,
                      name)


def _create(name: str, max_ports: int) -> int:
    if name == TX_PIN:
        return map_create(*_shape(TX_PIN, max_ports), name)
    template = _inner_map("flood_tmpl")
    try:
        return map_create(*_shape(GROUPS_PIN, max_ports), name, inner_map_fd=template)
    finally:
        os.close(template)


def ensure_pins(bpffs_dir: str, max_ports: int = MAX_PORTS) -> None:
    """Creates and pins xdp_tx and flood_groups where they are missing, and replaces a pin of
    another shape (an earlier build's, or other limits): its entries are rewritten by the
    daemon."""
    for name in PIN_NAMES:
        path = os.path.join(bpffs_dir, name)
        if os.path.exists(path):
            fd = obj_get(path)
            try:
                if map_shape(fd) == _shape(name, max_ports):
                    continue
            finally:
                os.close(fd)
            log.warning("pinned %s has another layout than this build: replacing it", path)
            os.unlink(path)
        fd = _create(name, max_ports)
        try:
            obj_pin(fd, path)
        finally:
            os.close(fd)


def flood_groups(members: Iterable[int], vlans: dict[int, VlanConfig],
                 targets: set[int]) -> dict[int, tuple[list[int], int]]:
    """A bridge's flood groups: {VLAN: (the members that carry it, how many of them are not
    targets)}, for VLAN 0 and each VLAN a member names (access, native, trunk), at most
    MAX_GROUPS_PER_BRIDGE. vlans: each member's mode (missing = unconfigured, as the bridge
    device). The programs flood through a group at XDP only when its non-targets are at most
    the in port (bpf/lib/forward.h, xdp_flood_check)."""
    members = list(members)
    named = sorted({v for m in members for v in _named_vlans(vlans.get(m))})
    out: dict[int, tuple[list[int], int]] = {}
    for vid in [0, *named][:MAX_GROUPS_PER_BRIDGE]:
        carrying = [m for m in members if vlans.get(m, UNCONFIGURED).carries(vid)]
        out[vid] = (carrying, sum(1 for m in carrying if m not in targets))
    return out


def _named_vlans(vlan: VlanConfig | None) -> set[int]:
    if vlan is None:
        return set()
    return {v for v in (vlan.access, vlan.native, *vlan.trunks) if v}


class XdpMaps:
    """The XDP maps of one Datapath. egress_fd: xdp_egress, the devmap program of each group
    member."""

    def __init__(self, bpf_obj, bpffs_dir: str, egress_fd: int) -> None:
        self.tx_fd = obj_get(os.path.join(bpffs_dir, TX_PIN))
        self.groups_fd = obj_get(os.path.join(bpffs_dir, GROUPS_PIN))
        self.info = bpf_obj[b"flood_group_info"]
        self.egress_fd = egress_fd
        self.egress_id = object_id(egress_fd)
        # what this instance wrote: {bridge: {vlan: (members that are targets, info)}}
        self._written: dict[int, dict[int, tuple[tuple[int, ...], tuple[int, int]]]] = {}

    def close(self) -> None:
        for fd in (self.tx_fd, self.groups_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---- unicast targets ---------------------------------------------------------------

    def set_target(self, ifindex: int, on: bool) -> None:
        key = _IFINDEX.pack(ifindex)
        if on:  # (the kernel refuses a device that is gone: EINVAL)
            map_update(self.tx_fd, key, _DEVMAP_VAL.pack(ifindex, 0), f"xdp_tx[{ifindex}]")
        else:
            map_delete(self.tx_fd, key, f"xdp_tx[{ifindex}]")

    def targets(self) -> set[int]:
        return {_IFINDEX.unpack(k)[0] for k in map_keys(self.tx_fd, _IFINDEX.size, "xdp_tx")}

    # ---- flood groups ------------------------------------------------------------------

    def sync_bridge(self, bridge: int, groups: dict[int, tuple[list[int], int]],
                    targets: set[int]) -> None:
        """Makes the bridge's groups exactly `groups` (flood_groups()), changing only those
        that changed since this instance last wrote them (the first time: all of them, those
        already pinned in place)."""
        written = self._written.get(bridge)
        if written is None:  # not setdefault: it would read the pins on every sync
            written = self._written[bridge] = self._read_bridge(bridge)
        for vid, (members, non_targets) in groups.items():
            reach = tuple(m for m in members if m in targets)
            info = (len(members), non_targets)
            old = written.get(vid)
            if old == (reach, info):
                continue
            # a group pinned by an earlier daemon (old None) is patched too if its entries run
            # our xdp_egress: a restart with the same build rewrites no group whole (a swap
            # in the outer map waits for an RCU grace period)
            if not self._patch_group(bridge, vid, reach, info, None if old is None else old[0]):
                self._put_group(bridge, vid, reach, info)
            written[vid] = (reach, info)
        for vid in [v for v in written if v not in groups]:
            self._delete_group(bridge, vid)
            del written[vid]

    def forget_bridge(self, bridge: int) -> None:
        for vid in list(self._written.pop(bridge, self._read_bridge(bridge))):
            self._delete_group(bridge, vid)

    def prune(self, keep: set[int]) -> None:
        """Deletes the groups of bridges not in keep."""
        for key in map_keys(self.groups_fd, _GROUP_KEY.size, "flood_groups"):
            bridge, vid, _ = _GROUP_KEY.unpack(key)
            if bridge not in keep:
                self._delete_group(bridge, vid)
                self._written.pop(bridge, None)

    def _read_bridge(self, bridge: int) -> dict:
        """The bridge's groups as pinned, marked unknown (checked by the first sync)."""
        return {_GROUP_KEY.unpack(k)[1]: None
                for k in map_keys(self.groups_fd, _GROUP_KEY.size, "flood_groups")
                if _GROUP_KEY.unpack(k)[0] == bridge}

    def _put_group(self, bridge: int, vid: int, reach: tuple[int, ...],
                   info: tuple[int, int]) -> None:
        inner = _inner_map()
        members, non_targets = info
        try:
            for ifindex in reach:
                try:
                    map_update(inner, _IFINDEX.pack(ifindex),
                               _DEVMAP_VAL.pack(ifindex, self.egress_fd),
                               f"flood group ({bridge}, {vid})[{ifindex}]")
                except OSError as exc:  # a device gone meanwhile (the kernel says EINVAL)
                    if exc.errno not in (errno.EINVAL, errno.ENODEV):
                        raise
                    non_targets += 1  # unreachable at XDP: its floods go through TC
            key = _GROUP_KEY.pack(bridge, vid, 0)
            # info first: a flood that sees the new group with the old info at worst counts
            # copies off by one for its watch event, or goes through TC once
            self._write_info(bridge, vid, members, non_targets)
            map_update(self.groups_fd, key, _GROUP_VAL.pack(inner),
                       f"flood_groups[({bridge}, {vid})]")
        finally:
            os.close(inner)  # the outer map holds it now

    def _write_info(self, bridge: int, vid: int, members: int, non_targets: int) -> None:
        leaf = self.info.Leaf()
        leaf.members, leaf.non_targets = members, non_targets
        self.info[self.info.Key(bridge, vid, 0)] = leaf

    def _patch_group(self, bridge: int, vid: int, reach: tuple[int, ...],
                     info: tuple[int, int], wrote: tuple[int, ...] | None) -> bool:
        """Turns the group's members into reach in place, against what this instance wrote
        there last (a bridge of n members: a port added is one update, not n lookups), or,
        wrote None (a group an earlier daemon pinned), against the entries the inner map holds,
        which must run our xdp_egress. False when it must be written whole instead (it is gone,
        or a member's device is, or an adopted entry runs another program). An entry the
        kernel dropped with its device is gone from the members too, and its delete finds
        nothing."""
        value = map_lookup(self.groups_fd, _GROUP_KEY.pack(bridge, vid, 0), _GROUP_VAL.size,
                           f"flood_groups[({bridge}, {vid})]")
        if value is None:
            return False
        try:
            inner = map_fd_by_id(_GROUP_VAL.unpack(value)[0], f"flood group ({bridge}, {vid})")
        except FileNotFoundError:
            return False
        try:
            self._write_info(bridge, vid, *info)  # first, as _put_group does
            if wrote is not None:
                before = set(wrote)
            else:
                before = {_IFINDEX.unpack(k)[0] for k in map_keys(inner, _IFINDEX.size, "group")}
                if not self._runs_egress(inner, before & set(reach)):
                    return False
            for ifindex in set(reach) - before:
                try:
                    map_update(inner, _IFINDEX.pack(ifindex),
                               _DEVMAP_VAL.pack(ifindex, self.egress_fd),
                               f"flood group ({bridge}, {vid})[{ifindex}]")
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENODEV):
                        raise
                    return False  # _put_group counts it as a non-target
            for ifindex in before - set(reach):
                map_delete(inner, _IFINDEX.pack(ifindex), f"flood group ({bridge}, {vid})")
        finally:
            os.close(inner)
        return True

    def _runs_egress(self, inner: int, members: Iterable[int]) -> bool:
        """Whether the inner map's entries of MEMBERS all run our xdp_egress (a lookup
        answers the program's id where an update takes its fd)."""
        for ifindex in members:
            value = map_lookup(inner, _IFINDEX.pack(ifindex), _DEVMAP_VAL.size, "group entry")
            if value is None or _DEVMAP_VAL.unpack(value)[1] != self.egress_id:
                return False
        return True

    def _delete_group(self, bridge: int, vid: int) -> None:
        map_delete(self.groups_fd, _GROUP_KEY.pack(bridge, vid, 0),
                   f"flood_groups[({bridge}, {vid})]")
        with contextlib.suppress(KeyError):
            del self.info[self.info.Key(bridge, vid, 0)]
