"""Packet-in on the fakes: the controller action's syntax (vswapi.flowspec), validation, store
and datapath form; the packet-in hub (subscriptions by bridge, losses); the Switch and the
SubscribePacketIn / Get/UpdatePacketInConfig API; the rate limit's config key; vswctl
packet-in, set-packet-in-rate and status; the header decoder."""

from __future__ import annotations

import json
import struct
import time

import grpc
import pytest
from fakes import make_rig, serve_switch
from test_vswctl import STATUS, Daemon, FakeSwitch, daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb
from vswapi.flowspec import MAX_CONTROLLER_LEN, FlowSyntaxError, format_flow, parse_flow
from vswapi.headers import decode
from vswitchd import config, main
from vswitchd.datapath.constants import (
    PACKET_IN_DEFAULT_LEN,
    PACKET_IN_DEFAULT_RATE,
    PACKET_IN_MAX_LEN,
)
from vswitchd.datapath.packet_in import ALL_BRIDGES, PacketInEvent
from vswitchd.datapath.watch import MAX_RATE
from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound
from vswitchd.flows.model import Action, FlowRequest
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.trace import ratelimit
from vswitchd.trace.packet_in import PacketInHub
from vswitchd.trace.watch import Lost

ARP = (bytes.fromhex("ffffffffffff020000000001") + struct.pack("!H", 0x0806)
       + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes.fromhex("020000000001")
       + bytes([10, 0, 0, 1]) + bytes(6) + bytes([10, 0, 0, 2]))


# ---- syntax (vswapi.flowspec) -------------------------------------------------------------


@pytest.mark.parametrize("text, max_len", [
    ("actions=controller", 0), ("actions=controller:64", 64), ("actions=controller:0x40", 64),
    (f"actions=controller:{MAX_CONTROLLER_LEN}", MAX_CONTROLLER_LEN),
])
def test_controller_parses_and_prints_back_the_same(text, max_len):
    flow = parse_flow(text)
    assert list(flow.actions) == [pb.FlowAction(controller=pb.ControllerAction(max_len=max_len))]
    printed = format_flow(flow)
    assert printed == ("actions=controller" if not max_len else f"actions=controller:{max_len}")
    assert parse_flow(printed) == flow


def test_controller_with_other_actions_keeps_their_order():
    flow = parse_flow("priority=100,arp,actions=controller:64,normal")
    assert format_flow(flow) == "priority=100,arp,actions=controller:64,normal"


@pytest.mark.parametrize("text, message", [
    ("actions=controller:0", "controller:0: max_len out of range 1..1518 bytes"),
    ("actions=controller:1519", "controller:1519: max_len out of range 1..1518 bytes"),
    ("actions=controller:", "controller: needs a length"),
    ("actions=controller:big", "controller:big: not a number"),
])
def test_bad_controller_lengths_are_syntax_errors(text, message):
    with pytest.raises(FlowSyntaxError, match=message):
        parse_flow(text)


def test_the_clients_limit_is_the_datapaths():
    assert MAX_CONTROLLER_LEN == PACKET_IN_MAX_LEN  # proto contract == bpf/lib/packet_in.h


# ---- validation, store, datapath form ------------------------------------------------------


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"))
    r.switch.create_bridge(BridgeSpec("br0"))
    for name in ("c1", "c2"):
        r.switch.create_port("br0", PortSpec(name, netns=name))
    return r


def ifindex(rig, name):
    return rig.links.get(name).ifindex


def dp_actions(rig):
    return {r.priority: r.actions for r in rig.dp.flows[ifindex(rig, "br0")].values()}


def test_the_action_is_validated_stored_and_given_to_the_datapath(rig):
    sw = rig.switch
    sw.flows_add("br0", [
        FlowRequest(priority=100, match={"dl_type": 0x0806}, actions=[("controller", 64),
                                                                      ("normal", None)]),
        FlowRequest(priority=0, actions=[("controller", 0)]),
    ])
    rules = {r.priority: r for r in sw.snapshot()["br0"].flows}
    assert rules[100].actions == (Action("controller", 64), Action("normal"))
    assert rules[0].actions == (Action("controller"),)  # the default, written `controller`
    assert dp_actions(rig) == {100: (("controller", 64), ("normal", 0)),
                               0: (("controller", PACKET_IN_DEFAULT_LEN),)}
    again = rig.new_switch()  # the store keeps them
    assert {r.priority: r.actions for r in again.snapshot()["br0"].flows} == {
        100: rules[100].actions, 0: rules[0].actions}
    with serve_switch(sw) as stub:
        flows = stub.ListFlows(pb.ListFlowsRequest(bridge="br0")).flows
    assert [format_flow(pb.Flow(priority=f.priority, match=f.match, actions=f.actions))
            for f in flows] == ["priority=100,arp,actions=controller:64,normal",
                                "priority=0,actions=controller"]


@pytest.mark.parametrize("actions, message", [
    ([("controller", PACKET_IN_MAX_LEN + 1)],
     "controller:1519: max_len out of range 1..1518 bytes"),
    ([("controller", -1)], "controller:-1: max_len out of range"),
    ([("controller", 64), ("controller", 128)],
     "actions=controller:64,controller:128: controller can appear only once"),
    ([("controller", 0), ("drop", None)], "drop cannot be combined with other actions"),
])
def test_bad_controller_actions_are_refused_naming_them(rig, actions, message):
    with pytest.raises(InvalidArgument) as exc:
        rig.switch.flows_add("br0", [FlowRequest(actions=actions)])
    assert message in str(exc.value)
    assert not len(rig.switch.snapshot()["br0"].flows)


def test_trace_names_the_packet_in_and_the_controller_verdict(rig):
    from fakes import TraceResult

    sw = rig.switch
    sw.flows_add("br0", [FlowRequest(priority=5, actions=[("controller", 0)])])
    rid = next(r.rule_id for r in sw.snapshot()["br0"].flows)
    rig.dp.trace_result = TraceResult("controller", rule_id=rid, priority=5)
    report = sw.trace("br0", {"in_port": "c1"})
    summaries = {s.name: s.summary for s in report.stages}
    assert summaries["flow table"].endswith(
        "actions=controller (a packet-in to the controllers; a trace sends none)")
    assert summaries["verdict"] == "controller: the frame goes to the controllers only " \
                                   "(packet-in)"
    assert "vlan" not in summaries and "l2" not in summaries


# ---- the hub -------------------------------------------------------------------------------


class StubDp:
    def __init__(self):
        self.keys: dict[int, int] = {}  # key -> lost
        self.events: list[PacketInEvent] = []
        self.calls: list[tuple[str, int]] = []

    def packet_in_watch(self, key):
        self.calls.append(("watch", key))
        self.keys[key] = 0

    def packet_in_unwatch(self, key):
        self.calls.append(("unwatch", key))
        del self.keys[key]

    def packet_in_lost(self, key):
        return self.keys.get(key, 0)

    def packet_in_poll(self, timeout_ms):
        out, self.events = self.events, []
        return out


def frame_event(bridge, **kw):
    base = {"time_ns": 1, "bridge": bridge, "in_port": 7, "rule_id": 1, "vlan": 0,
            "total_len": len(ARP), "data": ARP}
    base.update(kw)
    return PacketInEvent(**base)


def test_streams_get_their_bridges_frames_and_share_subscriptions():
    dp = StubDp()
    hub = PacketInHub(dp, queue_size=10)
    a = hub.open({11}, "a")
    b = hub.open({11, 12}, "b")
    every = hub.open({ALL_BRIDGES}, "every")
    assert sorted(dp.keys) == [ALL_BRIDGES, 11, 12]
    hub.dispatch([frame_event(11), frame_event(12), frame_event(13)])
    assert [a.get(0).bridge for _ in range(1)] == [11] and a.get(0) is None
    assert [b.get(0).bridge, b.get(0).bridge] == [11, 12]
    assert [every.get(0).bridge for _ in range(3)] == [11, 12, 13]
    b.close()
    assert sorted(dp.keys) == [ALL_BRIDGES, 11]  # 11 is still a's
    a.close()
    every.close()
    assert dp.keys == {} and hub.streams() == 0
    hub.close_all()


def test_losses_reach_the_streams_of_their_bridges():
    dp = StubDp()
    hub = PacketInHub(dp, queue_size=2)
    a = hub.open({11}, "a")
    every = hub.open({ALL_BRIDGES}, "every")
    dp.keys[11] = 4        # lost on bridge 11 (its own subscription counts them)
    dp.keys[ALL_BRIDGES] = 2  # lost on bridges only "every" subscribed to
    hub.check_lost()
    assert a.get(0) == Lost(4)
    assert every.get(0) == Lost(6)
    hub.check_lost()  # nothing new: nothing reported
    assert a.get(0) is None and every.get(0) is None
    late = hub.open({11}, "late")  # counts from now
    dp.keys[11] = 5
    hub.check_lost()
    assert (a.get(0), late.get(0), every.get(0)) == (Lost(1), Lost(1), Lost(1))
    hub.dispatch([frame_event(11)] * 3)  # a's queue holds 2: the third is lost, and said so
    assert [type(a.get(0)).__name__ for _ in range(3)] == ["Lost", "PacketInEvent",
                                                           "PacketInEvent"]
    hub.close_all()


def test_a_failed_subscription_leaves_none_behind():
    dp = StubDp()
    hub = PacketInHub(dp)
    first = hub.open({11}, "first")

    def refuse(key):
        raise InvalidArgument("bridge", key, "refused")

    dp.packet_in_watch = refuse
    with pytest.raises(InvalidArgument):
        hub.open({11, 12}, "second")
    assert dp.keys == {11: 0} and hub.streams() == 1
    first.close()
    assert dp.keys == {}


# ---- the switch and the API ----------------------------------------------------------------


def wait_for(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.02)


def test_subscribe_maps_names_cookie_and_reason(rig):
    sw = rig.switch
    sw.flows_add("br0", [
        FlowRequest(priority=100, cookie=0x5, match={"dl_type": 0x0806},
                    actions=[("controller", 64), ("normal", None)]),
        FlowRequest(priority=0, cookie=0x9, actions=[("controller", 0)]),
    ])
    ids = {r.priority: r.rule_id for r in sw.snapshot()["br0"].flows}
    br = ifindex(rig, "br0")
    with serve_switch(sw) as stub:
        call = stub.SubscribePacketIn(pb.PacketInRequest(bridges=["br0"]))
        wait_for(lambda: rig.dp.packet_in_keys)
        assert list(rig.dp.packet_in_keys) == [br]
        rig.dp.send_packet_in(
            frame_event(br, in_port=ifindex(rig, "c1"), rule_id=ids[100], vlan=10,
                        data=ARP[:64], total_len=98, time_ns=time.monotonic_ns()),
            frame_event(br, in_port=ifindex(rig, "c1"), rule_id=ids[0]))
        msgs = [next(call) for _ in range(2)]
        sw.flows_delete("br0", {}, strict=True, priority=0)
        sw.flows_add("br0", [FlowRequest(priority=0, match={"in_port": "c2"},
                                         actions=[("controller", 0)])])
        rid = next(r.rule_id for r in sw.snapshot()["br0"].flows if r.priority == 0)
        rig.dp.send_packet_in(frame_event(br, in_port=ifindex(rig, "c2"), rule_id=rid))
        msgs.append(next(call))
        p = msgs[0].packet
        assert (p.bridge, p.in_port, p.vlan, p.cookie, p.reason, p.data, p.total_len, p.hook) \
            == ("br0", "c1", 10, 0x5, pb.PacketIn.ACTION, ARP[:64], 98, "tc")
        assert abs(p.time - time.time()) < 5
        assert (msgs[1].packet.cookie, msgs[1].packet.reason) == (0x9, pb.PacketIn.TABLE_MISS)
        # priority 0 with a match is not the table-miss rule
        assert msgs[2].packet.reason == pb.PacketIn.ACTION
        rig.dp.packet_in_keys[br] = 3  # the datapath lost three of br0's
        assert next(call).lost == 3
        call.cancel()
        wait_for(lambda: not rig.dp.packet_in_keys)  # the subscription ends with the stream


def test_subscribe_to_every_bridge_and_refusals(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", datapath="kernel"))
    with serve_switch(rig.switch) as stub:
        call = stub.SubscribePacketIn(pb.PacketInRequest())
        wait_for(lambda: rig.dp.packet_in_keys)
        assert list(rig.dp.packet_in_keys) == [ALL_BRIDGES]
        call.cancel()
        for bridges, code, words in (
            (["nosuch"], grpc.StatusCode.NOT_FOUND, "bridge nosuch does not exist"),
            (["br0", "kbr"], grpc.StatusCode.FAILED_PRECONDITION,
             "bridge kbr uses the kernel datapath"),
        ):
            with pytest.raises(grpc.RpcError) as exc:
                next(stub.SubscribePacketIn(pb.PacketInRequest(bridges=bridges)))
            assert exc.value.code() == code and words in exc.value.details()
        wait_for(lambda: not rig.dp.packet_in_keys)


def test_the_number_of_streams_is_capped(rig):
    from vswitchd.errors import ResourceExhausted
    from vswitchd.switch.packet_in import MAX_STREAMS

    sessions = [rig.switch.packet_in_open(["br0"]) for _ in range(MAX_STREAMS)]
    with pytest.raises(ResourceExhausted, match=f"{MAX_STREAMS} packet-in streams are open"):
        rig.switch.packet_in_open()
    sessions.pop().close()
    sessions.append(rig.switch.packet_in_open())  # room again
    for s in sessions:
        s.close()
    assert rig.dp.packet_in_keys == {}


def test_without_ebpf_subscribing_is_refused(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), ebpf=False, reason="no bpf() here")
    with pytest.raises(FailedPrecondition, match="eBPF datapath unavailable"):
        r.switch.packet_in_open()
    with pytest.raises(NotFound):
        r.switch.packet_in_open(["nosuch"])
    assert r.switch.packet_in_config()["sent"] == 0  # counters without a datapath: zeros


def test_unwatched_frames_are_counted_and_the_config_shows_the_counters(rig):
    br = ifindex(rig, "br0")
    rig.dp.send_packet_in(frame_event(br))
    assert rig.switch.packet_in_config() == {
        "rate_limit": PACKET_IN_DEFAULT_RATE, "sent": 0, "rate_limited": 0, "ring_full": 0,
        "unwatched": 1}
    with serve_switch(rig.switch) as stub:
        cfg = stub.GetPacketInConfig(pb.GetPacketInConfigRequest())
        assert (cfg.rate_limit, cfg.unwatched, cfg.sent) == (PACKET_IN_DEFAULT_RATE, 1, 0)


# ---- the rate limit ------------------------------------------------------------------------


def test_the_rate_is_set_stored_restored_and_checked(rig):
    sw = rig.switch
    assert sw.set_packet_in_rate(5)["rate_limit"] == 5
    assert rig.dp.packet_in_rate == 5
    assert ratelimit.PACKET_IN.stored(sw.store) == 5
    rig.dp.packet_in_rate = PACKET_IN_DEFAULT_RATE  # a restarted daemon's new datapath
    again = rig.new_switch()
    again.reconcile()
    assert rig.dp.packet_in_rate == 5 and again.packet_in_config()["rate_limit"] == 5
    for bad in (0, MAX_RATE + 1, True, "fast"):
        with pytest.raises(InvalidArgument) as exc:
            again.set_packet_in_rate(bad)
        assert "must be a whole number of packet-ins per second per CPU" in str(exc.value)
    assert rig.dp.packet_in_rate == 5


def test_the_api_updates_only_rate_limit(rig):
    with serve_switch(rig.switch) as stub:
        req = pb.UpdatePacketInConfigRequest(config=pb.PacketInConfig(rate_limit=7))
        req.update_mask.paths.append("rate_limit")
        assert stub.UpdatePacketInConfig(req).rate_limit == 7
        bad = pb.UpdatePacketInConfigRequest(config=pb.PacketInConfig(sent=3))
        bad.update_mask.paths.append("sent")
        with pytest.raises(grpc.RpcError) as exc:
            stub.UpdatePacketInConfig(bad)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "update_mask 'sent'" in exc.value.details()
        req.config.rate_limit = 0
        with pytest.raises(grpc.RpcError) as exc:
            stub.UpdatePacketInConfig(req)
        assert "rate_limit 0: must be a whole number" in exc.value.details()
    assert rig.dp.packet_in_rate == 7


def test_the_config_key_like_watch(rig, tmp_path):
    cfg = config.parse("packet_in:\n  rate_limit: 50\n", "f.yaml")
    assert cfg.packet_in.rate_limit == 50 and cfg.origins["packet_in.rate_limit"] == "f.yaml:2"
    with pytest.raises(config.ConfigError, match="f.yaml:2: packet_in.rate_limit: 0 must be"):
        config.parse("packet_in:\n  rate_limit: 0\n", "f.yaml")
    with pytest.raises(config.ConfigError, match="unknown key 'packet_in.burst'"):
        config.parse("packet_in:\n  burst: 3\n", "f.yaml")
    path = tmp_path / "v.yaml"
    path.write_text("packet_in:\n  rate_limit: 50\n")
    cfg = config.load(str(path))
    main.apply_declared(rig.switch, rig.switch.store, cfg)
    assert rig.dp.packet_in_rate == 50
    rig.switch.set_packet_in_rate(70)  # over the API: an unchanged file leaves it
    assert main.reload_config(str(path), rig.switch, rig.switch.store, cfg)
    assert rig.dp.packet_in_rate == 70
    path.write_text("packet_in:\n  rate_limit: 90\n")  # the file changed: it wins
    assert main.reload_config(str(path), rig.switch, rig.switch.store, cfg)
    assert rig.dp.packet_in_rate == 90


# ---- vswctl --------------------------------------------------------------------------------


def packet_in_msgs():
    yield pb.PacketInMessage(packet=pb.PacketIn(
        time=1_700_000_000.25, bridge="br0", in_port="c1", vlan=10, cookie=0x5,
        reason=pb.PacketIn.ACTION, data=ARP[:40], total_len=42, hook="tc"))
    yield pb.PacketInMessage(lost=3)
    yield pb.PacketInMessage(packet=pb.PacketIn(
        time=1_700_000_001.0, bridge="br1", in_port="c2", cookie=0,
        reason=pb.PacketIn.TABLE_MISS, data=ARP, total_len=len(ARP), hook="tc"))


class PacketInFake(FakeSwitch):
    """Streams packet_in_msgs() for SubscribePacketIn."""

    def SubscribePacketIn(self, request, context):  # noqa: N802
        self.requests.append(("SubscribePacketIn", request))
        yield from packet_in_msgs()


@pytest.fixture
def streaming(short_dir, capsys, monkeypatch):  # noqa: F811
    from test_vswctl import serve

    yield from serve(PacketInFake(), short_dir, capsys, monkeypatch)


def test_vswctl_packet_in_prints_one_line_a_frame(streaming):
    rc, out, err = streaming.run("packet-in", "br0", "br1")
    assert (rc, err) == (0, "")
    assert list(streaming.fake.only("SubscribePacketIn").bridges) == ["br0", "br1"]
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" br0 c1 vlan 10 cookie 0x5 action len 42 (40 sent) "
                             "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x0806")
    assert lines[1] == "lost 3"
    assert lines[2].endswith(" br1 c2 cookie 0x0 table-miss len 42 02:00:00:00:00:01 > "
                             "ff:ff:ff:ff:ff:ff arp request 10.0.0.1 > 10.0.0.2")


def test_vswctl_packet_in_json_and_count(streaming):
    rc, out, err = streaming.run("-j", "packet-in", "--count", "1")
    assert (rc, err) == (0, "")
    assert list(streaming.fake.only("SubscribePacketIn").bridges) == []  # every bridge
    (line,) = out.splitlines()
    row = json.loads(line)
    assert row["data"] == ARP[:40].hex() and row["total_len"] == 42
    assert (row["bridge"], row["in_port"], row["vlan"], row["cookie"], row["reason"]) == (
        "br0", "c1", 10, "0x5", "action")
    assert row["headers"]["dl_src"] == "02:00:00:00:00:01"


def test_vswctl_set_packet_in_rate_and_status(daemon):  # noqa: F811
    daemon.fake.responses["UpdatePacketInConfig"] = pb.PacketInConfig(rate_limit=5)
    assert daemon.json("set-packet-in-rate", "5") == {"rate_limit": 5}
    req = daemon.fake.requests[-1][1]
    assert (req.config.rate_limit, list(req.update_mask.paths)) == (5, ["rate_limit"])
    rc, out, err = daemon.run("set-packet-in-rate", "0")
    assert rc == 1 and "must be a whole number of packet-ins per second per CPU" in err
    daemon.fake.responses["GetStatus"] = STATUS
    daemon.fake.responses["GetPacketInConfig"] = pb.PacketInConfig(
        rate_limit=100, sent=7, rate_limited=2, ring_full=0, unwatched=4)
    rc, out, err = daemon.run("status")
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("packet-in rate:")][0].endswith(
        " 100 packet-ins/s per CPU")
    assert [ln for ln in lines if ln.startswith("packet-ins:")][0].endswith(
        " 7 sent, 2 rate-limited, 0 ring-full, 4 unwatched")
    daemon.fake.errors["GetPacketInConfig"] = (grpc.StatusCode.UNIMPLEMENTED, "older daemon")
    data = daemon.json("status")
    assert "packet_in" not in data and data["version"] == "0.1.0"


# ---- headers -------------------------------------------------------------------------------


def test_headers_of_arp_ip_and_tagged_frames():
    assert decode(ARP) == {"dl_dst": "ff:ff:ff:ff:ff:ff", "dl_src": "02:00:00:00:00:01",
                           "dl_vlan": None, "dl_type": 0x0806, "arp_op": "request",
                           "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2"}
    udp = (bytes(12) + struct.pack("!HHH", 0x8100, 0x2007, 0x0800)
           + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                         bytes([10, 0, 0, 2])) + struct.pack("!HHHH", 1000, 53, 8, 0))
    h = decode(udp)
    assert (h["dl_vlan"], h["dl_type"], h["nw_proto"], h["tp_src"], h["tp_dst"]) == (
        7, 0x0800, 17, 1000, 53)
    assert "tp_src" not in decode(udp[:40])  # cut before the ports
    assert decode(udp[:10]) == {}

