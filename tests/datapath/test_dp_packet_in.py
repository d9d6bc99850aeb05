"""Packet-in in the real programs (BPF_PROG_TEST_RUN): the controller action's verdicts (alone
the frame goes to the controllers only, with normal it is switched too), the frame and its
metadata in the ring, dry runs that send and count nothing, XDP handing such frames to TC, the
subscriptions (unwatched bridges) and the per-CPU rate limit with its counters."""

from __future__ import annotations

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B
from test_dp_flows import TC_ACT_REDIRECT, TC_ACT_SHOT, frame, rule

from vswitchd.datapath import DpRule, PortKind, VlanConfig
from vswitchd.datapath.constants import PACKET_IN_MAX_LEN
from vswitchd.datapath.packet_in import ALL_BRIDGES, PacketInCounters
from vswitchd.errors import InvalidArgument

pytestmark = pytest.mark.root

XDP_PASS = 2


def controller(max_len: int = 128) -> tuple[str, int]:
    return ("controller", max_len)


def test_controller_alone_takes_the_frame_without_a_drop(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(5, 100, [controller()], in_port=p0)])
    dp.packet_in_watch(bridge.br)
    res = dp.run(frame(), p0)  # dry run: the decision, nothing sent
    assert (res.rule_id, res.verdict, res.drop_reason, res.outputs) == (5, "controller", "none",
                                                                         [])
    assert dp.packet_in_poll(0) == []
    real = dp.run(frame(), p0, dry_run=False)
    assert real.retval == TC_ACT_SHOT  # consumed: nothing left to send
    c = dp.port_counters(p0)
    assert (c.rx_packets, c.drops) == (1, {})  # received, and not counted as a drop
    assert dp.flow_counters(bridge.br)[5].packets == 1
    assert dp.packet_in_counters() == PacketInCounters(sent=1)


def test_the_packet_in_carries_the_frame_and_where_it_came_from(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(9, 100, [controller(64), ("normal", 0)], in_port=p0)])
    dp.packet_in_watch(bridge.br)
    sent = frame(dst=BROADCAST, src=MAC_A, l3="ipv4", proto=17) + bytes(30)
    assert dp.run(sent, p0, dry_run=False).retval == TC_ACT_REDIRECT  # switched (a flood) too
    (ev,) = dp.packet_in_poll(100)
    assert (ev.bridge, ev.in_port, ev.rule_id, ev.vlan, ev.hook) == (bridge.br, p0, 9, 0, "tc")
    assert (ev.total_len, ev.data) == (len(sent), sent[:64])
    assert ev.time_ns > 0
    # a frame shorter than max_len comes whole
    dp.flows_sync(bridge.br, [rule(10, 100, [controller(PACKET_IN_MAX_LEN)], in_port=p0)])
    dp.run(sent, p0, dry_run=False)
    (ev,) = dp.packet_in_poll(100)
    assert (ev.rule_id, ev.total_len, ev.data) == (10, len(sent), sent)


def test_controller_with_normal_switches_the_frame_too(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.run(frame(dst=BROADCAST, src=MAC_B), p1, dry_run=False)  # learn B on p1
    dp.flows_sync(bridge.br, [rule(3, 100, [("normal", 0), controller()], in_port=p0)])
    res = dp.run(frame(dst=MAC_B), p0)
    assert (res.rule_id, res.verdict, res.out_ifindex) == (3, "forward", p1)
    dp.flows_sync(bridge.br, [rule(4, 100, [("output", p1), controller()], in_port=p0)])
    res = dp.run(frame(dst=MAC_B), p0)
    assert (res.verdict, res.outputs) == ("forward", [p1])
    assert dp.run(frame(dst=MAC_B), p0, dry_run=False).retval == TC_ACT_REDIRECT


def test_the_vlan_is_the_in_ports_classification(topo, dp):
    br = topo.add("vb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    ports = {}
    for name, mode in (("acc", VlanConfig(access=10)),
                       ("trk", VlanConfig(trunks=frozenset({20}), native=30)),
                       ("all", VlanConfig())):
        ports[name] = topo.add(name, "veth")
        dp.add_port(br, ports[name], PortKind.DEVICE, mode)
    dp.flows_sync(br, [rule(1, 100, [controller(), ("normal", 0)])])
    dp.packet_in_watch(ALL_BRIDGES)
    tagged20 = frame(vlan=20)
    for port, sent, vlan in (("acc", frame(), 10), ("trk", frame(), 30), ("trk", tagged20, 20),
                             ("all", tagged20, 20), ("all", frame(), 0)):
        dp.run(sent, ports[port], dry_run=False)
        (ev,) = dp.packet_in_poll(100)
        assert (ev.in_port, ev.vlan, ev.data) == (ports[port], vlan, sent[:128]), port


def test_dry_runs_send_and_count_nothing(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(1, 100, [controller()])])
    dp.packet_in_watch(bridge.br)
    for _ in range(3):
        assert dp.run(frame(), p0).verdict == "controller"
    assert dp.packet_in_poll(0) == []
    assert dp.packet_in_counters() == PacketInCounters()
    dp.packet_in_unwatch(bridge.br)
    dp.run(frame(), p0)
    assert dp.packet_in_counters() == PacketInCounters()  # not even unwatched


def test_xdp_hands_a_controller_rule_to_tc(topo, dp):
    br = topo.add("xb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    a, b = topo.add("xa", "veth"), topo.add("xz", "veth")
    for port in (a, b):
        dp.add_port(br, port, PortKind.DEVICE)
    dp.set_port_xdp(a, "generic")
    dp.set_xdp_target(b, True)
    dp.flows_sync(br, [DpRule(2, 100, (), (("output", b), controller()))])
    dp.packet_in_watch(br)
    res = dp.run(frame(), a, hook="xdp")
    assert (res.verdict, res.handoff) == (
        "to-tc", "the rule sends the frame to the controllers (packet-in is sent by TC)")
    real = dp.run(frame(), a, dry_run=False, hook="xdp")
    assert real.retval == XDP_PASS and real.data == frame()  # unchanged, on to TC
    assert dp.packet_in_counters() == PacketInCounters()  # TC sends it, not XDP
    c = dp.port_counters(a)
    assert (c.rx_packets, c.xdp_finished, c.xdp_handoffs) == (0, 0, 1)
    assert dp.run(frame(), a, dry_run=False).retval == TC_ACT_REDIRECT  # then TC
    assert dp.packet_in_counters() == PacketInCounters(sent=1)


def test_bridges_without_a_subscription_count_unwatched(dp, bridge, topo):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(1, 100, [controller()])])
    dp.run(frame(), p0, dry_run=False)
    assert dp.packet_in_counters() == PacketInCounters(unwatched=1)
    other = topo.add("ob", "bridge")
    dp.add_bridge(other, topo.mac(other))
    dp.packet_in_watch(other)  # another bridge's subscription does not cover it
    dp.run(frame(), p0, dry_run=False)
    assert dp.packet_in_counters() == PacketInCounters(unwatched=2)
    dp.packet_in_watch(ALL_BRIDGES)  # every bridge's does
    dp.run(frame(), p0, dry_run=False)
    assert dp.packet_in_counters() == PacketInCounters(sent=1, unwatched=2)
    assert [ev.bridge for ev in dp.packet_in_poll(100)] == [bridge.br]


def test_the_rate_limit_holds_per_cpu_with_a_burst_of_one_second(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(1, 100, [controller(), ("normal", 0)])])
    dp.packet_in_watch(bridge.br)
    dp.packet_in_set_rate(5)
    dp.run(frame(), p0, dry_run=False, repeat=200)  # one CPU, well within a second
    got = dp.packet_in_poll(100)
    c = dp.packet_in_counters()
    assert len(got) == c.sent and 5 <= c.sent <= 6  # the burst (one second's worth)
    assert c.rate_limited == 200 - c.sent and c.ring_full == 0
    assert dp.packet_in_lost(bridge.br) == c.rate_limited  # the subscription's losses
    assert dp.packet_in_lost(ALL_BRIDGES) == 0  # not watched: nothing counted there


def test_bad_arguments_are_refused(dp):
    with pytest.raises(InvalidArgument, match="rate"):
        dp.packet_in_set_rate(0)
    with pytest.raises(InvalidArgument, match="bridge"):
        dp.packet_in_watch(-1)


def test_controller_max_len_is_checked_and_put_first(dp, bridge):
    from vswitchd.datapath.flows import ACTION_TYPES, compile_actions

    p1 = bridge.ports[1]
    with pytest.raises(InvalidArgument, match="max_len"):
        dp.flows_sync(bridge.br, [rule(1, 1, [controller(PACKET_IN_MAX_LEN + 1)])])
    with pytest.raises(InvalidArgument, match="one controller"):
        dp.flows_sync(bridge.br, [rule(1, 1, [controller(), controller(64)])])
    acts = compile_actions((("output", p1), ("normal", 0), ("controller", 64)))
    names = {v: k for k, v in ACTION_TYPES.items()}
    assert [(names[t], final, arg) for t, final, arg in acts] == [
        ("controller", 0, 64), ("output", 0, p1), ("normal", 0, 0)]
