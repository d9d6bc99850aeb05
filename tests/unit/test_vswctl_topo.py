"""vswctl for the host topologies against the fake daemon of test_vswctl: VLAN, NAT, gateway,
uplink and multi-queue options, set-port / set-br, and how list-ports and show print them."""

from __future__ import annotations

from test_vswctl import daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb


def test_add_port_vlan_options(daemon):  # noqa: F811
    daemon.fake.responses["CreatePort"] = pb.Port(name="p1")
    rc, _, err = daemon.run("add-port", "br0", "p1", "--trunks", "10,20,30-32",
                            "--native-vlan", "5")
    assert (rc, err) == (0, "")
    port = daemon.fake.only("CreatePort").port
    assert (list(port.trunks), port.native_vlan, port.vlan) == ([10, 20, 30, 31, 32], 5, 0)
    daemon.fake.requests.clear()
    assert daemon.run("add-port", "br0", "p1", "--vlan", "10")[0] == 0
    assert daemon.fake.only("CreatePort").port.vlan == 10


def test_vlan_usage_errors(daemon):  # noqa: F811
    for args, says in ((["--vlan", "4095"], "out of range 1..4094"),
                       (["--vlan", "0"], "out of range 1..4094"),
                       (["--trunks", "10,x"], "'x' is not a number"),
                       (["--trunks", "20-10"], "backwards"),
                       (["--vlan", "10", "--trunks", "20"], "not allowed with")):
        rc, out, err = daemon.run("add-port", "br0", "p1", *args)
        assert rc == 1 and says in err, (args, err)
    assert daemon.fake.requests == []  # nothing was sent


def test_add_port_gateway_uplink_multi_queue(daemon):  # noqa: F811
    daemon.fake.responses["CreatePort"] = pb.Port(name="x")
    daemon.run("add-port", "br0", "c1", "--ip", "10.9.0.2/24", "--gateway", "10.9.0.1")
    daemon.run("add-port", "br0", "up0", "--type", "system", "--uplink")
    daemon.run("add-port", "br0", "vm0", "--type", "tap", "--owner", "root", "--multi-queue")
    c1, up0, vm0 = (r.port for _, r in daemon.fake.requests)
    assert c1.gateway == "10.9.0.1" and up0.uplink and up0.type == pb.PORT_TYPE_SYSTEM
    assert vm0.multi_queue and vm0.owner == "root"


def test_add_br_nat_and_set_br(daemon):  # noqa: F811
    daemon.fake.responses["CreateBridge"] = pb.Bridge(name="br0")
    daemon.fake.responses["UpdateBridge"] = pb.Bridge(name="br0")
    daemon.run("add-br", "br0", "--ip", "10.9.0.1/24", "--nat")
    assert daemon.fake.only("CreateBridge").bridge.nat is True
    daemon.fake.requests.clear()
    assert daemon.run("set-br", "br0", "--no-nat")[0] == 0
    req = daemon.fake.only("UpdateBridge")
    assert (req.bridge.name, req.bridge.nat, list(req.update_mask.paths)) == (
        "br0", False, ["nat"])
    daemon.fake.requests.clear()
    assert daemon.run("set-br", "br0", "--ip", "10.8.0.1/24", "--ip", "fd00::1/64")[0] == 0
    req = daemon.fake.only("UpdateBridge")
    assert (list(req.bridge.addresses), list(req.update_mask.paths)) == (
        ["10.8.0.1/24", "fd00::1/64"], ["addresses"])
    daemon.fake.requests.clear()
    assert daemon.run("set-br", "br0", "--no-ip", "--nat")[0] == 0
    req = daemon.fake.only("UpdateBridge")
    assert (list(req.bridge.addresses), req.bridge.nat, list(req.update_mask.paths)) == (
        [], True, ["addresses", "nat"])
    daemon.fake.requests.clear()
    rc, _, err = daemon.run("set-br", "br0")
    assert rc == 1 and "one of the arguments --ip --no-ip --nat --no-nat" in err
    rc, _, err = daemon.run("set-br", "br0", "--ip", "10.8.0.1/24", "--no-ip")
    assert rc == 1 and daemon.fake.requests == []


def test_set_port_sends_the_whole_vlan_mode(daemon):  # noqa: F811
    daemon.fake.responses["UpdatePort"] = pb.Port(name="p1", vlan=20)
    rc, out, err = daemon.run("set-port", "br0", "p1", "--vlan", "20")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("UpdatePort")
    assert (req.port.bridge, req.port.name, req.port.vlan, list(req.port.trunks)) == (
        "br0", "p1", 20, [])
    assert sorted(req.update_mask.paths) == ["native_vlan", "trunks", "vlan"]
    daemon.fake.requests.clear()
    assert daemon.run("set-port", "br0", "p1", "--no-vlan")[0] == 0
    assert daemon.fake.only("UpdatePort").port.vlan == 0
    rc, _, err = daemon.run("set-port", "br0", "p1")
    assert rc == 1 and ("one of the arguments --vlan --trunks --no-vlan --xdp --remote "
                        "--no-remotes is required") in err


def test_list_ports_and_show_print_vlan_mode(daemon):  # noqa: F811
    ports = [pb.Port(name="a1", bridge="br0", vlan=10, state="up"),
             pb.Port(name="t1", bridge="br0", trunks=[20, 10], native_vlan=5, state="up"),
             pb.Port(name="up0", bridge="br0", type=pb.PORT_TYPE_SYSTEM, uplink=True,
                     uplink_addresses=["192.168.1.10/24"], state="up")]
    daemon.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=ports)
    _, out, _ = daemon.run("list-ports", "br0")
    vlan_col = {line.split()[0]: line.split()[4] for line in out.splitlines()[1:]}
    assert vlan_col == {"a1": "access:10", "t1": "trunk:10,20/native:5", "up0": "all"}
    assert daemon.json("list-ports", "br0")[1]["trunks"] == [10, 20]
    daemon.fake.responses["ListBridges"] = pb.ListBridgesResponse(bridges=[
        pb.Bridge(name="br0", datapath=pb.DATAPATH_EBPF, addresses=["10.9.0.1/24"], nat=True,
                  ports=ports)])
    _, out, _ = daemon.run("show")
    for line in ("    nat: masquerade", "        vlan: access:10",
                 "        vlan: trunk:10,20/native:5", "        type: system (uplink)",
                 "        host addresses on the bridge: 192.168.1.10/24"):
        assert line in out.splitlines(), out
