"""Scale (issue 16): listings and memory with many ports and FDB entries; printed next to the
goals, not asserted. As root, from the repo:

    .venv/bin/python bench/scale.py [--ports 4000] [--per-bridge 125] [--fdb 60000]
    .venv/bin/python bench/scale.py --ports 10000 --per-bridge 1000 --fdb 100000  # the issue's

One real vswitchd (tests/netns/harness.py) in a namespace of its own, its datapath limits
(`datapath:` max_ports, max_fdb_entries) raised to what the run needs when over the defaults:

1. --ports TAP ports over ebpf bridges of --per-bridge (a datapath bridge takes 1 024). VmRSS
   before and after, once the periodic sweep has handed freed heap back: the daemon's cost per
   port.
2. --fdb learned FDB entries, spread evenly over the bridges (or the first --fdb-bridges):
   frames from that many source MACs enter by each bridge's first port (SendPacket with
   in_port: the datapath learns them, as from a VM), all to one MAC learned on that same port
   (dropped as same-port: no flood).
3. The listings a user asks for, each as the API call (in-process client) over every bridge
   in turn and as one whole `vswctl -j` command on the largest bridge: list-ports, dump-fdb,
   port-stats. Goal: each under 1 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from bench.daemon_cost import rss, run_printed, wall  # noqa: E402
from bench.packet_rate import start_timed  # noqa: E402
from tests.netns.harness import VSWCTL, Host  # noqa: E402
from vswapi.controller import Switch  # noqa: E402
from vswitchd.datapath.limits import RANGES, Limits  # noqa: E402

HUB = bytes.fromhex("02ee00000001")  # the MAC every learning frame is sent to


def frame(dst: bytes, src: bytes) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(46)  # local experimental EtherType, padded to 60


def learn(sw: Switch, bridge: str, port: str, n: int, base: int) -> None:
    """n source MACs learned on PORT of BRIDGE, the frames all to HUB (learned there first)."""
    sw.send_packet(bridge, frame(b"\xff" * 6, HUB), in_port=port)
    for i in range(n):
        sw.send_packet(bridge, frame(HUB, (0x02EF << 32 | base + i).to_bytes(6, "big")),
                       in_port=port)


def limits_for(ports: int, bridges: int, fdb: int) -> Limits:
    """The defaults, or powers of two that hold the run (a bridge's own device is a port, and
    each bridge learns one more MAC)."""
    def enough(name: str, need: int) -> int:
        default = getattr(Limits(), name)
        return default if need <= default else min(1 << (need - 1).bit_length(), RANGES[name][1])

    return Limits(max_ports=enough("max_ports", ports + bridges),
                  max_fdb_entries=enough("max_fdb_entries", fdb + bridges))


def run(args: argparse.Namespace, work: Path) -> list[str]:
    host = Host(work / "a")
    limits = limits_for(args.ports, -(-args.ports // args.per_bridge), args.fdb)
    config = work / "vswitchd.yaml"
    config.write_text(f"datapath:\n  max_ports: {limits.max_ports}\n"
                      f"  max_fdb_entries: {limits.max_fdb_entries}\n")
    out = [f"datapath limits: {limits.max_ports} ports, {limits.max_fdb_entries} FDB entries"]
    try:
        start_timed(host, "--cache-dir", str(work / "cache"), "--config", str(config),
                    timeout=300.0)
        sw = Switch.connect(host.socket, timeout=60.0)
        time.sleep(35)  # the first sweep hands back what the start used
        rss_start = rss(host)
        bridges: list[str] = []
        t0 = time.perf_counter()
        for i in range(args.ports):
            if i % args.per_bridge == 0:
                bridges.append(f"sb{len(bridges)}")
                sw.create_bridge(bridges[-1], datapath="ebpf")
            sw.create_port(bridges[-1], f"sp{i}", type="tap")
        added = time.perf_counter() - t0
        time.sleep(35)
        rss_ports = rss(host)
        out += [f"{args.ports} TAP ports on {len(bridges)} bridges added in {added:.1f} s "
                f"({added / args.ports * 1000:.1f} ms a port)",
                f"VmRSS {rss_start:.1f} MiB before, {rss_ports:.1f} MiB after: "
                f"{(rss_ports - rss_start) * 1024 / args.ports:.1f} KiB a port"]

        holders = bridges[:args.fdb_bridges or len(bridges)]
        per = args.fdb // len(holders)
        t0 = time.perf_counter()
        for k, bridge in enumerate(holders):
            learn(sw, bridge, f"sp{k * args.per_bridge}", per, k * per)
        learned = time.perf_counter() - t0
        out.append(f"{per * len(holders)} FDB entries learned ({per} in each of "
                   f"{len(holders)} bridges, by SendPacket in_port) in {learned:.1f} s")
        time.sleep(35)
        rss_fdb = rss(host)
        out.append(f"VmRSS {rss_fdb:.1f} MiB with them")

        counts = {"list-ports": lambda b: len(sw.list_ports(b)),
                  "dump-fdb": lambda b: len(sw.list_fdb(b)),
                  "port-stats": lambda b: len(sw.port_stats(b))}
        for what, call in counts.items():
            items = 0
            t0 = time.perf_counter()
            for bridge in bridges:
                items += call(bridge)
            every = time.perf_counter() - t0
            one = min(wall([VSWCTL, "--socket", host.socket, "-j", what, bridges[0]], 3))
            out.append(f"{what:10s}: API over all {len(bridges)} bridges {every:6.2f} s "
                       f"({items} items); `vswctl -j {what} {bridges[0]}` {one:6.3f} s   "
                       "goal < 1 s")
    finally:
        host.stop()
        host.cleanup()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=4000, help="TAP ports in all (default 4000)")
    ap.add_argument("--per-bridge", type=int, default=125, help="ports a bridge (default 125)")
    ap.add_argument("--fdb", type=int, default=60000, help="FDB entries to learn (60000)")
    ap.add_argument("--fdb-bridges", type=int, default=0,
                    help="learn them in the first N bridges only (default: all)")
    return run_printed(ap.parse_args(), run, "vsw-scale-")


if __name__ == "__main__":
    sys.exit(main())
