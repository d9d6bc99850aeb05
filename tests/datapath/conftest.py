"""Fixtures for datapath tests: devices in the test process's private netns, and a Datapath
with its own bpffs pin directory that is destroyed even when the test fails."""

from __future__ import annotations

import os
import uuid

import pytest
from dp_helpers import Bridge, Topo


@pytest.fixture
def topo():
    t = Topo()
    try:
        yield t
    finally:
        t.cleanup()


@pytest.fixture
def bpffs_dir():
    return f"/sys/fs/bpf/vswtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def dp(bpffs_dir):
    from vswitchd.datapath import Datapath

    datapath = Datapath(bpffs_dir)
    try:
        yield datapath
    finally:
        datapath.destroy()
        assert not os.path.exists(bpffs_dir)


@pytest.fixture
def bridge(topo, dp):
    """Bridge device + 3 dummy ports (PEER, DEVICE, DEVICE) in the datapath."""
    from vswitchd.datapath import PortKind

    return Bridge(topo, dp, "a", 3, [PortKind.PEER, PortKind.DEVICE, PortKind.DEVICE])
