"""Tracing with the real daemon: trace (dry runs of the real program), watch (live events while
containers ping), drop counters per reason."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time

import pytest

from tests.netns.harness import HERE, SYSTEM_PYTHON, VSWCTL, VSWITCHD
from vswitchd.trace import frames

pytestmark = pytest.mark.root

SUBNET = "10.79.0"
PORTS = {"c1": 11, "c2": 12, "m0": 13}


def mac_of(last: int) -> str:
    return f"02:79:00:00:00:{last:02x}"


def ip_of(name: str) -> str:
    return f"{SUBNET}.{PORTS[name]}"


@pytest.fixture
def br(host):
    host.containers_bridge(79)
    assert host.ping(host.name("c1"), ip_of("c2"))  # both MACs learned
    return host


def packet(dst: str = "c2", **extra: str) -> str:
    fields = {"in_port": "c1", "dl_src": mac_of(11),
              "dl_dst": mac_of(PORTS[dst]) if dst in PORTS else dst,
              "nw_src": ip_of("c1"), "nw_dst": f"{SUBNET}.12"}
    fields.update(extra)
    text = ",".join(f"{k}={v}" for k, v in fields.items())
    return text.replace("nw_src=", "udp,nw_src=", 1) + ",tp_dst=53"


def trace(h, text: str, *args: str) -> dict:
    return h.json("trace", "br0", text, *args)


def stage(result: dict, name: str) -> dict:
    return next(s for s in result["stages"] if s["name"] == name)


def fdb_macs(h) -> set[str]:
    return {e["mac"] for e in h.json("dump-fdb", "br0")}


def flow_packets(h) -> dict[str, int]:
    return {f["cookie"]: f["n_packets"] for f in h.json("dump-flows", "br0")}


def port_stats(h, port: str) -> dict:
    return h.json("port-stats", "br0", port)[0]


# ---- trace --------------------------------------------------------------------------------


def test_trace_cases_and_no_side_effects(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=200,cookie=0x42,in_port=c1,udp,tp_dst=8,actions=drop")
    h.vswctl("add-flow", "br0", "priority=200,cookie=0x43,in_port=c1,udp,tp_dst=9,"
             "actions=output:m0")
    c1_before = port_stats(h, "c1")

    # known unicast
    r = trace(h, packet("c2"))
    assert (r["verdict"], r["outputs"], r["drop_reason"]) == ("forward", ["c2"], "")
    assert [s["name"] for s in r["stages"]] == ["packet", "flow table", "vlan", "l2", "verdict"]
    assert stage(r, "packet")["details"]["fields"] == (
        f"in_port=c1,dl_src={mac_of(11)},dl_dst={mac_of(12)},udp,nw_src={ip_of('c1')},"
        f"nw_dst={ip_of('c2')},tp_src=1024,tp_dst=53")
    assert stage(r, "flow table")["details"]["table_miss"] is True
    l2 = stage(r, "l2")["details"]
    assert (l2["fdb_hit"], l2["port"]) == (True, "c2")

    # unknown unicast from a source the switch has never seen: flooded, and not learned
    r = trace(h, packet("02:79:00:00:00:99", dl_src="02:79:00:00:00:77"))
    assert r["verdict"] == "flood"
    assert {"c2", "m0"} <= set(r["outputs"]) and "c1" not in r["outputs"]
    l2 = stage(r, "l2")["details"]
    assert l2["fdb_hit"] is False and set(l2["flood"]) == set(r["outputs"])

    # broadcast
    r = trace(h, packet("ff:ff:ff:ff:ff:ff"))
    assert r["verdict"] == "flood" and {"c2", "m0"} <= set(r["outputs"])
    assert stage(r, "l2")["details"]["multicast"] is True

    # a flow drop and a flow output name their rule
    r = trace(h, packet("c2").replace("tp_dst=53", "tp_dst=8"))
    assert (r["verdict"], r["drop_reason"]) == ("drop", "flow-drop")
    ft = stage(r, "flow table")["details"]
    assert (ft["table_miss"], ft["priority"], ft["cookie"], ft["actions"]) == (
        False, 200, 0x42, "drop")
    r = trace(h, packet("c2").replace("tp_dst=53", "tp_dst=9"))
    assert (r["verdict"], r["outputs"]) == ("forward", ["m0"])
    assert stage(r, "flow table")["details"]["cookie"] == 0x43

    # a truncated frame (cut inside the UDP header): the parser refuses it
    r = trace(h, packet("c2"), "--truncate", "40")
    assert (r["verdict"], r["drop_reason"]) == ("drop", "malformed")
    assert stage(r, "packet")["details"]["truncated"] is True
    assert [s["name"] for s in r["stages"]] == ["packet", "verdict"]

    # text output, ofproto/trace-like
    out = h.vswctl("trace", "br0", packet("c2")).stdout.splitlines()
    assert out[0].startswith("Flow: in_port=c1,")
    assert out[2:4] == ['bridge("br0")', "-------------"]
    assert out[4].startswith(" 1. packet: ") and out[-1] == "Datapath actions: forward to c2"

    # no counter moved, nothing was learned: 30 more dry runs of a flow-dropped packet from an
    # unknown source leave the rule's counter, the drop counters and the FDB alone (the
    # containers' own background traffic, IPv6 ND and the like, may move rx counters a little)
    for _ in range(30):
        r = trace(h, packet("c2", dl_src="02:79:00:00:00:78").replace("tp_dst=53", "tp_dst=8"))
        assert r["drop_reason"] == "flow-drop"
    c1_after = port_stats(h, "c1")
    assert flow_packets(h) == {"0x42": 0, "0x43": 0}
    assert c1_after["drops_by_reason"] == c1_before["drops_by_reason"] == {}
    assert c1_after["rx_packets"] - c1_before["rx_packets"] < 10
    assert not {"02:79:00:00:00:77", "02:79:00:00:00:78"} & fdb_macs(h)


def test_trace_vlan_mismatch_and_output_tags(br):
    h = br
    # An unconfigured port carries every VLAN: a tagged frame is switched in its VLAN ...
    r = trace(h, packet("c2", dl_vlan="20"))
    assert stage(r, "vlan")["details"]["tagged"] is True
    assert stage(r, "vlan")["details"]["vlan"] == 20
    # ... an access port refuses it.
    h.vswctl("add-port", "br0", "a1", "--netns", h.name("a1"), "--vlan", "10")
    r = trace(h, packet("c2", in_port="a1", dl_vlan="20"))
    assert (r["verdict"], r["drop_reason"]) == ("drop", "vlan-mismatch")
    v = stage(r, "vlan")["details"]
    assert (v["accepted"], v["port_mode"], v["frame_vid"]) == (False, "access:10", 20)
    # Each output says how the frame leaves it: a broadcast from the access port goes
    # untagged to the other access port, tagged 10 to the trunk, the unconfigured ports and
    # the host; the trunk's native VLAN 10 back to a1 leaves untagged.
    h.vswctl("add-port", "br0", "a2", "--netns", h.name("a2"), "--vlan", "10")
    h.vswctl("add-port", "br0", "t1", "--netns", h.name("t1"), "--trunks", "10,20")
    r = trace(h, packet("ff:ff:ff:ff:ff:ff", in_port="a1", dl_src="02:79:00:00:00:a1"))
    want = {"a2": None, "t1": 10, "c2": 10, "m0": 10, "c1": 10, "br0": 10}
    tags = {o["port"]: o["vlan"] for o in r["output_tags"]}
    assert tags == want and [o["port"] for o in r["output_tags"]] == r["outputs"]
    assert all(o["tagged"] is (o["vlan"] is not None) for o in r["output_tags"])
    assert stage(r, "verdict")["details"]["output_tags"] == r["output_tags"]
    assert {o["port"]: o["vlan"] for o in stage(r, "l2")["details"]["output_tags"]} == want
    assert "a2 (untagged)" in stage(r, "l2")["summary"]
    out = h.vswctl("trace", "br0", packet("ff:ff:ff:ff:ff:ff", in_port="a1",
                                          dl_src="02:79:00:00:00:a1")).stdout
    targets = out.splitlines()[-1].removeprefix("Datapath actions: flood to ").split(",")
    assert {"a2", "t1(vid=10)", "br0(vid=10)"} <= set(targets), targets
    r = trace(h, packet("ff:ff:ff:ff:ff:ff", in_port="t1", dl_vlan="20"))
    assert {o["port"]: o["vlan"] for o in r["output_tags"]} == {
        "c1": 20, "c2": 20, "m0": 20, "br0": 20}   # a tagged frame kept as it came


def test_trace_refusals(br):
    h = br
    res = h.vswctl("trace", "br0", "in_port=c1,ip,nw_dst=10.79.0.0/24", check=False)
    assert res.returncode == 2 and "INVALID_ARGUMENT" in res.stderr and "nw_dst" in res.stderr
    # BPF_PROG_TEST_RUN refuses an IPv4 frame without its whole IP header
    res = h.vswctl("trace", "br0", packet("c2"), "--truncate", "20", check=False)
    assert res.returncode == 2 and "INVALID_ARGUMENT: truncate 20" in res.stderr, res.stderr
    res = h.vswctl("trace", "br0", "udp,tp_dst=53", check=False)
    assert res.returncode == 2 and "in_port" in res.stderr
    h.vswctl("add-br", "kbr", "--datapath", "kernel")
    res = h.vswctl("trace", "kbr", "in_port=kbr", check=False)
    assert res.returncode == 2 and "FAILED_PRECONDITION" in res.stderr
    assert "kernel datapath" in res.stderr


# ---- watch --------------------------------------------------------------------------------


def started(h) -> int:
    return h.log().count(": started (slot")


def ended(h) -> int:
    return h.log().count(": ended (slot")


def wait_until(cond, timeout: float = 10.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def watch(h, *args: str) -> subprocess.Popen:
    """`vswctl -j watch br0 ARGS` in the background, returned once the daemon has its watcher."""
    n = started(h)
    proc = subprocess.Popen([VSWCTL, "--socket", h.socket, "-j", "watch", "br0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    h._helpers.append(proc)  # killed by cleanup if the test fails
    wait_until(lambda: started(h) > n or proc.poll() is not None, what="the watcher")
    assert proc.poll() is None, proc.communicate()
    return proc


def events(proc: subprocess.Popen, timeout: float = 20) -> list[dict]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_watch_while_containers_ping(br):
    h = br
    proc = watch(h, "--match", "icmp", "-n", "4")
    assert h.ping(h.name("c1"), ip_of("c2"), count=2)
    evs = events(proc)
    assert len(evs) == 4
    for e in evs:
        assert e["bridge"] == "br0" and e["verdict"] == "forward" and e["table_miss"]
        assert e["nw_proto"] == 1 and e["length"] >= 98
        if e["in_port"] == "c1":
            assert (e["dl_src"], e["dl_dst"], e["ip_src"], e["ip_dst"], e["outputs"]) == (
                mac_of(11), mac_of(12), ip_of("c1"), ip_of("c2"), ["c2"])
        else:
            assert (e["in_port"], e["dl_src"], e["ip_src"], e["ip_dst"], e["outputs"]) == (
                "c2", mac_of(12), ip_of("c2"), ip_of("c1"), ["c1"])
    assert {e["in_port"] for e in evs} == {"c1", "c2"}
    assert abs(evs[0]["time"] - time.time()) < 30
    wait_until(lambda: ended(h) >= 1, what="the watcher's removal")


def test_watch_filters_port_and_match(br):
    h = br
    by_port = watch(h, "--port", "c2", "--match", "icmp", "-n", "2")
    by_match = watch(h, "--match", f"icmp,nw_dst={ip_of('m0')}", "-n", "1")
    assert h.ping(h.name("c1"), ip_of("c2"), count=2)
    assert h.ping(h.name("c1"), ip_of("m0"), count=1)
    evs = events(by_port)
    assert [(e["in_port"], e["ip_src"]) for e in evs] == [("c2", ip_of("c2"))] * 2
    evs = events(by_match)
    assert [(e["in_port"], e["ip_dst"], e["outputs"]) for e in evs] == [
        ("c1", ip_of("m0"), ["m0"])]


def test_watch_drops_shows_a_flow_drop(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=200,cookie=0x42,in_port=c1,udp,tp_dst=8,actions=drop")
    proc = watch(h, "--drops", "-n", "1")
    assert h.ping(h.name("c1"), ip_of("c2"))   # forwarded: not shown
    assert not h.udp_ask(h.name("c1"), ip_of("c2"), 8)
    (e,) = events(proc)
    assert (e["in_port"], e["verdict"], e["drop_reason"], e["cookie"], e["tp_dst"]) == (
        "c1", "drop", "flow-drop", "0x42", 8)


def test_watcher_that_leaves_turns_emission_off(br):
    h = br
    a = watch(h)
    b = watch(h, "--port", "c2")
    assert h.ping(h.name("c1"), ip_of("c2"), count=1)
    # The first watcher sees the ping from c1 before it leaves (events print as they arrive).
    seen_c1, deadline = False, time.monotonic() + 10
    while not seen_c1 and time.monotonic() < deadline:
        if select.select([a.stdout], [], [], 0.5)[0]:
            line = a.stdout.readline()
            seen_c1 = bool(line) and json.loads(line).get("in_port") == "c1"
    assert seen_c1, "no event from c1 reached the first watcher"
    a.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
    assert a.wait(10) == 0
    wait_until(lambda: ended(h) == 1, what="the first watcher's removal")
    b.kill()  # a client that dies without a goodbye
    b.wait(10)
    wait_until(lambda: ended(h) == 2, what="the second watcher's removal")
    last = [line for line in h.log().splitlines() if ": ended (slot" in line][-1]
    assert last.endswith("; 0 watching)"), last  # every watcher is gone from the datapath
    assert b.returncode is not None


def test_the_ninth_watcher_is_refused_with_the_limit_named(br):
    h = br
    watchers = [watch(h) for _ in range(8)]
    res = h.vswctl("watch", "br0", "-n", "1", check=False)
    assert (res.returncode, res.stdout) == (2, ""), res
    assert res.stderr.startswith("vswctl: RESOURCE_EXHAUSTED: 8 watch streams are open"), \
        res.stderr
    assert "watch.max_watchers" in res.stderr and "cannot reach" not in res.stderr
    for proc in watchers:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    wait_until(lambda: ended(h) == 8, what="the watchers' removal")


def test_the_watcher_limit_comes_from_the_configuration(host, tmp_path):
    h = host
    config = tmp_path / "vswitchd.yaml"
    config.write_text("watch:\n  max_watchers: 1\n")
    h.start("--config", str(config))
    h.vswctl("add-br", "br0")
    first = watch(h)
    res = h.vswctl("watch", "br0", check=False)
    assert res.returncode == 2 and "RESOURCE_EXHAUSTED: 1 watch streams are open" in res.stderr
    first.send_signal(signal.SIGINT)
    assert first.wait(10) == 0
    wait_until(lambda: ended(h) == 1, what="the watcher's removal")
    second = watch(h)  # its slot is free again
    second.send_signal(signal.SIGINT)
    assert second.wait(10) == 0
    config.write_text("watch:\n  max_watchers: 9\n")
    res = subprocess.run([VSWITCHD, "--check-config", "--config", str(config)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert f"{config}:2: watch.max_watchers: 9 is not in 1..8" in res.stderr


# ---- drop counters --------------------------------------------------------------------------


def send(h, port: str, frame: bytes, count: int = 5) -> None:
    res = h.run_in(h.name(port), SYSTEM_PYTHON, str(HERE / "rawsend.py"), "eth0", frame.hex(),
                   str(count))
    assert res.returncode == 0, res.stderr


def drops(h) -> dict[tuple[str, str], int]:
    return {(d["port"], d["reason"]): d["count"] for d in h.json("drops", "br0")}


def test_drop_counters_per_reason(br):
    h = br
    h.vswctl("add-flow", "br0", "priority=200,in_port=c1,udp,tp_dst=8,actions=drop")
    h.vswctl("add-port", "br0", "a1", "--netns", h.name("a1"), "--vlan", "10")
    before = drops(h)
    udp = {"dl_type": 0x0800, "nw_proto": 17, "nw_src": ip_of("c1"), "nw_dst": ip_of("c2")}
    send(h, "c1", frames.build(frames.FrameSpec(dl_src=mac_of(11), dl_dst=mac_of(12),
                                                truncate=20, **udp)))
    send(h, "c1", frames.build(frames.FrameSpec(dl_src="01:00:5e:00:00:01", dl_dst=mac_of(12),
                                                **udp)))
    send(h, "c1", frames.build(frames.FrameSpec(dl_src=mac_of(11), dl_dst=mac_of(11), **udp)))
    send(h, "c1", frames.build(frames.FrameSpec(dl_src=mac_of(11), dl_dst=mac_of(12),
                                                tp_dst=8, **udp)))
    send(h, "a1", frames.build(frames.FrameSpec(dl_src="02:79:00:00:00:a1", dl_dst=mac_of(12),
                                                dl_vlan=20, **udp)))
    after = drops(h)
    for port, reason in (("c1", "malformed"), ("c1", "invalid-src-mac"), ("c1", "same-port"),
                         ("c1", "flow-drop"), ("a1", "vlan-mismatch")):
        assert after.get((port, reason), 0) >= before.get((port, reason), 0) + 5, (reason, after)
    table = h.vswctl("drops", "br0").stdout.splitlines()
    assert table[0].split() == ["PORT", "REASON", "COUNT"]
    assert any(line.split()[:2] == ["c1", "malformed"] for line in table[1:])
