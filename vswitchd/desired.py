"""Bridges, ports, static FDB entries and flow rules declared in the YAML configuration.

    bridges:
      br0:
        datapath: ebpf            # optional: the daemon's default_datapath
        ip: [10.0.0.1/24]
        ports:
          c1: {type: veth, netns: c1, ip: [10.0.0.2/24], mac: "02:00:00:00:00:02"}
          vm0: {type: tap, owner: root}
          eth1: {type: system}
        fdb:
          - {mac: "02:00:00:00:00:99", port: c1, vlan: 0}
        flows:
          - "priority=100,udp,tp_dst=53,actions=drop"

The section is parsed with the configuration (typed, unknown keys rejected, errors carry
FILE:LINE). Applying is a diff: apply(switch, old, new) changes only what differs between the
previously applied declarations and the new ones, through the Switch's public methods, so objects
made over the API are never touched. The applied declarations are kept in the state store
(meta "applied_config"), so a start applies what changed in the file while the daemon was down.
An item that fails is logged with its FILE:LINE and left out of the applied record, so the next
reload tries it again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from vswitchd import validate
from vswitchd.errors import SwitchError
from vswitchd.flows.model import DEFAULT_PRIORITY
from vswitchd.model import PORT_TYPES, BridgeSpec, PortSpec

log = logging.getLogger(__name__)

_BRIDGE_KEYS = {"datapath": str, "ip": list, "ports": dict, "fdb": list, "flows": list}
_PORT_KEYS = {"type": str, "netns": str, "peer_name": str, "ip": list, "mac": str, "mtu": int,
              "owner": str}
_FDB_KEYS = {"mac": str, "port": str, "vlan": int}


@dataclass(frozen=True)
class DPort:
    name: str
    type: str = "veth"
    netns: str = ""
    peer_name: str = ""
    ip: tuple[str, ...] = ()
    mac: str = ""
    mtu: int = 0
    owner: str = ""
    where: str = field(default="", compare=False)

    def spec(self) -> PortSpec:
        return PortSpec(name=self.name, type=self.type, netns=self.netns,
                        peer_name=self.peer_name, addresses=list(self.ip), mac=self.mac,
                        mtu=self.mtu, owner=self.owner)


@dataclass(frozen=True)
class DFdb:
    mac: str
    port: str
    vlan: int = 0
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class DFlow:
    text: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class DBridge:
    name: str
    datapath: str = ""
    ip: tuple[str, ...] = ()
    ports: dict[str, DPort] = field(default_factory=dict)
    fdb: dict[tuple[str, int], DFdb] = field(default_factory=dict)
    flows: dict[str, DFlow] = field(default_factory=dict)
    where: str = field(default="", compare=False)

    def attrs(self) -> tuple:
        return (self.datapath, self.ip)


Declared = dict[str, DBridge]


# ---- parsing ---------------------------------------------------------------------------------

def _err(where: str, what: str) -> Exception:
    from vswitchd.config import ConfigError

    return ConfigError(f"{where}: {what}")


def _fields(path: str, node: yaml.Node, what: str, loader, schema: dict[str, type]) -> dict:
    from vswitchd.config import _mapping, _typed, _where

    out = {}
    for key, (value, vnode) in _mapping(path, node, what, loader).items():
        if key not in schema:
            raise _err(_where(path, vnode), f"unknown key '{what}.{key}' "
                                            f"(known: {', '.join(schema)})")
        if value is None and schema[key] in (list, dict):
            value = schema[key]()
        out[key] = (_typed(path, f"{what}.{key}", value, vnode, schema[key]), vnode)
    return out


def _check(where: str, fn, *args) -> Any:
    try:
        return fn(*args)
    except SwitchError as exc:
        raise _err(where, str(exc)) from None


def _strings(where: str, what: str, values: list) -> tuple[str, ...]:
    for v in values:
        if not isinstance(v, str):
            raise _err(where, f"{what}: expected a list of strings, got {v!r}")
    return tuple(values)


def parse(path: str, node: yaml.Node, loader) -> Declared:
    """The `bridges:` section (a mapping node) into declarations; ConfigError on any error."""
    from vswitchd.config import DATAPATHS, _mapping, _where

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return {}
    out: Declared = {}
    for name, (_value, bnode) in _mapping(path, node, "bridges", loader).items():
        where = _where(path, bnode)
        _check(where, validate.ifname, name, "bridge")
        if isinstance(bnode, yaml.ScalarNode) and bnode.value in ("", "~", "null"):
            out[name] = DBridge(name, where=where)
            continue
        f = _fields(path, bnode, f"bridges.{name}", loader, _BRIDGE_KEYS)
        datapath = f.get("datapath", ("", None))[0]
        if datapath and datapath not in DATAPATHS:
            raise _err(_where(path, f["datapath"][1]), f"bridges.{name}.datapath: {datapath!r} "
                                                       f"is not one of {', '.join(DATAPATHS)}")
        ips = ()
        if "ip" in f:
            ipw = _where(path, f["ip"][1])
            ips = _strings(ipw, f"bridges.{name}.ip", f["ip"][0])
            for ip in ips:
                _check(ipw, validate.cidr, ip, "ip")
        ports: dict[str, DPort] = {}
        if "ports" in f and isinstance(f["ports"][1], yaml.MappingNode):
            for pname, (_pv, pnode) in _mapping(path, f["ports"][1], f"bridges.{name}.ports",
                                                loader).items():
                ports[pname] = _parse_port(path, f"bridges.{name}.ports.{pname}", pname, pnode,
                                           loader)
        fdb: dict[tuple[str, int], DFdb] = {}
        if "fdb" in f and isinstance(f["fdb"][1], yaml.SequenceNode):
            for enode in f["fdb"][1].value:
                entry = _parse_fdb(path, f"bridges.{name}.fdb", enode, loader)
                key = (entry.mac, entry.vlan)
                if key in fdb:
                    raise _err(entry.where, f"bridges.{name}.fdb: {entry.mac} vlan {entry.vlan} "
                                            f"is declared twice (first on {fdb[key].where})")
                fdb[key] = entry
        flows: dict[str, DFlow] = {}
        if "flows" in f and isinstance(f["flows"][1], yaml.SequenceNode):
            for fnode in f["flows"][1].value:
                flow = _parse_flow(path, f"bridges.{name}.flows", fnode)
                flows.setdefault(flow.text, flow)
        out[name] = DBridge(name, datapath, ips, ports, fdb, flows, where)
    return out


def _parse_port(path: str, what: str, name: str, node: yaml.Node, loader) -> DPort:
    from vswitchd.config import _where

    where = _where(path, node)
    _check(where, validate.ifname, name, "port")
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return DPort(name, where=where)
    f = _fields(path, node, what, loader, _PORT_KEYS)
    vals = {k: v for k, (v, _n) in f.items()}

    def at(key: str) -> str:
        return _where(path, f[key][1]) if key in f else where

    ptype = vals.get("type", "veth")
    if ptype not in PORT_TYPES:
        raise _err(at("type"), f"{what}.type: {ptype!r} is not one of {', '.join(PORT_TYPES)}")
    ips = _strings(at("ip"), f"{what}.ip", vals.get("ip", []))
    for ip in ips:
        _check(at("ip"), validate.cidr, ip, "ip")
    if vals.get("mac"):
        _check(at("mac"), validate.unicast_mac, vals["mac"], "mac")
    if vals.get("mtu"):
        _check(at("mtu"), validate.mtu, vals["mtu"])
    if vals.get("peer_name"):
        _check(at("peer_name"), validate.ifname, vals["peer_name"], "peer_name")
    if ptype != "veth":
        for key in ("netns", "peer_name", "ip", "mac"):
            if vals.get(key):
                raise _err(at(key), f"{what}.{key}: applies only to veth ports")
    if ptype != "tap" and vals.get("owner"):
        raise _err(at("owner"), f"{what}.owner: applies only to tap ports")
    return DPort(name, ptype, vals.get("netns", ""), vals.get("peer_name", ""), ips,
                 vals.get("mac", ""), vals.get("mtu", 0), vals.get("owner", ""), where)


def _parse_fdb(path: str, what: str, node: yaml.Node, loader) -> DFdb:
    from vswitchd.config import _where

    where = _where(path, node)
    f = _fields(path, node, what, loader, _FDB_KEYS)
    for key in ("mac", "port"):
        if key not in f:
            raise _err(where, f"{what}: '{key}' is required")
    mac = _check(where, validate.unicast_mac, f["mac"][0], "mac")
    vlan = _check(where, validate.vlan, f["vlan"][0]) if "vlan" in f else 0
    return DFdb(mac, f["port"][0], vlan, where)


def _parse_flow(path: str, what: str, node: yaml.Node) -> DFlow:
    from vswitchd.config import _where

    where = _where(path, node)
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise _err(where, f"{what}: expected a flow in ovs-ofctl syntax (a string)")
    text = " ".join(node.value.split())
    flow_request(text, where)
    return DFlow(text, where)


def flow_request(text: str, where: str = "<flow>"):
    """The FlowRequest of an ovs-ofctl flow string (syntax only; ports are checked on apply)."""
    from vswapi.flowspec import FlowSyntaxError, parse_flow
    from vswitchd.api.convert import flow_request as to_request

    try:
        return to_request(parse_flow(text))
    except FlowSyntaxError as exc:
        raise _err(where, f"flow {text!r}: {exc}") from None


# ---- persistence of what was applied --------------------------------------------------------

def to_json(declared: Declared) -> str:
    return json.dumps({
        name: {"datapath": b.datapath, "ip": list(b.ip),
               "ports": {p.name: {k: v for k, v in asdict(p).items() if k != "where"}
                         for p in b.ports.values()},
               "fdb": [[f.mac, f.vlan, f.port] for f in b.fdb.values()],
               "flows": list(b.flows)}
        for name, b in declared.items()}, sort_keys=True)


def from_json(text: str | None) -> Declared:
    if not text:
        return {}
    out: Declared = {}
    for name, b in json.loads(text).items():
        ports = {}
        for pname, p in b["ports"].items():
            p["ip"] = tuple(p["ip"])
            ports[pname] = DPort(**p)
        fdb = {(m, v): DFdb(m, port, v) for m, v, port in b["fdb"]}
        out[name] = DBridge(name, b["datapath"], tuple(b["ip"]), ports, fdb,
                            {t: DFlow(t) for t in b["flows"]})
    return out


# ---- applying a difference -------------------------------------------------------------------

class _Applier:
    def __init__(self, switch, old: Declared, new: Declared) -> None:
        self.switch = switch
        self.old, self.new = old, new
        # What is applied, updated item by item as each change succeeds.
        self.applied: dict[str, dict[str, Any]] = {
            n: {"b": b, "ports": dict(b.ports), "fdb": dict(b.fdb), "flows": dict(b.flows)}
            for n, b in old.items()}
        self.errors = 0
        self.changes = 0

    def _try(self, where: str, what: str, fn, *args, **kw) -> bool:
        try:
            fn(*args, **kw)
        except SwitchError as exc:
            self.errors += 1
            log.error("%s: %s not applied: %s", where or "<config>", what, exc)
            return False
        self.changes += 1
        log.info("config: %s", what)
        return True

    def run(self) -> Declared:
        for name, b in self.old.items():
            if name not in self.new or self.new[name].attrs() != b.attrs():
                self._delete_bridge(b, replaced=name in self.new)
        for name, b in self.new.items():
            if name not in self.applied:
                if not self._try(b.where, f"bridge {name} created", self.switch.create_bridge,
                                 BridgeSpec(name, b.datapath, list(b.ip)), may_exist=True):
                    continue
                self.applied[name] = {"b": b, "ports": {}, "fdb": {}, "flows": {}}
            self._bridge_contents(b)
        return {n: DBridge(n, a["b"].datapath, a["b"].ip, a["ports"], a["fdb"], a["flows"],
                           a["b"].where) for n, a in self.applied.items()}

    def _delete_bridge(self, b: DBridge, replaced: bool) -> None:
        what = f"bridge {b.name} " + ("deleted to re-create it (datapath or ip changed)"
                                      if replaced else "deleted (no longer declared)")
        if self._try(self.new.get(b.name, b).where, what, self.switch.delete_bridge, b.name,
                     if_exists=True):
            self.applied.pop(b.name, None)

    def _bridge_contents(self, b: DBridge) -> None:
        a = self.applied[b.name]
        sw = self.switch
        # removals first: flows, FDB, ports
        for text in list(a["flows"]):
            if text not in b.flows:
                req = flow_request(text)
                prio = req.priority if req.priority is not None else DEFAULT_PRIORITY
                if self._try(b.where, f"bridge {b.name}: flow {text!r} deleted", sw.flows_delete,
                             b.name, req.match, strict=True, priority=prio):
                    del a["flows"][text]
        for key, entry in list(a["fdb"].items()):
            if b.fdb.get(key) != entry:
                if self._try(b.where, f"bridge {b.name}: FDB entry {entry.mac} deleted",
                             sw.fdb_delete, b.name, entry.mac, entry.vlan, if_exists=True):
                    del a["fdb"][key]
        for pname, port in list(a["ports"].items()):
            if b.ports.get(pname) != port:
                if self._try(b.ports.get(pname, port).where or b.where,
                             f"bridge {b.name}: port {pname} deleted", sw.delete_port, b.name,
                             pname, if_exists=True):
                    del a["ports"][pname]
        for pname, port in b.ports.items():
            if pname not in a["ports"]:
                if self._try(port.where, f"bridge {b.name}: port {pname} added", sw.create_port,
                             b.name, port.spec(), may_exist=True):
                    a["ports"][pname] = port
        for key, entry in b.fdb.items():
            if key not in a["fdb"]:
                if self._try(entry.where, f"bridge {b.name}: FDB entry {entry.mac} added",
                             sw.fdb_add, b.name, entry.mac, entry.port, entry.vlan):
                    a["fdb"][key] = entry
        for text, flow in b.flows.items():
            if text not in a["flows"]:
                if self._add_flow(b.name, flow):
                    a["flows"][text] = flow

    def _add_flow(self, bridge: str, flow: DFlow) -> bool:
        req = flow_request(flow.text, flow.where)
        return self._try(flow.where, f"bridge {bridge}: flow {flow.text!r} added",
                         self.switch.flows_add_if_absent, bridge, req)


def apply(switch, old: Declared, new: Declared) -> tuple[Declared, int, int]:
    """Apply the difference old -> new; (what is now applied, changes made, errors)."""
    applier = _Applier(switch, old, new)
    applied = applier.run()
    return applied, applier.changes, applier.errors
