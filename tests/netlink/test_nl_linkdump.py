"""The one-dump link reader (vswitchd.netlink.linkdump) against pyroute2's view of the same
links, and Links.snapshot(), which serves listings from it."""

from __future__ import annotations

import threading

from pyroute2 import IPRoute

from vswitchd.monitor import LinkMonitor
from vswitchd.netlink import linkdump
from vswitchd.netlink._util import _to_info
from vswitchd.netlink.links import Links


def test_the_dump_agrees_with_pyroute2(links: Links, ipr: IPRoute, make_ns, ifnames) -> None:
    br, member, tap, veth = ifnames("br"), ifnames("tm"), ifnames("tp"), ifnames("ve")
    links.create_bridge(br, ["10.99.0.1/24"], mac="02:00:00:00:99:01")
    links.create_tap(member, mtu=1400)
    links.enslave(member, br)
    links.create_tap(tap)
    links.create_veth(veth, "eth0", make_ns())
    dumped = linkdump.dump()
    for name in (br, member, tap, veth, "lo"):
        info, stats = dumped[name]
        assert info == _to_info(ipr.link("get", ifname=name)[0]), name
        # Links' single-link reads: one request each, the same parser
        assert links.get(name) == info == links.get_by_index(info.ifindex), name
        later = links.stats(name)  # counters only grow (a veth may send IPv6 meanwhile)
        assert all(getattr(stats, f) <= getattr(later, f) for f in later.__dataclass_fields__)
    assert dumped[tap][1] == links.stats(tap)  # a TAP nobody holds moves nothing
    for missing in (ifnames("no"), "x" * 16, ""):
        assert links.get(missing) is None and linkdump.lookup({missing} - {""}) == {}
    assert links.get_by_index(2**31 - 1) is None and links.get_by_index(-1) is None
    assert dumped[br][0].kind == "bridge" and dumped[br][0].mac == "02:00:00:00:99:01"
    assert dumped[member][0].master == dumped[br][0].ifindex and dumped[member][0].mtu == 1400
    assert dumped[tap][0].kind == "tun" and dumped[veth][0].kind == "veth"
    assert dumped["lo"][0].operstate == "UNKNOWN" and dumped["lo"][0].up


def test_a_snapshot_serves_its_thread_only(links: Links, ifnames) -> None:
    first, later = ifnames("sa"), ifnames("sb")
    links.create_tap(first)
    with links.snapshot():
        info = links.get(first)
        assert info is not None and links.get_by_index(info.ifindex) == info
        links.create_tap(later)
        assert links.get(later) is None  # taken before: a read-only view of one moment
        seen = []
        other = threading.Thread(target=lambda: seen.append(links.get(later)))
        other.start()
        other.join()
        assert seen[0] is not None and seen[0].name == later  # other threads ask the kernel
        with links.snapshot():  # nested: the same view
            assert links.get(later) is None
    assert links.get(later) is not None


def test_link_events_name_the_links_they_are_about(links: Links, ifnames) -> None:
    tap, quiet = ifnames("ev"), ifnames("eq")
    links.create_tap(quiet)  # made before: no message about it
    events = linkdump.LinkEvents()
    try:
        links.create_tap(tap)
        links.set_up(tap)
        links.delete(tap)
        seen: list[str] = []
        while seen.count(tap) < 3:  # made, up, deleted
            seen += events.recv()
        assert set(seen) == {tap}
    finally:
        events.close()


def test_lookup_reads_the_links_asked_for(links: Links, ifnames) -> None:
    br, tap = ifnames("lb"), ifnames("lt")
    links.create_bridge(br, [])
    links.create_tap(tap)
    links.enslave(tap, br)
    got = linkdump.lookup({br, tap, "lo", ifnames("ln")})  # the last one does not exist
    dumped = linkdump.dump()
    assert got == {name: dumped[name][0] for name in (br, tap, "lo")}
    assert got[tap].master == got[br].ifindex


def test_the_monitor_checks_the_links_a_burst_was_about(links: Links, ifnames) -> None:
    br, tap, other = ifnames("mb"), ifnames("mt"), ifnames("mo")
    links.create_bridge(br, [])
    for name in (tap, other):
        links.create_tap(name)
        links.enslave(name, br)
    owned = {br: ("bridge", None), tap: ("tap", br), other: ("tap", br)}
    monitor = LinkMonitor(lambda names: owned, lambda: None, set)
    assert not monitor._disagrees({tap}) and not monitor._disagrees(None)
    links.release(other)  # left its bridge: its own message names it
    assert monitor._disagrees({other}) and monitor._disagrees(None)
    assert not monitor._disagrees({tap, "eth9"})  # what the burst was not about is not read
    links.enslave(other, br)
    links.delete(tap)
    assert monitor._disagrees({tap}) and not monitor._disagrees({other})


def test_remembering_asks_once_until_a_change(links: Links, ifnames, monkeypatch) -> None:
    tap = ifnames("rm")
    links.create_tap(tap)
    asked: list[str] = []
    real = linkdump.get
    monkeypatch.setattr(linkdump, "get", lambda name="", index=0: (asked.append(name),
                                                                   real(name, index))[1])
    with links.remembering():
        assert links.get(tap) == links.get(tap) != links.get(ifnames("rn"))
        assert asked == [tap, asked[1]]
        links.set_mac(tap, "02:00:00:00:00:42")  # a change through Links: all is forgotten
        assert links.get(tap).mac == "02:00:00:00:00:42" and asked[2:] == [tap]
        links.get(tap, fresh=True)  # what the datapath changes, Links cannot know
        assert asked[2:] == [tap, tap]
    links.get(tap)
    assert len(asked) == 5  # outside: every time
