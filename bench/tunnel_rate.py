#!/usr/bin/env python3
"""Benchmark of vswitchd's VXLAN tunnels: container -> container across two hosts, eBPF datapath
vs kernel bridge + VXLAN device, side by side in one run (issue 13).

Run from the repository root, as root:  .venv/bin/python bench/tunnel_rate.py [--quick]
It prints figures; it is not a test and asserts nothing about them (the goal is printed
alongside: ebpf >= 1.2x kernel in frames/s). iperf3 comes with `make bench` (BENCH_APT_PACKAGES).

Method
------
Two "hosts" (network namespaces, each running its own vswitchd: tests.netns.overlay.Overlay)
joined by an underlay: a Linux bridge in a namespace of its own and a veth `ul0` per host,
10.77.0.1 and 10.77.0.2. On both hosts, built with vswctl as an operator would:

  ebpf    bridge bre (`--datapath ebpf`), tunnel port vx100 (VNI 100, UDP 4789; the datapath
          sets and reads the tunnel key of an external-mode VXLAN device) and container c100,
          192.168.100.N/24;
  kernel  bridge brk (`--datapath kernel`: plain Linux bridge), tunnel port vx200 (VNI 200, a
          classic VXLAN device whose kernel FDB holds the other host, UDP 4790: the kernel gives
          a UDP port to one kind of VXLAN device only) and container c200, 192.168.200.N/24.

The tunnel port is added before the container, so the container's veth gets the tunnel's MTU
(1450 on the 1500-byte underlay; printed). The measured path is container A (host 1) -> host 1's
bridge -> VXLAN encapsulation -> underlay (host 1's ul0, the LAN bridge, host 2's ul0) ->
host 2's VXLAN device (decapsulation in the kernel on both paths) -> host 2's bridge ->
container B (host 2). Both paths share the underlay and the decapsulation; they differ in the
switching on both hosts (the eBPF pipeline, or the Linux bridge and the VXLAN device's own FDB).

Frames. A's generator is trafgen on ONE core (`--cpus 1`) sending 64-byte UDP frames (60 bytes
handed to the device + 4 of FCS on a wire) to B's MAC and IP, UDP port 9, with a correct IPv4
header checksum (the kernel bridge hands IPv4 to netfilter, which drops bad ones), bypassing the
qdisc, as bench/packet_rate.py does. On the underlay each becomes a 110-byte packet (114 with
FCS: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 around the 60-byte frame); the average
size seen at host 1's ul0 is printed as a check. Before every measurement A pings B, so the
FDBs of both hosts (and the kernel VXLAN device's) hold B: known unicast is measured, not
flooding. Frames are counted at the TC ingress hook of B:eth0 by a tiny bcc program
(bench/rate_common.Counters, IPv4/UDP to port 9 only) and dropped there (the paths' own cost,
not B's IP stack). Each measurement: start trafgen, let it run 0.5 s, read the counter, wait
--seconds, read it again, stop trafgen; rate = delta / elapsed. Beside it: what A's eth0 sent
(its tx counter) and what left host 1 on the underlay (ul0 tx), per second, so a loss shows
where it happens.

The whole path runs on the sender's CPU, in its context (veth transmit hands the frame to the
peer's backlog, processed in softirq on the same CPU when trafgen's send re-enables bottom
halves; so do the bridges, the encapsulation, the underlay and the decapsulation), and without
IRQ time accounting that softirq time is charged to trafgen's stime. On a machine shared with
other work the sender gets a varying share of its CPU, so the figure is also given per
CPU-second of the sender: frames at B / (utime + stime of trafgen's process group over the
interval, from /proc/PID/stat, tick-sampled). That second ratio cancels the share of the CPU;
it is not a different goal.

--underlay-nf off turns netfilter off on the underlay's LAN bridge (bridge-nf-call-* is 1 in
every namespace here), as a physical switch would cost no host CPU for it: a cost both paths
share, so it moves the ratio away from 1 without touching either switch. Default: on, the
underlay exactly as tests.netns.overlay builds it.

TCP. iperf3 (one stream, default settings) from A to B for --tcp-seconds, a server in B for the
whole run; the figure is the receiver's Gbit/s (iperf3 -J end.sum_received), with the sender's
retransmissions. Information only (no goal): bulk TCP uses large segments, where the per-packet
cost of the switch weighs little.

Both phases are interleaved round by round (ebpf, kernel, ebpf, kernel, ...) so that the noise
of a shared machine hits both alike; the figure is the per-path median over --rounds, with min
and max, and the ratio ebpf/kernel both of the medians and as the median of per-round ratios.

Everything created (namespaces, links, pins, daemons, trafgen and iperf3) carries the
harness's random tag or is a child of this script, and is removed in a finally block (also on
SIGTERM/SIGINT); processes are stopped by their own PID / process group.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The venv's vswitchd / vswctl entry points must import this checkout (children inherit this).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), str(ROOT / "clients"), os.environ.get("PYTHONPATH", "")) if p
)

from pyroute2 import NetNS  # noqa: E402
from rate_common import Counters, div, log, start_trafgen, stop_group  # noqa: E402

from tests.netns.harness import NETNS_DIR, Host, trafgen_udp_config  # noqa: E402
from tests.netns.overlay import Overlay  # noqa: E402

GOAL = 1.2  # ebpf / kernel, frames/s
UDP_PORT = 9
FRAME_LEN = 60  # + 4 bytes FCS on a wire = the classic 64-byte frame
VXLAN_OVERHEAD = 50  # outer Ethernet + IPv4 + UDP + VXLAN
IPERF_PORT = 5201
WARMUP = 0.5


@dataclass(frozen=True)
class Path_:
    """One datapath's segment across the two hosts."""

    name: str
    datapath: str
    bridge: str
    vni: int
    dstport: int | None  # None: the default, 4789
    subnet: str  # "192.168.100": container on host N at .N

    @property
    def port(self) -> str:
        return f"vx{self.vni}"

    @property
    def container(self) -> str:
        return f"c{self.vni}"

    def ip(self, n: int) -> str:
        return f"{self.subnet}.{n}"


PATHS = (
    Path_("ebpf", "ebpf", "bre", 100, None, "192.168.100"),
    Path_("kernel", "kernel", "brk", 200, 4790, "192.168.200"),
)


# ---- topology ---------------------------------------------------------------------------------


def build(o: Overlay, p: Path_) -> tuple[str, str]:
    """p's bridge, tunnel port and container on both hosts; returns (A's ns, B's ns)."""
    for i, h in enumerate(o.hosts, 1):
        h.vswctl("add-br", p.bridge, "--datapath", p.datapath)
        extra = ["--dstport", str(p.dstport)] if p.dstport else []
        h.vswctl("add-port", p.bridge, p.port, "--type", "vxlan", "--vni", str(p.vni),
                 "--local", o.vtep(i), "--remote", o.vtep(3 - i), *extra)
        h.vswctl("add-port", p.bridge, p.container, "--netns", h.name(p.container),
                 "--ip", f"{p.ip(i)}/24", "--mac", o.mac(p.vni, i))
    return o.hosts[0].name(p.container), o.hosts[1].name(p.container)


def link_stats(ipr: NetNS, ifname: str) -> dict:
    link = ipr.get_links(ifname=ifname)[0]
    return dict(link.get_attr("IFLA_STATS64"))


def tunnel_device(ns: str, ifname: str) -> str:
    """The VXLAN device as `ip -d link` shows it: mode, port, checksum, learning."""
    out = subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)[0]["linkinfo"]["info_data"]
    mode = "external" + (" vnifilter" if d.get("vnifilter") else "") if d.get("external") \
        else f"id {d.get('id')}"
    return (f"{mode}, port {d.get('port')}, udp_csum {d.get('udp_csum')},"
            f" learning {d.get('learning')}")


def mtu(ns: str, ifname: str = "eth0") -> int:
    with NetNS(ns) as ipr:
        return int(ipr.get_links(ifname=ifname)[0].get_attr("IFLA_MTU"))


# ---- frames -----------------------------------------------------------------------------------


CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgrp: int) -> float:
    """utime + stime of every process of process group pgrp (trafgen and its worker). The
    softirq work a frame causes on the sender's CPU (the whole path here: veth, bridges, VXLAN,
    underlay, decapsulation) runs in the sender's context and, without IRQ time accounting,
    is charged to its stime."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        if int(f[2]) == pgrp:  # fields from state: state ppid pgrp ... utime(11) stime(12)
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def measure_frames(host: Host, counters: Counters, p: Path_, a_ns: str, b_ip: str, cfg: str,
                   seconds: float, a_ipr: NetNS, ul_ipr: NetNS) -> dict:
    """Rates while trafgen (one core) sends from A for `seconds`: received at B (Mpps), sent
    by A's eth0, and packets (and their mean size) out of host 1's underlay port."""
    if not host.ping(a_ns, b_ip, count=1):
        raise RuntimeError(f"{p.name}: A cannot ping B before the measurement")
    proc = start_trafgen(f"{NETNS_DIR}/{a_ns}", cfg, WARMUP)
    try:
        a0, u0 = link_stats(a_ipr, "eth0"), link_stats(ul_ipr, "ul0")
        cpu0 = group_cpu_seconds(proc.pid)
        c0, t0 = counters.read(p.name), time.monotonic()
        time.sleep(seconds)
        c1, t1 = counters.read(p.name), time.monotonic()
        cpu1 = group_cpu_seconds(proc.pid)
        a1, u1 = link_stats(a_ipr, "eth0"), link_stats(ul_ipr, "ul0")
    finally:
        stop_group(proc)
    dt = t1 - t0
    ul_pkts = u1["tx_packets"] - u0["tx_packets"]
    return {"mpps": (c1 - c0) / dt / 1e6,
            "cpu_share": (cpu1 - cpu0) / dt,
            "mpps_per_cpu": (c1 - c0) / (cpu1 - cpu0) / 1e6 if cpu1 > cpu0 else 0.0,
            "sent_mpps": (a1["tx_packets"] - a0["tx_packets"]) / dt / 1e6,
            "underlay_mpps": ul_pkts / dt / 1e6,
            "underlay_bytes": (u1["tx_bytes"] - u0["tx_bytes"]) / ul_pkts if ul_pkts else None}


# ---- TCP --------------------------------------------------------------------------------------


def iperf_server(ns: str) -> subprocess.Popen:
    """iperf3 -s in ns, returned once it listens."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR}/{ns}", "iperf3", "-s", "-p", str(IPERF_PORT),
         "--forceflush"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening" in line.lower():
            return proc
    stop_group(proc)
    raise RuntimeError(f"iperf3 server in {ns} did not start: {line!r}")


def measure_tcp(host: Host, a_ns: str, b_ip: str, seconds: float) -> dict:
    res = host.run_in(a_ns, "iperf3", "-c", b_ip, "-p", str(IPERF_PORT), "-t", f"{seconds:g}",
                      "-J", timeout=seconds + 30)
    try:
        out = json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"iperf3 client: {res.returncode} {res.stdout}{res.stderr}") from exc
    if "error" in out:
        raise RuntimeError(f"iperf3 client: {out['error']}")
    end = out["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits")}


# ---- the run ----------------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": values}


def ratios(a: list[float], b: list[float]) -> dict:
    per = [div(x, y) for x, y in zip(a, b, strict=True)]
    return {"of_medians": div(statistics.median(a), statistics.median(b)),
            "median_per_round": statistics.median(per) if None not in per else None}


def port_drops(o: Overlay, p: Path_) -> dict:
    """Datapath drops (by reason) on p's bridge of each host, as `vswctl port-stats` shows."""
    out = {}
    for i, h in enumerate(o.hosts, 1):
        for row in h.json("port-stats", p.bridge):
            if row.get("drops"):
                out[f"host{i}:{row['port']}"] = row.get("drops_by_reason") or {"?": row["drops"]}
    return out


def datapath_counts(o: Overlay, p: Path_) -> dict:
    """What the eBPF datapath counted on the path (`vswctl -j port-stats`): A's port rx and the
    tunnel port tx on host 1, the tunnel port rx and B's port tx on host 2."""
    (h1, h2), out = o.hosts, {}
    for h, n, port, key in ((h1, 1, p.container, "rx_packets"), (h1, 1, p.port, "tx_packets"),
                            (h2, 2, p.port, "rx_packets"), (h2, 2, p.container, "tx_packets")):
        row = next((r for r in h.json("port-stats", p.bridge) if r["port"] == port), None)
        out[f"host{n} {port} {key.split('_')[0]}"] = row[key] if row else None
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict:
    res: dict = {
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "loadavg_1m_at_start": os.getloadavg()[0]},
        "params": {"rounds": args.rounds, "seconds": args.seconds,
                   "tcp_seconds": args.tcp_seconds, "frame_bytes": FRAME_LEN + 4,
                   "generator": "trafgen --cpus 1", "paths": [p.name for p in PATHS],
                   "underlay_nf": args.underlay_nf},
        "notes": [], "mtu": {},
    }
    o = Overlay(workdir, 2)
    counters: Counters | None = None
    sockets: list[NetNS] = []
    servers: list[subprocess.Popen] = []
    try:
        log(f"hosts {o.hosts[0].ns}, {o.hosts[1].ns}; starting a vswitchd on each")
        if args.underlay_nf == "off":  # the LAN bridge as a physical switch: no netfilter
            for key in ("iptables", "ip6tables", "arptables"):
                subprocess.run(["nsenter", f"--net={NETNS_DIR}/{o.lan}", "sysctl", "-qw",
                                f"net.bridge.bridge-nf-call-{key}=0"], check=True)
        o.start()
        h1 = o.hosts[0]
        ends: dict[str, tuple[str, str]] = {}
        for p in PATHS:
            log(f"{p.name}: bridge {p.bridge}, {p.port} (VNI {p.vni}), {p.container} on both hosts")
            try:
                ends[p.name] = build(o, p)
            except AssertionError as exc:
                note = f"{p.name}: could not be built: " + " | ".join(
                    str(exc).strip().splitlines()[-2:])
                res["notes"].append(note)
                log(note)
                continue
            a_ns, b_ns = ends[p.name]
            res["mtu"][p.name] = {"A": mtu(a_ns), "B": mtu(b_ns),
                                  "tunnel": mtu(h1.ns, p.port)}
            res.setdefault("tunnel_device", {})[p.name] = tunnel_device(h1.ns, p.port)
            if not h1.ping(a_ns, p.ip(2), count=3):
                note = (f"{p.name}: container A cannot ping B across the tunnel; left out"
                        + (" (is the eBPF tunnel datapath on this branch?)"
                           if p.datapath == "ebpf" else ""))
                res["notes"].append(note)
                log(note)
                del ends[p.name]
        paths = [p for p in PATHS if p.name in ends]
        if not paths:
            raise RuntimeError("no path forwards across the tunnel: nothing to measure")

        log("compiling the counting program")
        counters = Counters([p.name for p in paths], "drop", UDP_PORT)
        cfgs = {}
        for p in paths:
            counters.attach(p.name, ends[p.name][1])
            cfg = workdir / f"udp64-{p.name}.trafgen"
            cfg.write_text(trafgen_udp_config(o.mac(p.vni, 1), o.mac(p.vni, 2), p.ip(1),
                                              p.ip(2), UDP_PORT, FRAME_LEN))
            cfgs[p.name] = str(cfg)
        # one netlink socket per namespace for the per-round counter reads (opening is slow)
        ul_ipr = NetNS(h1.ns)
        sockets.append(ul_ipr)
        a_iprs = {}
        for p in paths:
            a_iprs[p.name] = NetNS(ends[p.name][0])
            sockets.append(a_iprs[p.name])

        frames: dict[str, list[dict]] = {p.name: [] for p in paths}
        for r in range(args.rounds):
            for p in paths:
                m = measure_frames(h1, counters, p, ends[p.name][0], p.ip(2), cfgs[p.name],
                                   args.seconds, a_iprs[p.name], ul_ipr)
                frames[p.name].append(m)
                log(f"frames round {r + 1}/{args.rounds} {p.name:6s} {m['mpps']:.3f} Mpps at B,"
                    f" {m['mpps_per_cpu']:.3f} per CPU-s (sender on CPU {m['cpu_share']:.0%};"
                    f" A sent {m['sent_mpps']:.3f}, underlay {m['underlay_mpps']:.3f} Mpps"
                    + (f" of {m['underlay_bytes']:.0f} B" if m["underlay_bytes"] else "") + ")")
        res["loadavg_1m_after_frames"] = os.getloadavg()[0]
        if "ebpf" in frames:  # the frames went through the eBPF pipeline on both hosts
            p = next(p for p in paths if p.name == "ebpf")
            res["ebpf_datapath_counts"] = datapath_counts(o, p)
            res["ebpf_counted_at_b"] = counters.read("ebpf")
        res["frames"] = {name: {"mpps": summary([m["mpps"] for m in ms]),
                                "mpps_per_cpu": summary([m["mpps_per_cpu"] for m in ms]),
                                "cpu_share": summary([m["cpu_share"] for m in ms]),
                                "sent_mpps": summary([m["sent_mpps"] for m in ms]),
                                "underlay_mpps": summary([m["underlay_mpps"] for m in ms]),
                                "underlay_bytes": statistics.median(
                                    [m["underlay_bytes"] or 0 for m in ms])}
                         for name, ms in frames.items()}

        tcp: dict[str, list[dict]] = {p.name: [] for p in paths}
        if args.tcp_seconds > 0:
            for p in paths:
                servers.append(iperf_server(ends[p.name][1]))
            for r in range(args.rounds):
                for p in paths:
                    m = measure_tcp(h1, ends[p.name][0], p.ip(2), args.tcp_seconds)
                    tcp[p.name].append(m)
                    log(f"tcp round {r + 1}/{args.rounds} {p.name:6s} {m['gbps']:.2f} Gbit/s"
                        f"  ({m['retransmits']} retransmits)")
            res["tcp"] = {name: {"gbps": summary([m["gbps"] for m in ms]),
                                 "retransmits": [m["retransmits"] for m in ms]}
                          for name, ms in tcp.items()}
        res["drops"] = {p.name: port_drops(o, p) for p in paths}
        if "ebpf" in ends and "kernel" in ends:
            res["ratio_frames"] = ratios(res["frames"]["ebpf"]["mpps"]["rounds"],
                                         res["frames"]["kernel"]["mpps"]["rounds"])
            res["ratio_frames_per_cpu"] = ratios(
                res["frames"]["ebpf"]["mpps_per_cpu"]["rounds"],
                res["frames"]["kernel"]["mpps_per_cpu"]["rounds"])
            if "tcp" in res:
                res["ratio_tcp"] = ratios(res["tcp"]["ebpf"]["gbps"]["rounds"],
                                          res["tcp"]["kernel"]["gbps"]["rounds"])
        return res
    finally:
        for proc in servers:
            stop_group(proc)
        for s in sockets:
            s.close()
        if counters is not None:
            counters.close()
        o.cleanup()
        left = [n for n in os.listdir(NETNS_DIR) for h in o.hosts if n.startswith(h.tag)]
        left += [h.bpffs_dir for h in o.hosts if os.path.exists(h.bpffs_dir)]
        if left:
            log(f"WARNING: left behind after cleanup: {left}")


def fmt_ratio(x: float | None) -> str:
    return f"{x:7.3f}x" if x is not None else f"{'n/a':>8}"


def report(res: dict) -> str:
    m, p = res["machine"], res["params"]
    lines = [
        f"vswitchd tunnel benchmark  (kernel {m['kernel']}, {m['cpus']} CPUs, 1-min load"
        f" {m['loadavg_1m_at_start']:.2f} at start"
        + (f", {res['loadavg_1m_after_frames']:.2f} after the frame rounds)"
           if "loadavg_1m_after_frames" in res else ")"),
        "",
        "Container A (host 1) -> container B (host 2) across a VXLAN tunnel over a veth/bridge"
        " underlay; each host runs its own vswitchd.",
        "  ebpf:   --datapath ebpf bridge, VXLAN port VNI 100 (external mode, UDP 4789)",
        "  kernel: --datapath kernel bridge, VXLAN port VNI 200 (classic device, UDP 4790)",
        "  Decapsulation on host 2 is the kernel's VXLAN device on both paths. Underlay LAN bridge"
        f" netfilter (bridge-nf-call-*): {p['underlay_nf']}.",
        f"Frames: {p['frame_bytes']}-byte UDP frames ({FRAME_LEN} + FCS; {FRAME_LEN + 50} on the"
        " underlay), one trafgen core, counted and dropped at TC ingress of B;"
        f" {p['rounds']} interleaved rounds x {p['seconds']:g} s.",
    ]
    if "tcp" in res:
        lines.append(f"TCP: iperf3, one stream A -> B, {p['tcp_seconds']:g} s per round,"
                     f" {p['rounds']} interleaved rounds; receiver's Gbit/s.")
    for name, v in res["mtu"].items():
        lines.append(f"  {name}: MTU container A {v['A']}, B {v['B']}, tunnel port {v['tunnel']};"
                     f" host 1's VXLAN device: {res['tunnel_device'][name]}")
    fr = res.get("frames", {})
    if fr:
        lines += ["", "Frames at B (Mpps)",
                  f"  {'path':<7} {'median':>8} {'min':>8} {'max':>8}   rounds"]
        for name, v in fr.items():
            s = v["mpps"]
            rounds = " ".join(f"{x:.3f}" for x in s["rounds"])
            lines.append(f"  {name:<7} {s['median']:8.3f} {s['min']:8.3f} {s['max']:8.3f}"
                         f"   {rounds}")
        lines += ["", "Frames at B per CPU-second of the sender's context (Mpps per CPU; the"
                  " sender's share of a CPU in brackets)",
                  f"  {'path':<7} {'median':>8} {'min':>8} {'max':>8}   rounds"]
        for name, v in fr.items():
            s, c = v["mpps_per_cpu"], v["cpu_share"]["rounds"]
            rounds = " ".join(f"{x:.3f} ({y:.0%})" for x, y in zip(s["rounds"], c, strict=True))
            lines.append(f"  {name:<7} {s['median']:8.3f} {s['min']:8.3f} {s['max']:8.3f}"
                         f"   {rounds}")
        lines.append("")
        for name, v in fr.items():
            lines.append(f"  {name:<7} medians: A sent {v['sent_mpps']['median']:.3f} Mpps,"
                         f" host 1 underlay tx {v['underlay_mpps']['median']:.3f} Mpps"
                         f" of {v['underlay_bytes']:.0f} bytes (no FCS)")
    for name in ("ebpf", "kernel"):
        if name not in fr:
            lines.append(f"  {name:<7} {'n/a':>8}   (not measured: see the notes)")
    if "tcp" in res:
        lines += ["", "TCP A -> B (Gbit/s)",
                  f"  {'path':<7} {'median':>8} {'min':>8} {'max':>8}   rounds  (retransmits)"]
        for name, v in res["tcp"].items():
            s = v["gbps"]
            rounds = " ".join(f"{x:.2f}" for x in s["rounds"])
            lines.append(f"  {name:<7} {s['median']:8.2f} {s['min']:8.2f} {s['max']:8.2f}"
                         f"   {rounds}  ({' '.join(str(x) for x in v['retransmits'])})")
    dc = res.get("ebpf_datapath_counts")
    if dc:
        lines.append("  path check, ebpf: the datapath's port counters after the frame rounds: "
                     + ", ".join(f"{k} {v}" for k, v in dc.items())
                     + f"; frames counted at B {res['ebpf_counted_at_b']}"
                     " (the counters also hold the warm-ups and pings)")
    for name, d in res.get("drops", {}).items():
        if d:
            lines.append(f"  DATAPATH DROPS on {name}: " + "; ".join(
                f"{port} " + ", ".join(f"{k}={n}" for k, n in reasons.items())
                for port, reasons in d.items()))
    lines += ["", f"  {'ratio':<18} {'medians':>8} {'rounds':>8}   (ratio of the medians;"
                  " median of the per-round ratios)"]
    rf = res.get("ratio_frames")
    if rf:
        met = rf["of_medians"] is not None and rf["of_medians"] >= GOAL
        lines.append(f"  {'ebpf/kernel frames':<18} {fmt_ratio(rf['of_medians'])}"
                     f" {fmt_ratio(rf['median_per_round'])}   goal >= {GOAL:.2f}x  "
                     + ("met" if met else "NOT met"))
    else:
        lines.append(f"  {'ebpf/kernel frames':<18} {'n/a':>8}   goal >= {GOAL:.2f}x  (a path"
                     " was not measured)")
    rc = res.get("ratio_frames_per_cpu")
    if rc:
        lines.append(f"  {'  per CPU-second':<18} {fmt_ratio(rc['of_medians'])}"
                     f" {fmt_ratio(rc['median_per_round'])}   (the same, per CPU-second of the"
                     " sender: cancels the share of the CPU it got)")
    rt = res.get("ratio_tcp")
    if rt:
        lines.append(f"  {'ebpf/kernel TCP':<18} {fmt_ratio(rt['of_medians'])}"
                     f" {fmt_ratio(rt['median_per_round'])}   (information only)")
    for note in res["notes"]:
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="seconds per frame measurement (default 3)")
    ap.add_argument("--tcp-seconds", type=float, default=3.0,
                    help="seconds per iperf3 run (default 3; 0 leaves TCP out)")
    ap.add_argument("--underlay-nf", choices=("on", "off"), default="on",
                    help="netfilter on the underlay's LAN bridge (bridge-nf-call-*; on, the "
                         "namespaces' default) or off, as on a physical switch: a cost both "
                         "paths share")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 1 s (frames and TCP)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.tcp_seconds = 2, 1.0, 1.0
    if args.rounds < 1 or args.seconds <= 0 or args.tcp_seconds < 0:
        ap.error("--rounds >= 1, --seconds > 0 and --tcp-seconds >= 0")
    if os.geteuid() != 0:
        print("bench/tunnel_rate.py needs root (namespaces, BPF)", file=sys.stderr)
        return 1
    if args.tcp_seconds > 0 and not any(
            os.access(os.path.join(d, "iperf3"), os.X_OK)
            for d in os.environ.get("PATH", "").split(os.pathsep)):
        print("iperf3 is missing: `make bench` installs it (or --tcp-seconds 0)", file=sys.stderr)
        return 1

    me = os.getpid()

    def on_term(signum, frame):  # SIGTERM: unwind through the finally blocks (cleanup)
        if os.getpid() == me:  # not in a child forked by pyroute2 (netns), which pyroute2
            raise SystemExit(128 + signum)  # ends with SIGTERM: it must not clean up our dirs
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    os.makedirs(NETNS_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vswtunbench-") as tmp:
        res = run(args, Path(tmp))
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
