"""The desired state: what the operator asked for (the specs) and what the daemon did to make it
so and must remember to undo (the facts), as plain values, with their one store encoding.

The state store persists these; reconciliation re-creates them. Kernel facts that can be read
back at any time (ifindexes, link state) are not part of it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from vswapi.vlanmode import vlan_mode_text
from vswitchd.flows.model import Rule
from vswitchd.flows.table import FlowTable

DATAPATHS = ("ebpf", "kernel")


def _key(name: str, **more: Any) -> dict[str, Any]:
    """Field metadata: the field's key in the configuration file (see vswitchd.desired)."""
    return {"key": name, **more}


@dataclass
class PortSpec:
    """A port as the operator asked for it (API, vswctl, configuration file).

    Which fields a port type accepts is its driver's business (vswitchd.ports); the others stay
    at their defaults. `metadata["key"]` is the field's name in the configuration file."""

    name: str
    type: str = field(default="veth", metadata=_key("type"))
    netns: str = field(default="", metadata=_key("netns"))    # veth: /run/netns name or a path
    peer_name: str = field(default="eth0", metadata=_key("peer_name"))  # veth: name in the netns
    addresses: list[str] = field(default_factory=list, metadata=_key("ip"))
    mac: str = field(default="", metadata=_key("mac"))        # veth: peer MAC ("" = kernel's)
    mtu: int = field(default=0, metadata=_key("mtu"))         # 0 = kernel default
    owner: str = field(default="", metadata=_key("owner"))    # tap: owning user
    # VLAN mode (eBPF datapath): none configured = carries every VLAN (untagged = VLAN 0);
    # vlan = access port (untagged on the wire); trunks = tagged VLANs, native_vlan = untagged.
    vlan: int = field(default=0, metadata=_key("vlan"))
    trunks: list[int] = field(default_factory=list, metadata=_key("trunks"))
    native_vlan: int = field(default=0, metadata=_key("native_vlan"))
    gateway: str = field(default="", metadata=_key("gateway"))  # veth: the netns' default route
    multi_queue: bool = field(default=False, metadata=_key("multi_queue"))  # tap: IFF_MULTI_QUEUE
    uplink: bool = field(default=False, metadata=_key("uplink"))  # system: host L3 moves over
    # XDP mode asked for (eBPF datapath): auto, native, generic or off; "" = the port type's
    # default (PortDriver.xdp_default)
    xdp: str = field(default="", metadata=_key("xdp"))
    # vxlan: the tunnel's VNI, the host's underlay address ("" = by route), its UDP port and
    # the remote VTEPs floods are replicated to
    vni: int = field(default=0, metadata=_key("vni"))
    local: str = field(default="", metadata=_key("local"))
    dstport: int = field(default=0, metadata=_key("dstport"))
    remotes: list[str] = field(default_factory=list, metadata=_key("remotes"))
    # free-form key/values kept for the caller (any type), e.g. the CNI plugin's container ID
    labels: dict[str, str] = field(default_factory=dict, metadata=_key("labels"))

    def vlan_mode(self) -> str:
        """'access:10', 'trunk:10,20/native:5', or 'all' (unconfigured)."""
        return vlan_mode_text(self.vlan, self.trunks, self.native_vlan)


@dataclass(frozen=True)
class PortFacts:
    """What the daemon did for a port and must undo when it goes. Replaced (dataclasses.replace),
    never changed in place, as a spec is: the store and the event recorder tell the ports that
    changed by the identity of these two objects."""

    netns_created: bool = False  # it created the named netns (removed with its last port)
    # uplink: what moved from the NIC to the bridge (it goes back on del-port), and the
    # bridge's own MAC (the bridge wears the NIC's MAC while the uplink is attached)
    uplink_addresses: list[str] = field(default_factory=list)
    uplink_routes: list[dict[str, Any]] = field(default_factory=list)
    bridge_mac: str = ""
    # veth: the daemon turned GRO on at the peer (NAPI there, so frames redirected at XDP into
    # the veth are delivered) while the bridge has an XDP port; it turns it off again after
    peer_gro: bool = False
    revision: int = 0  # of the port's last change (vswitchd.events)


@dataclass
class Port:
    spec: PortSpec
    facts: PortFacts = field(default_factory=PortFacts)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> str:
        return self.spec.type


@dataclass
class StaticFdb:
    mac: str
    port: str
    vlan: int = 0
    remote: str = ""  # a tunnel port's entry: the remote VTEP the MAC is behind
    revision: int = 0  # of the entry's last change (vswitchd.events)


@dataclass
class BridgeSpec:
    """A bridge as the operator asked for it."""

    name: str
    datapath: str = field(default="ebpf", metadata=_key("datapath"))
    addresses: list[str] = field(default_factory=list, metadata=_key("ip"))
    nat: bool = field(default=False, metadata=_key("nat"))  # masquerade its IPv4 subnet


@dataclass
class BridgeFacts:
    """What the daemon chose for a bridge and keeps: its own MAC, a random locally administered
    unicast one made at creation (set on the device, so the kernel keeps it when ports come and
    go; the bridge wears an uplink NIC's MAC while one is attached). "" in a store written
    before it existed: the reconciliation adopts one."""

    mac: str = ""
    revision: int = 0  # of the bridge's last change (vswitchd.events)


@dataclass
class Bridge:
    """One bridge of the desired state: its spec, ports, static FDB entries, flow table and
    facts."""

    spec: BridgeSpec
    ports: dict[str, Port] = field(default_factory=dict)
    fdb: list[StaticFdb] = field(default_factory=list)
    flows: FlowTable = field(default_factory=FlowTable)
    facts: BridgeFacts = field(default_factory=BridgeFacts)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def datapath(self) -> str:
        return self.spec.datapath

    def to_dict(self, flows: bool = True) -> dict[str, Any]:
        """The bridge as plain values (the store's encoding); flows=False leaves the flow rules
        out (the state store keeps them in a table of their own, and listing 100 000 of them
        costs)."""
        out = {**bridge_row(self.spec, self.facts), "name": self.name,
               "ports": [port_row(p) for p in self.ports.values()],
               "fdb": [fdb_row(f) for f in self.fdb]}
        # Flow rules: one compact string each (Rule.to_store), so 100 000 rules stay fast to
        # write; present only once the bridge has had flows.
        if flows and (len(self.flows) or self.flows.next_id > 1):
            out["flows"] = self.flows.store_list()
            out["next_flow_id"] = self.flows.next_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bridge:
        ports = {p["name"]: port_from_row(p) for p in data.get("ports", [])}
        fdb = [StaticFdb(**f) for f in data.get("fdb", [])]
        now_wall, now_ns = time.time(), time.monotonic_ns()
        try:
            rules = [Rule.from_store(text, now_wall, now_ns) for text in data.get("flows", [])]
        except IndexError as exc:
            raise ValueError(f"damaged flow: {exc}") from None
        return cls(bridge_from_row(data), ports, fdb,
                   FlowTable(rules, next_id=int(data.get("next_flow_id", 1))),
                   bridge_facts_from_row(data))


# ---- the store's encoding: one row per bridge and per port ------------------------------------
# Fields at their defaults are left out (except the bridge's identity), so a store written
# before a field existed reads the same, and a row shows only what was set.

_PORT_DEFAULTS = {**dataclasses.asdict(PortSpec("")), **dataclasses.asdict(PortFacts())}
# Written even at their defaults (rows written before the optional fields existed had them).
_PORT_ALWAYS = ("name", "type", "netns", "peer_name", "addresses", "mac", "mtu", "owner",
                "netns_created")
_FACTS = {f.name for f in dataclasses.fields(PortFacts)}


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(PortSpec))
_FACT_FIELDS = tuple(f.name for f in dataclasses.fields(PortFacts))


def port_row(port: Port) -> dict[str, Any]:
    """A port (spec and facts) as one flat dict (the values themselves, not copies: every save
    encodes every port, so dataclasses.asdict's deep copies cost most of an add-port at a
    thousand ports)."""
    row = {}
    for obj, names in ((port.spec, _SPEC_FIELDS), (port.facts, _FACT_FIELDS)):
        for k in names:
            v = getattr(obj, k)
            if k in _PORT_ALWAYS or _PORT_DEFAULTS[k] != v:
                row[k] = v
    return row


def fdb_row(entry: StaticFdb) -> dict[str, Any]:
    """A static FDB entry (remote only when set, as rows written before it existed)."""
    row = dataclasses.asdict(entry)
    for name in ("remote", "revision"):
        if not row[name]:
            del row[name]
    return row


def port_from_row(row: dict[str, Any]) -> Port:
    facts = {k: v for k, v in row.items() if k in _FACTS}
    spec = {k: v for k, v in row.items() if k not in _FACTS}
    return Port(PortSpec(**spec), PortFacts(**facts))


def bridge_row(spec: BridgeSpec, facts: BridgeFacts | None = None) -> dict[str, Any]:
    """A bridge's own settings (name, datapath, addresses; nat only when set) and facts (its
    MAC, once it has one)."""
    out: dict[str, Any] = {"datapath": spec.datapath, "addresses": list(spec.addresses)}
    if spec.nat:
        out["nat"] = True
    if facts is not None and facts.mac:
        out["mac"] = facts.mac
    if facts is not None and facts.revision:
        out["revision"] = facts.revision
    return out


def bridge_from_row(row: dict[str, Any]) -> BridgeSpec:
    return BridgeSpec(name=row["name"], datapath=row.get("datapath", "ebpf"),
                      addresses=list(row.get("addresses", [])), nat=bool(row.get("nat", False)))


def bridge_facts_from_row(row: dict[str, Any]) -> BridgeFacts:
    return BridgeFacts(mac=str(row.get("mac", "")), revision=int(row.get("revision", 0)))
