"""VXLAN tunnel ports: hosts (namespaces, each with its own vswitchd) joined by an underlay, their
bridges sharing segments over VXLAN, configured statically (remote VTEPs given to vswctl).
The cluster agent's tests are in tests/cluster."""

from __future__ import annotations

import json

import pytest

from tests.netns.overlay import Overlay
from tests.netns.topo import send_frames, sniffed, sniffer, tcp_connect, tcp_server

pytestmark = pytest.mark.root

BROADCAST = "ff:ff:ff:ff:ff:ff"
ETHERTYPE_TEST = 0x88B5


def running_overlay(tmp_path, request, count: int):
    o = Overlay(tmp_path, count)
    try:
        o.start()
        yield o
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            for h in o.hosts:
                print(f"---- vswitchd log ({h.tag}) ----\n{h.log()[-6000:]}")
        o.cleanup()


@pytest.fixture
def overlay3(tmp_path, request):
    yield from running_overlay(tmp_path, request, 3)


@pytest.fixture
def overlay2(tmp_path, request):
    yield from running_overlay(tmp_path, request, 2)


def fdb(host, bridge: str) -> dict[str, dict]:
    return {e["mac"]: e for e in host.json("dump-fdb", bridge)}


def broadcast_copies(o: Overlay, vni: int, sender: int) -> dict[int, int]:
    """Three test broadcasts from host SENDER's container: how many each other host's container
    received."""
    snoops = {i: sniffer(h, h.name(f"c{vni}"), "eth0", 3.0)
              for i, h in enumerate(o.hosts, 1) if i != sender}
    h = o.hosts[sender - 1]
    send_frames(h, h.name(f"c{vni}"), "eth0", BROADCAST, o.mac(vni, sender), 0, 3)
    src = o.mac(vni, sender)
    return {i: sum(1 for f in sniffed(p) if f[0] == src and f[3] == ETHERTYPE_TEST)
            for i, p in snoops.items()}


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_three_hosts_share_a_segment(overlay3, datapath):
    o = overlay3
    o.segment("br0", 100, "192.168.100", datapath)
    h1, h2, h3 = o.hosts
    c1 = h1.name("c100")
    assert h1.ping(c1, "192.168.100.2") and h1.ping(c1, "192.168.100.3")
    assert h2.ping(h2.name("c100"), "192.168.100.3")
    # TCP across the tunnel: the server sees the container's own address
    server = tcp_server(h3, h3.name("c100"), 5001)
    assert tcp_connect(h1, c1, "192.168.100.3", 5001) == "peer=192.168.100.1"
    server.wait(10)
    # the MACs learned over the tunnel, with the VTEP they are behind
    for h in (h2, h3):
        entry = fdb(h, "br0")[o.mac(100, 1)]
        assert entry["port"] == "vx100" and entry["remote"] == o.vtep(1), entry
        assert not entry["static"]
    # broadcast: every other host's container gets each frame once (head-end replication,
    # never back into the tunnel)
    assert broadcast_copies(o, 100, 1) == {2: 3, 3: 3}
    vteps = h1.json("list-vteps", "br0")
    assert sorted(v["address"] for v in vteps) == [o.vtep(2), o.vtep(3)]
    assert {v["vni"] for v in vteps} == {100}


def test_ebpf_tunnel_counts_and_trace(overlay2):
    o = overlay2
    o.segment("br0", 100, "192.168.100")
    h1, h2 = o.hosts
    assert h1.ping(h1.name("c100"), "192.168.100.2", count=5)
    stats = {s["port"]: s for s in h1.json("port-stats", "br0")}
    assert stats["vx100"]["tx_packets"] >= 5 and stats["vx100"]["rx_packets"] >= 5
    # the trace of a frame to the remote container names the tunnel key it would set
    trace = h1.vswctl("trace", "br0", f"in_port=c100,dl_src={o.mac(100, 1)},"
                      f"dl_dst={o.mac(100, 2)}").stdout
    assert "vx100" in trace and o.vtep(2) in trace and "100" in trace, trace


def test_vni_isolates_tenants(overlay2):
    """Two tenants with the same subnet on two VNIs: each reaches its own containers only."""
    o = overlay2
    o.segment("br0", 100, "192.168.7")
    o.segment("br1", 200, "192.168.7")
    h1, h2 = o.hosts
    assert h1.ping(h1.name("c100"), "192.168.7.2")
    assert h1.ping(h1.name("c200"), "192.168.7.2")
    # tenant 100's MAC is known on br0 only; tenant 200's frames never reach c100
    assert broadcast_copies(o, 200, 1) == {2: 3}
    assert o.mac(200, 1) not in fdb(h2, "br0")
    assert fdb(h2, "br1")[o.mac(200, 1)]["remote"] == o.vtep(1)
    snoop = sniffer(h2, h2.name("c100"), "eth0", 2.0)
    send_frames(h1, h1.name("c200"), "eth0", BROADCAST, o.mac(200, 1), 0, 3)
    assert not [f for f in sniffed(snoop) if f[0] == o.mac(200, 1)]


def test_static_remote_fdb_and_vteps_at_run_time(overlay2):
    o = overlay2
    o.segment("br0", 100, "192.168.100", remotes=False)
    h1, h2 = o.hosts
    c1 = h1.name("c100")
    # no VTEP: a broadcast goes nowhere (a ping would leave the neighbour entry failed)
    assert broadcast_copies(o, 100, 1) == {2: 0}
    h1.vswctl("add-vtep", "br0", "vx100", o.vtep(2))
    h2.vswctl("set-port", "br0", "vx100", "--remote", o.vtep(1))
    assert h1.ping(c1, "192.168.100.2")
    h1.vswctl("add-fdb", "br0", "02:aa:00:00:00:01", "vx100", "--remote", o.vtep(2))
    entry = fdb(h1, "br0")["02:aa:00:00:00:01"]
    assert entry["static"] and entry["remote"] == o.vtep(2) and entry["port"] == "vx100"
    h1.vswctl("del-vtep", "br0", "vx100", o.vtep(2))
    assert h1.json("list-vteps", "br0", "vx100") == []
    # a restart keeps the tunnel, its VTEPs and static entries
    h1.vswctl("add-vtep", "br0", "vx100", o.vtep(2))
    h1.stop()
    h1.start()
    assert h1.ping(c1, "192.168.100.2")
    assert fdb(h1, "br0")["02:aa:00:00:00:01"]["remote"] == o.vtep(2)


def test_tunnel_bad_input_leaves_nothing(overlay2):
    o = overlay2
    h1, _h2 = o.hosts
    h1.vswctl("add-br", "br0")
    h1.vswctl("add-br", "br1")

    def refused(*args: str) -> str:
        res = h1.vswctl("add-port", *args, check=False)
        assert res.returncode != 0, res.stdout
        return res.stderr

    vx = ("--type", "vxlan", "--local", o.vtep(1))
    assert "16777215" in refused("br0", "vx0", *vx, "--vni", "0")
    assert "16777215" in refused("br0", "vx0", *vx, "--vni", "16777216")
    assert "not an address of this host" in refused("br0", "vx0", "--type", "vxlan",
                                                    "--vni", "5", "--local", "10.77.0.99")
    assert "unicast address" in refused("br0", "vx0", *vx, "--vni", "5", "--remote",
                                        "127.0.0.1")
    assert "this host itself" in refused("br0", "vx0", "--type", "vxlan", "--vni", "5",
                                         "--remote", o.vtep(1))
    assert "applies only to" in refused("br0", "c0", "--vni", "5")
    h1.vswctl("add-port", "br0", "vx5", *vx, "--vni", "5")
    assert "VNI 5 is already used by port vx5 of bridge br0" in refused("br1", "vx6", *vx,
                                                                        "--vni", "5")
    assert "already has a tunnel port" in refused("br0", "vx7", *vx, "--vni", "7")
    links = h1.links()
    assert "vx6" not in links and "vx7" not in links and "vx0" not in links
    assert [p["name"] for p in h1.json("list-ports", "br1")] == []
    # remote FDB entries name a VTEP on tunnel ports only
    res = h1.vswctl("add-fdb", "br0", "02:aa:00:00:00:01", "vx5", check=False)
    assert res.returncode != 0 and "remote" in res.stderr
    res = h1.vswctl("add-vtep", "br0", "vx5", "300.1.1.1", check=False)
    assert res.returncode != 0 and "not an IP address" in res.stderr


def test_tunnel_mtu(overlay2):
    """Ports of a bridge with a tunnel get the underlay's MTU less the VXLAN header."""
    o = overlay2
    h1, _h2 = o.hosts
    h1.vswctl("add-br", "br0")
    h1.vswctl("add-port", "br0", "vx9", "--type", "vxlan", "--vni", "9", "--local", o.vtep(1))
    ports = {p["name"]: p for p in h1.json("list-ports", "br0")}
    assert ports["vx9"]["mtu"] == 1450
    h1.vswctl("add-port", "br0", "c1", "--netns", h1.name("c1"))
    assert {p["name"]: p for p in h1.json("list-ports", "br0")}["c1"]["mtu"] == 1450
    res = h1.run_in(h1.name("c1"), "ip", "-j", "link", "show", "dev", "eth0")
    assert json.loads(res.stdout)[0]["mtu"] == 1450  # the container's end too
    res = h1.vswctl("add-port", "br0", "c2", "--netns", h1.name("c2"), "--mtu", "1500",
                    check=False)
    assert res.returncode != 0 and "1450" in res.stderr
    # a tunnel added after a port with a bigger MTU is refused, saying what to do
    h1.vswctl("add-br", "br1")
    h1.vswctl("add-port", "br1", "c3", "--netns", h1.name("c3"))
    res = h1.vswctl("add-port", "br1", "vx10", "--type", "vxlan", "--vni", "10", check=False)
    assert res.returncode != 0 and "c3 (1500)" in res.stderr
    assert "vx10" not in h1.links()
