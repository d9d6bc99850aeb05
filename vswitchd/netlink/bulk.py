"""Deleting many links in one kernel operation. Each RTM_DELLINK of one link waits for RCU
grace periods in unregister_netdevice (20 ms a link here); the kernel unregisters the links of
a netdev group together, with one round of waits for all of them. So the links to delete get
a group number no other link of the namespace has, and then the group is deleted."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import struct

from vswitchd.errors import Unavailable
from vswitchd.netlink import linkdump
from vswitchd.netlink.linkdump import (
    _IFINFO,
    _NLMSG,
    _RTA,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RTM_DELLINK,
    _attrs,
    _errno,
    _messages,
    _socket,
)

RTM_NEWLINK = 16
IFLA_GROUP = 27
NLM_F_ACK = 0x4
_U32 = struct.Struct("=I")


def _request(sock: socket.socket, seq: int, kind: int, index: int, group: int) -> int:
    """Sends one link request with IFLA_GROUP and returns its errno (0: done)."""
    attr = _RTA.pack(_RTA.size + 4, IFLA_GROUP) + _U32.pack(group)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr
    sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
              + body)
    while True:
        data = sock.recv(1 << 16)
        for offset, _end, msg_kind, _flags, msg_seq in _messages(data):
            if msg_seq == seq and msg_kind == NLMSG_ERROR:
                return _errno(data, offset)


def _groups_in_use() -> set[int]:
    used: set[int] = set()
    for data, offset, end, _flags in linkdump.dump_messages():
        if offset >= 0:
            a = _attrs(data, offset + _IFINFO.size, end, frozenset((IFLA_GROUP,)))
            used.add(linkdump._u32(data, a, IFLA_GROUP))
    return used


def delete_links(ifindexes: list[int]) -> None:
    """Deletes the links (a veth's peer goes with it) in one group deletion; links already
    gone are skipped. Raises Unavailable when the kernel refuses."""
    if not ifindexes:
        return
    used = _groups_in_use()
    group = 0
    while group == 0 or group in used:
        group = secrets.randbits(31)  # no link of the namespace has it
    with _socket() as sock:
        for seq, index in enumerate(ifindexes, start=1):
            err = _request(sock, seq, RTM_NEWLINK, index, group)
            if err not in (0, errno.ENODEV):
                raise Unavailable(f"netlink: setting the group of ifindex {index}: "
                                  f"{os.strerror(err)}")
        err = _request(sock, len(ifindexes) + 1, RTM_DELLINK, 0, group)
        if err not in (0, errno.ENODEV):
            raise Unavailable(f"netlink: deleting {len(ifindexes)} links: {os.strerror(err)}")
