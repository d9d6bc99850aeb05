"""Send raw Ethernet frames on an interface (AF_PACKET), e.g. frames too short to parse.

    rawsend.py IFACE HEXFRAME [COUNT]
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> int:
    iface, frame, count = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3:4] and
                                                                       sys.argv[3] or 1)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    for _ in range(count):
        sock.send(frame)
        time.sleep(0.001)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
