"""The desired state: what the operator asked for, as plain values.

These are what the state store persists and what reconciliation re-creates. Kernel facts
(ifindexes, MACs of bridges, run-time state) are not part of it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from vswitchd.flows.model import Rule
from vswitchd.flows.table import FlowTable

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
    flows: FlowTable = field(default_factory=FlowTable)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "datapath": self.datapath,
            "addresses": list(self.addresses),
            "ports": [asdict(p) for p in self.ports.values()],
            "fdb": [asdict(f) for f in self.fdb],
        }
        # Flow rules: one compact string each (Rule.to_store), so 100 000 rules stay fast to
        # write; present only once the bridge has had flows.
        if len(self.flows) or self.flows.next_id > 1:
            out["flows"] = self.flows.store_list()
            out["next_flow_id"] = self.flows.next_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BridgeSpec:
        ports = {p["name"]: PortSpec(**p) for p in data.get("ports", [])}
        fdb = [StaticFdb(**f) for f in data.get("fdb", [])]
        now_wall, now_ns = time.time(), time.monotonic_ns()
        try:
            rules = [Rule.from_store(text, now_wall, now_ns) for text in data.get("flows", [])]
        except IndexError as exc:
            raise ValueError(f"damaged flow: {exc}") from None
        return cls(
            name=data["name"],
            datapath=data.get("datapath", "ebpf"),
            addresses=list(data.get("addresses", [])),
            ports=ports,
            fdb=fdb,
            flows=FlowTable(rules, next_id=int(data.get("next_flow_id", 1))),
        )
