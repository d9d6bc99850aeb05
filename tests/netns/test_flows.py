"""Flow tables with real traffic: drop, mirror, counters, timeouts, persistence across restarts."""

from __future__ import annotations

import time

import pytest

from tests.netns.harness import HERE, SYSTEM_PYTHON

pytestmark = pytest.mark.root

SUBNET = "10.78.0"
PORTS = {"c1": 11, "c2": 12, "m0": 13}


def mac_of(last: int) -> str:
    return f"02:78:00:00:00:{last:02x}"


@pytest.fixture
def br(host):
    host.containers_bridge(78)
    return host


def flows(host):
    """dump-flows -j keyed by "priority=P,MATCH"."""
    return {",".join(filter(None, [f"priority={f['priority']}", f["match"]])): f
            for f in host.json("dump-flows", "br0")}


def test_drop_one_udp_port_others_pass(br):
    h, c1, c2_ip = br, br.name("c1"), f"{SUBNET}.12"
    assert h.udp_ask(c1, c2_ip, 8) and h.udp_ask(c1, c2_ip, 7)
    h.vswctl("add-flow", "br0", "priority=200,in_port=c1,udp,tp_dst=8,actions=drop")
    h.vswctl("add-flow", "br0", "priority=100,tcp,tp_dst=9999,actions=drop")
    assert not h.udp_ask(c1, c2_ip, 8)
    assert h.udp_ask(c1, c2_ip, 7)
    assert h.ping(c1, c2_ip)
    table = flows(h)
    dropped = table["priority=200,in_port=c1,udp,tp_dst=8"]
    assert dropped["actions"] == "drop"
    assert dropped["n_packets"] >= 5  # udpecho retries five times
    assert table["priority=100,tcp,tp_dst=9999"]["n_packets"] == 0
    drops = h.json("port-stats", "br0", "c1")[0]
    assert drops["drops_by_reason"].get("flow-drop", 0) >= 5

    # Strict delete of exactly that rule lets port 8 through again.
    h.vswctl("del-flows", "br0", "priority=200,in_port=c1,udp,tp_dst=8", "--strict")
    assert h.udp_ask(c1, c2_ip, 8)


def test_mirror_gets_copies(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=300,in_port=c1,actions=output:m0,normal")
    sniffer = h.spawn_in(h.name("m0"), SYSTEM_PYTHON, str(HERE / "sniff.py"), "eth0",
                         mac_of(PORTS["c1"]), "4")
    assert h.ping(h.name("c1"), f"{SUBNET}.12", count=5)
    out, _ = sniffer.communicate(timeout=15)
    mirrored = int(out.split()[-1])
    assert mirrored >= 5, out
    rule = flows(h)["priority=300,in_port=c1"]
    assert rule["actions"] == "output:m0,normal"
    assert rule["n_packets"] >= 5  # the pings (the sniffer also sees floods, so it counts more)


def test_timeouts_expire(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=10,hard_timeout=2,udp,tp_dst=4000,actions=drop")
    h.vswctl("add-flow", "br0", "priority=10,idle_timeout=2,udp,tp_dst=4001,actions=drop")
    h.vswctl("add-flow", "br0", "priority=10,udp,tp_dst=4002,actions=drop")
    assert len(flows(h)) == 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(flows(h)) > 1:
        time.sleep(0.5)
    assert list(flows(h)) == ["priority=10,udp,tp_dst=4002"]


def test_rules_survive_restart(br):
    h, c1, c2_ip = br, br.name("c1"), f"{SUBNET}.12"
    h.vswctl("add-flow", "br0", "priority=200,in_port=c1,udp,tp_dst=8,actions=drop")
    h.vswctl("add-flow", "br0", "cookie=0x7,priority=5,arp,actions=normal")
    assert not h.udp_ask(c1, c2_ip, 8)
    before = flows(h)
    h.stop()
    assert not h.udp_ask(c1, c2_ip, 8)  # the datapath keeps enforcing while the daemon is down
    h.start()
    after = flows(h)
    assert set(after) == set(before)
    key = "priority=200,in_port=c1,udp,tp_dst=8"
    assert after[key]["n_packets"] >= before[key]["n_packets"]  # counters survive too
    assert not h.udp_ask(c1, c2_ip, 8)
    assert h.udp_ask(c1, c2_ip, 7)
    h.vswctl("del-flows", "br0", "cookie=0x7/-1")
    assert list(flows(h)) == [key]
    h.vswctl("del-flows", "br0")
    assert flows(h) == {}
    assert h.udp_ask(c1, c2_ip, 8)


def rules(host):
    """The table without its counters and ages."""
    return {k: (f["cookie"], f["actions"]) for k, f in flows(host).items()}


def test_bad_flows_are_refused_and_change_nothing(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=100,udp,tp_dst=53,actions=drop")
    before = rules(h)
    for text, says in [
        ("priority=70000,actions=drop", "priority 70000 out of range 0..65535"),
        ("nw_dsst=10.0.0.1,actions=drop", "unknown field nw_dsst"),
    ]:
        res = h.vswctl("add-flow", "br0", text, check=False)
        assert res.returncode == 1 and says in res.stderr, res.stderr
    for text, says in [
        ("tp_dst=80,actions=drop", "tp_dst=80 needs tcp or udp"),
        ("in_port=nosuch,actions=drop", "nosuch"),
        ("priority=100,udp,nw_dst=10.0.0.0/8,actions=drop", "overlap"),
    ]:
        res = h.vswctl("add-flow", "br0", text, check=False)
        assert res.returncode == 2 and says in res.stderr, res.stderr
    assert rules(h) == before
    # A batch with one bad line changes nothing and names the line.
    batch = h.workdir / "flows.txt"
    batch.write_text("# two good, one bad\npriority=1,udp,tp_dst=1,actions=drop\n\n"
                     "priority=1,udp,tp_dst=2,actions=drop\ntp_dst=3,actions=drop\n")
    res = h.vswctl("add-flows", "br0", str(batch), check=False)
    assert res.returncode == 2 and f"{batch}:5:" in res.stderr, res.stderr
    assert rules(h) == before
