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
    # VLAN mode (eBPF datapath): none configured = carries every VLAN (untagged = VLAN 0);
    # vlan = access port (untagged on the wire); trunks = tagged VLANs, native_vlan = untagged.
    vlan: int = 0
    trunks: list[int] = field(default_factory=list)
    native_vlan: int = 0
    gateway: str = ""          # veth: default route of the peer's namespace
    multi_queue: bool = False  # tap: IFF_MULTI_QUEUE
    uplink: bool = False       # system: the host's L3 config moves to the bridge while attached
    # uplink: what was moved to the bridge (restored to the NIC on del-port) and the bridge's
    # own MAC (the bridge wears the NIC's MAC while the uplink is attached).
    uplink_addresses: list[str] = field(default_factory=list)
    uplink_routes: list[dict[str, Any]] = field(default_factory=list)
    bridge_mac: str = ""

    def vlan_mode(self) -> str:
        """'access:10', 'trunk:10,20/native:5', or 'all' (unconfigured)."""
        if self.vlan:
            return f"access:{self.vlan}"
        if self.trunks:
            text = "trunk:" + ",".join(str(v) for v in self.trunks)
            return text + (f"/native:{self.native_vlan}" if self.native_vlan else "")
        return "all"


# Written to the store only when set, so a store without VLANs, uplinks etc. reads as before.
_OPTIONAL_PORT_FIELDS = {"vlan": 0, "trunks": [], "native_vlan": 0, "gateway": "",
                         "multi_queue": False, "uplink": False, "uplink_addresses": [],
                         "uplink_routes": [], "bridge_mac": ""}


def _port_dict(port: PortSpec) -> dict[str, Any]:
    return {k: v for k, v in asdict(port).items() if _OPTIONAL_PORT_FIELDS.get(k, ()) != v}


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
    nat: bool = False          # masquerade the bridge's IPv4 subnets leaving by other interfaces

    def to_dict(self, flows: bool = True) -> dict[str, Any]:
        """The bridge as plain values; flows=False leaves the flow rules out (the state store
        keeps them in a table of their own, and listing 100 000 of them costs)."""
        out = {
            "name": self.name,
            "datapath": self.datapath,
            "addresses": list(self.addresses),
            "ports": [_port_dict(p) for p in self.ports.values()],
            "fdb": [asdict(f) for f in self.fdb],
        }
        if self.nat:
            out["nat"] = True
        # Flow rules: one compact string each (Rule.to_store), so 100 000 rules stay fast to
        # write; present only once the bridge has had flows.
        if flows and (len(self.flows) or self.flows.next_id > 1):
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
            nat=bool(data.get("nat", False)),
            ports=ports,
            fdb=fdb,
            flows=FlowTable(rules, next_id=int(data.get("next_flow_id", 1))),
        )
