"""The FDB map, (bridge, vlan, mac) -> port: static entries, deletions, listing and aging of
learned entries, and fdb_gen, the generation that invalidates the programs' FDB caches after
each change. An entry whose port is a tunnel has its remote VTEP in fdb_remote (fdb.h)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from vswitchd import validate
from vswitchd.datapath import maps
from vswitchd.datapath.constants import FDB_F_REMOTE, FDB_F_STATIC, FDB_GEN_DAEMON_STEP
from vswitchd.netlink.types import FdbRecord


def mac_bytes(mac: str, field_name: str = "mac") -> bytes:
    return bytes.fromhex(validate.mac(mac, field_name).replace(":", ""))


def _mac_str(raw) -> str:
    return bytes(raw).hex(":")


def tun_addr(table, address: str):
    """An IPv4 underlay address as struct tun_addr (w[0], host byte order)."""
    leaf = table.Leaf()
    leaf.w[0] = int(ipaddress.IPv4Address(address))
    return leaf


def tun_addr_str(leaf) -> str:
    return str(ipaddress.IPv4Address(leaf.w[0])) if leaf.w[0] else ""


class FdbMaps:
    """The FDB maps of one Datapath (bcc tables). Each change bumps fdb_gen."""

    def __init__(self, bpf) -> None:
        self.table = bpf[b"fdb"]
        self.gen = bpf[b"fdb_gen"]
        self.remote = bpf[b"fdb_remote"]

    def key(self, bridge: int, mac_raw: bytes, vlan: int):
        key = self.table.Key()
        key.bridge = bridge
        key.vlan = vlan
        for i, b in enumerate(mac_raw):
            key.mac[i] = b
        return key

    def put(self, bridge: int, mac_raw: bytes, vlan: int, ifindex: int, static: bool,
            remote: str = "") -> None:
        key = self.key(bridge, mac_raw, vlan)
        leaf = self.table.Leaf()
        leaf.ifindex = ifindex
        leaf.flags = (FDB_F_STATIC if static else 0) | (FDB_F_REMOTE if remote else 0)
        leaf.last_seen_ns = time.monotonic_ns()
        if remote:  # before the entry: a program seeing its flag finds the remote
            self.remote[key] = tun_addr(self.remote, remote)
        self.table[key] = leaf
        if not remote:
            maps.delete(self.remote, key)
        self.changed()

    def changed(self) -> None:
        """Invalidates every program's FDB cache (fdb.h: fdb_gen), after entries were added,
        replaced or deleted. Steps above what the programs' own increments (after learning)
        can reach between this read and write, so the value never goes back."""
        maps.bump(self.gen, FDB_GEN_DAEMON_STEP)

    def add_static(self, bridge: int, mac: str, vlan: int, ifindex: int,
                   remote: str = "") -> None:
        mac_raw = mac_bytes(validate.unicast_mac(mac))
        self.put(bridge, mac_raw, validate.vlan(vlan), ifindex, static=True, remote=remote)

    def _delete(self, key) -> bool:
        """The entry and its remote (the entry first: no program finds a flag without it)."""
        deleted = maps.delete(self.table, key)
        maps.delete(self.remote, key)
        return deleted

    def _deleted(self, count: int) -> int:
        """After deletions: bumps fdb_gen if there were any; returns count."""
        if count:
            self.changed()
        return count

    def delete(self, bridge: int, mac: str, vlan: int) -> bool:
        return self._deleted(
            self._delete(self.key(bridge, mac_bytes(mac), validate.vlan(vlan))))

    def delete_where(self, doomed: Callable) -> int:
        """Deletes the entries for which doomed(key, leaf) holds. Returns how many."""
        deleted = 0
        for key, leaf in list(self.table.items()):
            if doomed(key, leaf):
                deleted += self._delete(key)
        for key in list(self.remote.keys()):  # remotes of entries gone or moved to a local port
            entry = self.table.get(key)
            if entry is None or not entry.flags & FDB_F_REMOTE:
                maps.delete(self.remote, key)
        return self._deleted(deleted)

    def flush_learned(self, ifindex: int) -> None:
        """Deletes the entries learned on the port (static ones stay)."""
        self.delete_where(lambda key, leaf: leaf.ifindex == ifindex
                          and not leaf.flags & FDB_F_STATIC)

    def records(self, bridge: int) -> list[FdbRecord]:
        now = time.monotonic_ns()
        records = []
        for key, leaf in self.table.items_lookup_batch():  # not 2 syscalls an entry
            if key.bridge != bridge:
                continue
            static = bool(leaf.flags & FDB_F_STATIC)
            age = 0.0 if static else max(0, now - leaf.last_seen_ns) / 1e9
            remote = self.remote.get(key) if leaf.flags & FDB_F_REMOTE else None
            records.append(FdbRecord(mac=_mac_str(key.mac), vlan=key.vlan,
                                     ifindex=leaf.ifindex, static=static, age_seconds=age,
                                     remote=tun_addr_str(remote) if remote is not None else ""))
        return sorted(records, key=lambda r: (r.vlan, r.mac))

    def sweep(self, aging_seconds: float) -> int:
        """Deletes learned entries not seen for more than aging_seconds. Returns how many."""
        limit = int(aging_seconds * 1e9)
        deleted = 0
        for key, leaf in list(self.table.items_lookup_batch()):
            if leaf.flags & FDB_F_STATIC:
                continue
            if time.monotonic_ns() - leaf.last_seen_ns <= limit:
                continue
            fresh = self.table.get(key)  # the datapath may have refreshed it meanwhile
            if fresh is None or fresh.flags & FDB_F_STATIC:
                continue
            if time.monotonic_ns() - fresh.last_seen_ns > limit:
                deleted += self._delete(key)
        return self._deleted(deleted)
