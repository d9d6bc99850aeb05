"""The daemon's own cost (issue 16): memory, start, calls, del-br; printed next to the goals,
not asserted. As root, from the repo:

    .venv/bin/python bench/daemon_cost.py [--ports 1000] [--veths 100] [--status 20]

One real vswitchd (tests/netns/harness.py) in a namespace of its own, with a program cache of
its own (--cache-dir in the bench's temporary directory):

1. start to ready with an empty cache (the programs are compiled), polled in-process over gRPC
   every 20 ms; its VmRSS once ready. Stop; a second daemon (other state and pins, the same
   cache) started: ready with cached programs and no datapath yet. Stopped and cleaned up.
2. --veths ports, each a veth into a namespace of its own (`vswctl add-port br0 cN --netns
   ...` as a CreatePort call), on an ebpf bridge: each call's time at the client, in-process
   (the daemon's time plus a local gRPC round trip), median and p99.
3. TAP ports up to --ports in all, on bridges of 125 (a datapath bridge takes 128): the
   CreatePort median over the first and the last tenth (per-port cost flat?); VmRSS then,
   and 35 s later (after the daemon's periodic sweep has handed freed heap back).
4. `vswctl status`, --status times, a whole CLI process each: median wall time, next to the
   interpreter's floor without and with its site module (`python -S -c pass`, as vswctl's
   launcher starts it, and `python -c pass`).
5. Restart (SIGTERM, start) with every port in the state store and the datapath pinned: ready.
6. DeleteBridge of each TAP bridge: the total for all TAP ports.

Goals (issue 16) are printed beside each figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from bench.packet_rate import daemon_pid, memory, start_timed  # noqa: E402
from tests.netns.harness import VSWCTL, Host  # noqa: E402
from vswapi.controller import Switch  # noqa: E402

PER_BRIDGE = 125
RCU_EXPEDITED = "/sys/kernel/rcu_expedited"


def start_ready(host: Host, cache_dir: str) -> float:
    """Starts vswitchd in host's namespace with cache_dir; seconds until GetStatus answers."""
    return start_timed(host, "--cache-dir", cache_dir, timeout=300.0)


def rss(host: Host) -> float:
    return memory(daemon_pid(host))["VmRSS"]


def timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def wall(cmd: list[str], n: int) -> list[float]:
    return [timed(subprocess.run, cmd, check=True, capture_output=True) for _ in range(n)]


def run(args: argparse.Namespace, work: Path) -> list[str]:
    out: list[str] = [f"kernel {os.uname().release}, {RCU_EXPEDITED} = "
                      f"{Path(RCU_EXPEDITED).read_text().strip()} (TCX waits a grace period "
                      "a port attach and delete: bench/tc_hook_cost.py)"]
    cache = str(work / "cache")
    host = Host(work / "a")
    other = None
    try:
        cold = start_ready(host, cache)
        rss_start = rss(host)
        other = Host(work / "b")
        cached = start_ready(other, cache)
        other.stop()
        other.cleanup()
        other = None
        out += [f"start to ready, programs compiled (empty cache)  {cold:7.2f} s   goal <= 4 s",
                f"start to ready, programs from the cache          {cached:7.2f} s   goal <= 1 s",
                f"VmRSS once ready                                  {rss_start:7.1f} MiB "
                "goal <= 60"]

        sw = Switch.connect(host.socket)
        sw.create_bridge("vb", datapath="ebpf")
        veth = [timed(sw.create_port, "vb", f"c{i}", type="veth", netns=host.name(f"c{i}"))
                for i in range(args.veths)]
        out.append(f"CreatePort, veth into a new namespace ({args.veths}): median "
                   f"{ms(veth):.1f} ms, p99 {p99(veth):.1f} ms   goal <= 40 / <= 80 ms")

        taps: list[float] = []
        bridges = []
        for start in range(0, args.ports - args.veths, PER_BRIDGE):
            bridge = f"tb{start // PER_BRIDGE}"
            bridges.append(bridge)
            sw.create_bridge(bridge, datapath="ebpf")
            for i in range(start, min(start + PER_BRIDGE, args.ports - args.veths)):
                taps.append(timed(sw.create_port, bridge, f"tp{i}", type="tap"))
        tenth = max(1, len(taps) // 10)
        out.append(f"CreatePort, TAP, {len(taps)} after the veths: first tenth median "
                   f"{ms(taps[:tenth]):.1f} ms, last tenth {ms(taps[-tenth:]):.1f} ms   "
                   "goal: last <= first")
        rss_added = rss(host)
        time.sleep(35)  # the 30 s sweep hands freed heap back (release_free_memory)
        rss_ports = rss(host)
        out.append(f"VmRSS with {args.ports} ports: {rss_added:.1f} MiB right after the adds, "
                   f"{rss_ports:.1f} MiB 35 s later   goal <= 60; "
                   f"{(rss_ports - rss_start) * 1024 / args.ports:.1f} KiB a port")

        vswctl = [VSWCTL, "--socket", host.socket, "status"]
        status = wall(vswctl, args.status)
        floor = wall([sys.executable, "-S", "-c", "pass"], args.status)
        site_floor = wall([sys.executable, "-c", "pass"], args.status)
        out.append(f"vswctl status: median {ms(status):.1f} ms   goal <= 60 ms; python -S -c "
                   f"pass {ms(floor):.1f} ms, python -c pass {ms(site_floor):.1f} ms")

        host.stop()
        restart = start_ready(host, cache)
        out.append(f"restart to ready with {args.ports} ports pinned    {restart:7.2f} s   "
                   "goal <= 1 s")

        sw = Switch.connect(host.socket)
        t0 = time.perf_counter()
        for bridge in bridges:
            sw.delete_bridge(bridge)
        gone = time.perf_counter() - t0
        out.append(f"DeleteBridge of {len(bridges)} bridges, {len(taps)} TAP ports: "
                   f"{gone:.2f} s ({gone / max(1, len(taps)) * 1000:.1f} ms a port)   "
                   "goal: 1 000 ports <= 5 s")
    finally:
        for h in (host, other):
            if h is not None:
                h.stop()
                h.cleanup()
    return out


def run_printed(args: argparse.Namespace, run_in: Callable[[argparse.Namespace, Path], list[str]],
                prefix: str) -> int:
    """RUN_IN(args, a temporary directory) as root, its lines printed (bench/scale.py too)."""
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for line in run_in(args, Path(tmp)):
            print(line, flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=1000, help="ports in all (default 1000)")
    ap.add_argument("--veths", type=int, default=100,
                    help="of them, veths into namespaces (default 100)")
    ap.add_argument("--status", type=int, default=20, help="vswctl status runs (default 20)")
    return run_printed(ap.parse_args(), run, "vsw-cost-")


if __name__ == "__main__":
    sys.exit(main())
