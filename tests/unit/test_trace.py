"""Tracing on the fakes: trace stages from scripted datapath results, request validation, watch
filters, the watch dispatcher (bitmasks, bounded queues, lost notices) and the Watch stream."""

from __future__ import annotations

import errno
import threading
import time

import grpc
import pytest
from fakes import FakeClock, TraceResult, event, make_rig, serve_switch

from vswapi import switch_pb2 as pb
from vswitchd.api import convert
from vswitchd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from vswitchd.flows.model import FlowRequest
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.trace import frames
from vswitchd.trace.report import OutputTag, output_tag
from vswitchd.trace.watch import Lost, Stream, WatchHub

C1, C2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
UDP53 = {"in_port": "c1", "dl_src": (C1, ""), "dl_dst": (C2, ""), "dl_type": 0x0800,
         "nw_proto": 17, "nw_src": "10.0.0.1", "nw_dst": "10.0.0.2", "tp_dst": (53, 0)}


def key(**kw):
    base = {"in_port": 0, "dl_src": int(C1.replace(":", ""), 16),
            "dl_dst": int(C2.replace(":", ""), 16), "dl_type": 0x0800, "dl_vlan": 0,
            "nw_proto": 17, "ip_src": 0x0A000001 << 96, "ip_dst": 0x0A000002 << 96,
            "tp_src": 1024, "tp_dst": 53}
    base.update(kw)
    return base


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), clock=FakeClock())
    r.switch = r.new_switch()
    r.switch.create_bridge(BridgeSpec("br0"))
    for name in ("c1", "c2", "c3"):
        r.switch.create_port("br0", PortSpec(name, netns=name))
    return r


def idx(rig, name):
    return rig.links.get(name).ifindex


def stages(report):
    return [(s.name, s.summary) for s in report.stages]


# ---- trace --------------------------------------------------------------------------------


def test_known_unicast_builds_the_frame_and_names_the_port(rig):
    rig.dp.trace_result = TraceResult("forward", out_ifindex=idx(rig, "c2"), fdb_hit=True,
                                      key=key())
    rep = rig.switch.trace("br0", UDP53)
    frame, ifindex, egress = rig.dp.traced[-1]
    assert frame == frames.build(frames.FrameSpec(dl_src=C1, dl_dst=C2, dl_type=0x0800,
                                                  nw_proto=17, nw_src="10.0.0.1",
                                                  nw_dst="10.0.0.2", tp_dst=53))
    assert (ifindex, egress) == (idx(rig, "c1"), False)
    assert (rep.verdict, rep.outputs, rep.drop_reason) == ("forward", ("c2",), "")
    assert stages(rep) == [
        ("packet", "in_port=c1,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,udp,"
                   "nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1024,tp_dst=53 (60 bytes)"),
        ("flow table", "empty table: normal switching"),
        ("vlan", "in_port c1 (all): untagged frame -> VLAN 0 (untagged)"),
        ("l2", "dl_dst 02:00:00:00:00:02: FDB hit, port c2"),
        ("verdict", "forward: output to c2"),
    ]
    l2 = rep.stages[3].detail
    assert (l2.fdb_hit, l2.port, l2.flood) == (True, "c2", ())


def test_unknown_unicast_and_broadcast_flood_with_names(rig):
    flood = [idx(rig, "c2"), idx(rig, "c3"), idx(rig, "br0")]
    rig.dp.trace_result = TraceResult("flood", flood=flood, key=key())
    rep = rig.switch.trace("br0", UDP53)
    assert rep.outputs == ("c2", "c3", "br0")
    assert rep.stages[3].summary == ("dl_dst 02:00:00:00:00:02: FDB miss, flood to c2, c3, br0")
    assert rep.stages[3].detail.flood == ("c2", "c3", "br0")

    rig.dp.trace_result = TraceResult("flood", flood=flood, key=key(dl_dst=(1 << 48) - 1))
    rep = rig.switch.trace("br0", {**UDP53, "dl_dst": ("ff:ff:ff:ff:ff:ff", "")})
    assert rep.stages[3].summary.startswith("dl_dst ff:ff:ff:ff:ff:ff: broadcast, flood to c2")
    assert rep.stages[3].detail.multicast


def test_flow_drop_and_flow_output_name_the_rule(rig):
    sw = rig.switch
    sw.flows_add("br0", [
        FlowRequest(priority=200, cookie=0x7, match={"in_port": "c1", "dl_type": 0x0800,
                                                     "nw_proto": 17, "tp_dst": (53, 0)},
                    actions=[("drop", None)]),
        FlowRequest(priority=100, cookie=0x9, match={"in_port": "c2"},
                    actions=[("output", "c3")]),
    ])
    ids = {r.cookie: r.rule_id for r in sw.snapshot()["br0"].flows}
    rig.dp.trace_result = TraceResult("drop", "flow-drop", rule_id=ids[7], priority=200,
                                      key=key())
    rep = sw.trace("br0", UDP53)
    assert [s.name for s in rep.stages] == ["packet", "flow table", "verdict"]
    assert rep.stages[1].summary == ("priority 200, cookie 0x7: in_port=c1,udp,tp_dst=53 "
                                     "actions=drop")
    ft = rep.stages[1].detail
    assert (ft.table_miss, ft.priority, ft.cookie, ft.actions, ft.n_rules) == (
        False, 200, 7, "drop", 2)
    assert (rep.verdict, rep.outputs, rep.drop_reason) == ("drop", (), "flow-drop")
    assert rep.stages[-1].summary == "drop (flow-drop)"

    rig.dp.trace_result = TraceResult("forward", rule_id=ids[9], priority=100,
                                      outputs=[idx(rig, "c3")], key=key())
    rep = sw.trace("br0", {**UDP53, "in_port": "c2"})
    assert [s.name for s in rep.stages] == ["packet", "flow table", "verdict"]
    assert rep.outputs == ("c3",)
    assert rep.stages[1].summary == "priority 100, cookie 0x9: in_port=c2 actions=output:c3"


def test_vlan_mismatch_same_port_and_malformed(rig):
    rig.dp.trace_result = TraceResult("drop", "vlan-mismatch", key=key(dl_vlan=20))
    rep = rig.switch.trace("br0", {**UDP53, "dl_vlan": 20})
    assert frames.build(frames.FrameSpec(dl_vlan=20))[12:16] == b"\x81\x00\x00\x14"
    assert rig.dp.traced[-1][0][12:16] == b"\x81\x00\x00\x14"
    assert [s.name for s in rep.stages] == ["packet", "flow table", "vlan", "verdict"]
    v = rep.stages[2].detail
    assert (v.tagged, v.frame_vid, v.accepted) == (True, 20, False)
    assert "does not accept a tagged 20 frame: vlan-mismatch" in rep.stages[2].summary

    rig.dp.trace_result = TraceResult("drop", "same-port", fdb_hit=True,
                                      out_ifindex=idx(rig, "c1"), key=key())
    rep = rig.switch.trace("br0", UDP53)
    assert rep.stages[3].summary.endswith("FDB hit, port c1 (the input port: dropped, same-port)")

    rig.dp.trace_result = TraceResult("drop", "host-mac-spoof", key=key())
    rep = rig.switch.trace("br0", UDP53)
    assert [s.name for s in rep.stages] == ["packet", "flow table", "vlan", "l2", "verdict"]
    assert rep.stages[3].summary == (f"dl_src {C1} is the host's own MAC (the bridge's), sent by "
                                     "port c1: dropped, host-mac-spoof")
    assert rep.stages[4].summary == "drop (host-mac-spoof)"

    rig.dp.trace_result = TraceResult("drop", "malformed", key={"dl_src": 1, "dl_dst": 2,
                                                                 "dl_type": 0x0800})
    rep = rig.switch.trace("br0", UDP53, truncate=20)
    assert len(rig.dp.traced[-1][0]) == 20
    assert [s.name for s in rep.stages] == ["packet", "verdict"]
    assert rep.stages[0].detail.truncated and rep.stages[0].detail.length == 20
    assert "malformed" in rep.stages[0].summary
    assert rep.drop_reason == "malformed"


def test_outputs_carry_the_tag_the_datapath_reported(rig):
    c2, c3, br0 = idx(rig, "c2"), idx(rig, "c3"), idx(rig, "br0")
    # a tagged frame of VLAN 10 flooded: popped for c2, kept for c3 ("as-is"), br0 unreported
    rig.dp.trace_result = TraceResult("flood", flood=[c2, c3, br0], vlan=10, key=key(dl_vlan=10),
                                      tags={c2: "untagged", c3: "as-is"})
    rep = rig.switch.trace("br0", {**UDP53, "dl_vlan": 10})
    want = (OutputTag("c2", False), OutputTag("c3", True, 10), OutputTag("br0", None))
    assert rep.output_tags == want and rep.outputs == ("c2", "c3", "br0")
    assert rep.stages[3].detail.output_tags == want == rep.stages[4].detail.output_tags
    assert rep.stages[3].summary.endswith("FDB miss, flood to c2 (untagged), c3 (tagged 10), br0")
    assert rep.stages[4].summary == "flood: output to c2 (untagged), c3 (tagged 10), br0"

    # an untagged frame pushed into VLAN 20 towards the FDB port
    rig.dp.trace_result = TraceResult("forward", out_ifindex=c2, fdb_hit=True, vlan=20,
                                      key=key(), tags={c2: "tagged:20"})
    rep = rig.switch.trace("br0", UDP53)
    assert rep.output_tags == (OutputTag("c2", True, 20),)
    assert rep.stages[3].summary.endswith("FDB hit, port c2 (tagged 20)")
    assert rep.stages[4].summary == "forward: output to c2 (tagged 20)"

    # no VLAN in play: the tags are in the report, the summaries stay as without VLANs
    rig.dp.trace_result = TraceResult("forward", out_ifindex=c2, fdb_hit=True, key=key(),
                                      tags={c2: "as-is"})
    rep = rig.switch.trace("br0", UDP53)
    assert rep.output_tags == (OutputTag("c2", False),)
    assert rep.stages[4].summary == "forward: output to c2"

    # a drop has no outputs
    rig.dp.trace_result = TraceResult("drop", "flow-drop", key=key(), tags={c2: "as-is"})
    assert rig.switch.trace("br0", UDP53).output_tags == ()


@pytest.mark.parametrize("tag, arrived, expected", [
    ("as-is", None, (False, None)),
    ("as-is", 0, (True, 0)),            # a priority-tagged frame left as it came
    ("as-is", 30, (True, 30)),
    ("untagged", 30, (False, None)),
    ("tagged:4094", None, (True, 4094)),
    (None, 30, (None, None)),           # not reported
    ("tagged:x", None, (None, None)),
])
def test_output_tag_from_the_datapath_text(tag, arrived, expected):
    o = output_tag("p", tag, arrived)
    assert (o.port, o.tagged, o.vlan) == ("p", *expected)


def test_a_frame_the_kernel_refuses_to_run_names_truncate(rig, monkeypatch):
    def refuse(frame, ifindex, *, egress=False):
        raise OSError(errno.EINVAL, "BPF_PROG_TEST_RUN failed: Invalid argument")

    monkeypatch.setattr(rig.dp, "trace", refuse)
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.trace("br0", UDP53, truncate=20)
    assert ei.value.field == "truncate" and "34 bytes for IPv4" in str(ei.value)
    with pytest.raises(OSError):  # an uncut frame refused is not the user's fault
        rig.switch.trace("br0", UDP53)


def test_trace_from_the_host_runs_the_egress_program(rig):
    rig.switch.trace("br0", {**UDP53, "in_port": "br0"})
    assert rig.dp.traced[-1][1:] == (idx(rig, "br0"), True)


@pytest.mark.parametrize("fields, field", [
    ({"nw_dst": "10.0.0.0/24"}, "nw_dst"),
    ({"dl_dst": (C2, "ff:ff:ff:00:00:00")}, "dl_dst"),
    ({"tp_dst": (0x50, 0xfff0)}, "tp_dst"),
    ({"nw_src": "0.0.0.0/0"}, "nw_src"),
])
def test_masks_and_prefixes_are_refused_naming_the_field(rig, fields, field):
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.trace("br0", {**UDP53, **fields})
    assert ei.value.field == field
    assert "exact value" in str(ei.value)
    assert rig.dp.traced == []


def test_trace_refusals(rig):
    sw = rig.switch
    with pytest.raises(InvalidArgument, match="in_port"):
        sw.trace("br0", {"dl_type": 0x0800})
    with pytest.raises(InvalidArgument, match="no port nosuch"):
        sw.trace("br0", {"in_port": "nosuch"})
    with pytest.raises(InvalidArgument, match="tp_dst=53 needs"):
        sw.trace("br0", {"in_port": "c1", "tp_dst": (53, 0)})
    with pytest.raises(InvalidArgument, match="truncate"):
        sw.trace("br0", {"in_port": "c1"}, truncate=10)
    with pytest.raises(NotFound):
        sw.trace("nosuch", {"in_port": "c1"})
    sw.create_bridge(BridgeSpec("kbr", datapath="kernel"))
    sw.create_port("kbr", PortSpec("k1", netns="k1"))
    with pytest.raises(FailedPrecondition, match="kernel datapath.*--datapath ebpf"):
        sw.trace("kbr", {"in_port": "k1"})
    with pytest.raises(FailedPrecondition, match="kernel datapath"):
        sw.watch_open("kbr")


def test_trace_over_grpc_maps_stages_and_codes(rig):
    rig.dp.trace_result = TraceResult("flood", flood=[idx(rig, "c2")], key=key())
    with serve_switch(rig.switch) as stub:
        req = pb.TraceRequest(bridge="br0", packet=pb.FlowMatch(
            in_port="c1", dl_type=0x0800, nw_proto=17, nw_dst="10.0.0.2",
            tp_dst=pb.PortMatch(port=53)))
        r = stub.Trace(req)
        assert [s.name for s in r.stages] == ["packet", "flow table", "vlan", "l2", "verdict"]
        assert r.stages[0].headers.fields.tp_dst.port == 53
        assert r.stages[0].headers.fields.nw_dst == "10.0.0.2"
        assert r.stages[1].flow_table.table_miss
        assert list(r.stages[3].l2.flood) == ["c2"]
        assert (r.verdict, list(r.outputs), r.drop_reason) == ("flood", ["c2"], "")
        assert r.stages[4].final.verdict == "flood"
        assert [(o.port, o.HasField("tagged")) for o in r.output_tags] == [("c2", False)]
        rig.dp.trace_result = TraceResult("flood", flood=[idx(rig, "c2"), idx(rig, "c3")],
                                          vlan=7, key=key(),
                                          tags={idx(rig, "c2"): "tagged:7",
                                                idx(rig, "c3"): "as-is"})
        r = stub.Trace(req)
        for outs in (r.output_tags, r.stages[3].l2.output_tags, r.stages[4].final.output_tags):
            assert [(o.port, o.tagged, o.vlan) for o in outs] == [("c2", True, 7),
                                                                  ("c3", False, 0)]
            assert all(o.HasField("tagged") for o in outs)
        rig.dp.trace_result = TraceResult("flood", flood=[idx(rig, "c2")], key=key())
        req.packet.nw_dst = "10.0.0.0/8"
        with pytest.raises(grpc.RpcError) as ei:
            stub.Trace(req)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nw_dst" in ei.value.details()
        with pytest.raises(grpc.RpcError) as ei:
            stub.Trace(pb.TraceRequest(bridge="nosuch", packet=pb.FlowMatch(in_port="c1")))
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND


# ---- watch filters ------------------------------------------------------------------------


def test_watch_filter_from_port_and_match(rig):
    s = rig.switch.watch_open("br0", "c1", {"dl_type": 0x0800, "nw_dst": "10.0.0.0/24",
                                            "nw_proto": 1}, drops_only=True)
    try:
        (slot, flt), = rig.dp.watchers.items()
        assert flt.bridge == idx(rig, "br0") and flt.in_port == idx(rig, "c1")
        assert flt.drops_only
        assert dict((f, (v, m)) for f, v, m in flt.fields) == {
            "dl_type": (0x0800, 0xFFFF), "nw_proto": (1, 0xFF),
            "ip_dst": (0x0A000000 << 96, 0xFFFFFF00 << 96)}
    finally:
        s.close()
    assert rig.dp.watchers == {}
    s = rig.switch.watch_open("br0", "", {"in_port": "c2"})
    assert rig.dp.watchers[0].in_port == idx(rig, "c2") and rig.dp.watchers[0].fields == ()
    s.close()
    with pytest.raises(InvalidArgument, match="contradicts"):
        rig.switch.watch_open("br0", "c1", {"in_port": "c2"})
    with pytest.raises(NotFound, match="port nosuch"):
        rig.switch.watch_open("br0", "nosuch")
    assert rig.dp.watchers == {}


def test_all_slots_taken_is_resource_exhausted(rig):
    sessions = [rig.switch.watch_open("br0") for _ in range(rig.dp.max_watchers)]
    try:
        with pytest.raises(ResourceExhausted) as ei:  # the ninth: the configured limit
            rig.switch.watch_open("br0")
        assert "8 watch streams are open" in str(ei.value)
        assert "watch.max_watchers" in str(ei.value)
        sessions.pop().close()
        sessions.append(rig.switch.watch_open("br0"))  # a slot came free
    finally:
        for s in sessions:
            s.close()
    assert rig.dp.watchers == {} and rig.switch.watch_slots() == []


# ---- the dispatcher -------------------------------------------------------------------------


class StubDp:
    def __init__(self):
        self.slots, self.lost, self.polled = set(), {}, []

    def watch_add(self, flt):
        slot = min(set(range(8)) - self.slots)
        self.slots.add(slot)
        return slot

    def watch_remove(self, slot):
        self.slots.discard(slot)

    def watch_lost(self, slot):
        return self.lost.get(slot, 0)

    def watch_poll(self, timeout_ms):
        time.sleep(timeout_ms / 1000)
        return []


def test_dispatch_by_bitmask_to_each_stream():
    dp = StubDp()
    hub = WatchHub(dp)
    a, b, c = (hub.open(None, label=x) for x in "abc")
    assert (a.slot, b.slot, c.slot) == (0, 1, 2)
    hub.dispatch([event(0b011, tp_dst=1), event(0b100, tp_dst=2), event(0b110, tp_dst=3),
                  event(0b1000, tp_dst=4)])  # slot 3: nobody (a stale bit) -> ignored
    got = {s.label: [] for s in (a, b, c)}
    for s in (a, b, c):
        while (item := s.get(timeout=0)) is not None:
            got[s.label].append(item.tp_dst)
    assert got == {"a": [1], "b": [1, 3], "c": [2, 3]}
    b.close()
    assert dp.slots == {0, 2} and hub.active_slots() == [0, 2]
    b.close()  # idempotent
    hub.close_all()
    assert dp.slots == set()


def test_bounded_queue_loses_with_a_notice_and_never_blocks():
    dp = StubDp()
    hub = WatchHub(dp, queue_size=3)
    slow, fast = hub.open(None, "slow"), hub.open(None, "fast")
    t0 = time.monotonic()
    hub.dispatch([event(0b01, tp_dst=i) for i in range(10)])
    assert time.monotonic() - t0 < 0.5
    hub.dispatch([event(0b11, tp_dst=99)])
    assert isinstance(slow.get(0), Lost) is True
    slow_items = []
    while (item := slow.get(timeout=0)) is not None:
        slow_items.append(item)
    assert [i.tp_dst for i in slow_items] == [0, 1, 2]
    assert slow.lost_total == 8
    assert fast.get(0).tp_dst == 99 and fast.get(0) is None
    hub.close_all()


def test_lost_notice_comes_before_later_events_and_counts_datapath_losses():
    dp = StubDp()
    hub = WatchHub(dp)
    s = hub.open(None, "s")
    hub.dispatch([event(1, tp_dst=1)])
    dp.lost[s.slot] = 5
    hub.check_lost()
    hub.check_lost()  # no double counting
    assert s.get(0) == Lost(5)
    assert s.get(0).tp_dst == 1
    dp.lost[s.slot] = 7
    hub.check_lost()
    assert s.get(0) == Lost(2)
    assert hub.lost_total() == 7
    s.close()  # an ended stream's losses stay counted (the metrics' counter)
    t = hub.open(None, "t")
    t.add_lost(3)
    assert hub.lost_total() == 10
    hub.close_all()
    assert hub.lost_total() == 10


def test_get_wakes_up_on_close():
    hub = WatchHub(StubDp())
    s = hub.open(None, "s")
    out = []
    t = threading.Thread(target=lambda: out.append(s.get(timeout=10)))
    t.start()
    time.sleep(0.1)
    s.close()
    t.join(2)
    assert out == [None] and not t.is_alive()


def test_stream_offer_after_close_is_dropped():
    s = Stream(WatchHub(StubDp()), 0, 2)
    s.closed = True
    assert not s.offer(event(1))


# ---- the Watch RPC ----------------------------------------------------------------------------


def wait_for(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.02)


def test_watch_stream_names_ports_and_cookies_and_ends_after_count(rig):
    sw = rig.switch
    sw.flows_add("br0", [FlowRequest(priority=10, cookie=0xAB, match={"in_port": "c1"},
                                     actions=[("output", "c2")])])
    rid = next(r.rule_id for r in sw.snapshot()["br0"].flows)
    with serve_switch(sw) as stub:
        call = stub.Watch(pb.WatchRequest(bridge="br0", count=2))
        wait_for(lambda: rig.dp.watchers)
        slot = next(iter(rig.dp.watchers))
        rig.dp.emit(event(1 << slot, in_port=idx(rig, "c1"), rule_id=rid,
                          outputs=(idx(rig, "c2"),), time_ns=time.monotonic_ns()))
        rig.dp.lost[slot] = 3
        time.sleep(0.7)  # the poller reads the datapath's lost counters twice a second
        rig.dp.emit(event(1 << slot, in_port=idx(rig, "c3"), verdict="drop",
                          drop_reason="same-port"))
        msgs = list(call)
        assert [m.WhichOneof("kind") for m in msgs] == ["event", "lost", "event"]
        e = msgs[0].event
        assert (e.bridge, e.in_port, e.cookie, e.table_miss, list(e.outputs)) == (
            "br0", "c1", 0xAB, False, ["c2"])
        assert abs(e.time - time.time()) < 5
        assert msgs[1].lost == 3
        e = msgs[2].event
        assert (e.in_port, e.table_miss, e.verdict, e.drop_reason) == (
            "c3", True, "drop", "same-port")
        wait_for(lambda: not rig.dp.watchers)


def test_watch_cancel_removes_the_watcher_and_several_watch_at_once(rig):
    with serve_switch(rig.switch) as stub:
        a = stub.Watch(pb.WatchRequest(bridge="br0"))
        b = stub.Watch(pb.WatchRequest(bridge="br0", port="c2"))
        wait_for(lambda: len(rig.dp.watchers) == 2)
        slots = {flt.in_port: s for s, flt in rig.dp.watchers.items()}
        both = (1 << slots[0]) | (1 << slots[idx(rig, "c2")])
        rig.dp.emit(event(both, in_port=idx(rig, "c2")))
        assert next(a).event.in_port == "c2"
        assert next(b).event.in_port == "c2"
        a.cancel()
        wait_for(lambda: len(rig.dp.watchers) == 1)
        assert list(rig.dp.watchers.values())[0].in_port == idx(rig, "c2")
        b.cancel()
        wait_for(lambda: not rig.dp.watchers)


def test_watch_refusals_have_codes(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", datapath="kernel"))
    with serve_switch(rig.switch) as stub:
        for req, code in (
            (pb.WatchRequest(bridge="kbr"), grpc.StatusCode.FAILED_PRECONDITION),
            (pb.WatchRequest(bridge="nosuch"), grpc.StatusCode.NOT_FOUND),
            (pb.WatchRequest(bridge="br0", match=pb.FlowMatch(tp_dst=pb.PortMatch(port=1))),
             grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.RpcError) as ei:
                list(stub.Watch(req))
            assert ei.value.code() == code, ei.value.details()


def test_event_message_mapping():
    from vswitchd.trace.watch import EventView

    ev = EventView(1.5, "br0", "c1", C1, C2, 0x0800, 0, "10.0.0.1", "10.0.0.2", 17, 1, 53,
                   60, 7, False, "forward", ("c2",), "", 1)
    m = convert.watch_event_msg(ev)
    assert (m.event.cookie, m.event.tp_dst, list(m.event.outputs)) == (7, 53, ["c2"])
    assert convert.watch_lost_msg(4).lost == 4


def test_the_configured_watcher_limit_over_the_api(rig):
    rig.cfg.watch.max_watchers = 1  # (serve_switch's server has two worker threads)
    with serve_switch(rig.switch) as stub:
        a = stub.Watch(pb.WatchRequest(bridge="br0"))
        wait_for(lambda: len(rig.dp.watchers) == 1)
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Watch(pb.WatchRequest(bridge="br0"), timeout=10))
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1 watch streams are open" in ei.value.details()
        assert "watch.max_watchers" in ei.value.details()
        a.cancel()
        wait_for(lambda: not rig.dp.watchers)


def test_a_frame_handed_from_xdp_to_tc_is_traced_through_both_hooks(rig):
    rig.dp.trace_xdp_result = TraceResult(
        "to-tc", key=key(), hook="xdp", handoff="the output port cannot take XDP frames")
    rig.dp.trace_result = TraceResult("forward", out_ifindex=idx(rig, "c2"), fdb_hit=True,
                                      key=key())
    rep = rig.switch.trace("br0", UDP53)
    assert [(s.hook, s.name) for s in rep.stages][:2] == [("xdp", "packet"), ("xdp", "flow table")]
    xdp_verdict = next(s for s in rep.stages if s.hook == "xdp" and s.name == "verdict")
    assert xdp_verdict.summary == ("to-tc: the output port cannot take XDP frames; the port's "
                                   "TC program takes the frame on")
    assert xdp_verdict.detail.handoff == "the output port cannot take XDP frames"
    assert [s.hook for s in rep.stages][-1] == "tc"
    assert (rep.verdict, rep.outputs) == ("forward", ("c2",))
    msg = convert.trace_msg(rep)
    assert [s.hook for s in msg.stages].count("xdp") == 5
    assert msg.stages[4].final.handoff == "the output port cannot take XDP frames"
