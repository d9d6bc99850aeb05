"""The network configuration (stdin) as this plugin reads it.

    {"cniVersion": "1.0.0", "name": "podnet", "type": "vswitchd-cni",
     "bridge": "cni-vsw0", "datapath": "ebpf", "vlan": 10, "mtu": 1400,
     "isGateway": true, "isDefaultGateway": false, "ipMasq": true,
     "socket": "/run/vswitchd/vswitchd.sock",
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}}

Keys other plugins use and this one does not are ignored, as the reference plugins do; a key
this plugin reads with the wrong type is an error naming it (code 7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vswapi.sockets import DEFAULT_SOCKET
from vswcni.spec import (
    DECODE_FAILURE,
    INVALID_NETWORK_CONFIG,
    CniError,
    Result,
    check_version,
)

DEFAULT_BRIDGE = "cni-vsw0"


@dataclass
class NetConf:
    raw: bytes                       # as read: IPAM plugins get the same bytes
    version: str
    name: str
    bridge: str = DEFAULT_BRIDGE
    datapath: str = ""               # "" = the daemon's default
    vlan: int = 0
    mtu: int = 0
    is_gateway: bool = False
    is_default_gateway: bool = False
    ip_masq: bool = False
    socket: str = DEFAULT_SOCKET
    ipam: dict[str, Any] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)
    mac: str = ""                    # runtimeConfig.mac (the "mac" capability)
    prev_result: Result | None = None


_KEYS: dict[str, tuple[str, type]] = {
    "bridge": ("bridge", str), "datapath": ("datapath", str), "vlan": ("vlan", int),
    "mtu": ("mtu", int), "isGateway": ("is_gateway", bool),
    "isDefaultGateway": ("is_default_gateway", bool), "ipMasq": ("ip_masq", bool),
    "socket": ("socket", str), "ipam": ("ipam", dict), "dns": ("dns", dict),
}


def parse(raw: bytes) -> NetConf:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, f"network configuration: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CniError(DECODE_FAILURE, "network configuration: not a JSON object")
    version = check_version(data.get("cniVersion"))
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_NETWORK_CONFIG, "name: the network's name is required")
    conf = NetConf(raw, version, name)
    for key, (attr, kind) in _KEYS.items():
        if key not in data or data[key] is None:
            continue
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CniError(INVALID_NETWORK_CONFIG,
                           f"{key}: {json.dumps(value)} is not a {kind.__name__}")
        setattr(conf, attr, value)
    if not conf.bridge:
        raise CniError(INVALID_NETWORK_CONFIG, "bridge: must not be empty")
    if conf.datapath not in ("", "ebpf", "kernel"):
        raise CniError(INVALID_NETWORK_CONFIG,
                       f"datapath: {conf.datapath!r} is not ebpf or kernel")
    if not conf.socket.startswith("/"):
        raise CniError(INVALID_NETWORK_CONFIG, f"socket: {conf.socket!r} is not an absolute path")
    if conf.ipam and not isinstance(conf.ipam.get("type"), str):
        raise CniError(INVALID_NETWORK_CONFIG, "ipam.type: the IPAM plugin to use is required")
    if conf.is_default_gateway:
        conf.is_gateway = True  # as the reference bridge: a default gateway is a gateway
    if (conf.is_gateway or conf.ip_masq) and not conf.ipam:
        key = "isGateway" if conf.is_gateway else "ipMasq"
        raise CniError(INVALID_NETWORK_CONFIG,
                       f"{key}: needs ipam (the bridge takes the gateway address it hands out)")
    runtime = data.get("runtimeConfig") or {}
    if isinstance(runtime, dict) and isinstance(runtime.get("mac"), str):
        conf.mac = runtime["mac"]
    if data.get("prevResult") is not None:
        conf.prev_result = Result.parse(data["prevResult"], "prevResult")
    return conf
