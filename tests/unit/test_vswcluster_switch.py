"""vswcluster.switch.local_state (the daemon's replies -> the agent's view of its host) and the
agent's status file."""

import threading
import time

from tests.unit.vswcluster_fake import FakeSwitch
from vswapi import switch_pb2 as pb
from vswcluster.agent import Agent
from vswcluster.status import read_status, render, staleness
from vswcluster.store import Store, StoreUnavailable
from vswcluster.switch import local_state


def test_local_state_from_the_daemons_replies():
    br = pb.Bridge(name="br0", ports=[
        pb.Port(name="vx0", type=pb.PORT_TYPE_VXLAN, vni=100, local="10.77.0.1",
                remotes=["10.77.0.2"]),
        pb.Port(name="c1", type=pb.PORT_TYPE_VETH, mac="02:AA:00:00:00:01",
                addresses=["10.5.0.1/24"], vlan=0),
        pb.Port(name="tap0", type=pb.PORT_TYPE_TAP),
    ])
    other = pb.Bridge(name="br1", ports=[pb.Port(name="c9", mac="02:00:00:00:00:09")])
    fdb = [
        pb.FdbEntry(mac="02:00:00:00:00:02", port="vx0", static=True, remote="10.77.0.2"),
        pb.FdbEntry(mac="02:00:00:00:00:03", port="vx0", static=False, remote="10.77.0.3"),
        pb.FdbEntry(mac="02:00:00:00:00:05", port="vx0", static=True),
        pb.FdbEntry(mac="02:00:00:00:00:04", port="tap0", vlan=0, age_seconds=3),
    ]
    st = local_state([br, other], {"br0": fdb})
    [t] = st.tunnels
    assert (t.bridge, t.port, t.vni, t.local, t.remotes) == \
        ("br0", "vx0", 100, "10.77.0.1", frozenset({"10.77.0.2"}))
    # only static entries with a remote are the agent's
    assert t.fdb == {(0, "02:00:00:00:00:02"): "10.77.0.2"}
    # local MACs: learned/static entries not on a tunnel port, veth MACs with their IPs
    assert st.macs == {100: {(0, "02:aa:00:00:00:01"): ("10.5.0.1",),
                             (0, "02:00:00:00:00:04"): ()}}


def test_status_render_and_staleness():
    data = {"host": "h1", "vtep": "10.77.0.1", "running": True, "updated": time.time(),
            "interval": 0.3, "etcd": {"endpoint": "http://e:2379", "connected": False,
                                      "last_error": "refused", "backoff_seconds": 1.6},
            "vswitchd": {"address": "/run/v.sock", "connected": True},
            "members": {"h1": "10.77.0.1"}, "vnis": {"100": {"h1": "10.77.0.1"}},
            "programmed": [{"bridge": "br0", "port": "vx0", "vni": 100, "remotes": [],
                            "fdb": []}]}
    out = render(data)
    assert "connected no" in out and "last error: refused  (retry in 1.6 s)" in out
    assert "STALE" not in out
    assert "not updated" in staleness(data, now=data["updated"] + 60)
    assert "STALE" in render({**data, "running": False})


def test_a_running_agents_status_file_exists_before_its_first_step_ends(tmp_path):
    """`vswcluster status` right after `vswcluster run` (as a test or an operator does) must
    find the file even while the first etcd request is still waiting on an unanswering
    member; it says "not connected" until the step ends."""
    release = threading.Event()

    class SlowStore(Store):
        def get_prefix(self, prefix: str):
            release.wait(10)
            return {}, 1

        def watch(self, prefix: str, start_revision: int):
            raise StoreUnavailable("the test is over")

    path = tmp_path / "agent.json"
    agent = Agent(host="h1", store=SlowStore("http://127.0.0.1:1"), switch=FakeSwitch(),
                  status_file=str(path))
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        st = read_status(str(path))
        assert st["running"] and not st["etcd"]["connected"] and st["host"] == "h1"
    finally:
        agent.stop()
        release.set()
        t.join(10)
