"""Port types as drivers (vswitchd.ports.base.PortDriver): one module per type, registered here.

Adding a port type means adding its module and one line in DRIVERS (and its PortType value in
the API's .proto)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

from vswitchd import validate as values
from vswitchd.errors import InvalidArgument
from vswitchd.model import PortSpec
from vswitchd.ports import system, tap, veth, vxlan
from vswitchd.ports.base import PortDriver, PortEnv

__all__ = ["DRIVERS", "PORT_TYPES", "PortDriver", "PortEnv", "driver", "validate"]

DRIVERS: dict[str, PortDriver] = {d.type: d for d in (
    veth.DRIVER,
    tap.DRIVER,
    system.DRIVER,
    vxlan.DRIVER,
)}
PORT_TYPES = tuple(DRIVERS)

_FIELDS = {f.name: f for f in dataclasses.fields(PortSpec)}
# The fields a driver may take (PortDriver.accepts), in the order they are checked.
_TYPED = ("multi_queue", "uplink", "gateway", "netns", "addresses", "mac", "peer_name", "owner",
          "vni", "local", "dstport", "remotes", "mtu")
_UNSET = {name: getattr(PortSpec(""), name) for name in _TYPED}
# Unset peer_name: "" (the API's) or the spec's default; other types report it as "".
_UNSET_TOO = {"peer_name": ""}


def driver(port_type: str) -> PortDriver:
    try:
        return DRIVERS[port_type]
    except KeyError:
        raise InvalidArgument("type", port_type, f"must be one of {', '.join(PORT_TYPES)}") \
            from None


def field_key(name: str) -> str:
    """A PortSpec field's name in messages and the configuration file (addresses: ip)."""
    return _FIELDS[name].metadata.get("key", name)


def validate(spec: PortSpec) -> PortSpec:
    """The spec in canonical form (type defaulted, VLAN settings normalised), checked by the
    rules every type shares (name, MTU, VLAN settings, XDP mode) and then by its driver;
    InvalidArgument names the field."""
    values.ifname(spec.name, "port")
    drv = driver(spec.type or "veth")
    mtu = values.mtu(spec.mtu) if spec.mtu else 0
    vlan, trunks, native = values.vlan_mode(spec.vlan, spec.trunks, spec.native_vlan)
    xdp = values.xdp_mode(spec.xdp)  # every type takes it
    labels = values.labels(spec.labels)  # and labels
    for name in _TYPED:
        value = getattr(spec, name)
        if name in drv.accepts or value == _UNSET[name] or value == _UNSET_TOO.get(name):
            continue
        takers = [t for t, d in DRIVERS.items() if name in d.accepts]
        takers_text = " and ".join(filter(None, [", ".join(takers[:-1]), takers[-1]]))
        raise InvalidArgument(field_key(name), value, f"applies only to {takers_text} ports")
    cleared = {name: _UNSET_TOO.get(name, _UNSET[name]) for name in _TYPED
               if name not in drv.accepts}
    spec = replace(spec, **{"mtu": mtu, **cleared}, type=drv.type, vlan=vlan, trunks=trunks,
                   native_vlan=native, xdp=xdp, labels=labels)
    return drv.validate(spec)
