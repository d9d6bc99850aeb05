"""Packet-out with the real daemon: `vswctl send-packet` out of a port reaches that container
only; into the bridge from a port it is switched like a received frame (FDB, flows, VLANs,
learning), on an eBPF and on a kernel bridge."""

from __future__ import annotations

import pytest

from tests.netns.topo import send_frames, sniffed, sniffer

pytestmark = pytest.mark.root

MARK = "02:aa:00:00:00:05"     # the source MAC of the frames the controller sends
C2_MAC = "02:00:00:00:00:02"
PORTS = ("c1", "c2", "c3")


def frame(dst: str, src: str = MARK) -> str:
    """An Ethernet frame of EtherType 0x88b5 (local experimental), in hex."""
    return (dst + src).replace(":", "") + "88b5" + "ab" * 46


def setup(h, datapath: str, vlans: dict[str, int] | None = None) -> None:
    h.start()
    h.vswctl("add-br", "br0", "--datapath", datapath)
    for i, name in enumerate(PORTS, 1):
        extra = ["--vlan", str(vlans[name])] if vlans else []
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--mac",
                 f"02:00:00:00:00:0{i}", *extra)
    send_frames(h, h.name("c2"), "eth0", "ff:ff:ff:ff:ff:ff", C2_MAC, 0, 1)  # learn c2


def who_got(h, send: list[str], seconds: float = 2.0) -> dict[str, int]:
    """Run `vswctl send-packet br0 SEND...` while every container listens: how many frames
    from MARK each one received."""
    snoops = {p: sniffer(h, h.name(p), "eth0", seconds) for p in PORTS}
    res = h.vswctl("-j", "send-packet", "br0", *send)
    assert '"length": 60' in res.stdout, res.stdout
    return {p: sum(1 for f in sniffed(s) if f[0] == MARK) for p, s in snoops.items()}


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_out_of_a_port_and_into_the_bridge(host, datapath):
    h = host
    setup(h, datapath)
    # out of c1: c1's container gets it, nobody else (even a broadcast)
    assert who_got(h, ["--out", "c1", frame("ff:ff:ff:ff:ff:ff")]) == {"c1": 1, "c2": 0,
                                                                       "c3": 0}
    # into the bridge from c1, to c2's MAC: switched to c2 only, and its source learned on c1
    assert who_got(h, ["--in", "c1", frame(C2_MAC)]) == {"c1": 0, "c2": 1, "c3": 0}
    fdb = {e["mac"]: e["port"] for e in h.json("dump-fdb", "br0")}
    assert fdb.get(MARK) == "c1", fdb
    # header values instead of bytes (the trace syntax)
    snoop = sniffer(h, h.name("c3"), "eth0", 2.0)
    h.vswctl("send-packet", "br0", "--out", "c3", f"dl_src={MARK},dl_dst=ff:ff:ff:ff:ff:ff,arp")
    assert [f for f in sniffed(snoop) if f[0] == MARK] == [[MARK, "ff:ff:ff:ff:ff:ff", 0,
                                                            0x0806]]


def test_into_the_bridge_meets_its_flows_and_vlans(host):
    h = host
    setup(h, "ebpf", vlans={"c1": 10, "c2": 10, "c3": 20})
    # a broadcast into VLAN 10 reaches VLAN 10's other port only
    assert who_got(h, ["--in", "c1", frame("ff:ff:ff:ff:ff:ff")]) == {"c1": 0, "c2": 1,
                                                                      "c3": 0}
    # a rule that drops what c1 sends drops the controller's frame too, and counts it
    h.vswctl("add-flow", "br0", "priority=200,in_port=c1,actions=drop")
    assert who_got(h, ["--in", "c1", frame(C2_MAC)]) == {"c1": 0, "c2": 0, "c3": 0}
    (flow,) = h.json("dump-flows", "br0")
    assert flow["n_packets"] >= 1


def test_refusals(host):
    h = host
    setup(h, "ebpf")
    for args, words in ((["--out", "c1", "ffff"], "a frame is 14"),
                        (["--out", "nope", frame(C2_MAC)], "port nope does not exist"),
                        (["--in", "c1", "--out", "c2", frame(C2_MAC)], "one of --out"),
                        (["--in", "c1", "fff"], "odd number")):
        res = h.vswctl("send-packet", "br0", *args, check=False)
        assert res.returncode != 0 and words in res.stderr, (args, res.stderr)
