"""Bridges, ports, static FDB entries and flow rules declared in the YAML configuration.

    bridges:
      br0:
        datapath: ebpf            # optional: the daemon's default_datapath
        ip: [10.0.0.1/24]
        nat: true                 # masquerade the bridge's IPv4 subnet
        ports:
          c1: {type: veth, netns: c1, ip: [10.0.0.2/24], mac: "02:00:00:00:00:02", vlan: 10}
          vm0: {type: tap, owner: root}
          eth1: {type: system, uplink: true, trunks: [10, 20]}
          vx0: {type: vxlan, vni: 100, local: 10.77.0.1, remotes: [10.77.0.2, 10.77.0.3]}
        fdb:
          - {mac: "02:00:00:00:00:99", port: c1, vlan: 0}
        flows:
          - "priority=100,udp,tp_dst=53,actions=drop"

A port's keys are PortSpec's fields (vswitchd.model: their metadata names the key), a bridge's
BridgeSpec's, so the file declares what the API can; the values are checked by the same rules
as the API's (vswitchd.ports.validate), with FILE:LINE and the key in the error.

The section is parsed with the configuration (typed, unknown keys rejected). Applying is a diff:
apply(switch, old, new) changes only what differs between the previously applied declarations
and the new ones, through the Switch's public methods, so objects made over the API are never
touched. The applied declarations are kept in the state store (meta "applied_config"), so a
start applies what changed in the file while the daemon was down. An item that fails is logged
with its FILE:LINE and left out of the applied record, so the next reload tries it again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vswitchd import ports as port_types
from vswitchd import validate
from vswitchd.errors import InvalidArgument, SwitchError, shown
from vswitchd.flows.model import DEFAULT_PRIORITY, FlowRequest
from vswitchd.model import DATAPATHS, BridgeSpec, PortSpec
from vswitchd.yamlfile import ConfigError, fields, is_null, mapping, where

if TYPE_CHECKING:  # imported where a file is parsed: without --config, never (issue 16)
    import yaml

log = logging.getLogger(__name__)

_TYPES = {"str": str, "int": int, "bool": bool, "list[str]": list, "list[int]": list,
          "dict[str, str]": dict}
_ITEMS = {"list[str]": str, "list[int]": int}


@dataclass(frozen=True)
class _Key:
    field: str     # the dataclass field
    type: str      # its annotation


def _keys(cls: type) -> dict[str, _Key]:
    """The configuration keys of a spec dataclass (fields whose metadata names one)."""
    return {f.metadata["key"]: _Key(f.name, str(f.type)) for f in dataclasses.fields(cls)
            if "key" in f.metadata}


PORT_KEYS = _keys(PortSpec)
BRIDGE_KEYS = _keys(BridgeSpec)
_BRIDGE_SCHEMA = {**{k: _TYPES[v.type] for k, v in BRIDGE_KEYS.items()},
                  "ports": dict, "fdb": list, "flows": list}
_PORT_SCHEMA = {k: _TYPES[v.type] for k, v in PORT_KEYS.items()}
_FDB_SCHEMA = {"mac": str, "port": str, "vlan": int, "remote": str}


@dataclass(frozen=True)
class DFdb:
    mac: str
    port: str
    vlan: int = 0
    where: str = field(default="", compare=False)
    remote: str = ""  # a tunnel port's entry: the remote VTEP


@dataclass(frozen=True)
class DFlow:
    text: str
    where: str = field(default="", compare=False)


@dataclass
class DBridge:
    """A declared bridge. Its spec and port specs are as written (datapath "" = the daemon's
    default): what the switch is asked for, and what the next reload is compared with."""

    spec: BridgeSpec
    ports: dict[str, PortSpec] = field(default_factory=dict)
    fdb: dict[tuple[str, int], DFdb] = field(default_factory=dict)
    flows: dict[str, DFlow] = field(default_factory=dict)
    where: str = field(default="", compare=False)
    port_where: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def identity(self) -> tuple:
        """What cannot change without re-creating the bridge."""
        return (self.spec.datapath, tuple(self.spec.addresses))


Declared = dict[str, DBridge]


# ---- specs from keys, and back ----------------------------------------------------------------

def _spec(cls: type, keys: dict[str, _Key], name: str, values: dict[str, Any]) -> Any:
    """A spec from configuration keys; unset values (empty, zero, false) keep the defaults."""
    kw = {keys[k].field: list(v) if isinstance(v, list | tuple) else v
          for k, v in values.items() if k in keys and v not in ("", 0, False, None, [], ())}
    return cls(name=name, **kw)


def _values(spec: Any, keys: dict[str, _Key]) -> dict[str, Any]:
    """The configuration keys of a spec whose values differ from the defaults."""
    default = type(spec)(name=spec.name)
    return {k: getattr(spec, f.field) for k, f in keys.items()
            if getattr(spec, f.field) != getattr(default, f.field)}


# ---- parsing ---------------------------------------------------------------------------------

def _check(at: str, fn, *args) -> Any:
    try:
        return fn(*args)
    except SwitchError as exc:
        raise ConfigError(f"{at}: {exc}") from None


def _items(at: str, what: str, values: list, want: type) -> None:
    for v in values:
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            noun = "strings" if want is str else "integers"
            raise ConfigError(f"{at}: {what}: expected a list of {noun}, got {v!r}")


def parse(path: str, node: yaml.Node, loader) -> Declared:
    """The `bridges:` section (a mapping node) into declarations; ConfigError on any error."""
    import yaml

    if is_null(node):
        return {}
    out: Declared = {}
    for name, (_value, bnode) in mapping(path, node, "bridges", loader).items():
        at = where(path, bnode)
        _check(at, validate.ifname, name, "bridge")
        if is_null(bnode):
            out[name] = DBridge(BridgeSpec(name, datapath=""), where=at)
            continue
        what = f"bridges.{name}"
        f = fields(path, bnode, what, loader, _BRIDGE_SCHEMA)
        datapath = f.get("datapath", ("", None))[0]
        if datapath and datapath not in DATAPATHS:
            raise ConfigError(f"{where(path, f['datapath'][1])}: {what}.datapath: {datapath!r} "
                              f"is not one of {', '.join(DATAPATHS)}")
        if "ip" in f:
            ipw = where(path, f["ip"][1])
            _items(ipw, f"{what}.ip", f["ip"][0], str)
            _check(ipw, validate.distinct_addresses,
                   [_check(ipw, validate.cidr, ip, "ip") for ip in f["ip"][0]])
        spec = _spec(BridgeSpec, BRIDGE_KEYS, name, {k: v for k, (v, _n) in f.items()})
        spec.datapath = datapath
        bridge = DBridge(spec, where=at)
        if "ports" in f and isinstance(f["ports"][1], yaml.MappingNode):
            for pname, (_pv, pnode) in mapping(path, f["ports"][1], f"{what}.ports",
                                               loader).items():
                bridge.ports[pname] = _parse_port(path, f"{what}.ports.{pname}", pname, pnode,
                                                  loader)
                bridge.port_where[pname] = where(path, pnode)
        if "fdb" in f and isinstance(f["fdb"][1], yaml.SequenceNode):
            for enode in f["fdb"][1].value:
                entry = _parse_fdb(path, f"{what}.fdb", enode, loader)
                key = (entry.mac, entry.vlan)
                if key in bridge.fdb:
                    raise ConfigError(f"{entry.where}: {what}.fdb: {entry.mac} vlan "
                                      f"{entry.vlan} is declared twice (first on "
                                      f"{bridge.fdb[key].where})")
                bridge.fdb[key] = entry
        if "flows" in f and isinstance(f["flows"][1], yaml.SequenceNode):
            for fnode in f["flows"][1].value:
                flow = _parse_flow(path, f"{what}.flows", fnode)
                bridge.flows.setdefault(flow.text, flow)
        out[name] = bridge
    return out


def _parse_port(path: str, what: str, name: str, node: yaml.Node, loader) -> PortSpec:
    at = where(path, node)
    _check(at, validate.ifname, name, "port")
    if is_null(node):
        return PortSpec(name)
    f = fields(path, node, what, loader, _PORT_SCHEMA)

    def key_at(key: str) -> str:
        return where(path, f[key][1]) if key in f else at

    ptype = f.get("type", ("veth", None))[0]
    if ptype not in port_types.PORT_TYPES:
        raise ConfigError(f"{key_at('type')}: {what}.type: {ptype!r} is not one of "
                          f"{', '.join(port_types.PORT_TYPES)}")
    for key, (value, _n) in f.items():
        if PORT_KEYS[key].type in _ITEMS:
            _items(key_at(key), f"{what}.{key}", value, _ITEMS[PORT_KEYS[key].type])
    spec = _spec(PortSpec, PORT_KEYS, name, {k: v for k, (v, _n) in f.items()})
    try:
        port_types.validate(spec)  # the API's rules; the declared spec is kept as written
    except InvalidArgument as exc:
        key = exc.field if exc.field in f else ""
        detail = exc.problem if exc.problem.startswith("applies only") else \
            f"{shown(exc.value)}: {exc.problem}"
        raise ConfigError(f"{key_at(key)}: {what}.{key or exc.field}: {detail}") from None
    return spec


def _parse_fdb(path: str, what: str, node: yaml.Node, loader) -> DFdb:
    at = where(path, node)
    f = fields(path, node, what, loader, _FDB_SCHEMA)
    for key in ("mac", "port"):
        if key not in f:
            raise ConfigError(f"{at}: {what}: '{key}' is required")
    mac = _check(at, validate.unicast_mac, f["mac"][0], "mac")
    vlan = _check(at, validate.vlan, f["vlan"][0]) if "vlan" in f else 0
    return DFdb(mac, f["port"][0], vlan, at, f["remote"][0] if "remote" in f else "")


def _parse_flow(path: str, what: str, node: yaml.Node) -> DFlow:
    import yaml

    at = where(path, node)
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise ConfigError(f"{at}: {what}: expected a flow in ovs-ofctl syntax (a string)")
    text = " ".join(node.value.split())
    flow_request(text, at)
    return DFlow(text, at)


def flow_request(text: str, at: str = "<flow>") -> FlowRequest:
    """The FlowRequest of an ovs-ofctl flow string (syntax only; ports are checked on apply)."""
    from vswapi.flowspec import FlowSyntaxError
    from vswitchd.flows.request import from_text

    try:
        return from_text(text)
    except FlowSyntaxError as exc:
        raise ConfigError(f"{at}: flow {text!r}: {exc}") from None


# ---- persistence of what was applied --------------------------------------------------------

def to_json(declared: Declared) -> str:
    return json.dumps({
        name: {**_values(b.spec, BRIDGE_KEYS), "datapath": b.spec.datapath,
               "ip": list(b.spec.addresses),
               "ports": {p.name: _values(p, PORT_KEYS) for p in b.ports.values()},
               "fdb": [[f.mac, f.vlan, f.port, *([f.remote] if f.remote else [])]
                       for f in b.fdb.values()],
               "flows": list(b.flows)}
        for name, b in declared.items()}, sort_keys=True)


def from_json(text: str | None) -> Declared:
    """What to_json wrote (records of earlier builds, with every port key, read the same)."""
    if not text:
        return {}
    out: Declared = {}
    for name, b in json.loads(text).items():
        spec = _spec(BridgeSpec, BRIDGE_KEYS, name, b)
        spec.datapath = b["datapath"]
        ports = {pname: _spec(PortSpec, PORT_KEYS, pname, p) for pname, p in b["ports"].items()}
        fdb = {(e[0], e[1]): DFdb(e[0], e[2], e[1], remote=e[3] if len(e) > 3 else "")
               for e in b["fdb"]}
        out[name] = DBridge(spec, ports, fdb, {t: DFlow(t) for t in b["flows"]})
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
            if name not in self.new or self.new[name].identity() != b.identity():
                self._delete_bridge(b, replaced=name in self.new)
        for name, b in self.new.items():
            if name not in self.applied:
                if not self._try(b.where, f"bridge {name} created", self.switch.create_bridge,
                                 dataclasses.replace(b.spec), may_exist=True):
                    continue
                self.applied[name] = {"b": b, "ports": {}, "fdb": {}, "flows": {}}
            elif self.applied[name]["b"].spec.nat != b.spec.nat:
                if self._try(b.where, f"bridge {name}: NAT {'on' if b.spec.nat else 'off'}",
                             self.switch.update_bridge, name, nat=b.spec.nat):
                    self.applied[name]["b"] = b
            self._bridge_contents(b)
        return {n: DBridge(a["b"].spec, a["ports"], a["fdb"], a["flows"], a["b"].where,
                           a["b"].port_where) for n, a in self.applied.items()}

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
                if self._try(b.port_where.get(pname) or b.where,
                             f"bridge {b.name}: port {pname} deleted", sw.delete_port, b.name,
                             pname, if_exists=True):
                    del a["ports"][pname]
        for pname, port in b.ports.items():
            if pname not in a["ports"]:
                if self._try(b.port_where.get(pname, b.where),
                             f"bridge {b.name}: port {pname} added", sw.create_port,
                             b.name, dataclasses.replace(port), may_exist=True):
                    a["ports"][pname] = port
        for key, entry in b.fdb.items():
            if key not in a["fdb"]:
                if self._try(entry.where, f"bridge {b.name}: FDB entry {entry.mac} added",
                             sw.fdb_add, b.name, entry.mac, entry.port, entry.vlan,
                             entry.remote):
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
