"""The core scenario end to end: real daemon, real gRPC, real veth/TAP/bridges, real traffic.

Three containers (veth into their own namespaces) and a VM (a process holding a TAP open) on
one bridge whose address is the host's; every pair talks by ping and UDP, in both datapaths.
"""

from __future__ import annotations

import itertools
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.netns.harness import HERE, SYSTEM_PYTHON, trafgen_udp_config

pytestmark = pytest.mark.root

SUBNET = "10.77.0"
GATEWAY = f"{SUBNET}.1"
CONTAINERS = {"c1": 11, "c2": 12, "c3": 13}
VM_MAC, VM_IP = "52:54:00:77:00:20", f"{SUBNET}.20"


def mac_of(last: int) -> str:
    return f"02:77:00:00:00:{last:02x}"


def build(host, datapath: str) -> None:
    host.vswctl("add-br", "br0", "--datapath", datapath, "--ip", f"{GATEWAY}/24")
    for name, last in CONTAINERS.items():
        host.vswctl("add-port", "br0", name, "--type", "veth", "--netns", host.name(name),
                    "--ip", f"{SUBNET}.{last}/24", "--mac", mac_of(last))
    host.vswctl("add-port", "br0", "vm0", "--type", "tap", "--owner", "root")


def assert_full_mesh(host):
    """ping and UDP between every pair of endpoints, the host (bridge address) included."""
    addrs = {host.name(n): f"{SUBNET}.{last}" for n, last in CONTAINERS.items()}
    for ns in addrs:
        host.udp_server(ns)
    vm = host.vm("vm0", VM_MAC, VM_IP)
    failures = []
    for (a, _), (b, b_ip) in itertools.permutations(addrs.items(), 2):
        if not host.ping(a, b_ip):
            failures.append(f"ping {a} -> {b}")
        if not host.udp_ask(a, b_ip):
            failures.append(f"udp {a} -> {b}")
    for ns in addrs:
        if not host.ping(ns, VM_IP):
            failures.append(f"ping {ns} -> vm")
        if not host.udp_ask(ns, VM_IP):
            failures.append(f"udp {ns} -> vm")
        if not host.ping(ns, GATEWAY):
            failures.append(f"ping {ns} -> host")
    if not host.ping(host.ns, f"{SUBNET}.11"):
        failures.append("ping host -> c1")
    assert not failures, f"failed: {failures}\n{host.log()[-3000:]}"
    return vm


def assert_vm_originates(host, vm) -> None:
    """The VM stand-in itself pings every container (after the serving stub lets go of the
    TAP: one reader per queue)."""
    vm.kill()
    vm.wait()
    failures = []
    for name, last in CONTAINERS.items():
        res = host.vm_ping("vm0", VM_MAC, VM_IP, f"{SUBNET}.{last}")
        if res.returncode != 0:
            failures.append(f"ping vm -> {name}: {res.stdout}{res.stderr}")
    assert not failures, f"failed: {failures}\n{host.log()[-3000:]}"


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_containers_and_vm_talk(host, datapath):
    host.start()
    build(host, datapath)
    vm = assert_full_mesh(host)

    ports = host.json("list-ports", "br0")
    assert [p["name"] for p in ports] == ["c1", "c2", "c3", "vm0"]
    assert {p["type"] for p in ports} == {"veth", "tap"}
    assert all(p["ifindex"] > 0 for p in ports)
    assert {p["netns"] for p in ports if p["type"] == "veth"} == {
        host.name(n) for n in CONTAINERS
    }

    fdb = host.json("dump-fdb", "br0")
    learned = {(e["mac"], e["port"]) for e in fdb if not e["static"]}
    for name, last in CONTAINERS.items():
        assert (mac_of(last), name) in learned, fdb
    assert (VM_MAC, "vm0") in learned, fdb
    assert all(e["age"] < 60 for e in fdb if not e["static"])

    stats = {s["port"]: s for s in host.json("port-stats", "br0")}
    for name in [*CONTAINERS, "vm0"]:
        assert stats[name]["rx_packets"] > 0, stats[name]
        assert stats[name]["tx_packets"] > 0, stats[name]
        assert stats[name]["rx_bytes"] > 60 * stats[name]["rx_packets"] // 2
    before = host.json("port-stats", "br0", "c1")[0]["rx_packets"]
    assert host.ping(host.name("c1"), f"{SUBNET}.12", count=3)
    after = host.json("port-stats", "br0", "c1")[0]["rx_packets"]
    assert after >= before + 3
    assert_vm_originates(host, vm)


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_delete_leaves_nothing_behind(host, datapath):
    host.start()
    build(host, datapath)
    assert {"br0", "c1", "c2", "c3", "vm0"} <= host.links()
    if datapath == "ebpf":  # the bridge device and its four ports
        assert host.pinned_entries()["ports"] == 5
        assert host.pinned_entries()["members"] == 1
    assert host.namespaces() == {host.name(n) for n in CONTAINERS}

    host.vswctl("del-port", "br0", "c1")
    assert "c1" not in host.links()
    assert host.name("c1") not in host.namespaces()  # vswitchd created it, so it goes too
    assert [p["name"] for p in host.json("list-ports", "br0")] == ["c2", "c3", "vm0"]
    assert all(e["port"] != "c1" for e in host.json("dump-fdb", "br0"))

    host.vswctl("del-br", "br0")
    assert not {"br0", "c2", "c3", "vm0"} & host.links()
    assert host.namespaces() == set()
    assert host.json("list-br") == []
    if datapath == "ebpf":  # no map entry of the bridge or its ports is left in the pins
        assert host.pinned_entries() == {"ports": 0, "members": 0, "fdb": 0}
    # A container namespace that existed before the port is left alone.
    keep = host.name("own")
    host.run_in(host.ns, "ip", "netns", "add", keep)
    host.vswctl("add-br", "br1", "--datapath", datapath)
    host.vswctl("add-port", "br1", "p1", "--netns", keep)
    host.vswctl("del-br", "br1")
    assert keep in host.namespaces()


@pytest.mark.parametrize(("datapath", "ip_options"), [("ebpf", 0), ("ebpf", 1), ("kernel", 0)])
def test_frames_with_headers_outside_the_linear_area(host, datapath, ip_options):
    """trafgen's TX_RING frames keep only the Ethernet header in the skb's linear area; the
    datapath must still parse and forward them (not drop them as malformed), and flow rules
    must see their IP and UDP fields (parse.h: headers_at copies the IPv4 and UDP headers in
    one load; with IP options, the UDP header takes a load of its own)."""
    host.start()
    build(host, datapath)
    c1, c2 = host.name("c1"), host.name("c2")
    assert host.ping(c1, f"{SUBNET}.12")
    match = f"udp,nw_dst={SUBNET}.12,tp_dst=9"
    if datapath == "ebpf":
        host.vswctl("add-flow", "br0", f"priority=100,{match},actions=normal")
        host.vswctl("add-flow", "br0", f"priority=100,udp,nw_dst={SUBNET}.12,tp_dst=10,"
                    "actions=drop")
    cfg = host.workdir / "udp.trafgen"
    cfg.write_text(trafgen_udp_config(mac_of(11), mac_of(12), f"{SUBNET}.11", f"{SUBNET}.12", 9,
                                      ip_options=ip_options))
    counter = host.spawn_in(c2, SYSTEM_PYTHON, str(HERE / "udpecho.py"), "count", "9", "5")
    res = host.run_in(c1, "trafgen", "--dev", "eth0", "--conf", str(cfg), "-n", "300",
                      "--cpus", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats")
    assert res.returncode == 0, res.stderr
    out, _ = counter.communicate(timeout=20)
    assert int(out.split()[-1]) >= 290, out
    drops = host.json("port-stats", "br0", "c1")[0]["drops_by_reason"]
    assert drops.get("malformed", 0) == 0, drops
    if datapath == "ebpf":
        hits = {f["match"]: f["n_packets"] for f in host.json("dump-flows", "br0")}
        assert hits[match] >= 290, hits


def test_restart_keeps_state_and_traffic(host):
    host.start()
    build(host, "ebpf")
    host.vswctl("add-br", "brk", "--datapath", "kernel")
    host.vswctl("add-fdb", "br0", "02:77:00:00:00:99", "c3")
    c1, c2 = host.name("c1"), host.name("c2")
    assert host.ping(c1, f"{SUBNET}.12")
    bridges_before = host.json("list-br")
    ports_before = host.json("list-ports", "br0")

    host.stop()
    # The eBPF datapath keeps forwarding while the daemon is down.
    assert host.ping(c1, f"{SUBNET}.12")

    host.start()
    assert host.json("list-br") == bridges_before
    assert host.json("list-ports", "br0") == ports_before
    static = [e for e in host.json("dump-fdb", "br0") if e["static"] and e["port"] == "c3"]
    assert [e["mac"] for e in static] == ["02:77:00:00:00:99"]
    assert host.ping(c1, f"{SUBNET}.12")
    assert host.ping(c2, f"{SUBNET}.13")

    # A port deleted behind the daemon's back is re-created on start.
    host.stop()
    host.run_in(host.ns, "ip", "link", "del", "c2")
    host.start()
    assert "c2" in host.links()
    assert host.ping(c1, f"{SUBNET}.12")


def test_status_health_reflection_and_socket(host):
    host.start()
    st = host.json("status")
    assert st["ebpf_supported"] is True, st
    assert os.stat(host.socket).st_mode & 0o777 == 0o600

    with grpc.insecure_channel(f"unix:{host.socket}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "vswitchd.v1.Switch"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(reflect.ServerReflectionInfo(iter([request]), timeout=10)))
        names = {s.name for s in reply.list_services_response.service}
        assert {"vswitchd.v1.Switch", "grpc.health.v1.Health"} <= names
