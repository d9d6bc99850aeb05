from __future__ import annotations

import pytest

from tests.cluster.etcd import EtcdCluster


def _cluster(tmp_path, request, size: int):
    c = EtcdCluster(tmp_path / f"etcd{size}", size)
    try:
        c.start()
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())
        c.cleanup()


@pytest.fixture
def etcd(tmp_path, request):
    """One real etcd member on loopback."""
    yield from _cluster(tmp_path, request, 1)


@pytest.fixture
def etcd3(tmp_path, request):
    """A real 3-member etcd cluster on loopback."""
    yield from _cluster(tmp_path, request, 3)
