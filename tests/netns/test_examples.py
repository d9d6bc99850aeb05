"""The example controllers (clients/examples) against a real daemon, as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns.test_trace import wait_until
from vswapi import Switch

pytestmark = pytest.mark.root

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "examples"
SUBNET = "10.84.0"


def controller(h, name: str, *args: str) -> subprocess.Popen:
    log = open(h.workdir / f"{name}.log", "w")  # noqa: SIM115 - the child's
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py"), *args,
                             "--socket", h.socket], stdout=log, stderr=subprocess.STDOUT)
    h._helpers.append(proc)
    return proc


def output(h, name: str) -> str:
    return (h.workdir / f"{name}.log").read_text()


def flows_of(h, port: str) -> list[dict]:
    return [f for f in h.json("dump-flows", "br0") if f"in_port={port}" in f["match"]]


def test_port_policy_controller(host):
    h = host
    h.start()
    h.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    for name, last in (("c1", 11), ("c2", 12)):
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip",
                 f"{SUBNET}.{last}/24")
    proc = controller(h, "port_policy", "br0")
    wait_until(lambda: len(flows_of(h, "c1")) == 3 and len(flows_of(h, "c2")) == 3,
               timeout=30, what="the rules of c1 and c2")
    assert h.ping(h.name("c1"), f"{SUBNET}.12")
    # c1 sends from an address that is not its own: dropped by its policy
    h.run_in(h.name("c1"), "ip", "addr", "add", f"{SUBNET}.99/24", "dev", "eth0")
    res = h.run_in(h.name("c1"), "ping", "-c", "2", "-W", "1", "-I", f"{SUBNET}.99",
                   f"{SUBNET}.12")
    assert res.returncode != 0
    drop = [f for f in flows_of(h, "c1") if f["actions"] == "drop"]
    assert drop and drop[0]["n_packets"] >= 1, drop
    # a new port gets its rules from the port event; a port that goes, loses them
    t0 = time.monotonic()
    h.vswctl("add-port", "br0", "c3", "--netns", h.name("c3"), "--ip", f"{SUBNET}.13/24")
    wait_until(lambda: len(flows_of(h, "c3")) == 3, timeout=10, what="the rules of c3")
    print(f"port added -> its rules installed: {time.monotonic() - t0:.2f} s")
    assert h.ping(h.name("c1"), f"{SUBNET}.13")
    h.vswctl("del-port", "br0", "c3")
    wait_until(lambda: "port c3 gone" in output(h, "port_policy"), timeout=10,
               what="the controller to see c3 go")
    assert flows_of(h, "c3") == [] and len(flows_of(h, "c1")) == 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, output(h, "port_policy")


def neighbor_mac(h, ns: str, ip: str) -> str:
    out = h.run_in(ns, "ip", "-j", "neigh", "show", ip).stdout
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr", "") if entries else ""


def test_arp_responder_controller(host):
    h = host
    h.start()
    h.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    macs = {"c1": "02:00:00:00:84:11", "c2": "02:00:00:00:84:12", "c3": "02:00:00:00:84:13"}
    for name, last in (("c1", 11), ("c2", 12), ("c3", 13)):
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip",
                 f"{SUBNET}.{last}/24", "--mac", macs[name])
    proc = controller(h, "arp_responder", "br0")
    wait_until(lambda: any(f["actions"] == "controller:64"
                           for f in h.json("dump-flows", "br0")), timeout=30,
               what="the responder's ARP rule")
    # c1 asks for c2: nobody knows c2 yet, the controller floods the request and passes the
    # reply on; both are learned
    assert h.ping(h.name("c1"), f"{SUBNET}.12")
    assert neighbor_mac(h, h.name("c1"), f"{SUBNET}.12") == macs["c2"]
    # c3 asks for c2: the controller answers itself, from what it learned
    assert h.ping(h.name("c3"), f"{SUBNET}.12")
    wait_until(lambda: f"answered who-has {SUBNET}.12 for c3" in output(h, "arp_responder"),
               timeout=10, what="the controller's own answer")
    assert neighbor_mac(h, h.name("c3"), f"{SUBNET}.12") == macs["c2"]
    # the hosts it learned get unicast rules, which carry their traffic
    flows = {f["match"]: f for f in h.json("dump-flows", "br0")}
    rule = flows.get(f"dl_dst={macs['c2']}")
    assert rule is not None and rule["actions"] == "output:c2", flows
    assert rule["n_packets"] >= 2
    with Switch.connect(socket_path=h.socket) as sw:  # the ARP went by packet-in
        assert sw.packet_in_config().sent >= 4
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, output(h, "arp_responder")
    assert all("controller" not in f["actions"] for f in h.json("dump-flows", "br0"))
