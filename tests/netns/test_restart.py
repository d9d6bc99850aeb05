"""Hitless restart, upgrade, reconciliation while running, cleanup, store damage.

Each test runs a real daemon in a namespace of its own (tests/netns/harness.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyroute2 import NetNS

from tests.netns.harness import SYSTEM_PYTHON, VSWITCHD
from vswitchd.datapath import tcx
from vswitchd.netlink import netns

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUBNET = "10.78.0"
GATEWAY = f"{SUBNET}.1"


def build(host) -> tuple[str, str]:
    """br0 (ebpf) with two containers, a TAP, a static FDB entry and two rules."""
    host.vswctl("add-br", "br0", "--datapath", "ebpf", "--ip", f"{GATEWAY}/24")
    for name, last in (("c1", 11), ("c2", 12)):
        host.vswctl("add-port", "br0", name, "--netns", host.name(name),
                    "--ip", f"{SUBNET}.{last}/24", "--mac", f"02:78:00:00:00:{last:02x}")
    host.vswctl("add-port", "br0", "vm0", "--type", "tap")
    host.vswctl("add-fdb", "br0", "02:78:00:00:00:99", "vm0")
    host.vswctl("add-flow", "br0", "priority=300,tcp,tp_dst=9999,actions=drop")
    host.vswctl("add-flow", "br0", "priority=200,in_port=c1,udp,tp_dst=9998,actions=drop")
    return host.name("c1"), host.name("c2")


def desired_view(host) -> dict:
    """What the daemon says it is configured with (no counters, ages or ifindexes)."""
    ports = [{k: v for k, v in p.items() if k not in ("ifindex",)}
             for p in host.json("list-ports", "br0")]
    return {
        "bridges": [b["name"] for b in host.json("list-br")],
        "ports": ports,
        # (the bridge's own entry is left out: its MAC follows its ports')
        "fdb": sorted((e["mac"], e["port"]) for e in host.json("dump-fdb", "br0")
                      if e["static"] and e["port"] != "br0"),
        "flows": sorted((f["priority"], f["match"], f["actions"])
                        for f in host.json("dump-flows", "br0")),
    }


def start_stream(host, src: str, dst_ip: str, dst: str, rate: int = 1000):
    recv = host.spawn_in(dst, SYSTEM_PYTHON, str(HERE / "udpstream.py"), "recv", "7788")
    send = host.spawn_in(src, SYSTEM_PYTHON, str(HERE / "udpstream.py"), "send", dst_ip,
                         "7788", str(rate))
    return send, recv


def finish_stream(send, recv) -> dict:
    send.send_signal(signal.SIGTERM)
    json.loads(send.stdout.readline())
    result = json.loads(recv.stdout.readline())
    return result


def prog_tags(host, names) -> dict[str, tuple]:
    """(prog id, tag) of vswitchd's program at ingress of each port: its TCX link's, or its
    cls_bpf filter's (read with tc -j) on kernels without TCX."""
    out = {}
    for name in names:
        with netns.entered(host.ns):
            ifindex = socket.if_nametoindex(name)
            progs = tcx.programs(ifindex, "ingress")
        for prog_id, prog_name, tag in progs:
            if prog_name == "tc_ingress":
                out[name] = (prog_id, tag)
        res = host.run_in(host.ns, "tc", "-j", "filter", "show", "dev", name, "ingress")
        for flt in json.loads(res.stdout or "[]"):
            opts = flt.get("options", {})
            if flt.get("kind") == "bpf" and opts.get("bpf_name", "").startswith("tc_ingress"):
                assert name not in out, f"{name}: both a TCX link and a filter"
                out[name] = (opts["prog"]["id"], opts["prog"]["tag"])
    return out


def wait_for(predicate, timeout: float, step: float = 0.02):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return time.monotonic() - t0
        time.sleep(step)
    return None


# ---- hitless restart ----------------------------------------------------------------------------

def test_sigkill_restarts_lose_nothing_and_keep_everything(host):
    host.start()
    c1, c2 = build(host)
    assert host.ping(c1, f"{SUBNET}.12")
    before = desired_view(host)
    send, recv = start_stream(host, c1, f"{SUBNET}.12", c2, rate=1000)
    added: list[str] = []
    stop = threading.Event()

    def add_rules() -> None:  # rules keep being added while the daemon is killed
        n = 0
        while not stop.is_set():
            n += 1
            res = host.vswctl("--timeout", "2", "add-flow", "br0",
                              f"priority=100,tcp,tp_dst={20000 + n},actions=drop", check=False)
            if res.returncode == 0:
                added.append(f"tp_dst={20000 + n}")
            time.sleep(0.05)

    adder = threading.Thread(target=add_rules)
    adder.start()
    try:
        time.sleep(1)
        for _ in range(4):
            host.stop(signal.SIGKILL)
            time.sleep(0.5)  # down: the datapath forwards alone
            host.start()
            time.sleep(0.5)
    finally:
        stop.set()
        adder.join()
    time.sleep(0.5)
    result = finish_stream(send, recv)
    assert result["sent"] > 2000, result
    assert result["lost"] == 0, result
    assert result["reordered"] == 0, result
    assert result["duplicates"] == 0, result
    after = desired_view(host)
    assert after["bridges"] == before["bridges"]
    assert after["ports"] == before["ports"]
    assert after["fdb"] == before["fdb"]
    assert set(before["flows"]) <= set(after["flows"])
    dumped = " ".join(f["match"] for f in host.json("dump-flows", "br0"))
    missing = [r for r in added if r not in dumped]
    assert added and not missing, f"acknowledged rules lost: {missing}"
    assert host.ping(c2, f"{SUBNET}.11")


def test_upgrade_replaces_the_program_everywhere_without_a_gap(host, tmp_path, monkeypatch):
    host.start()
    c1, c2 = build(host)
    assert host.ping(c1, f"{SUBNET}.12")
    learned = {(e["mac"], e["port"]) for e in host.json("dump-fdb", "br0")
               if not e["static"] and e["port"] != "br0"}
    assert ("02:78:00:00:00:0b", "c1") in learned
    old = prog_tags(host, ["c1", "c2", "vm0"])
    assert len(old) == 3

    new_bpf = tmp_path / "bpf"
    shutil.copytree(REPO / "bpf", new_bpf)
    src = (new_bpf / "datapath.c").read_text()
    marker = "\treturn pipeline(skb, 1);"
    assert marker in src
    # A changed build: one more (never taken) branch, so the instructions and the tag differ.
    (new_bpf / "datapath.c").write_text(src.replace(
        marker, "\tif (skb->len == 0x7fffffff)\n\t\treturn 2;\n" + marker, 1))

    send, recv = start_stream(host, c1, f"{SUBNET}.12", c2, rate=1000)
    time.sleep(1)
    host.stop()
    monkeypatch.setenv("VSWITCHD_BPF_DIR", str(new_bpf))
    host.start()
    time.sleep(1)
    result = finish_stream(send, recv)
    new = prog_tags(host, ["c1", "c2", "vm0"])
    assert set(new) == set(old)
    for name in old:
        assert new[name][0] != old[name][0], "program not replaced"
        assert new[name][1] != old[name][1], "same build still attached"
    assert result["lost"] == 0 and result["reordered"] == 0, result
    after = {(e["mac"], e["port"]) for e in host.json("dump-fdb", "br0") if not e["static"]}
    assert len(learned) >= 2
    assert learned <= after, "learned FDB entries lost by the upgrade"
    assert ("02:78:00:00:00:99", "vm0") in {
        (e["mac"], e["port"]) for e in host.json("dump-fdb", "br0") if e["static"]}
    assert host.ping(c2, f"{SUBNET}.11")


# ---- reconciliation while running ---------------------------------------------------------------

def _port(host, name):
    return next((p for p in host.json("list-ports", "br0") if p["name"] == name), None)


def test_external_deletions_are_noticed_within_a_second(host):
    host.start()
    c1, c2 = build(host)
    own = host.name("own")
    host.run_in(host.ns, "ip", "netns", "add", own)
    host.vswctl("add-port", "br0", "c3", "--netns", own, "--ip", f"{SUBNET}.13/24")
    host.run_in(host.ns, "ip", "link", "add", "sys0", "type", "veth", "peer", "name", "sys0p")
    host.vswctl("add-port", "br0", "sys0", "--type", "system")
    host.run_in(host.ns, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    unrelated = {"other0", "other1"}

    # A TAP deleted behind the daemon's back comes back (new ifindex) and forwards again.
    old = _port(host, "vm0")["ifindex"]
    host.run_in(host.ns, "ip", "link", "del", "vm0")
    took = wait_for(lambda: (_port(host, "vm0") or {}).get("ifindex") not in (None, 0, old), 1.0)
    assert took is not None, host.log()[-2000:]

    # A veth whose (vswitchd-created) namespace still exists is re-created, traffic resumes.
    host.run_in(host.ns, "ip", "link", "del", "c2")
    took = wait_for(lambda: "c2" in host.links() and _port(host, "c2")["state"] == "up", 1.0)
    assert took is not None, host.log()[-2000:]
    assert host.ping(c1, f"{SUBNET}.12")

    # The container's own namespace goes: its port is removed from the desired state.
    host.run_in(host.ns, "ip", "netns", "del", own)
    took = wait_for(lambda: _port(host, "c3") is None, 1.0)
    assert took is not None, host.log()[-2000:]
    assert "port c3 removed from bridge br0: its network namespace" in host.log()

    # A system interface that goes cannot be re-created: shown missing, with the reason.
    host.run_in(host.ns, "ip", "link", "del", "sys0")
    took = wait_for(lambda: (_port(host, "sys0") or {}).get("state", "").startswith("missing"),
                    1.0)
    assert took is not None, host.log()[-2000:]
    assert "sys0" in host.vswctl("show").stdout
    assert "missing: system interface sys0 is not present" in host.vswctl("list-ports",
                                                                          "br0").stdout

    assert unrelated <= host.links()  # not ours: untouched
    assert host.ping(c1, f"{SUBNET}.12")


# ---- shutdown and cleanup ---------------------------------------------------------------------

def nft_tables(host) -> str:
    res = host.run_in(host.ns, "nft", "list", "tables")
    assert res.returncode == 0, res.stderr  # a missing nft must not pass as "no tables"
    return res.stdout


def assert_nothing_left(host, unrelated: set[str]) -> None:
    assert host.links() == {"lo"} | unrelated, host.links()
    assert host.namespaces() == {host.name("keep")}
    assert not Path(host.bpffs_dir).exists()
    assert "vswitchd" not in nft_tables(host)


def test_shutdown_keeps_forwarding_and_cleanup_removes_everything(host):
    host.start()
    c1, _ = build(host)
    keep = host.name("keep")  # a namespace vswitchd did not create: it stays
    host.run_in(host.ns, "ip", "netns", "add", keep)
    host.vswctl("add-port", "br0", "k1", "--netns", keep)
    host.vswctl("add-br", "brk", "--datapath", "kernel")
    host.vswctl("add-port", "brk", "t9", "--type", "tap")
    host.run_in(host.ns, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    unrelated = {"other0", "other1"}

    host.vswctl("shutdown")
    assert host.proc.wait(15) == 0
    assert host.ping(c1, f"{SUBNET}.12")  # the datapath still forwards
    assert {"br0", "c1", "c2", "vm0", "brk", "t9"} <= host.links()

    host.start()
    assert host.ping(c1, f"{SUBNET}.12")
    host.vswctl("shutdown", "--cleanup")
    assert host.proc.wait(30) == 0
    assert_nothing_left(host, unrelated)
    assert "stopped and cleaned up" in host.log()

    # The desired state was kept: a start re-creates it, then `vswitchd --cleanup` removes it.
    host.start()
    assert host.ping(c1, f"{SUBNET}.12")
    host.stop(signal.SIGKILL)
    res = host.run_in(host.ns, VSWITCHD, "--state-dir", host.state_dir, "--bpffs-dir",
                      host.bpffs_dir, "--socket", host.socket, "--cleanup", timeout=60)
    assert res.returncode == 0, res.stderr
    assert_nothing_left(host, unrelated)


# ---- store damage -------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_store_stops_the_daemon_and_is_kept(host, damage):
    host.start()
    build(host)
    host.stop()
    db = Path(host.state_dir) / "state.db"
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    data = db.read_bytes()
    bad = b"\x13garbage" * 512 if damage == "garbage" else data[: len(data) // 2]
    db.write_bytes(bad)
    with pytest.raises(RuntimeError, match=f"{db}.*(damaged|not a database)"):
        host.start(timeout=30)
    assert host.proc.returncode == 1
    assert db.read_bytes() == bad
    assert "br0" in host.links()  # and the running datapath was not touched


# ---- eight concurrent clients -------------------------------------------------------------------

def _client(socket_path: str, worker: int, errors: list) -> None:
    import grpc

    from vswapi import switch_pb2 as pb
    from vswapi.client import connect

    with connect(socket_path=socket_path) as c:
        ports: list[str] = []
        macs: list[str] = []
        for i in range(200):
            op = i % 5
            try:
                if op == 0 or not ports:
                    name = f"w{worker}p{i}"
                    c.CreatePort(pb.CreatePortRequest(port=pb.Port(
                        bridge="br0", name=name, type=pb.PORT_TYPE_TAP)), timeout=30)
                    ports.append(name)
                elif op == 1 and len(ports) > 2:
                    c.DeletePort(pb.DeletePortRequest(bridge="br0", name=ports.pop(0)),
                                 timeout=30)
                elif op == 2:
                    mac = f"02:{worker:02x}:00:00:{i >> 8:02x}:{i & 255:02x}"
                    c.CreateFdbEntry(pb.CreateFdbEntryRequest(bridge="br0", entry=pb.FdbEntry(
                        mac=mac, port=ports[-1])), timeout=30)
                    macs.append(mac)
                elif op == 3 and len(macs) > 3:
                    c.DeleteFdbEntry(pb.DeleteFdbEntryRequest(bridge="br0", mac=macs.pop(0),
                                                             if_exists=True), timeout=30)
                else:
                    from vswapi.flowspec import parse_flow

                    flow = parse_flow(f"priority={worker + 1},tcp,tp_dst={i + 1},"
                                      f"actions=drop")
                    c.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=[flow]), timeout=30)
                    if i % 3 == 0:
                        c.DeleteFlows(pb.DeleteFlowsRequest(
                            bridge="br0", match=flow.match, strict=True,
                            priority=worker + 1), timeout=30)
            except grpc.RpcError as exc:
                errors.append(f"worker {worker} op {i}: {exc.code()} {exc.details()}")


def _flow_key(stored: str) -> tuple[int, str]:
    tokens = stored.split(" ")
    return int(tokens[1]), next(t for t in tokens if t.startswith("tp_dst="))


def _store_contents(state_dir: str) -> dict:
    db = sqlite3.connect(f"file:{state_dir}/state.db?mode=ro", uri=True)
    return {
        "ports": sorted(r[0] for r in db.execute("SELECT name FROM ports WHERE bridge='br0'")),
        "fdb": sorted(r[0] for r in db.execute("SELECT mac FROM fdb WHERE bridge='br0'")),
        "flows": sorted(_flow_key(r[0]) for r in db.execute(
            "SELECT rule FROM flows WHERE bridge='br0'")),
    }


def test_eight_concurrent_clients_daemon_store_and_kernel_agree(host):
    host.start()
    host.vswctl("add-br", "br0", "--datapath", "ebpf")
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(host.socket, w, errors)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]

    ports = host.json("list-ports", "br0")
    daemon = {
        "ports": sorted(p["name"] for p in ports),
        "fdb": sorted(e["mac"] for e in host.json("dump-fdb", "br0") if e["static"]
                      and e["port"] != "br0"),
        "flows": sorted((f["priority"], f["match"].split(",")[-1])
                        for f in host.json("dump-flows", "br0")),
    }
    store = _store_contents(host.state_dir)
    assert daemon == store
    assert len(daemon["ports"]) > 8 and daemon["fdb"] and daemon["flows"]
    # The kernel: every port exists, is enslaved to br0 and runs the program; nothing else.
    with NetNS(host.ns) as ipr:
        br = ipr.link_lookup(ifname="br0")[0]
        enslaved = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                          if link.get_attr("IFLA_MASTER") == br)
    assert enslaved == daemon["ports"]
    assert set(prog_tags(host, daemon["ports"])) == set(daemon["ports"])
    assert host.pinned_entries()["ports"] == len(daemon["ports"]) + 1
    assert all(p["state"] == "up" or p["state"] == "down" for p in ports)
    # and a restart reads back the same
    host.stop(signal.SIGKILL)
    host.start()
    assert sorted(p["name"] for p in host.json("list-ports", "br0")) == daemon["ports"]
    assert sorted((f["priority"], f["match"].split(",")[-1])
                  for f in host.json("dump-flows", "br0")) == daemon["flows"]


# ---- configuration ------------------------------------------------------------------------------

CONFIG = """\
log_level: debug
bridges:
  cbr:
    datapath: ebpf
    ip: [10.79.0.1/24]
    ports:
      ca: {{type: veth, netns: {ns_a}, ip: [10.79.0.11/24]}}
      ta: {{type: tap}}
    fdb:
      - {{mac: "02:79:00:00:00:99", port: ta}}
    flows:
      - "priority=300,tcp,tp_dst=9999,actions=drop"
{extra}"""


def test_config_declares_state_and_sighup_applies_only_the_difference(host, tmp_path):
    cfg = tmp_path / "vswitchd.yaml"
    ns_a, ns_b = host.name("ca"), host.name("cb")
    cfg.write_text(CONFIG.format(ns_a=ns_a, extra=""))
    res = subprocess.run([VSWITCHD, "--config", str(cfg), "--check-config"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    host.start("--config", str(cfg))
    assert [p["name"] for p in host.json("list-ports", "cbr")] == ["ca", "ta"]
    host.vswctl("add-port", "cbr", "api0", "--type", "tap")  # made over the API: kept
    flows_before = host.json("dump-flows", "cbr")
    ifindex_ca = {p["name"]: p["ifindex"] for p in host.json("list-ports", "cbr")}["ca"]

    # add a port, remove the tap, add a flow
    cfg.write_text(CONFIG.format(ns_a=ns_a, extra="")
                   .replace("      ta: {type: tap}\n",
                            f"      cb: {{type: veth, netns: {ns_b}, ip: [10.79.0.12/24]}}\n")
                   .replace('port: ta}', 'port: cb}')
                   .replace('      - "priority=300', '      - "priority=5,udp,actions=normal"\n'
                                                     '      - "priority=300'))
    host.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: [p["name"] for p in host.json("list-ports", "cbr")]
                    == ["api0", "ca", "cb"], 5.0) is not None, host.log()[-3000:]
    ports = {p["name"]: p["ifindex"] for p in host.json("list-ports", "cbr")}
    assert ports["ca"] == ifindex_ca  # unchanged port: untouched
    flows = {f["priority"]: f for f in host.json("dump-flows", "cbr")}
    assert set(flows) == {5, 300}
    # the unchanged rule was kept (installed before the reload), not re-added
    assert flows[300]["duration"] >= flows_before[0]["duration"] > 0
    assert flows[300]["duration"] > flows[5]["duration"]
    assert host.ping(ns_a, "10.79.0.12")

    # a bad file: rejected with FILE:LINE, nothing changes
    good = cfg.read_text()
    cfg.write_text(good.replace("type: veth, netns", "type: vxlan, netns", 1))
    host.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reload refused" in host.log(), 5.0) is not None
    assert f"{cfg}:7" in host.log()
    assert [p["name"] for p in host.json("list-ports", "cbr")] == ["api0", "ca", "cb"]
    res = subprocess.run([VSWITCHD, "--config", str(cfg), "--check-config"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and f"{cfg}:7" in res.stderr, res.stderr

    # a restart with a changed file applies the difference made while it was down
    host.stop()
    cfg.write_text(good.replace("      cb: {type: veth", "      cc: {type: tap}\n"
                                "      cb: {type: veth"))
    host.start("--config", str(cfg))
    assert [p["name"] for p in host.json("list-ports", "cbr")] == ["api0", "ca", "cb", "cc"]


# ---- systemd ------------------------------------------------------------------------------------

def test_sd_notify_ready_and_stopping(host, tmp_path, monkeypatch):
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        host.start()
        assert sock.recv(256) == b"READY=1"  # sent once the socket listens
        assert host.vswctl("status").returncode == 0
        host.proc.send_signal(signal.SIGHUP)
        assert sock.recv(256) == b"RELOADING=1"
        assert sock.recv(256) == b"READY=1"
        host.stop()
        assert sock.recv(256) == b"STOPPING=1"
    finally:
        sock.close()
