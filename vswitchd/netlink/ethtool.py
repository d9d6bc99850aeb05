"""Interface offload settings over the ethtool ioctl (SIOCETHTOOL), in a given network
namespace: today GRO, which on a veth also gives it NAPI (Linux 5.13 and later), the condition
for frames redirected at XDP into its peer to be delivered.

The ioctl goes to a socket made inside the namespace (vswitchd.netlink.netns.entered), so the
interface name is looked up there; nothing is run in a shell.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct

from vswapi.names import IFNAMSIZ
from vswitchd.netlink import netns as _netns
from vswitchd.netlink.errors import translate

SIOCETHTOOL = 0x8946
ETHTOOL_GGRO = 0x2B  # struct ethtool_value {u32 cmd; u32 data}: data = GRO on (1) or off (0)
ETHTOOL_SGRO = 0x2C
_IFREQ_SIZE = 40  # struct ifreq: the name, then a union holding the ethtool_value's address


def _ethtool(ifname: str, netns: str, cmd: int, data: int, action: str) -> int:
    """Run ethtool command CMD with DATA on IFNAME in NETNS ("" = the daemon's own); the data
    the kernel wrote back."""
    value = array.array("I", [cmd, data])
    address, _ = value.buffer_info()
    ifr = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), address).ljust(_IFREQ_SIZE, b"\0")
    try:
        if netns:
            with _netns.entered(netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound to NETNS
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    except OSError as exc:
        where = f" in network namespace {netns}" if netns else ""
        raise translate(exc, f"{action} of {ifname}{where}") from exc
    return value[1]


def gro(ifname: str, netns: str = "") -> bool:
    """Is GRO on at IFNAME in NETNS (a name under /run/netns or a path; "" = this one)?"""
    return bool(_ethtool(ifname, netns, ETHTOOL_GGRO, 0, "read GRO"))


def set_gro(ifname: str, netns: str, on: bool) -> None:
    """Turn GRO on or off at IFNAME in NETNS."""
    _ethtool(ifname, netns, ETHTOOL_SGRO, int(on), f"turn GRO {'on' if on else 'off'}")


__all__ = ["gro", "set_gro"]
