"""The controller library (vswapi.Switch) against the daemon's real servicer over a Switch of
fakes: typed calls, errors as exceptions with the field at fault, event streams that reconnect
and resume by revision across a daemon restart, resync, lost markers, close() from another
thread, and TLS connections with certificates made here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent import futures

import grpc
import pytest
from fakes import FakeClock, make_rig

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswapi.controller import Switch, tls_credentials
from vswapi.errors import Aborted, InvalidArgument, NotFound, ResyncNeeded, Unavailable
from vswitchd.api.servicer import SwitchServicer
from vswitchd.model import PortSpec


class Daemon:
    """The servicer of RIG's switch on a unix socket; stop() and start() it like a restart."""

    def __init__(self, rig, tls: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.rig = rig
        self.dir = tempfile.mkdtemp(prefix="vswapi-", dir="/tmp")
        self.socket = os.path.join(self.dir, "vswitchd.sock")
        self.tls = tls
        self.port = 0
        self.server: grpc.Server | None = None

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_SwitchServicer_to_server(SwitchServicer(self.rig.switch), server)
        if self.tls:
            key, cert, ca = self.tls
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                require_client_auth=True)
            self.port = server.add_secure_port(f"127.0.0.1:{self.port}", creds)
        else:
            server.add_insecure_port(f"unix:{self.socket}")
        server.start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.rig.switch.events.close()  # the daemon ends its streams as it stops
            self.server.stop(grace=None).wait()
            self.server = None

    def restart(self) -> None:
        """A new daemon on the same store (the event log starts empty)."""
        self.stop()
        self.rig.switch = self.rig.new_switch()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def daemon(monkeypatch, tmp_path):
    rig = make_rig(monkeypatch, str(tmp_path / "state"), clock=FakeClock())
    rig.switch = rig.new_switch()
    d = Daemon(rig)
    d.start()
    yield d
    d.cleanup()


@pytest.fixture
def sw(daemon):
    with Switch.connect(socket_path=daemon.socket, timeout=10) as s:
        yield s


def test_typed_calls(sw):
    br = sw.create_bridge("br0", datapath="ebpf", addresses=["10.0.0.1/24"])
    assert br.name == "br0" and br.datapath == pb.DATAPATH_EBPF and br.revision
    port = sw.create_port("br0", "c1", netns="c1", vlan=10)
    assert port.vlan == 10 and port.revision > br.revision
    ports = sw.list_ports("br0")
    assert [p.name for p in ports] == ["c1"] and ports.revision == port.revision
    changed = sw.update_port("br0", "c1", vlan=20, expected_revision=port.revision)
    assert changed.vlan == 20
    assert sw.add_flows("br0", ["priority=10,arp,actions=drop",
                                pb.Flow(priority=11, actions=[pb.FlowAction(
                                    drop=pb.NoArgument())])]) == (2, 0)
    flows = sw.list_flows("br0")
    assert [f.priority for f in flows] == [11, 10] and flows.revision >= flows[0].revision
    assert sw.delete_flows("br0", "arp", strict=True, priority=10,
                           expected_revision=flows[1].revision) == 1
    entry = sw.add_fdb("br0", "02:00:00:00:00:09", "c1", vlan=20, expected_revision=0)
    assert sw.list_fdb("br0")[0].revision == entry.revision
    assert sw.delete_fdb("br0", "02:00:00:00:00:09", vlan=20)
    assert sw.delete_port("br0", "c1") and not sw.delete_port("br0", "c1", if_exists=True)
    assert sw.status().version


def test_errors_are_exceptions_with_the_field(sw):
    sw.create_bridge("br0")
    port = sw.create_port("br0", "c1", netns="c1")
    with pytest.raises(InvalidArgument) as err:
        sw.update_port("br0", "c1", vlan=5000)
    assert err.value.field == "vlan" and "1..4094" in err.value.details
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(NotFound, match="port nope"):
        sw.get_port("br0", "nope")
    with pytest.raises(Aborted, match="changed meanwhile"):
        sw.delete_port("br0", "c1", expected_revision=port.revision + 7)
    with pytest.raises(ValueError, match="known: veth"):
        sw.create_port("br0", "c2", type="bogus")


def test_events_resume_across_a_daemon_restart(daemon, sw):
    sw.create_bridge("br0")
    stream = sw.events(kinds=["port"])
    got: list[pb.Event] = []

    def read() -> None:
        for event in stream:
            got.append(event)
            if len(got) == 3:
                return

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # subscribed
    sw.create_port("br0", "c1", netns="c1")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.stop()
    time.sleep(0.5)  # the stream notices and backs off
    # a new daemon on the same store makes a change before it serves: the stream must
    # resume from c1's revision to see it
    daemon.rig.switch = daemon.rig.new_switch()
    daemon.rig.switch.create_port("br0", PortSpec("c2", netns="c2"))
    daemon.start()
    sw.client.wait_ready(10)  # the channel's own reconnection (calls fail fast meanwhile)
    sw.create_port("br0", "c3", netns="c3")
    reader.join(20)
    assert not reader.is_alive()
    assert [e.port.port.name for e in got] == ["c1", "c2", "c3"]
    assert stream.reconnects >= 1
    revisions = [e.revision for e in got]
    assert revisions == sorted(revisions)
    stream.close()


def test_too_old_raises_resync_or_calls_on_resync(daemon, sw):
    sw.create_bridge("br0")
    old = sw.list_bridges().revision
    sw.create_port("br0", "c1", netns="c1")
    daemon.restart()  # the events before it are gone
    sw.client.wait_ready(10)
    with pytest.raises(ResyncNeeded, match="too old"):
        next(iter(sw.events(since_revision=old - 1)))
    resynced = []

    def resync() -> int:
        ports = sw.list_ports("br0")  # what a controller would re-read
        resynced.append([p.name for p in ports])
        return ports.revision

    stream = sw.events(since_revision=old - 1, on_resync=resync)
    threading.Timer(0.5, lambda: sw.create_port("br0", "c2", netns="c2")).start()
    first = next(iter(stream))
    assert resynced == [["c1"]] and first.port.port.name == "c2"
    stream.close()


def test_close_from_another_thread_ends_the_iteration(sw):
    stream = sw.events()
    ended = threading.Event()

    def read() -> None:
        for _ in stream:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.3)
    stream.close()
    assert ended.wait(5)


def test_unreachable_daemon_is_unavailable(tmp_path):
    with Switch.connect(socket_path=str(tmp_path / "none.sock"), timeout=2) as s, \
            pytest.raises(Unavailable):
        s.status()


def make_certs(d: str) -> dict[str, bytes]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        with open(os.path.join(d, f"{name}.ext"), "w") as fh:
            fh.write(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}


def test_tls_with_a_client_certificate(monkeypatch, tmp_path):
    d = str(tmp_path)
    certs = make_certs(d)
    rig = make_rig(monkeypatch, str(tmp_path / "state"))
    rig.switch = rig.new_switch()
    daemon = Daemon(rig, tls=(certs["server.key"], certs["server.pem"], certs["ca.pem"]))
    daemon.start()
    try:
        target = f"127.0.0.1:{daemon.port}"
        with Switch.connect(target=target, ca=f"{d}/ca.pem", cert=f"{d}/client.pem",
                            key=f"{d}/client.key") as s:
            assert s.status().version
        with Switch.connect(target=target, ca=f"{d}/ca.pem", timeout=3) as s, \
                pytest.raises(Unavailable):
            s.status()  # no client certificate: refused at the handshake
        with pytest.raises(ValueError, match="both"):
            tls_credentials(f"{d}/ca.pem", f"{d}/client.pem", None)
    finally:
        daemon.cleanup()
