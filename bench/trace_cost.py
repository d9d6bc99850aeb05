"""Per-packet cost of the trace/watch stage, with BPF_PROG_TEST_RUN real runs of known
unicast (two ports, the destination learned):

  (a) the datapath built without the trace stage (Datapath(trace=False): VSW_NO_TRACE),
  (b) built with it, nobody watching,
  (c) built with it, one watcher whose filter matches nothing (same bridge, tp_dst=9; the
      frames have tp_dst 53): the filter is evaluated for every packet.

Prints ns/run and throughput ratios (a)/(b) (goal >= 0.97x) and (a)/(c) (goal >= 0.9x). Rounds
alternate between the builds; the median of the rounds is reported. Needs root. Not a test.

    .venv/bin/python bench/trace_cost.py [--repeat 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "datapath"))

from dp_helpers import BROADCAST, Topo, mac_bytes  # noqa: E402

from vswitchd.datapath import Datapath, PortKind, WatchFilter  # noqa: E402

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def udp(dst: str, src: str, dport: int = 53) -> bytes:
    payload = bytes(18)
    l4 = struct.pack("!HHHH", 1111, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 17, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + ip + l4


def setup(topo: Topo, dp: Datapath, tag: str):
    br = topo.add(f"{tag}b", "bridge")
    dp.add_bridge(br, topo.mac(br))
    p0, p1 = topo.add(f"{tag}0", "veth"), topo.add(f"{tag}1", "veth")
    dp.add_port(br, p0, PortKind.DEVICE)
    dp.add_port(br, p1, PortKind.DEVICE)
    dp.run(udp(BROADCAST, MAC_B), p1, dry_run=False)  # learn B on p1
    res = dp.trace(udp(MAC_B, MAC_A), p0)
    assert (res.verdict, res.out_ifindex) == ("forward", p1), res
    return br, p0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")

    topo = Topo()
    base = f"/sys/fs/bpf/vswbench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    dps = []
    try:
        plain = Datapath(base + "-a", trace=False)
        dps.append(plain)
        traced = Datapath(base + "-b", trace=True)
        dps.append(traced)
        _, pa = setup(topo, plain, "a")
        br_b, pb = setup(topo, traced, "b")
        frame = udp(MAC_B, MAC_A)
        print(f"verified insns: without trace {plain.verified_insns()}; "
              f"with trace {traced.verified_insns()}")

        def run(dp, port) -> float:
            return dp.run(frame, port, dry_run=False, repeat=args.repeat).duration_ns

        results: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for _ in range(args.rounds):
            results["a"].append(run(plain, pa))
            results["b"].append(run(traced, pb))
            slot = traced.watch_add(WatchFilter(bridge=br_b, fields=(("tp_dst", 9, 0xFFFF),)))
            results["c"].append(run(traced, pb))
            traced.watch_remove(slot)
        assert traced.watch_poll(0) == [], "the watcher was to match nothing"
        a, b, c = (statistics.median(results[k]) for k in "abc")
        print(f"known unicast, real runs, repeat={args.repeat}, median of {args.rounds} rounds "
              "(ns/run per round in brackets)")
        print(f"  (a) built without trace stage : {a:6.1f} ns/run  {results['a']}")
        print(f"  (b) trace built, no watcher   : {b:6.1f} ns/run  {results['b']}")
        print(f"  (c) one non-matching watcher  : {c:6.1f} ns/run  {results['c']}")
        print(f"  throughput (b)/(a) = {a / b:.3f}x  (goal >= 0.97x)")
        print(f"  throughput (c)/(a) = {a / c:.3f}x  (goal >= 0.90x)")
    finally:
        for dp in dps:
            dp.destroy()
        topo.cleanup()


if __name__ == "__main__":
    main()
