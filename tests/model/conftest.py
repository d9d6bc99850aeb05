"""The device pool of the differential test: two bridges and their veth ports in the test
process's private netns, and a Datapath with its own bpffs pin directory, built once per module
(devices and program loads are the slow part) and reconfigured through the maps per example."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from tests.datapath.dp_helpers import Topo


@dataclass
class Pool:
    dp: object
    bridges: dict[int, str]        # bridge ifindex -> its MAC
    ports: dict[int, list[int]]    # bridge ifindex -> its ports' ifindexes
    xdp_ports: set[int]            # ports with the XDP program (generic)


@pytest.fixture(scope="module")
def pool():
    from vswitchd.datapath import Datapath, PortKind

    bpffs_dir = f"/sys/fs/bpf/vswmodel-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    topo = Topo()
    dp = Datapath(bpffs_dir)
    try:
        bridges, ports, xdp_ports = {}, {}, set()
        for name, kinds in (("a", [PortKind.PEER, PortKind.DEVICE, PortKind.DEVICE]),
                            ("b", [PortKind.DEVICE, PortKind.PEER])):
            br = topo.add(f"{name}b", "bridge")
            bridges[br] = topo.mac(br)
            dp.add_bridge(br, bridges[br])
            ports[br] = []
            for i, kind in enumerate(kinds):
                idx = topo.add(f"{name}p{i}", "veth")
                dp.add_port(br, idx, kind)
                ports[br].append(idx)
        a, b = list(bridges)
        for idx in (ports[a][1], ports[b][0]):  # the XDP hook, as on a TAP or an uplink
            dp.set_port_xdp(idx, "generic")
            xdp_ports.add(idx)
        dp.set_xdp_target(ports[a][2], True)  # one port XDP may redirect to
        yield Pool(dp, bridges, ports, xdp_ports)
    finally:
        dp.destroy()
        topo.cleanup()
        assert not os.path.exists(bpffs_dir)
