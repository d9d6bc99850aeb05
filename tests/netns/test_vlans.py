"""VLANs in the eBPF datapath, checked on the wire: AF_PACKET receivers in the containers see
which frames arrive and with which tag (PACKET_AUXDATA restores a tag the kernel took out).

    a10, b10  access ports, VLAN 10        a20  access port, VLAN 20 (same IP subnet!)
    tr        trunk 10,20 (a raw sender/receiver, no IP: the kernel here has no 802.1Q)
"""

from __future__ import annotations

import time

import pytest

from tests.netns.topo import send_frames, sniffed, sniffer

pytestmark = pytest.mark.root

BCAST = "ff:ff:ff:ff:ff:ff"
TEST_TYPE = 0x88B5
MACS = {"a10": "02:70:00:00:00:01", "b10": "02:70:00:00:00:02", "a20": "02:70:00:00:00:03",
        "tr": "02:70:00:00:00:09"}
IPS = {"a10": "10.70.0.1", "b10": "10.70.0.2", "a20": "10.70.0.3"}


@pytest.fixture
def vlans(host):
    host.start()
    host.vswctl("add-br", "br0", "--datapath", "ebpf")
    for name, vid in (("a10", 10), ("b10", 10), ("a20", 20)):
        host.vswctl("add-port", "br0", name, "--netns", host.name(name), "--ip",
                    f"{IPS[name]}/24", "--mac", MACS[name], "--vlan", str(vid))
    host.vswctl("add-port", "br0", "tr", "--netns", host.name("tr"), "--mac", MACS["tr"],
                "--trunks", "10,20")
    return host


def seen(host, action, who=("a10", "b10", "a20", "tr"), seconds=2.0) -> dict[str, list]:
    """Run ACTION while every port's peer listens; per port the (src MAC, VLAN) of the test
    frames (EtherType 0x88b5) that arrived."""
    procs = {n: sniffer(host, host.name(n), "eth0", seconds) for n in who}
    time.sleep(0.2)
    action()
    out = {}
    for name, proc in procs.items():
        out[name] = sorted({(src, vlan) for src, _dst, vlan, etype in sniffed(proc)
                            if etype == TEST_TYPE})
    return out


def send(host, port: str, dst: str, vlan: int = 0) -> None:
    send_frames(host, host.name(port), "eth0", dst, MACS[port], vlan)


def test_vlan_isolation_on_the_wire(vlans):
    h = vlans
    assert [p["vlan_mode"] for p in h.json("list-ports", "br0")] == [
        "access:10", "access:20", "access:10", "trunk:10,20"]
    assert h.ping(h.name("a10"), IPS["b10"])
    assert not h.ping(h.name("a10"), IPS["a20"], count=1)  # same subnet, other VLAN

    # flood from an access port: untagged to its VLAN, tagged 10 on the trunk, nothing to 20
    got = seen(h, lambda: send(h, "a10", BCAST))
    assert got == {"a10": [], "b10": [(MACS["a10"], 0)], "a20": [],
                   "tr": [(MACS["a10"], 10)]}, got
    # flood from the trunk: per tag, untagged at the access ports; unknown VLANs go nowhere
    got = seen(h, lambda: send(h, "tr", BCAST, vlan=20))
    assert got == {"a10": [], "b10": [], "a20": [(MACS["tr"], 0)], "tr": []}, got
    got = seen(h, lambda: (send(h, "tr", BCAST, vlan=30), send(h, "tr", BCAST)))
    assert got == {"a10": [], "b10": [], "a20": [], "tr": []}, got
    got = seen(h, lambda: send(h, "tr", BCAST, vlan=10))
    assert got == {"a10": [(MACS["tr"], 0)], "b10": [(MACS["tr"], 0)], "a20": [],
                   "tr": []}, got

    # known unicast: the trunk's MAC was learned in VLAN 10 only -> tagged 10, to it alone
    fdb = {(e["mac"], e["vlan"]): e["port"] for e in h.json("dump-fdb", "br0")}
    assert fdb.get((MACS["tr"], 10)) == "tr" and fdb.get((MACS["tr"], 20)) == "tr", fdb
    got = seen(h, lambda: send(h, "a10", MACS["tr"]))
    assert got == {"a10": [], "b10": [], "a20": [], "tr": [(MACS["a10"], 10)]}, got
    # a20's MAC is known in VLAN 20 only: from VLAN 10 it is unknown unicast, flooded in 10
    send(h, "a20", BCAST)
    got = seen(h, lambda: send(h, "a10", MACS["a20"]))
    assert got == {"a10": [], "b10": [(MACS["a10"], 0)], "a20": [],
                   "tr": [(MACS["a10"], 10)]}, got

    # native VLAN: untagged frames on the trunk belong to 20 and leave it untagged
    h.vswctl("set-port", "br0", "tr", "--trunks", "10,20", "--native-vlan", "20")
    got = seen(h, lambda: send(h, "tr", BCAST))
    assert got == {"a10": [], "b10": [], "a20": [(MACS["tr"], 0)], "tr": []}, got
    got = seen(h, lambda: send(h, "a20", BCAST))
    assert got["tr"] == [(MACS["a20"], 0)] and got["a10"] == got["b10"] == [], got


def test_port_moved_between_vlans_at_run_time(vlans):
    h = vlans
    a10 = h.name("a10")
    assert not h.ping(a10, IPS["a20"], count=1)
    h.vswctl("set-port", "br0", "a20", "--vlan", "10")
    assert h.json("list-ports", "br0")[1]["vlan_mode"] == "access:10"
    h.run_in(a10, "ip", "neigh", "flush", "all")  # its failed ARP would answer for ~1 s
    assert h.ping(a10, IPS["a20"]), h.log()[-2000:]
    got = seen(h, lambda: send(h, "a20", BCAST))
    assert got["tr"] == [(MACS["a20"], 10)] and got["a10"] == [(MACS["a20"], 0)], got
    h.vswctl("set-port", "br0", "a20", "--vlan", "20")
    h.run_in(a10, "ip", "neigh", "flush", "all")
    assert not h.ping(a10, IPS["a20"], count=1)
    # a restart keeps the VLAN settings in the datapath
    h.stop()
    h.start()
    assert h.ping(a10, IPS["b10"]) and not h.ping(a10, IPS["a20"], count=1)
    h.vswctl("set-port", "br0", "a20", "--no-vlan")
    assert h.json("list-ports", "br0")[1]["vlan_mode"] == "all"
