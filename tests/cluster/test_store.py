"""vswcluster.store against real etcd servers (tests/cluster/etcd.py)."""

from __future__ import annotations

import queue
import time

import pytest

from vswcluster.store import Backoff, Store, StoreUnavailable, WatchLost

P = "/vswitchd/v1/"


def next_event(w, timeout=5.0):
    item = w.events.get(timeout=timeout)
    if isinstance(item, WatchLost):
        raise item
    return item


def test_lease_expiry_removes_the_keys(etcd):
    s = Store(etcd.urls)
    lease = s.grant(2)
    s.put(P + "hosts/h1", '{"vtep":"10.0.0.1"}', lease)
    s.put(P + "other", "stays")
    kvs, _ = s.get_prefix(P)
    assert set(kvs) == {P + "hosts/h1", P + "other"}
    assert s.keepalive(lease) == 2
    deadline = time.monotonic() + 8
    while P + "hosts/h1" in s.get_prefix(P)[0]:
        assert time.monotonic() < deadline, "the leased key outlived its TTL"
        time.sleep(0.2)
    assert s.keepalive(lease) == -1  # the agent re-grants on this
    assert set(s.get_prefix(P)[0]) == {P + "other"}


def test_watch_resumes_from_a_revision(etcd):
    s = Store(etcd.urls)
    s.put(P + "a", "1")
    _, rev = s.get_prefix(P)
    s.put(P + "b", "2")          # after the read: must come on a watch from rev + 1
    s.delete(P + "a")
    s.put("/elsewhere/x", "3")   # outside the prefix
    w = s.watch(P, rev + 1)
    try:
        e1, e2 = next_event(w), next_event(w)
        assert (e1.kind, e1.key, e1.value) == ("put", P + "b", "2")
        assert (e2.kind, e2.key) == ("delete", P + "a")
        assert e2.revision > e1.revision > rev
        s.put(P + "c", "4")
        assert next_event(w).key == P + "c"
        with pytest.raises(queue.Empty):
            w.events.get(timeout=0.3)
    finally:
        w.stop()


def test_watch_reports_the_end_of_its_stream(etcd):
    s = Store(etcd.urls)
    _, rev = s.get_prefix(P)
    w = s.watch(P, rev + 1)
    etcd.members[0].kill()
    item = w.events.get(timeout=5)
    assert isinstance(item, WatchLost)


def test_failover_when_one_of_three_members_dies(etcd3):
    s = Store(etcd3.urls)
    lease = s.grant(5)
    s.put(P + "hosts/h1", "x", lease)
    assert s.endpoint == etcd3.members[0].url
    etcd3.members[0].kill()
    # the next requests go to another member; the cluster keeps its quorum
    s.put(P + "hosts/h2", "y", lease)
    assert s.endpoint != etcd3.members[0].url
    assert s.failovers == 1
    assert s.keepalive(lease) == 5
    kvs, rev = s.get_prefix(P)
    assert set(kvs) == {P + "hosts/h1", P + "hosts/h2"}
    w = s.watch(P, rev + 1)
    try:
        s.delete(P + "hosts/h1")
        assert next_event(w).kind == "delete"
    finally:
        w.stop()


def test_backoff_when_etcd_is_down_and_recovery_after(etcd):
    s = Store(etcd.urls, timeout=1.0)
    s.put(P + "a", "1")
    etcd.members[0].stop()
    b = Backoff(initial=0.1, cap=0.8)
    delays = []
    for _ in range(5):
        with pytest.raises(StoreUnavailable) as exc:
            s.get_prefix(P)
        delays.append(b.failed())
    assert etcd.members[0].url in str(exc.value)
    assert delays[0] < delays[1] < delays[2] and max(delays) <= 0.8 * 1.1
    etcd.members[0].start(state="existing")
    etcd.members[0].wait_ready()
    assert s.get_prefix(P)[0][P + "a"][0] == "1"
    b.reset()
    assert b.failed() <= 0.11
