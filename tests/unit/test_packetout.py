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
TAGGED = ARP[:12] + bytes.fromhex("8100000a") + ARP[12:]  # in VLAN 10


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
    ({"out_port": "c1", "data": ARP + bytes(1450 + 14 - len(ARP) + 1)}, InvalidArgument,
     "1465 bytes.*to 1464 bytes on c1"),
    ({"in_port": "c1", "data": TAGGED + bytes(1450 + 18 - len(TAGGED) + 1)}, InvalidArgument,
     "1469 bytes.*1468 with an 802.1Q tag"),
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


@pytest.mark.parametrize("frame,pad", [(ARP, 1450 + 14), (TAGGED, 1450 + 18)])
def test_the_longest_frame_is_what_the_port_carries_on_the_wire(rig, frame, pad):
    longest = frame + bytes(pad - len(frame))
    assert rig.switch.send_packet("br0", out_port="c1", data=longest) == pad
    with pytest.raises(InvalidArgument, match=f"data '{pad + 1} bytes'"):
        rig.switch.send_packet("br0", out_port="c1", data=longest + b"\0")


def test_a_jumbo_frame_the_kernel_cannot_inject_is_invalid(rig):
    rig.switch.create_bridge(BridgeSpec("br1"))  # br0's tunnel caps its ports' MTU
    rig.switch.create_port("br1", PortSpec("j1", netns="j1", mtu=9000))
    rig.packets.fail = OSError(errno.EINVAL, "Invalid argument")  # live frames fit one page
    with pytest.raises(InvalidArgument, match="data '4000 bytes'.*about 3.4 KB"):
        rig.switch.send_packet("br1", in_port="j1", data=ARP + bytes(4000 - len(ARP)))
    rig.packets.fail = None
    assert rig.switch.send_packet("br1", out_port="j1", data=ARP + bytes(9014 - len(ARP)))


def test_in_port_inside_the_packet_is_ignored(rig):
    rig.switch.send_packet("br0", out_port="c1", packet={"in_port": "vx0", "dl_type": 0x806})
    assert [(how, where) for how, where, _f in rig.packets.sent] == [("transmit", "c1")]


def test_kernel_refusals_name_the_port(rig):
    rig.packets.fail = OSError(errno.ENETDOWN, "Network is down")
    with pytest.raises(FailedPrecondition, match="out_port c1 is down"):
        rig.switch.send_packet("br0", out_port="c1", data=ARP)
    rig.packets.fail = OSError(errno.EMSGSIZE, "Message too long")  # its MTU changed meanwhile
    with pytest.raises(InvalidArgument, match="longer than c1's MTU"):
        rig.switch.send_packet("br0", out_port="c1", data=ARP)
    rig.packets.fail = OSError(errno.EINVAL, "Invalid argument")
    with pytest.raises(FailedPrecondition, match="live frames"):
        rig.switch.send_packet("br0", in_port="c1", data=ARP)
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
    assert not req.HasField("data")


def test_vswctl_send_packet_prints_what_it_sent(daemon):  # noqa: F811
    daemon.fake.responses["SendPacket"] = pb.SendPacketResponse(length=60)
    assert daemon.run("send-packet", "br0", "--out", "c1", ARP.hex()) == (
        0, "60 bytes out of c1\n", "")
    assert daemon.run("send-packet", "br0", "--in", "c1", "0x" + ARP.hex()) == (
        0, "60 bytes into br0 from c1\n", "")


@pytest.mark.parametrize("argv,words", [
    (["br0", ARP.hex()], "one of the arguments --out --in is required"),
    (["br0", "--out", "c1", "--in", "c2", ARP.hex()], "not allowed with argument"),
    (["br0", "--out", "c1", ARP.hex()[:-1]], "odd number of hex digits"),
    (["br0", "--out", "c1", "ffffffffffff02zz"], "neither hex ('z' is not a hex digit) nor"),
    (["br0", "--out", "c1", "dl_dst=02:00:00:00:00:02,nw_ttl=3"], "vswctl: unknown field nw_ttl"),
])
def test_vswctl_send_packet_usage_errors_send_nothing(daemon, argv, words):  # noqa: F811
    rc, _out, err = daemon.run("send-packet", *argv)
    assert rc == 1 and words in err, err
    assert daemon.fake.requests == []
