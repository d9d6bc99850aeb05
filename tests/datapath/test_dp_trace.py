"""Packet tracing in the real datapath program: the dry-run trace report (Datapath.trace) and the
live watch events (filters evaluated by the datapath, rate limit, lost counters, versioned
header)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, Bridge, mac_bytes

from vswitchd.datapath import MAX_WATCHERS, DpRule, PortKind, VlanConfig, WatchFilter
from vswitchd.datapath.constants import WATCH_EVENT_VERSION
from vswitchd.errors import InvalidArgument, NotFound, Unavailable
from vswitchd.flows.model import Action, Match, Rule
from vswitchd.trace.report import build_report

pytestmark = pytest.mark.root

IP_A, IP_B = "10.0.0.1", "10.0.0.2"


def udp(dst: str, src: str, sport: int = 1111, dport: int = 53, vid: int | None = None,
        ip_src: str = IP_A, ip_dst: str = IP_B) -> bytes:
    """Ethernet (+802.1Q) / IPv4 / UDP with 18 bytes of payload."""
    payload = bytes(18)
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 17, 0,
                     socket.inet_aton(ip_src), socket.inet_aton(ip_dst))
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, vid)
    return mac_bytes(dst) + mac_bytes(src) + tag + b"\x08\x00" + ip + l4


def mac_int(mac: str) -> int:
    return int.from_bytes(mac_bytes(mac), "big")


def ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip)) << 96


def snapshot(dp, br, ports):
    return ({p: dp.port_counters(p) for p in [br, *ports]}, dp.fdb_list(br),
            dp.flow_counters(br))


def poll_all(dp, want: int = 0, timeout: float = 1.0):
    """Events until `want` arrived (or the timeout; want=0: whatever comes within it)."""
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += dp.watch_poll(50)
        if want and len(events) >= want:
            break
    return events


# ---- trace report --------------------------------------------------------------------------


def test_trace_known_unicast_report(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.run(udp(BROADCAST, MAC_B), p1, dry_run=False)  # learn B on p1
    res = dp.trace(udp(MAC_B, MAC_A, sport=4000, dport=53), p0)
    assert (res.verdict, res.out_ifindex, res.fdb_hit, res.flood) == ("forward", p1, True, [])
    assert res.stages == ("port", "parse", "flow", "vlan", "l2")
    assert res.rule_id == 0 and res.drop_reason == "none" and res.vlan == 0
    assert res.key == {
        "in_port": p0, "dl_src": mac_int(MAC_A), "dl_dst": mac_int(MAC_B), "dl_type": 0x0800,
        "dl_vlan": 0, "nw_proto": 17, "ip_src": ip_int(IP_A), "ip_dst": ip_int(IP_B),
        "tp_src": 4000, "tp_dst": 53,
    }
    assert res.tags == {p1: "as-is"}


def test_trace_unknown_unicast_and_broadcast_flood_set(dp, bridge):
    p0, p1, p2 = bridge.ports
    for dst in (MAC_C, BROADCAST):
        res = dp.trace(udp(dst, MAC_A), p0)
        assert res.verdict == "flood" and not res.fdb_hit
        assert sorted(res.flood) == sorted([bridge.br, p1, p2])  # never back to in_port
        assert res.stages[-1] == "l2"
        assert res.key["dl_dst"] == mac_int(dst)
        assert res.tags == {bridge.br: "as-is", p1: "as-is", p2: "as-is"}


def test_trace_flow_drop_and_flow_output(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.flows_sync(bridge.br, [
        DpRule(7, 100, (("tp_dst", 53, 0xFFFF), ("nw_proto", 17, 0xFF)), (("drop", 0),)),
        DpRule(8, 90, (("tp_dst", 80, 0xFFFF),), (("output", p2),)),
    ])
    res = dp.trace(udp(MAC_B, MAC_A, dport=53), p0)
    assert (res.verdict, res.drop_reason, res.rule_id, res.priority) == ("drop", "flow-drop",
                                                                       7, 100)
    assert res.stages == ("port", "parse", "flow")
    out = dp.trace(udp(MAC_B, MAC_A, dport=80), p0)
    assert (out.verdict, out.rule_id, out.priority) == ("forward", 8, 90)
    assert out.outputs == [p2] and out.out_ifindex == p2
    assert out.tags == {p2: "as-is"}
    miss = dp.trace(udp(MAC_B, MAC_A, dport=81), p0)
    assert miss.rule_id == 0 and miss.verdict == "flood"


def test_trace_vlan_decision_mismatch_and_tags(topo, dp):
    br = topo.add("tvb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    acc, trunk = topo.add("tva", "veth"), topo.add("tvt", "veth")
    dp.add_port(br, acc, PortKind.DEVICE, VlanConfig(access=10))
    dp.add_port(br, trunk, PortKind.DEVICE, VlanConfig(trunks=frozenset({10, 20})))
    res = dp.trace(udp(BROADCAST, MAC_A, vid=20), acc)  # tagged into an access port
    assert (res.verdict, res.drop_reason) == ("drop", "vlan-mismatch")
    assert "vlan" not in res.stages and res.key["dl_vlan"] == 20
    ok = dp.trace(udp(BROADCAST, MAC_A), acc)
    assert ok.vlan == 10 and "vlan" in ok.stages
    # the bridge device (the host) carries every VLAN, tagged
    assert sorted(ok.flood) == sorted([br, trunk])
    assert ok.tags == {br: "tagged:10", trunk: "tagged:10"}
    back = dp.trace(udp(BROADCAST, MAC_B, vid=10), trunk)
    assert back.vlan == 10 and sorted(back.flood) == sorted([br, acc])
    assert back.tags == {br: "as-is", acc: "untagged"}
    other = dp.trace(udp(BROADCAST, MAC_B, vid=30), trunk)
    assert (other.verdict, other.drop_reason) == ("drop", "vlan-mismatch")


def test_trace_truncated_frame_reports_what_was_parsed(dp, bridge):
    p0 = bridge.ports[0]
    frame = udp(MAC_B, MAC_A)[:14 + 20 + 2]  # the UDP header is cut
    res = dp.trace(frame, p0)
    assert (res.verdict, res.drop_reason) == ("drop", "malformed")
    assert res.stages == ("port",)
    assert res.key["dl_src"] == mac_int(MAC_A) and res.key["dl_dst"] == mac_int(MAC_B)
    assert res.key["dl_type"] == 0x0800 and res.key["nw_proto"] == 17
    assert res.key["ip_src"] == ip_int(IP_A) and res.key["ip_dst"] == ip_int(IP_B)
    assert res.key["tp_src"] == 0 and res.key["tp_dst"] == 0


def test_trace_changes_nothing(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.run(udp(BROADCAST, MAC_B), p1, dry_run=False)
    dp.flows_sync(bridge.br, [DpRule(5, 10, (("tp_dst", 53, 0xFFFF),), (("normal", 0),))])
    dp.run(udp(MAC_B, MAC_C), p0, dry_run=False)  # the rule has counters now
    slot = dp.watch_add(WatchFilter(bridge=bridge.br))
    before = snapshot(dp, bridge.br, bridge.ports)
    assert before[2][5].packets == 1
    for frame in (udp(MAC_B, MAC_A), udp(BROADCAST, MAC_C), udp(MAC_B, MAC_A)[:36],
                  udp(MAC_C, "01:00:00:00:00:01")):
        dp.trace(frame, p0)
    after = snapshot(dp, bridge.br, bridge.ports)
    assert [(r.mac, r.vlan, r.ifindex) for r in after[1]] == \
        [(r.mac, r.vlan, r.ifindex) for r in before[1]]  # (ages move with the clock)
    assert {r.mac for r in after[1]} == {bridge.mac, MAC_B, MAC_C}  # MAC_A not learned
    assert after[0] == before[0] and after[2] == before[2]
    assert poll_all(dp, timeout=0.2) == []  # no event from a dry run
    assert dp.watch_lost(slot) == 0


# ---- per-output VLAN tags in the trace report (the real program's report, explained) --------

VLAN_MODES = {
    "a10": VlanConfig(access=10),
    "a10b": VlanConfig(access=10),
    "a20": VlanConfig(access=20),
    "t": VlanConfig(trunks=frozenset({10, 20})),          # no native VLAN
    "tn": VlanConfig(trunks=frozenset({20}), native=10),  # native 10: untagged on the wire
    "u": VlanConfig(),                                     # unconfigured: every VLAN, tagged
}


class TagBridge:
    """A bridge with the ports of VLAN_MODES; `host` is the bridge device."""

    def __init__(self, topo, dp) -> None:
        self.dp = dp
        self.br = topo.add("tgb", "bridge")
        dp.add_bridge(self.br, topo.mac(self.br))
        self.port = {"host": self.br}
        for i, (name, mode) in enumerate(VLAN_MODES.items()):
            self.port[name] = topo.add(f"tg{i}", "veth")
            dp.add_port(self.br, self.port[name], PortKind.DEVICE, mode)
        self.names = {v: k for k, v in self.port.items()}

    def learn(self, mac: str, port: str, vlan: int) -> None:
        """MAC on PORT in VLAN, learned from a real frame sent the way PORT carries VLAN."""
        if port == "host":
            self.dp.fdb_add_static(self.br, mac, vlan, self.br)
            return
        mode = VLAN_MODES[port]
        wire_untagged = mode.access or vlan == mode.native or (not mode.trunks and vlan == 0)
        frame = udp(BROADCAST, mac, vid=None if wire_untagged else vlan)
        self.dp.run(frame, self.port[port], dry_run=False)
        assert {(r.mac, r.vlan): r.ifindex for r in self.dp.fdb_list(self.br)}[(mac, vlan)] \
            == self.port[port]

    def report(self, port: str, frame: bytes, vid: int | None, rule: Rule | None = None):
        res = self.dp.trace(frame, self.port[port])
        return build_report(bridge="tgb", in_port=port, result=res, names=self.names,
                            rule=rule, n_rules=int(rule is not None), length=len(frame),
                            truncated=False, port_vlan=VLAN_MODES.get(port), frame_vid=vid)


@pytest.fixture
def tb(topo, dp):
    return TagBridge(topo, dp)


def tags(outputs) -> dict[str, int | None]:
    """port -> VID it leaves tagged with, None = untagged (every tag state reported)."""
    assert all(o.tagged is not None for o in outputs), outputs
    return {o.port: o.vlan if o.tagged else None for o in outputs}


def stage_detail(rep, name: str):
    return next(s.detail for s in rep.stages if s.name == name)


# (in port, VID sent / None = untagged, expected port -> VID out / None = untagged)
FLOOD_TAGS = [
    ("a10", None, {"a10b": None, "t": 10, "tn": None, "u": 10, "host": 10}),
    ("a20", 0, {"t": 20, "tn": 20, "u": 20, "host": 20}),         # priority tag: VID := 20
    ("t", 20, {"a20": None, "tn": 20, "u": 20, "host": 20}),      # tagged ones as-is
    ("t", 10, {"a10": None, "a10b": None, "tn": None, "u": 10, "host": 10}),
    ("tn", None, {"a10": None, "a10b": None, "t": 10, "u": 10, "host": 10}),  # native in
    ("u", 10, {"a10": None, "a10b": None, "t": 10, "tn": None, "host": 10}),
    ("u", None, {"host": None}),                                   # VLAN 0: plain switching
]


@pytest.mark.parametrize("port,vid,expected", FLOOD_TAGS,
                         ids=[f"{p}-{v}" for p, v, _ in FLOOD_TAGS])
def test_trace_report_flood_tag_per_output(tb, port, vid, expected):
    rep = tb.report(port, udp(BROADCAST, MAC_A, vid=vid), vid)
    assert rep.verdict == "flood"
    assert tags(rep.output_tags) == expected
    assert [o.port for o in rep.output_tags] == list(rep.outputs)
    assert stage_detail(rep, "verdict").output_tags == rep.output_tags
    l2 = stage_detail(rep, "l2")
    assert tags(l2.output_tags) == expected and [o.port for o in l2.output_tags] == list(l2.flood)
    if vid is None and port == "u":  # no VLAN in play: summaries read as without VLANs
        assert next(s.summary for s in rep.stages if s.name == "l2").endswith("flood to host")
        assert rep.stages[-1].summary == "flood: output to host"
    else:
        for name, out in expected.items():
            text = f"{name} (tagged {out})" if out is not None else f"{name} (untagged)"
            assert text in rep.stages[-1].summary, rep.stages[-1].summary


# (in port, VID sent, the port MAC_B is learned on, VID out / None = untagged)
UNICAST_TAGS = [
    ("a10", None, "a10b", None),
    ("a10", None, "t", 10),          # pushed
    ("a10", None, "tn", None),       # native there
    ("a10", None, "u", 10),
    ("a10", 0, "t", 10),             # priority tag rewritten, not "as it came"
    ("t", 10, "a10", None),          # popped
    ("t", 20, "tn", 20),             # as it came: tagged 20
    ("t", 20, "u", 20),
    ("tn", None, "t", 10),           # native in, tagged out
    ("u", 20, "a20", None),
    ("u", None, "host", None),       # VLAN 0
    ("a20", None, "host", 20),       # the host carries every VLAN tagged
]


@pytest.mark.parametrize("port,vid,to,out", UNICAST_TAGS,
                         ids=[f"{p}-{v}-{t}" for p, v, t, _ in UNICAST_TAGS])
def test_trace_report_unicast_tag(tb, port, vid, to, out):
    frame = udp(MAC_B, MAC_A, vid=vid)
    vlan = tb.dp.trace(frame, tb.port[port]).vlan
    tb.learn(MAC_B, to, vlan)
    rep = tb.report(port, frame, vid)
    assert (rep.verdict, rep.outputs) == ("forward", (to,))
    assert tags(rep.output_tags) == {to: out}
    l2 = stage_detail(rep, "l2")
    assert (l2.fdb_hit, l2.port, tags(l2.output_tags)) == (True, to, {to: out})
    summary = next(s.summary for s in rep.stages if s.name == "l2")
    if vlan:
        want = f"{to} (tagged {out})" if out is not None else f"{to} (untagged)"
        assert summary.endswith(f"FDB hit, port {want}"), summary
    else:
        assert summary.endswith(f"FDB hit, port {to}"), summary


def test_trace_report_flow_output_tags(tb):
    """output:PORT after mod_vlan_vid leaves with the rule's tag; a mirror copy before the
    rule's normal takes the frame as it came."""
    u, t, a10 = tb.port["u"], tb.port["t"], tb.port["a10"]
    push = Rule(priority=10, match=Match(in_port="u"), rule_id=1,
                actions=(Action("mod_vlan_vid", 30), Action("output", "t")))
    mirror = Rule(priority=10, match=Match(in_port="a10"), rule_id=2,
                  actions=(Action("output", "u"), Action("normal")))
    tb.dp.flows_sync(tb.br, [
        DpRule(1, 10, (("in_port", u, 0xFFFFFFFF),), (("mod_vlan_vid", 30), ("output", t))),
        DpRule(2, 10, (("in_port", a10, 0xFFFFFFFF),), (("output", u), ("normal", 0))),
    ])
    rep = tb.report("u", udp(MAC_B, MAC_A), None, push)
    assert (rep.verdict, tags(rep.output_tags)) == ("forward", {"t": 30})
    assert rep.stages[-1].summary == "forward: output to t (tagged 30)"
    tb.learn(MAC_B, "t", 10)
    rep = tb.report("a10", udp(MAC_B, MAC_A), None, mirror)
    assert rep.outputs == ("u", "t")
    assert tags(rep.output_tags) == {"u": None, "t": 10}  # the mirror: untagged, as it came


# ---- watch ---------------------------------------------------------------------------------


def test_watch_events_have_the_decision(dp, bridge):
    p0, p1, p2 = bridge.ports
    slot = dp.watch_add(WatchFilter(bridge=bridge.br))
    assert slot == 0
    dp.flows_sync(bridge.br, [DpRule(9, 50, (("tp_dst", 666, 0xFFFF),), (("drop", 0),))])
    dp.run(udp(BROADCAST, MAC_B), p1, dry_run=False)              # flood
    dp.run(udp(MAC_B, MAC_A, sport=5, dport=7), p0, dry_run=False)  # known unicast
    dp.run(udp(MAC_B, MAC_A, dport=666), p0, dry_run=False)        # flow drop
    dp.run(udp(MAC_B, MAC_A)[:36], p0, dry_run=False)             # malformed
    flood, fwd, fdrop, bad = poll_all(dp, 4)
    assert (flood.verdict, flood.in_port, flood.n_copies) == ("flood", p1, 3)
    assert flood.dl_dst == BROADCAST and flood.outputs == ()
    assert fwd.watchers == 1 and fwd.bridge == bridge.br and fwd.in_port == p0
    assert (fwd.verdict, fwd.outputs, fwd.n_copies, fwd.rule_id) == ("forward", (p1,), 0, 0)
    assert (fwd.dl_src, fwd.dl_dst, fwd.dl_type, fwd.dl_vlan) == (MAC_A, MAC_B, 0x0800, 0)
    assert (fwd.ip_src, fwd.ip_dst, fwd.nw_proto, fwd.tp_src, fwd.tp_dst) == (IP_A, IP_B, 17,
                                                                              5, 7)
    assert fwd.length == len(udp(MAC_B, MAC_A)) and fwd.drop_reason == "none"
    assert fwd.time_ns <= time.monotonic_ns()
    assert (fdrop.verdict, fdrop.drop_reason, fdrop.rule_id) == ("drop", "flow-drop", 9)
    assert (bad.verdict, bad.drop_reason, bad.length) == ("drop", "malformed", 36)
    assert (bad.ip_src, bad.nw_proto, bad.tp_dst) == (IP_A, 17, 0)
    assert dp.watch_lost(slot) == 0


def test_watch_invalid_src_mac_and_vlan_mismatch_events(topo, dp):
    br = topo.add("wvb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    acc = topo.add("wva", "veth")
    dp.add_port(br, acc, PortKind.DEVICE, VlanConfig(access=10))
    dp.watch_add(WatchFilter(bridge=br))
    dp.run(udp(BROADCAST, MAC_A, vid=20), acc, dry_run=False)
    dp.run(udp(BROADCAST, "01:00:00:00:00:01"), acc, dry_run=False)
    mismatch, src = poll_all(dp, 2)
    assert (mismatch.drop_reason, mismatch.dl_vlan) == ("vlan-mismatch", 20)
    assert src.drop_reason == "invalid-src-mac"


def test_watch_filters_are_applied_by_the_datapath(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.run(udp(BROADCAST, MAC_B), p1, dry_run=False)
    dp.flows_sync(bridge.br, [DpRule(3, 10, (("tp_dst", 666, 0xFFFF),), (("drop", 0),))])
    by_port = dp.watch_add(WatchFilter(bridge=bridge.br, in_port=p2))
    by_match = dp.watch_add(WatchFilter(bridge=bridge.br,
                                        fields=(("ip_dst", ip_int("10.9.0.0"),
                                                 ((1 << 128) - 1) ^ ((1 << 112) - 1)),)))
    drops = dp.watch_add(WatchFilter(bridge=bridge.br, drops_only=True))
    other_bridge = dp.watch_add(WatchFilter(bridge=bridge.br + 1000))
    dp.run(udp(MAC_B, MAC_A), p0, dry_run=False)                      # nobody's
    dp.run(udp(MAC_B, MAC_C), p2, dry_run=False)                      # by_port
    dp.run(udp(MAC_B, MAC_A, ip_dst="10.9.3.4"), p0, dry_run=False)    # by_match
    dp.run(udp(MAC_B, MAC_A, dport=666), p0, dry_run=False)           # drops
    dp.run(udp(MAC_B, MAC_C, ip_dst="10.9.0.1", dport=666), p2, dry_run=False)  # all three
    events = poll_all(dp, timeout=0.5)
    assert [(e.in_port, e.watchers) for e in events] == [
        (p2, 1 << by_port), (p0, 1 << by_match), (p0, 1 << drops),
        (p2, (1 << by_port) | (1 << by_match) | (1 << drops)),
    ]
    assert events[1].ip_dst == "10.9.3.4" and events[2].verdict == "drop"
    assert all(not e.watchers & (1 << other_bridge) for e in events)
    for slot in (by_port, by_match, drops, other_bridge):
        assert dp.watch_lost(slot) == 0


def test_watch_remove_stops_emission(dp, bridge):
    p0 = bridge.ports[0]
    a = dp.watch_add(WatchFilter(bridge=bridge.br))
    b = dp.watch_add(WatchFilter(bridge=bridge.br, in_port=p0))
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False)
    assert [e.watchers for e in poll_all(dp, 1)] == [(1 << a) | (1 << b)]
    dp.watch_remove(a)
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False)
    assert [e.watchers for e in poll_all(dp, 1)] == [1 << b]
    dp.watch_remove(b)
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False)
    assert poll_all(dp, timeout=0.3) == []
    ctl = dp._watch_ctl[dp._watch_ctl.Key(0)]
    assert ctl.active == 0  # the datapath's one check says: nobody watches
    with pytest.raises(NotFound):
        dp.watch_remove(b)


def test_watch_slots_are_limited(dp, bridge):
    slots = [dp.watch_add(WatchFilter(bridge=bridge.br)) for _ in range(MAX_WATCHERS)]
    assert sorted(slots) == list(range(MAX_WATCHERS))
    with pytest.raises(Unavailable, match=f"at most {MAX_WATCHERS} watchers"):
        dp.watch_add(WatchFilter(bridge=bridge.br))
    dp.watch_remove(3)
    assert dp.watch_add(WatchFilter(bridge=bridge.br)) == 3
    with pytest.raises(InvalidArgument):
        dp.watch_add(WatchFilter(bridge=bridge.br, fields=(("no_such", 1, 1),)))
    with pytest.raises(InvalidArgument):
        dp.watch_set_rate(0)


def test_watch_rate_limit_counts_lost_events(dp, bridge):
    p0 = bridge.ports[0]
    a = dp.watch_add(WatchFilter(bridge=bridge.br))
    b = dp.watch_add(WatchFilter(bridge=bridge.br, drops_only=True))
    dp.watch_set_rate(5)
    # one BPF_PROG_TEST_RUN with repeat runs on one CPU: one token bucket
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False, repeat=50)
    events = poll_all(dp, timeout=0.5)
    assert 5 <= len(events) <= 6  # the burst (one second's worth), a refill at most
    assert len(events) + dp.watch_lost(a) == 50
    assert dp.watch_lost(b) == 0  # floods are not for a drops-only watcher
    dp.watch_set_rate(10000)
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False, repeat=50)
    assert len(poll_all(dp, 50)) == 50


def test_watch_event_header_is_checked(dp, bridge, monkeypatch):
    p0 = bridge.ports[0]
    dp.watch_add(WatchFilter(bridge=bridge.br))
    dp.run(udp(BROADCAST, MAC_A), p0, dry_run=False)
    ring = dp._watch_ring
    raw = ring.poll(500)[-1]
    decoder = dp._watch_decoder
    assert raw[0] == WATCH_EVENT_VERSION == 2 and raw[1] == 1  # 2: the event names its hook
    assert int.from_bytes(raw[2:4], "little") == len(raw) == decoder.size
    assert decoder.decode(raw).dl_src == MAC_A
    for bad, why in ((bytes([3]) + raw[1:], "version 3"), (raw[:1] + b"\x07" + raw[2:], "type"),
                     (raw[:2] + (8).to_bytes(2, "little") + raw[4:], "length"),
                     (raw[:3], "shorter")):
        with pytest.raises(ValueError, match=why):
            decoder.decode(bad)
    # watch_poll skips what it cannot read and counts it
    real_poll = ring.poll
    monkeypatch.setattr(ring, "poll", lambda timeout: [bytes([9]) + raw[1:], *real_poll(timeout)])
    before = dp.watch_bad_events
    dp.run(udp(BROADCAST, MAC_B), p0, dry_run=False)
    assert [e.dl_src for e in poll_all(dp, 1)] == [MAC_B]
    assert dp.watch_bad_events == before + 1


def test_watch_real_traffic_on_the_wire(dp, topo):
    """Frames sent on the far end of a port's veth (AF_PACKET): the attached program emits."""
    b = Bridge(topo, dp, "w", 2, [PortKind.DEVICE, PortKind.DEVICE])
    p0, p1 = b.ports
    slot = dp.watch_add(WatchFilter(bridge=b.br, fields=(("tp_dst", 4242, 0xFFFF),)))
    names = {}
    for index in (p0, p1):
        names[index] = socket.if_indextoname(index) + "x"
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((names[p1], 0))
        s.send(udp(BROADCAST, MAC_B, dport=4242))   # learns B on p1
        s.close()
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((names[p0], 0))
        for _ in range(3):
            s.send(udp(MAC_B, MAC_A, dport=4242))
        s.send(udp(MAC_B, MAC_A, dport=4243))       # filtered out by the datapath
    finally:
        s.close()
    events = poll_all(dp, 4, timeout=2.0)
    assert [(e.in_port, e.verdict) for e in events] == [(p1, "flood")] + [(p0, "forward")] * 3
    assert all(e.tp_dst == 4242 and e.watchers == 1 << slot for e in events)
    assert events[1].outputs == (p1,) and events[0].n_copies == 2
