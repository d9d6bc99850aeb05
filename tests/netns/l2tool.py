"""Raw Ethernet on the wire for VLAN tests (stdlib only, runs in a test namespace).

    l2tool.py sniff IFACE SECONDS     prints "ready", then after SECONDS one JSON list of the
                                      frames received: [src_mac, dst_mac, vlan, ethertype]
    l2tool.py send IFACE DST SRC VLAN [COUNT]
                                      sends COUNT (default 3) frames of EtherType 0x88b5 (local
                                      experimental), tagged with VLAN unless it is 0

The kernel may have taken a received 802.1Q tag out of the frame into the skb: PACKET_AUXDATA
(tp_vlan_tci with TP_STATUS_VLAN_VALID) gives it back, so tagged and untagged are told apart
whichever way the tag arrived.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
ETHERTYPE_TEST = 0x88B5


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def sniff(iface: str, seconds: float) -> list[list[object]]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((iface, 0))
    sock.settimeout(0.1)
    print("ready", flush=True)
    frames: list[list[object]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, anc, _flags, addr = sock.recvmsg(65536, socket.CMSG_SPACE(32))
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 14:
            continue
        vlan = 0
        ethertype = struct.unpack("!H", frame[12:14])[0]
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
                status, _len, _snap, _mac, _net, tci = struct.unpack("IIIHHH", data[:18])
                if status & TP_STATUS_VLAN_VALID:
                    vlan = tci & 0xFFF
        if vlan == 0 and ethertype == 0x8100 and len(frame) >= 18:  # tag still in the frame
            vlan = struct.unpack("!H", frame[14:16])[0] & 0xFFF
            ethertype = struct.unpack("!H", frame[16:18])[0]
        frames.append([mac_str(frame[6:12]), mac_str(frame[0:6]), vlan, ethertype])
    return frames


def send(iface: str, dst: str, src: str, vlan: int, count: int) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    tag = struct.pack("!HH", 0x8100, vlan) if vlan else b""
    frame = mac_bytes(dst) + mac_bytes(src) + tag + struct.pack("!H", ETHERTYPE_TEST)
    frame += b"vswitchd-vlan-test".ljust(46, b"\0")
    for _ in range(count):
        sock.send(frame)
        time.sleep(0.05)


def main() -> int:
    if sys.argv[1] == "sniff":
        frames = sniff(sys.argv[2], float(sys.argv[3]))
        print(json.dumps(frames), flush=True)
        return 0
    if sys.argv[1] == "send":
        count = int(sys.argv[6]) if len(sys.argv) > 6 else 3
        send(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), count)
        return 0
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
