import ipaddress
import struct

import pytest

from vswitchd.errors import InvalidArgument
from vswitchd.trace.frames import FrameSpec, _csum, build


def test_udp_ipv4_frame_is_well_formed():
    f = build(FrameSpec(dl_src="02:00:00:00:00:0a", dl_dst="ff:ff:ff:ff:ff:ff", dl_type=0x0800,
                        nw_src="10.1.0.1", nw_dst="10.1.0.2", nw_proto=17, tp_dst=53))
    assert f[:6] == b"\xff" * 6 and f[6:12] == bytes.fromhex("02000000000a")
    assert struct.unpack("!H", f[12:14])[0] == 0x0800
    ip = f[14:34]
    assert _csum(ip) == 0  # a valid header sums to zero
    assert ip[9] == 17 and ip[12:16] == ipaddress.IPv4Address("10.1.0.1").packed
    total = struct.unpack("!H", ip[2:4])[0]
    udp = f[34:14 + total]
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    assert (sport, dport, length) == (1024, 53, len(udp))
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    assert _csum(pseudo + udp) == 0
    assert len(f) >= 60


def test_tcp_ipv6_tagged_frame():
    f = build(FrameSpec(dl_type=0x86DD, dl_vlan=10, nw_proto=6, ipv6_dst="fd00::9", tp_dst=80))
    assert struct.unpack("!HH", f[12:16]) == (0x8100, 10)
    assert struct.unpack("!H", f[16:18])[0] == 0x86DD
    ip6 = f[18:58]
    assert ip6[6] == 6 and ip6[24:40] == ipaddress.IPv6Address("fd00::9").packed
    plen = struct.unpack("!H", ip6[4:6])[0]
    tcp = f[58:58 + plen]
    assert struct.unpack("!H", tcp[2:4])[0] == 80
    pseudo = ip6[8:40] + struct.pack("!IxxxB", plen, 6)
    assert _csum(pseudo + tcp) == 0


def test_icmp_arp_and_plain_l2():
    icmp = build(FrameSpec(dl_type=0x0800, nw_proto=1))
    assert icmp[34] == 8 and _csum(icmp[34:14 + struct.unpack("!H", icmp[16:18])[0]]) == 0
    arp = build(FrameSpec(dl_type=0x0806, nw_src="10.0.0.7", nw_dst="10.0.0.8"))
    assert struct.unpack("!H", arp[20:22])[0] == 1  # request
    assert arp[28:32] == bytes([10, 0, 0, 7]) and arp[38:42] == bytes([10, 0, 0, 8])
    l2 = build(FrameSpec())
    assert struct.unpack("!H", l2[12:14])[0] == 0x88B5 and len(l2) == 60


def test_truncate_and_bad_values():
    assert len(build(FrameSpec(dl_type=0x0800, nw_proto=6, truncate=40))) == 40
    with pytest.raises(InvalidArgument, match="truncate"):
        build(FrameSpec(truncate=10))
    with pytest.raises(InvalidArgument, match="nw_dst"):
        build(FrameSpec(dl_type=0x0800, nw_dst="10.0.0.0/24"))
    with pytest.raises(InvalidArgument, match="dl_src"):
        build(FrameSpec(dl_src="zz"))
