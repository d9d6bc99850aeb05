"""Deleting links together (vswitchd.netlink.bulk, Links.deleting_together) on real links in
the test's private namespace."""

from __future__ import annotations

from pyroute2 import IPRoute

from vswitchd.netlink import bulk
from vswitchd.netlink.links import Links


def test_links_noted_together_go_in_one_operation(links: Links, ipr: IPRoute, make_ns,
                                                  ifnames) -> None:
    doomed = [ifnames("bd") for _ in range(5)]
    veth, keep, grouped = ifnames("bv"), ifnames("bk"), ifnames("bg")
    ns = make_ns()
    for name in (*doomed, keep, grouped):
        links.create_tap(name)
    links.create_veth(veth, "eth0", ns)
    ipr.link("set", index=links.get(grouped).ifindex, group=7)  # a group someone else uses
    with links.deleting_together():
        for name in (*doomed, veth):
            assert links.delete(name)
        assert not links.delete(ifnames("none"))
        assert all(links.get(n) is not None for n in doomed)  # noted only, until the end
    assert all(links.get(n) is None for n in (*doomed, veth))
    assert links.get(keep) is not None and links.get(grouped) is not None
    assert not links.peer_exists(ns, "eth0")  # a veth's peer goes with it


def test_a_link_gone_meanwhile_is_skipped(links: Links, ifnames) -> None:
    first, second = ifnames("bx"), ifnames("by")
    links.create_tap(first)
    links.create_tap(second)
    gone = links.get(first).ifindex
    links.delete(first)
    bulk.delete_links([gone, links.get(second).ifindex])
    assert links.get(second) is None
    bulk.delete_links([])  # nothing to do
