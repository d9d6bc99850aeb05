"""Property-based fuzzing of every RPC of the Switch service against a real daemon.

Each request message is generated from its descriptor (tests/protofuzz.py): random and boundary
values in every field, huge strings, long repeated fields, unknown enum numbers, odd names, with
a bias towards the names of objects that exist. Each call must succeed or fail with one of the
codes the API documents for user errors (an INVALID_ARGUMENT naming its field), never UNKNOWN or
INTERNAL; the daemon stays up; afterwards the store, the kernel and the datapath agree
(vswitchd.consistency, as `vswitchd --check-state`).

One daemon serves every RPC's test (module scope: starting one per RPC would cost minutes); the
objects the bias names are put back before each RPC's examples. Its namespace keeps all it does
away from the machine: the only namespaces a request may name are the test's own (or ones that
cannot exist), so no veth peer lands anywhere else. Shutdown ends the daemon: its own test.
"""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import budget
from tests.netns.harness import Host
from tests.protofuzz import HUGE_TEXT, Hints, message, mostly, mutated
from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd import consistency
from vswitchd.api.servicer import FIELD_KEY
from vswitchd.netlink import netns

pytestmark = [pytest.mark.root, pytest.mark.property]

SERVICE = pb.DESCRIPTOR.services_by_name["Switch"]
OWN_TEST = {"Shutdown": "test_shutdown_fuzzed"}  # RPCs fuzzed by a test of their own
FUZZED = [m.name for m in SERVICE.methods if m.name not in OWN_TEST]
USER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,             # expected_revision differs (documented in the .proto)
    grpc.StatusCode.OUT_OF_RANGE,        # Subscribe's since_revision too old or ahead
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # a limit (watch streams, the request size)
}
STREAM_SECONDS = 0.3  # a server stream is opened, read this long at most, then cancelled
CALL_SECONDS = 60
BRIDGES = ["br0", "kb0", "fz0"]  # (fz*: free names, for creations)
PORTS = ["p1", "p2", "t1", "vx1", "br0", "fz1"]
NAMES = sorted(set(BRIDGES) | set(PORTS))
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01",
        "00:00:00:00:00:00", "02:00:00:00:00:0", "02-00-00-00-00-01", "zz:00:00:00:00:01"]
ADDRESSES = ["10.62.0.1/24", "10.62.0.9/24", "10.62.0.9", "192.0.2.1", "fd00::1/64",
             "0.0.0.0/0", "10.62.0.1/33", "256.0.0.1/24", "::/0", "224.0.0.1"]


def hints(host: Host) -> Hints:
    text = Hints(names=NAMES).text()
    bridges = mostly(st.sampled_from(BRIDGES), text, 8)
    ports = mostly(st.sampled_from(PORTS), text, 8)
    return Hints(names=NAMES, by_name={
        **{f: bridges for f in ("bridge", "bridges")},
        **{f: ports for f in ("port", "in_port", "out_port", "output")},
        # only the test's namespaces, or what cannot be one: never a namespace of the machine
        "netns": st.one_of(st.sampled_from([host.name("c"), host.name("n1"), "",
                                            "/nonexistent/ns", "/proc/self/ns/net", "bad name",
                                            "..", "x/y", "a\x00b"]), HUGE_TEXT),
        **{f: mostly(st.sampled_from(MACS), text) for f in ("mac", "mask")},
        **{f: mostly(st.sampled_from(ADDRESSES), text)
           for f in ("addresses", "gateway", "local", "remotes", "address", "nw_src", "nw_dst",
                     "ipv6_src", "ipv6_dst")},
        "owner": mostly(st.sampled_from(["root", "nobody", "0", "no-such-user"]), text),
    })


def seeds(host: Host) -> dict[str, object]:
    """A valid request of the RPCs whose requests have many fields to get right: mutated in one
    or two fields (tests/protofuzz.py: mutated), it reaches the checks behind the first."""
    from google.protobuf.field_mask_pb2 import FieldMask

    flow = pb.Flow(priority=100, match=pb.FlowMatch(in_port="p1", dl_type=0x0800,
                                                    nw_dst="10.62.0.9"),
                   actions=[pb.FlowAction(output="p2"), pb.FlowAction(normal=pb.NoArgument())])
    packet = pb.FlowMatch(in_port="p1", dl_src=pb.MacMatch(mac="02:00:00:00:00:01"),
                          dl_dst=pb.MacMatch(mac="02:00:00:00:00:02"))
    return {
        "CreateBridge": pb.CreateBridgeRequest(bridge=pb.Bridge(
            name="fz0", datapath=pb.DATAPATH_EBPF, addresses=["10.63.0.1/24"], nat=True)),
        "UpdateBridge": pb.UpdateBridgeRequest(
            bridge=pb.Bridge(name="br0", nat=True, addresses=["10.62.0.1/24"]),
            update_mask=FieldMask(paths=["nat", "addresses"])),
        "DeleteBridge": pb.DeleteBridgeRequest(name="fz0"),
        "CreatePort": pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="fz1", netns=host.name("n1"), addresses=["10.62.0.5/24"],
            mac="02:00:00:00:00:05", gateway="10.62.0.1", trunks=[20, 30], native_vlan=5,
            labels={"a": "b"})),
        "UpdatePort": pb.UpdatePortRequest(
            port=pb.Port(bridge="br0", name="p2", vlan=11, xdp=pb.XDP_GENERIC),
            update_mask=FieldMask(paths=["vlan", "trunks", "native_vlan", "xdp"])),
        "DeletePort": pb.DeletePortRequest(bridge="br0", name="fz1"),
        "CreateFdbEntry": pb.CreateFdbEntryRequest(bridge="br0", entry=pb.FdbEntry(
            mac="02:00:00:00:00:07", port="p1", vlan=0)),
        "DeleteFdbEntry": pb.DeleteFdbEntryRequest(bridge="br0", mac="02:00:00:00:00:07"),
        "CreateVtep": pb.CreateVtepRequest(vtep=pb.Vtep(bridge="br0", port="vx1",
                                                        address="192.0.2.7")),
        "DeleteVtep": pb.DeleteVtepRequest(vtep=pb.Vtep(bridge="br0", port="vx1",
                                                        address="192.0.2.7")),
        "AddFlows": pb.AddFlowsRequest(bridge="br0", flows=[flow]),
        "ReplaceFlows": pb.ReplaceFlowsRequest(bridge="br0", flows=[flow]),
        "DeleteFlows": pb.DeleteFlowsRequest(bridge="br0", match=flow.match, strict=True,
                                             priority=100),
        "Trace": pb.TraceRequest(bridge="br0", packet=packet),
        "SendPacket": pb.SendPacketRequest(bridge="br0", in_port="p1", packet=packet),
        "Watch": pb.WatchRequest(bridge="br0", port="p1", match=packet),
        "UpdateWatchConfig": pb.UpdateWatchConfigRequest(
            config=pb.WatchConfig(rate_limit=5000), update_mask=FieldMask(paths=["rate_limit"])),
        "UpdatePacketInConfig": pb.UpdatePacketInConfigRequest(
            config=pb.PacketInConfig(rate_limit=500),
            update_mask=FieldMask(paths=["rate_limit"])),
    }


def baseline(stub: pb_grpc.SwitchStub, host: Host) -> None:
    """The objects the names point at (again, after an earlier RPC's examples deleted some)."""
    c = host.name("c")
    calls = [
        (stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(
            name="br0", datapath=pb.DATAPATH_EBPF, addresses=["10.62.0.1/24"], nat=True),
            may_exist=True)),
        (stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(
            name="kb0", datapath=pb.DATAPATH_KERNEL), may_exist=True)),
        (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="p1", netns=c, peer_name="e1"), may_exist=True)),
        (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="p2", netns=c, peer_name="e2", vlan=10), may_exist=True)),
        (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="t1", type=pb.PORT_TYPE_TAP), may_exist=True)),
        (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="vx1", type=pb.PORT_TYPE_VXLAN, vni=62, local="10.62.0.1",
            remotes=["192.0.2.1"]), may_exist=True)),
    ]
    for call, request in calls:
        with contextlib.suppress(grpc.RpcError):  # e.g. br0 taken by a fuzzed kernel bridge
            call(request, timeout=CALL_SECONDS)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    host = Host(tmp_path_factory.mktemp("apifuzz"))
    try:
        host.start()
        with grpc.insecure_channel(f"unix:{host.socket}") as channel:
            yield host, pb_grpc.SwitchStub(channel)
    finally:
        host.cleanup()


def findings(host: Host, settle: int = 3) -> list[str]:
    """The checker's findings in the daemon's namespace; asked again a few times while there
    are some (the daemon may still be reacting to the netlink events of its own change)."""
    for attempt in range(settle):
        with netns.entered(host.ns):
            found = consistency.check(host.state_dir, host.bpffs_dir)
        if not found:
            return []
        time.sleep(0.3 * (attempt + 1))
    return found


def call(stub: pb_grpc.SwitchStub, name: str, request) -> tuple[grpc.StatusCode, str, dict]:
    """(code, details, trailing metadata) of one call; a stream is read briefly."""
    method = SERVICE.methods_by_name[name]
    rpc = getattr(stub, name)
    try:
        if method.server_streaming:
            stream = rpc(request, timeout=STREAM_SECONDS)
            try:
                next(stream, None)
            finally:
                stream.cancel()
        else:
            rpc(request, timeout=CALL_SECONDS)
    except grpc.RpcError as exc:
        code = exc.code()
        if method.server_streaming and code in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                grpc.StatusCode.CANCELLED):
            return grpc.StatusCode.OK, "", {}  # it was open until we left
        return code, exc.details() or "", dict(exc.trailing_metadata() or ())
    return grpc.StatusCode.OK, "", {}


def assert_answer(name: str, request, code: grpc.StatusCode, details: str, meta: dict) -> None:
    shown = str(request)[:2000]
    assert code == grpc.StatusCode.OK or code in USER_ERRORS, \
        f"{name} answered {code.name}: {details}\nrequest: {shown}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field = meta.get(FIELD_KEY, "")
        assert field, f"{name}: INVALID_ARGUMENT without {FIELD_KEY}: {details}\n{shown}"
        assert field in details, f"{name}: the message does not name {field}: {details}"


def test_every_rpc_is_fuzzed():
    """A new RPC is fuzzed by test_rpc without more ado (its request generated from the
    descriptor), or has a test of its own named here."""
    assert set(FUZZED) | set(OWN_TEST) == {m.name for m in SERVICE.methods}
    for test in OWN_TEST.values():
        assert callable(globals().get(test)), test
    for name in SERVICE.methods_by_name:
        assert hasattr(pb_grpc.SwitchStub, name) or name in pb_grpc.SwitchServicer.__dict__


@pytest.mark.parametrize("name", FUZZED)
def test_rpc(daemon, name):
    host, stub = daemon
    baseline(stub, host)
    desc = SERVICE.methods_by_name[name].input_type
    generated = message(desc, hints(host))
    seed = seeds(host).get(name)
    requests = generated if seed is None else mostly(mutated(seed, hints(host)), generated)

    @budget(30)
    @given(request=requests)
    def fuzz(request):
        code, details, meta = call(stub, name, request)
        assert host.proc.poll() is None, f"vswitchd exited after {name}({str(request)[:2000]})"
        assert_answer(name, request, code, details, meta)
        found = findings(host)
        assert not found, f"after {name} ({code.name}: {details}), request {str(request)[:2000]}:" \
                          "\n" + "\n".join(found)

    fuzz()


def test_shutdown_fuzzed(host):
    """Shutdown's request (cleanup or not), generated as every other: the daemon answers and
    exits 0; without cleanup what it leaves agrees with the store, with cleanup nothing of it
    is left."""
    host.start()
    with grpc.insecure_channel(f"unix:{host.socket}") as channel:
        baseline(pb_grpc.SwitchStub(channel), host)

    @budget(2)
    @given(request=message(SERVICE.methods_by_name["Shutdown"].input_type, hints(host)))
    def fuzz(request):
        if host.proc.poll() is not None:
            host.start()
        with grpc.insecure_channel(f"unix:{host.socket}") as channel:
            code, details, meta = call(pb_grpc.SwitchStub(channel), "Shutdown", request)
        assert_answer("Shutdown", request, code, details, meta)
        assert host.proc.wait(30) == 0
        found = findings(host, settle=1)
        if request.cleanup:
            assert not host.links() - {"lo"}  # and the checker sees the stored bridges gone
            assert "bridge br0: its interface does not exist" in found, found
        else:
            assert not found, "\n".join(found)

    fuzz()
