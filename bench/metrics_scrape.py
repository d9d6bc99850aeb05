"""A Prometheus scrape of a switch with 1 000 ports (issue 15), printed, not asserted. As root:

    .venv/bin/python bench/metrics_scrape.py [--ports 1000] [--scrapes 20]

Method: two real vswitchd (tests/netns/harness.py), each in a namespace of its own with one
eBPF bridges, built side by side: one with `metrics: {address: 127.0.0.1:9476}`, one
without. Both get --ports TAP ports (every port has its counters in the datapath's per-CPU
maps, as a veth has; TAPs need no namespace each) on bridges of 125 ports (the datapath takes
128 a bridge), added over the API by a thread per daemon at the same time. Then a
client in the metrics daemon's namespace GETs /metrics --scrapes times, one after the other,
as Prometheus would: each scrape's time (request to last byte) and size. The daemons' RSS
(VmRSS) is read after the ports are in and after the scrapes: the metrics' added memory is the
difference between the two daemons.

Goal (issue 15): a 1 000-port scrape under 200 ms (the median is printed next to it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from tests.netns.harness import SYSTEM_PYTHON, Host  # noqa: E402
from vswapi.controller import Switch  # noqa: E402

ADDRESS = "127.0.0.1:9476"
GOAL_MS = 200.0
PER_BRIDGE = 125
SCRAPER = """
import json, sys, time, urllib.request
out = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    body = urllib.request.urlopen(sys.argv[1], timeout=30).read()
    out.append((time.perf_counter() - t0, len(body), body.count(b"\\n")))
print(json.dumps(out))
"""


def populate(sw: Switch, ports: int) -> list[float]:
    """PORTS TAP ports on bridges br0, br1 ... of PER_BRIDGE ports each; each CreatePort's
    time (s) at the client."""
    times = []
    for start in range(0, ports, PER_BRIDGE):
        bridge = f"br{start // PER_BRIDGE}"
        sw.create_bridge(bridge, datapath="ebpf")
        for i in range(start, min(start + PER_BRIDGE, ports)):
            t0 = time.perf_counter()
            sw.create_port(bridge, f"tp{i}", type="tap")
            times.append(time.perf_counter() - t0)
    return times


def rss_mib(host: Host) -> float:
    with open(f"/proc/{host.proc.pid}/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
    return kib / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vsw-metrics-") as tmp:
        on, off = Host(Path(tmp) / "on"), Host(Path(tmp) / "off")
        try:
            cfg = Path(tmp) / "metrics.yaml"
            cfg.write_text(f"metrics: {{address: {ADDRESS}}}\n")
            for host, extra in ((on, ("--config", str(cfg))), (off, ())):
                host.workdir.mkdir(parents=True, exist_ok=True)
                host.start(*extra)
            switches = [Switch.connect(socket_path=h.socket, timeout=60) for h in (on, off)]
            with ThreadPoolExecutor(2) as pool:  # side by side: a thread per daemon
                adds = list(pool.map(lambda sw: populate(sw, a.ports), switches))
            rss_ports = (rss_mib(on), rss_mib(off))
            res = on.run_in(on.ns, SYSTEM_PYTHON, "-c", SCRAPER, f"http://{ADDRESS}/metrics",
                            str(a.scrapes), timeout=600)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            scrapes = json.loads(res.stdout)
            rss_after = (rss_mib(on), rss_mib(off))
            for sw in switches:
                sw.close()
        finally:
            on.cleanup()
            off.cleanup()
    times = sorted(t * 1000 for t, _, _ in scrapes)
    size, lines = scrapes[-1][1], scrapes[-1][2]
    median = statistics.median(times)
    print(f"metrics scrape of a switch with {a.ports} TAP ports, {a.scrapes} scrapes")
    print(f"  scrape time (ms): median {median:.1f}  min {times[0]:.1f}  max {times[-1]:.1f}"
          f"   goal < {GOAL_MS:.0f}: {'met' if median < GOAL_MS else 'NOT met'}")
    print(f"  scrape size: {size / 1024:.1f} KiB, {lines} lines")
    tenth = max(1, a.ports // 10)
    print(f"  CreatePort (ms, median)  first {tenth}   last {tenth}   (both daemons at once)")
    for label, times in zip(("metrics on", "metrics off"), adds, strict=True):
        print(f"  {label:<22} {statistics.median(times[:tenth]) * 1000:8.1f} "
              f"{statistics.median(times[-tenth:]) * 1000:8.1f}")
    print("  daemon RSS (MiB)        metrics on   metrics off   added")
    for stage, (m_on, m_off) in (("ports added", rss_ports), ("after the scrapes", rss_after)):
        print(f"  {stage:<22} {m_on:11.1f} {m_off:13.1f} {m_on - m_off:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
