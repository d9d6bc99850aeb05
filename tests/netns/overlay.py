"""Several "hosts" (network namespaces, each with its own vswitchd: tests.netns.harness.Host)
joined by an underlay: a Linux bridge in a namespace of its own, "the LAN", and a veth `ul0`
in each host with 10.77.0.N/24 (host N from 1). The hosts' bridges then share segments over
VXLAN tunnels.

Tests may use `ip` here (the daemon never does). Every namespace carries a host's tag, so
Host.cleanup() removes it; the LAN namespace belongs to the first host.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.netns.harness import Host
from tests.netns.topo import ip, new_ns

UNDERLAY = "10.77.0.{}"


class Overlay:
    def __init__(self, workdir: Path, count: int) -> None:
        self.hosts: list[Host] = []
        try:
            for i in range(count):
                (workdir / f"h{i + 1}").mkdir()
                self.hosts.append(Host(workdir / f"h{i + 1}"))
            self.lan = new_ns(self.hosts[0], "lan")
            ip("-n", self.lan, "link", "add", "lan", "type", "bridge")
            ip("-n", self.lan, "link", "set", "lan", "up")
            for i, h in enumerate(self.hosts, 1):
                ip("-n", h.ns, "link", "add", "ul0", "type", "veth", "peer", "name", f"h{i}",
                   "netns", self.lan)
                ip("-n", self.lan, "link", "set", f"h{i}", "master", "lan", "up")
                ip("-n", h.ns, "addr", "add", f"{self.vtep(i)}/24", "dev", "ul0")
                ip("-n", h.ns, "link", "set", "ul0", "up")
        except BaseException:
            self.cleanup()
            raise

    @staticmethod
    def vtep(n: int) -> str:
        """Host N's underlay address (N from 1)."""
        return UNDERLAY.format(n)

    def start(self) -> None:
        for h in self.hosts:
            h.start()

    def segment(self, bridge: str, vni: int, subnet: str, datapath: str = "ebpf",
                remotes: bool = True) -> None:
        """On every host: BRIDGE with a vxlan port vx<VNI> (every other host a remote VTEP
        unless REMOTES is false) and a container c<VNI> at SUBNET.N/24 (SUBNET: "192.168.5")
        with MAC 02:00:00:VNI:00:N."""
        for i, h in enumerate(self.hosts, 1):
            h.vswctl("add-br", bridge, "--datapath", datapath, "--may-exist")
            others = [a for j in range(1, len(self.hosts) + 1) if j != i
                      for a in ("--remote", self.vtep(j))] if remotes else []
            h.vswctl("add-port", bridge, f"vx{vni}", "--type", "vxlan", "--vni", str(vni),
                     "--local", self.vtep(i), *others)
            h.vswctl("add-port", bridge, f"c{vni}", "--netns", h.name(f"c{vni}"), "--ip",
                     f"{subnet}.{i}/24", "--mac", self.mac(vni, i))

    @staticmethod
    def mac(vni: int, n: int) -> str:
        return f"02:00:00:{vni % 256:02x}:00:{n:02x}"

    def cleanup(self) -> None:
        for h in self.hosts:
            with contextlib.suppress(Exception):
                h.cleanup()
