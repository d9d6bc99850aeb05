"""Validation of user-supplied values, shared by the config loader and the API.

Each function returns the value in canonical form or raises InvalidArgument naming the field.
"""

from __future__ import annotations

import ipaddress
import re

from vswapi import names
from vswapi.enums import XDP_MODES
from vswitchd.errors import InvalidArgument

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
MTU_MIN, MTU_MAX = 68, 65535
VLAN_MIN, VLAN_MAX = 1, 4094


def ifname(value: str, field: str = "name") -> str:
    """A Linux interface name (a bridge, port or peer): the kernel's rule (vswapi.names)."""
    why = names.ifname_problem(value) if isinstance(value, str) else "must be a string"
    if why is not None:
        raise InvalidArgument(field, value, why)
    return value


def mac(value: str, field: str = "mac") -> str:
    """A unicast or multicast MAC address, returned lower-case with ':' separators."""
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise InvalidArgument(field, value, "is not a MAC address (expected xx:xx:xx:xx:xx:xx)")
    return value.replace("-", ":").lower()


def unicast_mac(value: str, field: str = "mac") -> str:
    canonical = mac(value, field)
    if int(canonical[:2], 16) & 1:
        raise InvalidArgument(field, value, "is a multicast address; a unicast MAC is needed")
    if canonical == "00:00:00:00:00:00":
        raise InvalidArgument(field, value, "is the all-zero address")
    return canonical


def cidr(value: str, field: str = "ip") -> str:
    """An interface address with prefix length, e.g. 10.0.0.2/24 or fd00::2/64: a host's
    address (not multicast, and in IPv4 not the network or broadcast address of its prefix;
    /31 and /32 have neither)."""
    if not isinstance(value, str) or "/" not in value:
        raise InvalidArgument(field, value, "needs a prefix length (e.g. 10.0.0.2/24)")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise InvalidArgument(field, value, f"is not a valid CIDR ({exc})") from None
    if iface.ip.is_multicast:
        raise InvalidArgument(field, value, "is a multicast address; an interface needs a "
                                            "unicast one")
    net = iface.network
    if net.version == 4 and net.prefixlen < 31:
        if iface.ip == net.network_address:
            raise InvalidArgument(field, value, f"is the network address of {net}; give a "
                                                "host's address in it")
        if iface.ip == net.broadcast_address:
            raise InvalidArgument(field, value, f"is the broadcast address of {net}; give a "
                                                "host's address in it")
    return str(iface)


def distinct_addresses(values: list[str], field: str = "ip") -> list[str]:
    """VALUES (canonical CIDRs) with no address twice (whatever the prefix lengths)."""
    seen: dict[object, str] = {}
    for value in values:
        ip = ipaddress.ip_interface(value).ip
        if ip in seen:
            raise InvalidArgument(field, value, f"is given twice (also as {seen[ip]})")
        seen[ip] = value
    return values


_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9._/-]{1,63}$")
MAX_LABELS, MAX_LABEL_VALUE = 32, 255


def labels(value: object, field: str = "labels") -> dict[str, str]:
    """A port's free-form labels: at most MAX_LABELS, keys 1..63 of [A-Za-z0-9._/-], string
    values of at most MAX_LABEL_VALUE characters (what a name and a container ID need, and
    small enough that no caller can bloat the store)."""
    if not isinstance(value, dict):
        raise InvalidArgument(field, value, "must be a mapping of label names to strings")
    if len(value) > MAX_LABELS:
        raise InvalidArgument(field, f"{len(value)} labels", f"at most {MAX_LABELS} are allowed")
    for key, text in value.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
            raise InvalidArgument(field, key, "a label name is 1..63 of A-Z a-z 0-9 . _ / -")
        if not isinstance(text, str) or len(text) > MAX_LABEL_VALUE:
            raise InvalidArgument(f"{field}.{key}", text,
                                  f"must be a string of at most {MAX_LABEL_VALUE} characters")
    return dict(value)


def mtu(value: int, field: str = "mtu") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MTU_MIN <= value <= MTU_MAX:
        raise InvalidArgument(field, value, f"must be an integer in {MTU_MIN}..{MTU_MAX}")
    return value


def vlan(value: int, field: str = "vlan", allow_untagged: bool = True) -> int:
    """A VLAN id; 0 means untagged where allowed."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, value, "must be an integer")
    if value == 0 and allow_untagged:
        return 0
    if not VLAN_MIN <= value <= VLAN_MAX:
        raise InvalidArgument(field, value, f"must be in {VLAN_MIN}..{VLAN_MAX}")
    return value


def trunks(values: object, field: str = "trunks") -> list[int]:
    """A list of VLAN ids (1..4094), returned sorted without duplicates."""
    if isinstance(values, int | str):
        raise InvalidArgument(field, values, "must be a list of VLAN ids")
    out = set()
    for v in values:  # type: ignore[union-attr]
        if isinstance(v, bool) or not isinstance(v, int) or not VLAN_MIN <= v <= VLAN_MAX:
            raise InvalidArgument(field, v, f"is not a VLAN id in {VLAN_MIN}..{VLAN_MAX}")
        out.add(v)
    return sorted(out)


def vlan_mode(vlan_id: int, trunk_ids: object, native: int) -> tuple[int, list[int], int]:
    """A port's VLAN settings, checked together: access VID, or trunks with an optional native
    VLAN, or nothing (the port carries every VLAN)."""
    vlan_id = vlan(vlan_id, "vlan") if vlan_id else 0
    trunk_ids = trunks(trunk_ids)
    native = vlan(native, "native_vlan") if native else 0
    if vlan_id and trunk_ids:
        raise InvalidArgument("trunks", trunk_ids,
                              f"cannot be combined with vlan {vlan_id} (an access port)")
    if native and not trunk_ids:
        raise InvalidArgument("native_vlan", native, "applies only to trunk ports (trunks)")
    return vlan_id, trunk_ids, native


def xdp_mode(value: object, field: str = "xdp") -> str:
    """A port's XDP mode: auto, native, generic or off (the API's XdpMode words), or "" for the
    port type's default."""
    if value == "" or value in XDP_MODES:
        return str(value)
    raise InvalidArgument(field, value, f"must be one of {', '.join(XDP_MODES)} (unset: the "
                          "port type's default)")


def gateway(value: str, addresses: list[str], field: str = "gateway") -> str:
    """A default-route gateway that lies inside one of ADDRESSES' subnets."""
    try:
        gw = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(field, value, "is not an IP address") from None
    nets = [ipaddress.ip_interface(a) for a in addresses]
    for iface in nets:
        if iface.version == gw.version and gw in iface.network:
            if gw == iface.ip:
                raise InvalidArgument(field, value, "is the port's own address")
            return str(gw)
    where = ", ".join(str(i.network) for i in nets) or "none: the port has no --ip"
    raise InvalidArgument(field, value, f"is outside the port's subnets ({where})")


VNI_MIN, VNI_MAX = 1, 16777215  # 24 bits; 0 is not a VNI


def vni(value: object, field: str = "vni") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not VNI_MIN <= value <= VNI_MAX:
        raise InvalidArgument(field, value, f"must be a VXLAN network identifier in "
                                            f"{VNI_MIN}..{VNI_MAX}")
    return value


def udp_port(value: object, field: str = "dstport") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgument(field, value, "must be a UDP port in 1..65535")
    return value


def host_address(value: object, field: str) -> str:
    """A unicast IPv4 or IPv6 address without prefix length (a tunnel end point), canonical."""
    try:
        ip = ipaddress.ip_address(value)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(field, value, "is not an IP address (e.g. 10.0.0.1)") from None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise InvalidArgument(field, value, "must be a unicast address of a host")
    return str(ip)
