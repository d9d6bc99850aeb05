"""Per-datapath bridge backends, in the manner of Open vSwitch's dpif classes: what a bridge's
datapath does when ports come and go, FDB entries are set, counters are read, and whether it
runs programs (flow tables, trace, watch). `ebpf` (vswitchd.datapath) and `kernel` (a plain
Linux bridge) implement the same Backend protocol; `Backends.of(bridge)` picks one."""

from __future__ import annotations

from typing import Protocol

from vswitchd.backends.ebpf import EbpfBackend, NoEbpfBackend
from vswitchd.backends.kernel import KernelBackend
from vswitchd.datapath import FdbRecord, PortKind, VlanConfig
from vswitchd.datapath.xdp import XdpState
from vswitchd.model import Bridge, PortSpec
from vswitchd.seams import DatapathApi, LinksApi
from vswitchd.views import StatsView


class Backend(Protocol):
    name: str
    runs_programs: bool  # False: no XDP (or TC) programs, so no XDP modes, targets or NAPI

    def require(self) -> None:
        """Raise FailedPrecondition (saying why and what to do) if no bridge can use it."""

    def programs(self, bridge: str, purpose: str) -> DatapathApi:
        """The eBPF datapath that runs BRIDGE's programs, for PURPOSE ("flows", "trace"), or
        FailedPrecondition saying why there is none."""

    def check_vlans(self, bridge: str, spec: PortSpec) -> None: ...

    def check_xdp(self, bridge: str, spec: PortSpec) -> None:
        """Raise FailedPrecondition if BRIDGE cannot give a port the XDP mode SPEC asks for
        (an explicit one; none asked is always fine)."""

    def add_bridge(self, bridge: str) -> None: ...
    def remove_bridge(self, br: Bridge) -> None: ...
    def bridge_mac_changed(self, bridge: str, old: str, new: str) -> None: ...
    def attach_port(self, bridge: str, port: str, kind: PortKind, vlan: VlanConfig) -> None: ...
    def detach_port(self, bridge: str, port: str) -> None: ...
    def set_port_vlan(self, bridge: str, port: str, vlan: VlanConfig) -> None: ...
    def port_vlan(self, port: str) -> VlanConfig | None: ...

    def set_port_xdp(self, bridge: str, port: str, mode: str) -> XdpState:
        """Attach PORT's XDP program in MODE (auto, native, generic) or detach it (off); what
        it got."""

    def port_xdp(self, port: str) -> XdpState:
        """What PORT has now (off, with the reason, where there are no programs)."""

    def set_xdp_target(self, port: str, on: bool) -> None:
        """Whether the XDP programs may redirect frames to PORT as XDP frames."""

    def set_tunnel(self, bridge: str, port: str, vni: int, local: str,
                   remotes: list[str]) -> None:
        """A tunnel port's VNI, local address and remote VTEPs, where the datapath keeps them
        (the eBPF maps; a kernel bridge's VXLAN device holds its VNI itself)."""

    def set_vteps(self, bridge: str, port: str, remotes: list[str]) -> None:
        """The remote VTEPs a tunnel port replicates floods to (exactly these)."""

    def fdb_list(self, bridge: str) -> list[FdbRecord]: ...
    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int,
                       remote: str = "") -> None: ...
    def fdb_delete(self, bridge: str, mac: str, vlan: int) -> bool: ...

    def fdb_remotes(self, port: str) -> dict[str, str]:
        """A tunnel port's {mac: remote VTEP} where FdbRecord.remote is not filled (the kernel
        bridge's entries are in the VXLAN device's own FDB)."""

    def fdb_remote_delete(self, port: str, mac: str) -> None:
        """The tunnel port's own entry of MAC, where it keeps one (kernel bridges)."""

    def port_stats(self, port: str) -> StatsView: ...
    def prune(self, keep: set[int]) -> None: ...
    def sweep_fdb(self, aging_seconds: float) -> int: ...


class Backends:
    """The kernel backend, and the eBPF one (or what stands for it when eBPF is unavailable)."""

    def __init__(self, links: LinksApi, datapath: DatapathApi | None,
                 unavailable: str | None) -> None:
        self.kernel = KernelBackend(links)
        self._links = links
        self.ebpf: EbpfBackend | NoEbpfBackend
        self.set_datapath(datapath, unavailable)

    def set_datapath(self, datapath: DatapathApi | None, unavailable: str | None) -> None:
        self.datapath = datapath
        self.unavailable = unavailable or ""  # why there is no datapath
        self.ebpf = (EbpfBackend(self._links, datapath) if datapath is not None
                     else NoEbpfBackend(self._links, unavailable or "unknown reason"))

    def ebpf_datapath(self) -> DatapathApi:
        """The eBPF datapath, or FailedPrecondition saying why there is none."""
        return self.ebpf.programs("", "watch")

    def of(self, datapath: str) -> Backend:
        return self.kernel if datapath == "kernel" else self.ebpf

    def all(self) -> tuple[Backend, ...]:
        return (self.ebpf, self.kernel)
