"""vswapi.client: socket resolution, targets, and calls through a real channel to a fake daemon."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent import futures

import grpc
import pytest

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc
from vswapi.client import DEFAULT_SOCKET, SOCKET_ENV, SwitchClient, connect


class StatusOnly(switch_pb2_grpc.SwitchServicer):
    def GetStatus(self, request, context):
        return pb.Status(version="9.9.9", kernel="test")


@pytest.fixture
def server_socket():
    d = tempfile.mkdtemp(prefix="vswapi-", dir="/tmp")
    sock = os.path.join(d, "vswitchd.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    switch_pb2_grpc.add_SwitchServicer_to_server(StatusOnly(), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    yield sock
    server.stop(grace=None)
    shutil.rmtree(d, ignore_errors=True)


def test_default_socket_without_env(monkeypatch):
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    with connect() as c:
        assert DEFAULT_SOCKET == "/run/vswitchd/vswitchd.sock"
        assert (c.socket_path, c.target) == (DEFAULT_SOCKET, f"unix:{DEFAULT_SOCKET}")


def test_empty_env_means_default(monkeypatch):
    monkeypatch.setenv(SOCKET_ENV, "")
    with connect() as c:
        assert c.socket_path == DEFAULT_SOCKET


def test_env_socket_and_explicit_socket(monkeypatch):
    monkeypatch.setenv(SOCKET_ENV, "/tmp/from-env.sock")
    with connect() as c:
        assert c.target == "unix:/tmp/from-env.sock"
        assert c.address == "/tmp/from-env.sock"
    with connect("/tmp/explicit.sock") as c:
        assert c.target == "unix:/tmp/explicit.sock"


def test_target_forms():
    with connect(target="unix:///run/x.sock") as c:
        assert c.socket_path == "/run/x.sock"
    with connect(target="switch1:50051") as c:
        assert (c.socket_path, c.target, c.address) == (None, "switch1:50051", "switch1:50051")
    with pytest.raises(ValueError, match="either socket_path or target"):
        connect("/tmp/a.sock", target="unix:/tmp/b.sock")


def test_calls_through_stub_and_shortcut(server_socket):
    with connect(server_socket) as c:
        assert isinstance(c, SwitchClient)
        c.wait_ready(timeout=5)
        assert c.stub.GetStatus(pb.GetStatusRequest(), timeout=5).version == "9.9.9"
        assert c.GetStatus(pb.GetStatusRequest(), timeout=5).kernel == "test"
        with pytest.raises(grpc.RpcError) as exc:
            c.ListBridges(pb.ListBridgesRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(AttributeError):
            c.NoSuchRpc  # noqa: B018
        with pytest.raises(AttributeError):
            c.no_such_attribute  # noqa: B018


def test_unreachable_socket_is_unavailable(tmp_path):
    with connect(str(tmp_path / "none.sock")) as c:
        with pytest.raises(grpc.RpcError) as exc:
            c.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.FutureTimeoutError):
            c.wait_ready(timeout=0.2)
