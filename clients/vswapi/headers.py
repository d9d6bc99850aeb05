"""The headers of a frame's first bytes (a packet-in's data), decoded for people and controllers.

    from vswapi.headers import decode

    decode(packet_in.data)
    # {'dl_dst': 'ff:ff:ff:ff:ff:ff', 'dl_src': '02:00:00:00:00:01', 'dl_vlan': None,
    #  'dl_type': 2054, 'arp_op': 'request', 'ip_src': '10.0.0.1', 'ip_dst': '10.0.0.2'}

Ethernet, one 802.1Q/802.1ad tag, ARP, IPv4 and IPv6 (no extension headers) with TCP/UDP ports.
A field the bytes do not reach (the frame was cut to max_len) is left out; standard library
only.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

ETH_IP, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
VLAN_TPIDS = (0x8100, 0x88A8)
ARP_OPS = {1: "request", 2: "reply"}
PORTS_PROTOS = (6, 17)  # TCP, UDP: ports follow the IP header


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def decode(data: bytes) -> dict[str, Any]:
    """dl_dst, dl_src, dl_vlan (VID, or None untagged), dl_type; ARP: arp_op, ip_src, ip_dst;
    IP: ip_src, ip_dst, nw_proto, and for TCP/UDP tp_src, tp_dst. {} for less than an
    Ethernet header."""
    if len(data) < 14:
        return {}
    out: dict[str, Any] = {"dl_dst": mac_text(data[0:6]), "dl_src": mac_text(data[6:12]),
                           "dl_vlan": None}
    (dl_type,) = struct.unpack_from("!H", data, 12)
    off = 14
    if dl_type in VLAN_TPIDS:
        if len(data) < 18:
            return out
        tci, dl_type = struct.unpack_from("!HH", data, 14)
        out["dl_vlan"] = tci & 0x0FFF
        off = 18
    out["dl_type"] = dl_type
    body = data[off:]
    if dl_type == ETH_ARP and len(body) >= 28:
        (op,) = struct.unpack_from("!H", body, 6)
        out["arp_op"] = ARP_OPS.get(op, str(op))
        out["ip_src"] = str(ipaddress.IPv4Address(body[14:18]))
        out["ip_dst"] = str(ipaddress.IPv4Address(body[24:28]))
    elif dl_type == ETH_IP and len(body) >= 20:
        ihl = (body[0] & 0x0F) * 4
        out["nw_proto"] = body[9]
        out["ip_src"] = str(ipaddress.IPv4Address(body[12:16]))
        out["ip_dst"] = str(ipaddress.IPv4Address(body[16:20]))
        _ports(out, body[ihl:])
    elif dl_type == ETH_IPV6 and len(body) >= 40:
        out["nw_proto"] = body[6]
        out["ip_src"] = str(ipaddress.IPv6Address(body[8:24]))
        out["ip_dst"] = str(ipaddress.IPv6Address(body[24:40]))
        _ports(out, body[40:])
    return out


def _ports(out: dict[str, Any], l4: bytes) -> None:
    if out["nw_proto"] in PORTS_PROTOS and len(l4) >= 4:
        out["tp_src"], out["tp_dst"] = struct.unpack_from("!HH", l4, 0)
