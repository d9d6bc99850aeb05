"""vswctl trace / watch / drops against the in-process fake daemon of test_vswctl."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest
from test_vswctl import Daemon, FakeSwitch, daemon, serve, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb
from vswctl import commands as cmds

TRACE = pb.TraceResponse(
    stages=[
        pb.TraceStage(name="packet", summary="in_port=c1,udp,tp_dst=53 (60 bytes)",
                      headers=pb.TraceHeaders(fields=pb.FlowMatch(
                          in_port="c1", dl_type=0x0800, nw_proto=17,
                          tp_dst=pb.PortMatch(port=53)), length=60)),
        pb.TraceStage(name="flow table", summary="table miss: no rule matched, normal switching",
                      flow_table=pb.TraceFlowTable(table_miss=True, n_rules=3)),
        pb.TraceStage(name="vlan", summary="in_port c1 (unconfigured): untagged frame -> VLAN 0",
                      vlan=pb.TraceVlan(port_mode="unconfigured", accepted=True)),
        pb.TraceStage(name="l2", summary="dl_dst 02:00:00:00:00:09: FDB miss, flood to c2, c3",
                      l2=pb.TraceL2(dl_dst="02:00:00:00:00:09", flood=["c2", "c3"])),
        pb.TraceStage(name="verdict", summary="flood: output to c2, c3",
                      final=pb.TraceVerdict(verdict="flood", outputs=["c2", "c3"])),
    ],
    verdict="flood", outputs=["c2", "c3"])


def test_trace_sends_the_packet_and_prints_stages_in_order(daemon):  # noqa: F811
    daemon.fake.responses["Trace"] = TRACE
    rc, out, err = daemon.run("trace", "br0", "in_port=c1,udp,nw_dst=10.0.0.2,tp_dst=53",
                              "--truncate", "30")
    assert (rc, err) == (0, "")
    req = daemon.fake.only("Trace")
    assert (req.bridge, req.truncate, req.packet.in_port, req.packet.nw_dst,
            req.packet.tp_dst.port, req.packet.nw_proto) == ("br0", 30, "c1", "10.0.0.2", 53, 17)
    assert out.splitlines() == [
        "Flow: in_port=c1,udp,nw_dst=10.0.0.2,tp_dst=53",
        "",
        'bridge("br0")',
        "-------------",
        " 1. packet: in_port=c1,udp,tp_dst=53 (60 bytes)",
        " 2. flow table: table miss: no rule matched, normal switching",
        " 3. vlan: in_port c1 (unconfigured): untagged frame -> VLAN 0",
        " 4. l2: dl_dst 02:00:00:00:00:09: FDB miss, flood to c2, c3",
        " 5. verdict: flood: output to c2, c3",
        "",
        "Datapath actions: flood to c2,c3",
    ]


def test_trace_json(daemon):  # noqa: F811
    daemon.fake.responses["Trace"] = TRACE
    data = daemon.json("trace", "br0", "in_port=c1")
    assert (data["verdict"], data["outputs"], data["drop_reason"]) == ("flood", ["c2", "c3"], "")
    assert [s["name"] for s in data["stages"]] == ["packet", "flow table", "vlan", "l2",
                                                   "verdict"]
    assert data["stages"][0]["details"]["fields"] == "in_port=c1,udp,tp_dst=53"
    assert data["stages"][1]["details"]["table_miss"] is True
    assert data["stages"][3]["details"]["flood"] == ["c2", "c3"]


def _out(port: str, vlan: int | None = None, reported: bool = True) -> pb.TraceOutput:
    o = pb.TraceOutput(port=port)
    if reported:
        o.tagged, o.vlan = vlan is not None, vlan or 0
    return o


VLAN_TRACE = pb.TraceResponse(
    stages=[
        pb.TraceStage(name="l2", summary="dl_dst ff:ff:ff:ff:ff:ff: broadcast, flood to a1 "
                                         "(untagged), t1 (tagged 10), br0",
                      l2=pb.TraceL2(dl_dst="ff:ff:ff:ff:ff:ff", multicast=True,
                                    flood=["a1", "t1", "br0"],
                                    output_tags=[_out("a1"), _out("t1", 10),
                                                 _out("br0", reported=False)])),
        pb.TraceStage(name="verdict", summary="flood: output to a1 (untagged), t1 (tagged 10)",
                      final=pb.TraceVerdict(verdict="flood", outputs=["a1", "t1", "br0"],
                                            output_tags=[_out("a1"), _out("t1", 10),
                                                         _out("br0", reported=False)])),
    ],
    verdict="flood", outputs=["a1", "t1", "br0"],
    output_tags=[_out("a1"), _out("t1", 10), _out("br0", reported=False)])


def test_trace_output_tags_in_json_and_the_actions_line(daemon):  # noqa: F811
    daemon.fake.responses["Trace"] = VLAN_TRACE
    data = daemon.json("trace", "br0", "in_port=c1")
    want = [{"port": "a1", "tagged": False, "vlan": None},
            {"port": "t1", "tagged": True, "vlan": 10},
            {"port": "br0", "tagged": None, "vlan": None}]   # not reported by the daemon
    assert data["outputs"] == ["a1", "t1", "br0"]            # unchanged: names only
    assert data["output_tags"] == want
    assert data["stages"][0]["details"]["output_tags"] == want
    assert data["stages"][1]["details"]["output_tags"] == want
    rc, out, _ = daemon.run("trace", "br0", "in_port=c1")
    assert out.splitlines()[-1] == "Datapath actions: flood to a1,t1(vid=10),br0"
    # an older daemon sends no tags: the line and the JSON keys stay as they were
    daemon.fake.responses["Trace"] = TRACE
    assert daemon.json("trace", "br0", "in_port=c1")["output_tags"] == []
    assert daemon.run("trace", "br0", "in_port=c1")[1].splitlines()[-1] == (
        "Datapath actions: flood to c2,c3")


def test_trace_drop_line_and_errors(daemon):  # noqa: F811
    daemon.fake.responses["Trace"] = pb.TraceResponse(
        stages=[pb.TraceStage(name="verdict", summary="drop (flow-drop)",
                              final=pb.TraceVerdict(verdict="drop", drop_reason="flow-drop"))],
        verdict="drop", drop_reason="flow-drop")
    rc, out, _ = daemon.run("trace", "br0", "in_port=c1")
    assert out.splitlines()[-1] == "Datapath actions: drop (flow-drop)"
    rc, out, err = daemon.run("trace", "br0", "in_port=c1,nw_dst=bad")
    assert rc == 1 and "nw_dst" in err
    daemon.fake.errors["Trace"] = (grpc.StatusCode.INVALID_ARGUMENT,
                                   "nw_dst '10.0.0.0/24': a trace describes one packet")
    rc, out, err = daemon.run("trace", "br0", "in_port=c1,ip,nw_dst=10.0.0.0/24")
    assert rc == 2 and "INVALID_ARGUMENT: nw_dst" in err
    rc, _, err = daemon.run("trace", "br0", "in_port=c1", "--truncate", "5")
    assert rc == 1 and "--truncate" in err


EVENT = pb.WatchEvent(time=1700000000.25, bridge="br0", in_port="c1",
                      dl_src="02:00:00:00:00:01", dl_dst="02:00:00:00:00:02", dl_type=0x0800,
                      ip_src="10.0.0.1", ip_dst="10.0.0.2", nw_proto=17, tp_src=1024, tp_dst=53,
                      length=60, cookie=0x7, verdict="drop", drop_reason="flow-drop")


class WatchingFake(FakeSwitch):
    """Streams `stream` for Watch; then, if `hold`, waits until the client leaves."""

    def __init__(self):
        super().__init__()
        self.stream: list[pb.WatchMessage] = []
        self.hold = False
        self.left = threading.Event()

    def Watch(self, request, context):  # noqa: N802
        self.requests.append(("Watch", request))
        context.add_callback(self.left.set)
        yield from self.stream
        while self.hold and context.is_active():
            time.sleep(0.02)


@pytest.fixture
def watching(short_dir, capsys, monkeypatch):  # noqa: F811
    yield from serve(WatchingFake(), short_dir, capsys, monkeypatch)


def test_watch_lines_and_request(watching):
    watching.fake.stream = [
        pb.WatchMessage(event=EVENT),
        pb.WatchMessage(lost=12),
        pb.WatchMessage(event=pb.WatchEvent(
            time=1700000001.0, bridge="br0", in_port="c2", dl_src="02:00:00:00:00:02",
            dl_dst="ff:ff:ff:ff:ff:ff", dl_type=0x0806, length=42, table_miss=True,
            verdict="flood", n_copies=3)),
        pb.WatchMessage(event=pb.WatchEvent(
            time=1700000001.0, bridge="br0", in_port="c2", dl_src="02:00:00:00:00:02",
            dl_dst="02:00:00:00:00:01", dl_type=0x0800, ip_src="10.0.0.2",
            ip_dst="10.0.0.1", nw_proto=1, length=98, table_miss=True, verdict="forward",
            outputs=["c1"])),
        pb.WatchMessage(event=pb.WatchEvent(
            time=1700000001.0, bridge="br0", in_port="vm0", dl_src="02:00:00:00:00:03",
            dl_dst="02:00:00:00:00:01", dl_type=0x88B5, length=60, table_miss=True,
            verdict="forward", outputs=["c1"], hook="xdp")),
    ]
    rc, out, err = watching.run("watch", "br0", "--port", "c1", "--match", "udp,tp_dst=53",
                                "--drops", "-n", "6")
    assert (rc, err) == (0, "")
    req = watching.fake.only("Watch")
    assert (req.bridge, req.port, req.drops_only, req.count) == ("br0", "c1", True, 6)
    assert (req.match.nw_proto, req.match.tp_dst.port) == (17, 53)
    lines = [line.split(" ", 1)[1] for line in out.splitlines()]  # without the local time
    assert lines == [
        "br0 c1 02:00:00:00:00:01 > 02:00:00:00:00:02 10.0.0.1:1024 > 10.0.0.2:53 udp len 60 "
        "cookie 0x7 drop (flow-drop)",
        "12",
        "br0 c2 02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff type 0x0806 len 42 table-miss "
        "flood (3 copies)",
        "br0 c2 02:00:00:00:00:02 > 02:00:00:00:00:01 10.0.0.2 > 10.0.0.1 icmp len 98 "
        "table-miss forward c1",
        "br0 vm0 [xdp] 02:00:00:00:00:03 > 02:00:00:00:00:01 type 0x88b5 len 60 table-miss "
        "forward c1",
    ]
    assert out.splitlines()[1] == "lost 12"
    assert len(out.splitlines()[0].split(" ", 1)[0]) == len("12:00:00.250000")


def test_watch_json_one_object_per_line(watching):
    watching.fake.stream = [pb.WatchMessage(event=EVENT), pb.WatchMessage(lost=2)]
    rc, out, err = watching.run("-j", "watch", "br0")
    assert (rc, err) == (0, "")
    first, second = (json.loads(line) for line in out.splitlines())
    assert {k: first[k] for k in ("bridge", "in_port", "ip_dst", "tp_dst", "cookie", "verdict",
                                  "drop_reason", "outputs", "time")} == {
        "bridge": "br0", "in_port": "c1", "ip_dst": "10.0.0.2", "tp_dst": 53, "cookie": "0x7",
        "verdict": "drop", "drop_reason": "flow-drop", "outputs": [], "time": 1700000000.25}
    assert second == {"lost": 2}
    assert watching.fake.only("Watch").count == 0


def test_watch_ctrl_c_cancels_and_exits_0(watching, monkeypatch):
    watching.fake.stream = [pb.WatchMessage(event=EVENT)]
    watching.fake.hold = True
    printed = []

    def emit(text):
        printed.append(text)
        raise KeyboardInterrupt

    monkeypatch.setattr(cmds, "_emit", emit)
    rc, out, err = watching.run("watch", "br0")
    assert (rc, err) == (0, "") and len(printed) == 1
    assert watching.fake.left.wait(5), "the server did not see the client leave"


def test_watch_refused(daemon):  # noqa: F811
    daemon.fake.errors["Watch"] = (grpc.StatusCode.FAILED_PRECONDITION,
                                   "bridge kbr uses the kernel datapath")
    rc, out, err = daemon.run("watch", "kbr")
    assert rc == 2 and "FAILED_PRECONDITION: bridge kbr uses the kernel datapath" in err


def test_drops_table_and_json(daemon):  # noqa: F811
    daemon.fake.responses["GetPortStats"] = pb.GetPortStatsResponse(stats=[
        pb.PortStats(port="c2", drops=3, drops_by_reason={"same-port": 3}),
        pb.PortStats(port="c1", drops=12, drops_by_reason={"malformed": 2, "flow-drop": 10}),
        pb.PortStats(port="br0"),
    ])
    rc, out, err = daemon.run("drops", "br0")
    assert (rc, err) == (0, "")
    assert daemon.fake.only("GetPortStats").bridge == "br0"
    assert [line.split() for line in out.splitlines()] == [
        ["PORT", "REASON", "COUNT"],
        ["c1", "flow-drop", "10"],
        ["c1", "malformed", "2"],
        ["c2", "same-port", "3"],
    ]
    assert daemon.json("drops", "br0") == [
        {"port": "c1", "reason": "flow-drop", "count": 10},
        {"port": "c1", "reason": "malformed", "count": 2},
        {"port": "c2", "reason": "same-port", "count": 3},
    ]
