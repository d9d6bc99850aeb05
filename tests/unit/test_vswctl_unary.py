"""vswctl.unary, vswctl's own gRPC client for unary calls, against a real grpcio server: flow
control both ways, many calls on one connection, errors and their messages, deadlines, a daemon
that is not there or goes away. And that the unary commands do not load grpcio at all."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import hpack
import pytest

from tests.unit.test_vswctl import FakeSwitch
from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc
from vswctl import unary
from vswctl.daemon import Daemon
from vswctl.unary import CallError, Code, Connection

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, sock: str):
        self.fake = FakeSwitch()
        self.socket = sock
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                options=[("grpc.max_receive_message_length", -1)])
        switch_pb2_grpc.add_SwitchServicer_to_server(self.fake, self.grpc)
        assert self.grpc.add_insecure_port(f"unix:{sock}") != 0
        self.grpc.start()


@pytest.fixture
def server():
    d = tempfile.mkdtemp(prefix="vswu-", dir="/tmp")  # a socket path under 108 bytes
    s = Server(os.path.join(d, "vswitchd.sock"))
    yield s
    s.grpc.stop(grace=None)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(server):
    d = Daemon(server.socket)
    yield d
    d.close()


def test_a_request_larger_than_the_windows_arrives_whole(server, daemon):
    """9 MB: more than the 64 KiB windows before the server's SETTINGS, and than the 4 MiB ones
    grpc's server opens, so the request waits for WINDOW_UPDATEs as the server reads it."""
    server.fake.responses["CreatePort"] = pb.Port(name="p1")
    requests = [pb.CreatePortRequest(port=pb.Port(name="p1", labels={"big": c * 9_000_000}))
                for c in "xyz"]
    for request in requests:  # on one connection: each one's frames count against its window
        assert daemon.stub.CreatePort(request, timeout=30).name == "p1"
    assert [r for _, r in server.fake.requests] == requests


def test_a_large_reply_arrives_whole(server, daemon):
    ports = [pb.Port(name=f"p{i}", bridge="br0", type=pb.PORT_TYPE_TAP, ifindex=i,
                     labels={"k": "v" * 50}) for i in range(30_000)]
    server.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=ports, revision=7)
    reply = daemon.stub.ListPorts(pb.ListPortsRequest(bridge="br0"), timeout=30)
    assert reply.ByteSize() > 2_000_000
    assert reply == server.fake.responses["ListPorts"]


def test_calls_take_turns_on_one_connection(server, daemon):
    server.fake.responses["ListBridges"] = pb.ListBridgesResponse(
        bridges=[pb.Bridge(name="br0")], revision=3)
    for i in range(100):
        assert daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=5) == pb.Status()
        assert daemon.stub.ListBridges(pb.ListBridgesRequest(), timeout=5).revision == 3
        if i == 0:
            sock = daemon.unary._sock
    assert daemon.unary._sock is sock and daemon.unary._next_stream == 401
    assert len(server.fake.requests) == 200


@pytest.mark.parametrize("message", [
    "bridge br9 does not exist",
    "100% of 'brü0' \u2603 is\tnot\nfine",  # percent-encoded on the wire, UTF-8 underneath
    "",
])
def test_a_refusal_keeps_its_code_and_message(server, daemon, message):
    server.fake.errors["GetBridge"] = (grpc.StatusCode.NOT_FOUND, message)
    with pytest.raises(CallError) as exc:
        daemon.stub.GetBridge(pb.GetBridgeRequest(name="br9"), timeout=5)
    assert (exc.value.code(), exc.value.details()) == (Code.NOT_FOUND, message)
    # the connection is still good for the next call
    assert daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=5) == pb.Status()


def test_no_answer_within_the_timeout(server, daemon):
    server.fake.delay["ListBridges"] = 1.0
    t0 = time.monotonic()
    with pytest.raises(CallError) as exc:
        daemon.stub.ListBridges(pb.ListBridgesRequest(), timeout=0.2)
    assert exc.value.code() == Code.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 0.8
    del server.fake.delay["ListBridges"]
    assert daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=5) == pb.Status()  # reconnects


def test_an_rpc_the_server_lacks_is_unimplemented(server):
    with pytest.raises(CallError) as exc:
        Connection(server.socket).call("/vswitchd.v1.Switch/NoSuchRpc", b"", timeout=5)
    assert exc.value.code() == Code.UNIMPLEMENTED


def test_no_daemon_is_unavailable(tmp_path):
    with pytest.raises(CallError) as exc:
        Connection(str(tmp_path / "absent.sock")).call("/x/Y", b"", timeout=5)
    assert (exc.value.code(), exc.value.details()) == (Code.UNAVAILABLE,
                                                       "No such file or directory")


def test_a_daemon_that_goes_away_is_unavailable(server, daemon):
    assert daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=5) == pb.Status()
    server.grpc.stop(grace=None).wait()
    with pytest.raises(CallError) as exc:
        daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert exc.value.code() == Code.UNAVAILABLE


def test_a_stream_failure_is_a_call_error_too(server, daemon):
    server.fake.errors["Subscribe"] = (grpc.StatusCode.OUT_OF_RANGE, "revision 5 is gone")
    with pytest.raises(CallError) as exc:
        list(daemon.stub.Subscribe(pb.SubscribeRequest(since_revision=5)))
    assert (exc.value.code(), exc.value.details()) == (Code.OUT_OF_RANGE, "revision 5 is gone")


def test_unary_commands_do_not_load_grpcio(server):
    """The point of vswctl.unary: a unary command never imports grpc (40-60 ms)."""
    server.fake.responses["ListBridges"] = pb.ListBridgesResponse(bridges=[pb.Bridge(name="b7")])
    code = ("import sys; from vswctl.main import _main; "
            f"rc = _main(['--socket', {server.socket!r}, 'list-br']); "
            "print(rc, 'grpc' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "b7" in out.stdout
    assert out.stderr.strip() == "0 False"


def test_the_launcher_runs_vswctl_without_site(tmp_path, server):
    launcher = tmp_path / "vswctl"
    subprocess.run([sys.executable, "-m", "vswctl.launcher", str(launcher)], check=True)
    assert launcher.read_text().splitlines()[0] == f"#!{sys.executable} -S"
    server.fake.responses["GetStatus"] = pb.Status(version="9.9.9")
    out = subprocess.run([str(launcher), "--socket", server.socket, "status"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["version:", "9.9.9"]


class StingyServer(threading.Thread):
    """A raw HTTP/2 server that opens its windows WINDOW bytes at a time and fails the test's
    assertion if a client sends more than it allowed; it answers each call with an empty OK."""

    WINDOW = 1000

    def __init__(self, sock: str):
        super().__init__(daemon=True)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(sock)
        self.listener.listen(1)
        self.received: list[int] = []  # each call's message bytes
        self.error: str | None = None

    def run(self) -> None:
        conn, _ = self.listener.accept()
        f = conn.makefile("rb")
        encoder = hpack.Encoder()
        assert f.read(24) == unary.PREFACE
        settings = struct.pack(">HIHI", unary.SETTINGS_INITIAL_WINDOW_SIZE, self.WINDOW,
                               unary.SETTINGS_MAX_FRAME_SIZE, 16384)
        conn.sendall(unary._frame(unary.SETTINGS, 0, 0, settings))
        # the client may count on 65 535 until it acknowledges our SETTINGS (RFC 9113 6.9.2)
        initial, conn_window, windows, got = 65535, 65535, {}, {}
        while True:
            head = f.read(9)
            if len(head) < 9:
                return
            length, ftype, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            sid = int.from_bytes(head[5:], "big")
            f.read(length)
            if ftype == unary.SETTINGS and flags & unary.ACK:
                for open_sid in windows:
                    windows[open_sid] += self.WINDOW - initial
                initial = self.WINDOW
            if ftype == unary.HEADERS:
                windows[sid], got[sid] = initial, 0
            if ftype != unary.DATA:
                continue
            if length > min(conn_window, windows[sid]):
                self.error = f"stream {sid}: {length} bytes sent past the window"
            conn_window -= length
            windows[sid] -= length
            got[sid] += length
            if flags & unary.END_STREAM:
                self.received.append(got[sid] - 5)
                block = encoder.encode([(":status", "200"), ("content-type", "application/grpc"),
                                        ("grpc-status", "0")])
                conn.sendall(unary._frame(unary.HEADERS, unary.END_HEADERS, sid, block)
                             + unary._frame(unary.DATA, 0, sid, b"\0\0\0\0\0")
                             + unary._frame(unary.HEADERS, unary.END_HEADERS | unary.END_STREAM,
                                            sid, encoder.encode([("grpc-status", "0")])))
            elif length:  # give back what was read, in two steps
                grant = struct.pack(">I", length)
                conn_window += length
                windows[sid] += length
                conn.sendall(unary._frame(unary.WINDOW_UPDATE, 0, 0, grant)
                             + unary._frame(unary.WINDOW_UPDATE, 0, sid, grant))


def test_the_client_keeps_within_small_windows(tmp_path):
    server = StingyServer(str(tmp_path / "s.sock"))
    server.start()
    connection = Connection(str(tmp_path / "s.sock"))
    try:
        for size in (70_000, 5_000, 123_456):  # past the default 65 535 and the 1 000 given
            assert connection.call("/vswitchd.v1.Switch/X", b"a" * size, timeout=10) == b""
    finally:
        connection.close()
    server.join(5)
    assert server.error is None
    assert server.received == [70_000, 5_000, 123_456]
