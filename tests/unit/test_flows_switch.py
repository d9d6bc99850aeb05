"""Flow tables through the Switch (fakes) and over the gRPC API."""

from __future__ import annotations

import errno

import grpc
import pytest
from fakes import FakeClock, FakeDatapath, make_rig, serve_switch

from vswapi import switch_pb2 as pb
from vswitchd.errors import FailedPrecondition, InvalidArgument
from vswitchd.flows.model import FlowRequest
from vswitchd.model import BridgeSpec, PortSpec

UDP = {"dl_type": 0x0800, "nw_proto": 17}


def fr(actions=(("drop", None),), priority=None, cookie=0, idle=0, hard=0, **match):
    return FlowRequest(priority=priority, cookie=cookie, idle_timeout=idle, hard_timeout=hard,
                       match=match, actions=list(actions))


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), clock=FakeClock())
    r.switch = r.new_switch()
    sw = r.switch
    sw.create_bridge(BridgeSpec("br0"))
    for name in ("c1", "c2", "m0"):
        sw.create_port("br0", PortSpec(name, netns=name))
    return r


def br_index(rig):
    return rig.links.get("br0").ifindex


def snapshot(rig):
    return (rig.switch.store.path.read_bytes(), dict(rig.dp.flows.get(br_index(rig), {})),
            [v.rule for v in rig.switch.flows_list("br0")])


def test_add_list_persist_and_reconcile_with_the_same_ids(rig):
    sw = rig.switch
    assert sw.flows_add("br0", [fr(priority=200, in_port="c1", tp_dst=(8, 0), **UDP),
                                fr([("output", "m0"), ("normal", None)], in_port="c1",
                                   cookie=7)]) == (2, 0)
    views = sw.flows_list("br0")
    assert [v.rule.to_ofctl() for v in views] == [
        "cookie=0x7,priority=32768,in_port=c1,actions=output:m0,normal",
        "priority=200,in_port=c1,udp,tp_dst=8,actions=drop"]
    ids = {v.rule.to_ofctl(): v.rule.rule_id for v in views}
    assert sorted(rig.dp.flows[br_index(rig)]) == sorted(ids.values())
    rig.dp.hit(br_index(rig), ids["priority=200,in_port=c1,udp,tp_dst=8,actions=drop"], 3, 180,
               at_ns=rig.clock.mono_ns())
    rig.clock.advance(2)
    v = {v.rule.priority: v for v in sw.flows_list("br0")}[200]
    assert (v.counters.packets, v.counters.bytes, v.duration_seconds, v.idle_seconds) == (
        3, 180, 2.0, 2.0)
    # daemon restart: same rules and ids from the store; the datapath's map (pinned) is synced
    before = dict(rig.dp.flows[br_index(rig)])
    sw2 = rig.new_switch()
    sw2.reconcile()
    assert {v.rule.to_ofctl(): v.rule.rule_id for v in sw2.flows_list("br0")} == ids
    assert rig.dp.flows[br_index(rig)] == before
    assert {v.rule.priority: v for v in sw2.flows_list("br0")}[200].counters.packets == 3
    # ids keep growing after a restart, never reused
    sw2.flows_add("br0", [fr(priority=5, **UDP)])
    assert max(v.rule.rule_id for v in sw2.flows_list("br0")) > max(ids.values())
    # a reboot: empty datapath, reconcile installs the stored rules again
    rig.dp = FakeDatapath()
    sw3 = rig.new_switch()
    sw3.reconcile()
    assert len(rig.dp.flows[rig.links.get("br0").ifindex]) == 3


def test_flow_errors_are_numbered_and_change_nothing(rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=100, tp_dst=(53, 0), **UDP)])
    before = snapshot(rig)
    calls = len(rig.dp.called("flows_sync"))
    with pytest.raises(InvalidArgument) as ei:
        sw.flows_add("br0", [fr(priority=1, **UDP), fr(tp_dst=(80, 0))])
    assert str(ei.value) == "flow 2: tp_dst=80 needs tcp or udp (nw_proto=6 or 17)"
    with pytest.raises(FailedPrecondition) as ei:
        sw.flows_add("br0", [fr(priority=1, **UDP),
                             fr(priority=100, nw_dst="10.0.0.0/8", **UDP)])
    assert str(ei.value).startswith("flow 2: overlaps priority=100,udp,tp_dst=53,actions=drop")
    with pytest.raises(InvalidArgument, match="flow 1: output:nosuch: no port nosuch on bridge"):
        sw.flows_add("br0", [fr([("output", "nosuch")])])
    assert len(rig.dp.called("flows_sync")) == calls
    assert snapshot(rig) == before


def test_datapath_mask_limit_leaves_everything_unchanged(rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=1, tp_dst=(1, 0), **UDP)])
    before = snapshot(rig)
    rig.dp.max_masks = 1
    with pytest.raises(FailedPrecondition, match="too many distinct flow masks"):
        sw.flows_add("br0", [fr(priority=2, in_port="c1")])
    assert snapshot(rig) == before
    with pytest.raises(FailedPrecondition, match="too many distinct flow masks"):
        sw.flows_replace("br0", [fr(priority=2, in_port="c1"), fr(priority=1, tp_dst=(1, 0),
                                                                   **UDP)])
    assert snapshot(rig) == before


def test_store_failure_undoes_table_and_datapath(monkeypatch, rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=1, **UDP)])
    before = snapshot(rig)

    def save(_bridges, meta=None):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(sw.store, "save", save)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        sw.flows_add("br0", [fr(priority=2, in_port="c2")])
    monkeypatch.undo()
    assert snapshot(rig) == before


def test_replace_flows_touches_only_what_differs(rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=1, tp_dst=(1, 0), **UDP),
                         fr(priority=1, tp_dst=(2, 0), **UDP)])
    ids = {v.rule.match.tp_dst[0]: v.rule.rule_id for v in sw.flows_list("br0")}
    assert sw.flows_replace("br0", [fr(priority=1, tp_dst=(1, 0), **UDP),
                                    fr(priority=1, tp_dst=(3, 0), **UDP)]) == (1, 1, 1)
    now = {v.rule.match.tp_dst[0]: v.rule.rule_id for v in sw.flows_list("br0")}
    assert now[1] == ids[1] and 2 not in now and now[3] > max(ids.values())
    assert sorted(rig.dp.flows[br_index(rig)]) == sorted(now.values())


def test_delete_strict_loose_cookie_through_the_switch(rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=10, cookie=1, in_port="c1", tp_dst=(8, 0), **UDP),
                         fr(priority=10, cookie=2, in_port="c2", **UDP),
                         fr(priority=20, cookie=3, in_port="c1")])
    assert sw.flows_delete("br0", {"in_port": "c1"}, strict=True) == 0  # priority 32768
    assert sw.flows_delete("br0", {"in_port": "c1"}, strict=True, priority=20) == 1
    assert sw.flows_delete("br0", {"in_port": "c2"}, cookie=1, cookie_mask=-1 & 0xFF) == 0
    assert sw.flows_delete("br0", {"in_port": "c1", **UDP}) == 1
    assert sw.flows_delete("br0", None, cookie=2, cookie_mask=0xFF) == 1
    assert sw.flows_list("br0") == [] and rig.dp.flows[br_index(rig)] == {}
    with pytest.raises(InvalidArgument, match="priority 70000 out of range"):
        sw.flows_delete("br0", None, strict=True, priority=70000)
    assert sw.flows_delete("br0") == 0


def test_timeouts_expire_with_a_fake_clock(rig):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=1, hard=2, tp_dst=(1, 0), **UDP),
                         fr(priority=1, idle=2, tp_dst=(2, 0), **UDP),
                         fr(priority=1, tp_dst=(3, 0), **UDP)])
    idle_id = next(v.rule.rule_id for v in sw.flows_list("br0") if v.rule.idle_timeout)
    assert sw.expire_flows() == 0
    rig.clock.advance(1.5)
    rig.dp.hit(br_index(rig), idle_id, at_ns=rig.clock.mono_ns())
    rig.clock.advance(0.5)
    assert sw.expire_flows() == 1                             # the hard one
    rig.clock.advance(1.4)
    assert sw.expire_flows() == 0
    rig.clock.advance(0.1)
    assert sw.expire_flows() == 1                             # 2 s since its last hit
    assert [v.rule.match.tp_dst[0] for v in sw.flows_list("br0")] == [3]
    assert len(rig.dp.flows[br_index(rig)]) == 1
    assert len(rig.stored()["br0"]["flows"]) == 1


def test_deleting_a_port_deletes_its_rules(rig, caplog):
    sw = rig.switch
    sw.flows_add("br0", [fr(priority=3, in_port="c1"), fr([("output", "m0")], priority=2),
                         fr(priority=1, in_port="c2")])
    caplog.set_level("INFO")
    sw.delete_port("br0", "m0")
    assert [v.rule.priority for v in sw.flows_list("br0")] == [3, 1]
    assert "port m0: deleted 1 flows of bridge br0 that used it" in caplog.text
    sw.delete_port("br0", "c1")
    assert [v.rule.priority for v in sw.flows_list("br0")] == [1]
    assert len(rig.dp.flows[br_index(rig)]) == 1
    assert len(rig.stored()["br0"]["flows"]) == 1


def test_kernel_bridge_is_refused(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", "kernel"))
    for call in (lambda: rig.switch.flows_add("kbr", [fr()]),
                 lambda: rig.switch.flows_list("kbr"),
                 lambda: rig.switch.flows_delete("kbr")):
        with pytest.raises(FailedPrecondition) as ei:
            call()
        assert str(ei.value) == \
            "bridge kbr uses the kernel datapath; flow tables need --datapath ebpf"


# ---- over gRPC ------------------------------------------------------------------------------


@pytest.fixture
def api(rig):
    with serve_switch(rig.switch) as stub:
        yield stub, rig


def test_flows_over_grpc(api):
    stub, rig = api
    flows = [
        pb.Flow(priority=200, match=pb.FlowMatch(in_port="c1", dl_type=0x0800, nw_proto=17,
                                                 nw_dst="10.0.0.5/24",
                                                 tp_dst=pb.PortMatch(port=8)),
                actions=[pb.FlowAction(drop=pb.NoArgument())]),
        pb.Flow(cookie=7, idle_timeout=30,
                match=pb.FlowMatch(dl_src=pb.MacMatch(mac="02:AA:00:00:00:00",
                                                      mask="ff:ff:ff:00:00:00")),
                actions=[pb.FlowAction(output="m0"), pb.FlowAction(mod_vlan_vid=10),
                         pb.FlowAction(normal=pb.NoArgument())]),
    ]
    r = stub.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=flows), timeout=10)
    assert (r.added, r.replaced) == (2, 0)
    r = stub.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=flows[:1]), timeout=10)
    assert (r.added, r.replaced) == (0, 1)
    listed = stub.ListFlows(pb.ListFlowsRequest(bridge="br0"), timeout=10).flows
    assert [f.priority for f in listed] == [32768, 200]
    a, b = listed
    assert (a.cookie, a.idle_timeout, a.match.dl_src.mac, a.match.dl_src.mask) == (
        7, 30, "02:aa:00:00:00:00", "ff:ff:ff:00:00:00")
    assert [x.WhichOneof("action") for x in a.actions] == ["output", "mod_vlan_vid", "normal"]
    assert (a.actions[0].output, a.actions[1].mod_vlan_vid) == ("m0", 10)
    assert not a.match.HasField("in_port") and not a.match.HasField("tp_dst")
    assert (b.match.in_port, b.match.dl_type, b.match.nw_proto, b.match.nw_dst,
            b.match.tp_dst.port, b.match.tp_dst.mask) == ("c1", 0x0800, 17, "10.0.0.0/24", 8, 0)
    assert not b.match.HasField("nw_src") and not b.match.HasField("dl_src")
    assert (b.n_packets, b.n_bytes, b.duration_seconds, b.idle_seconds) == (0, 0, 0.0, 0.0)

    r = stub.ReplaceFlows(pb.ReplaceFlowsRequest(bridge="br0", flows=flows[:1]), timeout=10)
    assert (r.added, r.removed, r.unchanged) == (0, 1, 1)
    r = stub.DeleteFlows(pb.DeleteFlowsRequest(bridge="br0", match=pb.FlowMatch(in_port="c2")),
                         timeout=10)
    assert r.deleted == 0
    r = stub.DeleteFlows(pb.DeleteFlowsRequest(
        bridge="br0", strict=True, priority=200, match=flows[0].match), timeout=10)
    assert r.deleted == 1
    assert list(stub.ListFlows(pb.ListFlowsRequest(bridge="br0"), timeout=10).flows) == []


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        call(request, timeout=10)
    return ei.value


def test_flow_errors_over_grpc(api):
    stub, rig = api
    good = pb.Flow(priority=1, match=pb.FlowMatch(dl_type=0x0800, nw_proto=17),
                   actions=[pb.FlowAction(drop=pb.NoArgument())])
    cases = [
        (pb.Flow(match=pb.FlowMatch(tp_dst=pb.PortMatch(port=80)),
                 actions=[pb.FlowAction(drop=pb.NoArgument())]),
         grpc.StatusCode.INVALID_ARGUMENT, "flow 2: tp_dst=80 needs tcp or udp (nw_proto=6 or 17)"),
        (pb.Flow(priority=70000), grpc.StatusCode.INVALID_ARGUMENT,
         "flow 2: priority 70000 out of range 0..65535"),
        (pb.Flow(), grpc.StatusCode.INVALID_ARGUMENT,
         "flow 2: actions= is required; use actions=drop to drop"),
        (pb.Flow(actions=[pb.FlowAction()]), grpc.StatusCode.INVALID_ARGUMENT,
         "flow 2: action 1 in actions is empty (set one of drop, normal, flood, output, "
         "mod_vlan_vid, strip_vlan, controller)"),
        (pb.Flow(match=pb.FlowMatch(in_port="nosuch"),
                 actions=[pb.FlowAction(normal=pb.NoArgument())]),
         grpc.StatusCode.INVALID_ARGUMENT, "flow 2: in_port=nosuch: no port nosuch on bridge br0"),
        (pb.Flow(priority=1, match=pb.FlowMatch(in_port="c1"),
                 actions=[pb.FlowAction(flood=pb.NoArgument())]),
         grpc.StatusCode.INVALID_ARGUMENT,
         "flow 2: match overlaps flow 1 (priority=1,udp,actions=drop)"),
    ]
    for bad, code, message in cases:
        e = _error(stub.AddFlows, pb.AddFlowsRequest(bridge="br0", flows=[good, bad]))
        assert e.code() == code and e.details().startswith(message), e.details()
        field = dict(e.trailing_metadata())["vswitchd-field"]
        assert field in e.details(), (field, e.details())  # the message names the field too
    assert list(stub.ListFlows(pb.ListFlowsRequest(bridge="br0"), timeout=10).flows) == []
    stub.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=[good]), timeout=10)
    e = _error(stub.AddFlows, pb.AddFlowsRequest(bridge="br0", flows=[pb.Flow(
        priority=1, match=pb.FlowMatch(in_port="c1"),
        actions=[pb.FlowAction(flood=pb.NoArgument())])]))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details().startswith("flow 1: overlaps priority=1,udp,actions=drop:")
    e = _error(stub.ListFlows, pb.ListFlowsRequest(bridge="nope"))
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "bridge nope does not exist")
