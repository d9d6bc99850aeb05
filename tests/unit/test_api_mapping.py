"""API mapping: convert.py both ways, and the servicer over a real in-process gRPC server.

The server listens on a temporary Unix socket and serves a Switch built on the fakes of
fakes.py, so status codes and messages are checked exactly as a client sees them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent import futures

import grpc
import pytest
from fakes import PortCounters, make_rig, serve_switch

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd.api import convert
from vswitchd.api.servicer import SwitchServicer
from vswitchd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SwitchError,
    Unavailable,
)
from vswitchd.model import BridgeSpec, PortFacts, PortSpec
from vswitchd.views import BridgeView, FdbView, PortView, StatsView

# ---- convert: messages -> specs ----------------------------------------------------------


@pytest.mark.parametrize("enum, name", [
    (pb.DATAPATH_UNSPECIFIED, ""),
    (pb.DATAPATH_EBPF, "ebpf"),
    (pb.DATAPATH_KERNEL, "kernel"),
])
def test_bridge_spec_datapath(enum, name):
    spec = convert.bridge_spec(pb.Bridge(name="br0", datapath=enum,
                                         addresses=["10.0.0.1/24", "fd00::1/64"]))
    assert spec == BridgeSpec("br0", name, ["10.0.0.1/24", "fd00::1/64"])
    assert type(spec.addresses) is list


def test_unknown_enum_values_become_invalid_arguments_later():
    spec = convert.bridge_spec(pb.Bridge(name="br0", datapath=7))
    assert spec.datapath == "enum value 7"
    port = convert.port_spec(pb.Port(name="p1", type=9))
    assert port.type == "enum value 9"


@pytest.mark.parametrize("enum, name", [
    (pb.PORT_TYPE_UNSPECIFIED, "veth"),
    (pb.PORT_TYPE_VETH, "veth"),
    (pb.PORT_TYPE_TAP, "tap"),
    (pb.PORT_TYPE_SYSTEM, "system"),
])
def test_port_spec_types(enum, name):
    assert convert.port_spec(pb.Port(name="p1", type=enum)).type == name


def test_port_spec_fields():
    msg = pb.Port(name="p1", bridge="br0", type=pb.PORT_TYPE_VETH, netns="c1", peer_name="eth1",
                  addresses=["10.0.0.2/24", "10.0.1.2/24"], mac="02:aa:00:00:00:01", mtu=9000,
                  owner="", ifindex=42, netns_created=True, state="up")
    spec = convert.port_spec(msg)
    # output-only fields (ifindex, netns_created, state) are not taken from the request
    assert spec == PortSpec("p1", "veth", "c1", "eth1", ["10.0.0.2/24", "10.0.1.2/24"],
                            "02:aa:00:00:00:01", 9000, "")
    empty = convert.port_spec(pb.Port(name="p2"))
    assert (empty.type, empty.peer_name, empty.netns, empty.addresses, empty.mtu) == (
        "veth", "", "", [], 0)


# ---- convert: views -> messages ----------------------------------------------------------


def test_port_and_bridge_msg():
    pspec = PortSpec("t1", "tap", mtu=1400, owner="qemu")
    vspec = PortSpec("v1", "veth", "c1", "eth0", ["10.0.0.2/24"], "02:aa:00:00:00:01", 0, "")
    ports = [PortView(pspec, "br0", 11, "down"),
             PortView(vspec, "br0", 12, "missing: gone", PortFacts(netns_created=True))]
    view = BridgeView(BridgeSpec("br0", "kernel", ["10.0.0.1/24"]), 10, "02:00:00:00:00:0a",
                      ports)
    msg = convert.bridge_msg(view)
    assert (msg.name, msg.datapath, list(msg.addresses), msg.ifindex, msg.mac) == (
        "br0", pb.DATAPATH_KERNEL, ["10.0.0.1/24"], 10, "02:00:00:00:00:0a")
    t1, v1 = msg.ports
    assert (t1.name, t1.bridge, t1.type, t1.mtu, t1.owner, t1.ifindex, t1.state) == (
        "t1", "br0", pb.PORT_TYPE_TAP, 1400, "qemu", 11, "down")
    assert (v1.type, v1.netns, v1.peer_name, list(v1.addresses), v1.mac, v1.netns_created,
            v1.state) == (pb.PORT_TYPE_VETH, "c1", "eth0", ["10.0.0.2/24"], "02:aa:00:00:00:01",
                          True, "missing: gone")
    assert convert.bridge_msg(BridgeView(BridgeSpec("b"), 0, "", [])).datapath == pb.DATAPATH_EBPF
    sys_msg = convert.port_msg(PortView(PortSpec("eth1", "system"), "b", 3, "up"))
    assert sys_msg.type == pb.PORT_TYPE_SYSTEM


def test_round_trip_port_spec():
    spec = PortSpec("v1", "veth", "/proc/1/ns/net", "eth3", ["fd00::2/64"], "02:aa:00:00:00:01",
                    1500, "")
    assert convert.port_spec(convert.port_msg(PortView(spec, "br0", 5, "up"))) == spec


def test_fdb_and_stats_msg():
    f = convert.fdb_msg(FdbView("02:aa:00:00:00:01", "p1", 10, False, 12.5))
    assert (f.mac, f.port, f.vlan, f.static, f.age_seconds) == (
        "02:aa:00:00:00:01", "p1", 10, False, 12.5)
    s = convert.stats_msg(StatsView("p1", 1, 2, 3, 4, {"no-fdb-port": 5, "vlan": 6}))
    assert (s.port, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.drops) == (
        "p1", 1, 2, 3, 4, 11)
    assert dict(s.drops_by_reason) == {"no-fdb-port": 5, "vlan": 6}


# ---- servicer over a real server ---------------------------------------------------------


@pytest.fixture
def api(monkeypatch, tmp_path):
    """(stub, rig): a gRPC stub talking over a Unix socket to a Switch on fakes."""
    rig = make_rig(monkeypatch, str(tmp_path / "state"))
    with serve_switch(rig.switch) as stub:
        yield stub, rig


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        call(request, timeout=10)
    return ei.value


def test_successful_round_trip(api):
    stub, rig = api
    br = stub.CreateBridge(pb.CreateBridgeRequest(
        bridge=pb.Bridge(name="br0", addresses=["10.0.0.1/24"])), timeout=10)
    info = rig.links.get("br0")
    assert (br.name, br.datapath, list(br.addresses), br.ifindex, br.mac) == (
        "br0", pb.DATAPATH_EBPF, ["10.0.0.1/24"], info.ifindex, info.mac)
    assert rig.dp.bridges == {info.ifindex: info.mac}

    port = stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
        name="p1", bridge="br0", netns="c1", addresses=["10.0.0.2/24"])), timeout=10)
    p1 = rig.links.get("p1")
    assert (port.name, port.bridge, port.type, port.netns, port.peer_name, port.ifindex,
            port.netns_created, port.state) == (
        "p1", "br0", pb.PORT_TYPE_VETH, "c1", "eth0", p1.ifindex, True, "up")
    stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
        name="t1", bridge="br0", type=pb.PORT_TYPE_TAP)), timeout=10)

    ports = stub.ListPorts(pb.ListPortsRequest(bridge="br0"), timeout=10).ports
    assert [(p.name, p.type) for p in ports] == [("p1", pb.PORT_TYPE_VETH),
                                                 ("t1", pb.PORT_TYPE_TAP)]

    rig.dp.counters[p1.ifindex] = PortCounters(3, 300, 4, 400, {"no-fdb-port": 2})
    stats = stub.GetPortStats(pb.GetPortStatsRequest(bridge="br0", port="p1"), timeout=10).stats
    assert len(stats) == 1
    s = stats[0]
    assert (s.port, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.drops) == (
        "p1", 3, 300, 4, 400, 2)
    assert dict(s.drops_by_reason) == {"no-fdb-port": 2}
    every = stub.GetPortStats(pb.GetPortStatsRequest(bridge="br0"), timeout=10).stats
    assert [x.port for x in every] == ["br0", "p1", "t1"]

    entry = stub.CreateFdbEntry(pb.CreateFdbEntryRequest(
        bridge="br0", entry=pb.FdbEntry(mac="02:AA:00:00:00:01", port="t1", vlan=5)), timeout=10)
    assert (entry.mac, entry.port, entry.vlan, entry.static) == ("02:aa:00:00:00:01", "t1", 5, True)
    listed = stub.ListFdbEntries(pb.ListFdbEntriesRequest(bridge="br0"), timeout=10).entries
    assert [(e.mac, e.port, e.vlan) for e in listed] == [("02:aa:00:00:00:01", "t1", 5)]

    got = stub.GetBridge(pb.GetBridgeRequest(name="br0"), timeout=10)
    assert [p.name for p in got.ports] == ["p1", "t1"]
    assert stub.DeletePort(pb.DeletePortRequest(bridge="br0", name="p1"),
                           timeout=10).deleted is True
    assert "c1" not in rig.netns.names
    assert stub.DeleteBridge(pb.DeleteBridgeRequest(name="br9", if_exists=True),
                             timeout=10).deleted is False
    assert stub.DeleteBridge(pb.DeleteBridgeRequest(name="br0"), timeout=10).deleted is True
    assert list(stub.ListBridges(pb.ListBridgesRequest(), timeout=10).bridges) == []


def test_get_status(api):
    stub, rig = api
    st = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
    assert (st.ebpf_supported, st.default_datapath, st.fdb_aging_seconds) == (
        True, pb.DATAPATH_EBPF, 300)
    assert st.kernel == os.uname().release and st.version


def test_switch_errors_arrive_as_their_canonical_codes(api):
    stub, rig = api
    stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)

    e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="a/b")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == str(InvalidArgument("bridge", "a/b", "must not contain '/'"))

    e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br1",
                                                                         datapath=7)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "datapath 'enum value 7'" in e.details()

    e = _error(stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
        name="t1", bridge="br0", type=pb.PORT_TYPE_TAP, mac="02:aa:00:00:00:01")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "mac '02:aa:00:00:00:01': applies only to veth ports"

    e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    assert e.details() == "bridge br0 already exists (--may-exist ignores this)"

    e = _error(stub.GetBridge, pb.GetBridgeRequest(name="nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "bridge nope does not exist"

    e = _error(stub.DeleteFdbEntry, pb.DeleteFdbEntryRequest(bridge="br0",
                                                            mac="02:aa:00:00:00:09"))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "no FDB entry for 02:aa:00:00:00:09 vlan 0 on bridge br0"

    rig.links.add_system("eth1", master="br0")
    e = _error(stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
        name="eth1", bridge="br0", type=pb.PORT_TYPE_SYSTEM)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "interface eth1 is already enslaved to br0"

    rig.links.fail_once("create_tap", Unavailable("netlink: Links object is closed"))
    e = _error(stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
        name="t1", bridge="br0", type=pb.PORT_TYPE_TAP)))
    assert e.code() == grpc.StatusCode.UNAVAILABLE
    assert e.details() == "netlink: Links object is closed"

    rig.links.fail_once("create_tap", SwitchError("something odd"))
    e = _error(stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
        name="t1", bridge="br0", type=pb.PORT_TYPE_TAP)))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == "something odd"
    assert rig.links.get("t1") is None


@pytest.mark.parametrize("exc", [
    InvalidArgument("mtu", 5, "must be an integer in 68..65535"),
    AlreadyExists("interface x already exists"),
    NotFound("interface x does not exist"),
    FailedPrecondition("interface br0 is not a bridge"),
    Unavailable("cannot create network namespace c1: EPERM"),
    ResourceExhausted("8 watch streams are open"),
    SwitchError("base class"),
], ids=lambda e: type(e).__name__)
def test_every_switch_error_class_maps_to_its_code(api, exc):
    stub, rig = api
    rig.links.fail_once("create_bridge", exc)
    e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")))
    assert e.code() == getattr(grpc.StatusCode, exc.code_name)
    assert e.code() != grpc.StatusCode.UNKNOWN
    assert e.details() == str(exc)


@pytest.mark.parametrize("exc", [RuntimeError("kaboom"), KeyError("x"), OSError(5, "EIO")],
                         ids=lambda e: type(e).__name__)
def test_unexpected_exceptions_become_internal(api, exc):
    stub, rig = api
    rig.links.fail_once("create_bridge", exc)
    e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == "internal error in CreateBridge; see the vswitchd log"
    assert "kaboom" not in e.details()
    # the server keeps serving
    ok = stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
    assert ok.name == "br0"


def test_ebpf_unavailable_over_the_api(monkeypatch, tmp_path):
    rig = make_rig(monkeypatch, str(tmp_path / "state"), ebpf=False, reason="no BTF in kernel")
    d = tempfile.mkdtemp(prefix="vswapi-", dir="/tmp")
    sock = os.path.join(d, "s.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SwitchServicer_to_server(SwitchServicer(rig.switch), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = pb_grpc.SwitchStub(ch)
            e = _error(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")))
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "no BTF in kernel" in e.details() and "--datapath kernel" in e.details()
            st = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
            assert (st.ebpf_supported, st.ebpf_unsupported_reason) == (False, "no BTF in kernel")
            br = stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(
                name="kbr", datapath=pb.DATAPATH_KERNEL)), timeout=10)
            assert br.datapath == pb.DATAPATH_KERNEL
    finally:
        server.stop(grace=None)
        shutil.rmtree(d, ignore_errors=True)


# ---- oversized values: messages quote a short prefix ---------------------------------------

LONG = "a" * 100_000
CLIPPED = "(100 000 characters)"


def test_error_values_are_quoted_short():
    from vswitchd.errors import clip, shown

    assert shown("br0") == "'br0'" and clip("br0") == "br0"
    assert shown(LONG) == f"'{'a' * 80}…' {CLIPPED}"
    assert clip(LONG) == f"{'a' * 80}… {CLIPPED}"
    assert str(InvalidArgument("bridge", LONG, "is longer than 15 bytes")) == (
        f"bridge '{'a' * 80}…' {CLIPPED}: is longer than 15 bytes")
    assert len(shown(list(range(10_000)))) < 100


def _long_flow(**match) -> pb.Flow:
    return pb.Flow(match=pb.FlowMatch(**match), actions=[pb.FlowAction(drop=pb.NoArgument())])


@pytest.mark.parametrize("rpc, request_, code", [
    ("CreateBridge", pb.CreateBridgeRequest(bridge=pb.Bridge(name=LONG)), "INVALID_ARGUMENT"),
    ("CreateBridge", pb.CreateBridgeRequest(bridge=pb.Bridge(name="b1", addresses=[LONG])),
     "INVALID_ARGUMENT"),
    ("GetBridge", pb.GetBridgeRequest(name=LONG), "NOT_FOUND"),
    ("DeleteBridge", pb.DeleteBridgeRequest(name=LONG), "NOT_FOUND"),
    ("ListPorts", pb.ListPortsRequest(bridge=LONG), "NOT_FOUND"),
    ("CreatePort", pb.CreatePortRequest(port=pb.Port(name=LONG, bridge="br0")),
     "INVALID_ARGUMENT"),
    ("CreatePort", pb.CreatePortRequest(port=pb.Port(name="p1", bridge="br0", netns=LONG)),
     "INVALID_ARGUMENT"),
    ("CreatePort", pb.CreatePortRequest(port=pb.Port(name="p1", bridge="br0",
                                                     netns="/" + LONG)), "INVALID_ARGUMENT"),
    ("DeletePort", pb.DeletePortRequest(bridge="br0", name=LONG), "NOT_FOUND"),
    ("CreateFdbEntry", pb.CreateFdbEntryRequest(
        bridge="br0", entry=pb.FdbEntry(mac="02:00:00:00:00:01", port=LONG)), "NOT_FOUND"),
    ("CreateFdbEntry", pb.CreateFdbEntryRequest(
        bridge="br0", entry=pb.FdbEntry(mac=LONG, port="br0")), "INVALID_ARGUMENT"),
    ("GetPortStats", pb.GetPortStatsRequest(bridge="br0", port=LONG), "NOT_FOUND"),
    ("AddFlows", pb.AddFlowsRequest(bridge="br0", flows=[_long_flow(in_port=LONG)]),
     "INVALID_ARGUMENT"),
    ("AddFlows", pb.AddFlowsRequest(bridge="br0", flows=[_long_flow(nw_dst=LONG, dl_type=0x800)]),
     "INVALID_ARGUMENT"),
    ("AddFlows", pb.AddFlowsRequest(bridge="br0", flows=[pb.Flow(
        actions=[pb.FlowAction(output=LONG)])]), "INVALID_ARGUMENT"),
    ("Trace", pb.TraceRequest(bridge="br0", packet=pb.FlowMatch(in_port=LONG)),
     "INVALID_ARGUMENT"),
    ("Watch", pb.WatchRequest(bridge="br0", port=LONG), "NOT_FOUND"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_oversized_values_are_refused_with_a_short_message(api, rpc, request_, code):
    stub, rig = api
    rig.switch.create_bridge(BridgeSpec("br0"))
    call = getattr(stub, rpc)
    with pytest.raises(grpc.RpcError) as ei:
        result = call(request_, timeout=10)
        if rpc == "Watch":
            list(result)
    e = ei.value
    assert e.code() == getattr(grpc.StatusCode, code), (e.code(), e.details()[:200])
    assert len(e.details()) < 300 and " characters)" in e.details(), e.details()


def test_status_messages_are_capped():
    from vswitchd.api.servicer import MAX_MESSAGE, status_message

    text = status_message(SwitchError("x" * 10_000 + " the end"))
    assert len(text) <= MAX_MESSAGE + 3 and text.endswith(" the end")
