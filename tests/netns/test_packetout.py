"""Packet-out with the real daemon: `vswctl send-packet` out of a port reaches that container
only; into the bridge from a port it is switched like a received frame (FDB, flows, VLANs,
learning, counters), on an eBPF and on a kernel bridge; the host's port both ways; refusals
with their status codes; the README's commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.netns.topo import send_frames, sniffed, sniffer

pytestmark = pytest.mark.root

MARK = "02:aa:00:00:00:05"     # the source MAC of the frames the controller sends
BCAST = "ff:ff:ff:ff:ff:ff"
C2_MAC = "02:00:00:00:00:02"
PORTS = ("c1", "c2", "c3")
README = Path(__file__).resolve().parents[2] / "README.md"


def frame(dst: str, src: str = MARK, vlan: int = 0, length: int = 60) -> str:
    """An Ethernet frame of EtherType 0x88b5 (local experimental), tagged when VLAN, in hex."""
    head = (dst + src).replace(":", "") + (f"8100{vlan:04x}" if vlan else "") + "88b5"
    return head + "ab" * (length - len(head) // 2)


def setup(h, datapath: str, vlans: dict[str, int] | None = None) -> None:
    h.start()
    h.vswctl("add-br", "br0", "--datapath", datapath)
    for i, name in enumerate(PORTS, 1):
        extra = ["--vlan", str(vlans[name])] if vlans else []
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--mac",
                 f"02:00:00:00:00:0{i}", *extra)
    send_frames(h, h.name("c2"), "eth0", BCAST, C2_MAC, 0, 1)  # learn c2


def who_got(h, send: list[str], ports: tuple[str, ...] = PORTS, host: bool = True,
            seconds: float = 2.0) -> dict[str, list[int]]:
    """Run `vswctl send-packet br0 SEND...` while every container (and the host on br0)
    listens: the VLAN (0: untagged) of each frame from MARK each one received. SEND's last
    word, when hex, is the frame: the daemon must say it sent all of it."""
    snoops = {p: sniffer(h, h.name(p), "eth0", seconds) for p in ports}
    if host:
        snoops["host"] = sniffer(h, h.ns, "br0", seconds)
    sent = h.json("send-packet", "br0", *send)
    if re.fullmatch(r"[0-9a-f]+", send[-1]):
        assert sent["length"] == len(send[-1]) // 2, sent
    return {p: [f[2] for f in sniffed(s) if f[0] == MARK] for p, s in snoops.items()}


def only(**got: list[int]) -> dict[str, list[int]]:
    """who_got's answer when only the named listeners got the given frames."""
    return {p: got.get(p, []) for p in (*PORTS, "host")}


def stats(h, port: str) -> dict:
    (row,) = h.json("port-stats", "br0", port)
    return row


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_out_of_a_port_and_into_the_bridge(host, datapath):
    h = host
    setup(h, datapath)
    # out of c1: c1's container gets it, nobody else (even a broadcast)
    assert who_got(h, ["--out", "c1", frame(BCAST)]) == only(c1=[0])
    # into the bridge from c1, to c2's MAC: switched to c2 only, its source learned on c1
    before = stats(h, "c1")
    assert who_got(h, ["--in", "c1", frame(C2_MAC)]) == only(c2=[0])
    fdb = {e["mac"]: e["port"] for e in h.json("dump-fdb", "br0")}
    assert fdb.get(MARK) == "c1", fdb
    if datapath == "ebpf":  # the pipeline counted it (a kernel bridge's veth counts its peer's)
        assert stats(h, "c1")["rx_packets"] > before["rx_packets"]
    # the host's port: out of it the host receives the frame, into the switch from it the
    # host sends it
    assert who_got(h, ["--out", "br0", frame(BCAST)]) == only(host=[0])
    assert who_got(h, ["--in", "br0", frame(C2_MAC)]) == only(c2=[0])
    # header values instead of bytes (the trace syntax)
    snoop = sniffer(h, h.name("c3"), "eth0", 2.0)
    res = h.vswctl("send-packet", "br0", "--out", "c3", f"dl_src={MARK},dl_dst={BCAST},arp")
    assert res.stdout == "60 bytes out of c3\n"
    assert [f for f in sniffed(snoop) if f[0] == MARK] == [[MARK, BCAST, 0, 0x0806]]


def test_into_the_bridge_meets_its_vlans_and_flows(host):
    h = host
    setup(h, "ebpf", vlans={"c1": 10, "c2": 10, "c3": 20})
    h.vswctl("add-port", "br0", "tr", "--netns", h.name("tr"), "--trunks", "10,20")
    ports = (*PORTS, "tr")
    # a broadcast from access port c1 (VLAN 10): untagged at c2, tagged 10 on the trunk
    assert who_got(h, ["--in", "c1", frame(BCAST)], ports, host=False) == {
        "c1": [], "c2": [0], "c3": [], "tr": [10]}
    # one tagged 20 from the trunk: untagged at VLAN 20's access port only
    assert who_got(h, ["--in", "tr", frame(BCAST, vlan=20)], ports, host=False) == {
        "c1": [], "c2": [], "c3": [0], "tr": []}
    # a rule that drops what c1 sends drops the controller's frame too, and counts it
    h.vswctl("add-flow", "br0", "priority=200,in_port=c1,actions=drop")
    assert who_got(h, ["--in", "c1", frame(C2_MAC)], ports, host=False) == {
        "c1": [], "c2": [], "c3": [], "tr": []}
    (flow,) = h.json("dump-flows", "br0")
    assert flow["n_packets"] >= 1


def test_refusals_and_their_codes(host):
    h = host
    setup(h, "ebpf")
    h.vswctl("add-port", "br0", "j1", "--netns", h.name("j1"), "--mtu", "9000")
    h.vswctl("add-br", "br1", "--ip", "192.0.2.1/24")
    h.vswctl("add-port", "br1", "vx0", "--type", "vxlan", "--vni", "100", "--local",
             "192.0.2.1")
    for args, rc, words in (
        (["br0", "--out", "c1", "ff" * 13], 2, "INVALID_ARGUMENT: data '13 bytes'"),
        (["br0", "--out", "c1", frame(BCAST, length=1515)], 2, "INVALID_ARGUMENT: data '1515"),
        (["br0", "--in", "c1", frame(BCAST, vlan=10, length=1519)], 2, "INVALID_ARGUMENT"),
        (["br0", "--in", "c1", "nw_dst=10.0.0.0/8,ip"], 2, "INVALID_ARGUMENT: nw_dst"),
        # live frames fit one page: a jumbo frame can leave by j1 but not enter by it
        (["br0", "--in", "j1", frame(BCAST, length=4000)], 2, "about 3.4 KB"),
        (["br0", "--out", "nope", frame(C2_MAC)], 2, "NOT_FOUND: port nope does not exist"),
        (["br9", "--out", "c1", frame(C2_MAC)], 2, "NOT_FOUND"),
        (["br1", "--out", "vx0", frame(C2_MAC)], 2, "FAILED_PRECONDITION: vx0 is a tunnel"),
        (["br1", "--in", "vx0", frame(C2_MAC)], 2, "FAILED_PRECONDITION: vx0 is a tunnel"),
        (["br0", "--in", "c1", "ffffffffffff02zz"], 1, "'z' is not a hex digit"),
        (["br0", "--in", "c1", "fff"], 1, "odd number"),
        (["br0", "--in", "c1", "--out", "c2", frame(C2_MAC)], 1, "not allowed with"),
    ):
        res = h.vswctl("send-packet", *args, check=False)
        assert (res.returncode, res.stdout) == (rc, "") and words in res.stderr, (args,
                                                                                  res.stderr)
    # what the refusals above border on is sent
    for args in (["--out", "c1", frame(BCAST, length=1514)],
                 ["--out", "c1", frame(BCAST, vlan=10, length=1518)],
                 ["--in", "j1", frame(BCAST, length=3000)]):
        h.vswctl("send-packet", "br0", *args)
    snoop = sniffer(h, h.name("j1"), "eth0", 2.0)
    h.vswctl("send-packet", "br0", "--out", "j1", frame(BCAST, length=4000))
    assert [f[0] for f in sniffed(snoop)].count(MARK) == 1


def test_the_readme_commands(host):
    h = host
    setup(h, "ebpf")
    section = README.read_text().split("### Packet-out", 1)[1].split("\n#", 1)[0]
    out, into = [shlex.split(line)[1:] for line in section.splitlines()
                 if line.startswith("vswctl send-packet")]
    assert out[:4] == ["send-packet", "br0", "--out", "c1"], out
    assert into[:4] == ["send-packet", "br0", "--in", "c1"], into
    assert who_got(h, out[2:]) == only(c1=[0])
    assert who_got(h, into[2:]) == only(c2=[0])
