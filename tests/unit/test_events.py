"""Events and revisions: the log (order, resume, lost markers, bounded memory), what the switch
publishes for each kind of change, expected_revision conflicts, and revisions across a restart."""

from __future__ import annotations

import threading
from dataclasses import replace

import grpc
import pytest
from fakes import FakeClock, make_rig, serve_switch

from vswapi import switch_pb2 as pb
from vswitchd.errors import Aborted, InvalidArgument, OutOfRange, ResourceExhausted
from vswitchd.events import Event, EventLog, Lost
from vswitchd.flows.model import FlowRequest
from vswitchd.model import BridgeSpec, PortSpec


def ev(log: EventLog, kind: str = "port", bridge: str = "br0") -> Event:
    return log.event(kind, "added", bridge=bridge)


def drain(sub, n: int | None = None) -> list:
    out = []
    while n is None or len(out) < n:
        item = sub.get(timeout=0)
        if item is None:
            break
        out.append(item)
    return out


# ---- the log ------------------------------------------------------------------------------------


def test_events_come_in_revision_order_and_resume_after_a_revision():
    log = EventLog(revision=41)
    sub = log.subscribe()
    log.publish([ev(log), ev(log)])
    got = drain(sub)
    assert [e.revision for e in got] == [42, 43]
    resumed = log.subscribe(since=42)
    assert [e.revision for e in drain(resumed)] == [43]
    assert drain(log.subscribe(since=43)) == []


def test_since_revision_too_old_or_ahead_is_out_of_range():
    log = EventLog(revision=10, history=2)
    for _ in range(5):
        log.publish([ev(log)])
    floor, last = log.held()
    assert last == 15 and floor >= 10
    with pytest.raises(OutOfRange, match="too old"):
        log.subscribe(since=9)
    with pytest.raises(OutOfRange, match="ahead"):
        log.subscribe(since=16)
    assert [e.revision for e in drain(log.subscribe(since=floor))] == \
        list(range(floor + 1, 16))


def test_a_reader_that_falls_behind_gets_a_lost_marker_then_the_rest():
    log = EventLog(history=3)
    sub = log.subscribe()
    for _ in range(20):
        log.publish([ev(log)])
    first = sub.get(timeout=0)
    assert isinstance(first, Lost)
    assert first.first == 1 and first.count == first.last  # revisions 1..last dropped
    rest = drain(sub)
    assert [e.revision for e in rest] == list(range(first.last + 1, 21))
    assert len(log._events) <= 2 * log.history  # memory bounded by the history


def test_filters_by_kind_and_bridge_daemon_events_always_pass():
    log = EventLog()
    sub = log.subscribe(kinds=["port", "daemon"], bridges=["br1"])
    log.publish([ev(log, "port", "br0"), ev(log, "port", "br1"), ev(log, "flow", "br1"),
                 log.event("daemon", "ready")])
    assert [(e.kind, e.bridge) for e in drain(sub)] == [("port", "br1"), ("daemon", "")]
    with pytest.raises(InvalidArgument, match="known kinds"):
        log.subscribe(kinds=["ports"])


def test_out_of_order_publication_is_refused():
    log = EventLog()
    a, b = ev(log), ev(log)
    log.publish([b])
    with pytest.raises(ValueError, match="out of order"):
        log.publish([a])


def test_a_waiting_reader_wakes_on_publish_and_on_close():
    log = EventLog()
    sub = log.subscribe()
    got = []
    t = threading.Thread(target=lambda: got.append(sub.get(timeout=5)))
    t.start()
    log.publish([ev(log)])
    t.join(5)
    assert got and got[0].revision == 1
    log.close()
    assert sub.get(timeout=5) is None and sub.closed


# ---- what the switch publishes -----------------------------------------------------------------


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), clock=FakeClock())
    r.switch = r.new_switch()
    return r


def test_bridge_and_port_changes_are_events_and_the_objects_carry_their_revision(rig):
    sw = rig.switch
    sub = sw.subscribe()
    br = sw.create_bridge(BridgeSpec("br0"))
    port = sw.create_port("br0", PortSpec("c1", netns="c1"))
    updated = sw.update_port("br0", "c1", {"vlan": 10})
    got = drain(sub)
    assert [(e.kind, e.change, e.reason) for e in got] == [
        ("bridge", "added", ""), ("port", "added", "api"), ("port", "changed", "api")]
    assert [e.revision for e in got] == sorted({e.revision for e in got})
    assert br.revision == got[0].revision
    assert port.facts.revision == got[1].revision
    assert updated.facts.revision == got[2].revision and got[2].obj.spec.vlan == 10
    assert sw.get_port("br0", "c1").facts.revision == got[2].revision
    assert sw.revision() == got[2].revision


def test_deleting_a_bridge_removes_its_flows_ports_and_then_the_bridge(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.flows_add("br0", [FlowRequest(priority=5, match={"in_port": "c1"},
                                     actions=[("drop", None)])])
    sub = sw.subscribe()
    sw.delete_bridge("br0")
    assert [(e.kind, e.change) for e in drain(sub)] == [
        ("flow", "removed"), ("port", "removed"), ("bridge", "removed")]


def test_flow_events_with_their_reasons(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sub = sw.subscribe(kinds=["flow"])
    drop = [("drop", None)]
    sw.flows_add("br0", [FlowRequest(priority=5, match={"dl_type": 0x806}, actions=drop)])
    sw.flows_add("br0", [FlowRequest(priority=5, match={"dl_type": 0x806},
                                     actions=[("normal", None)])])
    (view,) = sw.flows_list("br0")
    rig.dp.hit(rig.links.get("br0").ifindex, view.rule.rule_id, packets=3, nbytes=300)
    sw.flows_delete("br0")
    sw.flows_add("br0", [FlowRequest(priority=6, match={}, actions=drop, hard_timeout=5),
                         FlowRequest(priority=7, match={}, actions=drop, idle_timeout=3),
                         FlowRequest(priority=8, match={"in_port": "c1"}, actions=drop)])
    rig.clock.advance(6)
    assert sw.expire_flows() == 2
    sw.delete_port("br0", "c1")
    events = drain(sub)
    got = [(e.change, e.reason, e.obj.rule.priority) for e in events]
    assert got == [
        ("added", "", 5),
        ("added", "", 5), ("removed", "replaced", 5),
        ("removed", "deleted", 5),
        ("added", "", 6), ("added", "", 7), ("added", "", 8),
        ("removed", "hard-timeout", 6), ("removed", "idle-timeout", 7),
        ("removed", "deleted", 8),
    ]
    deleted = events[3].obj  # with its final counters
    assert (deleted.counters.packets, deleted.counters.bytes) == (3, 300)


def test_a_flow_revision_is_the_revision_of_its_addition(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sub = sw.subscribe(kinds=["flow"])
    sw.flows_add("br0", [FlowRequest(priority=9, match={}, actions=[("drop", None)])])
    added = drain(sub)[0]
    (view,) = sw.flows_list("br0")
    assert view.rule.rule_id == added.revision


def test_static_and_learned_fdb_entries(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    for name in ("c1", "c2"):
        sw.create_port("br0", PortSpec(name, netns=name))
    br_if = rig.links.get("br0").ifindex
    c1, c2 = rig.links.get("c1").ifindex, rig.links.get("c2").ifindex
    sw.poll_fdb()  # the bridge's first look
    sub = sw.subscribe(kinds=["fdb"])
    static = sw.fdb_add("br0", "02:00:00:00:00:09", "c2")
    rig.dp.learn(br_if, "02:00:00:00:00:01", c1)
    sw.poll_fdb()
    rig.dp.learn(br_if, "02:00:00:00:00:01", c2)
    entries = {e.mac: e for e in sw.fdb_list("br0")}  # a listing looks too
    del rig.dp.fdb[br_if][("02:00:00:00:00:01", 0)]
    sw.poll_fdb()
    sw.fdb_delete("br0", "02:00:00:00:00:09")
    got = drain(sub)
    assert [(e.change, e.obj.mac, e.obj.port) for e in got] == [
        ("added", "02:00:00:00:00:09", "c2"),
        ("learned", "02:00:00:00:00:01", "c1"),
        ("moved", "02:00:00:00:00:01", "c2"),
        ("deleted", "02:00:00:00:00:01", "c2"),  # gone long before its aging time
        ("deleted", "02:00:00:00:00:09", "c2"),
    ]
    assert got[2].old == ("c1", "")
    assert static.revision == got[0].revision
    assert entries["02:00:00:00:00:01"].revision == got[2].revision
    assert entries["02:00:00:00:00:09"].revision == got[0].revision


def test_an_entry_gone_after_its_aging_time_aged(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    br_if, c1 = rig.links.get("br0").ifindex, rig.links.get("c1").ifindex
    sw.poll_fdb()
    rig.dp.learn(br_if, "02:00:00:00:00:01", c1, age=299.5)
    sub = sw.subscribe(kinds=["fdb"])
    sw.poll_fdb()
    rig.clock.advance(1)
    del rig.dp.fdb[br_if][("02:00:00:00:00:01", 0)]
    sw.poll_fdb()
    assert [e.change for e in drain(sub)] == ["learned", "aged"]


def test_link_down_up_and_a_vanished_port(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sub = sw.subscribe(kinds=["port"])
    rig.links.table["c1"] = replace(rig.links.table["c1"], up=False)
    assert sw.port_states_changed() == 1
    rig.links.table["c1"] = replace(rig.links.table["c1"], up=True)
    assert sw.port_states_changed() == 1
    assert sw.port_states_changed() == 0  # nothing new
    got = drain(sub)
    assert [(e.change, e.reason, e.obj.state) for e in got] == [
        ("changed", "link-down", "down"), ("changed", "link-up", "up")]
    assert sw.get_port("br0", "c1").facts.revision == got[1].revision


def test_link_messages_about_some_links_look_at_those_ports_only(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    for name in ("c1", "c2"):
        sw.create_port("br0", PortSpec(name, netns=name))
    sub = sw.subscribe(kinds=["port"])
    for name in ("c1", "c2"):
        rig.links.table[name] = replace(rig.links.table[name], up=False)
    assert sw.port_states_changed({"c1", "eth7"}) == 1  # the monitor saw messages about c1
    assert [e.obj.spec.name for e in drain(sub)] == ["c1"]
    assert sw.port_states_changed() == 1  # a look at every port finds c2
    assert [e.obj.spec.name for e in drain(sub)] == ["c2"]


def test_the_links_a_burst_was_about_are_looked_up_not_walked(rig, monkeypatch):
    """The link monitor's questions about a few links (every add-port is a burst) cost the
    same whatever the number of ports: no pass over every port of every bridge."""
    class NoWalk(dict):
        def __iter__(self):
            pytest.fail("walked over every port")

        values = items = keys = __iter__

    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_bridge(BridgeSpec("br1"))
    for name in ("c1", "c2"):
        sw.create_port("br0", PortSpec(name, netns=name))
    sw.create_port("br1", PortSpec("c3", netns="c3"))
    everything = sw.owned_links()
    assert sw.owned_links({"c3", "br0", "eth7"}) == {n: everything[n] for n in ("c3", "br0")}
    rig.links.table["c1"] = replace(rig.links.table["c1"], up=False)
    for br in sw.ctx.bridges.values():
        monkeypatch.setattr(br, "ports", NoWalk(br.ports))
    assert sw.owned_links({"c1", "c3"}) == {n: everything[n] for n in ("c1", "c3")}
    assert sw.port_states_changed({"c1"}) == 1


def test_expected_revision_conflicts_are_aborted_and_change_nothing(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0"))
    port = sw.create_port("br0", PortSpec("c1", netns="c1"))
    with pytest.raises(Aborted, match="changed meanwhile"):
        sw.update_port("br0", "c1", {"vlan": 10}, expected_revision=port.facts.revision - 1)
    assert sw.get_port("br0", "c1").spec.vlan == 0
    sw.update_port("br0", "c1", {"vlan": 10}, expected_revision=port.facts.revision)
    with pytest.raises(Aborted):
        sw.delete_port("br0", "c1", expected_revision=port.facts.revision)
    with pytest.raises(Aborted):
        sw.update_bridge("br0", nat=False, expected_revision=br.revision + 100)
    with pytest.raises(Aborted):
        sw.delete_bridge("br0", expected_revision=br.revision + 100)
    assert sw.get_bridge("br0").revision == br.revision
    entry = sw.fdb_add("br0", "02:00:00:00:00:09", "c1", expected_revision=0)
    with pytest.raises(Aborted):
        sw.fdb_add("br0", "02:00:00:00:00:09", "c1", expected_revision=0)
    with pytest.raises(Aborted):
        sw.fdb_delete("br0", "02:00:00:00:00:09", expected_revision=entry.revision + 1)
    assert sw.fdb_delete("br0", "02:00:00:00:00:09", expected_revision=entry.revision)
    sw.flows_add("br0", [FlowRequest(priority=9, match={}, actions=[("drop", None)])])
    (flow,) = sw.flows_list("br0")
    with pytest.raises(InvalidArgument, match="strict"):
        sw.flows_delete("br0", expected_revision=flow.rule.rule_id)
    with pytest.raises(Aborted):
        sw.flows_delete("br0", {}, strict=True, priority=9,
                        expected_revision=flow.rule.rule_id + 1)
    assert sw.flows_delete("br0", {}, strict=True, priority=9,
                           expected_revision=flow.rule.rule_id) == 1
    assert sw.delete_port("br0", "c1", expected_revision=sw.get_port("br0", "c1").facts.revision)


def test_revisions_go_on_across_a_restart(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    port = sw.create_port("br0", PortSpec("c1", netns="c1"))
    last = sw.revision()
    stored = rig.stored(revisions=True)["br0"]
    assert stored["revision"] and stored["ports"][0]["revision"] == port.facts.revision
    again = rig.new_switch()
    assert again.get_port("br0", "c1").facts.revision == port.facts.revision
    assert again.revision() == last
    with pytest.raises(OutOfRange, match="too old"):  # the events before the restart are gone
        again.subscribe(since=last - 1)
    sub = again.subscribe(since=last)  # nothing was missed
    again.daemon_event("ready")
    (ready,) = drain(sub)
    assert ready.kind == "daemon" and ready.revision == last + 1


def test_subscribe_over_grpc_streams_events_and_list_calls_carry_the_revision(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    with serve_switch(sw) as stub:
        listed = stub.ListBridges(pb.ListBridgesRequest())
        stream = stub.Subscribe(pb.SubscribeRequest(since_revision=listed.revision,
                                                    kinds=[pb.EVENT_KIND_PORT]), timeout=10)
        port = stub.CreatePort(pb.CreatePortRequest(port=pb.Port(bridge="br0", name="c1",
                                                                  netns="c1")))
        first = next(stream)
        assert first.port.change == pb.CHANGE_ADDED and first.port.reason == pb.PortEvent.API
        assert first.port.port.name == "c1" and first.revision == port.revision
        stream.cancel()
        with pytest.raises(grpc.RpcError) as err:
            stub.UpdatePort(pb.UpdatePortRequest(
                port=pb.Port(bridge="br0", name="c1", vlan=5),
                update_mask={"paths": ["vlan"]}, expected_revision=port.revision + 1))
        assert err.value.code() == grpc.StatusCode.ABORTED
        with pytest.raises(grpc.RpcError) as err:
            next(stub.Subscribe(pb.SubscribeRequest(since_revision=10**9)))
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        ports = stub.ListPorts(pb.ListPortsRequest(bridge="br0"))
        assert ports.revision == port.revision and ports.ports[0].revision == port.revision


def test_streams_are_capped_and_a_closed_one_frees_its_place():
    log = EventLog(max_subscribers=2)
    a, _b = log.subscribe(), log.subscribe()
    with pytest.raises(ResourceExhausted, match="2 event streams are open"):
        log.subscribe()
    a.close()
    a.close()  # twice: counted once
    log.subscribe()
    assert log.subscribers == 2


def test_a_port_deleted_behind_the_daemons_back_and_made_again(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    before = rig.links.get("c1").ifindex
    sub = sw.subscribe(kinds=["port"])
    rig.links.delete("c1")  # `ip link del c1`
    sw.links_changed()      # the link monitor's reconciliation makes it again
    assert rig.links.get("c1").ifindex != before
    got = drain(sub)
    assert [(e.change, e.reason) for e in got] == [("changed", "vanished"),
                                                   ("changed", "restored")]
    assert got[0].obj.ifindex == before and got[1].obj.ifindex == rig.links.get("c1").ifindex


def test_nobody_subscribed_no_fdb_is_read(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    rig.dp.calls.clear()
    assert sw.poll_fdb() == 0 and rig.dp.called("fdb_list") == []
    sub = sw.subscribe(kinds=["fdb"])
    assert sw.poll_fdb() == 1 and len(rig.dp.called("fdb_list")) == 1
    sub.close()
