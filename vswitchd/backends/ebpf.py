"""The eBPF backend: the datapath's programs forward; its maps hold ports, VLAN modes, the FDB,
counters and flow tables. NoEbpfBackend stands in when eBPF is unavailable: it refuses what
needs the datapath, with the reason, and has nothing to take down."""

from __future__ import annotations

import logging

from vswitchd.backends.kernel import link_stats
from vswitchd.datapath import FdbRecord, PortKind, VlanConfig
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import FailedPrecondition, SwitchError
from vswitchd.model import Bridge, PortSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.seams import DatapathApi, LinksApi
from vswitchd.views import StatsView

log = logging.getLogger(__name__)


def _link(links: LinksApi, name: str) -> LinkInfo:
    info = links.get(name)
    if info is None:
        raise FailedPrecondition(f"interface {name} is missing from the kernel")
    return info


class EbpfBackend:
    name = "ebpf"
    runs_programs = True

    def __init__(self, links: LinksApi, datapath: DatapathApi) -> None:
        self.links = links
        self.dp = datapath

    def _ifindex(self, name: str) -> int:
        return _link(self.links, name).ifindex

    def require(self) -> None:
        pass

    def programs(self, bridge: str, purpose: str) -> DatapathApi:
        return self.dp

    def check_vlans(self, bridge: str, spec: PortSpec) -> None:
        pass  # the programs tag and untag themselves

    def check_xdp(self, bridge: str, spec: PortSpec) -> None:
        pass  # whether the driver can is the datapath's answer to set_port_xdp

    def add_bridge(self, bridge: str) -> None:
        info = _link(self.links, bridge)
        self.dp.add_bridge(info.ifindex, info.mac)

    def remove_bridge(self, br: Bridge) -> None:
        info = self.links.get(br.name)
        if info is None:
            return
        if len(br.flows):
            try:
                self.dp.flows_sync(info.ifindex, [])
            except SwitchError as exc:
                log.warning("bridge %s: flows not cleared from the datapath: %s", br.name, exc)
        self.dp.remove_bridge(info.ifindex)

    def bridge_mac_changed(self, bridge: str, old: str, new: str) -> None:
        """The host's port answers to the bridge device's new MAC."""
        ifindex = self._ifindex(bridge)
        self.dp.add_bridge(ifindex, new)
        self.dp.fdb_delete(ifindex, old, 0)

    def attach_port(self, bridge: str, port: str, kind: PortKind, vlan: VlanConfig) -> None:
        self.dp.add_port(self._ifindex(bridge), self._ifindex(port), kind, vlan)

    def detach_port(self, bridge: str, port: str) -> None:
        br_info, info = self.links.get(bridge), self.links.get(port)
        if br_info is not None and info is not None:
            self.dp.remove_port(br_info.ifindex, info.ifindex)

    def set_port_vlan(self, bridge: str, port: str, vlan: VlanConfig) -> None:
        self.dp.set_port_vlan(self._ifindex(port), vlan)

    def port_vlan(self, port: str) -> VlanConfig | None:
        try:
            return self.dp.port_vlan(self._ifindex(port))
        except SwitchError:
            return None

    def set_port_xdp(self, bridge: str, port: str, mode: str) -> XdpState:
        return self.dp.set_port_xdp(self._ifindex(port), mode)

    def port_xdp(self, port: str) -> XdpState:
        info = self.links.get(port, fresh=True)  # its XDP programs as they are now
        if info is None:
            return XdpState("off", f"interface {port} is missing")
        try:
            return self.dp.port_xdp(info.ifindex, dict(info.xdp_progs))
        except SwitchError as exc:
            return XdpState("off", str(exc))

    def set_xdp_target(self, port: str, on: bool) -> None:
        self.dp.set_xdp_target(self._ifindex(port), on)

    def set_tunnel(self, bridge: str, port: str, vni: int, local: str,
                   remotes: list[str]) -> None:
        ifindex = self._ifindex(port)
        self.dp.set_tunnel(ifindex, vni, local)
        self.dp.set_vteps(ifindex, remotes)

    def set_vteps(self, bridge: str, port: str, remotes: list[str]) -> None:
        self.dp.set_vteps(self._ifindex(port), remotes)

    def fdb_list(self, bridge: str) -> list[FdbRecord]:
        return self.dp.fdb_list(self._ifindex(bridge))

    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int,
                       remote: str = "") -> None:
        self.dp.fdb_add_static(self._ifindex(bridge), mac, vlan, self._ifindex(port), remote)

    def fdb_remotes(self, port: str) -> dict[str, str]:
        return {}  # the datapath's records carry their remote

    def fdb_remote_delete(self, port: str, mac: str) -> None:
        pass  # fdb_delete took the remote with the entry

    def fdb_delete(self, bridge: str, mac: str, vlan: int) -> bool:
        return self.dp.fdb_delete(self._ifindex(bridge), mac, vlan)

    def port_stats(self, port: str) -> StatsView:
        c = self.dp.port_counters(self._ifindex(port))
        return StatsView(port, c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes, dict(c.drops),
                         c.xdp_finished, c.xdp_handoffs)

    def prune(self, keep: set[int]) -> None:
        self.dp.prune(keep)

    def sweep_fdb(self, aging_seconds: float) -> int:
        return self.dp.fdb_sweep(aging_seconds)


class NoEbpfBackend:
    """eBPF bridges without a datapath: changes are refused with the reason; what would take
    programs or entries down has nothing to do; counters come from the links."""

    name = "ebpf"
    runs_programs = True

    def __init__(self, links: LinksApi, reason: str) -> None:
        self.links = links
        self.reason = reason

    def _refusal(self) -> FailedPrecondition:
        reason = self.reason
        if not reason.startswith("eBPF datapath unavailable"):
            reason = f"eBPF datapath unavailable: {reason}; use --datapath kernel"
        return FailedPrecondition(f"{reason} (a plain Linux bridge)")

    def require(self) -> None:
        raise self._refusal()

    def programs(self, bridge: str, purpose: str) -> DatapathApi:
        raise self._refusal()

    def check_vlans(self, bridge: str, spec: PortSpec) -> None:
        pass

    def check_xdp(self, bridge: str, spec: PortSpec) -> None:
        pass

    def add_bridge(self, bridge: str) -> None:
        raise self._refusal()

    def remove_bridge(self, br: Bridge) -> None:
        pass

    def bridge_mac_changed(self, bridge: str, old: str, new: str) -> None:
        pass

    def attach_port(self, bridge: str, port: str, kind: PortKind, vlan: VlanConfig) -> None:
        raise self._refusal()

    def detach_port(self, bridge: str, port: str) -> None:
        pass

    def set_port_vlan(self, bridge: str, port: str, vlan: VlanConfig) -> None:
        raise self._refusal()

    def port_vlan(self, port: str) -> VlanConfig | None:
        return None

    def set_port_xdp(self, bridge: str, port: str, mode: str) -> XdpState:
        if mode == "off":  # nothing is attached without a datapath
            return self.port_xdp(port)
        raise self._refusal()

    def port_xdp(self, port: str) -> XdpState:
        return XdpState("off", f"eBPF datapath unavailable: {self.reason}")

    def set_xdp_target(self, port: str, on: bool) -> None:
        pass

    def set_tunnel(self, bridge: str, port: str, vni: int, local: str,
                   remotes: list[str]) -> None:
        raise self._refusal()

    def set_vteps(self, bridge: str, port: str, remotes: list[str]) -> None:
        raise self._refusal()

    def fdb_list(self, bridge: str) -> list[FdbRecord]:
        raise self._refusal()

    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int,
                       remote: str = "") -> None:
        raise self._refusal()

    def fdb_remotes(self, port: str) -> dict[str, str]:
        return {}

    def fdb_remote_delete(self, port: str, mac: str) -> None:
        pass

    def fdb_delete(self, bridge: str, mac: str, vlan: int) -> bool:
        raise self._refusal()

    def port_stats(self, port: str) -> StatsView:
        return link_stats(self.links, port)

    def prune(self, keep: set[int]) -> None:
        pass

    def sweep_fdb(self, aging_seconds: float) -> int:
        return 0
