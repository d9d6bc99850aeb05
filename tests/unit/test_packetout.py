"""Packet-out (SendPacket): where the frame goes (transmitted on, or received by, which
interface), frames built from header values, and the refusals; vswctl send-packet."""

from __future__ import annotations

import errno

import pytest
from fakes import make_rig
from test_vswctl import daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb
from vswctl.commands import InputError, frame_bytes
from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound
from vswitchd.model import BridgeSpec, PortSpec

ARP = bytes.fromhex("ffffffffffff020000000001080600010800060400010200000000010a000001"
                    "0000000000000a000002") + bytes(18)


class FakePackets:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object, bytes]] = []
        self.fail: OSError | None = None

    def transmit(self, ifname: str, frame: bytes) -> None:
        if self.fail:
            raise self.fail
        self.sent.append(("transmit", ifname, frame))

    def receive(self, ifindex: int, frame: bytes) -> None:
        if self.fail:
            raise self.fail
        self.sent.append(("receive", ifindex, frame))


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"))
    r.packets = FakePackets()
    r.switch = r.new_switch()
    r.switch._packets = r.packets
    r.links.host_ips.add("192.0.2.1")
    r.switch.create_bridge(BridgeSpec("br0"))
    r.switch.create_port("br0", PortSpec("vx0", "vxlan", vni=100, local="192.0.2.1"))
    r.switch.create_port("br0", PortSpec("c1", netns="c1"))  # MTU 1450, the tunnel's
    return r


def test_out_of_a_port_is_transmitted_on_it_into_from_a_port_is_received_by_it(rig):
    sw, ifx = rig.switch, rig.links.get
    assert sw.send_packet("br0", out_port="c1", data=ARP) == len(ARP)
    assert sw.send_packet("br0", in_port="c1", data=ARP) == len(ARP)
    # the host's port: out = delivered to the host, in = sent by the host
    sw.send_packet("br0", out_port="br0", data=ARP)
    sw.send_packet("br0", in_port="br0", data=ARP)
    assert rig.packets.sent == [("transmit", "c1", ARP), ("receive", ifx("c1").ifindex, ARP),
                                ("receive", ifx("br0").ifindex, ARP), ("transmit", "br0", ARP)]


def test_a_frame_from_header_values(rig):
    n = rig.switch.send_packet("br0", in_port="c1",
                               packet={"dl_dst": ("02:00:00:00:00:09", ""), "dl_type": 0x0800,
                                       "nw_proto": 17, "nw_dst": "10.0.0.9", "tp_dst": (53, 0)})
    (_how, _where, frame), = rig.packets.sent
    assert n == len(frame) and frame[:6] == bytes.fromhex("020000000009")
    assert frame[12:14] == b"\x08\x00" and frame[23] == 17 and frame[36:38] == b"\x00\x35"


@pytest.mark.parametrize("kwargs,error,words", [
    ({"out_port": "c1", "data": ARP[:13]}, InvalidArgument, "13 bytes"),
    ({"out_port": "c1", "data": ARP + bytes(1450 + 18 - len(ARP) + 1)}, InvalidArgument,
     "1468 bytes on c1"),
    ({"out_port": "nope", "data": ARP}, NotFound, "port nope"),
    ({"out_port": "vx0", "data": ARP}, FailedPrecondition, "tunnel port"),
    ({"in_port": "vx0", "data": ARP}, FailedPrecondition, "tunnel port"),
    ({"data": ARP}, InvalidArgument, "out_port"),
    ({"out_port": "c1", "in_port": "c1", "data": ARP}, InvalidArgument, "one of them"),
    ({"out_port": "c1"}, InvalidArgument, "data"),
    ({"in_port": "c1", "packet": {"nw_dst": "10.0.0.0/8", "dl_type": 0x800}},
     InvalidArgument, "exact value"),
])
def test_bad_requests_are_refused_and_nothing_is_sent(rig, kwargs, error, words):
    with pytest.raises(error, match=words):
        rig.switch.send_packet("br0", **kwargs)
    assert rig.packets.sent == []


def test_kernel_refusals_name_the_port(rig):
    rig.packets.fail = OSError(errno.ENETDOWN, "Network is down")
    with pytest.raises(FailedPrecondition, match="out_port c1 is down"):
        rig.switch.send_packet("br0", out_port="c1", data=ARP)
    rig.links.delete("c1")
    with pytest.raises(FailedPrecondition, match="c1 is missing"):
        rig.switch.send_packet("br0", out_port="c1", data=ARP)


@pytest.mark.parametrize("text,data", [
    ("ffffffffffff0200", bytes.fromhex("ffffffffffff0200")),
    ("0xff:ff:ff:ff:ff:ff 02 00", bytes.fromhex("ffffffffffff0200")),
    ("arp", None),
    ("dl_dst=02:00:00:00:00:02,udp", None),
])
def test_vswctl_tells_hex_from_a_packet_spec(text, data):
    assert frame_bytes(text) == data


def test_vswctl_odd_hex_is_a_usage_error():
    with pytest.raises(InputError, match="odd number"):
        frame_bytes("fff")


def test_vswctl_send_packet(daemon):  # noqa: F811
    daemon.fake.responses["SendPacket"] = pb.SendPacketResponse(length=60)
    data = daemon.json("send-packet", "br0", "--out", "c1", ARP.hex())
    req = daemon.fake.only("SendPacket")
    assert (req.out_port, req.data) == ("c1", ARP)
    assert data == {"bridge": "br0", "out_port": "c1", "in_port": "", "length": 60}
    daemon.fake.requests.clear()
    daemon.json("send-packet", "br0", "--in", "c1", "dl_dst=02:00:00:00:00:02,arp")
    req = daemon.fake.only("SendPacket")
    assert req.in_port == "c1" and req.packet.dl_type == 0x806
    rc, _out, err = daemon.run("send-packet", "br0", "ffff")
    assert rc == 1 and "--out PORT" in err
