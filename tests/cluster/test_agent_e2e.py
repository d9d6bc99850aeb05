"""End to end: three "hosts" (network namespaces with a real vswitchd each, joined by an
underlay: tests/netns/overlay.py), a real etcd, and one `vswcluster run` per host. Tunnel ports
are created without remotes: the agents make the segment.

These need the daemon side of the VXLAN API (tunnel ports, UpdatePort remotes, remote FDB
entries) and root; they fail loudly without them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns.overlay import Overlay
from vswapi import switch_pb2 as pb
from vswapi.client import connect

VSWCLUSTER = str(Path(sys.executable).parent / "vswcluster")
VNI = 100
SUBNET = "192.168.100"


class Agents:
    def __init__(self, overlay: Overlay, urls: str, workdir: Path, ttl: int = 3) -> None:
        self.o, self.urls, self.workdir, self.ttl = overlay, urls, workdir, ttl
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, n: int) -> None:
        h = self.o.hosts[n - 1]
        log = open(self.workdir / f"agent{n}.log", "a")  # noqa: SIM115
        self.procs[n] = subprocess.Popen(
            [VSWCLUSTER, "run", "--host", f"h{n}", "--etcd", self.urls, "--socket", h.socket,
             "--ttl", str(self.ttl), "--interval", "0.2", "--status-file", self.status_file(n),
             "--log-level", "debug"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def status_file(self, n: int) -> str:
        return str(self.workdir / f"agent{n}.json")

    def status(self, n: int) -> dict:
        res = subprocess.run([VSWCLUSTER, "status", "--status-file", self.status_file(n), "-j"],
                             capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def stop(self, n: int, sig: int = signal.SIGTERM) -> int:
        p = self.procs[n]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def logs(self) -> str:
        return "\n".join(f"---- agent {n} ----\n{(self.workdir / f'agent{n}.log').read_text()}"
                         for n in self.procs if (self.workdir / f"agent{n}.log").exists())

    def cleanup(self) -> None:
        for n in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(n, signal.SIGKILL)


@pytest.fixture
def cluster3(tmp_path, request, etcd3):
    o = Overlay(tmp_path, 3)
    agents = Agents(o, etcd3.urls, tmp_path)
    try:
        o.start()
        for i, h in enumerate(o.hosts, 1):
            h.vswctl("add-br", "br0")
            h.vswctl("add-port", "br0", "vx0", "--type", "vxlan", "--vni", str(VNI),
                     "--local", o.vtep(i))
            container(o, i, "c1")
        for i in (1, 2, 3):
            agents.start(i)
        yield o, agents, etcd3
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(agents.logs())
            for h in o.hosts:
                print(f"---- vswitchd {h.tag} ----\n{h.log()}")
        agents.cleanup()
        o.cleanup()


def container(o: Overlay, n: int, name: str, octet: int | None = None) -> str:
    """A container NAME on host N's br0; returns its IP."""
    h = o.hosts[n - 1]
    last = octet if octet is not None else n
    addr = f"{SUBNET}.{last}"
    h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip", f"{addr}/24",
             "--mac", f"02:00:00:{VNI:02x}:{last:02x}:{n:02x}")
    return addr


def remote_fdb(o: Overlay, n: int) -> dict[str, str]:
    with connect(o.hosts[n - 1].socket) as c:
        entries = c.ListFdbEntries(pb.ListFdbEntriesRequest(bridge="br0"), timeout=10).entries
    return {e.mac: e.remote for e in entries if e.port == "vx0" and e.remote}


def others_known(o: Overlay, n: int = 1) -> bool:
    """Host N has the other hosts' containers c1 behind their VTEPs (their bridges' own MACs
    are published too: the host ports are on the segment)."""
    fdb = remote_fdb(o, n)
    return all(fdb.get(f"02:00:00:{VNI:02x}:{m:02x}:{m:02x}") == o.vtep(m)
               for m in range(1, len(o.hosts) + 1) if m != n)


def wait(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_containers_on_one_vni_ping_across_hosts(cluster3):
    o, agents, _ = cluster3
    h1 = o.hosts[0]
    wait(lambda: others_known(o), 15, "h1 got the other hosts' MACs")
    for target in (2, 3):
        assert h1.ping(h1.name("c1"), f"{SUBNET}.{target}"), f"c1 on h1 -> h{target}"
    # the status file is written at the end of the agent's step that programmed the MACs
    wait(lambda: len(agents.status(1)["members"]) == 3, 5, "h1's status with three members")
    st = agents.status(1)
    assert st["members"] == {"h1": o.vtep(1), "h2": o.vtep(2), "h3": o.vtep(3)}
    assert st["vnis"][str(VNI)] == st["members"]
    [prog] = st["programmed"]
    assert prog["remotes"] == [o.vtep(2), o.vtep(3)]
    assert len(prog["fdb"]) == 4  # the two other containers and the two other host ports
    # a port added on host 2 is reachable from host 1 through the agents
    t0 = time.monotonic()
    addr = container(o, 2, "c2", octet=22)
    wait(lambda: h1.ping(h1.name("c1"), addr, count=1), 15, "new container reachable")
    print(f"port added on h2 -> first ping from h1: {time.monotonic() - t0:.2f} s")


def test_killed_agent_host_leaves_after_ttl_and_comes_back(cluster3):
    o, agents, _ = cluster3
    wait(lambda: others_known(o), 15, "h1 got the other hosts' MACs")
    agents.stop(3, signal.SIGKILL)
    t0 = time.monotonic()
    mac3 = f"02:00:00:{VNI:02x}:03:03"
    wait(lambda: mac3 not in remote_fdb(o, 1), agents.ttl + 10, "h3's MAC gone from h1")
    assert time.monotonic() - t0 >= agents.ttl - 1.5, "gone before the lease could expire"
    wait(lambda: o.vtep(3) not in agents.status(1)["programmed"][0]["remotes"], 5,
         "h3's VTEP gone from h1's status")
    agents.start(3)
    wait(lambda: remote_fdb(o, 1).get(mac3) == o.vtep(3), 15, "h3 back on h1")
    # a clean stop revokes the lease: the others drop the host at once
    assert agents.stop(2) == 0
    wait(lambda: o.vtep(2) not in remote_fdb(o, 1).values(), 2.5, "h2 dropped at once")


def test_etcd_member_loss_keeps_the_cluster_working(cluster3):
    o, agents, etcd3 = cluster3
    h1 = o.hosts[0]
    wait(lambda: others_known(o), 15, "h1 got the other hosts' MACs")
    etcd3.members[0].kill()
    addr = container(o, 3, "c3", octet=33)
    wait(lambda: h1.ping(h1.name("c1"), addr, count=1), 20, "container added after the loss")
    # an agent that used the killed member notices at its next request (a keep-alive, the
    # watch) and goes on with another one: connected again, not necessarily at this instant
    wait(lambda: agents.status(1)["etcd"]["connected"], 15, "h1's agent on a live member")
    mac = f"02:00:00:{VNI:02x}:{33:02x}:03"
    wait(lambda: remote_fdb(o, 1).get(mac) == o.vtep(3), 15, "c3 published and programmed")


def test_vswitchd_restart_is_resynced(cluster3):
    o, agents, _ = cluster3
    h1 = o.hosts[0]
    wait(lambda: others_known(o), 15, "h1 got the other hosts' MACs")
    h1.stop()
    h1.start()
    wait(lambda: others_known(o), 15, "h1 programmed again after its restart")
    assert h1.ping(h1.name("c1"), f"{SUBNET}.2")
