"""A TCP peer for the NAT test (stdlib only).

    tcppeer.py serve PORT      prints "ready", accepts one connection, answers "peer=IP" (the
                               source address it saw) and prints the same line
    tcppeer.py connect IP PORT prints what the server answered; exit 0 if it answered
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    if sys.argv[1] == "serve":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", int(sys.argv[2])))
        srv.listen(1)
        srv.settimeout(60)
        print("ready", flush=True)
        conn, (ip, _port) = srv.accept()
        line = f"peer={ip}"
        conn.sendall(line.encode() + b"\n")
        conn.close()
        print(line, flush=True)
        return 0
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5) as conn:
        data = conn.makefile().readline().strip()
    print(data, flush=True)
    return 0 if data.startswith("peer=") else 1


if __name__ == "__main__":
    sys.exit(main())
