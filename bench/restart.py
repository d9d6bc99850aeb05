"""Figures for the hitless restart, printed, not asserted. Run as root from the repo:

    .venv/bin/python bench/restart.py [--cycles 10] [--ports 100] [--deletions 10]

1. packets lost (and reordered) in a 1000 packet/s UDP stream between two containers across N
   SIGKILL + start cycles of the daemon;
2. time from start to ready (status answers; and the daemon's own "ready in" figure) with an
   existing datapath of P ports;
3. time from an external `ip link del` of a TAP port to the daemon having re-created it (polled
   over gRPC every 2 ms).

Everything runs in namespaces of its own (tests/netns/harness.py) and is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from tests.netns.harness import SYSTEM_PYTHON, Host  # noqa: E402

STREAM = str(ROOT / "tests" / "netns" / "udpstream.py")


def lost_across_restarts(host: Host, cycles: int) -> None:
    host.vswctl("add-br", "br0", "--ip", "10.90.0.1/24")
    for name, last in (("c1", 11), ("c2", 12)):
        host.vswctl("add-port", "br0", name, "--netns", host.name(name),
                    "--ip", f"10.90.0.{last}/24")
    assert host.ping(host.name("c1"), "10.90.0.12")
    recv = host.spawn_in(host.name("c2"), SYSTEM_PYTHON, STREAM, "recv", "7788")
    send = host.spawn_in(host.name("c1"), SYSTEM_PYTHON, STREAM, "send", "10.90.0.12", "7788",
                         "1000")
    starts = []
    time.sleep(1)
    for _ in range(cycles):
        host.stop(signal.SIGKILL)
        time.sleep(0.3)
        starts.append(host.start())
        time.sleep(0.3)
    send.send_signal(signal.SIGTERM)
    json.loads(send.stdout.readline())
    r = json.loads(recv.stdout.readline())
    print(f"kill/restart cycles:              {cycles} (SIGKILL, 0.3 s down, start, 0.3 s up)")
    print(f"  UDP packets sent at 1000/s:     {r['sent']}")
    print(f"  lost:                           {r['lost']}")
    print(f"  reordered:                      {r['reordered']}")
    print(f"  duplicated:                     {r['duplicates']}")
    print(f"  start to ready (2 ports), s:    median {statistics.median(starts):.2f}, "
          f"max {max(starts):.2f}")


def ready_with_ports(host: Host, ports: int) -> None:
    host.vswctl("add-br", "big")
    for i in range(ports):
        host.vswctl("add-port", "big", f"tp{i}", "--type", "tap")
    times, own = [], []
    for _ in range(3):
        host.stop()
        mark = len(host.log())
        times.append(host.start())
        found = re.findall(r"ready in ([0-9.]+)s", host.log()[mark:])
        if found:
            own.append(float(found[-1]))
    print(f"start to ready, existing datapath of {ports} ports (+2 above), 3 starts:")
    print(f"  until `vswctl status` answers, s: {', '.join(f'{t:.2f}' for t in times)}")
    print(f"  daemon's own 'ready in', s:       {', '.join(f'{t:.2f}' for t in own)}")


def notice_deletion(host: Host, rounds: int) -> None:
    from vswapi import switch_pb2 as pb
    from vswapi.client import connect

    host.vswctl("add-br", "nb")
    host.vswctl("add-port", "nb", "vt0", "--type", "tap")
    took = []
    with connect(socket_path=host.socket) as c:
        for _ in range(rounds):
            old = c.GetPort(pb.GetPortRequest(bridge="nb", name="vt0"), timeout=5).ifindex
            t0 = time.monotonic()
            subprocess.run(["nsenter", f"--net=/run/netns/{host.ns}", "ip", "link", "del", "vt0"],
                           check=True)
            while True:
                p = c.GetPort(pb.GetPortRequest(bridge="nb", name="vt0"), timeout=5)
                if p.ifindex not in (0, old) and p.state in ("up", "down"):
                    break
                if time.monotonic() - t0 > 5:
                    raise RuntimeError("not re-created within 5 s")
                time.sleep(0.002)
            took.append((time.monotonic() - t0) * 1000)
            time.sleep(0.2)
    print(f"external `ip link del` of a TAP port to re-created, {rounds} rounds, ms:")
    print(f"  median {statistics.median(took):.0f}, min {min(took):.0f}, max {max(took):.0f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--ports", type=int, default=100)
    ap.add_argument("--deletions", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vsw-bench-") as tmp:
        host = Host(Path(tmp))
        try:
            host.start()
            lost_across_restarts(host, a.cycles)
            ready_with_ports(host, a.ports)
            notice_deletion(host, a.deletions)
        finally:
            host.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
