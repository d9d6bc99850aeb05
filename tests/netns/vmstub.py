"""A VM stand-in: holds a TAP device open as QEMU would and runs a minimal IPv4 stack on it.

It answers ARP for its address, ICMP echo requests, and UDP datagrams on port 7 (echo). With
--ping IP it also originates pings (resolving the MAC by ARP first) and exits 0 if all of them
were answered. Run it in the network namespace that holds the TAP device.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x0100
BCAST = b"\xff" * 6


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def open_tap(name: str, multi_queue: bool = False) -> int:
    """One queue of TAP NAME; a multi-queue TAP must be opened with IFF_MULTI_QUEUE."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    flags = IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                      src, dst)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


class Stub:
    def __init__(self, fd: int, mac: bytes, ip: bytes) -> None:
        self.fd, self.mac, self.ip = fd, mac, ip
        self.arp: dict[bytes, bytes] = {}
        self.replies: set[int] = set()

    def send(self, dst_mac: bytes, ethertype: int, payload: bytes) -> None:
        os.write(self.fd, dst_mac + self.mac + struct.pack("!H", ethertype) + payload)

    def arp_request(self, target: bytes) -> None:
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, self.mac, self.ip, b"\0" * 6,
                           target)
        self.send(BCAST, 0x0806, body)

    def ping(self, target: bytes, seq: int) -> None:
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x7653, seq) + b"vmstub-ping"
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        self.send(self.arp[target], 0x0800, ipv4(self.ip, target, 1, icmp))

    def handle(self, frame: bytes) -> None:
        if len(frame) < 14 or frame[:6] not in (self.mac, BCAST):
            return
        ethertype = struct.unpack("!H", frame[12:14])[0]
        src_mac, body = frame[6:12], frame[14:]
        if ethertype == 0x0806 and len(body) >= 28:
            op, sha, spa, tpa = struct.unpack("!6xH6s4s6x4s", body[:28])
            self.arp[spa] = sha
            if op == 1 and tpa == self.ip:
                reply = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, self.mac, self.ip,
                                    sha, spa)
                self.send(sha, 0x0806, reply)
        elif ethertype == 0x0800 and len(body) >= 20 and body[16:20] == self.ip:
            ihl = (body[0] & 0xF) * 4
            proto, src = body[9], body[12:16]
            payload = body[ihl: struct.unpack("!H", body[2:4])[0]]
            self.arp[src] = src_mac
            if proto == 1 and payload[:1] == b"\x08":  # echo request -> reply
                icmp = b"\x00\x00\x00\x00" + payload[4:]
                icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
                self.send(src_mac, 0x0800, ipv4(self.ip, src, 1, icmp))
            elif proto == 1 and payload[:1] == b"\x00":  # echo reply to our ping
                self.replies.add(struct.unpack("!H", payload[6:8])[0])
            elif proto == 17 and len(payload) >= 8:
                sport, dport = struct.unpack("!HH", payload[:4])
                if dport == 7:
                    data = payload[8:]
                    udp = struct.pack("!HHHH", 7, sport, 8 + len(data), 0) + data
                    self.send(src_mac, 0x0800, ipv4(self.ip, src, 17, udp))

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                self.handle(os.read(self.fd, 65536))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tap", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--ping", help="ping this address, exit 0 if every echo was answered")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--multi-queue", action="store_true",
                   help="open a multi-queue TAP (a second queue is attached and closed first)")
    p.add_argument("--lifetime", type=float, default=300.0, help="serve at most this long")
    args = p.parse_args()
    if args.multi_queue:  # a second queue attaches (only on a multi-queue TAP); then closes
        os.close(open_tap(args.tap, True))  # so that every frame reaches the queue we read
    stub = Stub(open_tap(args.tap, args.multi_queue), bytes.fromhex(args.mac.replace(":", "")),
                ipaddress.IPv4Address(args.ip).packed)
    print("ready", flush=True)
    if not args.ping:
        stub.pump(args.lifetime)
        return 0
    target = ipaddress.IPv4Address(args.ping).packed
    for _ in range(20):
        if target in stub.arp:
            break
        stub.arp_request(target)
        stub.pump(0.25)
    if target not in stub.arp:
        print(f"no ARP reply from {args.ping}", file=sys.stderr)
        return 1
    for seq in range(1, args.count + 1):
        stub.ping(target, seq)
        stub.pump(0.3)
    stub.pump(1.0)
    missing = set(range(1, args.count + 1)) - stub.replies
    print(f"{args.count - len(missing)}/{args.count} replies", flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
