"""The bridge's own MAC with the real daemon and kernel: made at creation, kept when ports go
(the containers' ARP caches stay right), never zeros, and the same after a restart (set back if
it was changed, re-made with the bridge)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.root

NETS = {"br0": "10.83.0", "kbr": "10.84.0"}  # an eBPF and a kernel bridge


def macs(h) -> dict[str, str]:
    return {b["name"]: b["mac"] for b in h.json("list-br")}


def link_mac(h, name: str) -> str:
    """What the kernel says (not what the daemon says)."""
    res = h.run_in(h.ns, "ip", "-j", "link", "show", "dev", name)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[0]["address"]


def test_the_bridge_mac_stays_when_ports_go_and_across_restarts(host):
    h = host
    h.start()
    h.vswctl("add-br", "br0", "--ip", f"{NETS['br0']}.1/24")
    h.vswctl("add-br", "kbr", "--datapath", "kernel", "--ip", f"{NETS['kbr']}.1/24")
    own = macs(h)
    for br, mac in own.items():
        assert int(mac[:2], 16) & 0x03 == 0x02, mac  # locally administered unicast
        assert link_mac(h, br) == mac
        net = NETS[br]
        for name, last in (("a", 11), ("b", 12)):
            h.vswctl("add-port", br, f"{br}{name}", "--netns", h.name(f"{br}{name}"), "--ip",
                     f"{net}.{last}/24", "--mac", f"02:00:00:00:00:{last:02x}")
        assert h.ping(h.name(f"{br}a"), f"{net}.1") and h.ping(h.name(f"{br}b"), f"{net}.1")
        h.vswctl("del-port", br, f"{br}b")
        assert link_mac(h, br) == mac
        # the container's neighbour entry for its gateway is still right: no re-ARP needed
        assert h.ping(h.name(f"{br}a"), f"{net}.1")
        h.vswctl("del-port", br, f"{br}a")
        assert link_mac(h, br) == mac != "00:00:00:00:00:00"  # no ports: still its own
        h.vswctl("add-port", br, f"{br}a", "--netns", h.name(f"{br}a"), "--ip",
                 f"{net}.11/24")
    assert macs(h) == own
    # across a restart; a MAC changed behind the daemon's back is set back, a bridge that
    # went is re-made with its MAC
    h.stop()
    for cmd in (("set", "br0", "address", "02:77:00:00:00:77"), ("del", "kbr")):
        assert h.run_in(h.ns, "ip", "link", *cmd).returncode == 0, cmd
    h.start()
    assert macs(h) == own and {br: link_mac(h, br) for br in own} == own
    for br, net in NETS.items():
        assert h.ping(h.name(f"{br}a"), f"{net}.1"), br


def test_a_container_cannot_take_the_gateway_mac(host):
    """A container that sets its MAC to the bridge's and sends: its frames are dropped as
    host-mac-spoof (counted), the FDB keeps the MAC on the bridge, the other containers still
    reach the gateway, and trace says where the gateway's frames go."""
    h = host
    h.start()
    net = "10.85.0"
    h.vswctl("add-br", "br0", "--ip", f"{net}.1/24")
    for name, last in (("c1", 11), ("c2", 12)):
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip", f"{net}.{last}/24")
    gw = macs(h)["br0"]
    assert h.ping(h.name("c1"), f"{net}.1")
    c2 = h.name("c2")
    for cmd in (("link", "set", "eth0", "down"), ("link", "set", "eth0", "address", gw),
                ("link", "set", "eth0", "up")):
        assert h.run_in(c2, "ip", *cmd).returncode == 0, cmd
    h.ping(c2, f"{net}.11")  # fails: its frames are dropped
    fdb = {(e["mac"], e["vlan"]): e["port"] for e in h.json("dump-fdb", "br0")}
    assert fdb[(gw, 0)] == "br0"
    drops = {(d["port"], d["reason"]): d["count"] for d in h.json("drops", "br0")}
    assert drops.get(("c2", "host-mac-spoof"), 0) >= 1, drops
    trace = h.json("trace", "br0", f"in_port=c1,dl_dst={gw},icmp,nw_dst={net}.1")
    assert trace["outputs"] == ["br0"], trace
    assert h.ping(h.name("c1"), f"{net}.1")
