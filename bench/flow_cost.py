#!/usr/bin/env python3
"""Benchmark: per-packet cost of the flow classifier, and flow table install rate.

Run from the repository root, as root:  .venv/bin/python bench/flow_cost.py [--repeat N]
It prints figures; it is not a test (goals are printed alongside).

Method
------
Everything runs in a private network namespace of this process (unshare), with a bridge and
two veth ports in the datapath and its own bpffs pin directory, removed at the end.

Per-packet cost: BPF_PROG_TEST_RUN of tc_ingress on one 64-byte UDP frame (10.0.0.1:1000 ->
10.0.0.2:80, to a MAC learned on the other port), repeat N (default 1e6) per measurement; the
kernel reports the mean ns per run. Real runs (dry_run=False): that is the path real packets
take (rx counter, learning refresh, rule counters, a redirect verdict), while a dry run also
writes the result map. Tables: 0, 100, 10 000 and 100 000 rules spread evenly over 8 masks
(one priority per mask, none matching the frame), plus "match": the 100 000-rule table with one
extra rule in the lowest-priority mask that matches the frame (output to the other port), so
the rule's actions and counters run.

The classifier skips a mask when the packet differs from the bits all of its rules agree on
(flow.h, need_mask). The rules above never share a value with the frame, so that prefilter
skips most of their masks. "no mask skipped" is the worst case: the 100 000-rule table plus two
decoys per mask, each equal to the frame but for one bit (a different bit each), so that every
mask's agreed bits fit the frame, all 8 hash lookups run, and none hits.

Each figure is the median of --rounds measurements; ratios are to the 100-rule case and to a
program that only returns.

Install rate: one flows_sync that adds 10 000 rules to the 100 000-rule table (the same masks).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vswitchd.datapath import FLOW_FIELDS, Datapath, DpRule, testrun  # noqa: E402

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def udp_frame() -> bytes:
    udp = struct.pack("!HHHH", 1000, 80, 8 + 18, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     ipaddress.ip_address("10.0.0.1").packed,
                     ipaddress.ip_address("10.0.0.2").packed)
    return mac_bytes(MAC_B) + mac_bytes(MAC_A) + b"\x08\x00" + ip + udp


FULL = {name: (1 << bits) - 1 for name, bits in FLOW_FIELDS.items()}
V4 = 96
# 8 masks; for each, a generator of a non-matching value from an index (the frame has
# in_port p0, 10.0.0.1 -> 10.0.0.2, UDP 1000 -> 80).
MASKS = [
    lambda i: (("tp_dst", 20000 + i % 40000, FULL["tp_dst"]), ("nw_proto", 6, 0xFF)),
    lambda i: (("ip_dst", (0x0B000000 + i) << V4, FULL["ip_dst"]),),
    lambda i: (("ip_src", (0x0C000000 + (i << 8)) << V4, 0xFFFFFF00 << V4),),
    lambda i: (("dl_src", 0x040000000000 + i, FULL["dl_src"]),),
    lambda i: (("dl_dst", 0x060000000000 + i, FULL["dl_dst"]),),
    lambda i: (("tp_src", 30000 + i % 30000, FULL["tp_src"]), ("nw_proto", 17, 0xFF),
               ("ip_src", (0x0D000000 + i // 30000) << V4, FULL["ip_src"])),
    lambda i: (("dl_vlan", 1 + i % 4000, FULL["dl_vlan"]), ("tp_dst", i // 4000, 0xFFFF)),
    lambda i: (("in_port", 100000 + i, FULL["in_port"]),),
]


def decoys(frame_values: dict[str, int], start_id: int) -> list[DpRule]:
    """Two rules per mask equal to the frame but for one bit each (the lowest and the next set
    bit of the mask's first field): the mask's agreed bits fit the frame, no rule matches it."""
    rules = []
    for m, make in enumerate(MASKS):
        fields = [(name, frame_values[name] & mask, mask) for name, _v, mask in make(0)]
        name, value, mask = fields[0]
        low = mask & -mask
        for bit in (low, (mask & ~low) & -(mask & ~low)):
            rules.append(DpRule(start_id + len(rules), 1000 - 10 * m,
                                tuple(sorted([(name, value ^ bit, mask), *fields[1:]])),
                                (("drop", 0),)))
    return rules


def make_rules(n: int, start_id: int = 1, offset: int = 0) -> list[DpRule]:
    rules = []
    for k in range(n):
        m = k % len(MASKS)
        idx = offset + k // len(MASKS)
        rules.append(DpRule(start_id + k, 1000 - 10 * m, tuple(sorted(MASKS[m](idx))),
                            (("drop", 0),)))
    return rules


def setup_netns():
    import ctypes

    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed (run as root)")
    from pyroute2 import IPRoute

    tag = uuid.uuid4().hex[:5]
    with IPRoute() as ipr:
        ipr.link("add", ifname=f"fb{tag}", kind="bridge", br_mcast_snooping=0)
        br = ipr.link_lookup(ifname=f"fb{tag}")[0]
        ports = []
        for i in range(2):
            ipr.link("add", ifname=f"fp{tag}{i}", kind="veth", peer=f"fp{tag}{i}x")
            for name in (f"fp{tag}{i}", f"fp{tag}{i}x"):
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=idx, state="up")
            ports.append(ipr.link_lookup(ifname=f"fp{tag}{i}")[0])
        ipr.link("set", index=br, state="up")
        mac = ipr.get_links(br)[0].get_attr("IFLA_ADDRESS")
    return br, mac, ports


def trivial_prog_fd():
    from bcc import BPF

    b = BPF(text=b"int noop(struct __sk_buff *skb) { return 0; }")
    return b, b.load_func(b"noop", BPF.SCHED_CLS).fd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    br, br_mac, (p0, p1) = setup_netns()
    pin = f"/sys/fs/bpf/vswbench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    dp = Datapath(pin)
    try:
        from vswitchd.datapath import PortKind

        dp.add_bridge(br, br_mac)
        dp.add_port(br, p0, PortKind.PEER)
        dp.add_port(br, p1, PortKind.PEER)
        frame = udp_frame()
        dp.run(mac_bytes("ff:ff:ff:ff:ff:ff") + mac_bytes(MAC_B) + frame[12:], p1,
               dry_run=False)  # learn B on p1: the frame is known unicast
        assert dp.run(frame, p0).verdict == "forward"
        noop_bpf, noop_fd = trivial_prog_fd()

        def cost(fd=None) -> float:
            samples = []
            for _ in range(args.rounds):
                if fd is None:
                    samples.append(dp.run(frame, p0, dry_run=False, repeat=args.repeat)
                                   .duration_ns)
                else:
                    samples.append(testrun.prog_test_run_skb(fd, frame, ifindex=p0,
                                                             repeat=args.repeat).duration_ns)
            return statistics.median(samples)

        print(f"# flow_cost: BPF_PROG_TEST_RUN real runs (dry_run=False), repeat={args.repeat}, "
              f"median of {args.rounds}; kernel {os.uname().release}, {os.cpu_count()} CPUs")
        figures: dict[str, float] = {"noop": cost(noop_fd)}
        for n in (0, 100, 10_000, 100_000):
            dp.flows_sync(br, make_rules(n))
            res = dp.run(frame, p0)
            assert res.rule_id == 0, res
            figures[f"{n} rules"] = cost()
        match_rule = DpRule(999_999, 1000 - 10 * (len(MASKS) - 1),
                            (("in_port", p0, FULL["in_port"]),), (("output", p1),))
        table = make_rules(100_000) + [match_rule]
        dp.flows_sync(br, table)
        res = dp.run(frame, p0)
        assert res.rule_id == 999_999 and res.outputs == [p1], res
        figures["100000 rules, match in last mask"] = cost()
        frame_values = {"in_port": p0, "dl_src": int(MAC_A.replace(":", ""), 16),
                        "dl_dst": int(MAC_B.replace(":", ""), 16), "dl_type": 0x0800,
                        "dl_vlan": 0, "nw_proto": 17, "tp_src": 1000, "tp_dst": 80,
                        "ip_src": 0x0A000001 << V4, "ip_dst": 0x0A000002 << V4}
        dp.flows_sync(br, make_rules(100_000) + decoys(frame_values, 900_000))
        res = dp.run(frame, p0)
        assert res.rule_id == 0, res
        figures["100000 rules, no mask skipped"] = cost()

        base = figures["100 rules"]
        print(f"{'case':<36}{'ns/run':>9}{'x 100 rules':>13}{'x noop':>9}")
        for name, ns in figures.items():
            print(f"{name:<36}{ns:>9.0f}{ns / base:>13.3f}{ns / figures['noop']:>9.1f}")
        ratio = figures["100000 rules"] / base
        print(f"goal: 100000 rules <= 1.15 x 100 rules: {ratio:.3f} "
              f"({'met' if ratio <= 1.15 else 'NOT met'})")

        more = make_rules(10_000, start_id=200_001, offset=100_000)
        dp.flows_sync(br, table)  # back to the 100 001 rules (without the decoys), untimed
        t0 = time.perf_counter()
        dp.flows_sync(br, table + more)
        dt = time.perf_counter() - t0
        rate = 10_000 / dt
        verdict = "met" if rate >= 20_000 else "NOT met"
        print(f"install: 10000 rules into a 100001-rule table in one flows_sync: "
              f"{dt * 1e3:.0f} ms = {rate:,.0f} rules/s (goal >= 20,000/s: {verdict})")
        noop_bpf.cleanup()
    finally:
        dp.destroy()


if __name__ == "__main__":
    main()
