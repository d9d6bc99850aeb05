"""The switch: applies desired-state changes to the kernel (netlink) and the eBPF datapath.

Every change runs under one lock, records an undo step after each thing it did, and is rolled
back completely if a later step fails; the store is written before the change is reported done.
On start, reconcile() re-creates or re-adopts what the store says should exist.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import pwd
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

from vswitchd import validate
from vswitchd.config import DATAPATHS, Config
from vswitchd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchError,
)
from vswitchd.flows import validate as flow_validate
from vswitchd.flows.batch import Stages
from vswitchd.flows.model import Clock, FlowRequest, Rule
from vswitchd.flows.table import FlowTable
from vswitchd.model import PORT_TYPES, BridgeSpec, PortSpec, StaticFdb
from vswitchd.netlink import netns
from vswitchd.netlink.links import L3Config, LinkInfo, Links, Route
from vswitchd.state import StateStore
from vswitchd.trace import ratelimit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FdbView:
    mac: str
    port: str
    vlan: int
    static: bool
    age_seconds: float


@dataclass(frozen=True)
class StatsView:
    port: str
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def drops(self) -> int:
        return sum(self.drops_by_reason.values())


@dataclass(frozen=True)
class PortView:
    spec: PortSpec
    bridge: str
    ifindex: int
    state: str


class FlowView(NamedTuple):
    rule: Rule
    counters: object             # vswitchd.datapath.FlowCounters
    duration_seconds: float      # since installed (or replaced)
    idle_seconds: float          # since the last hit, or installation if never hit


@dataclass(frozen=True)
class BridgeView:
    spec: BridgeSpec
    ifindex: int
    mac: str
    ports: list[PortView]


class _Undo:
    """Steps to revert a half-applied change, run newest first."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self._steps.append((what, fn))

    def rollback(self) -> None:
        for what, fn in reversed(self._steps):
            try:
                fn()
            except Exception:  # noqa: BLE001 - keep undoing the rest
                log.exception("rollback step failed: %s", what)
        self._steps.clear()


class Switch:
    def __init__(
        self,
        cfg: Config,
        links: Links,
        store: StateStore,
        datapath: object | None,
        ebpf_unsupported: str | None,
        clock: Clock | None = None,
        nat: object | None = None,
    ) -> None:
        self.cfg = cfg
        self.links = links
        self.store = store
        self.dp = datapath  # vswitchd.datapath.Datapath, or None when eBPF is unavailable
        self.ebpf_unsupported = ebpf_unsupported
        self._nat_impl = nat  # vswitchd.netlink.nat.Nat, made on first use (needs libnftables)
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._bridges: dict[str, BridgeSpec] = store.load()
        self._missing: dict[str, str] = {}  # port or bridge name -> why it is missing
        self.clock = clock or Clock()
        if clock is not None:  # the store derived monotonic times from the real clock
            for br in self._bridges.values():
                br.flows.rebase(clock.wall(), clock.mono_ns())
        # Rule ids are unique across bridges and never reused while a rule exists: each table
        # persists its high-water mark and the allocator starts above all of them.
        self._next_rule_id = max((b.flows.next_id for b in self._bridges.values()), default=1)
        self._watch_rate = ratelimit.stored(store)  # issue 4: given to the datapath by reconcile

    # ---- helpers -------------------------------------------------------------------------

    def _bridge(self, name: str) -> BridgeSpec:
        try:
            return self._bridges[name]
        except KeyError:
            raise NotFound(f"bridge {name} does not exist") from None

    def _link(self, name: str) -> LinkInfo:
        info = self.links.get(name)
        if info is None:
            raise FailedPrecondition(f"interface {name} is missing from the kernel")
        return info

    def _port_owner(self, port: str) -> BridgeSpec | None:
        for br in self._bridges.values():
            if port in br.ports:
                return br
        return None

    def _netns_users(self, ref: str) -> list[PortSpec]:
        return [p for b in self._bridges.values() for p in b.ports.values() if p.netns == ref]

    def _require_ebpf(self) -> None:
        if self.dp is None:
            reason = self.ebpf_unsupported or "unknown reason"
            if not reason.startswith("eBPF datapath unavailable"):
                reason = f"eBPF datapath unavailable: {reason}; use --datapath kernel"
            raise FailedPrecondition(f"{reason} (a plain Linux bridge)")

    def _save(self) -> None:
        try:
            self.store.save(self._bridges)
        except OSError as exc:
            raise FailedPrecondition(
                f"cannot write state store {self.store.path}: {exc.strerror}"
            ) from None

    def _commit(self, undo: _Undo) -> None:
        """Persist the desired state; if that fails, undo the kernel change too."""
        try:
            self._save()
        except FailedPrecondition:
            undo.rollback()
            raise

    def _nat(self) -> object:
        if self._nat_impl is None:
            from vswitchd.netlink.nat import Nat

            self._nat_impl = Nat()
        return self._nat_impl

    def _dp_kind(self, port_type: str) -> object:
        from vswitchd.datapath import PortKind

        return PortKind.PEER if port_type == "veth" else PortKind.DEVICE

    # ---- bridges -------------------------------------------------------------------------

    def create_bridge(self, spec: BridgeSpec, may_exist: bool = False) -> BridgeView:
        validate.ifname(spec.name, "bridge")
        datapath = spec.datapath or self.cfg.default_datapath
        if datapath not in DATAPATHS:
            raise InvalidArgument("datapath", datapath, f"must be one of {', '.join(DATAPATHS)}")
        addresses = [validate.cidr(a, "ip") for a in spec.addresses]
        nat_subnet = _nat_subnet(addresses) if spec.nat else ""
        spec = BridgeSpec(name=spec.name, datapath=datapath, addresses=addresses, nat=spec.nat)
        with self._lock:
            if spec.name in self._bridges:
                if may_exist:
                    return self._bridge_view(self._bridges[spec.name])
                raise AlreadyExists(f"bridge {spec.name} already exists (--may-exist ignores this)")
            if self._port_owner(spec.name) or self.links.get(spec.name) is not None:
                raise AlreadyExists(
                    f"interface {spec.name} already exists and is not a bridge managed by vswitchd"
                )
            self._check_overlap(spec.name, addresses)
            if datapath == "ebpf":
                self._require_ebpf()
            nat = self._nat() if spec.nat else None
            undo = _Undo()
            try:
                info = self.links.create_bridge(spec.name, addresses)
                undo.push(f"delete bridge {spec.name}", lambda: self.links.delete(spec.name))
                if datapath == "ebpf":
                    self.dp.add_bridge(info.ifindex, info.mac)
                    undo.push("detach bridge", lambda: self.dp.remove_bridge(info.ifindex))
                if nat is not None:
                    self._enable_nat(nat, spec.name, nat_subnet, undo)
            except BaseException:
                undo.rollback()
                raise
            self._bridges[spec.name] = spec
            undo.push("forget bridge", lambda: self._bridges.pop(spec.name, None))
            self._commit(undo)
            log.info("bridge %s created (datapath %s)", spec.name, datapath)
            return self._bridge_view(spec)

    def delete_bridge(self, name: str, if_exists: bool = False) -> bool:
        with self._lock:
            if name not in self._bridges:
                if if_exists:
                    return False
                raise NotFound(f"bridge {name} does not exist (--if-exists ignores this)")
            br = self._bridges[name]
            uplinks = [p for p in br.ports.values() if p.uplink]
            for port in uplinks:  # first: the host's addresses go back to the NIC
                self._teardown_port(br, port)
            if br.nat:
                try:
                    self._nat().remove(name)
                except SwitchError as exc:
                    log.error("bridge %s: NAT rule not removed: %s", name, exc)
            for port in list(br.ports.values()):
                self._teardown_port(br, port)
            info = self.links.get(name)
            if br.datapath == "ebpf" and self.dp is not None and info is not None:
                if len(br.flows):
                    try:
                        self.dp.flows_sync(info.ifindex, [])
                    except SwitchError as exc:
                        log.warning("bridge %s: flows not cleared from the datapath: %s",
                                    name, exc)
                self.dp.remove_bridge(info.ifindex)
            self.links.delete(name)
            del self._bridges[name]
            self._missing.pop(name, None)
            self._save()
            log.info("bridge %s deleted", name)
            return True

    def get_bridge(self, name: str) -> BridgeView:
        with self._lock:
            return self._bridge_view(self._bridge(name))

    def list_bridges(self) -> list[BridgeView]:
        with self._lock:
            return [self._bridge_view(b) for b in sorted(self._bridges.values(), key=_by_name)]

    def _bridge_view(self, br: BridgeSpec) -> BridgeView:
        info = self.links.get(br.name)
        ports = [self._port_view(br, p) for p in sorted(br.ports.values(), key=_by_name)]
        return BridgeView(
            spec=br,
            ifindex=info.ifindex if info else 0,
            mac=info.mac if info else "",
            ports=ports,
        )

    def _check_overlap(self, name: str, addresses: list[str]) -> None:
        """A bridge's subnets must not overlap another bridge's (routing would be ambiguous)."""
        for cidr in addresses:
            net = ipaddress.ip_interface(cidr).network
            for other in self._bridges.values():
                if other.name == name:
                    continue
                for theirs in self._bridge_addresses(other):
                    their_net = ipaddress.ip_interface(theirs).network
                    if their_net.version == net.version and net.overlaps(their_net):
                        raise InvalidArgument(
                            "ip", cidr, f"overlaps {theirs} of bridge {other.name}")

    @staticmethod
    def _bridge_addresses(br: BridgeSpec) -> list[str]:
        """The bridge's own addresses and those its uplink brought from the NIC."""
        out = list(br.addresses)
        for p in br.ports.values():
            out += [a for a in p.uplink_addresses if a not in out]
        return out

    def _enable_nat(self, nat: object, bridge: str, subnet: str, undo: _Undo) -> None:
        if nat.enable_ip_forwarding():
            log.info("IPv4 forwarding enabled for NAT on bridge %s", bridge)
            undo.push("disable IPv4 forwarding", nat.disable_ip_forwarding)
        nat.masquerade(bridge, subnet)
        undo.push(f"remove NAT rule of {bridge}", lambda: nat.remove(bridge))

    def update_bridge(self, name: str, nat: bool | None = None) -> BridgeView:
        """Change a bridge's settings at run time (today: NAT on or off)."""
        with self._lock:
            br = self._bridge(name)
            if nat is None or nat == br.nat:
                return self._bridge_view(br)
            undo = _Undo()
            impl = self._nat()
            if nat:
                subnet = _nat_subnet(br.addresses)
                try:
                    self._enable_nat(impl, name, subnet, undo)
                except BaseException:
                    undo.rollback()
                    raise
            else:
                impl.remove(name)
                subnet = _nat_subnet(br.addresses)
                undo.push("restore NAT rule", lambda: impl.masquerade(name, subnet))
            br.nat = nat
            undo.push("restore nat flag", lambda: setattr(br, "nat", not nat))
            self._commit(undo)
            log.info("bridge %s: NAT %s", name, "on" if nat else "off")
            return self._bridge_view(br)

    # ---- ports ---------------------------------------------------------------------------

    def _validate_port(self, spec: PortSpec) -> PortSpec:
        validate.ifname(spec.name, "port")
        ptype = spec.type or "veth"
        if ptype not in PORT_TYPES:
            raise InvalidArgument("type", ptype, f"must be one of {', '.join(PORT_TYPES)}")
        mtu = validate.mtu(spec.mtu) if spec.mtu else 0
        vlan, trunks, native = validate.vlan_mode(spec.vlan, spec.trunks, spec.native_vlan)
        vlans = {"vlan": vlan, "trunks": trunks, "native_vlan": native}
        if spec.multi_queue and ptype != "tap":
            raise InvalidArgument("multi_queue", True, "applies only to tap ports")
        if spec.uplink and ptype != "system":
            raise InvalidArgument("uplink", True, "applies only to system ports (--type system)")
        if spec.gateway and ptype != "veth":
            raise InvalidArgument("gateway", spec.gateway, "applies only to veth ports")
        if ptype == "veth":
            ref = spec.netns or spec.name  # default: a namespace named after the port
            netns.resolve(ref)  # rejects names that are neither a safe name nor a path
            peer = validate.ifname(spec.peer_name or "eth0", "peer_name")
            addresses = [validate.cidr(a, "ip") for a in spec.addresses]
            mac = validate.unicast_mac(spec.mac) if spec.mac else ""
            if spec.owner:
                raise InvalidArgument("owner", spec.owner, "applies only to tap ports")
            gateway = validate.gateway(spec.gateway, addresses) if spec.gateway else ""
            return PortSpec(spec.name, "veth", ref, peer, addresses, mac, mtu, "", False,
                            gateway=gateway, **vlans)
        for fld, value in (("netns", spec.netns), ("ip", spec.addresses), ("mac", spec.mac)):
            if value:
                raise InvalidArgument(fld, value, "applies only to veth ports")
        if spec.peer_name and spec.peer_name != "eth0":
            raise InvalidArgument("peer_name", spec.peer_name, "applies only to veth ports")
        if ptype == "tap":
            if spec.owner:
                try:
                    pwd.getpwnam(spec.owner)
                except KeyError:
                    raise InvalidArgument("owner", spec.owner, "no such user") from None
            return PortSpec(spec.name, "tap", "", "", [], "", mtu, spec.owner, False,
                            multi_queue=spec.multi_queue, **vlans)
        if spec.owner:
            raise InvalidArgument("owner", spec.owner, "applies only to tap ports")
        if mtu:
            raise InvalidArgument("mtu", mtu, "is not changed on system ports")
        return PortSpec(spec.name, "system", "", "", [], "", 0, "", False,
                        uplink=spec.uplink, **vlans)

    def create_port(self, bridge: str, spec: PortSpec, may_exist: bool = False) -> PortView:
        validate.ifname(bridge, "bridge")
        spec = self._validate_port(spec)
        with self._lock:
            br = self._bridge(bridge)
            owner = self._port_owner(spec.name)
            if owner is not None:
                if owner is br and may_exist:
                    return self._port_view(br, br.ports[spec.name])
                raise AlreadyExists(
                    f"port {spec.name} already exists on bridge {owner.name}"
                    + (" (--may-exist ignores this)" if owner is br else "")
                )
            if spec.name in self._bridges:
                raise AlreadyExists(f"{spec.name} is a bridge managed by vswitchd")
            existing = self.links.get(spec.name)
            if spec.type in ("veth", "tap") and existing is not None:
                raise AlreadyExists(
                    f"interface {spec.name} already exists and is not managed by vswitchd"
                )
            self._check_vlan_support(br, spec)
            if br.datapath == "ebpf":
                self._require_ebpf()
            if spec.uplink:
                other = next((p.name for p in br.ports.values() if p.uplink), None)
                if other is not None:
                    raise FailedPrecondition(
                        f"bridge {br.name} already has an uplink ({other}); delete it first")
            undo = _Undo()
            try:
                l3 = None
                if spec.type == "veth":
                    spec = self._create_veth(spec, undo)
                elif spec.type == "tap":
                    self._create_tap(spec)
                    undo.push(f"delete tap {spec.name}", lambda: self.links.delete(spec.name))
                else:
                    self._check_system_port(spec.name, existing)
                    if spec.uplink:
                        l3, spec = self._uplink_prepare(br, spec, undo)
                self.links.enslave(spec.name, br.name)
                undo.push(f"release {spec.name}", lambda: self.links.release(spec.name))
                self._attach(br, spec)
                undo.push("detach port", lambda: self._detach(br, spec))
                if l3 is not None:  # right after enslaving: the host's gap stays short
                    self.links.move_l3(l3, spec.name, br.name)
                    undo.push(f"move L3 config back to {spec.name}",
                              lambda: self.links.move_l3(l3, br.name, spec.name))
            except BaseException:
                undo.rollback()
                raise
            br.ports[spec.name] = spec
            undo.push("forget port", lambda: br.ports.pop(spec.name, None))
            self._commit(undo)
            self._missing.pop(spec.name, None)
            log.info("port %s (%s%s, vlan %s) added to bridge %s", spec.name, spec.type,
                     " uplink" if spec.uplink else "", spec.vlan_mode(), br.name)
            return self._port_view(br, spec)

    def _create_veth(self, spec: PortSpec, undo: _Undo) -> PortSpec:
        if netns.is_named(spec.netns):
            if not netns.exists(spec.netns):
                netns.create_named(spec.netns)
                undo.push(f"remove netns {spec.netns}", lambda: netns.remove_named(spec.netns))
                spec = replace(spec, netns_created=True)
        elif not netns.exists(spec.netns):
            raise InvalidArgument("netns", spec.netns, "does not exist")
        self._make_veth(spec)
        undo.push(f"delete veth {spec.name}", lambda: self.links.delete(spec.name))
        return spec

    def _make_veth(self, spec: PortSpec) -> None:
        kw: dict[str, object] = {}
        if spec.gateway:
            kw["gateway"] = spec.gateway
        self.links.create_veth(spec.name, spec.peer_name, spec.netns, addresses=spec.addresses,
                               mac=spec.mac or None, mtu=spec.mtu or None, **kw)

    def _create_tap(self, spec: PortSpec) -> None:
        kw: dict[str, object] = {"multi_queue": True} if spec.multi_queue else {}
        self.links.create_tap(spec.name, owner=spec.owner or None, mtu=spec.mtu or None, **kw)

    def _check_vlan_support(self, br: BridgeSpec, spec: PortSpec) -> None:
        if br.datapath == "ebpf" or spec.vlan_mode() == "all":
            return
        raise FailedPrecondition(
            f"VLAN settings ({spec.vlan_mode()}) are not supported on bridge {br.name}: it uses "
            "the kernel datapath, and the Linux bridge here has no VLAN filtering or 802.1Q "
            "support; use a bridge with --datapath ebpf (its datapath tags VLANs itself)")

    # ---- uplinks ---------------------------------------------------------------------------

    def _uplink_prepare(self, br: BridgeSpec, spec: PortSpec,
                        undo: _Undo) -> tuple[L3Config, PortSpec]:
        """Before the NIC is enslaved: read its L3 config and give the bridge its MAC (the
        LAN's neighbour caches stay valid); returns the config to move and the spec that
        remembers it and the bridge's own MAC."""
        l3 = self.links.l3_config(spec.name)
        nic = self._link(spec.name)
        br_info = self._link(br.name)
        self._wear_mac(br, br_info, nic.mac, undo)
        spec = replace(spec, uplink_addresses=list(l3.addresses),
                       uplink_routes=[asdict(r) for r in l3.routes], bridge_mac=br_info.mac)
        return l3, spec

    def _wear_mac(self, br: BridgeSpec, br_info: LinkInfo, mac: str,
                  undo: _Undo | None = None) -> None:
        """Set the bridge device's MAC (and the datapath's entry for the host's port)."""
        old = br_info.mac
        if old == mac:
            return
        self.links.set_mac(br.name, mac)
        if undo is not None:
            undo.push(f"restore MAC of {br.name}", lambda: self.links.set_mac(br.name, old))
        if br.datapath == "ebpf" and self.dp is not None:
            self.dp.add_bridge(br_info.ifindex, mac)
            self.dp.fdb_delete(br_info.ifindex, old, 0)
            if undo is not None:
                def back() -> None:
                    self.dp.add_bridge(br_info.ifindex, old)
                    self.dp.fdb_delete(br_info.ifindex, mac, 0)
                undo.push("restore the host port's MAC in the datapath", back)

    @staticmethod
    def _uplink_l3(spec: PortSpec) -> L3Config:
        return L3Config(tuple(spec.uplink_addresses),
                        tuple(Route(**r) for r in spec.uplink_routes))

    def _uplink_release(self, br: BridgeSpec, spec: PortSpec) -> None:
        """Give the NIC its addresses and routes back (raises, changing nothing, if that is
        impossible), then restore the bridge's own MAC."""
        br_info, nic = self.links.get(br.name), self.links.get(spec.name)
        if nic is None or br_info is None:
            return
        self.links.move_l3(self._uplink_l3(spec), br.name, spec.name)
        self._detach(br, spec)
        self.links.release(spec.name)
        if spec.bridge_mac:
            try:
                self._wear_mac(br, br_info, spec.bridge_mac)
            except SwitchError as exc:
                log.error("bridge %s: own MAC %s not restored: %s", br.name, spec.bridge_mac,
                          exc)

    def _uplink_reconcile(self, br: BridgeSpec, spec: PortSpec) -> PortSpec:
        """After a restart: the bridge wears the NIC's MAC, the stored L3 config (and whatever
        the NIC got meanwhile) is on the bridge."""
        current = self.links.l3_config(spec.name)  # normally nothing: it is on the bridge
        stored = self._uplink_l3(spec)
        merged = L3Config(
            stored.addresses + tuple(a for a in current.addresses if a not in stored.addresses),
            stored.routes + tuple(r for r in current.routes if r not in stored.routes))
        br_info, nic = self._link(br.name), self._link(spec.name)
        self._wear_mac(br, br_info, nic.mac)
        # the stored addresses are on the bridge already (_reconcile_bridge); routes that went
        # with a re-created bridge come back, and whatever the NIC got meanwhile moves over
        self.links.move_l3(L3Config(current.addresses, merged.routes), spec.name, br.name)
        spec.uplink_addresses = list(merged.addresses)
        spec.uplink_routes = [asdict(r) for r in merged.routes]
        if not spec.bridge_mac:
            spec.bridge_mac = br_info.mac
        return spec

    def _check_system_port(self, name: str, info: LinkInfo | None) -> None:
        if info is None:
            raise NotFound(f"interface {name} does not exist (a system port must exist already)")
        if info.ifindex == 1 or name == "lo":
            raise InvalidArgument("port", name, "the loopback device cannot be a port")
        if info.kind == "bridge":
            raise InvalidArgument("port", name, "is a bridge; bridges cannot be enslaved")
        if info.master:
            master = self.links.get_by_index(info.master)
            raise FailedPrecondition(
                f"interface {name} is already enslaved to {master.name if master else info.master}"
            )

    @staticmethod
    def _vlan_config(spec: PortSpec) -> object:
        from vswitchd.datapath import VlanConfig

        return VlanConfig(access=spec.vlan, trunks=frozenset(spec.trunks),
                          native=spec.native_vlan)

    def _attach(self, br: BridgeSpec, spec: PortSpec) -> None:
        if br.datapath != "ebpf":
            return
        kw = {"vlan": self._vlan_config(spec)} if spec.vlan_mode() != "all" else {}
        self.dp.add_port(self._link(br.name).ifindex, self._link(spec.name).ifindex,
                         self._dp_kind(spec.type), **kw)

    def _detach(self, br: BridgeSpec, spec: PortSpec) -> None:
        if br.datapath != "ebpf" or self.dp is None:
            return
        br_info, info = self.links.get(br.name), self.links.get(spec.name)
        if br_info is not None and info is not None:
            self.dp.remove_port(br_info.ifindex, info.ifindex)

    def _teardown_port(self, br: BridgeSpec, spec: PortSpec) -> None:
        """Remove everything vswitchd created for a port (best effort, logged; an uplink whose
        addresses cannot go back to the NIC raises first, changing nothing)."""
        if spec.uplink:
            self._uplink_release(br, spec)
        self._detach(br, spec)
        if spec.type == "system":
            if self.links.get(spec.name) is not None:
                self.links.release(spec.name)
        else:
            self.links.delete(spec.name)
        br.fdb = [f for f in br.fdb if f.port != spec.name]
        br.ports.pop(spec.name, None)
        if spec.netns_created:
            users = self._netns_users(spec.netns)
            if users:
                users[0].netns_created = True  # the namespace is still ours, via another port
            else:
                netns.remove_named(spec.netns)
        self._missing.pop(spec.name, None)

    def delete_port(self, bridge: str, name: str, if_exists: bool = False) -> bool:
        with self._lock:
            br = self._bridge(bridge)
            spec = br.ports.get(name)
            if spec is None:
                if if_exists:
                    return False
                raise NotFound(f"port {name} does not exist on bridge {bridge} "
                               "(--if-exists ignores this)")
            self._drop_port_flows(br, name)
            self._teardown_port(br, spec)
            self._save()
            log.info("port %s deleted from bridge %s", name, bridge)
            return True

    def update_port(self, bridge: str, name: str, changes: dict[str, object]) -> PortView:
        """Change a port's VLAN settings at run time. CHANGES holds any of vlan, trunks and
        native_vlan; the resulting combination is validated as a whole."""
        unknown = sorted(set(changes) - {"vlan", "trunks", "native_vlan"})
        if unknown:
            raise InvalidArgument("update_mask", ",".join(unknown),
                                  "only vlan, trunks and native_vlan can be changed")
        with self._lock:
            br = self._bridge(bridge)
            spec = br.ports.get(name)
            if spec is None:
                raise NotFound(f"port {name} does not exist on bridge {bridge}")
            merged = {"vlan": spec.vlan, "trunks": spec.trunks, "native_vlan": spec.native_vlan,
                      **changes}
            vlan, trunks, native = validate.vlan_mode(merged["vlan"], merged["trunks"],
                                                      merged["native_vlan"])
            new = replace(spec, vlan=vlan, trunks=trunks, native_vlan=native)
            if new == spec:
                return self._port_view(br, spec)
            if br.datapath != "ebpf":
                self._check_vlan_support(br, new)
                raise FailedPrecondition(f"bridge {bridge} uses the kernel datapath: it has no "
                                         "VLAN settings to change")
            self._require_ebpf()
            info = self._link(name)
            undo = _Undo()
            self.dp.set_port_vlan(info.ifindex, self._vlan_config(new))
            undo.push("restore VLAN settings",
                      lambda: self.dp.set_port_vlan(info.ifindex, self._vlan_config(spec)))
            br.ports[name] = new
            undo.push("restore port spec", lambda: br.ports.__setitem__(name, spec))
            self._commit(undo)
            log.info("port %s of bridge %s: VLAN %s -> %s", name, bridge, spec.vlan_mode(),
                     new.vlan_mode())
            return self._port_view(br, new)

    def get_port(self, bridge: str, name: str) -> PortView:
        with self._lock:
            br = self._bridge(bridge)
            if name not in br.ports:
                raise NotFound(f"port {name} does not exist on bridge {bridge}")
            return self._port_view(br, br.ports[name])

    def list_ports(self, bridge: str) -> list[PortView]:
        with self._lock:
            br = self._bridge(bridge)
            return [self._port_view(br, p) for p in sorted(br.ports.values(), key=_by_name)]

    def _port_view(self, br: BridgeSpec, spec: PortSpec) -> PortView:
        info = self.links.get(spec.name)
        if info is None:
            state = f"missing: {self._missing.get(spec.name, 'interface not present')}"
        else:
            state = "up" if info.up else "down"
        return PortView(spec=spec, bridge=br.name, ifindex=info.ifindex if info else 0,
                        state=state)

    # ---- FDB -----------------------------------------------------------------------------

    def _port_names(self, br: BridgeSpec) -> dict[int, str]:
        names = {}
        for name in (br.name, *br.ports):
            info = self.links.get(name)
            if info is not None:
                names[info.ifindex] = name
        return names

    def fdb_list(self, bridge: str) -> list[FdbView]:
        with self._lock:
            br = self._bridge(bridge)
            names = self._port_names(br)
            if br.datapath == "ebpf":
                self._require_ebpf()
                records = self.dp.fdb_list(self._link(br.name).ifindex)
            else:
                records = self.links.fdb_list(br.name)
            views = [
                FdbView(r.mac, names.get(r.ifindex, f"ifindex:{r.ifindex}"), r.vlan, r.static,
                        0.0 if r.static else round(r.age_seconds, 1))
                for r in records
            ]
            return sorted(views, key=lambda v: (v.vlan, v.port, v.mac))

    def fdb_add(self, bridge: str, mac: str, port: str, vlan: int = 0) -> FdbView:
        mac = validate.unicast_mac(mac)
        vlan = validate.vlan(vlan)
        with self._lock:
            br = self._bridge(bridge)
            if port != br.name and port not in br.ports:
                raise NotFound(f"port {port} does not exist on bridge {bridge}")
            undo = _Undo()
            previous = next((f for f in br.fdb if (f.mac, f.vlan) == (mac, vlan)), None)
            self._install_fdb(br, StaticFdb(mac, port, vlan))
            undo.push("uninstall fdb entry", lambda: self._uninstall_fdb(br, mac, vlan, previous))
            old = br.fdb
            br.fdb = [f for f in br.fdb if (f.mac, f.vlan) != (mac, vlan)]
            br.fdb.append(StaticFdb(mac, port, vlan))
            undo.push("restore fdb list", lambda: setattr(br, "fdb", old))
            self._commit(undo)
            return FdbView(mac, port, vlan, True, 0.0)

    def _install_fdb(self, br: BridgeSpec, entry: StaticFdb) -> None:
        if br.datapath == "ebpf":
            self._require_ebpf()
            self.dp.fdb_add_static(self._link(br.name).ifindex, entry.mac, entry.vlan,
                                   self._link(entry.port).ifindex)
        else:
            self.links.fdb_add_static(br.name, entry.port, entry.mac, entry.vlan)

    def _uninstall_fdb(self, br: BridgeSpec, mac: str, vlan: int,
                       previous: StaticFdb | None) -> None:
        if previous is not None:
            self._install_fdb(br, previous)
        elif br.datapath == "ebpf":
            self.dp.fdb_delete(self._link(br.name).ifindex, mac, vlan)
        else:
            self.links.fdb_delete(br.name, mac, vlan)

    def fdb_delete(self, bridge: str, mac: str, vlan: int = 0, if_exists: bool = False) -> bool:
        mac = validate.mac(mac)
        vlan = validate.vlan(vlan)
        with self._lock:
            br = self._bridge(bridge)
            if br.datapath == "ebpf":
                self._require_ebpf()
                deleted = self.dp.fdb_delete(self._link(br.name).ifindex, mac, vlan)
            else:
                deleted = self.links.fdb_delete(br.name, mac, vlan)
            kept = [f for f in br.fdb if (f.mac, f.vlan) != (mac, vlan)]
            if len(kept) != len(br.fdb):
                br.fdb = kept
                self._save()
                deleted = True
            if not deleted and not if_exists:
                raise NotFound(f"no FDB entry for {mac} vlan {vlan} on bridge {bridge}")
            return deleted

    def sweep_fdb(self) -> int:
        """Age out learned entries; the datapath keeps their last-seen time."""
        if self.dp is None:
            return 0
        return self.dp.fdb_sweep(self.cfg.fdb_aging_seconds)

    # ---- counters ------------------------------------------------------------------------

    def port_stats(self, bridge: str, port: str = "") -> list[StatsView]:
        with self._lock:
            br = self._bridge(bridge)
            if port and port != br.name and port not in br.ports:
                raise NotFound(f"port {port} does not exist on bridge {bridge}")
            names = [port] if port else [br.name, *sorted(br.ports)]
            out = []
            for name in names:
                info = self.links.get(name)
                if info is None:
                    continue
                if br.datapath == "ebpf" and self.dp is not None:
                    c = self.dp.port_counters(info.ifindex)
                    out.append(StatsView(name, c.rx_packets, c.rx_bytes, c.tx_packets,
                                         c.tx_bytes, dict(c.drops)))
                else:
                    s = self.links.stats(name)
                    drops = {k: v for k, v in (("rx-dropped", s.rx_dropped),
                                               ("tx-dropped", s.tx_dropped)) if v}
                    out.append(StatsView(name, s.rx_packets, s.rx_bytes, s.tx_packets,
                                         s.tx_bytes, drops))
            return out

    # ---- start-up ------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Make the kernel match the stored desired state; never fails the daemon for one port."""
        with self._lock:
            keep: set[int] = set()
            for br in self._bridges.values():
                try:
                    keep |= self._reconcile_bridge(br)
                except SwitchError as exc:
                    self._missing[br.name] = str(exc)
                    log.error("bridge %s could not be restored: %s", br.name, exc)
            if self.dp is not None:
                self.dp.prune(keep)
            self._save()
            self._restore_watch_rate()

    def _reconcile_bridge(self, br: BridgeSpec) -> set[int]:
        info = self.links.get(br.name)
        if info is None:
            info = self.links.create_bridge(br.name, br.addresses)
            log.info("bridge %s re-created", br.name)
        elif info.kind != "bridge":
            raise FailedPrecondition(f"interface {br.name} exists but is a {info.kind or 'nic'}")
        else:
            self.links.set_addresses(br.name, self._bridge_addresses(br))
            self.links.set_up(br.name)
        if br.datapath == "ebpf":
            self._require_ebpf()
            self.dp.add_bridge(info.ifindex, info.mac)
        keep = {info.ifindex}
        for spec in list(br.ports.values()):
            try:
                port_info = self._reconcile_port(br, spec)
            except SwitchError as exc:
                self._missing[spec.name] = str(exc)
                log.error("port %s of bridge %s could not be restored: %s", spec.name, br.name, exc)
                continue
            if port_info is not None:
                keep.add(port_info.ifindex)
        if br.nat:
            try:
                self._enable_nat(self._nat(), br.name, _nat_subnet(br.addresses), _Undo())
            except SwitchError as exc:
                log.error("NAT of bridge %s not restored: %s", br.name, exc)
        for entry in br.fdb:
            try:
                self._install_fdb(br, entry)
            except SwitchError as exc:
                log.error("static FDB entry %s on %s not restored: %s", entry.mac, br.name, exc)
        if br.datapath == "ebpf" and len(br.flows):
            try:
                self._sync_flows(br)  # same rule_ids: pinned counters keep counting
            except SwitchError as exc:
                log.error("flows of bridge %s not restored: %s", br.name, exc)
        return keep

    def _reconcile_port(self, br: BridgeSpec, spec: PortSpec) -> LinkInfo | None:
        info = self.links.get(spec.name)
        if info is None:
            if spec.type == "system":
                self._missing[spec.name] = f"system interface {spec.name} is not present"
                log.warning("port %s: %s", spec.name, self._missing[spec.name])
                return None
            if spec.type == "veth":
                if not netns.exists(spec.netns):
                    if not spec.netns_created:
                        self._missing[spec.name] = f"network namespace {spec.netns} is gone"
                        log.warning("port %s: %s", spec.name, self._missing[spec.name])
                        return None
                    netns.create_named(spec.netns)
                self._make_veth(spec)
            else:
                self._create_tap(spec)
            log.info("port %s re-created", spec.name)
            info = self._link(spec.name)
        if info.master != self._link(br.name).ifindex:
            self.links.enslave(spec.name, br.name)
        self._attach(br, spec)
        if spec.uplink:
            self._uplink_reconcile(br, spec)
        self._missing.pop(spec.name, None)
        return info

    # ---- flow tables -------------------------------------------------------------------------

    def _flow_bridge(self, name: str) -> BridgeSpec:
        br = self._bridge(name)
        if br.datapath != "ebpf":
            raise FailedPrecondition(
                f"bridge {name} uses the kernel datapath; flow tables need --datapath ebpf")
        self._require_ebpf()
        return br

    def _flow_rules(self, br: BridgeSpec, flows: Sequence[FlowRequest]) -> list[Rule]:
        """Validate a batch against the bridge's ports; errors say `flow N: `."""
        from vswitchd.datapath import MAX_FLOW_ACTIONS

        ports = {br.name, *br.ports}
        present: dict[str, bool] = {}  # one netlink lookup per port, not per rule
        rules = []
        for n, req in enumerate(flows, 1):
            try:
                rule = flow_validate.flow(req, bridge=br.name, ports=ports,
                                          max_actions=MAX_FLOW_ACTIONS)
                for port in rule.ports:
                    if port not in present:
                        present[port] = self.links.get(port) is not None
                    if not present[port]:
                        why = self._missing.get(port, "interface not present")
                        raise FailedPrecondition(
                            f"port {port} is missing ({why}); its flows cannot be installed")
            except SwitchError as exc:
                raise flow_validate.numbered(exc, n) from None
            rules.append(rule)
        return rules

    def _ifindex_or_none(self, name: str) -> int | None:
        info = self.links.get(name)
        return info.ifindex if info is not None else None

    def _sync_flows(self, br: BridgeSpec, stages: Stages | None = None) -> None:
        """Make the datapath's table for BR exactly br.flows (rules using a missing port are
        left out until the port is back)."""
        ifindexes: dict[str, int | None] = {}  # one netlink lookup per port, not per rule

        def ifindex(name: str) -> int | None:
            if name not in ifindexes:
                ifindexes[name] = self._ifindex_or_none(name)
            return ifindexes[name]

        rules, skipped = br.flows.to_dp_rules(ifindex)
        if skipped:
            log.warning("bridge %s: %d flows not installed: a port they use is missing",
                        br.name, len(skipped))
        if stages is not None:
            stages.mark("to_dp")
        self.dp.flows_sync(self._link(br.name).ifindex, rules)

    def _alloc(self, table: FlowTable) -> Callable[[], int]:
        def alloc() -> int:
            rule_id = self._next_rule_id
            self._next_rule_id += 1
            table.next_id = max(table.next_id, self._next_rule_id)
            return rule_id

        return alloc

    def _flow_change(self, br: BridgeSpec, change: Callable[[FlowTable], object],
                     stages: Stages | None = None) -> object:
        """Apply CHANGE to the bridge's table, the datapath and the store, or none of them."""
        stages = stages or Stages()
        table = br.flows
        table.begin()
        synced = False
        try:
            result = change(table)
            stages.mark("table")
            self._sync_flows(br, stages)
            stages.mark("dp_sync")
            synced = True
            self._save()
            stages.mark("store")
        except BaseException:
            table.rollback()
            if synced:
                try:
                    self._sync_flows(br)
                except Exception:  # noqa: BLE001 - report the original error
                    log.exception("bridge %s: could not restore the datapath's flows", br.name)
            raise
        table.commit()
        return result

    def flows_add(self, bridge: str, flows: Sequence[FlowRequest],
                  stages: Stages | None = None) -> tuple[int, int]:
        """Add a batch, all or nothing: (added, replaced). STAGES (started by the caller, e.g.
        before decoding the request) gets the time of each stage, logged at debug level."""
        stages = stages or Stages()
        with self._lock:
            stages.mark("lock")
            br = self._flow_bridge(bridge)
            rules = self._flow_rules(br, flows)
            stages.mark("validate")
            now = (self.clock.wall(), self.clock.mono_ns())
            result = self._flow_change(
                br, lambda t: t.add(rules, self._alloc(t), round(now[0], 3), now[1]), stages)
            log.info("bridge %s: %d flows added, %d replaced", bridge, *result)
            log.debug("flows_add %s: %d flows; stages ms: %s", bridge, len(flows), stages)
            return result  # type: ignore[return-value]

    def flows_replace(self, bridge: str, flows: Sequence[FlowRequest]) -> tuple[int, int, int]:
        """Make the table exactly FLOWS: (added, removed, unchanged)."""
        with self._lock:
            br = self._flow_bridge(bridge)
            rules = self._flow_rules(br, flows)
            now = (self.clock.wall(), self.clock.mono_ns())
            result = self._flow_change(
                br, lambda t: t.replace_all(rules, self._alloc(t), round(now[0], 3), now[1]))
            log.info("bridge %s: flows replaced: %d added, %d removed, %d unchanged",
                     bridge, *result)
            return result  # type: ignore[return-value]

    def flows_delete(self, bridge: str, match: dict[str, object] | None = None,
                     strict: bool = False, priority: int | None = None, cookie: int = 0,
                     cookie_mask: int = 0) -> int:
        """Delete by strict or loose match and/or cookie; the number deleted."""
        with self._lock:
            br = self._flow_bridge(bridge)
            m = None
            if match is not None:
                m = flow_validate.match(match, bridge=br.name, ports={br.name, *br.ports})
            if priority is not None:
                flow_validate.priority(priority)
            deleted: list[Rule] = []

            def change(table: FlowTable) -> None:
                deleted.extend(table.delete(m, strict=strict, priority=priority, cookie=cookie,
                                            cookie_mask=cookie_mask))

            if len(br.flows):
                self._flow_change(br, change)
            if deleted:
                log.info("bridge %s: %d flows deleted", bridge, len(deleted))
            return len(deleted)

    def flows_list(self, bridge: str) -> list[FlowView]:
        """Every rule with its counters and ages, highest priority first."""
        from vswitchd.datapath import FlowCounters

        with self._lock:
            br = self._flow_bridge(bridge)
            rules = br.flows.rules()
            counters = self.dp.flow_counters(self._link(br.name).ifindex) if rules else {}
            now = self.clock.mono_ns()
            zero = FlowCounters(0, 0, 0)
            out = []
            for rule in rules:
                c = counters.get(rule.rule_id, zero)
                since = max(c.last_hit_ns, rule.installed_ns)
                out.append(FlowView(rule, c, max(0, now - rule.installed_ns) / 1e9,
                                    max(0, now - since) / 1e9))
            return out

    def expire_flows(self) -> int:
        """Remove rules whose idle or hard timeout has passed; the number removed."""
        if self.dp is None:
            return 0
        total = 0
        with self._lock:
            for br in self._bridges.values():
                table = br.flows
                if br.datapath != "ebpf" or not table.has_timeouts:
                    continue
                info = self.links.get(br.name)
                if info is None:
                    continue
                counters = self.dp.flow_counters(info.ifindex)

                def last_hit(rule_id: int, counters: dict = counters) -> int:
                    c = counters.get(rule_id)
                    return c.last_hit_ns if c is not None else 0

                gone = table.expired(self.clock.mono_ns(), last_hit)
                if not gone:
                    continue
                try:
                    self._flow_change(br, lambda t, gone=gone: t.remove_rules(gone))
                except SwitchError as exc:
                    log.error("bridge %s: expired flows not removed: %s", br.name, exc)
                    continue
                total += len(gone)
                log.info("bridge %s: %d flows expired", br.name, len(gone))
        return total

    def _drop_port_flows(self, br: BridgeSpec, port: str) -> None:
        """Delete the rules that match on or output to PORT (before the port goes)."""
        gone = br.flows.referencing(port)
        if not gone:
            return
        br.flows.remove_rules(gone)
        if br.datapath == "ebpf" and self.dp is not None and self.links.get(br.name):
            try:
                self._sync_flows(br)
            except SwitchError as exc:
                log.error("bridge %s: flows of port %s not removed from the datapath: %s",
                          br.name, port, exc)
        log.info("port %s: deleted %d flows of bridge %s that used it", port, len(gone), br.name)

    def status(self) -> dict[str, object]:
        return {
            "uptime_seconds": time.monotonic() - self.started,
            "ebpf_supported": self.dp is not None,
            "ebpf_unsupported_reason": self.ebpf_unsupported or "",
            "default_datapath": self.cfg.default_datapath,
            "kernel": os.uname().release,
            "fdb_aging_seconds": self.cfg.fdb_aging_seconds,
            "watch_rate_limit": self._watch_rate,
        }

    # ---- issue 6: lifecycle, reconciliation while running, config-declared state ---------

    def set_shutdown_handler(self, handler: Callable[[bool], None]) -> None:
        """What the Shutdown RPC calls: handler(cleanup) stops the daemon after the reply."""
        self._shutdown_handler = handler

    def request_shutdown(self, cleanup: bool) -> None:
        handler = getattr(self, "_shutdown_handler", None)
        if handler is None:
            raise FailedPrecondition("this vswitchd instance cannot be shut down over the API")
        log.info("shutdown requested over the API%s", " with cleanup" if cleanup else "")
        handler(cleanup)

    def teardown_all(self) -> dict[str, int]:
        """Remove everything vswitchd created in the kernel (the desired state is kept)."""
        from vswitchd import cleanup

        with self._lock:
            counts = cleanup.teardown(self._bridges, self.links, self.dp, self.cfg.bpffs_dir)
            self.dp = None
            self.ebpf_unsupported = "the datapath was removed (cleanup)"
            return counts

    def snapshot(self) -> dict[str, BridgeSpec]:
        """The desired state (the live objects: read-only, under no lock afterwards)."""
        with self._lock:
            return dict(self._bridges)

    def owned_links(self) -> dict[str, tuple[str, str | None]]:
        """{ifname: (kind, bridge it belongs to)} of the interfaces vswitchd owns."""
        with self._lock:
            out: dict[str, tuple[str, str | None]] = {}
            for br in self._bridges.values():
                out[br.name] = ("bridge", None)
                for p in br.ports.values():
                    out[p.name] = (p.type, br.name)
            return out

    def missing_names(self) -> set[str]:
        with self._lock:
            return set(self._missing)

    def forget_vanished_containers(self) -> list[str]:
        """Remove veth ports whose interface is gone together with a namespace vswitchd did not
        create (the container went away); each says so in the log. Returns their names."""
        gone = []
        with self._lock:
            for br in list(self._bridges.values()):
                for spec in list(br.ports.values()):
                    if spec.type != "veth" or spec.netns_created:
                        continue
                    if self.links.get(spec.name) is not None or netns.exists(spec.netns):
                        continue
                    log.warning("port %s removed from bridge %s: its network namespace %s is "
                                "gone (the container went away)", spec.name, br.name, spec.netns)
                    self._drop_port_flows(br, spec.name)
                    self._teardown_port(br, spec)
                    gone.append(spec.name)
            if gone:
                self._save()
        return gone

    def links_changed(self) -> None:
        """The kernel changed under us (netlink events): drop the ports of vanished containers,
        re-create what can be re-created, mark the rest missing, prune stale datapath state."""
        with self._lock:
            before = set(self._missing)
            self.forget_vanished_containers()
            self._reconcile_changed()
            for name in sorted(set(self._missing) - before):
                log.warning("%s is missing: %s", name, self._missing[name])
            for name in sorted(before - set(self._missing)):
                if self._port_owner(name) or name in self._bridges:
                    log.info("%s is back", name)

    def _reconcile_changed(self) -> None:
        """reconcile(), but touching only the bridges and ports that differ from the kernel (a
        full pass re-attaches every port: seconds for a hundred ports); stale datapath entries
        (old ifindexes) are pruned."""
        keep: set[int] = set()
        for br in self._bridges.values():
            info = self.links.get(br.name)
            if info is None or info.kind != "bridge":
                try:
                    keep |= self._reconcile_bridge(br)
                    self._missing.pop(br.name, None)
                except SwitchError as exc:
                    self._missing[br.name] = str(exc)
                    log.error("bridge %s could not be restored: %s", br.name, exc)
                continue
            keep.add(info.ifindex)
            touched = False
            for spec in list(br.ports.values()):
                port = self.links.get(spec.name)
                if port is not None and port.master == info.ifindex \
                        and spec.name not in self._missing:
                    keep.add(port.ifindex)
                    continue
                try:
                    port = self._reconcile_port(br, spec)
                except SwitchError as exc:
                    self._missing[spec.name] = str(exc)
                    log.error("port %s of bridge %s could not be restored: %s", spec.name,
                              br.name, exc)
                    continue
                if port is not None:
                    keep.add(port.ifindex)
                    touched = True
            if not touched:
                continue
            for entry in br.fdb:
                try:
                    self._install_fdb(br, entry)
                except SwitchError as exc:
                    log.error("static FDB entry %s on %s not restored: %s", entry.mac, br.name,
                              exc)
            if br.datapath == "ebpf" and len(br.flows):
                try:
                    self._sync_flows(br)
                except SwitchError as exc:
                    log.error("flows of bridge %s not restored: %s", br.name, exc)
        if self.dp is not None:
            self.dp.prune(keep)
        self._save()

    def flows_add_if_absent(self, bridge: str, flow: FlowRequest) -> bool:
        """Add FLOW unless a rule with the same content exists (config re-application keeps the
        rule id and counters of an identical rule). True if it was added."""
        with self._lock:
            br = self._flow_bridge(bridge)
            rule = self._flow_rules(br, [flow])[0]
            if any(r.same_content(rule) for r in br.flows.rules()):
                return False
            self.flows_add(bridge, [flow])
            return True


    # ---- issue 4: packet tracing (trace, watch) ---------------------------------------------
    def _trace_bridge(self, name: str) -> BridgeSpec:
        br = self._bridge(name)
        if br.datapath != "ebpf":
            raise FailedPrecondition(
                f"bridge {name} uses the kernel datapath, which runs no programs to trace or "
                "watch; tracing needs a bridge created with --datapath ebpf")
        self._require_ebpf()
        return br

    def trace(self, bridge: str, packet: dict[str, object], truncate: int = 0) -> object:
        """Run the datapath program on a frame built from PACKET's exact fields (no side effects)
        and explain its decision stage by stage: a vswitchd.trace.report.TraceReport."""
        from vswitchd.trace import frames
        from vswitchd.trace.packet import frame_spec, packet_match
        from vswitchd.trace.report import build_report

        with self._lock:
            br = self._trace_bridge(bridge)
            m = packet_match(packet, bridge=br.name, ports={br.name, *br.ports})
            info = self.links.get(m.in_port)
            if info is None:
                why = self._missing.get(m.in_port, "interface not present")
                raise FailedPrecondition(
                    f"port {m.in_port} is missing ({why}); it cannot be traced")
            whole = frames.build(frame_spec(m))
            frame = frames.build(frame_spec(m, truncate)) if truncate else whole
            try:
                result = self.dp.trace(frame, info.ifindex, egress=m.in_port == br.name)
            except OSError as exc:
                if exc.errno != errno.EINVAL or len(frame) == len(whole):
                    raise
                raise InvalidArgument(
                    "truncate", truncate,
                    f"the kernel's BPF_PROG_TEST_RUN refuses this frame cut to {len(frame)} "
                    "bytes (it needs the whole IP header: 34 bytes for IPv4, 54 for IPv6); "
                    "cut it later, or send it for real and see `vswctl drops`") from None
            rule = None
            if result.rule_id:
                rule = next((r for r in br.flows if r.rule_id == result.rule_id), None)
            port_vlan = None
            if hasattr(self.dp, "port_vlan"):
                try:
                    port_vlan = self.dp.port_vlan(info.ifindex)
                except SwitchError:
                    port_vlan = None
            return build_report(bridge=br.name, in_port=m.in_port, result=result,
                                names=self._port_names(br), rule=rule, n_rules=len(br.flows),
                                length=len(frame), truncated=len(frame) < len(whole),
                                port_vlan=port_vlan, frame_vid=m.dl_vlan)

    def _watch_names(self, bridge: str) -> tuple[dict[int, str], dict[int, int]]:
        with self._lock:
            br = self._bridge(bridge)
            return self._port_names(br), {r.rule_id: r.cookie for r in br.flows}

    def _watch_hub(self) -> object:
        from vswitchd.trace.watch import WatchHub

        hub = getattr(self, "_watch_hub_obj", None)
        if hub is None or hub.dp is not self.dp:
            hub = self._watch_hub_obj = WatchHub(self.dp)
        return hub

    def watch_open(self, bridge: str, port: str = "", match: dict[str, object] | None = None,
                   drops_only: bool = False) -> object:
        """Start watching BRIDGE's live decisions that pass the filter: a
        vswitchd.trace.watch.Session (close it when the client leaves)."""
        from vswitchd.datapath import WatchFilter
        from vswitchd.trace.packet import filter_fields
        from vswitchd.trace.watch import Namer, Session

        with self._lock:
            br = self._trace_bridge(bridge)
            ports = {br.name, *br.ports}
            if port and port not in ports:
                raise NotFound(f"port {port} does not exist on bridge {bridge}")
            m = flow_validate.match(match or {}, bridge=br.name, ports=ports)
            if port and m.in_port is not None and m.in_port != port:
                raise InvalidArgument("in_port", m.in_port,
                                      f"contradicts the watched port {port} (give one of them)")
            in_port_name = port or m.in_port or ""
            in_port, fields = filter_fields(m._replace(in_port=in_port_name or None),
                                            lambda n: self._link(n).ifindex)
            flt = WatchFilter(bridge=self._link(br.name).ifindex, in_port=in_port, fields=fields,
                              drops_only=drops_only)
            self._watch_seq = getattr(self, "_watch_seq", 0) + 1
            label = " ".join(x for x in (
                f"#{self._watch_seq} {bridge}", in_port_name and f"port {in_port_name}",
                m.to_ofctl() and f"match {m.to_ofctl()}", drops_only and "drops") if x)
            stream = self._watch_hub().open(flt, label=label)
        return Session(stream, Namer(bridge, lambda: self._watch_names(bridge)))

    def watch_config(self) -> dict[str, int]:
        """The switch-wide watch settings: rate_limit (events per second per CPU)."""
        return {"rate_limit": self._watch_rate}

    def set_watch_rate(self, rate: int) -> dict[str, int]:
        """Give the datapath a new watch event rate limit and store it (it outlives restarts);
        a bad value or a failure changes nothing."""
        ratelimit.check(rate)
        with self._lock:
            self._require_ebpf()
            old = self._watch_rate
            self.dp.watch_set_rate(rate)
            try:
                self.store.set_meta(ratelimit.STORE_KEY, str(rate))
            except OSError as exc:
                self.dp.watch_set_rate(old)
                raise FailedPrecondition(
                    f"cannot write state store {self.store.path}: {exc.strerror}") from None
            self._watch_rate = rate
            log.info("watch rate limit: %d %s (was %d)", rate, ratelimit.UNIT, old)
            return self.watch_config()

    def _restore_watch_rate(self) -> None:
        """A new datapath instance starts at its default: give it the stored limit."""
        if self.dp is None or self._watch_rate == ratelimit.limits()[0]:
            return
        try:
            self.dp.watch_set_rate(self._watch_rate)
        except SwitchError as exc:
            log.error("the watch rate limit %d could not be restored: %s", self._watch_rate,
                      exc)

    def watch_slots(self) -> list[int]:
        """The datapath watcher slots of the open watch streams."""
        hub = getattr(self, "_watch_hub_obj", None)
        return hub.active_slots() if hub is not None else []

    def stop_watches(self) -> None:
        """End every watch stream (daemon shutdown)."""
        hub = getattr(self, "_watch_hub_obj", None)
        if hub is not None:
            hub.close_all()


def _by_name(item: BridgeSpec | PortSpec) -> str:
    return item.name


def _nat_subnet(addresses: list[str]) -> str:
    """The one IPv4 subnet a --nat bridge masquerades."""
    nets = [ipaddress.ip_interface(a).network for a in addresses
            if ipaddress.ip_interface(a).version == 4]
    if not nets:
        raise InvalidArgument("nat", True, "needs an IPv4 address on the bridge (--ip CIDR)")
    if len(nets) > 1:
        raise InvalidArgument("nat", True, "masquerades one IPv4 subnet: give the bridge one "
                              f"IPv4 address, not {len(nets)}")
    return str(nets[0])

