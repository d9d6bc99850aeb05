"""Test-wide isolation.

When run as root, the whole pytest process moves into a private network namespace before any
test runs, so no test can touch the machine's own interfaces even by mistake. Namespace tests
create further named namespaces (under /run/netns) for their "host" and containers.

Tests that need root, BPF or namespaces use the `root` marker; without root they fail loudly
(CI runs as root), they are never skipped silently.
"""

from __future__ import annotations

import ctypes
import os

import pytest

CLONE_NEWNET = 0x40000000


def _enter_private_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=1, state="up")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root, BPF and network namespaces")
    config.addinivalue_line("markers", "property: a property-based test (tests/fuzzing.py); "
                            "`make fuzz` runs these longer with a random seed")
    if os.geteuid() == 0:
        _enter_private_netns()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("this test needs root (BPF and network namespaces); CI runs it as root")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """item.rep_call: the call phase's report, so fixtures can print logs when a test failed."""
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
