"""The XDP hook with real traffic: TAP ports (a VM stand-in writing and reading the TAP fd) and an
uplink (a veth whose other end is in a "LAN" namespace) are switched at XDP, with the same
tables as TC: unicast to containers, TAPs and the uplink, VLAN tags, drop rules with their
counters, floods that leave through XDP and TC ports with one copy each, the generic-mode
fallback, trace through XDP, and a SIGKILL restart under traffic with nothing lost."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.netns.harness import NETNS_DIR
from tests.netns.test_trace import events, watch
from tests.netns.topo import ip, new_ns, send_frames, sniffed, sniffer, wire
from vswitchd.netlink import ethtool

pytestmark = pytest.mark.root

SUBNET = "10.91.0"
VM_MACS = {"vm0": "02:91:00:00:00:50", "vm1": "02:91:00:00:00:51"}
VM_IPS = {"vm0": f"{SUBNET}.50", "vm1": f"{SUBNET}.51"}
C1_MAC = "02:91:00:00:00:0b"
LAN_IP = f"{SUBNET}.99"
TEST_TYPE = 0x88B5


def stats(host, port: str) -> dict:
    return host.json("port-stats", "br0", port)[0]


def ports(host) -> dict[str, dict]:
    return {p["name"]: p for p in host.json("list-ports", "br0")}


def build(host, lan: bool = False) -> None:
    """br0 with container c1, TAPs vm0 (free for host.vm_ping, a VM that originates) and vm1
    (a VM stand-in answering ARP/ping/UDP echo); with lan, also the uplink up0 whose other end
    (eth0, LAN_IP) is in the namespace "lan"."""
    host.start()
    host.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    host.vswctl("add-port", "br0", "c1", "--netns", host.name("c1"), "--ip", f"{SUBNET}.11/24",
                "--mac", C1_MAC)
    for vm in VM_MACS:
        host.vswctl("add-port", "br0", vm, "--type", "tap")
    if lan:
        lan_ns = new_ns(host, "lan")
        wire(host, lan_ns, "up0", "eth0", there_ips=(f"{LAN_IP}/24",))
        host.vswctl("add-port", "br0", "up0", "--type", "system")
    host.vm("vm1", VM_MACS["vm1"], VM_IPS["vm1"])


def test_taps_and_the_uplink_get_xdp_and_containers_keep_tc(host):
    build(host, lan=True)
    got = ports(host)
    assert (got["vm0"]["xdp_mode"], got["vm1"]["xdp_mode"]) == ("native", "native")
    assert got["up0"]["xdp_mode"] == "native"  # veth has native XDP
    assert got["c1"]["xdp_mode"] == "off"
    table = host.vswctl("list-ports", "br0").stdout
    assert "XDP" in table.splitlines()[0]


def test_vm_to_vm_at_xdp_and_vm_to_container_through_tc(host):
    build(host)
    before = {vm: stats(host, vm) for vm in VM_MACS}
    # a VM pings the other: ARP (a broadcast with the host among its targets: handed to TC),
    # then the 3 echo requests TAP -> TAP at XDP, and the replies back the same way
    res = host.vm_ping("vm0", "02:91:00:00:00:52", f"{SUBNET}.52", VM_IPS["vm1"])
    assert res.returncode == 0, res.stdout + res.stderr + host.log()[-2000:]
    vm0 = stats(host, "vm0")
    assert vm0["xdp_finished"] >= before["vm0"]["xdp_finished"] + 3, vm0
    assert vm0["xdp_handoffs"] >= before["vm0"]["xdp_handoffs"] + 1, vm0  # the ARP request
    assert stats(host, "vm1")["xdp_finished"] >= before["vm1"]["xdp_finished"] + 3
    # to the container: handed to TC (bpf_redirect_peer is the faster way into a namespace)
    res = host.vm_ping("vm0", "02:91:00:00:00:53", f"{SUBNET}.53", f"{SUBNET}.11")
    assert res.returncode == 0, res.stdout + res.stderr + host.log()[-2000:]
    after = stats(host, "vm0")
    assert after["xdp_finished"] == vm0["xdp_finished"]
    assert after["xdp_handoffs"] >= vm0["xdp_handoffs"] + 3
    assert after["rx_packets"] >= vm0["rx_packets"] + 3  # counted once, by TC
    assert host.ping(host.name("c1"), VM_IPS["vm1"])


def test_uplink_to_container_and_back(host):
    build(host, lan=True)
    lan = host.name("lan")
    assert host.ping(lan, VM_IPS["vm1"], count=3)           # LAN -> up0 (XDP) -> vm1 TAP
    up0 = stats(host, "up0")
    assert up0["xdp_finished"] >= 3, up0
    assert host.ping(lan, f"{SUBNET}.11", count=3)           # LAN -> up0 (XDP -> TC) -> c1
    assert host.ping(host.name("c1"), LAN_IP, count=3)      # c1 (TC) -> up0 -> LAN
    assert stats(host, "up0")["xdp_handoffs"] >= up0["xdp_handoffs"] + 3
    assert not ethtool.gro("eth0", host.name("c1"))  # no XDP target: its peer is left alone
    # a container veth given XDP itself is a target too: its end gets NAPI (GRO on)
    host.vswctl("set-port", "br0", "c1", "--xdp", "generic")
    assert ethtool.gro("eth0", host.name("c1"))
    up0 = stats(host, "up0")
    assert host.ping(lan, f"{SUBNET}.11", count=3)           # LAN -> up0 (XDP) -> c1
    assert stats(host, "up0")["xdp_finished"] >= up0["xdp_finished"] + 3


def test_a_drop_rule_drops_at_xdp_with_counters(host):
    build(host)
    host.vswctl("add-flow", "br0", "priority=500,in_port=vm0,icmp,actions=drop")
    before = stats(host, "vm0")
    res = host.vm_ping("vm0", "02:91:00:00:00:54", f"{SUBNET}.54", VM_IPS["vm1"])
    assert res.returncode != 0  # the echo requests were dropped
    after = stats(host, "vm0")
    dropped = after["drops_by_reason"].get("flow-drop", 0) - \
        before["drops_by_reason"].get("flow-drop", 0)
    assert dropped >= 3, after
    assert after["xdp_finished"] - before["xdp_finished"] >= dropped
    flows = host.json("dump-flows", "br0")
    assert any(f["n_packets"] >= dropped for f in flows if "icmp" in f["match"]), flows
    drops = host.vswctl("drops", "br0").stdout
    assert "flow-drop" in drops


def test_vlans_on_xdp_ports(host):
    """Access ports at XDP: the VMs in VLAN 10 reach each other, not the container in VLAN 20;
    a trunk uplink: tagged frames from the LAN lose their tag at XDP on the way to an access
    port, and frames from the access port get it back on the way out."""
    host.start()
    host.vswctl("add-br", "br0")
    host.vswctl("add-port", "br0", "c1", "--netns", host.name("c1"), "--ip", f"{SUBNET}.11/24",
                "--mac", C1_MAC, "--vlan", "20", "--xdp", "generic")  # an XDP target
    for vm in VM_MACS:
        host.vswctl("add-port", "br0", vm, "--type", "tap", "--vlan", "10")
    host.vm("vm1", VM_MACS["vm1"], VM_IPS["vm1"])
    lan_ns = new_ns(host, "lan")
    wire(host, lan_ns, "up0", "eth0")
    host.vswctl("add-port", "br0", "up0", "--type", "system", "--trunks", "10,20")
    res = host.vm_ping("vm0", "02:91:00:00:00:55", f"{SUBNET}.55", VM_IPS["vm1"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert stats(host, "vm0")["xdp_finished"] >= 2
    res = host.vm_ping("vm0", "02:91:00:00:00:56", f"{SUBNET}.56", f"{SUBNET}.11")
    assert res.returncode != 0  # other VLAN

    # LAN -> up0 (trunk, XDP) -> c1 (access 20): untagged on c1's wire
    snif = sniffer(host, host.name("c1"), "eth0", 2.0)
    time.sleep(0.3)
    host.vswctl("add-fdb", "br0", C1_MAC, "c1", "--vlan", "20")
    send_frames(host, lan_ns, "eth0", C1_MAC, "02:91:00:00:00:77", 20)
    got = {(src, vlan) for src, _dst, vlan, etype in sniffed(snif) if etype == TEST_TYPE}
    assert got == {("02:91:00:00:00:77", 0)}
    assert stats(host, "up0")["xdp_finished"] >= 3
    # c1 -> up0: tagged 20 on the LAN wire
    snif = sniffer(host, lan_ns, "eth0", 2.0)
    time.sleep(0.3)
    send_frames(host, host.name("c1"), "eth0", "02:91:00:00:00:77", C1_MAC, 0)
    got = {(src, vlan) for src, _dst, vlan, etype in sniffed(snif) if etype == TEST_TYPE}
    assert got == {(C1_MAC, 20)}


def test_a_flood_leaves_through_xdp_and_tc_ports_once_each(host):
    """A broadcast from the LAN (XDP) reaches the container (TC-only veth), both VMs and the
    host exactly once each; one from the container (TC) reaches the uplink and the VMs once."""
    build(host, lan=True)
    lan = host.name("lan")
    snifs = {"c1": sniffer(host, host.name("c1"), "eth0", 2.5),
             "lan": sniffer(host, lan, "eth0", 2.5)}
    time.sleep(0.3)
    send_frames(host, lan, "eth0", "ff:ff:ff:ff:ff:ff", "02:91:00:00:00:78", 0, count=3)
    send_frames(host, host.name("c1"), "eth0", "ff:ff:ff:ff:ff:ff", C1_MAC, 0, count=3)
    got = {name: [src for src, _d, _v, etype in sniffed(p) if etype == TEST_TYPE]
           for name, p in snifs.items()}
    assert sorted(got["c1"]) == ["02:91:00:00:00:78"] * 3  # one copy each, none back
    assert sorted(got["lan"]) == [C1_MAC] * 3
    # vm1 (a process holds its TAP) got one copy of each of the six: tx counts them
    assert stats(host, "vm1")["tx_packets"] >= 6


def test_generic_mode_fallback_and_explicit_modes(host):
    host.start()
    host.vswctl("add-br", "br0")
    # a device without native XDP: an ifb (the kernel has no dummy driver)
    ip("-n", host.ns, "link", "add", "ifb7", "type", "ifb")
    ip("-n", host.ns, "link", "set", "ifb7", "up")
    host.vswctl("add-port", "br0", "ifb7", "--type", "system")
    port = ports(host)["ifb7"]
    assert port["xdp_mode"] == "generic"
    assert "native" in port["xdp_reason"] and "ifb" in port["xdp_reason"]
    res = host.vswctl("set-port", "br0", "ifb7", "--xdp", "native", check=False)
    assert res.returncode != 0 and "native" in res.stderr
    assert ports(host)["ifb7"]["xdp_mode"] == "generic"  # nothing changed
    host.vswctl("add-port", "br0", "vm0", "--type", "tap", "--xdp", "generic")
    assert ports(host)["vm0"]["xdp_mode"] == "generic"
    host.vswctl("set-port", "br0", "vm0", "--xdp", "off")
    assert ports(host)["vm0"]["xdp_mode"] == "off"
    host.vswctl("set-port", "br0", "vm0", "--xdp", "auto")
    assert ports(host)["vm0"]["xdp_mode"] == "native"
    # a kernel bridge runs no programs
    host.vswctl("add-br", "kb0", "--datapath", "kernel")
    res = host.vswctl("add-port", "kb0", "vm9", "--type", "tap", "--xdp", "native", check=False)
    assert res.returncode != 0 and "FAILED_PRECONDITION" in res.stderr + res.stdout


def test_trace_names_the_hook(host):
    build(host)
    assert host.vm_ping("vm0", "02:91:00:00:00:57", f"{SUBNET}.57", VM_IPS["vm1"]).returncode \
        == 0
    pkt = (f"in_port=vm0,dl_src=02:91:00:00:00:57,dl_dst={VM_MACS['vm1']},icmp,"
           f"nw_dst={VM_IPS['vm1']}")
    report = host.json("trace", "br0", pkt)
    assert {s["hook"] for s in report["stages"]} == {"xdp"}
    assert report["verdict"] == "forward" and report["outputs"] == ["vm1"]
    # for the host: XDP hands it to TC, which delivers it
    mac = host.json("show", "br0")[0]["mac"]
    report = host.json("trace", "br0", f"in_port=vm0,dl_dst={mac},icmp,nw_dst={SUBNET}.1")
    hooks = [s["hook"] for s in report["stages"]]
    assert hooks[0] == "xdp" and hooks[-1] == "tc", report
    assert "to-tc" in [s["summary"].split(":")[0] for s in report["stages"]]
    assert report["outputs"] == ["br0"]
    text = host.vswctl("trace", "br0", pkt).stdout
    assert "[xdp]" in text


def test_watch_events_carry_the_hook(host):
    build(host)
    proc = watch(host, "--port", "vm0", "--match", "icmp", "-n", "2")
    res = host.vm_ping("vm0", "02:91:00:00:00:58", f"{SUBNET}.58", VM_IPS["vm1"])
    assert res.returncode == 0, res.stdout + res.stderr
    evs = events(proc)
    assert [(e["in_port"], e["hook"], e["verdict"], e["outputs"]) for e in evs] == \
        [("vm0", "xdp", "forward", ["vm1"])] * 2


def test_sigkill_restart_loses_nothing_on_an_xdp_port(host):
    """Pings from the LAN to a VM every 5 ms enter at up0's XDP program and leave to the TAP at
    XDP (ICMP has no checksum offload) while the daemon is killed and restarted: none is
    lost."""
    build(host, lan=True)
    lan = host.name("lan")
    assert host.ping(lan, VM_IPS["vm1"])
    before = stats(host, "up0")["xdp_finished"]
    pinger = subprocess.Popen(["nsenter", f"--net={NETNS_DIR}/{lan}", "ping", "-q", "-i",
                               "0.005", "-c", "1200", "-W", "2", VM_IPS["vm1"]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        for _ in range(3):
            host.stop(signal.SIGKILL)
            time.sleep(0.5)
            host.start()
            time.sleep(0.5)
        out, err = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
    summary = next(line for line in out.splitlines() if "transmitted" in line)
    assert summary.startswith("1200 packets transmitted, 1200 received"), out + err
    assert ports(host)["up0"]["xdp_mode"] == "native"
    assert stats(host, "up0")["xdp_finished"] >= before + 1200


def test_udp_from_a_lan_stack_crosses_the_xdp_uplink_intact(host):
    """The LAN's stack leaves UDP checksums to the device (veth checksum offload): XDP hands
    those frames to TC, which delivers them whole (a raw XDP redirect would corrupt them)."""
    build(host, lan=True)
    host.udp_server(host.name("c1"), 7)
    before = stats(host, "up0")["xdp_handoffs"]
    assert host.udp_ask(host.name("lan"), f"{SUBNET}.11", 7)
    assert stats(host, "up0")["xdp_handoffs"] > before
