"""Build a test frame from ovs-ofctl-style fields, for `vswctl trace`.

Fields not given take documented defaults, so `in_port=c1,udp,tp_dst=53` is enough. Checksums
are correct (IPv4 header, ICMP, ICMPv6, TCP, UDP), so the frame is what a real host would send.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from vswitchd.errors import InvalidArgument

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x86DD, 0x0806, 0x8100
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
MIN_FRAME = 60  # without FCS

DEFAULTS = {
    "dl_src": "02:00:00:00:00:01",
    "dl_dst": "02:00:00:00:00:02",
    "nw_src": "10.0.0.1",
    "nw_dst": "10.0.0.2",
    "ipv6_src": "fd00::1",
    "ipv6_dst": "fd00::2",
    "tp_src": 1024,
    "tp_dst": 1024,
}


@dataclass(frozen=True)
class FrameSpec:
    """Exact header values of one frame (no masks: a frame is one packet, not a set)."""

    dl_src: str = DEFAULTS["dl_src"]
    dl_dst: str = DEFAULTS["dl_dst"]
    dl_type: int | None = None      # None: an Ethernet frame with no L3 (EtherType 0x88b5)
    dl_vlan: int | None = None      # 802.1Q VID of a tagged frame
    nw_src: str | None = None
    nw_dst: str | None = None
    ipv6_src: str | None = None
    ipv6_dst: str | None = None
    nw_proto: int | None = None
    tp_src: int | None = None
    tp_dst: int | None = None
    truncate: int = 0               # cut the frame to this many bytes (0: whole frame)


def _mac(value: str, field: str) -> bytes:
    try:
        raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise InvalidArgument(field, value, "is not a MAC address")
    return raw


def _ip(value: str, field: str, version: int) -> bytes:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        raise InvalidArgument(field, value, f"is not an IPv{version} address (trace needs one "
                              "address, not a prefix)")
    return addr.packed


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _l4(spec: FrameSpec, proto: int, pseudo: Callable[[int], bytes]) -> bytes:
    """The L4 segment with its checksum. PSEUDO(length) gives the IP pseudo-header."""
    sport = spec.tp_src if spec.tp_src is not None else DEFAULTS["tp_src"]
    dport = spec.tp_dst if spec.tp_dst is not None else DEFAULTS["tp_dst"]
    payload = b"vswitchd-trace"
    if proto == PROTO_UDP:
        seg, sum_at = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, 6
    elif proto == PROTO_TCP:
        seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
        sum_at = 16
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        kind = 8 if proto == PROTO_ICMP else 128  # echo request
        seg, sum_at = struct.pack("!BBHHH", kind, 0, 0, 0x7653, 1) + payload, 2
    else:
        return payload
    covered = seg if proto == PROTO_ICMP else pseudo(len(seg)) + seg  # ICMPv4: no pseudo-header
    csum = _csum(covered) or (0xFFFF if proto == PROTO_UDP else 0)
    return seg[:sum_at] + struct.pack("!H", csum) + seg[sum_at + 2:]


def build(spec: FrameSpec) -> bytes:
    """The frame's bytes (padded to 60, then truncated if asked)."""
    eth = _mac(spec.dl_dst, "dl_dst") + _mac(spec.dl_src, "dl_src")
    if spec.dl_vlan is not None:
        if not 0 <= spec.dl_vlan <= 4095:
            raise InvalidArgument("dl_vlan", spec.dl_vlan, "out of range 0..4095")
        eth += struct.pack("!HH", ETH_P_8021Q, spec.dl_vlan)
    dl_type = spec.dl_type if spec.dl_type is not None else 0x88B5  # local experimental
    eth += struct.pack("!H", dl_type)
    proto = spec.nw_proto
    if dl_type == ETH_P_IP:
        src = _ip(spec.nw_src or DEFAULTS["nw_src"], "nw_src", 4)
        dst = _ip(spec.nw_dst or DEFAULTS["nw_dst"], "nw_dst", 4)
        proto = proto if proto is not None else 0xFD  # experimental: no L4 header
        l4 = _l4(spec, proto, lambda n: src + dst + struct.pack("!BBH", 0, proto, n))
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
                          src, dst)
        body = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4
    elif dl_type == ETH_P_IPV6:
        src = _ip(spec.ipv6_src or DEFAULTS["ipv6_src"], "ipv6_src", 6)
        dst = _ip(spec.ipv6_dst or DEFAULTS["ipv6_dst"], "ipv6_dst", 6)
        proto = proto if proto is not None else 59  # no next header
        l4 = _l4(spec, proto, lambda n: src + dst + struct.pack("!IxxxB", n, proto))
        body = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst) + l4
    elif dl_type == ETH_P_ARP:
        spa = _ip(spec.nw_src or DEFAULTS["nw_src"], "nw_src", 4)
        tpa = _ip(spec.nw_dst or DEFAULTS["nw_dst"], "nw_dst", 4)
        body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1,
                           _mac(spec.dl_src, "dl_src"), spa, b"\0" * 6, tpa)
    else:
        body = b"vswitchd-trace"
    frame = eth + body
    frame += b"\0" * max(0, MIN_FRAME - len(frame))
    if spec.truncate:
        if spec.truncate < 14:
            raise InvalidArgument("truncate", spec.truncate,
                                  "must keep at least the 14-byte Ethernet header")
        frame = frame[:spec.truncate]
    return frame
