"""GRO over the ethtool ioctl (vswitchd.netlink.ethtool) on real veths, in this namespace and
inside a named one, checked with ethtool's own view of the features."""

from __future__ import annotations

import pytest
from pyroute2 import IPRoute

from vswitchd.errors import NotFound
from vswitchd.netlink import ethtool, netns
from vswitchd.netlink.links import Links


def _features(ifname: str, ns: str = "") -> dict[str, str]:
    """What the kernel's features say of IFNAME (via pyroute2's own ethtool, independent)."""
    from pyroute2 import Ethtool

    with netns.entered(ns) if ns else _here():
        et = Ethtool()
    try:
        feats = et.get_features(ifname)
        return {name: f.enable for name, f in feats.features.items()}
    finally:
        et.close()


class _here:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.root
def test_gro_on_and_off_at_a_veth_peer_in_a_namespace(links: Links, make_ns, ifnames) -> None:
    ns = make_ns()
    host = ifnames("vswgro")
    links.create_veth(host, "eth0", ns)
    before = ethtool.gro("eth0", ns)
    ethtool.set_gro("eth0", ns, True)
    assert ethtool.gro("eth0", ns) is True
    assert _features("eth0", ns)["rx-gro"] is True
    ethtool.set_gro("eth0", ns, False)
    assert ethtool.gro("eth0", ns) is False
    assert _features("eth0", ns)["rx-gro"] is False
    ethtool.set_gro("eth0", ns, before)
    # the host end, in the daemon's own namespace, is not touched by the peer's setting
    ethtool.set_gro(host, "", False)
    ethtool.set_gro("eth0", ns, True)
    assert ethtool.gro(host) is False


@pytest.mark.root
def test_a_missing_interface_or_namespace_is_not_found(make_ns, ipr: IPRoute) -> None:
    ns = make_ns()
    with pytest.raises(NotFound, match=f"GRO of nosuch0 in network namespace {ns}"):
        ethtool.gro("nosuch0", ns)
    with pytest.raises(NotFound, match="network namespace vswt-nl-gone"):
        ethtool.set_gro("eth0", "vswt-nl-gone", True)
