"""The desired state: what the operator asked for, as plain values.

These are what the state store persists and what reconciliation re-creates. Kernel facts
(ifindexes, MACs of bridges, run-time state) are not part of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PORT_TYPES = ("veth", "tap", "system")


@dataclass
class PortSpec:
    name: str
    type: str = "veth"
    netns: str = ""            # veth: name under /run/netns or a path
    peer_name: str = "eth0"    # veth: name inside the netns
    addresses: list[str] = field(default_factory=list)
    mac: str = ""              # veth: peer MAC ("" = kernel's choice)
    mtu: int = 0               # 0 = kernel default
    owner: str = ""            # tap: owning user
    netns_created: bool = False  # vswitchd created the named netns and removes it with the port


@dataclass
class StaticFdb:
    mac: str
    port: str
    vlan: int = 0


@dataclass
class BridgeSpec:
    name: str
    datapath: str = "ebpf"
    addresses: list[str] = field(default_factory=list)
    ports: dict[str, PortSpec] = field(default_factory=dict)
    fdb: list[StaticFdb] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datapath": self.datapath,
            "addresses": list(self.addresses),
            "ports": [asdict(p) for p in self.ports.values()],
            "fdb": [asdict(f) for f in self.fdb],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BridgeSpec:
        ports = {p["name"]: PortSpec(**p) for p in data.get("ports", [])}
        fdb = [StaticFdb(**f) for f in data.get("fdb", [])]
        return cls(
            name=data["name"],
            datapath=data.get("datapath", "ebpf"),
            addresses=list(data.get("addresses", [])),
            ports=ports,
            fdb=fdb,
        )
