"""Packet-in with the real daemon and real frames: a rule's controller action delivers the frame
(cut to max_len) with its bridge, in_port, VLAN, the rule's cookie and the reason to a
SubscribePacketIn stream while the frame is still switched (controller,normal); the table-miss
rule gives TABLE_MISS; a tag the kernel took out of the frame is put back; the rate limit holds
and counts the rest; frames of a bridge nobody subscribed to count as unwatched; `vswctl
packet-in` prints them."""

from __future__ import annotations

import re
import struct
import subprocess
import threading

import grpc
import pytest

from tests.netns.harness import HERE, SYSTEM_PYTHON, VSWCTL
from tests.netns.test_trace import wait_until
from vswapi import switch_pb2 as pb
from vswapi.client import connect

pytestmark = pytest.mark.root

SUBNET = "10.83.0"
SRC = "02:83:00:00:00:99"  # the frames' sender: no stack in the test uses it


def arp_request(src_ip: str, dst_ip: str, pad: int = 0, vlan: int | None = None) -> bytes:
    """A broadcast ARP request from SRC, padded to 42 + PAD bytes, tagged with VLAN if given."""
    mac = bytes.fromhex(SRC.replace(":", ""))
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes(map(int, src_ip.split(".")))
    arp += bytes(6) + bytes(map(int, dst_ip.split(".")))
    return b"\xff" * 6 + mac + tag + b"\x08\x06" + arp + bytes(pad)


def started(h) -> int:
    return len(re.findall(r"packet-in #\d+ .*: started", h.log()))


class Subscriber:
    """A SubscribePacketIn stream read by a thread: its messages, in order, in `msgs`."""

    def __init__(self, h, bridges: list[str]) -> None:
        n = started(h)
        self.client = connect(socket_path=h.socket)
        self.call = self.client.stub.SubscribePacketIn(pb.PacketInRequest(bridges=bridges))
        self.msgs: list[pb.PacketInMessage] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_until(lambda: started(h) > n, what="the subscription")

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.msgs.append(msg)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.CANCELLED, exc

    def packets(self, data_start: bytes = b"") -> list[pb.PacketIn]:
        return [m.packet for m in self.msgs
                if m.WhichOneof("kind") == "packet" and m.packet.data.startswith(data_start)]

    def lost(self) -> int:
        return sum(m.lost for m in self.msgs if m.WhichOneof("kind") == "lost")

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)
        self.client.close()


def send(h, port: str, frame: bytes, count: int = 1) -> None:
    res = h.run_in(h.name(port), SYSTEM_PYTHON, str(HERE / "rawsend.py"), "eth0", frame.hex(),
                   str(count))
    assert res.returncode == 0, res.stderr


def config(h) -> pb.PacketInConfig:
    with connect(socket_path=h.socket) as c:
        return c.stub.GetPacketInConfig(pb.GetPacketInConfigRequest(), timeout=10)


@pytest.fixture
def br(host):
    """br0 with c1 and c2, access ports of VLAN 10, and c3, a trunk of VLAN 20."""
    h = host
    h.start()
    h.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    for name, last, mode in (("c1", 11, ["--vlan", "10"]), ("c2", 12, ["--vlan", "10"]),
                             ("c3", 13, ["--trunks", "20"])):
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip",
                 f"{SUBNET}.{last}/24", *mode)
    return h


def test_a_controller_action_delivers_the_frame_and_switches_it(br):
    h = br
    h.vswctl("add-flow", "br0", "cookie=0x77,priority=100,arp,actions=controller:64,normal")
    assert h.ping(h.name("c1"), f"{SUBNET}.12")  # ARP goes to the controller and is switched
    sub = Subscriber(h, ["br0"])
    frame = arp_request(f"{SUBNET}.11", f"{SUBNET}.12", pad=38)  # 80 bytes
    send(h, "c1", frame)
    wait_until(lambda: sub.packets(frame[:12]), what="the packet-in")
    (p,) = sub.packets(frame[:12])
    assert (p.bridge, p.in_port, p.vlan, p.cookie, p.reason, p.hook) == (
        "br0", "c1", 10, 0x77, pb.PacketIn.ACTION, "tc")
    assert (p.data, p.total_len) == (frame[:64], len(frame))
    rule = [f for f in h.json("dump-flows", "br0") if f["priority"] == 100][0]
    assert rule["actions"] == "controller:64,normal" and rule["n_packets"] >= 1

    # `vswctl packet-in` prints it (a second subscriber: both get it)
    n = started(h)
    proc = subprocess.Popen([VSWCTL, "--socket", h.socket, "packet-in", "br0", "-n", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    h._helpers.append(proc)  # killed by cleanup if the test fails
    wait_until(lambda: started(h) > n, what="vswctl's subscription")
    send(h, "c1", frame)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert re.fullmatch(
        rf"\S+ br0 c1 vlan 10 cookie 0x77 action len 80 \(64 sent\) {SRC} > ff:ff:ff:ff:ff:ff "
        rf"arp request {SUBNET}.11 > {SUBNET}.12\n", out), out
    wait_until(lambda: len(sub.packets(frame[:12])) == 2, what="the second packet-in")
    sub.close()


def test_the_table_miss_rule_and_a_tag_put_back(br):
    h = br
    h.vswctl("add-flow", "br0", "cookie=0x5,priority=0,actions=controller,normal")
    sub = Subscriber(h, [])  # every bridge
    frame = arp_request(f"{SUBNET}.11", f"{SUBNET}.12", pad=200)  # longer than 128
    send(h, "c1", frame)
    # a tagged frame on the trunk: the kernel holds its tag outside the frame at TC; the
    # packet-in has it back in place
    tagged = arp_request(f"{SUBNET}.13", f"{SUBNET}.12", vlan=20)
    send(h, "c3", tagged)
    wait_until(lambda: len(sub.packets(frame[:12])) == 2, what="the packet-ins")
    p, q = sub.packets(frame[:12])
    assert (p.in_port, p.vlan, p.cookie, p.reason) == ("c1", 10, 0x5, pb.PacketIn.TABLE_MISS)
    assert (p.data, p.total_len) == (frame[:128], len(frame))
    assert (q.in_port, q.vlan, q.reason) == ("c3", 20, pb.PacketIn.TABLE_MISS)
    assert (q.data, q.total_len) == (tagged, len(tagged))
    sub.close()


def test_unwatched_then_the_rate_limit_holds_and_counts_the_rest(br):
    h = br
    h.vswctl("add-flow", "br0", f"priority=100,dl_src={SRC},actions=controller")
    frame = arp_request(f"{SUBNET}.11", f"{SUBNET}.12")
    before = config(h)
    send(h, "c1", frame, count=10)  # nobody subscribed: counted, not sent
    wait_until(lambda: config(h).unwatched >= before.unwatched + 10, what="unwatched")
    assert config(h).sent == before.sent
    assert config(h).unwatched == before.unwatched + 10

    assert h.vswctl("set-packet-in-rate", "5").stdout == ""
    status = h.json("status")
    assert status["packet_in_rate_limit"] == 5
    sub = Subscriber(h, ["br0"])
    before = config(h)
    send(h, "c1", frame, count=200)  # ~0.2 s: a burst of 200
    wait_until(lambda: config(h).rate_limited + config(h).sent >= before.rate_limited
               + before.sent + 200, what="the counters")
    after = config(h)
    sent, limited = after.sent - before.sent, after.rate_limited - before.rate_limited
    assert sent + limited == 200
    # per CPU: a burst of one second's worth (5) and 5/s refill over ~0.2 s; two CPUs
    assert 5 <= sent <= 2 * (5 + 2), (sent, limited)
    wait_until(lambda: len(sub.packets(frame[:12])) == sent and sub.lost() == limited,
               what="the frames and the lost notice")
    assert after.ring_full == before.ring_full
    assert "packet-ins:" in h.vswctl("status").stdout
    sub.close()


def test_the_client_librarys_stream_gets_them(br):
    """vswapi.Switch.packet_ins (the controllers' library) against the real daemon."""
    from vswapi import Switch
    from vswapi.headers import decode

    h = br
    with Switch.connect(socket_path=h.socket) as sw:
        assert sw.set_packet_in_rate(50).rate_limit == 50
        assert sw.packet_in_config().rate_limit == 50
        h.vswctl("add-flow", "br0", "cookie=0x9,priority=100,arp,actions=controller")
        n = started(h)
        stream = sw.packet_ins(["br0"])
        frame = arp_request(f"{SUBNET}.12", f"{SUBNET}.11")
        got: list = []

        def read() -> None:  # packet-ins (pb.PacketIn) and Lost markers: ours only
            got.extend(p for p in stream if getattr(p, "data", b"")[:12] == frame[:12])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_until(lambda: started(h) > n, what="the library's subscription")
        send(h, "c2", frame)
        wait_until(lambda: got, what="the packet-in")
        stream.close()
        reader.join(10)
    p = got[0]
    assert (p.in_port, p.vlan, p.cookie, p.data) == ("c2", 10, 0x9, frame)
    assert decode(p.data)["arp_op"] == "request"
