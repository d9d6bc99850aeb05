"""The XDP hook of the real programs (BPF_PROG_TEST_RUN for XDP, dry and real runs): the same
decisions as TC from the same maps, redirects only to ports that take XDP frames, handoffs to
TC (counted, frame unchanged) for what XDP cannot finish, drops with the same counters, VLAN
tags pushed and popped at XDP, floods through the per-(bridge, VLAN) device maps, and the hook
named in the trace report and the watch events."""

from __future__ import annotations

import os
import struct

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, mac_bytes

from vswitchd.datapath import Datapath, DpRule, PortKind, VlanConfig, WatchFilter
from vswitchd.datapath.xdpmaps import flood_groups
from vswitchd.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
PAYLOAD = bytes(range(46))


def untagged(dst: str, src: str) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + PAYLOAD


def tagged(dst: str, src: str, vid: int) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!HH", 0x8100, vid) + b"\x08\x00" \
        + PAYLOAD


class XdpBridge:
    """A bridge with veth ports a, b, c (mode per name); b and c take XDP frames, a is the
    one with the XDP program (generic: a test veth's peer has no NAPI)."""

    def __init__(self, topo, dp: Datapath, modes: dict[str, VlanConfig] | None = None) -> None:
        modes = modes or {"a": VlanConfig(), "b": VlanConfig(), "c": VlanConfig()}
        self.dp = dp
        self.br = topo.add("xb", "bridge")
        self.mac = topo.mac(self.br)
        dp.add_bridge(self.br, self.mac)
        self.port = {}
        for i, (name, mode) in enumerate(modes.items()):
            self.port[name] = topo.add(f"x{i}", "veth")
            dp.add_port(self.br, self.port[name], PortKind.DEVICE, mode)
        self.state = dp.set_port_xdp(self.port["a"], "generic")
        for name in list(modes)[1:]:
            dp.set_xdp_target(self.port[name], True)

    def xdp(self, frame: bytes, src: str = "a", dry_run: bool = True):
        return self.dp.run(frame, self.port[src], dry_run=dry_run, hook="xdp")

    def learn(self, mac: str, on: str) -> None:
        """MAC learned on port ON through its TC program (a real run)."""
        self.dp.run(untagged(BROADCAST, mac), self.port[on], dry_run=False)

    def counters(self, name: str):
        return self.dp.port_counters(self.port[name])


@pytest.fixture
def xb(topo, dp):
    return XdpBridge(topo, dp)


def test_the_port_has_the_xdp_program_in_the_mode_asked(xb, dp):
    assert xb.state.mode == "generic"
    assert dp.port_xdp(xb.port["a"]).mode == "generic"
    assert dp.port_xdp(xb.port["b"]).mode == "off"
    assert dp.set_port_xdp(xb.port["a"], "off").mode == "off"
    assert dp.port_xdp(xb.port["a"]).mode == "off"


def test_bad_xdp_arguments_are_refused(xb, dp):
    with pytest.raises(InvalidArgument, match="xdp"):
        dp.set_port_xdp(xb.port["a"], "fast")
    with pytest.raises(NotFound):
        dp.set_port_xdp(xb.br, "generic")  # the bridge device is no port with XDP
    with pytest.raises(NotFound):
        dp.set_xdp_target(999999, True)
    with pytest.raises(InvalidArgument, match="hook"):
        dp.run(untagged(MAC_B, MAC_A), xb.port["a"], hook="xdp", egress=True)


def test_known_unicast_to_an_xdp_target_is_forwarded_at_xdp(xb):
    xb.learn(MAC_B, "b")
    res = xb.xdp(untagged(MAC_B, MAC_A))
    assert (res.hook, res.verdict, res.out_ifindex) == ("xdp", "forward", xb.port["b"])
    assert res.fdb_hit and res.stages == ("port", "parse", "flow", "vlan", "l2")
    before_b = xb.counters("b")
    real = xb.xdp(untagged(MAC_B, MAC_A), dry_run=False)
    assert real.retval == XDP_REDIRECT
    a, b = xb.counters("a"), xb.counters("b")
    assert (a.rx_packets, a.xdp_finished, a.xdp_handoffs) == (1, 1, 0)
    assert b.tx_packets == before_b.tx_packets + 1
    # the source was learned at XDP: a frame for MAC_A from b (TC) goes to a
    assert xb.dp.trace(untagged(MAC_A, MAC_B), xb.port["b"]).out_ifindex == xb.port["a"]


def test_a_frame_for_a_port_without_xdp_frames_is_handed_to_tc_untouched(xb, dp):
    dp.set_xdp_target(xb.port["c"], False)
    xb.learn(MAC_C, "c")
    frame = untagged(MAC_C, MAC_A)
    res = xb.xdp(frame)
    assert (res.verdict, res.handoff) == ("to-tc", "the output port cannot take XDP frames")
    assert res.fdb_hit and res.out_ifindex == xb.port["c"]  # what the L2 stage found
    real = xb.xdp(frame, dry_run=False)
    assert real.retval == XDP_PASS and real.data == frame
    a = xb.counters("a")
    # counted by TC when TC gets it, not twice: XDP counted the handoff only
    assert (a.rx_packets, a.xdp_finished, a.xdp_handoffs) == (0, 0, 1)
    # the trace follows the frame through both hooks
    hooks = dp.trace_hooks(frame, xb.port["a"])
    assert [(r.hook, r.verdict) for r in hooks] == [("xdp", "to-tc"), ("tc", "forward")]
    assert hooks[1].out_ifindex == xb.port["c"]


def test_frames_for_the_host_go_on_to_tc(xb):
    res = xb.xdp(untagged(xb.mac, MAC_A))
    assert (res.verdict, res.handoff) == ("to-tc", "the output port cannot take XDP frames")
    assert res.out_ifindex == xb.br


def test_a_drop_rule_drops_at_xdp_with_the_same_counters(xb, dp):
    rule = DpRule(rule_id=7, priority=100, fields=(("dl_src", int(MAC_A.replace(":", ""), 16),
                                                    (1 << 48) - 1),), actions=(("drop", 0),))
    dp.flows_sync(xb.br, [rule])
    res = xb.xdp(untagged(MAC_B, MAC_A))
    assert (res.verdict, res.drop_reason, res.rule_id) == ("drop", "flow-drop", 7)
    for _ in range(3):
        assert xb.xdp(untagged(MAC_B, MAC_A), dry_run=False).retval == XDP_DROP
    a = xb.counters("a")
    assert a.drops == {"flow-drop": 3} and a.rx_packets == 3 and a.xdp_finished == 3
    assert dp.flow_counters(xb.br)[7].packets == 3


def test_malformed_frames_and_bad_sources_drop_at_xdp(xb):
    cut_ip = mac_bytes(MAC_B) + mac_bytes(MAC_A) + b"\x08\x00\x45"  # IPv4, cut short
    assert xb.xdp(cut_ip, dry_run=False).retval == XDP_DROP
    assert xb.xdp(untagged(MAC_B, "01:00:00:00:00:01"), dry_run=False).retval == XDP_DROP
    assert xb.counters("a").drops == {"malformed": 1, "invalid-src-mac": 1}


def test_a_rule_with_two_outputs_goes_to_tc(xb, dp):
    b, c = xb.port["b"], xb.port["c"]
    dp.flows_sync(xb.br, [DpRule(rule_id=3, priority=1, fields=(),
                                 actions=(("output", b), ("output", c)))])
    res = xb.xdp(untagged(MAC_B, MAC_A))
    assert (res.verdict, res.handoff) == ("to-tc", "the rule outputs to several ports")


def test_a_flood_with_the_host_among_its_targets_goes_to_tc(xb):
    res = xb.xdp(untagged(BROADCAST, MAC_A))
    assert (res.verdict, res.handoff) == ("to-tc", "a flood target cannot take XDP frames")


ACCESS_MODES = {"a": VlanConfig(access=10), "b": VlanConfig(access=10),
                "c": VlanConfig(trunks=frozenset({10, 20}))}


def test_a_flood_in_a_vlan_of_xdp_targets_is_flooded_at_xdp(topo, dp):
    xb = XdpBridge(topo, dp, ACCESS_MODES)
    # the host (the bridge device) carries every VLAN and takes no XDP frames: through TC
    res = xb.xdp(untagged(BROADCAST, MAC_A))
    assert (res.verdict, res.handoff) == ("to-tc", "a flood target cannot take XDP frames")
    # a bridge whose members all take XDP frames (the host left out of the members by hand:
    # no configuration does that yet) floods at XDP
    dp._port_maps.leave(xb.br, xb.br)
    dp._sync_xdp(xb.br)
    res = xb.xdp(untagged(BROADCAST, MAC_A))
    assert (res.hook, res.verdict, res.vlan) == ("xdp", "flood", 10)
    assert sorted(res.flood) == sorted([xb.port["b"], xb.port["c"]])
    assert res.tags == {xb.port["b"]: "as-is", xb.port["c"]: "tagged:10"}
    real = xb.xdp(untagged(BROADCAST, MAC_A), dry_run=False)
    # the broadcast leaves tagged (xdp_egress pops it for the access port's copy)
    assert real.retval == XDP_REDIRECT and real.data == tagged(BROADCAST, MAC_A, 10)
    assert xb.counters("a").xdp_finished == 1


def test_vlan_tags_are_pushed_and_popped_at_xdp(topo, dp):
    xb = XdpBridge(topo, dp, ACCESS_MODES)
    xb.learn(MAC_C, "c")  # untagged from the trunk: dropped (no native), nothing learned
    dp.run(tagged(BROADCAST, MAC_C, 10), xb.port["c"], dry_run=False)  # learned in VLAN 10
    out = xb.xdp(untagged(MAC_C, MAC_A), dry_run=False)
    assert out.retval == XDP_REDIRECT and out.data == tagged(MAC_C, MAC_A, 10)
    # and back: the trunk's tagged frame to the access port leaves untagged
    dp.set_port_xdp(xb.port["c"], "generic")
    dp.set_xdp_target(xb.port["a"], True)
    back = dp.run(tagged(MAC_A, MAC_C, 10), xb.port["c"], dry_run=False, hook="xdp")
    assert back.retval == XDP_REDIRECT and back.data == untagged(MAC_A, MAC_C)


def test_the_flood_groups_follow_the_vlan_modes():
    modes = {1: VlanConfig(access=10), 2: VlanConfig(trunks=frozenset({10, 20}), native=5),
             3: VlanConfig()}
    groups = flood_groups([9, 1, 2, 3], modes, targets={1, 2})
    assert groups == {0: ([9, 3], 2), 5: ([9, 2, 3], 2), 10: ([9, 1, 2, 3], 2),
                      20: ([9, 2, 3], 2)}


def test_watch_events_name_the_hook(xb, dp):
    slot = dp.watch_add(WatchFilter(bridge=xb.br))
    try:
        xb.learn(MAC_B, "b")
        xb.xdp(untagged(MAC_B, MAC_A), dry_run=False)
        events = dp.watch_poll(500)
        assert [(e.hook, e.verdict) for e in events if e.in_port == xb.port["a"]] == \
            [("xdp", "forward")]
        assert any(e.hook == "tc" for e in events if e.in_port == xb.port["b"])
    finally:
        dp.watch_remove(slot)


def test_a_watched_frame_handed_to_tc_frees_its_event_slot(xb, dp):
    """XDP starts a watched frame's event in a per-CPU slot (lib/watch.h) and hands the frame
    to TC, which starts it again: the handoff frees the slot, as an emitted event does."""
    slot = dp.watch_add(WatchFilter(bridge=xb.br))
    try:
        dp.set_xdp_target(xb.port["c"], False)
        xb.learn(MAC_C, "c")
        xb.learn(MAC_B, "b")
        assert xb.xdp(untagged(MAC_C, MAC_A), dry_run=False).retval == XDP_PASS  # to TC
        assert xb.xdp(untagged(MAC_B, MAC_A), dry_run=False).retval == XDP_REDIRECT
        events = dp.watch_poll(500)
        assert [(e.hook, e.verdict) for e in events if e.in_port == xb.port["a"]] == \
            [("xdp", "forward")]  # the handed-off frame's event is TC's (not run here)
        assert not any(dp._bpf[b"watch_claimed"][0])
    finally:
        dp.watch_remove(slot)


def _sum16(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def udp4(dst: str, src: str, partial: bool) -> bytes:
    """An IPv4/UDP frame whose checksum is complete, or partial as a stack with checksum
    offload leaves it (the folded pseudo-header sum, for the device to finish)."""
    saddr, daddr, payload = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), b"x" * 18
    length = 8 + len(payload)
    pseudo = saddr + daddr + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", 1000, 2000, length, 0) + payload
    check = _sum16(pseudo) if partial else (~_sum16(pseudo + udp) & 0xFFFF) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", check) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, 17, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", ~_sum16(ip) & 0xFFFF) + ip[12:]
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + ip + udp


def test_a_checksum_left_to_the_receiver_goes_through_tc(xb):
    """Frames whose TCP/UDP checksum the sending stack left for the device to finish (a veth
    peer's, a VM's with checksum offload) would reach the receiver corrupt after a raw XDP
    redirect: XDP hands them to TC, which keeps that state. Complete ones go at XDP."""
    xb.learn(MAC_B, "b")
    res = xb.xdp(udp4(MAC_B, MAC_A, partial=True))
    assert (res.verdict, res.handoff) == (
        "to-tc", "the TCP/UDP checksum is left to the receiver (checksum offload)")
    res = xb.xdp(udp4(MAC_B, MAC_A, partial=False))
    assert (res.verdict, res.out_ifindex) == ("forward", xb.port["b"])


def test_a_tagged_frame_on_an_access_port_drops_at_xdp(topo, dp):
    xb = XdpBridge(topo, dp, ACCESS_MODES)
    res = xb.xdp(tagged(MAC_B, MAC_A, 30))
    assert (res.hook, res.verdict, res.drop_reason) == ("xdp", "drop", "vlan-mismatch")
    assert xb.xdp(tagged(MAC_B, MAC_A, 30), dry_run=False).retval == XDP_DROP
    a = xb.counters("a")
    assert (a.drops, a.xdp_finished, a.xdp_handoffs) == ({"vlan-mismatch": 1}, 1, 0)


def test_a_member_whose_device_is_gone_counts_as_no_target(topo, dp):
    """A restarted daemon syncs flood groups before it prunes ports deleted behind its back:
    the kernel refuses a gone device in a device map, and the group goes on without it."""
    xb = XdpBridge(topo, dp)
    topo.delete(xb.port["c"])  # still a member in the datapath's maps
    dp.close()
    dp.__init__(dp.bpffs_dir)  # the restarted daemon: it reads the groups it did not write
    dp.add_port(xb.br, topo.add("x9", "veth"), PortKind.DEVICE)  # syncs the groups again
    info = dp._xdp_maps.info
    got = info[info.Key(xb.br, 0, 0)]
    # host, a, b, c, x9: the host, a and x9 take no XDP frames, and c's device is gone
    assert (got.members, got.non_targets) == (5, 4)


def _group_members(dp, bridge: int, vid: int) -> tuple[int, set[int]]:
    """(inner map id, members) of a flood group, read from the pinned maps."""
    from vswitchd.datapath import xdpmaps
    from vswitchd.datapath.bpfsys import map_fd_by_id, map_keys, map_lookup

    maps = dp._xdp_maps
    value = map_lookup(maps.groups_fd, xdpmaps._GROUP_KEY.pack(bridge, vid, 0), 4, "group")
    inner_id = struct.unpack("=I", value)[0]
    fd = map_fd_by_id(inner_id, "group")
    try:
        return inner_id, {struct.unpack("=I", k)[0] for k in map_keys(fd, 4, "group")}
    finally:
        os.close(fd)


def test_members_come_and_go_in_the_flood_group_in_place(topo, dp, monkeypatch):
    """After its first write, a group is changed entry by entry: replacing the inner map
    costs an RCU grace period per write (each port added to a bridge of n ports cost n). The
    change is made against what this datapath wrote: the group's entries are not read (a
    key at a time: n syscalls a port added)."""
    from vswitchd.datapath import xdpmaps

    xb = XdpBridge(topo, dp)
    first, members = _group_members(dp, xb.br, 0)
    assert members == {xb.port["b"], xb.port["c"]}
    d = topo.add("x8", "veth")
    read = []
    monkeypatch.setattr(xdpmaps, "map_keys", lambda *a: read.append(a) or [])
    dp.add_port(xb.br, d, PortKind.DEVICE)
    dp.set_xdp_target(d, True)
    monkeypatch.undo()
    assert read == []
    assert _group_members(dp, xb.br, 0) == (first, {xb.port["b"], xb.port["c"], d})
    info = dp._xdp_maps.info[dp._xdp_maps.info.Key(xb.br, 0, 0)]
    assert (info.members, info.non_targets) == (5, 2)  # the host and a take no XDP frames
    dp.remove_port(xb.br, xb.port["b"])
    assert _group_members(dp, xb.br, 0) == (first, {xb.port["c"], d})


def test_a_deferred_flood_sync_writes_the_group_once_at_the_end(topo, dp, monkeypatch):
    """A reconciliation re-adds every port: the group is synced once for all of them."""
    xb = XdpBridge(topo, dp)
    synced = []
    real = dp._xdp_maps.sync_bridge
    monkeypatch.setattr(dp._xdp_maps, "sync_bridge",
                        lambda bridge, *a: synced.append(bridge) or real(bridge, *a))
    new = [topo.add(f"x{7 - i}", "veth") for i in range(3)]
    with dp.deferred_flood_sync():
        for ifindex in new:
            dp.add_port(xb.br, ifindex, PortKind.DEVICE)
            dp.set_xdp_target(ifindex, True)
        with dp.deferred_flood_sync():  # nested: the outer one syncs
            dp.set_xdp_target(xb.port["b"], False)
        assert synced == []
    assert synced == [xb.br]
    assert _group_members(dp, xb.br, 0)[1] == {xb.port["c"], *new}


def test_a_restart_takes_the_pinned_groups_as_they_are(topo, dp):
    """A restarted daemon (the same build) patches the pinned flood groups in place; a group
    whose entries run another devmap program (an earlier build's) is written whole again."""
    from vswitchd.datapath import build, xdpmaps
    from vswitchd.datapath.bpfsys import BPF_PROG_TYPE_XDP, map_fd_by_id, map_update, prog_load

    xb = XdpBridge(topo, dp)
    first, members = _group_members(dp, xb.br, 0)
    dp.close()
    dp.__init__(dp.bpffs_dir)  # a new daemon over the pins: nothing written by it yet
    d = topo.add("x6", "veth")
    dp.add_port(xb.br, d, PortKind.DEVICE)
    dp.set_xdp_target(d, True)
    assert _group_members(dp, xb.br, 0) == (first, members | {d})

    # an earlier build's entry: another program (XDP_PASS) on c's entry
    other = prog_load(BPF_PROG_TYPE_XDP, bytes.fromhex("b700000002000000" "9500000000000000"),
                      "other_egress", attach_type=build.BPF_XDP_DEVMAP)
    inner = map_fd_by_id(first, "group")
    try:
        c = xb.port["c"]
        map_update(inner, struct.pack("=I", c), xdpmaps._DEVMAP_VAL.pack(c, other), "entry")
    finally:
        os.close(inner)
        os.close(other)
    dp.close()
    dp.__init__(dp.bpffs_dir)
    dp.set_xdp_target(xb.port["b"], False)  # syncs the group
    again, now = _group_members(dp, xb.br, 0)
    assert again != first and now == members - {xb.port["b"]} | {d}
