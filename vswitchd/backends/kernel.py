"""The kernel backend: a plain Linux bridge does the forwarding; no programs, no VLANs (the
kernel here has no bridge VLAN filtering or 802.1Q), its own FDB and the links' counters."""

from __future__ import annotations

from vswitchd.datapath import PortKind, VlanConfig
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import FailedPrecondition
from vswitchd.model import Bridge, PortSpec
from vswitchd.netlink.types import FdbRecord
from vswitchd.seams import DatapathApi, LinksApi
from vswitchd.views import StatsView

# Why a kernel bridge has no programs for a purpose (Backend.programs).
NO_PROGRAMS = {
    "flows": "bridge {bridge} uses the kernel datapath; flow tables need --datapath ebpf",
    "trace": "bridge {bridge} uses the kernel datapath, which runs no programs to trace or "
             "watch; tracing needs a bridge created with --datapath ebpf",
    "packet-in": "bridge {bridge} uses the kernel datapath, which has no flow tables to send "
                 "packet-ins; packet-in needs a bridge created with --datapath ebpf",
}


def link_stats(links: LinksApi, port: str) -> StatsView:
    """A port's counters as the kernel keeps them for its link."""
    s = links.stats(port)
    drops = {k: v for k, v in (("rx-dropped", s.rx_dropped), ("tx-dropped", s.tx_dropped)) if v}
    return StatsView(port, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, drops)


# Why a port of a kernel bridge has no XDP (its xdp_reason).
NO_XDP = "the kernel datapath runs no programs"


class KernelBackend:
    name = "kernel"
    runs_programs = False

    def __init__(self, links: LinksApi) -> None:
        self.links = links

    def require(self) -> None:
        pass

    def programs(self, bridge: str, purpose: str) -> DatapathApi:
        raise FailedPrecondition(NO_PROGRAMS[purpose].format(bridge=bridge))

    def check_vlans(self, bridge: str, spec: PortSpec) -> None:
        if spec.vlan_mode() == "all":
            return
        raise FailedPrecondition(
            f"VLAN settings ({spec.vlan_mode()}) are not supported on bridge {bridge}: it uses "
            "the kernel datapath, and the Linux bridge here has no VLAN filtering or 802.1Q "
            "support; use a bridge with --datapath ebpf (its datapath tags VLANs itself)")

    def check_xdp(self, bridge: str, spec: PortSpec) -> None:
        if not spec.xdp:
            return
        raise FailedPrecondition(
            f"XDP mode {spec.xdp} is not supported on bridge {bridge}: it uses the kernel "
            "datapath (a plain Linux bridge), which runs no programs, XDP or TC; use a bridge "
            "with --datapath ebpf, or leave --xdp out")

    def add_bridge(self, bridge: str) -> None:
        pass

    def remove_bridge(self, br: Bridge) -> None:
        pass

    def bridge_mac_changed(self, bridge: str, old: str, new: str) -> None:
        pass

    def attach_port(self, bridge: str, port: str, kind: PortKind, vlan: VlanConfig) -> None:
        pass

    def detach_port(self, bridge: str, port: str) -> None:
        pass

    def set_port_vlan(self, bridge: str, port: str, vlan: VlanConfig) -> None:
        raise FailedPrecondition(f"bridge {bridge} uses the kernel datapath: it has no VLAN "
                                 "settings to change")

    def port_vlan(self, port: str) -> VlanConfig | None:
        return None

    def set_port_xdp(self, bridge: str, port: str, mode: str) -> XdpState:
        if mode != "off":  # check_xdp refused it before
            raise FailedPrecondition(f"bridge {bridge} uses the kernel datapath: {NO_XDP}")
        return self.port_xdp(port)

    def port_xdp(self, port: str) -> XdpState:
        return XdpState("off", NO_XDP)

    def set_xdp_target(self, port: str, on: bool) -> None:
        pass

    def set_tunnel(self, bridge: str, port: str, vni: int, local: str,
                   remotes: list[str]) -> None:
        self.links.vxlan_set_remotes(port, remotes)  # the device was made with its VNI

    def set_vteps(self, bridge: str, port: str, remotes: list[str]) -> None:
        self.links.vxlan_set_remotes(port, remotes)

    def fdb_list(self, bridge: str) -> list[FdbRecord]:
        return self.links.fdb_list(bridge)

    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int,
                       remote: str = "") -> None:
        """The bridge's entry (MAC -> port) and, on a tunnel port, the device's (MAC -> the
        remote VTEP)."""
        self.links.fdb_add_static(bridge, port, mac, vlan)
        if remote:
            self.links.vxlan_fdb_add(port, mac, remote)

    def fdb_remotes(self, port: str) -> dict[str, str]:
        return self.links.vxlan_fdb_list(port)

    def fdb_remote_delete(self, port: str, mac: str) -> None:
        self.links.vxlan_fdb_delete(port, mac)

    def fdb_delete(self, bridge: str, mac: str, vlan: int) -> bool:
        return self.links.fdb_delete(bridge, mac, vlan)

    def port_stats(self, port: str) -> StatsView:
        return link_stats(self.links, port)

    def prune(self, keep: set[int]) -> None:
        pass

    def sweep_fdb(self, aging_seconds: float) -> int:
        return 0  # the Linux bridge ages its own entries
