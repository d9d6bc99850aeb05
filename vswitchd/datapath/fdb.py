"""The FDB map, (bridge, vlan, mac) -> port: static entries, deletions, listing and aging of
learned entries, and fdb_gen, the generation that invalidates the programs' FDB caches after
each change."""

from __future__ import annotations

import time
from collections.abc import Callable

from vswitchd import validate
from vswitchd.datapath import maps
from vswitchd.datapath.constants import FDB_F_STATIC, FDB_GEN_DAEMON_STEP
from vswitchd.netlink.types import FdbRecord


def mac_bytes(mac: str, field_name: str = "mac") -> bytes:
    return bytes.fromhex(validate.mac(mac, field_name).replace(":", ""))


def _mac_str(raw) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))


class FdbMaps:
    """The FDB maps of one Datapath (bcc tables). Each change bumps fdb_gen."""

    def __init__(self, bpf) -> None:
        self.table = bpf[b"fdb"]
        self.gen = bpf[b"fdb_gen"]

    def key(self, bridge: int, mac_raw: bytes, vlan: int):
        key = self.table.Key()
        key.bridge = bridge
        key.vlan = vlan
        for i, b in enumerate(mac_raw):
            key.mac[i] = b
        return key

    def put(self, bridge: int, mac_raw: bytes, vlan: int, ifindex: int, static: bool) -> None:
        leaf = self.table.Leaf()
        leaf.ifindex = ifindex
        leaf.flags = FDB_F_STATIC if static else 0
        leaf.last_seen_ns = time.monotonic_ns()
        self.table[self.key(bridge, mac_raw, vlan)] = leaf
        self.changed()

    def changed(self) -> None:
        """Invalidates every program's FDB cache (fdb.h: fdb_gen), after entries were added,
        replaced or deleted. Steps above what the programs' own increments (after learning)
        can reach between this read and write, so the value never goes back."""
        maps.bump(self.gen, FDB_GEN_DAEMON_STEP)

    def add_static(self, bridge: int, mac: str, vlan: int, ifindex: int) -> None:
        mac_raw = mac_bytes(validate.unicast_mac(mac))
        self.put(bridge, mac_raw, validate.vlan(vlan), ifindex, static=True)

    def _deleted(self, count: int) -> int:
        """After deletions: bumps fdb_gen if there were any; returns count."""
        if count:
            self.changed()
        return count

    def delete(self, bridge: int, mac: str, vlan: int) -> bool:
        return self._deleted(
            maps.delete(self.table, self.key(bridge, mac_bytes(mac), validate.vlan(vlan))))

    def delete_where(self, doomed: Callable) -> int:
        """Deletes the entries for which doomed(key, leaf) holds. Returns how many."""
        deleted = 0
        for key, leaf in list(self.table.items()):
            if doomed(key, leaf):
                deleted += maps.delete(self.table, key)
        return self._deleted(deleted)

    def flush_learned(self, ifindex: int) -> None:
        """Deletes the entries learned on the port (static ones stay)."""
        self.delete_where(lambda key, leaf: leaf.ifindex == ifindex
                          and not leaf.flags & FDB_F_STATIC)

    def records(self, bridge: int) -> list[FdbRecord]:
        now = time.monotonic_ns()
        records = []
        for key, leaf in self.table.items():
            if key.bridge != bridge:
                continue
            static = bool(leaf.flags & FDB_F_STATIC)
            age = 0.0 if static else max(0, now - leaf.last_seen_ns) / 1e9
            records.append(FdbRecord(mac=_mac_str(key.mac), vlan=key.vlan,
                                     ifindex=leaf.ifindex, static=static, age_seconds=age))
        return sorted(records, key=lambda r: (r.vlan, r.mac))

    def sweep(self, aging_seconds: float) -> int:
        """Deletes learned entries not seen for more than aging_seconds. Returns how many."""
        limit = int(aging_seconds * 1e9)
        deleted = 0
        for key, leaf in list(self.table.items()):
            if leaf.flags & FDB_F_STATIC:
                continue
            if time.monotonic_ns() - leaf.last_seen_ns <= limit:
                continue
            fresh = self.table.get(key)  # the datapath may have refreshed it meanwhile
            if fresh is None or fresh.flags & FDB_F_STATIC:
                continue
            if time.monotonic_ns() - fresh.last_seen_ns > limit:
                deleted += maps.delete(self.table, key)
        return self._deleted(deleted)
