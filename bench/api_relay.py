"""What the Unix sockets' relay (vswitchd.api.peers: SO_PEERCRED for roles and the audit log)
adds to a call. As root, from the repo:

    .venv/bin/python bench/api_relay.py [--calls 2000]

One real vswitchd (tests/netns/harness.py); the same unary call (grpc.health.v1 Check, which
needs no role, so gRPC's private socket answers it too) made --calls times through the admin
socket (client -> relay -> gRPC) and straight to gRPC's private socket, in alternating blocks
of 100 on one connection each: median and p99 of each, and the difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from tests.netns.harness import Host  # noqa: E402

BLOCK = 100


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vswrelay-", dir="/tmp") as d:
        host = Host(Path(d))
        try:
            host.start()
            paths = {"relayed (admin socket)": host.socket,
                     "direct (gRPC's socket)": f"{host.socket}.grpc"}
            times: dict[str, list[float]] = {name: [] for name in paths}
            channels = {name: grpc.insecure_channel(f"unix:{path}") for name, path in
                        paths.items()}
            stubs = {name: health_pb2_grpc.HealthStub(ch) for name, ch in channels.items()}
            request = health_pb2.HealthCheckRequest()
            for stub in stubs.values():
                stub.Check(request, timeout=10)  # connected
            for _ in range(max(1, args.calls // BLOCK)):
                for name, stub in stubs.items():
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        stub.Check(request, timeout=10)
                        times[name].append(time.perf_counter() - t0)
            for ch in channels.values():
                ch.close()
        finally:
            host.cleanup()
    medians = {}
    for name, values in times.items():
        values.sort()
        medians[name] = statistics.median(values) * 1e6
        print(f"{name:24} median {medians[name]:7.0f} us   p99 "
              f"{values[int(len(values) * 0.99)] * 1e6:7.0f} us   ({len(values)} calls)")
    relayed, direct = medians.values()
    print(f"the relay adds {relayed - direct:.0f} us to a call's median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
