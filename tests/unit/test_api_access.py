"""Access control over a real gRPC server (vswitchd.api.server.start) on a fake switch: the role
table read from the .proto, the reader socket, refusals before the servicer runs, the audit
lines with SO_PEERCRED's uid/gid/pid, and the per-connection stream limit."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import grpc
import pytest
from fakes import make_rig
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd.api import audit, roles
from vswitchd.api.server import MAX_STREAMS_PER_CONNECTION, private_socket, start
from vswitchd.config import ApiSettings
from vswitchd.metrics.api import ApiMetrics

READER_NAMES = ("Get", "List", "Trace", "Watch", "Subscribe")
CHANGING = ("Create", "Update", "Delete", "Add", "Replace", "Send", "Shutdown")


def test_every_switch_rpc_names_its_role_in_the_proto():
    unclassified = [m.name for m in roles.SWITCH.methods
                    if m.GetOptions().Extensions[pb.role] == pb.ROLE_UNSPECIFIED]
    assert unclassified == []
    assert set(roles.REQUIRED) == {f"/vswitchd.v1.Switch/{m.name}" for m in roles.SWITCH.methods}
    for path, role in roles.REQUIRED.items():
        name = path.rpartition("/")[2]
        if role == "reader":  # readers only read: the names say so
            assert name.startswith(READER_NAMES) and not name.startswith(CHANGING), name
        if name.startswith(CHANGING) or name.startswith("SubscribePacketIn"):
            assert role == "admin", name
    assert roles.REQUIRED["/vswitchd.v1.Switch/Trace"] == "reader"  # a dry run
    assert roles.REQUIRED["/vswitchd.v1.Switch/UpdateWatchConfig"] == "admin"


def test_unknown_switch_methods_need_admin_and_other_services_none():
    assert roles.required("/vswitchd.v1.Switch/SomethingNew") == "admin"
    assert roles.required("/grpc.health.v1.Health/Check") is None
    assert roles.allows("admin", "admin") and roles.allows("reader", "reader")
    assert not roles.allows("reader", "admin") and not roles.allows(None, "reader")


def test_audit_names_the_resource_without_dumping_the_request():
    assert audit.resource(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0"), may_exist=True)) \
        == "bridge.name=br0 may_exist=True"
    flows = pb.AddFlowsRequest(bridge="br0", flows=[pb.Flow(priority=i) for i in range(5000)])
    assert audit.resource(flows) == "bridge=br0 flows=[5000]"
    frame = pb.SendPacketRequest(bridge="b" * 500, data=b"\0" * 9000)
    assert audit.resource(frame) == f"bridge={'b' * 64}... data=<9000 bytes>"
    assert audit.value("uid=0 gid=0") == '"uid=0 gid=0"' and audit.value("OK") == "OK"


@pytest.fixture
def served(monkeypatch, tmp_path, request):
    """A server on the fakes; request.param (indirect): its other interceptors' factory."""
    rig = make_rig(monkeypatch, str(tmp_path))
    d = tempfile.mkdtemp(prefix="vswacl-", dir="/tmp")  # short path: sun_path is 108 bytes
    cfg = dataclasses.replace(
        rig.cfg, socket=f"{d}/vswitchd.sock",
        api=ApiSettings(reader_group=os.getgid(), audit_log=f"{d}/audit.log"))
    server = start(rig.switch, cfg, getattr(request, "param", list)())
    try:
        yield rig, cfg
    finally:
        server.stop(grace=None)
        shutil.rmtree(d, ignore_errors=True)


def _stub(path: str) -> tuple[grpc.Channel, pb_grpc.SwitchStub]:
    channel = grpc.insecure_channel(f"unix:{path}")
    return channel, pb_grpc.SwitchStub(channel)


def _denied(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        call(request, timeout=10)
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return ei.value


def test_a_reader_reads_and_is_refused_changes(served, caplog):
    rig, cfg = served
    reader = cfg.reader_socket()
    st = os.stat(reader)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, os.getgid())
    assert stat.S_IMODE(os.stat(cfg.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cfg.api.audit_log).st_mode) == 0o600
    rig.switch.create_bridge(pb_bridge_spec("br0"))
    caplog.set_level(logging.INFO, logger="vswitchd.audit")
    channel, stub = _stub(reader)
    with channel:
        assert [b.name for b in stub.ListBridges(pb.ListBridgesRequest(), timeout=10).bridges] \
            == ["br0"]
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=10).version
        err = _denied(stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="br1")))
        assert err.details() == (f"CreateBridge needs the admin role; uid={os.getuid()} "
                                 f"gid={os.getgid()} pid={os.getpid()} on unix:{reader} has "
                                 "the reader role")
        _denied(stub.DeleteBridge, pb.DeleteBridgeRequest(name="br0"))
        stream = stub.SubscribePacketIn(pb.PacketInRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as ei:
            next(stream)
        assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "SubscribePacketIn needs the admin role" in ei.value.details()
    assert [b.spec.name for b in rig.switch.list_bridges()] == ["br0"]  # nothing changed
    who = f'who="uid={os.getuid()} gid={os.getgid()} pid={os.getpid()}"'
    lines = [r.getMessage() for r in caplog.records if r.name == "vswitchd.audit"]
    assert lines == [
        f'call=CreateBridge resource="bridge.name=br1" result=PERMISSION_DENIED '
        f'role=reader {who} listener=unix:{reader}',
        f'call=DeleteBridge resource="name=br0" result=PERMISSION_DENIED '
        f'role=reader {who} listener=unix:{reader}',
        f'call=SubscribePacketIn resource="" result=PERMISSION_DENIED '
        f'role=reader {who} listener=unix:{reader}',
    ]  # reads are not audited
    assert Path(cfg.api.audit_log).read_text().count("result=PERMISSION_DENIED") == 3


def pb_bridge_spec(name: str):
    from vswitchd.model import BridgeSpec

    return BridgeSpec(name, "ebpf")


def test_admin_calls_are_audited_with_their_result(served, caplog):
    _, cfg = served
    caplog.set_level(logging.INFO, logger="vswitchd.audit")
    channel, stub = _stub(cfg.socket)
    with channel:
        stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
        with pytest.raises(grpc.RpcError) as ei:
            stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
        assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
        stub.ListBridges(pb.ListBridgesRequest(), timeout=10)
    who = f'who="uid={os.getuid()} gid={os.getgid()} pid={os.getpid()}"'
    tail = f"role=admin {who} listener=unix:{cfg.socket}"
    assert [r.getMessage() for r in caplog.records if r.name == "vswitchd.audit"] == [
        f'call=CreateBridge resource="bridge.name=br0" result=OK {tail}',
        f'call=CreateBridge resource="bridge.name=br0" result=ALREADY_EXISTS {tail}',
    ]


def test_grpc_private_socket_without_the_relay_has_no_role(served):
    _, cfg = served
    channel, stub = _stub(private_socket(cfg))
    with channel:
        err = _denied(stub.GetStatus, pb.GetStatusRequest())
        assert "has no role (it did not come through one of the daemon's sockets)" in \
            err.details()
        health = health_pb2_grpc.HealthStub(channel)  # needs no role
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_one_connection_runs_at_most_the_stream_limit_at_once(served):
    rig, cfg = served
    channel, stub = _stub(cfg.socket)
    with channel:
        # the connection is up and the client has the server's SETTINGS (the limit)
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=10).version
        streams = [stub.Subscribe(pb.SubscribeRequest(), timeout=60)
                   for _ in range(MAX_STREAMS_PER_CONNECTION)]
        deadline = time.monotonic() + 10
        while rig.switch.events.subscribers < len(streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rig.switch.events.subscribers == len(streams)  # all running in the daemon
        # the next call on this connection waits for a free stream (the client queues it)
        with pytest.raises(grpc.RpcError) as ei:
            stub.GetStatus(pb.GetStatusRequest(), timeout=1.5)
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # another connection is not held up (channels share connections unless told not to)
        with grpc.insecure_channel(f"unix:{cfg.socket}",
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as other:
            other_stub = pb_grpc.SwitchStub(other)
            assert other_stub.GetStatus(pb.GetStatusRequest(), timeout=10).version
        streams[0].cancel()
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=10).version
        for s in streams[1:]:
            s.cancel()


def _metrics() -> list[grpc.ServerInterceptor]:
    return [ApiMetrics(CollectorRegistry())]


@pytest.mark.parametrize("served", [list, _metrics], indirect=True, ids=["access", "metrics"])
def test_failed_admin_calls_free_their_streams(served):
    """An admin call that fails used to leave its HTTP/2 stream open until the garbage collector
    ran (the audit kept the exception: a cycle through the handler's frame), and after
    MAX_STREAMS_PER_CONNECTION of them the connection refused every call (REFUSED_STREAM).
    Found by tests/netns/test_api_fuzz.py. With the collector off, nothing else frees them.
    Both interceptors end calls through vswitchd.api.intercept: each is run."""
    import gc

    _, cfg = served
    channel, stub = _stub(cfg.socket)
    gc.disable()
    try:
        with channel:
            for i in range(3 * MAX_STREAMS_PER_CONNECTION):
                with pytest.raises(grpc.RpcError) as ei:
                    stub.DeleteBridge(pb.DeleteBridgeRequest(name=f"none{i}"), timeout=10)
                assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value.details()
    finally:
        gc.enable()
