"""The state consistency checker (`vswitchd --check-state`, the fuzz tests): does the kernel
and the eBPF datapath hold what the stored desired state says?

Read-only and without the daemon's locks: the store is read through SQLite (WAL: a reader never
blocks the daemon), links with one netlink dump, NAT rules from nftables, the datapath from its
pinned maps with the bpf() syscall (no bcc, no compile), so it works beside a running daemon and
after one stopped (the pins stay). It must run in the daemon's network namespace. Each finding
is one sentence naming the object and what disagrees; none = consistent.

What it compares, per stored bridge: the bridge device (kind bridge, its own MAC); each port's
interface (enslaved to the bridge, of its type's link kind, its MTU, the XDP program its mode asks
for), a veth's namespace and peer; the NAT rule
(present with the bridge's subnet iff nat is on; no rule for another bridge); on eBPF bridges
the ports map (the bridge and each port, with its datapath kind and VLAN mode, the trunk
entry), every static FDB entry (static, at the port's ifindex), a flow table (flow_masks entry)
iff the bridge has rules; and no ports-map entry, FDB entry or flow table left of a bridge or
port the store does not hold.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import struct
from dataclasses import dataclass, field

from vswitchd.datapath import bpfsys
from vswitchd.datapath.constants import (
    FDB_F_STATIC,
    PORT_F_ACCESS,
    PORT_F_TRUNK,
    VLAN_BITMAP_WORDS,
)
from vswitchd.datapath.pins import map_info
from vswitchd.datapath.ports import PortKind
from vswitchd.errors import SwitchError
from vswitchd.model import Bridge
from vswitchd.netlink.types import LinkInfo
from vswitchd.state import DB_NAME, StateError, StateStore

_PORT_INFO = struct.Struct("<IHBBHH")  # bpf/lib/ports.h struct port_info
_TRUNK = struct.Struct(f"<H6x{VLAN_BITMAP_WORDS}Q")  # struct port_trunk
_FDB_KEY = struct.Struct("<IH6s")  # bpf/lib/fdb.h struct fdb_key
_FDB_ENTRY = struct.Struct("<II")  # struct fdb_entry: ifindex, flags (then times)


class CannotCheck(Exception):
    """Something the check needs cannot be read (no store, unreadable pins, not root)."""


@dataclass
class DpPort:
    bridge: int
    vlan: int
    kind: int
    flags: int


@dataclass
class Observed:
    """What the kernel and the datapath hold. None for what is not there to read: nat without
    nftables, the maps without a pin directory (no eBPF bridge ever ran)."""

    links: dict[str, LinkInfo]
    peers: dict[tuple[str, str], str] = field(default_factory=dict)  # (netns, peer) -> problem
    nat: dict[str, str] | None = None  # bridge -> masqueraded subnet
    ports: dict[int, DpPort] | None = None  # ifindex -> ports map entry
    trunks: dict[int, tuple[int, frozenset[int]]] = field(default_factory=dict)
    fdb: dict[tuple[int, int, str], tuple[int, int]] = field(default_factory=dict)
    flow_bridges: set[int] = field(default_factory=set)  # flow_masks keys: bridge ifindexes


# ---- reading ---------------------------------------------------------------------------------

def _map(bpffs_dir: str, name: str) -> dict[bytes, bytes] | None:
    """Every key and value of a pinned map; None when it is not pinned."""
    path = os.path.join(bpffs_dir, name)
    if not os.path.exists(path):
        return None
    try:
        fd = bpfsys.obj_get(path)
    except OSError as exc:
        raise CannotCheck(f"cannot open the pinned map {path}: {exc.strerror or exc}") from None
    try:
        info = map_info(fd)
        out = {}
        for key in bpfsys.map_keys(fd, info["key_size"], f"listing {path}"):
            value = bpfsys.map_lookup(fd, key, info["value_size"], f"reading {path}")
            if value is not None:  # deleted meanwhile
                out[key] = value
        return out
    except OSError as exc:
        raise CannotCheck(f"cannot read the pinned map {path}: {exc}") from None
    finally:
        os.close(fd)


def _bits(words: tuple[int, ...]) -> frozenset[int]:
    return frozenset(i * 64 + b for i, w in enumerate(words) for b in range(64) if w >> b & 1)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def read_datapath(obs: Observed, bpffs_dir: str) -> None:
    ports = _map(bpffs_dir, "ports")
    if ports is None:
        return
    obs.ports = {}
    for key, value in ports.items():
        bridge, vlan, kind, flags, _slot, _pad = _PORT_INFO.unpack_from(value)
        obs.ports[int.from_bytes(key[:4], "little")] = DpPort(bridge, vlan, kind, flags)
    for key, value in (_map(bpffs_dir, "port_trunks") or {}).items():
        native, *words = _TRUNK.unpack_from(value)
        obs.trunks[int.from_bytes(key[:4], "little")] = (native, _bits(tuple(words)))
    for key, value in (_map(bpffs_dir, "fdb") or {}).items():
        bridge, vlan, mac = _FDB_KEY.unpack_from(key)
        obs.fdb[(bridge, vlan, _mac(mac))] = _FDB_ENTRY.unpack_from(value)
    obs.flow_bridges = {int.from_bytes(k[:4], "little")
                        for k in (_map(bpffs_dir, "flow_masks") or {})}


def read_peers(obs: Observed, bridges: dict[str, Bridge]) -> None:
    """For each veth port with a namespace: why its peer is not there ('' when it is)."""
    from vswitchd.netlink import netns
    from vswitchd.netlink.links import Links

    wanted = {(p.spec.netns, p.spec.peer_name) for br in bridges.values()
              for p in br.ports.values() if p.type == "veth" and p.spec.netns}
    if not wanted:
        return
    links = Links()
    try:
        for ns, peer in sorted(wanted):
            if not netns.exists(ns):
                obs.peers[(ns, peer)] = f"its network namespace {ns} does not exist"
            elif not links.peer_exists(ns, peer):
                obs.peers[(ns, peer)] = f"network namespace {ns} has no interface {peer}"
            else:
                obs.peers[(ns, peer)] = ""
    finally:
        links.close()


def read_nat() -> dict[str, str] | None:
    from vswitchd.netlink.nat import Nat

    try:
        return Nat().rules()
    except SwitchError:  # no nftables binding: NAT cannot be in use either
        return None


def load_store(state_dir: str) -> dict[str, Bridge]:
    """The stored bridges; CannotCheck when there is no store (a check never creates one)."""
    if not os.path.exists(os.path.join(state_dir, DB_NAME)):
        raise CannotCheck(f"no state store in {state_dir} (no {DB_NAME}): nothing to check "
                          "against (wrong --state-dir?)")
    store = StateStore(state_dir)
    try:
        # only reads (StateStore's own connection would upgrade the schema): no write lock
        # beside a running daemon; not mode=ro, which leaves the -wal and -shm files behind
        store._db = sqlite3.connect(f"file:{store.path}?mode=rw", uri=True, timeout=10,
                                    check_same_thread=False)
        return store.load()
    except sqlite3.Error as exc:
        raise CannotCheck(f"cannot read the state store {store.path}: {exc}") from None
    except StateError as exc:
        raise CannotCheck(str(exc)) from None
    finally:
        store.close()


def observe(bridges: dict[str, Bridge], bpffs_dir: str) -> Observed:
    from vswitchd.netlink import linkdump

    try:
        obs = Observed(links={name: info for name, (info, _stats) in linkdump.dump().items()})
    except OSError as exc:
        raise CannotCheck(f"cannot list the network interfaces: {exc}") from None
    read_peers(obs, bridges)
    obs.nat = read_nat()
    read_datapath(obs, bpffs_dir)
    return obs


# ---- comparing -------------------------------------------------------------------------------

def _nat_subnet(br: Bridge) -> str | None:
    nets = [ipaddress.ip_interface(a).network for a in br.spec.addresses
            if ipaddress.ip_interface(a).version == 4]
    return str(nets[0]) if len(nets) == 1 else None


def compare(bridges: dict[str, Bridge], obs: Observed) -> list[str]:
    """The findings: each a sentence naming the object and what disagrees."""
    from vswitchd.ports import driver

    out: list[str] = []
    dp_keep: set[int] = set()  # ports-map keys the store accounts for
    ebpf_bridges: set[int] = set()
    for br in bridges.values():
        info = obs.links.get(br.name)
        if info is None:
            out.append(f"bridge {br.name}: its interface does not exist")
        elif info.kind != "bridge":
            out.append(f"bridge {br.name}: interface {br.name} is a {info.kind or 'nic'}, "
                       "not a bridge")
            info = None
        elif br.facts.mac and info.mac != br.facts.mac \
                and not any(p.spec.uplink for p in br.ports.values()):  # (wears the NIC's)
            out.append(f"bridge {br.name}: its MAC is {info.mac}, not its own {br.facts.mac}")
        ebpf = br.datapath == "ebpf"
        if ebpf and info is not None:
            ebpf_bridges.add(info.ifindex)
            dp_keep.add(info.ifindex)
            out += _dp_port(obs, f"bridge {br.name}", info.ifindex, info.ifindex,
                            PortKind.BRIDGE, 0, frozenset(), 0)
        for port in br.ports.values():
            what = f"port {port.name} of bridge {br.name}"
            drv = driver(port.type)
            link = obs.links.get(port.name)
            if link is None:
                out.append(f"{what}: its interface does not exist")
            else:
                if info is not None and link.master != info.ifindex:
                    out.append(f"{what}: interface {port.name} is not enslaved to {br.name}")
                if drv.link_kind and link.kind != drv.link_kind:
                    out.append(f"{what}: interface {port.name} is a {link.kind or 'nic'}, "
                               f"not a {drv.link_kind}")
                if port.spec.mtu and link.mtu != port.spec.mtu:
                    out.append(f"{what}: its MTU is {link.mtu}, not {port.spec.mtu}")
                out += _xdp(what, link, (port.spec.xdp or drv.xdp_default) if ebpf else "off")
                if ebpf and info is not None:
                    dp_keep.add(link.ifindex)
                    out += _dp_port(obs, what, link.ifindex, info.ifindex, drv.dp_kind,
                                    port.spec.vlan, frozenset(port.spec.trunks),
                                    port.spec.native_vlan)
            if port.type == "veth" and port.spec.netns:
                problem = obs.peers.get((port.spec.netns, port.spec.peer_name), "")
                if problem:
                    out.append(f"{what}: {problem}")
        if ebpf and info is not None:
            out += _fdb(br, obs, info.ifindex)
            if obs.ports is not None and (len(br.flows) > 0) != (info.ifindex in obs.flow_bridges):
                out.append(f"bridge {br.name}: the store has {len(br.flows)} flow rules but the "
                           "datapath " + ("has no flow table for it" if len(br.flows)
                                          else "still has a flow table for it"))
        out += _nat(br, obs)
    if obs.nat is not None:
        for name, subnet in sorted(obs.nat.items()):
            if name not in bridges:
                out.append(f"NAT rule for {name} ({subnet}): the store has no bridge {name}")
    out += _stale_datapath(obs, dp_keep, ebpf_bridges)
    return out


def _dp_port(obs: Observed, what: str, ifindex: int, bridge: int, kind: int, vlan: int,
             trunks: frozenset[int], native: int) -> list[str]:
    if obs.ports is None:
        return [f"{what}: the datapath's pinned maps do not exist"]
    entry = obs.ports.get(ifindex)
    if entry is None:
        return [f"{what}: no entry (ifindex {ifindex}) in the datapath's ports map"]
    out = []
    if entry.bridge != bridge:
        out.append(f"{what}: the ports map puts ifindex {ifindex} on bridge ifindex "
                   f"{entry.bridge}, not {bridge}")
    if entry.kind != kind:
        out.append(f"{what}: the ports map has kind {entry.kind}, not {int(kind)}")
    if vlan:
        if not entry.flags & PORT_F_ACCESS or entry.vlan != vlan:
            out.append(f"{what}: the ports map does not make it an access port of VLAN {vlan}")
    elif trunks:
        have = obs.trunks.get(ifindex)
        if not entry.flags & PORT_F_TRUNK or have is None:
            out.append(f"{what}: the ports map does not make it a trunk port")
        elif have != (native, trunks | ({native} if native else set())) \
                and have != (native, trunks):
            out.append(f"{what}: the datapath's trunk entry (native {have[0]}, VLANs "
                       f"{sorted(have[1])}) is not the stored one (native {native}, VLANs "
                       f"{sorted(trunks)})")
    elif entry.flags & (PORT_F_ACCESS | PORT_F_TRUNK):
        out.append(f"{what}: the ports map gives it a VLAN mode the store does not")
    return out


XDP_MODES = {"off": set(), "native": {"native"}, "generic": {"generic"},
             "auto": {"native", "generic"}}  # the mode in force -> the attachments it may get


def _xdp(what: str, link: LinkInfo, mode: str) -> list[str]:
    """The XDP program the kernel runs on the port's interface fits its mode (vswitchd.switch.xdp:
    auto is native where the driver can, else generic; kernel bridges run none)."""
    have = {m for m, _prog in link.xdp_progs if m in ("native", "generic")}
    allowed = XDP_MODES.get(mode, set())
    if not have and allowed:
        return [f"{what}: XDP mode {mode} but no XDP program is attached"]
    if have - allowed:
        return [f"{what}: XDP mode {mode} but a {'/'.join(sorted(have))} XDP program is "
                "attached"]
    return []


def _fdb(br: Bridge, obs: Observed, bridge: int) -> list[str]:
    out = []
    for e in br.fdb:
        what = f"static FDB entry {e.mac} vlan {e.vlan} of bridge {br.name}"
        link = obs.links.get(e.port)
        have = obs.fdb.get((bridge, e.vlan, e.mac.lower()))
        if have is None:
            out.append(f"{what}: not in the datapath's FDB map")
        elif not have[1] & FDB_F_STATIC:
            out.append(f"{what}: the datapath's entry is not static")
        elif link is not None and have[0] != link.ifindex:
            out.append(f"{what}: the datapath sends it to ifindex {have[0]}, not to {e.port} "
                       f"({link.ifindex})")
    return out


def _nat(br: Bridge, obs: Observed) -> list[str]:
    if obs.nat is None:
        return [f"bridge {br.name}: NAT is on but nftables cannot be read"] if br.spec.nat else []
    have = obs.nat.get(br.name)
    if br.spec.nat:
        want = _nat_subnet(br)
        if have is None:
            return [f"bridge {br.name}: NAT is on but there is no NAT rule for it"]
        if want is not None and have != want:
            return [f"bridge {br.name}: its NAT rule masquerades {have}, not {want}"]
    elif have is not None:
        return [f"bridge {br.name}: NAT is off but a NAT rule ({have}) is installed"]
    return []


def _stale_datapath(obs: Observed, keep: set[int], bridges: set[int]) -> list[str]:
    if obs.ports is None:
        return []
    out = [f"ports map entry for ifindex {i} (bridge ifindex {e.bridge}): no stored bridge or "
           "port has that interface" for i, e in sorted(obs.ports.items()) if i not in keep]
    out += [f"FDB map entry {mac} vlan {vlan} of bridge ifindex {b}: no stored eBPF bridge "
            "has that interface" for (b, vlan, mac) in sorted(obs.fdb) if b not in bridges]
    out += [f"flow table of bridge ifindex {b}: no stored eBPF bridge has that interface"
            for b in sorted(obs.flow_bridges - bridges)]
    return out


def check(state_dir: str, bpffs_dir: str) -> list[str]:
    """The findings for the store in STATE_DIR and the datapath pinned in BPFFS_DIR, against
    this network namespace's kernel; CannotCheck when something cannot be read."""
    bridges = load_store(state_dir)
    return compare(bridges, observe(bridges, bpffs_dir))
