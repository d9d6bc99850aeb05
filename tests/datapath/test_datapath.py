"""The real datapath program on crafted frames (BPF_PROG_TEST_RUN) in a private netns."""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import time

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, MULTICAST, Bridge, eth, mac_bytes

from vswitchd.datapath import DROP_REASONS, Datapath, PortKind, VlanConfig, attached_programs
from vswitchd.datapath.drop_reasons import BPF_DIR, parse_define
from vswitchd.datapath.loader import PORT_F_ACCESS
from vswitchd.errors import InvalidArgument

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7


def fdb_of(dp, br):
    return {(r.mac, r.vlan): r for r in dp.fdb_list(br)}


def test_drop_reasons_parsed_from_header():
    assert DROP_REASONS[0] == "none"
    assert DROP_REASONS[1] == "malformed"
    for name in ("same-port", "no-fdb-port", "no-flood-target", "invalid-src-mac",
                 "redirect-failed"):
        assert name in DROP_REASONS.values()


def test_programs_attached(dp, bridge):
    assert attached_programs(bridge.br, "egress") == ["tc_egress"]
    for port in bridge.ports:
        assert attached_programs(port, "ingress") == ["tc_ingress"]
        assert attached_programs(port, "egress") == []
    # re-adding (daemon re-adopting) replaces, never duplicates
    dp.add_port(bridge.br, bridge.ports[0], PortKind.PEER)
    dp.add_bridge(bridge.br, bridge.mac)
    assert attached_programs(bridge.ports[0], "ingress") == ["tc_ingress"]
    assert attached_programs(bridge.br, "egress") == ["tc_egress"]


def test_learning_real_run_and_not_dry_run(dp, bridge):
    p0, p1, _ = bridge.ports
    res = dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    assert res.retval == TC_ACT_REDIRECT
    rec = fdb_of(dp, bridge.br)[(MAC_A, 0)]
    assert rec.ifindex == p0
    assert not rec.static
    assert 0 <= rec.age_seconds < 5
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=True)
    assert (MAC_B, 0) not in fdb_of(dp, bridge.br)
    # the bridge's own MAC is a static entry pointing at the bridge
    own = fdb_of(dp, bridge.br)[(bridge.mac, 0)]
    assert own.static and own.ifindex == bridge.br and own.age_seconds == 0.0
    # a station moving to another port is re-learned there
    dp.run(eth(BROADCAST, MAC_A), p1, dry_run=False)
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == p1


def test_known_unicast_forward(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)  # learn B on p1
    res = dp.run(eth(MAC_B, MAC_A), p0)
    assert res.verdict == "forward"
    assert res.out_ifindex == p1
    assert res.fdb_hit is True
    assert res.flood == []
    assert res.retval == TC_ACT_REDIRECT
    real = dp.run(eth(MAC_B, MAC_A), p0, dry_run=False)
    assert real.retval == TC_ACT_REDIRECT
    # to a PEER port (p0) and to the host (bridge MAC)
    assert dp.run(eth(MAC_A, MAC_C), p2).out_ifindex == p0
    to_host = dp.run(eth(bridge.mac, MAC_C), p2)
    assert (to_host.verdict, to_host.out_ifindex) == ("forward", bridge.br)


@pytest.mark.parametrize("dst", [BROADCAST, MULTICAST, MAC_C], ids=["bcast", "mcast", "unknown"])
def test_flood_set(dp, bridge, dst):
    p0, p1, p2 = bridge.ports
    res = dp.run(eth(dst, MAC_A), p1)
    assert res.verdict == "flood"
    assert sorted(res.flood) == sorted([bridge.br, p0, p2])
    assert res.fdb_hit is False
    assert res.retval == TC_ACT_REDIRECT
    assert dp.run(eth(dst, MAC_A), p1, dry_run=False).retval == TC_ACT_REDIRECT


def test_a_flood_reaches_every_member_of_a_full_bridge(dp, bridge):
    """The flood's member loop is a bpf_loop (lib/loop.h): it takes every one of a bridge's
    MAX_BRIDGE_PORTS members (an unrolled loop stopped at 128: the verifier's budget)."""
    from vswitchd.datapath.constants import MAX_BRIDGE_PORTS

    p0 = bridge.ports[0]
    real = dp._port_maps.members_of(bridge.br)
    fake = [1_000_000 + i for i in range(MAX_BRIDGE_PORTS - len(real))]
    for ifindex in fake:  # ports entries only: a dry run sends nothing
        dp._port_maps.set(ifindex, bridge.br, PortKind.DEVICE)
    dp._port_maps.set_members(bridge.br, real + fake)
    res = dp.trace(eth(BROADCAST, MAC_A), p0)
    assert res.verdict == "flood"
    assert sorted(res.flood) == sorted(i for i in real + fake if i != p0)
    assert len(res.flood) == MAX_BRIDGE_PORTS - 1 >= 1000


def test_many_ports_are_read_as_written(dp, bridge):
    """get_many answers a bridge's worth of ports entries from what was written, as a lookup
    each would."""
    ports = dp._port_maps
    fake = [2_000_000 + i for i in range(40)]
    for ifindex in fake:
        ports.set(ifindex, bridge.br, PortKind.DEVICE, VlanConfig(access=7))
    ports.set_xdp_tx(fake[1], True)
    ports.delete(fake[2])
    wanted = [*bridge.ports, *fake, 999]  # 999: no port

    def seen(leaf):
        return None if leaf is None else (leaf.bridge, leaf.kind, leaf.flags, leaf.vlan,
                                          leaf.slot)

    one_each = {i: seen(ports.get(i)) for i in wanted}
    assert {i: seen(leaf) for i, leaf in ports.get_many(wanted).items()} == one_each
    assert one_each[999] is None and one_each[fake[2]] is None and one_each[fake[0]][3] == 7
    assert ports.xdp_tx(ports.get_many([fake[1]])[fake[1]])


def test_no_flood_target(dp, topo):
    br = topo.add("lb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    res = dp.run(eth(BROADCAST, topo.mac(br)), br, egress=True)
    assert (res.verdict, res.drop_reason, res.retval) == ("drop", "no-flood-target", TC_ACT_SHOT)


def test_same_port_drop(dp, bridge):
    p0 = bridge.ports[0]
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    res = dp.run(eth(MAC_A, MAC_B), p0)
    assert (res.verdict, res.drop_reason, res.fdb_hit) == ("drop", "same-port", True)
    assert res.retval == TC_ACT_SHOT


def test_invalid_src_mac(dp, bridge):
    res = dp.run(eth(MAC_A, MULTICAST), bridge.ports[0])
    assert (res.verdict, res.drop_reason) == ("drop", "invalid-src-mac")


def test_not_a_port_passes(dp, bridge, topo):
    other = topo.add("x", "veth")
    res = dp.run(eth(MAC_A, MAC_B), other)
    assert (res.verdict, res.retval) == ("pass", TC_ACT_OK)
    assert dp.port_counters(other).rx_packets == 0


def test_static_entry_not_learned_over_nor_swept(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.fdb_add_static(bridge.br, MAC_C, 0, p1)
    dp.run(eth(BROADCAST, MAC_C), p0, dry_run=False)
    rec = fdb_of(dp, bridge.br)[(MAC_C, 0)]
    assert (rec.ifindex, rec.static, rec.age_seconds) == (p1, True, 0.0)
    assert dp.fdb_sweep(0) == 0
    assert (MAC_C, 0) in fdb_of(dp, bridge.br)
    assert dp.fdb_delete(bridge.br, MAC_C, 0) is True
    assert dp.fdb_delete(bridge.br, MAC_C, 0) is False
    with pytest.raises(InvalidArgument):
        dp.fdb_add_static(bridge.br, MULTICAST, 0, p1)


def test_fdb_sweep_ages_learned(dp, bridge):
    p0 = bridge.ports[0]
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    assert dp.fdb_sweep(300) == 0
    time.sleep(0.05)
    assert dp.fdb_sweep(0.01) == 1
    fdb = fdb_of(dp, bridge.br)
    assert (MAC_A, 0) not in fdb
    assert (bridge.mac, 0) in fdb  # static bridge MAC survives


def test_fdb_refresh_at_most_once_per_refresh_period(dp, bridge):
    """A known source refreshes last_seen_ns only when FDB_REFRESH_JIFFIES passed since its
    last refresh (by the entry's seen_jiffies): no clock read nor write on other packets."""
    p0 = bridge.ports[0]
    refresh = parse_define((BPF_DIR / "lib" / "fdb.h").read_text(), "FDB_REFRESH_JIFFIES")
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    key = dp._fdb_key(bridge.br, mac_bytes(MAC_A), 0)
    leaf = dp._fdb[key]
    assert leaf.seen_jiffies > 0
    leaf.last_seen_ns -= 10 * 10**9  # as if last refreshed 10 s ago, seen_jiffies recent
    dp._fdb[key] = leaf
    dp._fdb_changed()  # written behind the FDB cache (fdb.h): make the programs read it
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].age_seconds >= 10  # not refreshed
    leaf = dp._fdb[key]
    leaf.seen_jiffies -= refresh  # the refresh period has passed
    dp._fdb[key] = leaf
    dp._fdb_changed()
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].age_seconds < 1
    assert dp._fdb[key].seen_jiffies >= leaf.seen_jiffies + refresh


@pytest.fixture
def one_cpu():
    """The test's runs on one CPU: the port cache is per CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_port_cache_is_invalidated_by_every_port_change(dp, bridge, bpffs_dir, one_cpu):
    """Packets read the ports map through a per-CPU cache (ports.h) that the datapath
    invalidates by bumping port_gen after each change. A port_info written behind its back
    (no bump) is not seen while cached; the bump makes it seen; changes through the API are
    seen at once; a new Datapath counts on from the pinned port_gen."""
    p0 = bridge.ports[0]
    frame = eth(BROADCAST, MAC_A)
    assert dp.trace(frame, p0).vlan == 0  # p0's entry cached on this CPU
    key = dp._ports.Key(p0)
    leaf = dp._ports[key]
    leaf.flags, leaf.vlan = PORT_F_ACCESS, 5
    dp._ports[key] = leaf
    assert dp.trace(frame, p0).vlan == 0  # the cached entry
    dp._ports_changed()
    assert dp.trace(frame, p0).vlan == 5
    dp.set_port_vlan(p0, VlanConfig(access=7))
    assert dp.trace(frame, p0).vlan == 7
    dp.set_port_vlan(p0, VlanConfig())
    assert dp.trace(frame, p0).vlan == 0
    dp.remove_port(bridge.br, p0)
    assert dp.trace(frame, p0).verdict == "pass"  # not a port any more, not from the cache
    gen = dp._port_gen[ctypes.c_int(0)].value
    dp.close()
    dp._bpf = None
    dp.__init__(bpffs_dir)
    assert dp._port_gen[ctypes.c_int(0)].value == gen
    dp.add_port(bridge.br, p0, PortKind.PEER)
    assert dp._port_gen[ctypes.c_int(0)].value > gen


def test_a_source_known_on_its_port_is_checked_again_after_any_fdb_change(dp, bridge, one_cpu):
    """A frame whose source is learned on its own in port skips the FDB through that port's
    cache entry (src_key, ports.h) while fdb_gen stands still. Every FDB change is seen at
    once: the address moving away and back is learned again each time, and a static entry
    making it the host's MAC makes its frames spoofs."""
    p0, p1, _ = bridge.ports
    from_a = eth(BROADCAST, MAC_A)
    for _ in range(3):  # learned on p0, then found there by the shortcut
        assert dp.run(from_a, p0, dry_run=False).retval == TC_ACT_REDIRECT
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == p0
    dp.run(from_a, p1, dry_run=False)  # A moves to p1 (the program's bump)
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == p1
    dp.run(from_a, p0, dry_run=False)  # and back: p0's shortcut is stale
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == p0
    dp.fdb_add_static(bridge.br, MAC_A, 0, bridge.br)  # the daemon's change: the host's MAC
    res = dp.run(from_a, p0, dry_run=False)
    assert res.retval == TC_ACT_SHOT
    assert dp.port_counters(p0).drops == {"host-mac-spoof": 1}


def test_the_destinations_port_info_is_read_again_after_any_port_change(dp, bridge, one_cpu):
    """Known unicast takes the out port's port_info from the destination's FDB cache slot
    while port_gen stands still (fdb_slot_port, fdb.h). A port_info written behind its back
    is not seen; the bump (every port change of the daemon) makes it seen."""
    p0, p1, _ = bridge.ports
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)
    to_b = eth(MAC_B, MAC_A)
    for _ in range(2):  # the second run takes p1's info from the slot
        assert dp.run(to_b, p0, dry_run=False).retval == TC_ACT_REDIRECT
    key = dp._ports.Key(p1)
    leaf = dp._ports[key]
    leaf.flags, leaf.vlan = PORT_F_ACCESS, 5  # p1 now in VLAN 5 only, p0 in none
    dp._ports[key] = leaf
    assert dp.trace(to_b, p0).verdict == "forward"  # the copies
    dp._ports_changed()
    res = dp.trace(to_b, p0)
    assert (res.verdict, res.drop_reason) == ("drop", "vlan-mismatch")


def test_fdb_cache_is_invalidated_by_every_fdb_change(dp, bridge, bpffs_dir, one_cpu):
    """Both FDB lookups of a packet go through a per-CPU cache (fdb.h), valid while fdb_gen
    holds the value it was filled under. An entry written behind its back (no bump) is not seen
    while cached; the program's own learning of a moved address, and every FDB change of the
    daemon, are seen at once; the daemon's bumps never take fdb_gen back."""
    p0, p1, p2 = bridge.ports
    gen = lambda: dp._fdb_gen[ctypes.c_int(0)].value  # noqa: E731
    to_b = eth(MAC_B, MAC_A)
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)  # learned: B on p1 (program's bump)
    assert dp.trace(to_b, p0).out_ifindex == p1  # cached on this CPU
    key = dp._fdb_key(bridge.br, mac_bytes(MAC_B), 0)
    leaf = dp._fdb[key]
    leaf.ifindex = p2
    dp._fdb[key] = leaf
    assert dp.trace(to_b, p0).out_ifindex == p1  # the cached entry
    before = gen()
    dp._fdb_changed()
    assert gen() == before + 2**32
    assert dp.trace(to_b, p0).out_ifindex == p2
    # the program's own change: B moves back to p1
    before = gen()
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)
    assert gen() == before + 1
    assert dp.trace(to_b, p0).out_ifindex == p1
    # attaching (a restarted daemon swaps its program in): the program replaced may be an
    # earlier build's, which learned without bumping fdb_gen
    leaf = dp._fdb[key]
    leaf.ifindex = p2
    dp._fdb[key] = leaf
    assert dp.trace(to_b, p0).out_ifindex == p1
    dp.add_port(bridge.br, p0, PortKind.DEVICE)
    assert dp.trace(to_b, p0).out_ifindex == p2
    # the daemon's changes
    dp.fdb_add_static(bridge.br, MAC_B, 0, p1)
    assert dp.trace(to_b, p0).out_ifindex == p1
    dp.fdb_delete(bridge.br, MAC_B, 0)
    assert dp.trace(to_b, p0).verdict == "flood"
    # a source known to the cache is learned again once the daemon deleted its entry
    dp.run(eth(BROADCAST, MAC_B), p2, dry_run=False)
    dp.run(eth(BROADCAST, MAC_B), p2, dry_run=False)  # source now served by the cache
    assert dp.trace(to_b, p0).out_ifindex == p2
    dp.fdb_delete(bridge.br, MAC_B, 0)
    dp.run(eth(BROADCAST, MAC_B), p2, dry_run=False)
    assert fdb_of(dp, bridge.br)[(MAC_B, 0)].ifindex == p2
    assert dp.trace(to_b, p0).out_ifindex == p2
    # aging
    leaf = dp._fdb[key]
    leaf.last_seen_ns -= 600 * 10**9
    dp._fdb[key] = leaf
    assert dp.fdb_sweep(300) == 1
    assert dp.trace(to_b, p0).verdict == "flood"
    # removing the port
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)
    assert dp.trace(to_b, p0).out_ifindex == p1
    dp.remove_port(bridge.br, p1)
    assert dp.trace(to_b, p0).verdict == "flood"
    # a new Datapath counts on from the pinned fdb_gen
    before = gen()
    dp.close()
    dp._bpf = None
    dp.__init__(bpffs_dir)
    assert gen() == before
    dp.fdb_add_static(bridge.br, MAC_C, 0, p0)
    assert gen() > before


def test_fdb_to_port_elsewhere_is_no_fdb_port(dp, bridge, topo):
    stray = topo.add("s", "veth")  # not a datapath port
    dp.fdb_add_static(bridge.br, MAC_C, 0, stray)
    res = dp.run(eth(MAC_C, MAC_A), bridge.ports[0])
    assert (res.verdict, res.drop_reason) == ("drop", "no-fdb-port")


def test_bridge_isolation(dp, bridge, topo):
    other = Bridge(topo, dp, "b", 2)
    dp.run(eth(BROADCAST, MAC_A), bridge.ports[0], dry_run=False)
    assert (MAC_A, 0) in fdb_of(dp, bridge.br)
    assert (MAC_A, 0) not in fdb_of(dp, other.br)
    res = dp.run(eth(MAC_A, MAC_B), other.ports[0])
    assert (res.verdict, res.fdb_hit) == ("flood", False)
    assert sorted(res.flood) == sorted([other.br, other.ports[1]])
    # the same MAC can live on both bridges at once
    dp.run(eth(BROADCAST, MAC_A), other.ports[1], dry_run=False)
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == bridge.ports[0]
    assert fdb_of(dp, other.br)[(MAC_A, 0)].ifindex == other.ports[1]
    # a static entry pointing into another bridge is not followed
    dp.fdb_add_static(other.br, MAC_C, 0, bridge.ports[1])
    res = dp.run(eth(MAC_C, MAC_B), other.ports[0])
    assert (res.verdict, res.drop_reason) == ("drop", "no-fdb-port")


def test_counters(dp, bridge):
    p0, p1, p2 = bridge.ports
    frame = eth(BROADCAST, MAC_A)
    for _ in range(3):  # dry runs count nothing
        dp.run(frame, p0)
    for port in (bridge.br, *bridge.ports):
        c = dp.port_counters(port)
        assert (c.rx_packets, c.tx_packets, c.drops) == (0, 0, {})
    dp.run(frame, p0, dry_run=False)
    c0 = dp.port_counters(p0)
    assert (c0.rx_packets, c0.rx_bytes, c0.tx_packets) == (1, len(frame), 0)
    for port in (bridge.br, p1, p2):
        c = dp.port_counters(port)
        assert (c.tx_packets, c.tx_bytes, c.rx_packets) == (1, len(frame), 0), port
    # known unicast counts tx on the target only
    dp.run(eth(MAC_A, MAC_B), p1, dry_run=False)
    assert dp.port_counters(p0).tx_packets == 1
    assert dp.port_counters(p1).rx_packets == 1
    assert dp.port_counters(p2).tx_packets == 1
    # drops are counted by reason on the in port
    dp.run(eth(MAC_A, MULTICAST), p2, dry_run=False)
    dp.run(eth(MAC_B, MAC_A), p0, dry_run=False)  # B learned on p1 -> forward, no drop
    dp.run(eth(MAC_B, MAC_B), p1, dry_run=False)  # same-port
    assert dp.port_counters(p2).drops == {"invalid-src-mac": 1}
    assert dp.port_counters(p1).drops == {"same-port": 1}
    assert dp.port_counters(p0).drops == {}


def test_run_rejects_short_frame(dp, bridge):
    with pytest.raises(InvalidArgument):
        dp.run(bytes(10), bridge.ports[0])


TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def test_malformed_short_frame_counted(dp, bridge, topo):
    """BPF_PROG_TEST_RUN refuses frames under 14 bytes, and Ethernet devices never carry them,
    so a 10-byte packet is injected through an L3 TUN device attached as a port."""
    from pyroute2 import IPRoute

    name = f"{topo.prefix}tun"
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, state="up")
        dp.add_port(bridge.br, idx, PortKind.DEVICE)
        os.write(fd, b"\x45" + bytes(9))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not dp.port_counters(idx).drops:
            time.sleep(0.01)
        c = dp.port_counters(idx)
        assert c.drops == {"malformed": 1}
        assert c.rx_packets == 0
        dp.remove_port(bridge.br, idx)
    finally:
        os.close(fd)


def test_egress_entry_from_host(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)
    res = dp.run(eth(MAC_B, bridge.mac), bridge.br, egress=True)
    assert (res.verdict, res.out_ifindex) == ("forward", p1)
    flood = dp.run(eth(BROADCAST, bridge.mac), bridge.br, egress=True)
    assert flood.verdict == "flood"
    assert sorted(flood.flood) == sorted([p0, p1, p2])
    # to a PEER port from the egress hook (plain redirect, not redirect_peer)
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    real = dp.run(eth(MAC_A, bridge.mac), bridge.br, egress=True, dry_run=False)
    assert real.retval == TC_ACT_REDIRECT
    assert dp.port_counters(p0).tx_packets == 2  # the flood from p1, then this frame
    assert dp.port_counters(bridge.br).rx_packets == 1
    # the host's own MAC is static: learning at egress leaves it on the bridge
    assert fdb_of(dp, bridge.br)[(bridge.mac, 0)].ifindex == bridge.br


def test_remove_port_cleans_state(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.run(eth(BROADCAST, MAC_C), p2, dry_run=False)
    assert dp.port_counters(p2).rx_packets == 1
    assert fdb_of(dp, bridge.br)[(MAC_C, 0)].ifindex == p2
    dp.remove_port(bridge.br, p2)
    assert (MAC_C, 0) not in fdb_of(dp, bridge.br)
    assert dp.port_counters(p2).rx_packets == 0
    assert attached_programs(p2, "ingress") == []
    assert sorted(dp.run(eth(BROADCAST, MAC_A), p0).flood) == sorted([bridge.br, p1])
    assert dp.run(eth(BROADCAST, MAC_A), p2).verdict == "pass"


def test_counter_slots_are_reused_zeroed(dp, bridge):
    """Counters live in a per-CPU array at the port's slot: a removed port's slot goes to the
    next port with its counters zeroed, and every port has a slot of its own."""
    p0, p1, p2 = bridge.ports
    dp.run(eth(BROADCAST, MAC_C), p2, dry_run=False)
    dp.run(eth(MAC_A, MULTICAST), p2, dry_run=False)
    slot = dp._port_get(p2).slot
    dp.remove_port(bridge.br, p2)
    dp.add_port(bridge.br, p2, PortKind.DEVICE)
    assert dp._port_get(p2).slot == slot  # the lowest free one
    c = dp.port_counters(p2)
    assert (c.rx_packets, c.tx_packets, c.drops) == (0, 0, {})
    slots = [dp._port_get(i).slot for i in (bridge.br, p0, p1, p2)]
    assert len(set(slots)) == 4
    dp.run(eth(BROADCAST, MAC_C), p2, dry_run=False)
    assert dp.port_counters(p2).rx_packets == 1
    # p1 kept its counters: both broadcasts from p2 were flooded to it
    assert dp.port_counters(p1).tx_packets == 2 and dp.port_counters(p1).rx_packets == 0


def test_a_new_port_needs_no_read_of_every_port(dp, bridge, monkeypatch):
    """Each add-port used to read the whole ports map twice (its free counter slot, and the
    members of its bridge for the XDP flood groups): O(ports) per add. Now what was written
    is kept, and only a restarted daemon reads the map, once (next test)."""
    ports = dp._port_maps
    many = [3_000_000 + i for i in range(100)]
    for ifindex in many:  # another bridge's ports: the map is mostly not this bridge
        ports.set(ifindex, 77, PortKind.DEVICE)

    def no_batch():
        raise AssertionError("read the whole ports map")

    monkeypatch.setattr(ports.ports, "items_lookup_batch", no_batch)
    wanted = [*bridge.ports, *many[:20]]
    assert {i: (leaf.bridge, leaf.slot) for i, leaf in ports.get_many(wanted).items()} == \
        {i: (ports.get(i).bridge, ports.get(i).slot) for i in wanted}
    held = {dp._port_get(i).slot for i in [bridge.br, *bridge.ports, *many]}
    ports.set(4_000_000, 77, PortKind.DEVICE)
    assert dp._port_get(4_000_000).slot == min(set(range(len(held) + 1)) - held)


def test_counter_slots_survive_a_reopen(bpffs_dir, topo):
    """A daemon started over pinned ports reads which slots they hold: a new port gets the
    lowest free one, never one a port holds."""
    dp = Datapath(bpffs_dir)
    try:
        br = Bridge(topo, dp, "r", 3)
        slots = {i: dp._port_get(i).slot for i in [br.br, *br.ports]}
        dp.remove_port(br.br, br.ports[1])
        dp.close()
        dp = Datapath(bpffs_dir)
        dp.add_port(br.br, br.ports[1], PortKind.DEVICE)
        assert dp._port_get(br.ports[1]).slot == slots[br.ports[1]]
        dp._port_maps.set(5_000_000, br.br, PortKind.DEVICE)
        assert dp._port_get(5_000_000).slot == max(slots.values()) + 1
        got = dp._port_maps.get_many([*slots, 5_000_000])
        assert {i: leaf.slot for i, leaf in got.items()} == {**slots, 5_000_000: 4}
    finally:
        dp.destroy()


def test_remove_bridge_and_prune(dp, bridge, topo):
    other = Bridge(topo, dp, "b", 1)
    dp.run(eth(BROADCAST, MAC_A), bridge.ports[0], dry_run=False)
    dp.remove_bridge(bridge.br)
    assert dp.fdb_list(bridge.br) == []
    assert attached_programs(bridge.br, "egress") == []
    assert attached_programs(bridge.ports[0], "ingress") == []
    assert dp.run(eth(BROADCAST, MAC_A), bridge.ports[0]).verdict == "pass"
    assert dp.run(eth(BROADCAST, MAC_A), other.ports[0]).flood == [other.br]
    dp.prune(keep={other.br})  # its port is stale now
    assert dp.run(eth(BROADCAST, MAC_A), other.ports[0]).verdict == "pass"
    res = dp.run(eth(BROADCAST, other.mac), other.br, egress=True)
    assert res.drop_reason == "no-flood-target"


def test_restart_reopens_pinned_state(dp, bridge, bpffs_dir):
    p0, p1, _ = bridge.ports
    dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
    dp.close()
    dp2 = Datapath(bpffs_dir)
    try:
        assert fdb_of(dp2, bridge.br)[(MAC_A, 0)].ifindex == p0
        assert dp2.port_counters(p0).rx_packets == 1
        res = dp2.run(eth(MAC_A, MAC_B), p1)
        assert (res.verdict, res.out_ifindex) == ("forward", p0)
        dp2.add_port(bridge.br, p0, PortKind.PEER)  # re-adopt: idempotent
        assert dp2.run(eth(BROADCAST, MAC_B), p1).flood.count(p0) == 1
    finally:
        dp2.close()
    dp._bpf = None  # closed above
    dp.__init__(bpffs_dir)  # let the fixture destroy through a live instance


def test_pins_of_another_layout_are_replaced(bpffs_dir, topo, caplog):
    """bcc reuses a pinned map whatever its shape: pins left by a build with other map layouts
    (here a ports map with a smaller value and a port_stats of another type) are replaced, and
    the datapath then works on maps of its own layout; a retired pin (flow_active) goes."""
    from bcc import BPF

    from vswitchd.datapath.loader import map_shape

    os.makedirs(bpffs_dir)
    old = BPF(text=f"""
        BPF_TABLE_PINNED("hash", u32, u32, ports, 16, "{bpffs_dir}/ports");
        BPF_TABLE_PINNED("hash", u32, u64, port_stats, 16, "{bpffs_dir}/port_stats");
        BPF_TABLE_PINNED("hash", u32, u32, flow_active, 16, "{bpffs_dir}/flow_active");
        int f(void *ctx) {{ return 0; }}""")
    old_ports = old[b"ports"]
    old_ports[old_ports.Key(1)] = old_ports.Leaf(7)
    old.cleanup()
    try:
        with caplog.at_level("WARNING"):
            dp = Datapath(bpffs_dir)
    except Exception:
        for name in os.listdir(bpffs_dir):  # no Datapath to destroy: unpin by hand
            os.unlink(os.path.join(bpffs_dir, name))
        os.rmdir(bpffs_dir)
        raise
    try:
        assert "another layout than this build" in caplog.text
        assert "ports: pinned" in caplog.text and "port_stats: pinned" in caplog.text
        assert dp._stale_pins() == []
        assert not os.path.exists(f"{bpffs_dir}/flow_active")  # retired: no build uses it
        ports = dp._bpf[b"ports"]
        assert map_shape(ports.map_fd)[2] == ctypes.sizeof(ports.Leaf)
        assert len(ports) == 0  # the old entry went with the old map
        br = Bridge(topo, dp, "l", 2, [PortKind.DEVICE, PortKind.DEVICE])
        p0, p1 = br.ports
        dp.run(eth(BROADCAST, MAC_A), p0, dry_run=False)
        res = dp.run(eth(MAC_A, MAC_B), p1)
        assert (res.verdict, res.out_ifindex) == ("forward", p0)
        assert dp.port_counters(p0).rx_packets == 1
    finally:
        dp.destroy()
    assert not os.path.exists(bpffs_dir)


def test_unicast_ns_per_run(dp, bridge, capsys):
    p0, p1, _ = bridge.ports
    dp.run(eth(BROADCAST, MAC_B), p1, dry_run=False)
    frame = eth(MAC_B, MAC_A)
    real = dp.run(frame, p0, dry_run=False, repeat=1_000_000)
    dry = dp.run(frame, p0, dry_run=True, repeat=1_000_000)
    assert real.retval == TC_ACT_REDIRECT and dry.verdict == "forward"
    with capsys.disabled():
        print(f"\nknown unicast: {real.duration_ns} ns/run (real), {dry.duration_ns} ns/run "
              "(dry run), repeat=1000000")


def test_host_mac_from_a_port_is_a_spoof(dp, bridge):
    """A port sending with the bridge device's MAC (the host's) is dropped with its own reason,
    counted, in the trace; the host's entry stays on the bridge; the host's own frames pass."""
    p0, p1, _ = bridge.ports
    res = dp.run(eth(BROADCAST, bridge.mac), p1)
    assert (res.verdict, res.drop_reason) == ("drop", "host-mac-spoof")
    real = dp.run(eth(MAC_A, bridge.mac), p1, dry_run=False)
    assert real.retval == TC_ACT_SHOT
    assert dp.port_counters(p1).drops == {"host-mac-spoof": 1}
    own = fdb_of(dp, bridge.br)[(bridge.mac, 0)]
    assert own.static and own.ifindex == bridge.br
    assert dp.run(eth(bridge.mac, MAC_B), p0).out_ifindex == bridge.br  # still the host
    host = dp.run(eth(BROADCAST, bridge.mac), bridge.br, egress=True)
    assert host.verdict == "flood" and sorted(host.flood) == sorted(bridge.ports)


def test_other_static_entries_are_not_learned_over(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.fdb_add_static(bridge.br, MAC_A, 0, p0)
    assert dp.run(eth(BROADCAST, MAC_A), p1, dry_run=False).retval == TC_ACT_REDIRECT
    assert fdb_of(dp, bridge.br)[(MAC_A, 0)].ifindex == p0
