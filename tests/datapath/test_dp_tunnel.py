"""Tunnel ports in the real programs (BPF_PROG_TEST_RUN): the tunnel key set for known unicast
to a MAC behind a remote VTEP, floods replicated to every VTEP of the bridge (tc_vteps) and
never back into the tunnel, frames without tunnel metadata dropped, flow outputs to a tunnel,
the XDP hook handing such frames to TC, and the maps' readers. A test run cannot give a frame
tunnel metadata: learning from the tunnel is tested with real VXLAN devices in
tests/netns/test_tunnels.py."""

from __future__ import annotations

import struct

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, mac_bytes
from test_dp_flows import rule

from vswitchd.datapath import PortKind, VlanConfig, WatchFilter
from vswitchd.datapath.constants import MAX_VTEPS
from vswitchd.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.root

TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
VTEPS = ["10.77.0.2", "10.77.0.3"]


def frame(dst: str, src: str) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + bytes(46)


def tagged(dst: str, src: str, vid: int) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!HH", 0x8100, vid) + b"\x08\x00" \
        + bytes(46)


class TunnelBridge:
    """A bridge with local ports a, b and a tunnel port t (a veth in the test: the programs
    know a tunnel by its port kind and map entries), VNI 100, VTEPS."""

    def __init__(self, topo, dp) -> None:
        self.dp = dp
        self.br = topo.add("tb", "bridge")
        dp.add_bridge(self.br, topo.mac(self.br))
        self.a = topo.add("ta", "veth")
        self.b = topo.add("tl", "veth")
        self.t = topo.add("tt", "veth")
        dp.add_port(self.br, self.a, PortKind.DEVICE)
        dp.add_port(self.br, self.b, PortKind.DEVICE)
        dp.add_port(self.br, self.t, PortKind.TUNNEL)
        dp.set_tunnel(self.t, 100, "10.77.0.1")
        dp.set_vteps(self.t, VTEPS)

    def tx(self, port: int) -> int:
        return self.dp.port_counters(port).tx_packets


@pytest.fixture
def tb(topo, dp):
    return TunnelBridge(topo, dp)


def test_vteps_are_read_back_and_limited(tb, dp):
    assert dp.vteps(tb.t) == VTEPS
    dp.set_vteps(tb.t, ["10.77.0.9"])
    assert dp.vteps(tb.t) == ["10.77.0.9"]
    with pytest.raises(InvalidArgument, match=f"at most {MAX_VTEPS}"):
        dp.set_vteps(tb.t, [f"10.78.{i // 250}.{i % 250 + 1}" for i in range(MAX_VTEPS + 1)])
    assert dp.vteps(tb.t) == ["10.77.0.9"]
    with pytest.raises(InvalidArgument, match="IPv4"):
        dp.set_vteps(tb.t, ["fd00::2"])
    with pytest.raises(NotFound, match="not a tunnel port"):
        dp.set_tunnel(tb.a, 5)
    dp.remove_port(tb.br, tb.t)
    with pytest.raises(NotFound):
        dp.vteps(tb.t)


def test_known_unicast_gets_the_key_of_its_vtep(tb, dp):
    dp.fdb_add_static(tb.br, MAC_B, 0, tb.t, remote="10.77.0.3")
    rec = next(r for r in dp.fdb_list(tb.br) if r.mac == MAC_B)
    assert (rec.ifindex, rec.static, rec.remote) == (tb.t, True, "10.77.0.3")
    res = dp.run(frame(MAC_B, MAC_A), tb.a)
    assert (res.verdict, res.out_ifindex, res.tunnel_remote) == ("forward", tb.t, "10.77.0.3")
    real = dp.run(frame(MAC_B, MAC_A), tb.a, dry_run=False)
    assert real.retval == TC_ACT_REDIRECT and tb.tx(tb.t) == 1
    # a local port's entry has no remote; the entry's remote goes with it
    assert dp.run(frame(MAC_A, MAC_C), tb.b).tunnel_remote == ""
    assert dp.fdb_delete(tb.br, MAC_B, 0)
    assert MAC_B not in {r.mac for r in dp.fdb_list(tb.br)}
    assert len(dp._fdb_maps.remote.items()) == 0


def test_a_flood_reaches_every_vtep_once_and_every_local_port(tb, dp):
    res = dp.run(frame(BROADCAST, MAC_A), tb.a)
    assert res.verdict == "flood" and sorted(res.flood) == sorted([tb.br, tb.b, tb.t])
    real = dp.run(frame(BROADCAST, MAC_A), tb.a, dry_run=False)
    assert real.retval == TC_ACT_REDIRECT
    assert (tb.tx(tb.t), tb.tx(tb.b), tb.tx(tb.br)) == (len(VTEPS), 1, 1)
    # unknown unicast likewise; without VTEPs the tunnel takes nothing
    dp.set_vteps(tb.t, [])
    res = dp.run(frame(MAC_C, MAC_A), tb.a)
    assert sorted(res.flood) == sorted([tb.br, tb.b])
    dp.run(frame(MAC_C, MAC_A), tb.a, dry_run=False)
    assert tb.tx(tb.t) == len(VTEPS)


def test_a_frame_from_the_tunnel_never_goes_back_into_it(tb, dp):
    res = dp.run(frame(BROADCAST, MAC_C), tb.t)  # a dry run has no tunnel key to check
    assert res.verdict == "flood" and tb.t not in res.flood
    assert sorted(res.flood) == sorted([tb.br, tb.a, tb.b])


def test_a_frame_without_tunnel_metadata_is_dropped(tb, dp):
    real = dp.run(frame(BROADCAST, MAC_C), tb.t, dry_run=False)
    assert real.retval == TC_ACT_SHOT
    assert dp.port_counters(tb.t).drops == {"tunnel-no-key": 1}
    assert MAC_C not in {r.mac for r in dp.fdb_list(tb.br)}


def test_a_rules_output_to_the_tunnel_needs_the_destinations_vtep(tb, dp):
    dp.flows_sync(tb.br, [rule(1, 10, [("output", tb.t)], in_port=tb.a)])
    res = dp.run(frame(MAC_B, MAC_A), tb.a)
    assert (res.verdict, res.drop_reason) == ("drop", "tunnel-no-remote")
    dp.fdb_add_static(tb.br, MAC_B, 0, tb.t, remote="10.77.0.2")
    res = dp.run(frame(MAC_B, MAC_A), tb.a)
    assert (res.verdict, res.out_ifindex, res.tunnel_remote) == ("forward", tb.t, "10.77.0.2")


def test_xdp_hands_frames_for_the_tunnel_to_tc(tb, dp):
    dp.set_port_xdp(tb.a, "generic")
    dp.set_xdp_target(tb.b, True)
    dp.fdb_add_static(tb.br, MAC_B, 0, tb.t, remote="10.77.0.2")
    res = dp.run(frame(MAC_B, MAC_A), tb.a, hook="xdp")
    assert (res.verdict, res.handoff) == ("to-tc", "the output port cannot take XDP frames")
    res = dp.run(frame(BROADCAST, MAC_A), tb.a, hook="xdp")
    assert (res.verdict, res.handoff) == ("to-tc", "a flood target cannot take XDP frames")


def test_the_tunnel_takes_the_vlans_of_its_mode(tb, dp):
    """A tunnel port that is an access port of VLAN 10 carries that VLAN untagged: a tagged
    frame of VLAN 10 from a trunk reaches it untagged (tc_vteps pops the tag), once per VTEP;
    a frame of VLAN 20 does not reach it."""
    dp.set_port_vlan(tb.t, VlanConfig(access=10))
    dp.set_port_vlan(tb.a, VlanConfig(trunks=frozenset({10, 20})))
    res = dp.run(tagged(BROADCAST, MAC_A, 10), tb.a)
    assert res.verdict == "flood" and tb.t in res.flood and res.tags[tb.t] == "untagged"
    real = dp.run(tagged(BROADCAST, MAC_A, 10), tb.a, dry_run=False)
    assert real.retval == TC_ACT_REDIRECT and tb.tx(tb.t) == len(VTEPS)
    res = dp.run(tagged(BROADCAST, MAC_A, 20), tb.a)
    assert tb.t not in res.flood
    dp.run(tagged(BROADCAST, MAC_A, 20), tb.a, dry_run=False)
    assert tb.tx(tb.t) == len(VTEPS)


def test_the_watch_sees_frames_to_the_tunnel(tb, dp):
    slot = dp.watch_add(WatchFilter(bridge=tb.br))
    try:
        dp.fdb_add_static(tb.br, MAC_B, 0, tb.t, remote="10.77.0.3")
        dp.run(frame(MAC_B, MAC_A), tb.a, dry_run=False)
        dp.run(frame(BROADCAST, MAC_A), tb.a, dry_run=False)
        events = []
        for _ in range(20):
            events += dp.watch_poll(100)
            if len(events) >= 2:
                break
        assert [(e.verdict, e.in_port) for e in events] == [("forward", tb.a), ("flood", tb.a)]
        assert tb.t in events[0].outputs
        assert events[1].n_copies == 2 + len(VTEPS)  # the host, b, and one per VTEP
    finally:
        dp.watch_remove(slot)
