"""Events with the real daemon: what real traffic, link changes, a container that goes away,
flow timeouts and a restart produce on a Subscribe stream and `vswctl events`; resume by
revision across a restart; a client that never reads does not grow the daemon's memory."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

import grpc
import pytest

from tests.netns.harness import VSWCTL
from vswapi import switch_pb2 as pb
from vswapi.client import connect

pytestmark = pytest.mark.root

SUBNET = "10.83.0"


class Stream:
    """A Subscribe stream read by a thread into a queue."""

    def __init__(self, socket: str, **request) -> None:
        self.client = connect(socket_path=socket)
        self.call = self.client.stub.Subscribe(pb.SubscribeRequest(**request))
        self.items: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.items.put(msg)
        except grpc.RpcError as exc:
            self.items.put(exc)

    def until(self, pred, timeout: float = 20.0) -> list[pb.Event]:
        """The events read until one passes PRED (that one included)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event in {timeout}s; saw:\n"
                                     + "\n".join(str(m) for m in seen)) from None
            if isinstance(msg, Exception):
                raise msg
            seen.append(msg)
            if pred(msg):
                return seen

    def close(self) -> None:
        self.call.cancel()
        self.client.close()


def port_event(name: str, change: int, reason: int):
    return lambda m: (m.WhichOneof("kind") == "port" and m.port.port.name == name
                      and m.port.change == change and m.port.reason == reason)


def test_real_changes_become_events_in_revision_order_and_resume_across_a_restart(host):
    h = host
    h.start()
    s = Stream(h.socket)
    try:
        h.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
        c1, c2, c3 = h.name("c1"), h.name("c2"), h.name("c3")
        h.vswctl("add-port", "br0", "c1", "--netns", c1, "--ip", f"{SUBNET}.11/24")
        h.vswctl("add-port", "br0", "c2", "--netns", c2, "--ip", f"{SUBNET}.12/24")
        subprocess.run(["ip", "netns", "add", c3], check=True)  # a container's, not ours
        h.vswctl("add-port", "br0", "c3", "--netns", c3, "--ip", f"{SUBNET}.13/24")
        got = s.until(port_event("c3", pb.CHANGE_ADDED, pb.PortEvent.API))
        assert [m.bridge_event.bridge.name for m in got if m.WhichOneof("kind") ==
                "bridge_event"] == ["br0"]
        # traffic: the datapath learns c1's and c2's MACs (IPv6 duplicate address detection
        # may have taught it some already)
        assert h.ping(c1, f"{SUBNET}.12")

        def learned() -> set[str]:
            return {m.fdb.entry.port for m in got if m.WhichOneof("kind") == "fdb"
                    and m.fdb.type == pb.FdbEvent.LEARNED}

        ports = learned()
        if not {"c1", "c2"} <= ports:
            def both(m: pb.Event) -> bool:
                if m.WhichOneof("kind") == "fdb" and m.fdb.type == pb.FdbEvent.LEARNED:
                    ports.add(m.fdb.entry.port)
                return {"c1", "c2"} <= ports

            got += s.until(both)
        assert {"c1", "c2"} <= learned()
        fdb = {e["port"]: e for e in h.json("dump-fdb", "br0")}
        by_port = {m.fdb.entry.port: m for m in got if m.WhichOneof("kind") == "fdb"}
        assert fdb["c2"]["revision"] == by_port["c2"].revision
        # a rule with an idle timeout goes by itself
        h.vswctl("add-flow", "br0", "priority=300,udp,tp_dst=9,idle_timeout=1,actions=drop")
        got += s.until(lambda m: m.WhichOneof("kind") == "flow"
                       and m.flow.reason == pb.FlowEvent.IDLE_TIMEOUT, timeout=10)
        # the container's end goes down, then up
        assert h.run_in(c1, "ip", "link", "set", "eth0", "down").returncode == 0
        got += s.until(port_event("c1", pb.CHANGE_CHANGED, pb.PortEvent.LINK_DOWN))
        assert h.run_in(c1, "ip", "link", "set", "eth0", "up").returncode == 0
        got += s.until(port_event("c1", pb.CHANGE_CHANGED, pb.PortEvent.LINK_UP))
        # the container goes away: its port goes with it
        subprocess.run(["ip", "netns", "del", c3], check=True)
        got += s.until(port_event("c3", pb.CHANGE_REMOVED, pb.PortEvent.CONTAINER_GONE))
        revisions = [m.revision for m in got]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
        # the objects carry the revision of their last change
        ports = {p["name"]: p for p in h.json("list-ports", "br0")}
        last_c1 = [m for m in got if m.WhichOneof("kind") == "port"
                   and m.port.port.name == "c1"][-1]
        assert ports["c1"]["revision"] == last_c1.revision
        h.stop()
        stopping = s.until(lambda m: m.WhichOneof("kind") == "daemon")[-1]
        assert stopping.daemon.type == pb.DaemonEvent.STOPPING
    finally:
        s.close()
    h.start()
    # resume from the last event seen: nothing missed, the next is the daemon's readiness
    s = Stream(h.socket, since_revision=stopping.revision)
    try:
        ready = s.until(lambda m: m.WhichOneof("kind") == "daemon")
        assert ready[-1].daemon.type == pb.DaemonEvent.READY
        assert ready[0].revision > stopping.revision
    finally:
        s.close()
    # older revisions are not held any more: resync
    with connect(socket_path=h.socket) as client, pytest.raises(grpc.RpcError) as err:
        next(iter(client.stub.Subscribe(pb.SubscribeRequest(
            since_revision=stopping.revision - 1))))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "too old" in err.value.details()
    # vswctl prints them, with -j as JSON
    proc = subprocess.Popen([VSWCTL, "--socket", h.socket, "events", "br0", "--kind", "port",
                             "-n", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    h._helpers.append(proc)
    time.sleep(1)
    h.vswctl("set-port", "br0", "c2", "--vlan", "10")
    out, err_text = proc.communicate(timeout=20)
    assert proc.returncode == 0, err_text
    assert " port changed br0 c2 state up (api)" in out, out
    res = h.vswctl("-j", "events", "--since", str(stopping.revision), "-n", "1")
    assert json.loads(res.stdout.splitlines()[0])["daemon"]["type"] == "READY"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_does_not_grow_the_daemon(host):
    """100 000 events (flow rules added and deleted in batches) while one subscriber reads
    nothing: the daemon's memory stays bounded, and when the client reads at last it gets a
    `lost` marker, then the newest events."""
    h = host
    h.start()
    h.vswctl("add-br", "br0")
    flows = "\n".join(f"priority=100,udp,tp_dst={p},actions=drop" for p in range(1, 10001))
    (h.workdir / "flows.txt").write_text(flows + "\n")
    client = connect(socket_path=h.socket)
    stuck = client.stub.Subscribe(pb.SubscribeRequest())  # started, never read
    try:
        def burst() -> None:
            h.vswctl("add-flows", "br0", str(h.workdir / "flows.txt"))
            h.vswctl("del-flows", "br0")

        burst()  # warm: the first 20 000 events fill the history
        start_rev = client.stub.ListBridges(pb.ListBridgesRequest()).revision
        rss = [rss_kib(h.proc.pid)]
        for _ in range(5):
            burst()
            rss.append(rss_kib(h.proc.pid))
        end_rev = client.stub.ListBridges(pb.ListBridgesRequest()).revision
        print(f"events: {end_rev - start_rev}; daemon RSS after each 20 000 (KiB): {rss}, "
              f"+{(rss[-1] - rss[0]) / 1024:.1f} MiB, with one client that never read")
        assert end_rev - start_rev >= 100_000
        # bounded: a queue per client would hold the 100 000 events (~1 KiB each in Python);
        # what grows is the flow churn's own (the allocator's arenas), not the client's
        assert rss[-1] - rss[0] < 32 * 1024, rss
        # reading at last: what the transport held when the client stopped (gRPC's window
        # grows to megabytes), lost markers for what went by meanwhile, then the newest
        # events; never a silent gap (these changes used every revision)
        buffered = lost = 0
        expect = None
        for msg in stuck:
            if msg.WhichOneof("kind") == "lost":
                assert expect is None or msg.lost.from_revision == expect, msg
                lost += msg.lost.count
                expect = msg.lost.to_revision + 1
                continue
            assert expect is None or msg.revision == expect, (msg.revision, expect)
            expect = msg.revision + 1
            if msg.revision >= end_rev:
                break
            buffered += 1
        print(f"the stuck client then read {buffered} events and {lost} lost, up to revision "
              f"{end_rev}")
        assert lost > 0
    finally:
        stuck.cancel()
        client.close()
