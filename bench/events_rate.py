"""Events the daemon sustains to 10 subscribers (issue 14), printed, not asserted. As root:

    .venv/bin/python bench/events_rate.py [--quick] [--subscribers 10] [--rounds 5]
                                          [--batch 10000]

Method: a real vswitchd in a namespace of its own (tests/netns/harness.py) with one eBPF bridge.
The fastest producer of events is the flow table: one `AddFlows` of --batch rules makes --batch
"flow added" events and one `DeleteFlows` of all of them as many "flow removed" ones. A round is
one of each, over gRPC from this process, timed. Rounds run alternately with no subscriber and
with --subscribers subscribers (side by side, so the machine's noise hits both alike); each
subscriber is a process of its own (so the client side is not bound by one Python process)
that reads its Subscribe stream and reports how many events it got, how many were reported
lost, and when the round's last event arrived. Figures, as medians over the rounds:
- produce: events/s the daemon makes (2 x batch / the round's time) with 0 and with N
  subscribers, and their ratio (what serving N streams costs the daemon's writes);
- delivered: events/s each subscriber received, from the round's start to its last event
  (the events it got / that time; those it skipped as lost do not count), the median
  subscriber, and the aggregate over all subscribers;
- lost: events any subscriber was told it lost (0 when they all kept up).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from tests.netns.harness import Host  # noqa: E402
from vswapi import switch_pb2 as pb  # noqa: E402
from vswapi.client import connect  # noqa: E402
from vswapi.flowspec import parse_flow  # noqa: E402


def subscriber(socket: str, since: int, until: int) -> None:
    """Child: read the stream from SINCE until an event at or after UNTIL; print JSON."""
    with connect(socket_path=socket) as client:
        call = client.stub.Subscribe(pb.SubscribeRequest(since_revision=since,
                                                         kinds=[pb.EVENT_KIND_FLOW]))
        print("ready", flush=True)
        got = lost = 0
        for msg in call:
            if msg.WhichOneof("kind") == "lost":
                lost += msg.lost.count
            else:
                got += 1
            if msg.revision >= until:
                break
        print(json.dumps({"got": got, "lost": lost, "end": time.time()}), flush=True)
        call.cancel()


def one_round(host: Host, client, flows: list[pb.Flow], subs: int) -> dict:
    revision = client.stub.ListBridges(pb.ListBridgesRequest()).revision
    expected = revision + 2 * len(flows)  # every revision of the round is a flow event
    procs = []
    for _ in range(subs):
        p = subprocess.Popen([sys.executable, __file__, "--subscriber", host.socket,
                              str(revision), str(expected)], stdout=subprocess.PIPE, text=True)
        host._helpers.append(p)
        procs.append(p)
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # the streams are open at the daemon
    t0 = time.time()
    client.stub.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=flows), timeout=120)
    client.stub.DeleteFlows(pb.DeleteFlowsRequest(bridge="br0"), timeout=120)
    produce = time.time() - t0
    results = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(30)
    n = 2 * len(flows)
    return {
        "produce": n / produce,
        "delivered": [r["got"] / (r["end"] - t0) for r in results],  # skipped ones: lost
        "lost": sum(r["lost"] for r in results),
    }


def ceiling(socket: str, flows: list[pb.Flow]) -> object:
    """A bare gRPC server in this process that streams ready-made flow events on the same
    method (Subscribe) from the same thread pool as the daemon's: what gRPC Python itself
    sustains here, the ceiling of any Python daemon's stream."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    msgs = [pb.Event(revision=i + 1, bridge="br0", flow=pb.FlowEvent(
        change=pb.CHANGE_ADDED, flow=flows[i % len(flows)])) for i in range(2 * len(flows))]

    def stream(request, context):
        yield from msgs[request.since_revision:]

    handler = grpc.method_handlers_generic_handler("vswitchd.v1.Switch", {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=pb.SubscribeRequest.FromString,
            response_serializer=pb.Event.SerializeToString)})
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    return server


def ceiling_round(socket: str, n: int, subs: int) -> list[float]:
    procs = [subprocess.Popen([sys.executable, __file__, "--subscriber", socket, "0", str(n)],
                              stdout=subprocess.PIPE, text=True) for _ in range(subs)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.time()  # the streams started as they opened: a little to the bare server's good
    results = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(30)
    return [n / (r["end"] - t0) for r in results]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2000 rules")
    ap.add_argument("--subscribers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10000)
    args = ap.parse_args()
    if args.subscriber:
        subscriber(args.subscriber[0], int(args.subscriber[1]), int(args.subscriber[2]))
        return 0
    if args.quick:
        args.rounds, args.batch = 2, 2000
    main_pid = os.getpid()  # pyroute2 forks helpers that inherit the handler: not theirs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1) if os.getpid() == main_pid else
                  os._exit(0))
    flows = [parse_flow(f"priority=100,udp,tp_dst={p},actions=drop")
             for p in range(1, args.batch + 1)]
    with tempfile.TemporaryDirectory(prefix="vsw-events-") as tmp:
        host = Host(Path(tmp))
        try:
            host.start()
            host.vswctl("add-br", "br0")
            with connect(socket_path=host.socket) as client:
                one_round(host, client, flows, 0)  # warm
                alone, served = [], []
                for _ in range(args.rounds):
                    alone.append(one_round(host, client, flows, 0))
                    served.append(one_round(host, client, flows, args.subscribers))
            rss = int(next(line.split()[1] for line in
                           open(f"/proc/{host.proc.pid}/status") if line.startswith("VmRSS")))
        finally:
            host.cleanup()
        bare = ceiling(f"{tmp}/bare.sock", flows)
        try:
            bare_rates = [statistics.median(ceiling_round(f"{tmp}/bare.sock", 2 * args.batch,
                                                          args.subscribers))
                          for _ in range(args.rounds)]
        finally:
            bare.stop(0)
    med = statistics.median
    p0 = med(r["produce"] for r in alone)
    pn = med(r["produce"] for r in served)
    per_sub = med(med(r["delivered"]) for r in served)
    print(f"events to {args.subscribers} subscribers ({args.rounds} rounds of "
          f"{2 * args.batch} flow events; medians; command: {' '.join(sys.argv)})")
    print(f"  produced by the daemon, no subscriber:    {p0:10.0f} events/s")
    print(f"  produced by the daemon, {args.subscribers:2d} subscribers:   {pn:10.0f} events/s "
          f"(ratio {pn / p0:.2f})")
    print(f"  delivered to each subscriber (median):   {per_sub:10.0f} events/s")
    print(f"  delivered to all subscribers together:   {per_sub * args.subscribers:10.0f} "
          "events/s")
    print(f"  lost (all subscribers, all rounds):      {sum(r['lost'] for r in served):10d}")
    bare_each = med(bare_rates)
    print(f"  bare gRPC stream of ready events, each:  {bare_each:10.0f} events/s "
          f"(the daemon reaches {per_sub / bare_each:.2f} of it)")
    print(f"  daemon RSS at the end:                   {rss / 1024:10.1f} MiB")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
