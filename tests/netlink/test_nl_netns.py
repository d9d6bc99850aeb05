from __future__ import annotations

import os
import secrets
import threading

import pytest
from pyroute2 import IPRoute

from vswitchd.errors import AlreadyExists, InvalidArgument, NotFound
from vswitchd.netlink import netns


@pytest.mark.root
def test_resolve_and_is_named() -> None:
    assert netns.resolve("c1") == "/run/netns/c1"
    assert netns.resolve("/proc/123/ns/net") == "/proc/123/ns/net"
    assert netns.is_named("cni-1234-abcd")
    assert not netns.is_named("/proc/1/ns/net")
    for bad in ("", "..", "a/b", "a b", "x;rm -rf /", "-rf"):
        with pytest.raises(InvalidArgument) as ei:
            netns.resolve(bad)
        assert ei.value.field == "netns"


@pytest.mark.root
def test_create_exists_remove() -> None:
    name = f"vswt-nl-{secrets.token_hex(4)}"
    try:
        assert not netns.exists(name)
        path = netns.create_named(name)
        assert path == f"/run/netns/{name}"
        assert netns.exists(name)
        assert netns.exists(path)
        # a different namespace from ours, and this thread stays where it was
        here = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        assert os.stat(path).st_ino not in (os.stat("/proc/self/ns/net").st_ino,
                                            os.stat(here).st_ino)
        assert os.stat(here).st_ino == os.stat("/proc/self/ns/net").st_ino
        # a namespace of its own: a second one is another
        other = netns.create_named(name + "b")
        try:
            assert os.stat(other).st_ino != os.stat(path).st_ino
        finally:
            netns.remove_named(name + "b")
        with pytest.raises(AlreadyExists):
            netns.create_named(name)
    finally:
        netns.remove_named(name)
    assert not netns.exists(name)
    assert not os.path.lexists(f"/run/netns/{name}")
    netns.remove_named(name)  # already gone: no error


@pytest.mark.root
def test_exists_rejects_non_netns_files() -> None:
    assert netns.exists("/proc/self/ns/net")
    assert not netns.exists("/proc/self/ns/mnt")  # a namespace, but not a network one
    assert not netns.exists("/etc/hostname")
    assert not netns.exists("/proc/999999999/ns/net")
    with pytest.raises(NotFound):
        netns.open_netns("/proc/self/ns/mnt")


@pytest.mark.root
def test_entered_switches_only_this_thread(make_ns) -> None:
    name = make_ns()
    ours = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino
    theirs = os.stat(netns.resolve(name)).st_ino
    with netns.entered(name):
        inside = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino
        with IPRoute() as ipr:
            names = {m.get_attr("IFLA_IFNAME") for m in ipr.link("dump")}
    after = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino
    assert inside == theirs
    assert after == ours
    assert names == {"lo"}  # a fresh namespace has only lo
    with pytest.raises(NotFound):
        with netns.entered("vswt-nl-does-not-exist"):
            pass
