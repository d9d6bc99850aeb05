"""Helpers for datapath tests: crafted frames, devices in the private netns."""

from __future__ import annotations

import struct
import uuid

BROADCAST = "ff:ff:ff:ff:ff:ff"
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
MAC_C = "02:00:00:00:00:0c"
MULTICAST = "01:00:5e:00:00:fb"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def eth(dst: str, src: str, ethertype: int = 0x0800, payload_len: int = 46) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + bytes(payload_len)


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def _quiet(name: str) -> None:
    """No IPv6 on test devices (this netns only): no DAD/RS/MLD frames racing the counters."""
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
        f.write("1")


class Topo:
    """Creates devices and removes them at the end."""

    def __init__(self) -> None:
        self.prefix = "t" + uuid.uuid4().hex[:5]
        self.created: list[int] = []

    def add(self, suffix: str, kind: str) -> int:
        name = f"{self.prefix}{suffix}"
        with _ipr() as ipr:
            if kind == "veth":  # this kernel has no dummy driver: a veth pair, peer up too
                ipr.link("add", ifname=name, kind="veth", peer=f"{name}x")
                peer = ipr.link_lookup(ifname=f"{name}x")[0]
                _quiet(f"{name}x")
                ipr.link("set", index=peer, state="up")
            elif kind == "bridge":  # snooping makes the bridge send IGMP reports when up
                ipr.link("add", ifname=name, kind="bridge", br_mcast_snooping=0)
            else:
                ipr.link("add", ifname=name, kind=kind)
            index = ipr.link_lookup(ifname=name)[0]
            _quiet(name)
            ipr.link("set", index=index, state="up")
        self.created.append(index)
        return index

    def mac(self, index: int) -> str:
        with _ipr() as ipr:
            return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")

    def delete(self, index: int) -> None:
        with _ipr() as ipr:
            ipr.link("del", index=index)
        self.created.remove(index)

    def cleanup(self) -> None:
        with _ipr() as ipr:
            for index in reversed(self.created):
                try:
                    ipr.link("del", index=index)
                except Exception:
                    pass
        self.created.clear()


class Bridge:
    """A bridge of N_PORTS veth ports, of KINDS (default: devices), each in VLAN mode VLAN."""

    def __init__(self, topo: Topo, dp, name: str, n_ports: int, kinds=None, vlan=None) -> None:
        from vswitchd.datapath import PortKind
        from vswitchd.datapath.vlan import UNCONFIGURED

        self.br = topo.add(f"{name}b", "bridge")
        self.mac = topo.mac(self.br)
        dp.add_bridge(self.br, self.mac)
        self.ports = []
        for i in range(n_ports):
            kind = (kinds or [PortKind.DEVICE] * n_ports)[i]
            idx = topo.add(f"{name}p{i}", "veth")
            dp.add_port(self.br, idx, kind, vlan or UNCONFIGURED)
            self.ports.append(idx)


