"""An ARP responder: the bridge sends every ARP frame to this controller (packet-in), which
learns who is where from them, answers a request itself when it knows the target (a proxy, as
OVN's ARP responder does), floods the others out of the other ports (packet-out), and installs
a unicast rule for each host it learns, so their traffic is switched by the flow table:

    python clients/examples/arp_responder.py br0 [--socket PATH]

Rules (cookie 0xa4):  priority=1000,arp,actions=controller:64
                      priority=500,dl_dst=MAC,actions=output:PORT     (one per host learned)
Untagged bridges: ARP inside 802.1Q tags is passed on, not answered.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import struct
import sys

from vswapi import Lost, Switch, pb

log = logging.getLogger("arp_responder")
COOKIE = 0xA4
ARP_HEADER = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen op sha spa tha tpa
ETH_ARP = 0x0806


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_frame(dst: bytes, src: bytes, op: int, sha: bytes, spa: bytes, tha: bytes,
              tpa: bytes) -> bytes:
    frame = dst + src + struct.pack("!H", ETH_ARP) + ARP_HEADER.pack(1, 0x0800, 6, 4, op,
                                                                     sha, spa, tha, tpa)
    return frame + bytes(60 - len(frame))  # padded to the Ethernet minimum


class ArpResponder:
    def __init__(self, sw: Switch, bridge: str) -> None:
        self.sw, self.bridge = sw, bridge
        self.hosts: dict[bytes, tuple[bytes, str]] = {}  # IPv4 -> (MAC, port)
        self.stream = None

    def start(self) -> None:
        self.sw.delete_flows(self.bridge, cookie=COOKIE, cookie_mask=(1 << 64) - 1)
        self.sw.add_flows(self.bridge, [f"cookie={COOKIE:#x},priority=1000,arp,"
                                        "actions=controller:64"])

    def learn(self, ip: bytes, mac: bytes, port: str) -> None:
        if ip == bytes(4) or self.hosts.get(ip) == (mac, port):
            return
        self.hosts[ip] = (mac, port)
        log.info("%s is %s on %s", ipaddress.IPv4Address(ip), mac_text(mac), port)
        if port != self.bridge:  # the host's own frames keep the normal path
            self.sw.add_flows(self.bridge, [f"cookie={COOKIE:#x},priority=500,"
                                            f"dl_dst={mac_text(mac)},actions=output:{port}"])

    def flood(self, frame: bytes, in_port: str) -> None:
        for port in [self.bridge, *(p.name for p in self.sw.list_ports(self.bridge))]:
            if port != in_port:
                self.sw.send_packet(self.bridge, frame, out_port=port)

    def handle(self, pkt: pb.PacketIn) -> None:
        data = pkt.data
        if len(data) < 14 + ARP_HEADER.size or data[12:14] != b"\x08\x06":
            return  # tagged, or cut too short
        _ht, _pt, _hl, _pl, op, sha, spa, tha, tpa = ARP_HEADER.unpack_from(data, 14)
        self.learn(spa, sha, pkt.in_port)
        known = self.hosts.get(tpa)
        if op == 1 and known is not None and known[1] != pkt.in_port:
            reply = arp_frame(sha, known[0], 2, known[0], tpa, sha, spa)
            self.sw.send_packet(self.bridge, reply, out_port=pkt.in_port)
            log.info("answered who-has %s for %s", ipaddress.IPv4Address(tpa), pkt.in_port)
        elif op == 2 and tha in {mac for mac, _ in self.hosts.values()}:
            port = next(p for mac, p in self.hosts.values() if mac == tha)
            self.sw.send_packet(self.bridge, data[:42] + bytes(18), out_port=port)
        else:
            self.flood(data[:42] + bytes(18), pkt.in_port)

    def run(self) -> None:
        self.start()
        self.stream = self.sw.packet_ins([self.bridge])
        for item in self.stream:
            if isinstance(item, Lost):
                log.warning("%d packet-ins lost (rate limit): their hosts will ask again",
                            item.count)
            elif item.total_len <= len(item.data):  # whole (ARP fits in 64 bytes)
                self.handle(item)

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bridge")
    ap.add_argument("--socket", help="the daemon's socket (default $VSWITCHD_SOCKET or "
                                     "/run/vswitchd/vswitchd.sock)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with Switch.connect(socket_path=args.socket) as sw:
        responder = ArpResponder(sw, args.bridge)
        signal.signal(signal.SIGTERM, lambda *_: responder.stop())
        try:
            responder.run()
        except KeyboardInterrupt:
            pass
        finally:
            sw.delete_flows(args.bridge, cookie=COOKIE, cookie_mask=(1 << 64) - 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
