"""Every link of the current network namespace in one RTM_GETLINK dump, parsed here.

pyroute2 parses each message into a full object tree: about 0.75 ms a link on these machines,
so a dump of 1 000 links took most of a second. A listing needs a handful of attributes
(name, index, kind, master, MAC, MTU, flags, operstate, XDP program ids, counters), which
struct reads in microseconds. Everything else stays with pyroute2 (vswitchd.netlink.links).
The link monitor reads the link events with the same parser (LinkEvents).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from vswitchd.errors import Unavailable
from vswitchd.netlink._util import IFF_UP
from vswitchd.netlink.types import LinkInfo, LinkStats

_NLMSG = struct.Struct("=LHHLL")         # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")       # ifinfomsg: family, type, index, flags, change
_RTA = struct.Struct("=HH")              # rtattr: len, type
_STATS64 = struct.Struct("=8Q")          # rtnl_link_stats64, its first eight counters
_U32 = struct.Struct("=I")
NLMSG_ERROR, NLMSG_DONE, RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 2, 3, 16, 17, 18
RTMGRP_LINK = 1
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_STATS64, IFLA_XDP = 16, 18, 23, 43
IFLA_INFO_KIND = 1
_XDP_PROG_IDS = {5: "native", 6: "generic", 7: "offload"}  # IFLA_XDP_{DRV,SKB,HW}_PROG_ID
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_NESTED = 0x8000  # NLA_F_NESTED, set by some kernels on nested attributes


_TOP = frozenset((IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_OPERSTATE,
                  IFLA_LINKINFO, IFLA_STATS64, IFLA_XDP))
_NAME = frozenset((IFLA_IFNAME,))


def _attrs(data: bytes, start: int, end: int,
           wanted: frozenset[int] | None = None) -> dict[int, tuple[int, int]]:
    """{type: (offset, end)} of the attributes in data[start:end] (of the WANTED types)."""
    out = {}
    unpack = _RTA.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4:
            break
        kind &= ~_NESTED
        if wanted is None or kind in wanted:
            out[kind] = (start + 4, start + length)
        start += (length + 3) & ~3
    return out


def _u32(data: bytes, attrs: dict[int, tuple[int, int]], kind: int) -> int:
    return _U32.unpack_from(data, attrs[kind][0])[0] if kind in attrs else 0


def _string(data: bytes, attrs: dict[int, tuple[int, int]], kind: int) -> str:
    """A NUL-terminated string attribute ("" when absent)."""
    if kind not in attrs:
        return ""
    lo, hi = attrs[kind]
    return data[lo:hi].split(b"\0", 1)[0].decode()


def _errno(data: bytes, offset: int) -> int:
    """The error number of an NLMSG_ERROR message whose body starts at OFFSET (0: an ack)."""
    return -struct.unpack_from("=i", data, offset)[0]


def _parse(data: bytes, offset: int, end: int) -> tuple[LinkInfo, LinkStats]:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset)
    a = _attrs(data, offset + _IFINFO.size, end, _TOP)
    kind = _string(data, _attrs(data, *a[IFLA_LINKINFO]), IFLA_INFO_KIND) \
        if IFLA_LINKINFO in a else ""
    progs: list[tuple[str, int]] = []
    if IFLA_XDP in a:
        xdp = _attrs(data, *a[IFLA_XDP])
        for attr, mode in _XDP_PROG_IDS.items():
            prog_id = _u32(data, xdp, attr)
            if prog_id:
                progs.append((mode, prog_id))
    state = data[a[IFLA_OPERSTATE][0]] if IFLA_OPERSTATE in a else 0
    lo, hi = a.get(IFLA_ADDRESS, (0, 0))
    info = LinkInfo(
        name=_string(data, a, IFLA_IFNAME),
        ifindex=index, kind=kind, master=_u32(data, a, IFLA_MASTER) or None,
        mac=data[lo:hi].hex(":"), mtu=_u32(data, a, IFLA_MTU), up=bool(flags & IFF_UP),
        operstate=_OPERSTATES[state] if state < len(_OPERSTATES) else "UNKNOWN",
        xdp_progs=tuple(progs))
    c = _STATS64.unpack_from(data, a[IFLA_STATS64][0]) if IFLA_STATS64 in a else (0,) * 8
    # rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors,
    # rx_dropped, tx_dropped
    return info, LinkStats(rx_packets=c[0], rx_bytes=c[2], tx_packets=c[1], tx_bytes=c[3],
                           rx_dropped=c[6], tx_dropped=c[7])


def dump(attempts: int = 3) -> dict[str, tuple[LinkInfo, LinkStats]]:
    """{name: (info, counters)} of every link; a dump the kernel marks interrupted (links
    changed meanwhile) is taken again."""
    for _ in range(attempts):
        out, interrupted = _dump_once()
        if not interrupted:
            return out
    return out


def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, groups))
    return sock


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset of the body, end, type, flags, seq) of each netlink message in DATA."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            raise Unavailable("netlink: a malformed link message")
        end = offset + length
        yield offset + _NLMSG.size, end, kind, flags, seq
        offset = (end + 3) & ~3


def dump_messages() -> Iterator[tuple[bytes, int, int, int]]:
    """(data, offset of the ifinfomsg, end, netlink flags) of each RTM_NEWLINK of one dump of
    every link in the current namespace, then (data, -1, -1, flags) of its NLMSG_DONE."""
    with _socket() as sock:
        seq = int.from_bytes(os.urandom(4), "little") or 1
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK,
                              NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        while True:
            data = sock.recv(1 << 20)
            for offset, end, kind, flags, msg_seq in _messages(data):
                if msg_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    yield data, -1, -1, flags
                    return
                if kind == NLMSG_ERROR:
                    raise Unavailable("netlink: link dump failed: "
                                      f"{os.strerror(_errno(data, offset))}")
                if kind == RTM_NEWLINK:
                    yield data, offset, end, flags


def _dump_once() -> tuple[dict[str, tuple[LinkInfo, LinkStats]], bool]:
    out: dict[str, tuple[LinkInfo, LinkStats]] = {}
    interrupted = False
    for data, offset, end, flags in dump_messages():
        interrupted |= bool(flags & NLM_F_DUMP_INTR)
        if offset >= 0:
            info, stats = _parse(data, offset, end)
            out[info.name] = (info, stats)
    return out, interrupted


def _get_one(sock: socket.socket, seq: int, name: str = "", index: int = 0
             ) -> tuple[LinkInfo, LinkStats] | None:
    """One RTM_GETLINK by name or by index on sock: the link, or None when there is none."""
    attr = b""
    if name:
        raw = name.encode() + b"\0"
        attr = _RTA.pack(_RTA.size + len(raw), IFLA_IFNAME) + raw
        attr += b"\0" * (-len(attr) % 4)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr
    sock.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body)
    while True:
        data = sock.recv(1 << 16)
        for offset, end, kind, _flags, msg_seq in _messages(data):
            if msg_seq != seq:
                continue
            if kind == RTM_NEWLINK:
                return _parse(data, offset, end)
            if kind == NLMSG_ERROR:
                errno_ = _errno(data, offset)
                if errno_ in (0, errno.ENODEV):
                    return None
                raise Unavailable(f"netlink: link {name or index}: {os.strerror(errno_)}")


def _possible(name: str) -> bool:
    """Whether the kernel could hold a link of that name (it refuses to look up others)."""
    return 0 < len(name.encode()) < 16 and "\0" not in name


def get(name: str = "", index: int = 0) -> tuple[LinkInfo, LinkStats] | None:
    """The link named NAME (or of ifindex INDEX) with its counters; None when there is none.
    One request, parsed here: pyroute2 took 0.75 ms a message to parse."""
    if name and index:
        raise ValueError("give the link's name or its index, not both")
    if not (_possible(name) if name else 0 < index < 2**31):
        return None
    with _socket() as sock:
        return _get_one(sock, 1, name=name, index=index)


def lookup(names: set[str]) -> dict[str, LinkInfo]:
    """{name: info} of those of NAMES that are links of the current network namespace: a
    request per name, for a few links where a dump would read them all."""
    out: dict[str, LinkInfo] = {}
    with _socket() as sock:
        for seq, name in enumerate(sorted(filter(_possible, names)), start=1):
            found = _get_one(sock, seq, name=name)
            if found is not None:
                out[name] = found[0]
    return out


class LinkEvents:
    """The link messages of the current network namespace (RTMGRP_LINK), as the names of the
    links they are about. recv() raises OSError (ENOBUFS) when the kernel dropped some."""

    def __init__(self) -> None:
        self._sock = _socket(RTMGRP_LINK)

    def recv(self) -> list[str]:
        data = self._sock.recv(1 << 20)
        names = (_string(data, _attrs(data, offset + _IFINFO.size, end, _NAME), IFLA_IFNAME)
                 for offset, end, kind, _flags, _seq in _messages(data)
                 if kind in (RTM_NEWLINK, RTM_DELLINK))
        return [name for name in names if name]

    def close(self) -> None:
        self._sock.close()
