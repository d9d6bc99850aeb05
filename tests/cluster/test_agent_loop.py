"""The agent loop (vswcluster.agent) against real etcd, each "host" with a fake vswitchd
(tests/unit/vswcluster_fake.py). Steps are driven by hand, so the tests are deterministic."""

from __future__ import annotations

import json
import time

from tests.unit.vswcluster_fake import FakeSwitch
from vswcluster import keys
from vswcluster.agent import Agent
from vswcluster.main import main as cli
from vswcluster.store import Store

A, B, C = "10.77.0.1", "10.77.0.2", "10.77.0.3"
M1, M2, M3 = "02:00:00:64:00:01", "02:00:00:64:00:02", "02:00:00:64:00:03"


def make(name, vtep, mac, urls, tmp_path, ttl=3, vni=100):
    sw = FakeSwitch()
    sw.add_tunnel("br0", "vx0", vni, vtep)
    sw.add_mac(vni, mac, (f"10.5.0.{vtep[-1]}",))
    agent = Agent(host=name, store=Store(urls, timeout=1.0), switch=sw, ttl=ttl,
                  status_file=str(tmp_path / f"{name}.json"))
    return agent, sw


def until(agents, cond, timeout=10.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for a in agents:
            a.step()
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s; status: "
                         f"{[a.status() for a in agents]}")


def tun(sw):
    return sw.tunnels[("br0", "vx0")]


def test_two_hosts_program_each_other_and_steady_state_writes_nothing(etcd, tmp_path, capsys):
    a1, s1 = make("h1", A, M1, etcd.urls, tmp_path)
    a2, s2 = make("h2", B, M2, etcd.urls, tmp_path)
    until([a1, a2], lambda: tun(s1).fdb == {(0, M2): B} and tun(s2).fdb == {(0, M1): A},
          what="both hosts programmed")
    assert tun(s1).remotes == {B} and tun(s2).remotes == {A}
    # steady state: no writes to etcd, no actions on vswitchd
    puts = (a1.counters.puts, a2.counters.puts, len(s1.applied), len(s2.applied))
    for _ in range(10):
        a1.step()
        a2.step()
    assert (a1.counters.puts, a2.counters.puts, len(s1.applied), len(s2.applied)) == puts
    # a new local MAC is published (one key) and reaches the other host
    s1.add_mac(100, M3)
    until([a1, a2], lambda: tun(s2).fdb.get((0, M3)) == A, what="new MAC programmed")
    assert a1.counters.puts == puts[0] + 1
    # status: file, table and JSON
    a1.step()
    st = str(tmp_path / "h1.json")
    assert cli(["status", "--status-file", st, "-j"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["members"] == {"h1": A, "h2": B}
    assert data["vnis"] == {"100": {"h1": A, "h2": B}}
    assert data["etcd"]["connected"] and data["vswitchd"]["connected"]
    assert data["programmed"][0]["remotes"] == [B]
    assert {"vlan": 0, "mac": M2, "remote": B} in data["programmed"][0]["fdb"]
    assert cli(["status", "--status-file", st]) == 0
    out = capsys.readouterr().out
    assert "h2                10.77.0.2" in out and f"{M2}  -> {B}" in out
    a1.close()
    a2.close()


def test_clean_stop_drops_at_once_killed_host_after_ttl(etcd, tmp_path):
    a1, s1 = make("h1", A, M1, etcd.urls, tmp_path, ttl=2)
    a2, s2 = make("h2", B, M2, etcd.urls, tmp_path, ttl=2)
    a3, s3 = make("h3", C, M3, etcd.urls, tmp_path, ttl=2)
    until([a1, a2, a3], lambda: len(tun(s1).fdb) == 2 and len(tun(s3).fdb) == 2,
          what="three hosts programmed")
    a2.close(revoke=True)          # clean stop: its lease is revoked
    took = until([a1, a3], lambda: (0, M2) not in tun(s1).fdb and B not in tun(s1).remotes,
                 timeout=1.5, what="h2 gone at once")
    assert took < 1.5
    a3.close(revoke=False)         # "killed": the lease expires after the TTL
    t0 = time.monotonic()
    until([a1], lambda: tun(s1).fdb == {} and tun(s1).remotes == set(), timeout=8,
          what="h3 gone after its TTL")
    assert time.monotonic() - t0 >= 1.0, "h3 left before its lease could expire"
    # a host that comes back publishes again
    a3b, s3b = make("h3", C, M3, etcd.urls, tmp_path, ttl=2)
    until([a1, a3b], lambda: tun(s1).fdb == {(0, M3): C}, what="h3 back")
    a1.close()
    a3b.close()


def test_etcd_down_keeps_the_programmed_state_and_recovers(etcd, tmp_path):
    a1, s1 = make("h1", A, M1, etcd.urls, tmp_path, ttl=2)
    a2, s2 = make("h2", B, M2, etcd.urls, tmp_path, ttl=2)
    until([a1, a2], lambda: tun(s1).fdb == {(0, M2): B}, what="programmed")
    etcd.members[0].stop()
    for _ in range(5):
        a1.step()
        time.sleep(0.1)
    assert tun(s1).fdb == {(0, M2): B} and tun(s1).remotes == {B}   # kept
    st = a1.status()
    assert not st["etcd"]["connected"] and st["etcd"]["last_error"]
    assert st["etcd"]["backoff_seconds"] > 0
    time.sleep(1)
    etcd.members[0].start(state="existing")
    etcd.members[0].wait_ready()
    # (a restarted etcd renews its leases: they do not expire while it is down)
    s1.add_mac(100, M3)            # a change made while etcd was down is published after
    until([a1, a2], lambda: a1.status()["etcd"]["connected"] and
          tun(s2).fdb.get((0, M3)) == A and tun(s1).fdb == {(0, M2): B}, timeout=20,
          what="recovery")
    # a lost lease (expired or revoked behind the agent's back): re-granted, all re-published
    lease = a1.etcd.lease
    Store(etcd.urls).revoke(lease)
    until([a1, a2], lambda: a1.etcd.lease not in (0, lease) and tun(s2).fdb.get((0, M3)) == A
          and keys.host_key("h1") in a2.mirror, timeout=10, what="re-published")
    assert a1.counters.lease_grants == 2
    a1.close()
    a2.close()


def test_vswitchd_down_and_restarted_is_resynced(etcd, tmp_path):
    a1, s1 = make("h1", A, M1, etcd.urls, tmp_path)
    a2, s2 = make("h2", B, M2, etcd.urls, tmp_path)
    until([a1, a2], lambda: tun(s1).fdb == {(0, M2): B}, what="programmed")
    s1.up = False
    a1.step()
    assert not a1.status()["vswitchd"]["connected"]
    s1.up = True
    s1.restart()                   # came back without the agent's entries
    until([a1, a2], lambda: tun(s1).fdb == {(0, M2): B} and tun(s1).remotes == {B},
          what="resync")
    assert a1.counters.resyncs >= 2
    a1.close()
    a2.close()


def test_three_member_etcd_losing_one_member_keeps_working(etcd3, tmp_path):
    a1, s1 = make("h1", A, M1, etcd3.urls, tmp_path)
    a2, s2 = make("h2", B, M2, etcd3.urls, tmp_path)
    until([a1, a2], lambda: tun(s1).fdb == {(0, M2): B}, what="programmed")
    etcd3.members[0].kill()        # the endpoint both agents use
    s2.add_mac(100, M3)
    until([a1, a2], lambda: tun(s1).fdb.get((0, M3)) == B, timeout=10,
          what="a change after the loss of a member")
    assert a1.store.endpoint != etcd3.members[0].url
    assert a1.status()["etcd"]["connected"]
    a1.close()
    a2.close()
