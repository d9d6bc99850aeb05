"""The fake Links keeps the kernel's VXLAN rules that tests/netlink/test_nl_vxlan.py checks on the
real one (same exceptions, same messages), so switch tests on the fake mean the same thing."""

from __future__ import annotations

import pytest
from fakes import FakeLinks

from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument


def test_fake_vxlan_rules() -> None:
    lk = FakeLinks()
    lk.create_vxlan("vxa", vni=100)
    lk.create_vxlan("vxb", vni=200)
    assert (lk.vxlan_vnis("vxa"), lk.vxlan_vnis("vxb")) == ([100], [200])
    with pytest.raises(AlreadyExists, match="VNI 100 is already terminated by VXLAN device vxa "
                       "on UDP port 4789"):
        lk.create_vxlan("vxc", vni=100)
    with pytest.raises(FailedPrecondition, match="UDP port 4789 is in use by .*vxa"):
        lk.create_vxlan("vxc", vni=300, external=False)
    assert lk.get("vxc") is None

    lk.create_vxlan("vxk", vni=300, external=False, dstport=4790, local="10.0.0.1")
    lk.vxlan_set_remotes("vxk", ["10.0.0.3", "10.0.0.2", "10.0.0.2"])
    assert lk.vxlan_remotes("vxk") == ["10.0.0.2", "10.0.0.3"]
    lk.vxlan_fdb_add("vxk", "02:AA:00:00:00:01", "10.0.0.2")
    assert lk.vxlan_fdb_list("vxk") == {"02:aa:00:00:00:01": "10.0.0.2"}
    assert lk.vxlan_fdb_delete("vxk", "02:aa:00:00:00:01") is True
    assert lk.vxlan_fdb_delete("vxk", "02:aa:00:00:00:01") is False
    with pytest.raises(InvalidArgument, match="^remotes 'fd00::1'"):
        lk.vxlan_set_remotes("vxk", ["fd00::1"])
    with pytest.raises(FailedPrecondition, match="external"):
        lk.vxlan_set_remotes("vxa", ["10.0.0.2"])

    lk.create_bridge("br0", ["10.0.0.1/24"])
    assert {"10.0.0.1", "127.0.0.1"} <= lk.host_addresses()
    assert lk.underlay_mtu("10.0.0.1") == 1500
    lk.route_mtu["10.0.9.9"] = 1400
    assert lk.underlay_mtu("10.0.9.9") == 1400
