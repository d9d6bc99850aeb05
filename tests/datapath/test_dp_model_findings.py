"""Disagreements the differential test (tests/model) found between the datapath and the
reference model, each fixed and kept here as a plain test of the real programs."""

from __future__ import annotations

import pytest
from dp_helpers import MAC_A, MAC_B, Bridge, mac_bytes

from vswitchd.datapath import DpRule, PortKind, VlanConfig
from vswitchd.datapath.runs import TC_ACT_REDIRECT, TC_ACT_SHOT

pytestmark = pytest.mark.root


@pytest.fixture
def vb(topo, dp):
    """A bridge with an unconfigured port (u) and an access port of VLAN 30 (a30)."""
    br = topo.add("mb", "bridge")
    dp.add_bridge(br, topo.mac(br))
    ports = {}
    for i, (name, mode) in enumerate((("u", VlanConfig()), ("a30", VlanConfig(access=30)))):
        ports[name] = topo.add(f"m{i}", "veth")
        dp.add_port(br, ports[name], PortKind.DEVICE, mode)
    return ports


def test_a_double_tagged_runt_whose_inner_tag_is_cut_is_malformed(dp, vb):
    # QinQ: outer 802.1ad tag of VLAN 30, then only the inner tag's TPID (18 bytes). Before the
    # fix it was flooded in VLAN 30: the copies that keep the tag went out, the pop for the
    # access port failed on the cut inner tag, and the frame was counted as vlan-failed.
    frame = mac_bytes(MAC_B) + mac_bytes(MAC_A) + bytes.fromhex("88a8001e8100")
    trace = dp.trace(frame, vb["u"])
    assert (trace.verdict, trace.drop_reason) == ("drop", "malformed")
    assert dp.run(frame, vb["u"], dry_run=False).retval == TC_ACT_SHOT
    assert dp.port_counters(vb["u"]).drops == {"malformed": 1}
    assert dp.port_counters(vb["a30"]).tx_packets == 0
    # with the inner tag whole it is an L2 frame of VLAN 30, flooded
    whole = frame + bytes.fromhex("000a0806")
    assert dp.trace(whole, vb["u"]).verdict == "flood"


def test_a_frame_for_the_bridges_mac_in_a_vlan_goes_to_the_host_alone(topo, dp):
    # README: the bridge's own MAC is a static entry "in every VLAN". Its entry is kept in
    # VLAN 0, and before the fix a frame for it in VLAN 10 missed the FDB and was flooded to
    # every port of VLAN 10 (the host's unicast copied to the other containers).
    bridge = Bridge(topo, dp, "h", 2, vlan=VlanConfig(access=10))
    br, mac, (a, b) = bridge.br, bridge.mac, bridge.ports
    frame = mac_bytes(mac) + mac_bytes(MAC_A) + b"\x08\x06" + bytes(28)
    trace = dp.trace(frame, a)
    assert (trace.verdict, trace.out_ifindex, trace.flood) == ("forward", br, [])
    assert trace.tags == {br: "tagged:10"}  # the host carries every VLAN, tagged
    assert dp.run(frame, a, dry_run=False).retval == TC_ACT_REDIRECT
    assert dp.port_counters(b).tx_packets == 0
    # only static entries of the bridge device count: a MAC learned from the host in VLAN 0
    # stays in VLAN 0
    host_frame = mac_bytes("ff:ff:ff:ff:ff:ff") + mac_bytes(MAC_B) + b"\x08\x06" + bytes(28)
    dp.run(host_frame, br, egress=True, dry_run=False)
    assert (MAC_B, 0, br) in {(r.mac, r.vlan, r.ifindex) for r in dp.fdb_list(br)}
    assert dp.trace(mac_bytes(MAC_B) + frame[6:], a).verdict == "flood"


def test_a_tag_pushed_for_a_copy_cannot_be_removed_again(topo, dp):
    # The model first expected what the trace shows: mod_vlan_vid:10, a copy to p1, strip_vlan,
    # normal -> the untagged frame flooded. A real run cannot remove a tag it pushed in the same
    # pass (bpf/lib/vlan.h): the copy goes out, then the frame is dropped as vlan-failed. The
    # model and the README say so now; the trace (no frame changed) does not show that drop.
    bridge = Bridge(topo, dp, "vf", 2)
    br, (p0, p1) = bridge.br, bridge.ports
    dp.flows_sync(br, [DpRule(1, 10, (), (("mod_vlan_vid", 10), ("output", p1),
                                          ("strip_vlan", 0), ("normal", 0)))])
    frame = mac_bytes("ff:ff:ff:ff:ff:ff") + mac_bytes(MAC_A) + b"\x08\x06" + bytes(28)
    assert dp.trace(frame, p0).verdict == "flood"
    assert dp.run(frame, p0, dry_run=False).retval == TC_ACT_SHOT
    assert dp.port_counters(p0).drops == {"vlan-failed": 1}
    assert dp.port_counters(p1).tx_packets == 1  # the tagged copy
