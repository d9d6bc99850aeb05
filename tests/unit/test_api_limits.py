"""The gRPC message size limits, set deliberately (vswitchd.api.server): a request over
MAX_REQUEST_BYTES is refused and the daemon goes on; a reply has no limit, and the vswapi client
takes one larger than gRPC's 4 MiB default (a big bridge's FDB)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import grpc
import pytest
from fakes import make_rig

from vswapi import switch_pb2 as pb
from vswapi.client import connect
from vswapi.controller import Switch
from vswitchd.api.server import MAX_REQUEST_BYTES, start
from vswitchd.model import BridgeSpec, PortSpec


@pytest.fixture
def served(monkeypatch, tmp_path):
    rig = make_rig(monkeypatch, str(tmp_path))
    d = tempfile.mkdtemp(prefix="vswlim-", dir="/tmp")  # short path: sun_path is 108 bytes
    cfg = dataclasses.replace(rig.cfg, socket=str(Path(d) / "vswitchd.sock"))
    server = start(rig.switch, cfg)
    try:
        yield rig, cfg.socket
    finally:
        server.stop(grace=None)
        shutil.rmtree(d, ignore_errors=True)


def test_a_reply_over_4_mib_reaches_the_client(served):
    rig, socket = served
    br = rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    port = rig.switch.create_port("br0", PortSpec("t1", "tap"))
    n = 150_000  # 38 bytes an entry
    for i in range(n):
        rig.dp.learn(br.ifindex, (0x02EF << 32 | i).to_bytes(6, "big").hex(":"), port.ifindex)
    sw = Switch.connect(socket, timeout=60.0)
    try:
        reply = sw.client.stub.ListFdbEntries(pb.ListFdbEntriesRequest(bridge="br0"))
        assert reply.ByteSize() > 4 << 20
        assert len(reply.entries) == n
    finally:
        sw.close()


def test_a_request_over_the_limit_is_refused_and_the_daemon_goes_on(served):
    _, socket = served
    client = connect(socket)
    try:
        huge = pb.CreateBridgeRequest(bridge=pb.Bridge(name="x" * (MAX_REQUEST_BYTES + 1)))
        with pytest.raises(grpc.RpcError) as err:
            client.stub.CreateBridge(huge, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        below = pb.CreateBridgeRequest(bridge=pb.Bridge(name="x" * (5 << 20)))
        with pytest.raises(grpc.RpcError) as err:  # read (over gRPC's default), then refused
            client.stub.CreateBridge(below, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert client.stub.ListBridges(pb.ListBridgesRequest(), timeout=30).bridges == []
    finally:
        client.close()
