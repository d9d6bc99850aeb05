"""In-memory stand-ins for the kernel (Links, named network namespaces) and the eBPF datapath.

Faucet-style: the Switch runs unchanged against tables kept in Python, so unit tests need no
root and touch no kernel. Each fake records its calls and can be told to fail one method once
(`fail_once`), which is how tests drive every rollback path.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from vswitchd.config import Config

# The real datapath API types (importing vswitchd.datapath does not import bcc).
from vswitchd.datapath import (
    FLOW_FIELDS,
    MAX_FLOW_ACTIONS,
    MAX_FLOW_MASKS,
    DpRule,
    FdbRecord,
    FlowCounters,
    PortCounters,
    PortKind,
    VlanConfig,
    WatchEvent,
)
from vswitchd.datapath.constants import PACKET_IN_DEFAULT_RATE
from vswitchd.datapath.packet_in import PacketInCounters
from vswitchd.datapath.vlan import UNCONFIGURED
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.netlink import netns as real_netns
from vswitchd.netlink.types import L3Config, LinkInfo, LinkStats, VxlanInfo
from vswitchd.seams import DatapathApi, EthtoolApi, LinksApi, NatApi, NetnsApi
from vswitchd.state import StateStore
from vswitchd.switch import Switch


class _Failing:
    """Call recording and one-shot failure injection shared by the fakes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._fail: dict[str, BaseException] = {}

    def fail_once(self, method: str, exc: BaseException) -> None:
        """The next call of METHOD raises EXC (before changing anything)."""
        if not hasattr(self, method):
            raise AttributeError(f"{type(self).__name__} has no method {method}")
        self._fail[method] = exc

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        exc = self._fail.pop(method, None)
        if exc is not None:
            raise exc

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == method]


# ---- network namespaces ------------------------------------------------------------------


class FakeNetns(_Failing):
    """Named namespaces as a set; paths (/proc/PID/ns/net) as another set.

    Removing a namespace destroys the veth pairs whose peer lives in it, as the kernel does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.paths: set[str] = set()
        self.links: FakeLinks | None = None

    def install(self, monkeypatch: Any) -> FakeNetns:
        # is_named and resolve are pure string checks: the real ones are kept.
        monkeypatch.setattr(real_netns, "exists", self.exists)
        monkeypatch.setattr(real_netns, "create_named", self.create_named)
        monkeypatch.setattr(real_netns, "remove_named", self.remove_named)
        return self

    def is_named(self, ref: str) -> bool:
        return real_netns.is_named(ref)

    def resolve(self, ref: str) -> str:
        return real_netns.resolve(ref)

    def exists(self, ref: str) -> bool:
        real_netns.resolve(ref)  # same InvalidArgument as the real one for bad names
        return ref in (self.names if real_netns.is_named(ref) else self.paths)

    def create_named(self, name: str) -> str:
        self._enter("create_named", name)
        path = real_netns.resolve(name)
        if name in self.names:
            raise AlreadyExists(f"network namespace {name} already exists")
        self.names.add(name)
        return path

    def remove_named(self, name: str) -> None:
        self._enter("remove_named", name)
        real_netns.resolve(name)
        self.names.discard(name)
        if self.links is not None:
            self.links.namespace_gone(name)


# ---- links -------------------------------------------------------------------------------


class FakeLinks(_Failing):
    """A table of links by name, with the methods of vswitchd.netlink.links.Links."""

    def __init__(self, netns: FakeNetns | None = None) -> None:
        super().__init__()
        self.table: dict[str, LinkInfo] = {}
        self.snapshots = 0                         # snapshot() entered
        self.next_ifindex = 10
        self.addresses: dict[str, list[str]] = {}
        self.veth_peer: dict[str, tuple[str, str]] = {}  # host name -> (netns, peer name)
        self.tap_owner: dict[str, str | None] = {}
        self.kernel_fdb: dict[str, dict[tuple[str, int], FdbRecord]] = {}
        self.counters: dict[str, LinkStats] = {}
        self.l3: dict[str, L3Config] = {}          # the host's addresses and routes per link
        self.gateways: dict[str, str] = {}         # veth -> default route of its netns
        self.multi_queue: dict[str, bool] = {}     # tap -> IFF_MULTI_QUEUE
        self.mac_set: set[str] = set()             # links whose MAC was set explicitly
        self.vxlans: dict[str, VxlanInfo] = {}     # VXLAN devices' settings
        self.vni_filter: dict[str, set[int]] = {}  # external VXLAN device -> its VNI filter
        self.vx_remotes: dict[str, list[str]] = {}          # classic VXLAN -> flood list
        self.vx_fdb: dict[str, dict[str, str]] = {}         # classic VXLAN -> mac -> remote
        self.host_ips: set[str] = {"127.0.0.1", "::1"}      # plus the links' addresses
        self.route_mtu: dict[str, int] = {}        # remote address -> MTU of its route
        self.netns = netns
        if netns is not None:
            netns.links = self
        lo = LinkInfo("lo", 1, "", None, "00:00:00:00:00:00", 65536, True, "UNKNOWN")
        self.table["lo"] = lo

    # ---- test helpers --------------------------------------------------------------------

    def _new(self, name: str, kind: str, mtu: int = 1500, up: bool = True) -> LinkInfo:
        index = self.next_ifindex
        self.next_ifindex += 1
        mac = f"02:00:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"
        info = LinkInfo(name, index, kind, None, mac, mtu, up, "UP" if up else "DOWN")
        self.table[name] = info
        return info

    def add_system(self, name: str, kind: str = "", up: bool = True,
                   master: str | None = None) -> LinkInfo:
        """An interface that exists independently of vswitchd (a NIC, someone's bridge)."""
        info = self._new(name, kind, up=up)
        if master is not None:
            info = self.table[name] = replace(info, master=self.table[master].ifindex)
        return info

    def learn(self, bridge: str, mac: str, port: str, vlan: int = 0, age: float = 3.0) -> None:
        """A dynamically learned kernel FDB entry."""
        entry = FdbRecord(mac, vlan, self.table[port].ifindex, False, age)
        self.kernel_fdb.setdefault(bridge, {})[(mac, vlan)] = entry

    def namespace_gone(self, ns: str) -> None:
        for name, (peer_ns, _peer) in list(self.veth_peer.items()):
            if peer_ns == ns:
                self._drop(name)

    def master_name(self, name: str) -> str | None:
        info = self.table.get(name)
        if info is None or info.master is None:
            return None
        found = self.get_by_index(info.master)
        return found.name if found else None

    def _drop(self, name: str) -> bool:
        info = self.table.pop(name, None)
        if info is None:
            return False
        self.addresses.pop(name, None)
        self.veth_peer.pop(name, None)
        self.tap_owner.pop(name, None)
        self.kernel_fdb.pop(name, None)
        self.mac_set.discard(name)
        self.vxlans.pop(name, None)
        self.vni_filter.pop(name, None)
        self.vx_remotes.pop(name, None)
        self.vx_fdb.pop(name, None)
        for other, o in list(self.table.items()):
            if o.master == info.ifindex:
                self.table[other] = replace(o, master=None)
        self._bridge_follows_ports(info.master)
        for entries in self.kernel_fdb.values():
            for key, e in list(entries.items()):
                if e.ifindex == info.ifindex:
                    del entries[key]
        return True

    def _require(self, name: str) -> LinkInfo:
        info = self.table.get(name)
        if info is None:
            raise NotFound(f"interface {name} does not exist")
        return info

    # ---- Links API -----------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """The table is always current here; the count shows which reads took one."""
        self.snapshots += 1
        yield

    def get(self, name: str, fresh: bool = False) -> LinkInfo | None:
        return self.table.get(name)

    def get_by_index(self, ifindex: int) -> LinkInfo | None:
        for info in self.table.values():
            if info.ifindex == ifindex:
                return info
        return None

    def stats(self, name: str) -> LinkStats:
        self._enter("stats", name)
        self._require(name)
        return self.counters.get(name, LinkStats(0, 0, 0, 0, 0, 0))

    def create_bridge(self, name: str, addresses: Iterable[str] = (),
                      mac: str | None = None) -> LinkInfo:
        addresses = list(addresses)
        self._enter("create_bridge", name, addresses)
        if name in self.table:
            raise AlreadyExists(f"interface {name} already exists")
        info = self._new(name, "bridge")
        if mac:
            info = self.table[name] = replace(info, mac=mac)
            self.mac_set.add(name)
        self.addresses[name] = addresses
        return info

    def set_addresses(self, name: str, addresses: Iterable[str]) -> None:
        addresses = list(addresses)
        self._enter("set_addresses", name, addresses)
        self._require(name)
        self.addresses[name] = addresses

    @contextmanager
    def remembering(self) -> Iterator[None]:
        """As Links' (a cache of kernel answers): nothing to remember here."""
        yield

    @contextmanager
    def deleting_together(self) -> Iterator[None]:
        """As Links': the deletions noted inside happen on the way out, together."""
        if getattr(self, "_doomed", None) is not None:
            yield
            return
        self._doomed: list[str] | None = []
        try:
            yield
        finally:
            doomed, self._doomed = self._doomed, None
            self._enter("delete_together", doomed)
            for name in doomed:
                self._drop(name)

    def delete(self, name: str) -> bool:
        self._enter("delete", name)
        doomed = getattr(self, "_doomed", None)
        if doomed is not None:
            if name not in self.table:
                return False
            doomed.append(name)
            return True
        return self._drop(name)

    def create_veth(self, name: str, peer_name: str, netns: str, *,
                    addresses: Iterable[str] = (), mac: str | None = None,
                    mtu: int | None = None, gateway: str | None = None) -> LinkInfo:
        addresses = list(addresses)
        self._enter("create_veth", name, peer_name, netns)
        if self.netns is not None and not self.netns.exists(netns):
            raise NotFound(f"network namespace {netns} does not exist")
        if name in self.table:
            raise AlreadyExists(f"interface {name} already exists")
        for other_ns, other_peer in self.veth_peer.values():
            if (other_ns, other_peer) == (netns, peer_name):
                raise AlreadyExists(
                    f"interface {peer_name} already exists in network namespace {netns}")
        info = self._new(name, "veth", mtu=mtu or 1500)
        self.veth_peer[name] = (netns, peer_name)
        self.addresses[name] = addresses  # (the peer's addresses)
        if gateway:
            self.gateways[name] = gateway
        return info

    def peer_exists(self, netns: str, peer_name: str) -> bool:
        return (netns, peer_name) in self.veth_peer.values()

    def create_tap(self, name: str, *, owner: str | None = None, mtu: int | None = None,
                   multi_queue: bool = False) -> LinkInfo:
        self._enter("create_tap", name, owner, mtu)
        if name in self.table:
            raise AlreadyExists(f"interface {name} already exists")
        info = self._new(name, "tun", mtu=mtu or 1500)
        self.tap_owner[name] = owner
        self.multi_queue[name] = multi_queue
        return info

    def enslave(self, name: str, bridge: str) -> None:
        self._enter("enslave", name, bridge)
        port, br = self._require(name), self._require(bridge)
        if br.kind != "bridge":
            raise FailedPrecondition(f"interface {bridge} is not a bridge")
        self.table[name] = replace(port, master=br.ifindex)
        self._bridge_follows_ports(br.ifindex)

    def release(self, name: str) -> None:
        self._enter("release", name)
        info = self._require(name)
        self.table[name] = replace(info, master=None)
        self._bridge_follows_ports(info.master)

    def set_up(self, name: str) -> None:
        self._enter("set_up", name)
        self.table[name] = replace(self._require(name), up=True, operstate="UP")

    def set_mac(self, name: str, mac: str) -> None:
        self._enter("set_mac", name, mac)
        self.table[name] = replace(self._require(name), mac=mac)
        self.mac_set.add(name)

    def _bridge_follows_ports(self, ifindex: int | None) -> None:
        """As the kernel does: a bridge whose MAC was never set explicitly wears its lowest
        port's MAC, and zeros without ports."""
        br = self.get_by_index(ifindex) if ifindex else None
        if br is None or br.kind != "bridge" or br.name in self.mac_set:
            return
        macs = [i.mac for i in self.table.values() if i.master == br.ifindex]
        self.table[br.name] = replace(br, mac=min(macs, default="00:00:00:00:00:00"))

    def l3_config(self, name: str) -> L3Config:
        self._enter("l3_config", name)
        self._require(name)
        return self.l3.get(name, L3Config((), ()))

    def move_l3(self, config: L3Config, src: str, dst: str) -> None:
        self._enter("move_l3", config, src, dst)
        have_src = self.l3.get(src, L3Config((), ()))
        have_dst = self.l3.get(dst, L3Config((), ()))
        self.l3[src] = L3Config(
            tuple(a for a in have_src.addresses if a not in config.addresses),
            tuple(r for r in have_src.routes if r not in config.routes))
        self.l3[dst] = L3Config(
            have_dst.addresses + tuple(a for a in config.addresses
                                       if a not in have_dst.addresses),
            have_dst.routes + tuple(r for r in config.routes if r not in have_dst.routes))

    def _bridge_info(self, bridge: str) -> LinkInfo:
        br = self._require(bridge)
        if br.kind != "bridge":
            raise FailedPrecondition(f"interface {bridge} is not a bridge")
        return br

    def fdb_list(self, bridge: str) -> list[FdbRecord]:
        self._enter("fdb_list", bridge)
        self._bridge_info(bridge)
        return list(self.kernel_fdb.get(bridge, {}).values())

    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int = 0) -> None:
        self._enter("fdb_add_static", bridge, port, mac, vlan)
        br = self._bridge_info(bridge)
        p = self._require(port)
        if p.master != br.ifindex and port != bridge:
            raise FailedPrecondition(f"interface {port} is not a port of bridge {bridge}")
        if vlan:
            raise InvalidArgument("vlan", vlan, f"the kernel bridge {bridge} has no VLAN {vlan}")
        entry = FdbRecord(mac, vlan, p.ifindex, True, 0.0)
        self.kernel_fdb.setdefault(bridge, {})[(mac, vlan)] = entry

    def fdb_delete(self, bridge: str, mac: str, vlan: int = 0) -> bool:
        self._enter("fdb_delete", bridge, mac, vlan)
        self._bridge_info(bridge)
        return self.kernel_fdb.get(bridge, {}).pop((mac, vlan), None) is not None

    # ---- VXLAN: the kernel's rules on one UDP port, as vswitchd.netlink.vxlan reports them

    def _vni_terminated(self, name: str, vni: int, dstport: int) -> str | None:
        for other, v in self.vxlans.items():
            if other != name and v.dstport == dstport and vni in self._vnis(other):
                return other
        return None

    def _vnis(self, name: str) -> list[int]:
        v = self.vxlans[name]
        if v.vnifilter:
            return sorted(self.vni_filter.get(name, set()))
        return [] if v.external else [v.vni]

    def create_vxlan(self, name: str, *, vni: int, local: str = "", dstport: int = 4789,
                     external: bool = True, mtu: int | None = None) -> LinkInfo:
        self._enter("create_vxlan", name, vni, local, dstport, external)
        if isinstance(vni, bool) or not 1 <= vni <= (1 << 24) - 1:
            raise InvalidArgument("vni", vni, "must be an integer from 1 to 16777215")
        if isinstance(dstport, bool) or not 1 <= dstport <= 65535:
            raise InvalidArgument("dstport", dstport, "must be a UDP port from 1 to 65535")
        if local:
            try:
                local = str(ipaddress.ip_address(local))
            except ValueError:
                raise InvalidArgument("local", local, "is not an IPv4 or IPv6 address") from None
        if name in self.table:
            raise AlreadyExists(f"interface {name} already exists")
        holder = self._vni_terminated(name, vni, dstport)
        if holder is not None:
            raise AlreadyExists(f"VNI {vni} is already terminated by VXLAN device {holder} "
                                f"on UDP port {dstport}")
        clash = sorted(o for o, v in self.vxlans.items()
                       if v.dstport == dstport and (v.external and v.vnifilter) != external)
        if clash:
            mine = ("an external VXLAN device with a VNI filter" if external
                    else "a classic VXLAN device")
            raise FailedPrecondition(f"UDP port {dstport} is in use by VXLAN device(s) "
                                     f"{', '.join(clash)}; {mine} ({name}) cannot share it")
        info = self._new(name, "vxlan", mtu=mtu or 1500)
        self.vxlans[name] = VxlanInfo(name, info.ifindex, 0 if external else vni, external,
                                      external, dstport, local, not external, True)
        if external:
            self.vni_filter[name] = {vni}
        else:
            self.vx_remotes[name] = []
            self.vx_fdb[name] = {}
        return info

    def vxlan_info(self, name: str) -> VxlanInfo | None:
        if name not in self.table:
            return None
        if name not in self.vxlans:
            raise FailedPrecondition(f"interface {name} is not a VXLAN device")
        return self.vxlans[name]

    def vxlan_vnis(self, name: str) -> list[int]:
        if self.vxlan_info(name) is None:
            raise NotFound(f"interface {name} does not exist")
        return self._vnis(name)

    def _classic(self, name: str) -> VxlanInfo:
        v = self.vxlan_info(name)
        if v is None:
            raise NotFound(f"interface {name} does not exist")
        if v.external:
            raise FailedPrecondition(
                f"VXLAN device {name} is external (collect_md): its remotes are set per packet "
                "by the eBPF datapath, not kept in its FDB")
        return v

    @staticmethod
    def _address(value: str, field: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidArgument(field, value, "is not an IPv4 or IPv6 address") from None

    def vxlan_set_remotes(self, name: str, addresses: list[str]) -> None:
        addresses = list(addresses)
        self._enter("vxlan_set_remotes", name, addresses)
        want = [self._address(a, "remotes") for a in addresses]
        self._classic(name)
        for r in want:
            self._same_family(name, r, "remotes")
        self.vx_remotes[name] = list(dict.fromkeys(want))

    def vxlan_remotes(self, name: str) -> list[str]:
        self._classic(name)
        return sorted(self.vx_remotes[name],
                      key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))

    def vxlan_fdb_add(self, name: str, mac: str, remote: str) -> None:
        self._enter("vxlan_fdb_add", name, mac, remote)
        remote = self._address(remote, "remote")
        self._classic(name)
        mac = mac.lower()
        if mac == "00:00:00:00:00:00":
            raise InvalidArgument("mac", mac, "the all-zeros MAC is the flood list of the "
                                  "device (set it with its remotes)")
        if int(mac.split(":")[0], 16) & 1:
            raise InvalidArgument("mac", mac, "must be a unicast MAC (broadcast and multicast "
                                  "frames go to every remote of the flood list)")
        self._same_family(name, remote, "remote")
        self.vx_fdb[name][mac] = remote

    def _same_family(self, name: str, remote: str, field: str) -> None:
        local = self.vxlans[name].local
        if local and ipaddress.ip_address(local).version != ipaddress.ip_address(remote).version:
            raise InvalidArgument(field, remote, f"VXLAN device {name} sends from {local}: its "
                                  "remotes must be of the same address family")

    def vxlan_fdb_delete(self, name: str, mac: str) -> bool:
        self._enter("vxlan_fdb_delete", name, mac)
        self._classic(name)
        return self.vx_fdb[name].pop(mac.lower(), None) is not None

    def vxlan_fdb_list(self, name: str) -> dict[str, str]:
        self._classic(name)
        return dict(self.vx_fdb[name])

    def _owner(self, address: str) -> str | None:
        for link, addrs in self.addresses.items():
            if link in self.veth_peer:  # (those are the peer's, in its namespace)
                continue
            for a in addrs:
                if str(ipaddress.ip_interface(a).ip) == address:
                    return link
        return None

    def host_addresses(self) -> set[str]:
        """host_ips (a test sets them) and the addresses of the fake links."""
        out = set(self.host_ips)
        for link, addrs in self.addresses.items():
            if link not in self.veth_peer:
                out.update(str(ipaddress.ip_interface(a).ip) for a in addrs)
        return out

    def underlay_mtu(self, address: str) -> int:
        """The owning link's MTU for a link's address, else route_mtu (a test sets it), else
        1500."""
        address = self._address(address, "address")
        owner = self._owner(address)
        if owner is not None and owner in self.table:
            return self.table[owner].mtu
        return self.route_mtu.get(address, 1500)


# ---- ethtool -----------------------------------------------------------------------------


class FakeEthtool(_Failing):
    """GRO of veth peers, by the host end's ifindex (a re-made pair starts with GRO off, as the
    kernel's veths here do)."""

    def __init__(self, links: FakeLinks) -> None:
        super().__init__()
        self.links = links
        self.on: set[int] = set()  # host-end ifindexes whose peer has GRO on

    def _host(self, ifname: str, netns: str) -> int:
        for host, where in self.links.veth_peer.items():
            if where == (netns, ifname):
                return self.links.table[host].ifindex
        raise NotFound(f"cannot read GRO of {ifname} in network namespace {netns}: "
                       "No such device")

    def peer_gro(self, host: str) -> bool:
        """Test helper: has the peer of veth HOST GRO on?"""
        return self.links.table[host].ifindex in self.on

    def gro(self, ifname: str, netns: str = "") -> bool:
        self._enter("gro", ifname, netns)
        return self._host(ifname, netns) in self.on

    def set_gro(self, ifname: str, netns: str, on: bool) -> None:
        self._enter("set_gro", ifname, netns, on)
        host = self._host(ifname, netns)
        if on:
            self.on.add(host)
        else:
            self.on.discard(host)


# ---- trace results and watchers ------------------------------------------------------


@dataclass(frozen=True)
class TraceResult:
    """What Datapath.trace returns (RunResult's fields that trace uses)."""

    verdict: str
    drop_reason: str = ""
    out_ifindex: int = 0
    flood: list[int] = field(default_factory=list)
    fdb_hit: bool = False
    rule_id: int = 0
    priority: int = 0
    outputs: list[int] = field(default_factory=list)
    vlan: int = 0
    key: dict[str, int] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)  # ifindex -> "as-is"/"untagged"/"tagged:N"
    hook: str = "tc"
    handoff: str = ""


def event(watchers: int, **kw: Any) -> Any:
    """A WatchEvent with defaults for what a test does not care about."""
    base: dict[str, Any] = dict(time_ns=0, bridge=0, in_port=0, dl_src="02:00:00:00:00:01",
                dl_dst="02:00:00:00:00:02", dl_type=0x0800, dl_vlan=0, ip_src="10.0.0.1",
                ip_dst="10.0.0.2", nw_proto=1, tp_src=0, tp_dst=0, length=98, rule_id=0,
                verdict="forward", outputs=(), n_copies=1, drop_reason="")
    base.update(kw)
    return WatchEvent(watchers=watchers, **base)


# ---- eBPF datapath -----------------------------------------------------------------------


class FakeDatapath(_Failing):
    """The datapath's maps as dicts: bridges, ports, members, FDB, counters."""

    def __init__(self) -> None:
        super().__init__()
        self.bridges: dict[int, str] = {}                    # bridge ifindex -> mac
        self.ports: dict[int, tuple[int, PortKind]] = {}     # port ifindex -> (bridge, kind)
        self.members: dict[int, set[int]] = {}               # bridge ifindex -> port ifindexes
        self.fdb: dict[int, dict[tuple[str, int], FdbRecord]] = {}
        self.counters: dict[int, PortCounters] = {}
        self.flows: dict[int, dict[int, DpRule]] = {}          # bridge -> rule_id -> rule
        self.flow_stats: dict[int, dict[int, FlowCounters]] = {}  # bridge -> rule_id -> counters
        self.vlans: dict[int, VlanConfig] = {}               # port ifindex -> VLAN mode
        self.xdp: dict[int, XdpState] = {}                   # port ifindex -> XDP (absent: off)
        self.xdp_targets: set[int] = set()                   # ports XDP may redirect to
        self.tunnels: dict[int, tuple[int, str]] = {}        # tunnel port -> (VNI, local)
        self.vtep_lists: dict[int, list[str]] = {}           # tunnel port -> remote VTEPs
        self.no_native: dict[int, str] = {}                  # ifindex -> its driver without
                                                             # native XDP
        self.max_masks = MAX_FLOW_MASKS
        self.closed = False
        self.deferring = 0            # depth of deferred_flood_sync()
        self.deferred: list[bool] = []  # per call: made within deferred_flood_sync()
        self._tracing_init()

    def _enter(self, method: str, *args: Any) -> None:
        self.deferred.append(self.deferring > 0)
        super()._enter(method, *args)

    def learn(self, bridge: int, mac: str, ifindex: int, vlan: int = 0, age: float = 2.0) -> None:
        self.fdb.setdefault(bridge, {})[(mac, vlan)] = FdbRecord(mac, vlan, ifindex, False, age)

    def add_bridge(self, bridge_ifindex: int, mac: str) -> None:
        self._enter("add_bridge", bridge_ifindex, mac)
        self.bridges[bridge_ifindex] = mac
        self.members.setdefault(bridge_ifindex, set())

    def add_port(self, bridge_ifindex: int, ifindex: int, kind: PortKind,
                 vlan: VlanConfig = UNCONFIGURED) -> None:
        self._enter("add_port", bridge_ifindex, ifindex, kind)
        if bridge_ifindex not in self.bridges:
            raise NotFound(f"bridge ifindex {bridge_ifindex} is not in the datapath")
        self.ports[ifindex] = (bridge_ifindex, PortKind(kind))
        self.members[bridge_ifindex].add(ifindex)
        self.vlans[ifindex] = vlan

    def set_port_vlan(self, ifindex: int, vlan: VlanConfig) -> None:
        self._enter("set_port_vlan", ifindex, vlan)
        if ifindex not in self.ports:
            raise NotFound(f"port ifindex {ifindex} is not in the datapath")
        self.vlans[ifindex] = vlan

    def port_vlan(self, ifindex: int) -> VlanConfig:
        if ifindex not in self.vlans:
            raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
        return self.vlans[ifindex]

    XDP_MODES = ("auto", "native", "generic", "off")

    def set_port_xdp(self, ifindex: int, mode: str) -> XdpState:
        self._enter("set_port_xdp", ifindex, mode)
        if ifindex not in self.ports:
            raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
        if mode not in self.XDP_MODES:
            raise InvalidArgument("xdp", mode, f"must be one of {', '.join(self.XDP_MODES)}")
        driver = self.no_native.get(ifindex)
        if mode == "native" and driver:
            raise FailedPrecondition(f"XDP in native mode on ifindex {ifindex}: driver {driver} "
                                     "refused it (errno 95, Operation not supported)")
        if mode == "auto":
            state = XdpState("generic", f"driver {driver} has no native XDP (errno 95)") \
                if driver else XdpState("native")
        else:
            state = XdpState(mode)
        if state.mode == "off":
            self.xdp.pop(ifindex, None)
        else:
            self.xdp[ifindex] = state
        return state

    def port_xdp(self, ifindex: int,
                 device_progs: dict[str, int] | None = None) -> XdpState:
        if ifindex not in self.ports:
            raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
        return self.xdp.get(ifindex, XdpState("off"))

    def set_xdp_target(self, ifindex: int, on: bool) -> None:
        self._enter("set_xdp_target", ifindex, on)
        if ifindex not in self.ports:
            raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
        if on:
            self.xdp_targets.add(ifindex)
        else:
            self.xdp_targets.discard(ifindex)

    def remove_port(self, bridge_ifindex: int, ifindex: int) -> None:
        """Also detaches the port's XDP program (the real one does); its target mark is the
        switch's to clear."""
        self._enter("remove_port", bridge_ifindex, ifindex)
        self.ports.pop(ifindex, None)
        self.tunnels.pop(ifindex, None)
        self.vtep_lists.pop(ifindex, None)
        self.vlans.pop(ifindex, None)
        self.xdp.pop(ifindex, None)
        self.members.get(bridge_ifindex, set()).discard(ifindex)
        for entries in self.fdb.values():
            for key, rec in list(entries.items()):
                if rec.ifindex == ifindex:
                    del entries[key]

    def remove_bridge(self, bridge_ifindex: int) -> None:
        self._enter("remove_bridge", bridge_ifindex)
        self.bridges.pop(bridge_ifindex, None)
        self.flows.pop(bridge_ifindex, None)
        self.flow_stats.pop(bridge_ifindex, None)
        for ifindex in self.members.pop(bridge_ifindex, set()):
            self.ports.pop(ifindex, None)
            self.xdp.pop(ifindex, None)
            self.xdp_targets.discard(ifindex)
        self.fdb.pop(bridge_ifindex, None)

    @contextmanager
    def deferred_flood_sync(self) -> Iterator[None]:
        """Not a call (it changes nothing, and every change of the switch is in one): the calls
        made within record it in `deferred`."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1

    def prune(self, keep: set[int]) -> None:
        self._enter("prune", set(keep))
        for br in [b for b in self.bridges if b not in keep]:
            self.bridges.pop(br)
            self.members.pop(br, None)
            self.fdb.pop(br, None)
        for ifindex in [p for p in self.ports if p not in keep]:
            br, _kind = self.ports.pop(ifindex)
            self.members.get(br, set()).discard(ifindex)
            self.xdp.pop(ifindex, None)
            self.xdp_targets.discard(ifindex)

    def fdb_list(self, bridge_ifindex: int) -> list[FdbRecord]:
        self._enter("fdb_list", bridge_ifindex)
        return list(self.fdb.get(bridge_ifindex, {}).values())

    def fdb_add_static(self, bridge_ifindex: int, mac: str, vlan: int, ifindex: int,
                       remote: str = "") -> None:
        self._enter("fdb_add_static", bridge_ifindex, mac, vlan, ifindex)
        if bridge_ifindex not in self.bridges:
            raise NotFound(f"bridge ifindex {bridge_ifindex} is not in the datapath")
        rec = FdbRecord(mac, vlan, ifindex, True, 0.0, remote)
        self.fdb.setdefault(bridge_ifindex, {})[(mac, vlan)] = rec

    def fdb_delete(self, bridge_ifindex: int, mac: str, vlan: int) -> bool:
        self._enter("fdb_delete", bridge_ifindex, mac, vlan)
        return self.fdb.get(bridge_ifindex, {}).pop((mac, vlan), None) is not None

    def _tunnel(self, ifindex: int) -> None:
        if self.ports.get(ifindex, (0, None))[1] != PortKind.TUNNEL:
            raise NotFound(f"ifindex {ifindex} is not a tunnel port of the datapath")

    def set_tunnel(self, ifindex: int, vni: int, local: str = "") -> None:
        self._enter("set_tunnel", ifindex, vni, local)
        self._tunnel(ifindex)
        self.tunnels[ifindex] = (vni, local)

    def set_vteps(self, ifindex: int, addresses: list[str]) -> None:
        self._enter("set_vteps", ifindex, addresses)
        self._tunnel(ifindex)
        self.vtep_lists[ifindex] = list(addresses)

    def vteps(self, ifindex: int) -> list[str]:
        self._tunnel(ifindex)
        return list(self.vtep_lists.get(ifindex, []))

    def fdb_sweep(self, aging_seconds: float) -> int:
        self._enter("fdb_sweep", aging_seconds)
        gone = 0
        for entries in self.fdb.values():
            for key, rec in list(entries.items()):
                if not rec.static and rec.age_seconds > aging_seconds:
                    del entries[key]
                    gone += 1
        return gone

    def flows_sync(self, bridge_ifindex: int, rules: Iterable[DpRule]) -> None:
        """The table becomes exactly RULES; too many distinct masks: FailedPrecondition and the
        table stays as it was. Counters of rule_ids that stay are kept, others dropped."""
        rules = list(rules)
        self._enter("flows_sync", bridge_ifindex, rules)
        if bridge_ifindex not in self.bridges:
            raise NotFound(f"bridge ifindex {bridge_ifindex} is not in the datapath")
        for r in rules:
            assert isinstance(r, DpRule), r
            assert list(r.fields) == sorted(r.fields), r
            for name, value, mask in r.fields:
                assert name in FLOW_FIELDS, name
                assert 0 <= value <= mask < 1 << FLOW_FIELDS[name] and value & mask == value, r
            assert 0 < len(r.actions) <= MAX_FLOW_ACTIONS, r
        masks = {tuple((f, m) for f, _v, m in r.fields) for r in rules}
        if len(masks) > self.max_masks:
            raise FailedPrecondition(f"too many distinct flow masks: {len(masks)} (the datapath "
                                     f"holds at most {self.max_masks})")
        ids = [r.rule_id for r in rules]
        assert len(ids) == len(set(ids)), "duplicate rule ids"
        self.flows[bridge_ifindex] = {r.rule_id: r for r in rules}
        stats = self.flow_stats.setdefault(bridge_ifindex, {})
        for rule_id in [i for i in stats if i not in self.flows[bridge_ifindex]]:
            del stats[rule_id]

    def flow_counters(self, bridge_ifindex: int,
                      rule_ids: Iterable[int] | None = None) -> dict[int, FlowCounters]:
        self._enter("flow_counters", bridge_ifindex)
        stats = self.flow_stats.get(bridge_ifindex, {})
        wanted = stats.keys() if rule_ids is None else set(rule_ids) & stats.keys()
        return {rid: stats[rid] for rid in wanted}

    def hit(self, bridge_ifindex: int, rule_id: int, packets: int = 1, nbytes: int = 64,
            at_ns: int = 1) -> None:
        """Packets matched a rule (test helper)."""
        assert rule_id in self.flows.get(bridge_ifindex, {}), rule_id
        old = self.flow_stats.setdefault(bridge_ifindex, {}).get(rule_id, FlowCounters(0, 0, 0))
        self.flow_stats[bridge_ifindex][rule_id] = FlowCounters(
            old.packets + packets, old.bytes + nbytes, at_ns)

    def port_counters(self, ifindex: int) -> PortCounters:
        self._enter("port_counters", ifindex)
        return self.counters.get(ifindex, PortCounters(0, 0, 0, 0, {}))

    def close(self) -> None:
        self.closed = True

    def destroy(self) -> None:
        self._enter("destroy")
        self.bridges.clear()
        self.ports.clear()
        self.members.clear()
        self.fdb.clear()
        self.flows.clear()
        self.closed = True

    # ---- trace and watchers

    max_watchers = 8

    def _tracing_init(self) -> None:
        self.trace_result: Any = TraceResult("flood")
        self.trace_xdp_result: Any = None  # a port with XDP: its stage, before trace_result
        self.traced: list[tuple[bytes, int, bool]] = []
        self.watchers: dict[int, Any] = {}            # slot -> WatchFilter
        self.watch_events: list[Any] = []
        self.lost: dict[int, int] = {}
        self.rate = 10_000
        self._watch_cond = threading.Condition()
        self.packet_in_keys: dict[int, int] = {}        # subscription key -> lost
        self.packet_in_events: list[Any] = []
        self.packet_in_stats = PacketInCounters()
        self.packet_in_rate = PACKET_IN_DEFAULT_RATE

    def trace(self, frame: bytes, ifindex: int, *, egress: bool = False) -> Any:
        self._enter("trace", frame, ifindex, egress)
        self.traced.append((frame, ifindex, egress))
        return self.trace_result

    def trace_hooks(self, frame: bytes, ifindex: int, *, egress: bool = False) -> list[Any]:
        """trace_xdp_result first (a port with XDP) when set, then trace_result."""
        first = [self.trace_xdp_result] if self.trace_xdp_result is not None else []
        return [*first, self.trace(frame, ifindex, egress=egress)]

    def watch_add(self, flt: Any) -> int:
        from vswitchd.errors import Unavailable

        self._enter("watch_add", flt)
        free = [s for s in range(self.max_watchers) if s not in self.watchers]
        if not free:
            raise Unavailable(f"all {self.max_watchers} watcher slots are in use")
        self.watchers[free[0]] = flt
        self.lost[free[0]] = 0
        return free[0]

    def watch_remove(self, slot: int) -> None:
        self._enter("watch_remove", slot)
        self.watchers.pop(slot, None)

    def watch_lost(self, slot: int) -> int:
        return self.lost.get(slot, 0)

    def watch_set_rate(self, per_cpu_per_second: int) -> None:
        self.rate = per_cpu_per_second

    def emit(self, *events: Any) -> None:
        """Events the datapath put on the ring buffer (only for slots still watching)."""
        with self._watch_cond:
            self.watch_events.extend(events)
            self._watch_cond.notify_all()

    def watch_poll(self, timeout_ms: int) -> list[Any]:
        with self._watch_cond:
            if not self.watch_events:
                self._watch_cond.wait(timeout_ms / 1000)
            out, self.watch_events = self.watch_events, []
        active = 0
        for slot in self.watchers:
            active |= 1 << slot
        return [e for e in out if e.watchers & active]

    # ---- packet-in

    def packet_in_watch(self, key: int) -> None:
        self._enter("packet_in_watch", key)
        self.packet_in_keys[key] = 0

    def packet_in_unwatch(self, key: int) -> None:
        self._enter("packet_in_unwatch", key)
        self.packet_in_keys.pop(key, None)

    def packet_in_lost(self, key: int) -> int:
        return self.packet_in_keys.get(key, 0)

    def send_packet_in(self, *events: Any) -> None:
        """Frames a controller action sent: to the ring if their bridge (or every bridge) is
        subscribed, else counted unwatched, as the datapath does."""
        with self._watch_cond:
            for ev in events:
                if ev.bridge in self.packet_in_keys or 0 in self.packet_in_keys:
                    self.packet_in_events.append(ev)
                    self.packet_in_stats = replace(self.packet_in_stats,
                                                   sent=self.packet_in_stats.sent + 1)
                else:
                    self.packet_in_stats = replace(
                        self.packet_in_stats, unwatched=self.packet_in_stats.unwatched + 1)
            self._watch_cond.notify_all()

    def packet_in_poll(self, timeout_ms: int) -> list[Any]:
        with self._watch_cond:
            if not self.packet_in_events:
                self._watch_cond.wait(timeout_ms / 1000)
            out, self.packet_in_events = self.packet_in_events, []
        return out

    def packet_in_counters(self) -> PacketInCounters:
        return self.packet_in_stats

    def packet_in_set_rate(self, per_cpu_per_second: int) -> None:
        self._enter("packet_in_set_rate", per_cpu_per_second)
        self.packet_in_rate = per_cpu_per_second


# ---- NAT ---------------------------------------------------------------------------------


class FakeNat:
    """Masquerade rules by bridge, and the IPv4 forwarding switch."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self.forwarding = False
        self.fail: Exception | None = None  # the next masquerade raises it

    def enable_ip_forwarding(self) -> bool:
        was = self.forwarding
        self.forwarding = True
        return not was

    def disable_ip_forwarding(self) -> None:
        self.forwarding = False

    def masquerade(self, bridge: str, subnet: str) -> None:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        self.rules[bridge] = subnet

    def remove(self, bridge: str) -> bool:
        return self.rules.pop(bridge, None) is not None


def _conforms() -> None:
    """The fakes implement the seams the switch uses (checked by the type checker in make
    test, never run)."""
    netns: NetnsApi = FakeNetns()
    links: LinksApi = FakeLinks()
    offloads: EthtoolApi = FakeEthtool(FakeLinks())
    datapath: DatapathApi = FakeDatapath()
    nat: NatApi = FakeNat()
    del netns, links, offloads, datapath, nat


# ---- a switch on the fakes ---------------------------------------------------------------


@dataclass
class Rig:
    """A Switch wired to fakes, plus what is needed to build a second one on the same store."""

    netns: FakeNetns
    links: FakeLinks
    dp: FakeDatapath | None
    state_dir: str
    cfg: Config
    switch: Switch = field(init=False)
    reason: str | None = None
    clock: Any = None
    nat: FakeNat = field(default_factory=FakeNat)
    ethtool: FakeEthtool = field(init=False)

    def __post_init__(self) -> None:
        self.ethtool = FakeEthtool(self.links)
        self.switch = self.new_switch()

    def new_switch(self) -> Switch:
        """A fresh Switch (as after a daemon restart) on the same kernel, datapath and store."""
        return Switch(self.cfg, self.links, StateStore(self.state_dir), self.dp, self.reason,
                      clock=self.clock, nat=self.nat, netns=self.netns, ethtool=self.ethtool)

    def stored(self, revisions: bool = False) -> dict[str, Any]:
        """The bridges as a fresh StateStore reads them back from disk, as plain dicts; without
        the objects' revisions unless asked (tests/unit/test_events.py checks those)."""
        out = {n: b.to_dict() for n, b in StateStore(self.state_dir).load().items()}
        if not revisions:
            for b in out.values():
                b.pop("revision", None)
                for row in (*b["ports"], *b["fdb"]):
                    row.pop("revision", None)
        return out


class FakeClock:
    """Wall and monotonic time that move only when told (advance)."""

    def __init__(self, wall: float = 1_700_000_000.0, mono_ns: int = 5_000_000_000) -> None:
        self._wall, self._mono = wall, mono_ns

    def wall(self) -> float:
        return self._wall

    def mono_ns(self) -> int:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += int(seconds * 1e9)


def make_rig(monkeypatch: Any, state_dir: str, *, ebpf: bool = True,
             reason: str | None = None, default_datapath: str = "ebpf",
             clock: Any = None) -> Rig:
    ns = FakeNetns().install(monkeypatch)
    links = FakeLinks(ns)
    cfg = Config(state_dir=state_dir, default_datapath=default_datapath)
    return Rig(ns, links, FakeDatapath() if ebpf else None, state_dir, cfg, reason=reason,
               clock=clock)


@contextmanager
def serve_switch(switch: Switch) -> Iterator[Any]:
    """A SwitchStub talking over a real gRPC server on a Unix socket to SWITCH."""
    import grpc

    from vswapi import switch_pb2_grpc as pb_grpc
    from vswitchd.api.servicer import SwitchServicer

    d = tempfile.mkdtemp(prefix="vswapi-", dir="/tmp")  # short path: sun_path is 108 bytes
    sock = os.path.join(d, "vswitchd.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SwitchServicer_to_server(SwitchServicer(switch), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    channel = grpc.insecure_channel(f"unix:{sock}")
    try:
        yield pb_grpc.SwitchStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)
        shutil.rmtree(d, ignore_errors=True)
