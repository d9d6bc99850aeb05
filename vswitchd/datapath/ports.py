"""The port maps: each port's bridge, kind, VLAN mode and counter slot (ports, with port_gen,
the generation of the programs' port caches), trunk VLAN sets (port_trunks), and each bridge's
member list (members)."""

from __future__ import annotations

import heapq
from enum import IntEnum

from vswitchd.datapath import maps
from vswitchd.datapath.constants import (
    MAX_BRIDGE_PORTS,
    PORT_F_ACCESS,
    PORT_F_TRUNK,
    PORT_F_XDP_TX,
    VLAN_BITMAP_WORDS,
)
from vswitchd.datapath.vlan import UNCONFIGURED, VlanConfig
from vswitchd.errors import FailedPrecondition


class PortKind(IntEnum):
    PEER = 1    # veth whose peer is in another netns: bpf_redirect_peer at ingress
    DEVICE = 2  # tap, system NIC: bpf_redirect
    BRIDGE = 3  # the bridge device itself (the host): redirect to its ingress
    TUNNEL = 4  # a VXLAN device: the tunnel key set, then bpf_redirect


class _Written:
    """Every port's ports entry as written ({ifindex: leaf}, not to be changed by readers),
    and the free counter slots: the lowest in O(log n), from a heap of the free slots below
    the highest one handed out."""

    def __init__(self, leaves: dict) -> None:
        self.leaves = leaves
        self._top = max((leaf.slot for leaf in leaves.values()), default=-1) + 1
        used = {leaf.slot for leaf in leaves.values()}
        self._free = [s for s in range(self._top) if s not in used]  # sorted, so a heap

    def take(self, most: int) -> int | None:
        """The lowest free slot below MOST, now taken; None when all are."""
        if self._free:
            return heapq.heappop(self._free)
        if self._top >= most:
            return None
        self._top += 1
        return self._top - 1

    def give_back(self, slot: int) -> None:
        heapq.heappush(self._free, slot)

    def hold(self, ifindex: int, leaf) -> None:
        self.leaves[ifindex] = leaf

    def release(self, ifindex: int) -> None:
        leaf = self.leaves.pop(ifindex, None)
        if leaf is not None:
            self.give_back(leaf.slot)


class PortMaps:
    """The port maps of one Datapath (bcc tables). Each change of ports bumps port_gen."""

    def __init__(self, bpf) -> None:
        self.ports = bpf[b"ports"]
        self.gen = bpf[b"port_gen"]
        self.trunks = bpf[b"port_trunks"]
        self.members = bpf[b"members"]
        self.stats = bpf[b"port_stats"]  # read by counters.py; a new port's slot is zeroed
        self.xdp_stats = bpf[b"xdp_stats"]  # the same, for what the port's XDP hook did
        # the entries as written: one batch read when first needed, then kept by set(),
        # set_xdp_tx(), delete() and prune(), the map's only writers (one daemon). A new
        # port's slot, a bridge's members and the walks over every port (of_bridge, hooked,
        # prune) come from it, not from reading the map again (that made each add-port
        # O(ports), and a walk key by key cost 5 ms at 1 000 ports)
        self._written: _Written | None = None

    # ---- ports -------------------------------------------------------------------------

    def get(self, ifindex: int):
        return self.ports.get(self.ports.Key(ifindex))

    def get_many(self, ifindexes: list[int]) -> dict:
        """{ifindex: its ports entry or None}, as written (not to be changed): no syscall."""
        leaves = self._known().leaves
        return {i: leaves.get(i) for i in ifindexes}

    def set(self, ifindex: int, bridge: int, kind: PortKind,
            vlan: VlanConfig = UNCONFIGURED) -> None:
        """Writes the port and its VLAN mode so that every packet sees either the old or the
        new configuration: a trunk's entry (one value: bitmap + native) is written before a
        port_info that points at it, and deleted after one that no longer does."""
        if vlan.trunks:
            trunk = self.trunks.Leaf()
            trunk.native = vlan.native
            for i, word in enumerate(vlan.bitmap()):
                trunk.bits[i] = word
            self.trunks[self.trunks.Key(ifindex)] = trunk
        old = self.get(ifindex)
        leaf = self.ports.Leaf()
        leaf.bridge = bridge
        leaf.vlan = vlan.access
        leaf.kind = int(kind)
        leaf.flags = PORT_F_ACCESS if vlan.access else PORT_F_TRUNK if vlan.trunks else 0
        if old is not None:
            leaf.flags |= old.flags & PORT_F_XDP_TX
        leaf.slot = old.slot if old is not None else self._new_slot()
        try:
            self.ports[self.ports.Key(ifindex)] = leaf
        except BaseException:
            if old is None:
                self._known().give_back(leaf.slot)
            raise
        self._known().hold(ifindex, leaf)
        self.changed()
        if not vlan.trunks:
            maps.delete(self.trunks, self.trunks.Key(ifindex))

    def set_xdp_tx(self, ifindex: int, on: bool) -> bool:
        """Sets or clears PORT_F_XDP_TX of a port; False if it is not a port."""
        leaf = self.get(ifindex)
        if leaf is None:
            return False
        flags = leaf.flags | PORT_F_XDP_TX if on else leaf.flags & ~PORT_F_XDP_TX
        if flags != leaf.flags:
            leaf.flags = flags
            self.ports[self.ports.Key(ifindex)] = leaf
            self._known().hold(ifindex, leaf)
            self.changed()
        return True

    def xdp_tx(self, leaf) -> bool:
        return bool(leaf.flags & PORT_F_XDP_TX)

    def changed(self) -> None:
        """Invalidates every program's port cache (ports.h: port_gen), after each change of
        the ports map. Counts on from the pinned value: an earlier daemon's programs may
        still hold entries filled under lower values."""
        maps.bump(self.gen, 1)

    def delete(self, ifindex: int) -> None:
        """The port (and so its counter slot), then its trunk entry."""
        self._delete_port(self.ports.Key(ifindex))
        maps.delete(self.trunks, self.trunks.Key(ifindex))

    def _delete_port(self, key) -> None:
        maps.delete(self.ports, key)
        self._known().release(key.value)
        self.changed()

    def _known(self) -> _Written:
        if self._written is None:
            # one BPF_MAP_LOOKUP_BATCH: walking the map key by key cost 5 ms at 1 000 ports
            self._written = _Written(dict(self.ports.items_lookup_batch()))
        return self._written

    def _new_slot(self) -> int:
        """The lowest counter slot no port holds, zeroed (it may hold a removed port's
        counters): counters restart with the port, as they would with a new device."""
        slots = self._known()
        most = self.ports.max_entries  # the build's max_ports (build.Limits)
        slot = slots.take(most)
        if slot is None:
            raise FailedPrecondition(
                f"the datapath already has {most} ports, its maximum (datapath.max_ports)")
        try:
            self.stats[self.stats.Key(slot)] = self.stats.Leaf()  # zero on every CPU
            self.xdp_stats[self.xdp_stats.Key(slot)] = self.xdp_stats.Leaf()
        except BaseException:
            slots.give_back(slot)
            raise
        return slot

    def vlan(self, leaf, ifindex: int) -> VlanConfig:
        """The VLAN mode of the port whose ports entry is leaf."""
        if leaf.flags & PORT_F_ACCESS:
            return VlanConfig(access=leaf.vlan)
        if leaf.flags & PORT_F_TRUNK:
            trunk = self.trunks.get(self.trunks.Key(ifindex))
            if trunk is not None:
                return VlanConfig.from_bitmap(
                    (trunk.bits[i] for i in range(VLAN_BITMAP_WORDS)), trunk.native)
        return VlanConfig()

    def of_bridge(self, bridge: int) -> list[int]:
        """The ifindexes of the ports entries of the bridge, its own device among them."""
        return [i for i, leaf in self._known().leaves.items() if leaf.bridge == bridge]

    def hooked(self) -> list[tuple[int, str]]:
        """(ifindex, direction) of the hook each port's program runs at."""
        return [(i, "egress" if leaf.kind == PortKind.BRIDGE else "ingress")
                for i, leaf in self._known().leaves.items()]

    # ---- members -----------------------------------------------------------------------

    def members_of(self, bridge: int) -> list[int]:
        leaf = self.members.get(self.members.Key(bridge))
        if leaf is None:
            return []
        return [leaf.ifindex[i] for i in range(min(leaf.count, MAX_BRIDGE_PORTS))]

    def set_members(self, bridge: int, ifindexes: list[int]) -> None:
        if len(ifindexes) > MAX_BRIDGE_PORTS:
            raise FailedPrecondition(
                f"bridge ifindex {bridge} already has {MAX_BRIDGE_PORTS} ports, the datapath "
                "maximum"
            )
        leaf = self.members.Leaf()
        leaf.count = len(ifindexes)
        for i, ifindex in enumerate(ifindexes):
            leaf.ifindex[i] = ifindex
        self.members[self.members.Key(bridge)] = leaf  # whole value: atomic for readers

    def join(self, bridge: int, ifindex: int, first: bool = False) -> None:
        """Adds ifindex to the bridge's members (at the front with first) unless there."""
        members = self.members_of(bridge)
        if ifindex not in members:
            self.set_members(bridge, [ifindex, *members] if first else [*members, ifindex])

    def leave(self, bridge: int, ifindex: int) -> None:
        members = self.members_of(bridge)
        if ifindex in members:
            self.set_members(bridge, [i for i in members if i != ifindex])

    # ---- removal -----------------------------------------------------------------------

    def forget_members(self, bridge: int) -> None:
        maps.delete(self.members, self.members.Key(bridge))

    def prune(self, keep: set[int]) -> None:
        """Deletes every port, trunk entry, member list and member not in keep."""
        for ifindex in [i for i in self._known().leaves if i not in keep]:
            self._delete_port(self.ports.Key(ifindex))
        for key in list(self.trunks.keys()):
            if key.value not in keep:
                maps.delete(self.trunks, key)
        for key in list(self.members.keys()):
            if key.value not in keep:
                maps.delete(self.members, key)
                continue
            members = self.members_of(key.value)
            kept = [i for i in members if i in keep]
            if kept != members:
                self.set_members(key.value, kept)
