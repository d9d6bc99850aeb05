"""Fixtures for netlink tests: a Links object, unique named namespaces, link cleanup.

The whole pytest process already runs in a private network namespace (tests/conftest.py), so
links made here never touch the machine's interfaces. Named namespaces live under /run/netns and
are shared with the machine: they get a unique `vswt-nl-` prefix and are removed even on failure.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from pyroute2 import IPRoute

from vswitchd.netlink import netns
from vswitchd.netlink.links import Links


@pytest.fixture
def links() -> Iterator[Links]:
    lk = Links()
    try:
        yield lk
    finally:
        lk.close()


@pytest.fixture
def ipr() -> Iterator[IPRoute]:
    """An independent IPRoute in the test's namespace, to check what Links did."""
    with IPRoute() as ip:
        yield ip


@pytest.fixture
def make_ns() -> Iterator[Callable[[], str]]:
    """Create named namespaces `vswt-nl-<random>`; all removed at teardown."""
    made: list[str] = []

    def make() -> str:
        name = f"vswt-nl-{secrets.token_hex(4)}"
        made.append(name)
        netns.create_named(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            netns.remove_named(name)


@pytest.fixture
def ifnames() -> Iterator[Callable[[str], str]]:
    """Unique interface names (prefix + 6 hex); any that still exist are deleted at teardown."""
    made: list[str] = []

    def name(prefix: str) -> str:
        n = f"{prefix}{secrets.token_hex(3)}"
        made.append(n)
        return n

    try:
        yield name
    finally:
        with IPRoute() as ip:
            for n in made:
                for idx in ip.link_lookup(ifname=n):
                    try:
                        ip.link("del", index=idx)
                    except Exception:
                        pass
