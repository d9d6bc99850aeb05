"""Packet-out (SendPacket): a controller's frame leaves by a port, or enters the switch as if a
port had received it (then flows, VLANs and the FDB apply and its source is learned).

The bridge's own name is the host's port: "out" of it delivers the frame to the host (received
on the bridge device), "in" from it is a frame the host sends (transmitted on the bridge
device, where the pipeline takes it at TC egress, as the host's own frames). A tunnel port can
do neither: a frame from or to a tunnel needs a VTEP, which a plain frame does not carry.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound, clip
from vswitchd.seams import PacketIoApi
from vswitchd.switch.context import Context
from vswitchd.switch.tunnels import TUNNEL_TYPES
from vswitchd.trace import frames
from vswitchd.trace.packet import frame_spec, packet_match

ETH_HLEN = 14
VLAN_HLEN = 4
DEFAULT_MTU = 1500  # when the interface does not say
LIVE_FRAME_SURE = 3000  # live frames up to this size always fit (the limit is 3408 on x86-64)
ENOTSUPP = 524  # the kernel's own 'not supported' (no errno name in Python)


class PacketOut:
    def __init__(self, ctx: Context, packets: Callable[[], PacketIoApi]) -> None:
        self.ctx = ctx
        self._packets = packets

    def send(self, bridge: str, out_port: str = "", in_port: str = "",
             data: bytes | None = None, packet: dict[str, object] | None = None) -> int:
        """Send the frame (DATA, or built from PACKET's exact header values); its length."""
        if bool(out_port) == bool(in_port):
            raise InvalidArgument("where", out_port or in_port,
                                  "give the port the frame leaves by (out_port) or the one it "
                                  "enters by (in_port), one of them")
        if (data is None) == (packet is None):
            raise InvalidArgument("frame", "", "give the frame's bytes (data) or its header "
                                  "values (packet), one of them")
        br = self.ctx.bridge(bridge)
        name = out_port or in_port
        field = "out_port" if out_port else "in_port"
        if name != br.name:
            if name not in br.ports:
                raise NotFound(f"port {clip(name)} does not exist on bridge {br.name}")
            if br.ports[name].type in TUNNEL_TYPES:
                raise FailedPrecondition(
                    f"{name} is a tunnel port: a frame to or from it needs a remote VTEP; send "
                    "it into the bridge from another port (in_port) and let the FDB choose")
        info = self.ctx.links.get(name)
        if info is None:
            why = self.ctx.missing.get(name, "interface not present")
            raise FailedPrecondition(f"port {name} is missing ({why}): nothing can be sent")
        if packet is not None:
            m = packet_match({**packet, "in_port": name}, bridge=br.name,
                             ports={br.name, *br.ports})
            data = frames.build(frame_spec(m))
        assert data is not None
        self._check_length(data, name, info.mtu or DEFAULT_MTU)
        host = name == br.name
        if (out_port and not host) or (in_port and host):
            self._transmit(field, name, data)
        else:
            self._receive(field, name, info.ifindex, data)
        return len(data)

    @staticmethod
    def _check_length(data: bytes, name: str, mtu: int) -> None:
        """What the port could carry on the wire: an Ethernet header to MTU + 14 bytes, MTU + 18
        with an 802.1Q tag (an AF_PACKET socket refuses more with EMSGSIZE)."""
        tagged = len(data) >= ETH_HLEN and int.from_bytes(data[12:14], "big") == frames.ETH_P_8021Q
        most = mtu + ETH_HLEN + (VLAN_HLEN if tagged else 0)
        if not ETH_HLEN <= len(data) <= most:
            raise InvalidArgument(
                "data", f"{len(data)} bytes",
                f"a frame is {ETH_HLEN} (an Ethernet header) to {mtu + ETH_HLEN} bytes on "
                f"{name} (MTU {mtu} + {ETH_HLEN}), {mtu + ETH_HLEN + VLAN_HLEN} with an 802.1Q "
                "tag")

    def _transmit(self, field: str, name: str, data: bytes) -> None:
        try:
            self._packets().transmit(name, data)
        except OSError as exc:
            if exc.errno == errno.ENETDOWN:
                raise FailedPrecondition(f"{field} {name} is down: it cannot send") from None
            if exc.errno == errno.EMSGSIZE:  # its MTU changed since we looked
                raise InvalidArgument("data", f"{len(data)} bytes",
                                      f"longer than {name}'s MTU allows") from None
            raise FailedPrecondition(f"sending the frame on {name} failed: "
                                     f"{exc.strerror}") from None

    def _receive(self, field: str, name: str, ifindex: int, data: bytes) -> None:
        try:
            self._packets().receive(ifindex, data)
        except OSError as exc:
            if exc.errno == errno.EINVAL and len(data) > LIVE_FRAME_SURE:
                # live frames must fit one page with the kernel's headroom and skb tail
                raise InvalidArgument(
                    "data", f"{len(data)} bytes",
                    f"the kernel hands {name} at most about 3.4 KB as a received frame "
                    "(BPF_PROG_TEST_RUN live frames fit one page): send a shorter one") from None
            if exc.errno in (errno.EPERM, ENOTSUPP, errno.EOPNOTSUPP, errno.EINVAL):
                raise FailedPrecondition(
                    f"the kernel refused to inject the frame on {name} ({exc.strerror}): "
                    "injecting a received frame needs BPF_PROG_TEST_RUN's live frames (Linux "
                    "5.18+)") from None
            if exc.errno == errno.ENETDOWN:
                raise FailedPrecondition(f"{field} {name} is down: it cannot receive") from None
            raise FailedPrecondition(f"injecting the frame on {name} failed: "
                                     f"{exc.strerror}") from None
