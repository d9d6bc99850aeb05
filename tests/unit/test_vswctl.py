"""vswctl end to end against an in-process fake vswitchd (a real gRPC server on a Unix socket).

The fake records every request and answers with canned responses, or aborts with a given status
code, so these tests check argument -> request mapping, output rendering and exit codes of the
real `main(argv)` without root, bcc or a daemon.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from concurrent import futures

import grpc
import pytest

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc
from vswctl.main import main

SERVICE = pb.DESCRIPTOR.services_by_name["Switch"]


class FakeSwitch(switch_pb2_grpc.SwitchServicer):
    """Records (rpc name, request); returns `responses[rpc]` or aborts with `errors[rpc]`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []
        self.responses: dict[str, object] = {}
        self.errors: dict[str, tuple[grpc.StatusCode, str]] = {}
        self.delay: dict[str, float] = {}

    def handle(self, name: str, request, context):
        self.requests.append((name, request))
        if name in self.delay:
            time.sleep(self.delay[name])
        if name in self.errors:
            code, message = self.errors[name]
            context.abort(code, message)
        if name in self.responses:
            return self.responses[name]
        return getattr(pb, SERVICE.methods_by_name[name].output_type.name)()

    def only(self, name: str):
        """The one request the CLI sent, which must be `name`."""
        assert [n for n, _ in self.requests] == [name]
        return self.requests[0][1]


for _method in SERVICE.methods:
    setattr(FakeSwitch, _method.name,
            lambda self, request, context, _n=_method.name: self.handle(_n, request, context))


class Daemon:
    def __init__(self, fake: FakeSwitch, sock: str, capsys) -> None:
        self.fake = fake
        self.socket = sock
        self._capsys = capsys

    def run(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        rc = main(["--socket", self.socket, *argv])
        out, err = self._capsys.readouterr()
        return rc, out, err

    def json(self, *argv: str):
        rc, out, err = self.run("-j", *argv)
        assert (rc, err) == (0, "")
        return json.loads(out)


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="vswctl-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def serve(fake, short_dir, capsys, monkeypatch):
    """Serves FAKE (a Switch servicer) on a Unix socket in SHORT_DIR: yields its Daemon."""
    monkeypatch.delenv("VSWITCHD_SOCKET", raising=False)
    sock = os.path.join(short_dir, "vswitchd.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    switch_pb2_grpc.add_SwitchServicer_to_server(fake, server)
    assert server.add_insecure_port(f"unix:{sock}") != 0
    server.start()
    yield Daemon(fake, sock, capsys)
    server.stop(grace=None)


@pytest.fixture
def daemon(short_dir, capsys, monkeypatch):
    yield from serve(FakeSwitch(), short_dir, capsys, monkeypatch)


def starts(line: str) -> list[int]:
    """Offsets at which the fields of a table line start (to check column alignment)."""
    return [m.start() for m in re.finditer(r"\S+", line)]


def veth(name="ctr1-eth", **kw) -> pb.Port:
    fields = dict(name=name, bridge="br0", type=pb.PORT_TYPE_VETH, netns="ctr1",
                  peer_name="eth0", addresses=["10.0.0.2/24"], ifindex=7, state="up")
    fields.update(kw)
    return pb.Port(**fields)


def tap(name="vm1-tap", **kw) -> pb.Port:
    fields = dict(name=name, bridge="br0", type=pb.PORT_TYPE_TAP, owner="qemu", ifindex=9,
                  state="down")
    fields.update(kw)
    return pb.Port(**fields)


# ---------------------------------------------------------------- status

STATUS = pb.Status(version="0.1.0", uptime_seconds=3725.4, ebpf_supported=True,
                   default_datapath=pb.DATAPATH_EBPF, kernel="6.1.0-test", fdb_aging_seconds=300,
                   watch_rate_limit=10000)


def test_status_table(daemon):
    daemon.fake.responses["GetStatus"] = STATUS
    rc, out, err = daemon.run("status")
    assert (rc, err) == (0, "")
    assert [name for name, _ in daemon.fake.requests] == ["GetStatus", "GetPacketInConfig"]
    lines = out.splitlines()
    assert lines[0].split() == ["version:", "0.1.0"]
    assert "uptime:" in out and "1h02m05s" in out
    assert "kernel:" in out and "6.1.0-test" in out
    assert [ln for ln in lines if ln.startswith("default datapath:")][0].endswith(" ebpf")
    assert [ln for ln in lines if ln.startswith("ebpf datapath:")][0].endswith(" supported")
    assert [ln for ln in lines if ln.startswith("fdb aging:")][0].endswith(" 300s")
    assert [ln for ln in lines if ln.startswith("watch rate limit:")][0].endswith(
        " 10000 events/s per CPU")


def test_status_json_and_unsupported_reason(daemon):
    daemon.fake.responses["GetStatus"] = pb.Status(
        version="0.1.0", uptime_seconds=12.5, ebpf_supported=False,
        ebpf_unsupported_reason="bcc not installed", default_datapath=pb.DATAPATH_KERNEL,
        kernel="6.1.0-test", fdb_aging_seconds=300, watch_rate_limit=5)
    data = daemon.json("status")
    assert data == {
        "version": "0.1.0",
        "uptime_seconds": 12.5,
        "kernel": "6.1.0-test",
        "default_datapath": "kernel",
        "ebpf_supported": False,
        "ebpf_unsupported_reason": "bcc not installed",
        "fdb_aging_seconds": 300,
        "watch_rate_limit": 5,
        "packet_in_rate_limit": 0,  # the fake's empty PacketInConfig
        "packet_in": {"sent": 0, "rate_limited": 0, "ring_full": 0, "unwatched": 0},
    }
    rc, out, _ = daemon.run("status")
    assert "unsupported: bcc not installed" in out


# ---------------------------------------------------------------- bridges

def test_add_br_maps_arguments(daemon):
    rc, out, err = daemon.run("add-br", "br0", "--datapath", "kernel", "--ip", "10.0.0.1/24",
                              "--ip", "fd00::1/64", "--may-exist")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("CreateBridge")
    assert req.bridge.name == "br0"
    assert req.bridge.datapath == pb.DATAPATH_KERNEL
    assert list(req.bridge.addresses) == ["10.0.0.1/24", "fd00::1/64"]
    assert req.may_exist is True


def test_add_br_defaults(daemon):
    rc, out, _ = daemon.run("add-br", "br1")
    assert (rc, out) == (0, "")
    req = daemon.fake.only("CreateBridge")
    assert req.bridge.name == "br1"
    assert req.bridge.datapath == pb.DATAPATH_UNSPECIFIED  # the daemon's default
    assert list(req.bridge.addresses) == []
    assert req.may_exist is False


def test_add_br_ebpf_json_prints_created_bridge(daemon):
    daemon.fake.responses["CreateBridge"] = pb.Bridge(
        name="br0", datapath=pb.DATAPATH_EBPF, addresses=["10.0.0.1/24"], ifindex=4,
        mac="02:00:00:00:00:01")
    data = daemon.json("add-br", "br0", "--datapath", "ebpf")
    assert daemon.fake.only("CreateBridge").bridge.datapath == pb.DATAPATH_EBPF
    assert data == {"name": "br0", "datapath": "ebpf", "addresses": ["10.0.0.1/24"],
                    "nat": False, "ifindex": 4, "mac": "02:00:00:00:00:01", "ports": [],
                    "revision": 0}


def test_del_br(daemon):
    daemon.fake.responses["DeleteBridge"] = pb.DeleteBridgeResponse(deleted=True)
    rc, out, err = daemon.run("del-br", "br0", "--if-exists")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("DeleteBridge")
    assert (req.name, req.if_exists) == ("br0", True)
    daemon.fake.requests.clear()
    daemon.fake.responses["DeleteBridge"] = pb.DeleteBridgeResponse(deleted=False)
    assert daemon.json("del-br", "br9") == {"name": "br9", "deleted": False}
    assert daemon.fake.only("DeleteBridge").if_exists is False


BRIDGES = pb.ListBridgesResponse(bridges=[
    pb.Bridge(name="br1", datapath=pb.DATAPATH_KERNEL, ifindex=5, mac="02:00:00:00:00:02"),
    pb.Bridge(name="br0", datapath=pb.DATAPATH_EBPF, addresses=["10.0.0.1/24", "fd00::1/64"],
              ifindex=4, mac="02:00:00:00:00:01", ports=[veth(), tap()]),
])


def test_list_br_table(daemon):
    daemon.fake.responses["ListBridges"] = BRIDGES
    rc, out, err = daemon.run("list-br")
    assert (rc, err) == (0, "")
    assert isinstance(daemon.fake.only("ListBridges"), pb.ListBridgesRequest)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DATAPATH", "IFINDEX", "PORTS", "NAT", "ADDRESSES"]
    assert lines[1].split() == ["br0", "ebpf", "4", "2", "no", "10.0.0.1/24,fd00::1/64"]
    assert lines[2].split() == ["br1", "kernel", "5", "0", "no", "-"]
    # aligned: every column starts at the same offset on each line
    assert starts(lines[0])[:2] == starts(lines[1])[:2] == starts(lines[2])[:2]


def test_list_br_json(daemon):
    daemon.fake.responses["ListBridges"] = BRIDGES
    data = daemon.json("list-br")
    assert [b["name"] for b in data] == ["br0", "br1"]
    assert data[0] == {"name": "br0", "datapath": "ebpf",
                       "addresses": ["10.0.0.1/24", "fd00::1/64"], "nat": False, "ifindex": 4,
                       "mac": "02:00:00:00:00:01", "ports": ["ctr1-eth", "vm1-tap"],
                       "revision": 0}
    assert data[1]["datapath"] == "kernel" and data[1]["ports"] == []


def test_list_br_empty_prints_header_only(daemon):
    rc, out, _ = daemon.run("list-br")
    assert rc == 0 and out.split() == ["NAME", "DATAPATH", "IFINDEX", "PORTS", "NAT", "ADDRESSES"]
    assert daemon.json("list-br") == []


def test_show_tree(daemon):
    daemon.fake.responses["ListBridges"] = BRIDGES
    rc, out, err = daemon.run("show")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "Bridge br0",
        "    datapath: ebpf",
        "    addresses: 10.0.0.1/24, fd00::1/64",
        "    Port ctr1-eth",
        "        type: veth",
        "        state: up",
        "        netns: ctr1 (peer eth0)",
        "        addresses: 10.0.0.2/24",
        "    Port vm1-tap",
        "        type: tap",
        "        state: down",
        "        owner: qemu",
        "Bridge br1",
        "    datapath: kernel",
    ]


def test_show_json_nests_ports(daemon):
    daemon.fake.responses["ListBridges"] = BRIDGES
    data = daemon.json("show")
    assert [b["name"] for b in data] == ["br0", "br1"]
    ports = data[0]["ports"]
    assert [p["name"] for p in ports] == ["ctr1-eth", "vm1-tap"]
    assert ports[0]["type"] == "veth" and ports[0]["netns"] == "ctr1"
    assert ports[0]["ifindex"] == 7 and ports[0]["addresses"] == ["10.0.0.2/24"]
    assert ports[1]["type"] == "tap" and ports[1]["owner"] == "qemu"
    assert data[1]["ports"] == []


def test_show_one_bridge_uses_get_bridge(daemon):
    daemon.fake.responses["GetBridge"] = BRIDGES.bridges[0]
    assert BRIDGES.bridges[0].name == "br1"
    rc, out, _ = daemon.run("show", "br1")
    assert rc == 0
    assert daemon.fake.only("GetBridge").name == "br1"
    assert out == "Bridge br1\n    datapath: kernel\n"


# ---------------------------------------------------------------- ports

def test_add_port_veth_maps_every_field(daemon):
    rc, out, err = daemon.run(
        "add-port", "br0", "ctr1-eth", "--netns", "ctr1", "--peer-name", "eth0",
        "--ip", "10.0.0.2/24", "--ip", "fd00::2/64", "--mac", "02:00:00:00:00:02",
        "--mtu", "1400", "--may-exist")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("CreatePort")
    p = req.port
    assert (p.bridge, p.name, p.type) == ("br0", "ctr1-eth", pb.PORT_TYPE_VETH)
    assert (p.netns, p.peer_name) == ("ctr1", "eth0")
    assert list(p.addresses) == ["10.0.0.2/24", "fd00::2/64"]
    assert (p.mac, p.mtu, p.owner) == ("02:00:00:00:00:02", 1400, "")
    assert req.may_exist is True


def test_add_port_type_default_is_veth(daemon):
    assert daemon.run("add-port", "br0", "p0")[0] == 0
    req = daemon.fake.only("CreatePort")
    assert req.port.type == pb.PORT_TYPE_VETH
    assert (req.port.mtu, req.port.netns, req.may_exist) == (0, "", False)


def test_add_port_tap_and_system(daemon):
    assert daemon.run("add-port", "br0", "vm1-tap", "--type", "tap", "--owner", "qemu")[0] == 0
    assert daemon.run("add-port", "br0", "eth1", "--type", "system")[0] == 0
    (_, tap_req), (_, sys_req) = daemon.fake.requests
    assert (tap_req.port.type, tap_req.port.owner) == (pb.PORT_TYPE_TAP, "qemu")
    assert (sys_req.port.type, sys_req.port.name) == (pb.PORT_TYPE_SYSTEM, "eth1")


def test_add_port_json_prints_created_port(daemon):
    daemon.fake.responses["CreatePort"] = veth(netns_created=True)
    data = daemon.json("add-port", "br0", "ctr1-eth", "--netns", "ctr1")
    assert data["name"] == "ctr1-eth" and data["type"] == "veth"
    assert data["ifindex"] == 7 and data["netns_created"] is True and data["state"] == "up"


def test_del_port(daemon):
    daemon.fake.responses["DeletePort"] = pb.DeletePortResponse(deleted=True)
    rc, out, err = daemon.run("del-port", "br0", "ctr1-eth", "--if-exists")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("DeletePort")
    assert (req.bridge, req.name, req.if_exists) == ("br0", "ctr1-eth", True)


PORTS = pb.ListPortsResponse(ports=[
    tap(),
    veth(),
    pb.Port(name="eth1", bridge="br0", type=pb.PORT_TYPE_SYSTEM, ifindex=2, state="up"),
])


def test_list_ports_table(daemon):
    daemon.fake.responses["ListPorts"] = PORTS
    rc, out, err = daemon.run("list-ports", "br0")
    assert (rc, err) == (0, "")
    assert daemon.fake.only("ListPorts").bridge == "br0"
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATE", "IFINDEX", "VLAN", "XDP", "NETNS",
                                "PEER", "ADDRESSES"]
    assert lines[1].split() == ["ctr1-eth", "veth", "up", "7", "all", "off", "ctr1", "eth0",
                                "10.0.0.2/24"]
    assert lines[2].split() == ["eth1", "system", "up", "2", "all", "off", "-", "-", "-"]
    assert lines[3].split() == ["vm1-tap", "tap", "down", "9", "all", "off", "-", "-", "-"]
    left = [0, 1, 2, 4, 5, 6, 7, 8]  # IFINDEX (3) is right-aligned
    assert [starts(lines[0])[i] for i in left] == [starts(lines[1])[i] for i in left]
    assert [starts(lines[1])[i] for i in left] == [starts(lines[3])[i] for i in left]
    assert lines[0].index("IFINDEX") + len("IFINDEX") == lines[1].index(" 7 ") + 2


def test_list_ports_json(daemon):
    daemon.fake.responses["ListPorts"] = PORTS
    data = daemon.json("list-ports", "br0")
    assert [(p["name"], p["type"], p["netns"], p["ifindex"]) for p in data] == [
        ("ctr1-eth", "veth", "ctr1", 7),
        ("eth1", "system", "", 2),
        ("vm1-tap", "tap", "", 9),
    ]
    assert data[0]["peer_name"] == "eth0" and data[0]["state"] == "up"


def test_unspecified_port_type_prints_as_veth(daemon):
    daemon.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=[pb.Port(name="p0")])
    assert daemon.json("list-ports", "br0")[0]["type"] == "veth"


# ---------------------------------------------------------------- fdb

FDB = pb.ListFdbEntriesResponse(entries=[
    pb.FdbEntry(mac="02:00:00:00:00:0b", port="vm1-tap", vlan=10, age_seconds=42.25),
    pb.FdbEntry(mac="02:00:00:00:00:0a", port="ctr1-eth", vlan=0, age_seconds=3.14159),
    pb.FdbEntry(mac="02:00:00:00:00:01", port="eth1", vlan=0, static=True),
])


def test_dump_fdb_table(daemon):
    daemon.fake.responses["ListFdbEntries"] = FDB
    rc, out, err = daemon.run("dump-fdb", "br0")
    assert (rc, err) == (0, "")
    assert daemon.fake.only("ListFdbEntries").bridge == "br0"
    lines = out.splitlines()
    assert lines[0].split() == ["PORT", "VLAN", "MAC", "AGE"]
    assert lines[1].split() == ["eth1", "-", "02:00:00:00:00:01", "static"]
    assert lines[2].split() == ["ctr1-eth", "-", "02:00:00:00:00:0a", "3.1"]
    assert lines[3].split() == ["vm1-tap", "10", "02:00:00:00:00:0b", "42.2"]
    assert starts(lines[0])[2] == starts(lines[1])[2] == starts(lines[3])[2]  # MAC column


def test_dump_fdb_json(daemon):
    daemon.fake.responses["ListFdbEntries"] = FDB
    data = daemon.json("dump-fdb", "br0")
    assert data == [
        {"mac": "02:00:00:00:00:01", "port": "eth1", "vlan": 0, "static": True, "age": 0.0,
         "remote": "", "revision": 0},
        {"mac": "02:00:00:00:00:0a", "port": "ctr1-eth", "vlan": 0, "static": False,
         "age": 3.142, "remote": "", "revision": 0},
        {"mac": "02:00:00:00:00:0b", "port": "vm1-tap", "vlan": 10, "static": False,
         "age": 42.25, "remote": "", "revision": 0},
    ]


def test_add_fdb(daemon):
    daemon.fake.responses["CreateFdbEntry"] = pb.FdbEntry(
        mac="02:00:00:00:00:0c", port="ctr1-eth", vlan=20, static=True)
    rc, out, err = daemon.run("add-fdb", "br0", "02:00:00:00:00:0c", "ctr1-eth", "--vlan", "20")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("CreateFdbEntry")
    assert req.bridge == "br0"
    assert (req.entry.mac, req.entry.port, req.entry.vlan, req.entry.static) == (
        "02:00:00:00:00:0c", "ctr1-eth", 20, True)
    daemon.fake.requests.clear()
    data = daemon.json("add-fdb", "br0", "02:00:00:00:00:0c", "ctr1-eth")
    assert daemon.fake.only("CreateFdbEntry").entry.vlan == 0
    assert data == {"mac": "02:00:00:00:00:0c", "port": "ctr1-eth", "vlan": 20, "static": True,
                    "age": 0.0, "remote": "", "revision": 0}


def test_del_fdb(daemon):
    rc, out, err = daemon.run("del-fdb", "br0", "02:00:00:00:00:0c", "--vlan", "4094",
                              "--if-exists")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("DeleteFdbEntry")
    assert (req.bridge, req.mac, req.vlan, req.if_exists) == (
        "br0", "02:00:00:00:00:0c", 4094, True)


# ---------------------------------------------------------------- port stats

STATS = pb.GetPortStatsResponse(stats=[
    pb.PortStats(port="vm1-tap", rx_packets=5, rx_bytes=640, tx_packets=0, tx_bytes=0,
                 xdp_finished=4, xdp_handoffs=1),
    pb.PortStats(port="ctr1-eth", rx_packets=1200, rx_bytes=153600, tx_packets=1100,
                 tx_bytes=140800, drops=7, drops_by_reason={"no-fdb-port": 4, "vlan": 3}),
])


def test_port_stats_table(daemon):
    daemon.fake.responses["GetPortStats"] = STATS
    rc, out, err = daemon.run("port-stats", "br0")
    assert (rc, err) == (0, "")
    req = daemon.fake.only("GetPortStats")
    assert (req.bridge, req.port) == ("br0", "")
    lines = out.splitlines()
    assert lines[0].split() == ["PORT", "RX_PACKETS", "RX_BYTES", "TX_PACKETS", "TX_BYTES",
                                "DROPS", "XDP", "XDP_TO_TC", "DROP_REASONS"]
    assert lines[1].split() == ["ctr1-eth", "1200", "153600", "1100", "140800", "7", "0", "0",
                                "no-fdb-port=4,vlan=3"]
    assert lines[2].split() == ["vm1-tap", "5", "640", "0", "0", "0", "4", "1", "-"]
    # numbers are right-aligned under their header
    assert lines[0].index("RX_BYTES") + len("RX_BYTES") == lines[1].index("153600") + 6


def test_port_stats_json_one_port(daemon):
    daemon.fake.responses["GetPortStats"] = pb.GetPortStatsResponse(stats=[STATS.stats[1]])
    data = daemon.json("port-stats", "br0", "ctr1-eth")
    req = daemon.fake.only("GetPortStats")
    assert (req.bridge, req.port) == ("br0", "ctr1-eth")
    assert data == [{"port": "ctr1-eth", "rx_packets": 1200, "rx_bytes": 153600,
                     "tx_packets": 1100, "tx_bytes": 140800, "drops": 7,
                     "drops_by_reason": {"no-fdb-port": 4, "vlan": 3},
                     "xdp_finished": 0, "xdp_handoffs": 0}]


# ---------------------------------------------------------------- options

def test_global_options_after_the_command(daemon):
    daemon.fake.responses["ListBridges"] = BRIDGES
    rc, out, _ = daemon.run("list-br", "-j")
    assert rc == 0 and [b["name"] for b in json.loads(out)] == ["br0", "br1"]


def test_vswitchd_socket_env_is_honoured(daemon, monkeypatch, capsys):
    monkeypatch.setenv("VSWITCHD_SOCKET", daemon.socket)
    daemon.fake.responses["GetStatus"] = STATUS
    capsys.readouterr()
    rc = main(["-j", "status"])
    out, err = capsys.readouterr()
    assert (rc, err) == (0, "")
    assert json.loads(out)["version"] == "0.1.0"
    assert daemon.fake.requests[0][0] == "GetStatus"


def test_socket_option_overrides_env(daemon, monkeypatch, short_dir):
    monkeypatch.setenv("VSWITCHD_SOCKET", os.path.join(short_dir, "elsewhere.sock"))
    rc, _, err = daemon.run("status")  # run() passes --socket daemon.socket
    assert (rc, err) == (0, "")


# ---------------------------------------------------------------- usage errors: exit 1

@pytest.mark.parametrize("argv, message", [
    (["frob"], "unknown command 'frob'"),
    ([], "required: COMMAND"),
    (["add-br"], "required: BR"),
    (["add-port", "br0"], "required: PORT"),
    (["add-fdb", "br0", "02:00:00:00:00:01"], "required: PORT"),
    (["add-port", "br0", "p0", "--mtu", "big"], "--mtu: 'big' is not a number"),
    (["add-port", "br0", "p0", "--mtu", "0"], "--mtu: 0 is out of range 1..65535"),
    (["add-port", "br0", "p0", "--type", "geneve"], "invalid choice: 'geneve'"),
    (["add-br", "br0", "--datapath", "xdp"], "invalid choice: 'xdp'"),
    (["add-fdb", "br0", "02:00:00:00:00:01", "p0", "--vlan", "4095"],
     "--vlan: 4095 is out of range 0..4094"),
    (["del-fdb", "br0", "02:00:00:00:00:01", "--vlan", "-1"], "--vlan: -1 is out of range"),
    (["del-fdb", "br0", "not-a-mac"], "'not-a-mac' is not a MAC address"),
    (["--timeout", "soon", "status"], "--timeout: 'soon' is not a number"),
    (["list-br", "extra"], "unrecognized arguments: extra"),
])
def test_usage_errors_exit_1(daemon, argv, message):
    rc, out, err = daemon.run(*argv)
    assert rc == 1
    assert out == ""
    assert err.startswith("vswctl: ")
    assert message in err.splitlines()[0]
    assert "usage: vswctl" in err
    assert daemon.fake.requests == []  # nothing reached the daemon


LONG = "x" * 100_000


@pytest.mark.parametrize("argv, message", [
    (["add-br", "b" * 16], "argument BR: bridge name 'bbbbbbbbbbbbbbbb' is longer than 15 bytes"),
    (["add-br", "é" * 8], "bridge name 'éééééééé' is longer than 15 bytes"),
    (["add-br", LONG], f"bridge name '{'x' * 80}…' (100 000 characters) is longer than 15 bytes"),
    (["del-br", LONG], "(100 000 characters) is longer than 15 bytes"),
    (["show", LONG], "argument BR: bridge name"),
    (["add-port", "br0", "p" * 16], "argument PORT: port name 'pppppppppppppppp' is longer"),
    (["add-port", "br0", "p1", "--peer-name", "e" * 16],
     "argument --peer-name: peer name 'eeeeeeeeeeeeeeee' is longer than 15 bytes"),
    (["del-port", "br0", LONG], "argument PORT: port name"),
    (["add-fdb", "br0", "02:00:00:00:00:01", LONG], "argument PORT: port name"),
    (["port-stats", "br0", LONG], "argument PORT: port name"),
    (["watch", "br0", "--port", LONG], "argument --port: port name"),
    (["trace", LONG, "in_port=p1"], "argument BR: bridge name"),
])
def test_interface_names_too_long_are_usage_errors(daemon, argv, message):
    rc, out, err = daemon.run(*argv)
    assert (rc, out) == (1, "")
    assert message in err.splitlines()[0] and len(err.splitlines()[0]) < 200
    assert daemon.fake.requests == []  # nothing reached the daemon


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "dump-fdb" in capsys.readouterr().out


# ---------------------------------------------------------------- refused: exit 2

@pytest.mark.parametrize("argv, rpc, code, message", [
    (["add-br", "br0"], "CreateBridge", grpc.StatusCode.ALREADY_EXISTS,
     "bridge br0 already exists"),
    (["del-port", "br0", "nope"], "DeletePort", grpc.StatusCode.NOT_FOUND,
     "port nope not found on bridge br0"),
    (["add-port", "br0", "p0", "--ip", "10.0.0.300/24"], "CreatePort",
     grpc.StatusCode.INVALID_ARGUMENT, "addresses '10.0.0.300/24': is not a valid CIDR"),
    (["add-br", "br0", "--datapath", "ebpf"], "CreateBridge",
     grpc.StatusCode.FAILED_PRECONDITION, "ebpf datapath unsupported: bcc not installed"),
    (["dump-fdb", "br0"], "ListFdbEntries", grpc.StatusCode.INTERNAL, "map lookup failed"),
    (["watch", "br0"], "Watch", grpc.StatusCode.RESOURCE_EXHAUSTED,
     "8 watch streams are open, the most vswitchd allows at once (watch.max_watchers ...)"),
])
def test_refused_exit_2(daemon, argv, rpc, code, message):
    daemon.fake.errors[rpc] = (code, message)
    rc, out, err = daemon.run(*argv)
    assert (rc, out) == (2, "")
    assert err == f"vswctl: {code.name}: {message}\n"
    assert daemon.fake.only(rpc) is not None


def test_refused_with_json_prints_nothing_on_stdout(daemon):
    daemon.fake.errors["ListPorts"] = (grpc.StatusCode.NOT_FOUND, "bridge br7 not found")
    rc, out, err = daemon.run("-j", "list-ports", "br7")
    assert (rc, out, err) == (2, "", "vswctl: NOT_FOUND: bridge br7 not found\n")


# ---------------------------------------------------------------- unreachable: exit 3

def test_nothing_listening_exit_3(short_dir, capsys, monkeypatch):
    monkeypatch.delenv("VSWITCHD_SOCKET", raising=False)
    sock = os.path.join(short_dir, "absent.sock")
    rc = main(["--socket", sock, "list-br"])
    out, err = capsys.readouterr()
    assert (rc, out) == (3, "")
    assert err.startswith(f"vswctl: cannot reach vswitchd at {sock}: ")
    assert "is the daemon running? start it with 'make run' or 'vswitchd'" in err


def test_stale_socket_exit_3_via_env(short_dir, capsys, monkeypatch):
    sock = os.path.join(short_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)  # bound but never listening: connect() is refused
    try:
        monkeypatch.setenv("VSWITCHD_SOCKET", sock)
        rc = main(["status"])
    finally:
        s.close()
    out, err = capsys.readouterr()
    assert (rc, out) == (3, "")
    assert f"cannot reach vswitchd at {sock}" in err
    assert "Connection refused" in err


def test_no_answer_within_timeout_exit_3(daemon):
    daemon.fake.delay["ListBridges"] = 1.0
    t0 = time.monotonic()
    rc, out, err = daemon.run("--timeout", "0.2", "list-br")
    assert time.monotonic() - t0 < 0.9
    assert (rc, out) == (3, "")
    assert f"cannot reach vswitchd at {daemon.socket}: no answer within 0.2s" in err
