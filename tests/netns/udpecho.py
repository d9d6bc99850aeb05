"""UDP helpers for namespace tests.

`serve PORT [SECONDS]`: echo datagrams back. `ask HOST PORT`: exit 0 on an echo.
`count PORT SECONDS`: print "ready", then the number of datagrams received in SECONDS.
"""

from __future__ import annotations

import socket
import sys
import time


def serve(port: int, lifetime: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(1.0)
    print("ready", flush=True)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        try:
            data, peer = sock.recvfrom(65536)
        except TimeoutError:
            continue
        sock.sendto(data, peer)
    return 0


def ask(host: str, port: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    payload = f"vswitchd-test-{time.monotonic_ns()}".encode()
    for _ in range(5):
        sock.sendto(payload, (host, port))
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            continue
        if data == payload:
            return 0
    print(f"no UDP echo from {host}:{port}", file=sys.stderr)
    return 1


def count(port: int, seconds: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A burst from a packet generator must not overrun the buffer (SO_RCVBUFFORCE: root).
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.2)
    print("ready", flush=True)
    received, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.recvfrom(65536)
        except TimeoutError:
            continue
        received += 1
    print(received, flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "count":
        sys.exit(count(int(sys.argv[2]), float(sys.argv[3])))
    if sys.argv[1] == "serve":
        sys.exit(serve(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 300.0))
    sys.exit(ask(sys.argv[2], int(sys.argv[3])))
