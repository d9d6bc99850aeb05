"""Disagreements the differential test (tests/model) found between the datapath and the
reference model, each fixed and kept here as a plain test of the real programs."""

from __future__ import annotations

import pytest
from dp_helpers import MAC_A, MAC_B, mac_bytes

from vswitchd.datapath import PortKind, VlanConfig

pytestmark = pytest.mark.root

TC_ACT_SHOT = 2


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
