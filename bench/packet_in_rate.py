#!/usr/bin/env python3
"""Benchmark of packet-in: frames/s delivered to one controller, and what packet-in at its rate
limit costs the switch's other traffic (issue 14; goal: <= 5%).

Run from the repository root, as root:  .venv/bin/python bench/packet_in_rate.py [--quick]
It prints figures; it is not a test and asserts nothing about them (the goal is printed
alongside).

Method
------
One vswitchd (tests.netns.harness.Host) with an eBPF bridge br0 and three containers made by
`vswctl add-port --netns`: A and B, between which the other traffic flows, and P, whose frames
a rule sends to the controller. One controller: a SubscribePacketIn stream of br0 read by a
thread of this process (as a controller would, with the vswapi stubs), counting the packet-ins
and the `lost` notices it gets; it stays subscribed for the whole run.

Other traffic: A's trafgen on ONE core (`--cpus 1`) sends 64-byte UDP frames to B (known
unicast: A pings B first), counted and dropped at B's TC ingress (bench/rate_common.Counters),
as bench/packet_rate.py measures the datapath. Packet-in traffic: P's trafgen (one core, paced
with `--rate`, default 3000 frames/s) sends --frame-bytes UDP frames from P's MAC, which the
rule `priority=100,dl_src=P` matches. The two conditions differ in that rule's action only:

  idle       actions=drop: P's frames are taken at P's port, nothing goes to the controller;
  packet-in  actions=controller: the datapath copies each frame (the default 128 bytes) into
             its ring while the per-CPU rate limit lets it (default 1000/s per CPU; P's frames
             are handled on its sender's CPU), counts the rest as rate_limited, and the daemon
             streams them to the controller.

So everything but the packet-in path is the same in both: the figure is what packet-in at its
rate limit costs (the datapath's copy, the daemon's poller and gRPC stream, the controller's
reading), on a machine whose CPUs A's sender, P's sender, the daemon and the controller share.

Each measurement: set the rule (add-flow replaces it), start P's trafgen, then A's, let them run
0.5 s, read B's counter, the controller's count and the datapath's packet-in counters
(GetPacketInConfig), wait --seconds, read them again, stop both. The conditions alternate in
every round (the order rotates), and the figures are the medians over --rounds, with min and
max; the ratio packet-in/idle of the medians is the goal's. Everything created carries the
harness's random tag and is removed in a finally block; processes are stopped by their group.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "clients"))
# The venv's vswitchd / vswctl entry points must import this checkout (children inherit this).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), str(ROOT / "clients"), os.environ.get("PYTHONPATH", "")) if p
)

from rate_common import Counters, div, log, start_trafgen, stop_group  # noqa: E402

from tests.netns.harness import NETNS_DIR, Host, trafgen_udp_config  # noqa: E402

CONDITIONS = ("idle", "packet-in")
GOAL = 0.95  # packet-in at its rate limit costs the other traffic at most 5%
UDP_PORT = 9
MACS = {"a": "02:96:00:00:00:0a", "b": "02:96:00:00:00:0b", "p": "02:96:00:00:00:0c"}
IPS = {"a": "10.96.0.10", "b": "10.96.0.11", "p": "10.96.0.12"}
WARMUP = 0.5


class Controller:
    """A SubscribePacketIn stream of BRIDGE, read by a thread: packets and lost so far."""

    def __init__(self, socket: str, bridge: str) -> None:
        from vswapi import switch_pb2 as pb
        from vswapi.client import connect

        self.client = connect(socket_path=socket)
        self.call = self.client.stub.SubscribePacketIn(pb.PacketInRequest(bridges=[bridge]))
        self.packets = 0
        self.lost = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import grpc

        try:
            for msg in self.call:
                if msg.WhichOneof("kind") == "lost":
                    self.lost += msg.lost
                else:
                    self.packets += 1
        except grpc.RpcError:
            pass  # cancelled at the end

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)
        self.client.close()


def datapath_counters(host: Host) -> dict[str, int]:
    from vswapi import switch_pb2 as pb
    from vswapi.client import connect

    with connect(socket_path=host.socket) as c:
        cfg = c.stub.GetPacketInConfig(pb.GetPacketInConfigRequest(), timeout=10)
    return {k: getattr(cfg, k) for k in ("sent", "rate_limited", "ring_full", "unwatched")}


def measure(host: Host, counters: Counters, ctl: Controller, condition: str, cfgs: dict,
            args: argparse.Namespace) -> dict:
    action = "controller" if condition == "packet-in" else "drop"
    host.vswctl("add-flow", "br0", f"priority=100,dl_src={MACS['p']},actions={action}")
    if not host.ping(host.name("a"), IPS["b"], count=1):
        raise RuntimeError("A cannot ping B before the measurement")
    p_gen = start_trafgen(f"{NETNS_DIR}/{host.name('p')}", cfgs["p"], 0.1,
                          ("--rate", f"{args.pps}pps"))
    try:
        a_gen = start_trafgen(f"{NETNS_DIR}/{host.name('a')}", cfgs["a"], WARMUP)
        try:
            c0, d0, k0, t0 = counters.read("ab"), datapath_counters(host), ctl.packets, \
                time.monotonic()
            time.sleep(args.seconds)
            c1, d1, k1, t1 = counters.read("ab"), datapath_counters(host), ctl.packets, \
                time.monotonic()
        finally:
            stop_group(a_gen)
    finally:
        stop_group(p_gen)
    elapsed = t1 - t0
    return {"mpps": (c1 - c0) / elapsed / 1e6, "packet_ins_per_s": (k1 - k0) / elapsed,
            **{f"{k}_per_s": (d1[k] - d0[k]) / elapsed for k in d0}}


def run(args: argparse.Namespace, workdir: Path) -> dict:
    res: dict = {"machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                             "loadavg_1m_at_start": os.getloadavg()[0]},
                 "params": {"rounds": args.rounds, "seconds": args.seconds, "pps": args.pps,
                            "frame_bytes": args.frame_bytes, "rate_limit": args.rate_limit},
                 "rounds": []}
    host = Host(workdir)
    counters = ctl = None
    try:
        host.start()
        host.vswctl("add-br", "br0")
        for side in ("a", "b", "p"):
            host.vswctl("add-port", "br0", side, "--netns", host.name(side),
                        "--ip", f"{IPS[side]}/24", "--mac", MACS[side])
        if args.rate_limit:
            host.vswctl("set-packet-in-rate", str(args.rate_limit))
        res["params"]["rate_limit"] = host.json("status")["packet_in_rate_limit"]
        counters = Counters(["ab"], "drop", UDP_PORT)
        counters.attach("ab", host.name("b"))
        cfgs = {}
        for side, dst_mac, dst_ip, length in (("a", MACS["b"], IPS["b"], 60),
                                              ("p", "02:96:00:00:00:99", "10.96.0.99",
                                               args.frame_bytes - 4)):
            path = workdir / f"{side}.cfg"
            path.write_text(trafgen_udp_config(MACS[side], dst_mac, IPS[side], dst_ip,
                                               UDP_PORT, frame_len=length))
            cfgs[side] = str(path)
        ctl = Controller(host.socket, "br0")
        for r in range(args.rounds):
            order = CONDITIONS if r % 2 == 0 else tuple(reversed(CONDITIONS))
            row = {}
            for condition in order:
                row[condition] = measure(host, counters, ctl, condition, cfgs, args)
                log(f"round {r + 1} {condition}: {row[condition]['mpps']:.3f} Mpps A->B, "
                    f"{row[condition]['packet_ins_per_s']:.0f} packet-ins/s")
            res["rounds"].append(row)
        res["controller"] = {"packets": ctl.packets, "lost": ctl.lost}
    finally:
        if ctl is not None:
            ctl.close()
        if counters is not None:
            counters.close()
        host.cleanup()
    return res


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def report(res: dict) -> str:
    p = res["params"]
    lines = [f"# kernel {res['machine']['kernel']}, {res['machine']['cpus']} CPUs, load "
             f"{res['machine']['loadavg_1m_at_start']:.2f}; {p['rounds']} rounds x "
             f"{p['seconds']} s",
             f"# packet-in rate limit {p['rate_limit']}/s per CPU; P sends {p['pps']} frames/s "
             f"of {p['frame_bytes']} bytes from one core",
             "", f"{'':12} {'A->B Mpps':>10} {'min':>7} {'max':>7} {'packet-ins/s':>13} "
             f"{'rate_limited/s':>15} {'ring_full/s':>12}"]
    med = {}
    for c in CONDITIONS:
        rows = [r[c] for r in res["rounds"]]
        m, lo, hi = _stats([x["mpps"] for x in rows])
        med[c] = m
        lines.append(f"{c:12} {m:10.3f} {lo:7.3f} {hi:7.3f} "
                     f"{statistics.median(x['packet_ins_per_s'] for x in rows):13.0f} "
                     f"{statistics.median(x['rate_limited_per_s'] for x in rows):15.0f} "
                     f"{statistics.median(x['ring_full_per_s'] for x in rows):12.0f}")
    ratio = div(med["packet-in"], med["idle"])
    lines += ["", f"packet-in/idle (other traffic, medians): "
                  f"{'n/a' if ratio is None else f'{ratio:.3f}'} (goal >= {GOAL}: "
                  f"{'met' if ratio is not None and ratio >= GOAL else 'missed'})",
              f"controller: {res['controller']['packets']} packet-ins, "
              f"{res['controller']['lost']} reported lost over the run"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="seconds per measurement (default 3)")
    ap.add_argument("--pps", type=int, default=3000,
                    help="P's frames per second, above the rate limit (default 3000)")
    ap.add_argument("--frame-bytes", type=int, default=132,
                    help="P's frames, with FCS (default 132: 128 sent to the controller)")
    ap.add_argument("--rate-limit", type=int, default=0,
                    help="set the packet-in rate limit first (default: the daemon's)")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 1 s")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, 1.0
    if args.rounds < 1 or args.seconds <= 0 or args.pps < 1 or not 64 <= args.frame_bytes <= 1518:
        ap.error("--rounds >= 1, --seconds > 0, --pps >= 1, --frame-bytes in 64..1518")
    if os.geteuid() != 0:
        print("bench/packet_in_rate.py needs root (namespaces, BPF)", file=sys.stderr)
        return 1
    me = os.getpid()

    def on_term(signum, frame):  # SIGTERM: unwind through the finally blocks (cleanup)
        if os.getpid() == me:
            raise SystemExit(128 + signum)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    os.makedirs(NETNS_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vswpktinbench-") as tmp:
        res = run(args, Path(tmp))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
