"""Count frames seen on an interface (AF_PACKET), for mirror tests.

`sniff.py IFACE SRC_MAC SECONDS`: prints "ready", then after SECONDS the number of frames
whose source MAC is SRC_MAC.
"""

from __future__ import annotations

import socket
import sys
import time

ETH_P_ALL = 0x0003


def main() -> int:
    iface, seconds = sys.argv[1], float(sys.argv[3])
    src = bytes.fromhex(sys.argv[2].replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    print("ready", flush=True)
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, addr = sock.recvfrom(65536)
        except TimeoutError:
            continue
        if addr[2] != socket.PACKET_OUTGOING and frame[6:12] == src:
            count += 1
    print(count, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
