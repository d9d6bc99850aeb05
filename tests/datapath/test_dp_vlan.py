"""VLANs in the real datapath program (BPF_PROG_TEST_RUN dry and real runs): ingress
classification per port mode, egress tag state, flooding and the FDB per VLAN, run-time
changes, and the interplay with the flow actions mod_vlan_vid / strip_vlan."""

from __future__ import annotations

import struct

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, mac_bytes

from vswitchd.datapath import DROP_REASONS, FLOW_FIELDS, Datapath, DpRule, PortKind, VlanConfig
from vswitchd.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.root

TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
PAYLOAD = bytes(range(46))


def untagged(dst: str, src: str) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + PAYLOAD


def tagged(dst: str, src: str, vid: int, pcp: int = 0) -> bytes:
    tag = struct.pack("!HH", 0x8100, (pcp << 13) | vid)
    return mac_bytes(dst) + mac_bytes(src) + tag + b"\x08\x00" + PAYLOAD


def vid_of(frame: bytes) -> int | None:
    """The VID of the frame's 802.1Q tag, None when untagged; asserts the rest is intact."""
    if frame[12:14] == b"\x81\x00":
        assert frame[16:] == b"\x08\x00" + PAYLOAD
        return struct.unpack("!H", frame[14:16])[0] & 0x0FFF
    assert frame[12:] == b"\x08\x00" + PAYLOAD
    return None


class VlanBridge:
    """A bridge whose ports have the given VLAN modes (name -> VlanConfig)."""

    def __init__(self, topo, dp, modes: dict[str, VlanConfig]) -> None:
        self.br = topo.add("vb", "bridge")
        self.mac = topo.mac(self.br)
        dp.add_bridge(self.br, self.mac)
        self.port: dict[str, int] = {}
        for i, (name, mode) in enumerate(modes.items()):
            idx = topo.add(f"v{i}", "veth")
            dp.add_port(self.br, idx, PortKind.DEVICE, mode)
            self.port[name] = idx

    def names(self, ifindexes) -> set[str]:
        by_index = {v: k for k, v in self.port.items()}
        by_index[self.br] = "host"
        return {by_index[i] for i in ifindexes}


MODES = {
    "a10": VlanConfig(access=10),
    "a10b": VlanConfig(access=10),
    "a20": VlanConfig(access=20),
    "t": VlanConfig(trunks=frozenset({10, 20})),         # no native
    "tn": VlanConfig(trunks=frozenset({20}), native=10),  # native 10 not listed: still carried
    "u": VlanConfig(),
}


@pytest.fixture
def vb(topo, dp):
    return VlanBridge(topo, dp, MODES)


def fdb_of(dp, br):
    return {(r.mac, r.vlan): r.ifindex for r in dp.fdb_list(br)}


def learn(dp, vb, port: str, frame: bytes) -> None:
    assert dp.run(frame, vb.port[port], dry_run=False).retval == TC_ACT_REDIRECT


def test_vlan_mismatch_in_the_one_table():
    assert "vlan-mismatch" in DROP_REASONS.values()
    assert "vlan-failed" in DROP_REASONS.values()


@pytest.mark.parametrize("port,frame,vlan", [
    ("a10", untagged(BROADCAST, MAC_A), 10),
    ("a10", tagged(BROADCAST, MAC_A, 0, pcp=5), 10),  # priority tag = untagged
    ("a10", tagged(BROADCAST, MAC_A, 10), None),      # tagged on an access port
    ("a10", tagged(BROADCAST, MAC_A, 20), None),
    ("t", tagged(BROADCAST, MAC_A, 10), 10),
    ("t", tagged(BROADCAST, MAC_A, 20), 20),
    ("t", tagged(BROADCAST, MAC_A, 30), None),       # not allowed
    ("t", untagged(BROADCAST, MAC_A), None),         # no native VLAN
    ("tn", untagged(BROADCAST, MAC_A), 10),          # native
    ("tn", tagged(BROADCAST, MAC_A, 10), 10),        # the native VID tagged is accepted
    ("tn", tagged(BROADCAST, MAC_A, 20), 20),
    ("tn", tagged(BROADCAST, MAC_A, 30), None),
    ("u", untagged(BROADCAST, MAC_A), 0),
    ("u", tagged(BROADCAST, MAC_A, 30), 30),
    ("u", tagged(BROADCAST, MAC_A, 4094), 4094),
], ids=lambda v: v.hex()[24:32] if isinstance(v, bytes) else str(v))
def test_ingress_classification(dp, vb, port, frame, vlan):
    res = dp.run(frame, vb.port[port])
    if vlan is None:
        assert (res.verdict, res.drop_reason, res.retval) == ("drop", "vlan-mismatch", TC_ACT_SHOT)
        real = dp.run(frame, vb.port[port], dry_run=False)
        assert real.retval == TC_ACT_SHOT
        c = dp.port_counters(vb.port[port])
        assert (c.rx_packets, c.drops) == (1, {"vlan-mismatch": 1})
        assert dp.fdb_list(vb.br) == [r for r in dp.fdb_list(vb.br) if r.mac != MAC_A]
    else:
        assert (res.verdict, res.vlan) == ("flood", vlan)
        dp.run(frame, vb.port[port], dry_run=False)
        assert fdb_of(dp, vb.br)[(MAC_A, vlan)] == vb.port[port]  # learned in its VLAN


@pytest.mark.parametrize("port,frame,members", [
    ("a10", untagged(BROADCAST, MAC_A), {"a10b", "t", "tn", "u", "host"}),
    ("a20", untagged(BROADCAST, MAC_A), {"t", "tn", "u", "host"}),
    ("t", tagged(BROADCAST, MAC_A, 20), {"a20", "tn", "u", "host"}),
    ("tn", untagged(MAC_C, MAC_A), {"a10", "a10b", "t", "u", "host"}),  # unknown unicast
    ("u", untagged(BROADCAST, MAC_A), {"host"}),  # VLAN 0: unconfigured ports only
    ("u", tagged(BROADCAST, MAC_A, 10), {"a10", "a10b", "t", "tn", "host"}),
    ("u", tagged(BROADCAST, MAC_A, 99), {"host"}),
], ids=["a10", "a20", "t-20", "tn-native", "u-0", "u-10", "u-99"])
def test_flood_set_per_vlan(dp, vb, port, frame, members):
    res = dp.run(frame, vb.port[port])
    assert res.verdict == "flood"
    assert vb.names(res.flood) == members
    assert len(res.flood) == len(members)
    assert dp.run(frame, vb.port[port], dry_run=False).retval == TC_ACT_REDIRECT


def test_flood_real_run_ends_with_the_right_tag(dp, vb):
    """The frame the last target gets (data_out): the targets that take the frame as it is go
    first, then one tag change, then the others."""
    out = dp.run(untagged(BROADCAST, MAC_A), vb.port["a10"], dry_run=False)
    assert vid_of(out.data) == 10  # untagged a10b first, then pushed for t, u, host
    out = dp.run(tagged(BROADCAST, MAC_B, 20), vb.port["t"], dry_run=False)
    assert vid_of(out.data) is None  # tagged tn, u, host first, then popped for a20
    out = dp.run(tagged(BROADCAST, MAC_C, 0, pcp=3), vb.port["a20"], dry_run=False)
    assert vid_of(out.data) == 20  # priority tag: VID set to 20, kept, no untagged target
    assert dp.port_counters(vb.port["a20"]).tx_packets == 1
    for name in ("t", "tn", "u"):
        assert dp.port_counters(vb.port[name]).tx_packets >= 2, name


# (from port, frame, to port with MAC_B learned there, expected VID out / None = untagged)
UNICAST = [
    ("a10", untagged(MAC_B, MAC_A), "a10b", None),
    ("a10", untagged(MAC_B, MAC_A), "t", 10),              # pushed
    ("a10", untagged(MAC_B, MAC_A), "u", 10),              # pushed (VLAN 10 on a plain port)
    ("a10", untagged(MAC_B, MAC_A), "tn", None),           # native: untagged
    ("a10", tagged(MAC_B, MAC_A, 0, pcp=2), "t", 10),      # priority tag rewritten to 10
    ("t", tagged(MAC_B, MAC_A, 10), "a10", None),          # popped
    ("t", tagged(MAC_B, MAC_A, 10), "tn", None),           # popped: native there
    ("t", tagged(MAC_B, MAC_A, 20), "tn", 20),             # kept
    ("t", tagged(MAC_B, MAC_A, 20), "u", 20),              # kept
    ("tn", untagged(MAC_B, MAC_A), "t", 10),               # native in, tagged out
    ("u", tagged(MAC_B, MAC_A, 20), "a20", None),          # popped
    ("u", untagged(MAC_B, MAC_A), "host", None),           # VLAN 0 as before
]


def _learn_b(dp, vb, to: str, vlan: int) -> None:
    if to == "host":
        dp.fdb_add_static(vb.br, MAC_B, vlan, vb.br)
        return
    mode = MODES[to]
    if mode.access or vlan == mode.native or (not mode.trunks and vlan == 0):
        frame = untagged(BROADCAST, MAC_B)
    else:
        frame = tagged(BROADCAST, MAC_B, vlan)
    learn(dp, vb, to, frame)
    assert fdb_of(dp, vb.br)[(MAC_B, vlan)] == vb.port[to]


@pytest.mark.parametrize("src,frame,to,vid", UNICAST,
                         ids=[f"{s}-{t}-{v}" for s, _, t, v in UNICAST])
def test_known_unicast_egress_tag(dp, vb, src, frame, to, vid):
    vlan = dp.run(frame, vb.port[src]).vlan
    _learn_b(dp, vb, to, vlan)
    res = dp.run(frame, vb.port[src])
    target = vb.br if to == "host" else vb.port[to]
    assert (res.verdict, res.out_ifindex, res.fdb_hit) == ("forward", target, True)
    out = dp.run(frame, vb.port[src], dry_run=False)
    assert out.retval == TC_ACT_REDIRECT
    assert vid_of(out.data) == vid
    if vid is not None and frame[12:14] == b"\x81\x00":  # PCP kept on rewrite
        assert out.data[14] >> 5 == frame[14] >> 5


def test_unicast_to_a_port_outside_the_vlan(dp, vb):
    dp.fdb_add_static(vb.br, MAC_C, 10, vb.port["a20"])  # a static entry can point anywhere
    res = dp.run(untagged(MAC_C, MAC_A), vb.port["a10"])
    assert (res.verdict, res.drop_reason, res.fdb_hit) == ("drop", "vlan-mismatch", True)
    dp.run(untagged(MAC_C, MAC_A), vb.port["a10"], dry_run=False)
    assert dp.port_counters(vb.port["a10"]).drops == {"vlan-mismatch": 1}
    assert dp.port_counters(vb.port["a20"]).tx_packets == 0


def test_fdb_per_vlan(dp, vb):
    learn(dp, vb, "a10", untagged(BROADCAST, MAC_A))
    learn(dp, vb, "a20", untagged(BROADCAST, MAC_A))  # the same MAC in VLAN 20
    fdb = fdb_of(dp, vb.br)
    assert (fdb[(MAC_A, 10)], fdb[(MAC_A, 20)]) == (vb.port["a10"], vb.port["a20"])
    res = dp.run(untagged(MAC_A, MAC_B), vb.port["a10b"])
    assert (res.verdict, res.out_ifindex) == ("forward", vb.port["a10"])
    res = dp.run(tagged(MAC_A, MAC_B, 20), vb.port["t"])
    assert (res.verdict, res.out_ifindex) == ("forward", vb.port["a20"])
    res = dp.run(tagged(MAC_A, MAC_B, 10), vb.port["t"])
    assert (res.verdict, res.out_ifindex) == ("forward", vb.port["a10"])
    # known in VLAN 10 only: unknown in VLAN 20
    learn(dp, vb, "a10b", untagged(BROADCAST, MAC_C))
    res = dp.run(untagged(MAC_C, MAC_B), vb.port["a20"])
    assert (res.verdict, res.fdb_hit) == ("flood", False)
    assert vb.names(res.flood) == {"t", "tn", "u", "host"}
    assert (MAC_C, 20) not in fdb_of(dp, vb.br)


def test_set_port_vlan_at_run_time(dp, vb):
    p = vb.port["a10b"]
    learn(dp, vb, "a10b", untagged(BROADCAST, MAC_B))
    dp.fdb_add_static(vb.br, MAC_C, 10, p)
    assert dp.port_vlan(p) == VlanConfig(access=10)
    dp.set_port_vlan(p, VlanConfig(access=20))
    assert dp.port_vlan(p) == VlanConfig(access=20)
    fdb = fdb_of(dp, vb.br)
    assert (MAC_B, 10) not in fdb  # learned entries flushed
    assert fdb[(MAC_C, 10)] == p  # static ones stay
    assert "a10b" not in vb.names(dp.run(untagged(BROADCAST, MAC_A), vb.port["a10"]).flood)
    assert "a10b" in vb.names(dp.run(untagged(BROADCAST, MAC_A), vb.port["a20"]).flood)
    assert dp.run(untagged(BROADCAST, MAC_B), p).vlan == 20
    # to a trunk and back; the trunk's map entry follows
    trunk = VlanConfig(trunks=frozenset({5, 4094}), native=7)
    dp.set_port_vlan(p, trunk)
    assert dp.port_vlan(p) == trunk
    assert dp.run(tagged(BROADCAST, MAC_B, 4094), p).vlan == 4094
    assert dp.run(untagged(BROADCAST, MAC_B), p).vlan == 7
    assert dp.run(tagged(BROADCAST, MAC_B, 20), p).drop_reason == "vlan-mismatch"
    assert dp._trunks.get(dp._trunks.Key(p)) is not None
    dp.set_port_vlan(p, VlanConfig())
    assert dp.port_vlan(p) == VlanConfig()
    assert dp._trunks.get(dp._trunks.Key(p)) is None
    assert dp.run(tagged(BROADCAST, MAC_B, 20), p).vlan == 20
    # re-adopting a port with the same mode keeps its learned entries; another mode flushes
    learn(dp, vb, "a10b", untagged(BROADCAST, MAC_B))
    dp.add_port(vb.br, p, PortKind.DEVICE, VlanConfig())
    assert (MAC_B, 0) in fdb_of(dp, vb.br)
    dp.add_port(vb.br, p, PortKind.DEVICE, VlanConfig(access=30))
    assert (MAC_B, 0) not in fdb_of(dp, vb.br)
    assert dp.port_vlan(p) == VlanConfig(access=30)


def test_set_port_vlan_errors(dp, vb, topo):
    with pytest.raises(InvalidArgument) as exc:
        dp.set_port_vlan(vb.br, VlanConfig(access=10))
    assert exc.value.field == "vlan"
    dp.set_port_vlan(vb.br, VlanConfig())  # the host port stays unconfigured: fine
    assert dp.port_vlan(vb.br) == VlanConfig()
    stray = topo.add("s", "veth")
    with pytest.raises(NotFound):
        dp.set_port_vlan(stray, VlanConfig(access=10))
    with pytest.raises(NotFound):
        dp.port_vlan(stray)
    with pytest.raises(InvalidArgument) as exc:
        dp.set_port_vlan(vb.port["u"], 10)
    assert exc.value.field == "vlan"
    with pytest.raises(InvalidArgument):
        dp.add_port(vb.br, stray, PortKind.DEVICE, {"access": 10})
    assert dp.run(untagged(BROADCAST, MAC_A), stray).verdict == "pass"


@pytest.mark.parametrize("kwargs,field,value", [
    ({"access": 4095}, "vlan", 4095),
    ({"access": -1}, "vlan", -1),
    ({"access": True}, "vlan", True),
    ({"access": "10"}, "vlan", "10"),
    ({"trunks": frozenset({0})}, "trunks", 0),
    ({"trunks": frozenset({10, 4095})}, "trunks", 4095),
    ({"trunks": {10, "20"}}, "trunks", "20"),
    ({"trunks": 10}, "trunks", 10),
    ({"trunks": "10"}, "trunks", "10"),
    ({"trunks": frozenset({10}), "native": 4096}, "native_vlan", 4096),
    ({"native": 10}, "native_vlan", 10),  # a native VLAN needs trunks
    ({"access": 10, "native": 20}, "native_vlan", 20),
    ({"access": 10, "trunks": frozenset({20})}, "trunks", [20]),
])
def test_invalid_vlan_config(kwargs, field, value):
    with pytest.raises(InvalidArgument) as exc:
        VlanConfig(**kwargs)
    assert (exc.value.field, exc.value.value) == (field, value)
    assert field in str(exc.value)


def test_vlan_config_values():
    assert VlanConfig().mode == "unconfigured"
    assert VlanConfig(access=1).mode == "access"
    t = VlanConfig(trunks=[20, 10, 10], native=20)  # any iterable; native may be listed
    assert t.trunks == frozenset({10, 20}) and t.mode == "trunk"
    assert t == VlanConfig(trunks=frozenset({10, 20}), native=20)
    assert t.carries(10) and t.carries(20) and not t.carries(0) and not t.carries(30)
    assert VlanConfig(trunks={5}, native=6).carries(6)
    assert VlanConfig().carries(0) and VlanConfig().carries(99)
    assert VlanConfig.from_bitmap(t.bitmap(), 20) == t


def _rule(rule_id, actions, **fields):
    match = tuple(sorted((k, v, (1 << FLOW_FIELDS[k]) - 1) for k, v in fields.items()))
    return DpRule(rule_id, 10, match, tuple(actions))


def test_flow_vlan_actions_then_normal(dp, vb):
    """mod_vlan_vid:V then normal switches in VLAN V (the rule is the explicit crossing);
    strip_vlan then normal classifies the frame as untagged on its in_port; output:PORT is
    raw; flood floods the frame's VLAN."""
    a10, a20, t, tn = (vb.port[n] for n in ("a10", "a20", "t", "tn"))
    learn(dp, vb, "a20", untagged(BROADCAST, MAC_B))
    learn(dp, vb, "t", tagged(BROADCAST, MAC_C, 20))
    dp.flows_sync(vb.br, [
        _rule(1, [("mod_vlan_vid", 20), ("normal", 0)], in_port=a10),
        _rule(2, [("strip_vlan", 0), ("normal", 0)], in_port=t),
        _rule(3, [("output", a20)], in_port=tn),
        _rule(4, [("flood", 0)], in_port=vb.port["a10b"]),
    ])
    res = dp.run(untagged(BROADCAST, MAC_A), a10)
    assert (res.rule_id, res.vlan, vb.names(res.flood)) == (1, 20, {"a20", "t", "tn", "u",
                                                                    "host"})
    out = dp.run(untagged(MAC_B, MAC_A), a10, dry_run=False)  # VLAN 20 to an access port
    assert (out.retval, vid_of(out.data)) == (TC_ACT_REDIRECT, None)
    out = dp.run(untagged(MAC_C, MAC_A), a10, dry_run=False)  # to the trunk: tagged 20
    assert vid_of(out.data) == 20
    # strip_vlan on a trunk without native: untagged there is a mismatch
    res = dp.run(tagged(BROADCAST, MAC_A, 10), t)
    assert (res.rule_id, res.drop_reason) == (2, "vlan-mismatch")
    # output is raw: untagged native frame straight to an access port of another VLAN
    out = dp.run(untagged(MAC_B, MAC_A), tn, dry_run=False)
    assert (out.retval, vid_of(out.data)) == (TC_ACT_REDIRECT, None)
    assert dp.run(untagged(MAC_B, MAC_A), tn).outputs == [a20]
    res = dp.run(untagged(MAC_B, MAC_A), vb.port["a10b"])
    assert (res.rule_id, res.vlan) == (4, 10)
    assert vb.names(res.flood) == {"a10", "t", "tn", "u", "host"}


def test_mod_vlan_vid_output_keeps_its_bytes(dp, vb):
    """A pushed tag followed by an output that needs none cannot be undone: vlan-failed."""
    u, a20, t = vb.port["u"], vb.port["a20"], vb.port["t"]
    dp.flows_sync(vb.br, [_rule(1, [("mod_vlan_vid", 20), ("output", t), ("strip_vlan", 0),
                                    ("output", a20)], in_port=u)])
    out = dp.run(untagged(MAC_B, MAC_A), u, dry_run=False)
    assert out.retval == TC_ACT_SHOT
    assert dp.port_counters(u).drops == {"vlan-failed": 1}
    assert dp.port_counters(t).tx_packets == 1
    # a tag that came with the frame can be stripped after an output
    out = dp.run(tagged(MAC_B, MAC_A, 5), u, dry_run=False)
    assert (out.retval, vid_of(out.data)) == (TC_ACT_REDIRECT, None)


def test_restart_and_removal_keep_vlan_state_right(dp, vb, bpffs_dir):
    t = vb.port["t"]
    dp.close()
    dp2 = Datapath(bpffs_dir)
    try:
        assert dp2.port_vlan(t) == MODES["t"]
        assert dp2.port_vlan(vb.port["a20"]) == MODES["a20"]
        assert dp2.run(tagged(BROADCAST, MAC_A, 20), t).vlan == 20
        dp2.remove_port(vb.br, t)
        assert dp2._trunks.get(dp2._trunks.Key(t)) is None
        with pytest.raises(NotFound):
            dp2.port_vlan(t)
        dp2.remove_bridge(vb.br)
        assert len(dp2._trunks) == 0
    finally:
        dp2.close()
    dp._bpf = None
    dp.__init__(bpffs_dir)


def test_access_unicast_ns_per_run(dp, vb, capsys):
    learn(dp, vb, "a10b", untagged(BROADCAST, MAC_B))
    frame = untagged(MAC_B, MAC_A)
    real = dp.run(frame, vb.port["a10"], dry_run=False, repeat=1_000_000)
    dry = dp.run(frame, vb.port["a10"], dry_run=True, repeat=1_000_000)
    assert real.retval == TC_ACT_REDIRECT and dry.verdict == "forward"
    # A push changes the frame, and repeat reruns the program on the same skb (the second run
    # would see a tagged frame on an access port): one run per call, median of many.
    learn(dp, vb, "t", tagged(BROADCAST, MAC_C, 10))
    pushes = [dp.run(untagged(MAC_C, MAC_A), vb.port["a10"], dry_run=False) for _ in range(3000)]
    assert all(vid_of(p.data) == 10 for p in pushes[:3])
    one = [dp.run(frame, vb.port["a10"], dry_run=False) for _ in range(3000)]
    push_ns = sorted(p.duration_ns for p in pushes)[len(pushes) // 2]
    one_ns = sorted(p.duration_ns for p in one)[len(one) // 2]
    with capsys.disabled():
        print(f"\nknown unicast access->access: {real.duration_ns} ns/run (real), "
              f"{dry.duration_ns} ns/run (dry run), repeat=1000000; single runs (median of "
              f"3000): access->access {one_ns} ns, access->trunk (tag pushed) {push_ns} ns")


SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 263, 8, 0x10
ETH_P_ALL = 0x0003


def _sniffer(topo, ifindex: int):
    """An AF_PACKET socket on the far end of a port's veth (the wire)."""
    import socket

    peer = f"{_name(topo, ifindex)}x"
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((peer, 0))
    s.settimeout(0.3)
    return s


def _name(topo, ifindex: int) -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return ipr.get_links(ifindex)[0].get_attr("IFLA_IFNAME")


def _wire_vids(sock, src: str) -> list[int | None]:
    """The VIDs (None = untagged) of the frames from `src` received on the socket: an inline
    tag, or the one the receiving kernel moved to the skb (PACKET_AUXDATA)."""
    import socket

    vids = []
    while True:
        try:
            data, anc, _flags, _addr = sock.recvmsg(2048, socket.CMSG_SPACE(20))
        except TimeoutError:
            return vids
        if data[6:12] != mac_bytes(src):
            continue
        vid = None
        for level, kind, raw in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, _len, _snap, _mac, _net, tci = struct.unpack("IIIHHH", raw[:18])
                if status & TP_STATUS_VLAN_VALID:
                    vid = tci & 0x0FFF
        if data[12:14] == b"\x81\x00":
            vid = vid_of(data)
        else:
            assert vid_of(data) is None
        vids.append(vid)


def test_flood_clones_on_the_wire(dp, vb, topo):
    """Every clone leaves with its target's tag state (the last target gets data_out)."""
    names = ("a10b", "a20", "t", "tn", "u")
    socks = {n: _sniffer(topo, vb.port[n]) for n in names}
    try:
        out = dp.run(untagged(BROADCAST, MAC_A), vb.port["a10"], dry_run=False)
        got = {n: _wire_vids(socks[n], MAC_A) for n in names}
        assert vid_of(out.data) == 10  # the last target, u (not sent by a test run)
        assert got == {"a10b": [None], "a20": [], "t": [10], "tn": [None], "u": []}
        out = dp.run(tagged(BROADCAST, MAC_B, 20), vb.port["t"], dry_run=False)
        got = {n: _wire_vids(socks[n], MAC_B) for n in names}
        assert vid_of(out.data) is None  # the last target, a20
        assert got == {"a10b": [], "a20": [], "t": [], "tn": [20], "u": [20]}
    finally:
        for s in socks.values():
            s.close()


def test_host_mac_is_protected_in_every_vlan(dp, vb):
    """The host's entry is in VLAN 0; a port in VLAN 10 or 20 sending with it is a spoof too,
    and nothing is learned in those VLANs."""
    for port, frame in (("a10", untagged(BROADCAST, vb.mac)), ("t", tagged(BROADCAST, vb.mac, 20))):
        res = dp.run(frame, vb.port[port], dry_run=False)
        assert res.retval == TC_ACT_SHOT, port
        assert dp.run(frame, vb.port[port]).drop_reason == "host-mac-spoof"
    assert fdb_of(dp, vb.br) == {(vb.mac, 0): vb.br}
    learn(dp, vb, "a10", untagged(BROADCAST, MAC_A))  # others still learn in VLAN 10
    assert fdb_of(dp, vb.br)[(MAC_A, 10)] == vb.port["a10"]
