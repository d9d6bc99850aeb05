"""The two host topologies end to end with the real daemon: containers behind a NAT gateway,
and VMs and containers bridged onto a LAN through an uplink NIC (whose addresses and routes
move to the bridge and back while the host keeps pinging through it); plus their bad input.

The "outside" and the "LAN" are namespaces on the far side of veth pairs from the test host.
"""

from __future__ import annotations

import grpc
import pytest

from tests.netns.harness import HERE, SYSTEM_PYTHON
from tests.netns.topo import (
    PingLoop,
    addresses,
    ip,
    mac,
    new_ns,
    nft_ruleset,
    routes,
    tcp_connect,
    tcp_server,
    wire,
)
from vswapi import switch_pb2 as pb
from vswapi.client import connect

pytestmark = pytest.mark.root

DATAPATHS = ["ebpf", "kernel"]
VM_MAC = "52:54:00:60:00:50"


# ---- containers behind a NAT gateway -------------------------------------------------------

@pytest.mark.parametrize("datapath", DATAPATHS)
def test_containers_behind_nat(host, datapath):
    host.start()
    out = new_ns(host, "out")
    # the outside knows only its own link: replies reach the containers only through NAT
    wire(host, out, "hx0", "ox0", ("10.200.0.1/24",), ("10.200.0.2/24",))
    host.vswctl("add-br", "br0", "--datapath", datapath, "--ip", "10.9.0.1/24", "--nat")
    c1, c2 = host.name("c1"), host.name("c2")
    host.vswctl("add-port", "br0", "c1", "--netns", c1, "--ip", "10.9.0.2/24",
                "--gateway", "10.9.0.1")
    host.vswctl("add-port", "br0", "c2", "--netns", c2, "--ip", "10.9.0.3/24",
                "--gateway", "10.9.0.1")
    assert "default dev eth0 via 10.9.0.1" in routes(c1)
    assert "nat: masquerade" in host.vswctl("show").stdout
    assert host.json("list-br")[0]["nat"] is True

    assert host.ping(c1, "10.200.0.2"), host.log()[-2000:]
    srv = tcp_server(host, out, 8080)
    assert tcp_connect(host, c1, "10.200.0.2", 8080) == "peer=10.200.0.1"  # the host's address
    assert srv.stdout.readline().strip() == "peer=10.200.0.1"
    assert host.ping(c2, "10.9.0.2")  # containers still talk directly, not NATed
    rules = nft_ruleset(host.ns)
    assert 'comment "vswitchd:br0"' in rules and "10.9.0.0/24" in rules, rules

    # NAT off at run time: the outside cannot answer any more; on again: it can
    host.vswctl("set-br", "br0", "--no-nat")
    assert "vswitchd" not in nft_ruleset(host.ns)
    assert not host.ping(c1, "10.200.0.2", count=1)
    host.vswctl("set-br", "br0", "--nat")
    assert host.ping(c1, "10.200.0.2")

    # a restart restores a rule that disappeared while the daemon was down
    host.stop()
    ip("netns", "exec", host.ns, "nft", "delete", "table", "ip", "vswitchd_nat")
    host.start()
    assert "vswitchd:br0" in nft_ruleset(host.ns)
    assert host.ping(c1, "10.200.0.2")

    host.vswctl("del-br", "br0")
    assert "vswitchd" not in nft_ruleset(host.ns)
    assert not [r for r in routes(host.ns) if "10.9.0" in r], routes(host.ns)


# ---- VMs and containers bridged onto the LAN through an uplink ------------------------------

def lan_setup(host):
    """up0 (the 'NIC', 10.60.0.1/24 + fd60::1/64 and a route to 10.61.0.0/24 via the LAN
    router) and its far end in the LAN namespace (10.60.0.2, 10.61.0.1 on lo)."""
    lan = new_ns(host, "lan")
    wire(host, lan, "up0", "lan0", ("10.60.0.1/24", "fd60::1/64"),
         ("10.60.0.2/24", "fd60::2/64"))
    ip("-n", lan, "addr", "add", "10.61.0.1/24", "dev", "lo")
    ip("-n", host.ns, "route", "add", "10.61.0.0/24", "via", "10.60.0.2", "metric", "7")
    return lan


def host_reaches_lan(host) -> list[str]:
    return [a for a in ("10.60.0.2", "10.61.0.1", "fd60::2") if not host.ping(host.ns, a)]


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_vm_and_container_bridged_onto_lan_through_uplink(host, datapath):
    host.start()
    lan_setup(host)
    up0_mac = mac(host.ns, "up0")
    host.vswctl("add-br", "br0", "--datapath", datapath)
    br_mac = mac(host.ns, "br0")
    assert host_reaches_lan(host) == []

    loop = PingLoop(host.ns, "10.61.0.1")
    host.vswctl("add-port", "br0", "up0", "--type", "system", "--uplink")
    sent, received = loop.stop()
    print(f"[{datapath}] add-port --uplink: {sent - received} of {sent} pings lost "
          "(10 ms interval)")
    assert sent - received <= 5, (sent, received)

    assert addresses(host.ns, "br0") == {"10.60.0.1/24", "fd60::1/64"}
    assert addresses(host.ns, "up0") == set()
    assert mac(host.ns, "br0") == up0_mac  # the LAN's neighbour caches stay right
    assert "10.61.0.0/24 dev br0 via 10.60.0.2" in routes(host.ns)
    assert host_reaches_lan(host) == []
    port = host.json("list-ports", "br0")[0]
    assert port["uplink"] is True
    assert set(port["uplink_addresses"]) == {"10.60.0.1/24", "fd60::1/64"}

    # a VM (a process holding the TAP) and a container, both with LAN addresses
    host.vswctl("add-port", "br0", "vm0", "--type", "tap", "--owner", "root", "--multi-queue")
    res = host.run_in(host.ns, SYSTEM_PYTHON, str(HERE / "vmstub.py"), "--tap", "vm0",
                      "--mac", VM_MAC, "--ip", "10.60.0.50", "--ping", "10.60.0.2",
                      "--multi-queue")
    assert res.returncode == 0, res.stdout + res.stderr + host.log()[-2000:]
    c1 = host.name("c1")
    host.vswctl("add-port", "br0", "c1", "--netns", c1, "--ip", "10.60.0.51/24",
                "--gateway", "10.60.0.2")
    assert host.ping(c1, "10.60.0.2") and host.ping(c1, "10.61.0.1")
    fdb = {e["mac"]: e["port"] for e in host.json("dump-fdb", "br0")}
    assert fdb.get(mac(lan_ns(host), "lan0")) == "up0", fdb

    # a restart keeps the host's configuration on the bridge
    host.stop()
    host.start()
    assert addresses(host.ns, "br0") == {"10.60.0.1/24", "fd60::1/64"}
    assert mac(host.ns, "br0") == up0_mac
    assert host_reaches_lan(host) == []

    loop = PingLoop(host.ns, "10.61.0.1")
    host.vswctl("del-port", "br0", "up0")
    sent, received = loop.stop()
    print(f"[{datapath}] del-port of the uplink: {sent - received} of {sent} pings lost")
    assert sent - received <= 5, (sent, received)
    assert addresses(host.ns, "up0") == {"10.60.0.1/24", "fd60::1/64"}
    assert addresses(host.ns, "br0") == set()
    assert mac(host.ns, "br0") == br_mac
    assert "10.61.0.0/24 dev up0 via 10.60.0.2" in routes(host.ns)
    assert host_reaches_lan(host) == []

    # del-br with the uplink attached gives the NIC its addresses back too
    host.vswctl("add-port", "br0", "up0", "--type", "system", "--uplink")
    host.vswctl("del-br", "br0")
    assert addresses(host.ns, "up0") == {"10.60.0.1/24", "fd60::1/64"}
    assert host_reaches_lan(host) == []


def lan_ns(host) -> str:
    return host.name("lan")


# ---- bad input -------------------------------------------------------------------------------

def refused(host, *args, code="INVALID_ARGUMENT", says=""):
    before = (host.links(), host.namespaces(), host.json("list-br"))
    res = host.vswctl(*args, check=False)
    assert res.returncode == 2, (args, res.returncode, res.stdout, res.stderr)
    assert code in res.stderr and says in res.stderr, res.stderr
    assert (host.links(), host.namespaces(), host.json("list-br")) == before, args
    return res.stderr


def refused_rpc(host, port: pb.Port, code: grpc.StatusCode, says: str) -> None:
    client = connect(socket_path=host.socket)
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.stub.CreatePort(pb.CreatePortRequest(port=port), timeout=10)
    finally:
        client.close()
    assert err.value.code() == code and says in err.value.details(), err.value.details()


def test_topology_bad_input(host):
    host.start()
    host.vswctl("add-br", "br0", "--datapath", "kernel", "--ip", "10.9.0.1/24")
    other = new_ns(host, "oth")
    wire(host, other, "e1", "e1peer")
    ip("-n", host.ns, "link", "add", "other0", "type", "bridge")
    ip("-n", host.ns, "link", "set", "e1", "master", "other0")

    refused(host, "add-port", "br0", "nope0", "--type", "system", "--uplink", code="NOT_FOUND",
            says="nope0 does not exist")
    refused(host, "add-port", "br0", "e1", "--type", "system", "--uplink",
            code="FAILED_PRECONDITION", says="already enslaved to other0")
    refused(host, "add-port", "br0", "t0", "--type", "tap", "--uplink",
            says="applies only to system ports")
    refused(host, "add-port", "br0", "c1", "--netns", host.name("c1"), "--ip", "10.9.0.2/24",
            "--gateway", "10.8.0.1", says="outside the port's subnets (10.9.0.0/24)")
    refused(host, "add-port", "br0", "c1", "--netns", host.name("c1"), "--gateway", "10.9.0.1",
            says="the port has no --ip")
    refused(host, "add-br", "br1", "--ip", "10.9.0.77/16",
            says="overlaps 10.9.0.1/24 of bridge br0")
    refused(host, "add-br", "br1", "--nat", says="needs an IPv4 address")
    refused(host, "add-port", "br0", "c1", "--netns", host.name("c1"), "--vlan", "10",
            code="FAILED_PRECONDITION", says="kernel datapath")
    # VLAN ids: vswctl checks them itself (usage error, exit 1) ...
    res = host.vswctl("add-port", "br0", "c1", "--vlan", "4095", check=False)
    assert res.returncode == 1 and "out of range 1..4094" in res.stderr, res.stderr
    # ... and so does the daemon, for any client
    bad = grpc.StatusCode.INVALID_ARGUMENT
    refused_rpc(host, pb.Port(bridge="br0", name="c1", vlan=4095), bad, "vlan 4095")
    refused_rpc(host, pb.Port(bridge="br0", name="c1", trunks=[10, 0]), bad, "trunks 0")
    refused_rpc(host, pb.Port(bridge="br0", name="c1", trunks=[5000]), bad, "trunks 5000")
    refused_rpc(host, pb.Port(bridge="br0", name="c1", native_vlan=5), bad,
                "applies only to trunk ports")
    refused_rpc(host, pb.Port(bridge="br0", name="c1", vlan=5, trunks=[6]), bad,
                "cannot be combined with vlan 5")
    assert not (host.links() & {"c1", "t0"})
