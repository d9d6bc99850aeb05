"""Frames the switch sends for a controller (packet-out): transmitted on an interface (it
leaves by that port: a veth's container receives it, a TAP's VM reads it, a NIC puts it on the
wire), or received on one (it enters the switch as if the port had received it: see
vswitchd.datapath.inject)."""

from __future__ import annotations

import socket

from vswitchd.datapath.inject import Injector


class PacketIo:
    def __init__(self) -> None:
        self._injector: Injector | None = None

    def transmit(self, ifname: str, frame: bytes) -> None:
        """Send FRAME out of IFNAME as it is (an AF_PACKET raw socket: no header is added).
        OSError as the kernel reports it (ENETDOWN: the interface is down)."""
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
            s.sendto(frame, (ifname, 0))

    def receive(self, ifindex: int, frame: bytes) -> None:
        """FRAME enters the stack as if IFINDEX received it."""
        if self._injector is None:
            self._injector = Injector()
        self._injector.receive(ifindex, frame)

    def close(self) -> None:
        if self._injector is not None:
            self._injector.close()
