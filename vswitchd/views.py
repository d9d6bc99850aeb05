"""What the switch reports: the desired state joined with what the kernel and the datapath say
now (ifindexes, link state, counters, ages). The API layer turns these into messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from vswitchd.datapath import FlowCounters
from vswitchd.flows.model import Rule
from vswitchd.model import BridgeSpec, PortFacts, PortSpec


@dataclass(frozen=True)
class PortView:
    spec: PortSpec
    bridge: str
    ifindex: int               # 0 while the interface is missing
    state: str                 # "up", "down" or "missing: why"
    facts: PortFacts = field(default_factory=PortFacts)
    xdp: str = ""              # the XDP mode in force: spec.xdp, else the type's default
    xdp_mode: str = "off"      # what it got: "native", "generic" or "off"
    xdp_reason: str = ""       # why it is not what was asked (a fallback), or why it is off


@dataclass(frozen=True)
class BridgeView:
    spec: BridgeSpec
    ifindex: int
    mac: str
    ports: list[PortView]
    revision: int = 0          # of the bridge's last change


@dataclass(frozen=True)
class FdbView:
    mac: str
    port: str                  # a port name, or "ifindex:N" for an interface not ours
    vlan: int
    static: bool
    age_seconds: float
    remote: str = ""           # a tunnel port's entry: the remote VTEP the MAC is behind
    revision: int = 0          # of the entry's last change

    def revised(self, revision: int) -> FdbView:
        """This view, just made by a listing and held by nothing else yet, stamped with its
        REVISION in place (a copy costs 4 us, dataclasses.replace 5: a listing may hold
        100 000 entries)."""
        object.__setattr__(self, "revision", revision)
        return self


@dataclass(frozen=True)
class StatsView:
    port: str
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops_by_reason: dict[str, int] = field(default_factory=dict)
    xdp_finished: int = 0  # the port's XDP hook: frames it finished, frames it handed to TC
    xdp_handoffs: int = 0

    @property
    def drops(self) -> int:
        return sum(self.drops_by_reason.values())


@dataclass(frozen=True)
class StatusView:
    uptime_seconds: float
    ebpf_supported: bool
    ebpf_unsupported_reason: str   # "" when supported
    default_datapath: str
    kernel: str
    fdb_aging_seconds: int
    watch_rate_limit: int


class FlowView(NamedTuple):
    rule: Rule
    counters: FlowCounters
    duration_seconds: float      # since installed (or replaced)
    idle_seconds: float          # since the last hit, or installation if never hit
