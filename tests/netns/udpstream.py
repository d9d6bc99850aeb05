"""A UDP stream with sequence numbers, for restart tests (runs under /usr/bin/python3).

    udpstream.py recv PORT             prints "ready"; at the end marker prints one JSON line:
                                       {"received", "lost", "reordered", "duplicates", "last"}
    udpstream.py send HOST PORT RATE   sends seq 0, 1, ... at RATE packets/s until SIGTERM, then
                                       the end marker (carrying the count) a few times; prints
                                       "ready" first and {"sent": N} last.

A packet counts as reordered when it arrives after a packet with a higher sequence number.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time

MAGIC_DATA, MAGIC_END = 0x5653_5701, 0x5653_57FF
HDR = struct.Struct("!IQ")


def recv(port: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    seen: set[int] = set()
    highest, reordered, duplicates, sent = -1, 0, 0, None
    sock.settimeout(120)
    while True:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        magic, seq = HDR.unpack_from(data)
        if magic == MAGIC_END:
            sent = seq
            sock.settimeout(0.5)  # drain late packets, then stop
            continue
        if magic != MAGIC_DATA:
            continue
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
    total = sent if sent is not None else highest + 1
    print(json.dumps({"received": len(seen), "lost": total - len(seen), "reordered": reordered,
                      "duplicates": duplicates, "sent": total}), flush=True)
    return 0


def send(host: str, port: int, rate: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    seq, t0, pad = 0, time.monotonic(), b"\0" * 64
    while not stop:
        due = t0 + seq / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        try:
            sock.sendto(HDR.pack(MAGIC_DATA, seq) + pad, (host, port))
        except OSError:
            pass  # e.g. a full queue: the receiver counts it lost
        seq += 1
    time.sleep(0.2)
    for _ in range(5):
        sock.sendto(HDR.pack(MAGIC_END, seq), (host, port))
        time.sleep(0.05)
    print(json.dumps({"sent": seq}), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        sys.exit(recv(int(sys.argv[2])))
    sys.exit(send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
