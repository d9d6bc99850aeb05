"""vswapi.vlanmode: the one wording of a port's VLAN mode."""

from __future__ import annotations

from vswapi.vlanmode import vlan_mode_text


def test_each_mode_reads_as_list_ports_prints_it():
    assert vlan_mode_text(10, [], 0) == "access:10"
    assert vlan_mode_text(0, [20, 10], 0) == "trunk:10,20"
    assert vlan_mode_text(0, (10, 20), 5) == "trunk:10,20/native:5"
    assert vlan_mode_text(0, [], 0) == "all"
    assert vlan_mode_text(0, [], 5) == "all"  # a native VLAN without trunks means nothing
