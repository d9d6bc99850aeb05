#!/usr/bin/env python3
"""Benchmark of vswitchd: small-frame packet rate through each datapath, plus control-plane costs.

Run from the repository root, as root:  .venv/bin/python bench/packet_rate.py [--quick]
It prints figures; it is not a test and asserts nothing about them (goals are printed alongside).
With --xdp-paths it measures the XDP hook's paths instead (bench/xdp_paths.py has the method).

Method
------
Packet rate. Copies of one topology exist side by side, each "container A -> container B" in
namespaces of their own:

  direct      a veth pair A:eth0 <-> B:eth0 (no switch at all: the ceiling),
  bare        A and B on veth pairs whose host ends are joined by a bare TC program each
              (`return bpf_redirect_peer(other end)`), attached the way the datapath attaches
              its own (TCX, or clsact on kernels without it): the ceiling of any TC datapath
              on this machine (DESIGN.md's reference; no switching at all),
  kernel      A and B on a vswitchd bridge with `--datapath kernel` (plain Linux bridge),
  ebpf        A and B on a vswitchd bridge with `--datapath ebpf` (TC pipeline,
              bpf_redirect_peer), its flow table empty,
  ebpf-notrace  the same on a second daemon whose programs are built without the watch stage
              (VSWITCHD_NO_TRACE=1): the baseline of the tracing cost,
  ebpf+watch  the ebpf pair while one `vswctl watch` runs whose filter matches none of the
              test traffic (udp,tp_dst=7): the datapath evaluates the filter on every frame,
  ebpf+flows  the same on a bridge of its own whose flow table holds --flows rules (default
              1000; 0 leaves this setup out), installed with `vswctl add-flows`, that none of
              the test traffic matches. They are spread evenly over 4 masks, one priority per
              mask, as a table of an operator might be: `in_port=fa,udp,tp_dst=P` (A's own
              port and protocol, another UDP port), `ip,nw_dst=10.128+.x.0/24`, `dl_src=02:99:..`
              (exact) and `tcp,tp_dst=P`; all with actions=drop, so a rule matching by mistake
              would show (ping fails, rate falls). Every frame thus misses in all 4 masks and
              takes the table-miss `normal`. After the rounds `vswctl -j dump-flows` must list
              all the rules with n_packets 0; the check is printed.

The daemon runs in a "host" namespace of its own (tests.netns.harness.Host), the ports are made
by `vswctl add-port ... --netns`, so the bridged containers are exactly what an operator gets.

A's generator is trafgen on ONE core (`--cpus 1`, its worker pinned to one CPU) sending 64-byte
UDP frames (60 bytes handed to the device + 4 of FCS on a wire) to B's MAC and IP, UDP port 9,
with a correct IPv4 header checksum (the kernel bridge hands IPv4 to netfilter, which drops bad
checksums) and no UDP checksum. trafgen bypasses the qdisc and is told not to touch socket
memory sysctls or IRQ affinity (they are machine-wide). Before every measurement A pings B, so
ARP and the forwarding databases of both bridges hold B (the known-unicast path is measured,
not flooding).

Frames are counted at the TC ingress hook of B:eth0 by a tiny bcc program (per-CPU array,
counts IPv4/UDP to port 9 only), attached from inside B's namespace. The veth rx counters are
not used: bpf_redirect_peer delivers straight into B's stack and bypasses them (and XDP), but
B's TC ingress runs on every path. --sink says what happens to a counted frame then:

  drop   (default) TC_ACT_SHOT: the figure is the rate at which the path delivers frames to B,
         the switch's own cost (DESIGN.md's baselines were measured this way);
  stack  TC_ACT_OK: B's IP stack also handles every frame (a UDP port nobody listens on: a
         route lookup and an ICMP port-unreachable attempt each). That cost is the same on every
         path and weighs on every one of them, so all ratios move towards 1.

Each measurement: start trafgen, let it run 0.5 s, read the counter, wait --seconds, read it
again, stop trafgen; rate = delta / elapsed.
The setups are interleaved in every round (the order rotates from round to round) so that
the noise of a shared machine hits all of them alike; the figure is the per-setup median over
--rounds, with min and max shown.

Goals (issue 16): in the drop sink ebpf/bare >= 0.92 and ebpf/kernel >= 1.4; in the stack sink
ebpf/kernel >= 1.3; ebpf/direct and the other ratios to direct are printed for information.

--profile: after the rounds, bare and ebpf are measured once more each under `perf record -a`
(where the time of both CPUs goes, by symbol; BPF programs show as bpf_prog_<tag>_<name>), and
once more with BPF run-time statistics on (BPF_ENABLE_STATS): the mean ns of a run of each BPF
program, the counting program at B's ingress included. Both slow the path a little.

Control plane, on the same daemon:
  * start to ready: from spawning vswitchd until its GetStatus answers (polled in-process over
    gRPC every 20 ms), once fresh (empty state and pin directory) and once again after a stop,
    with the datapath pinned in bpffs and the bridges in the state store;
  * `vswctl add-port` of --ports veth ports, each into a namespace of its own, on an ebpf bridge:
    median wall time of the CLI command (a whole vswctl process), next to the median of
    `vswctl status` (the CLI's own floor: interpreter, imports, channel);
  * resident memory of vswitchd (VmRSS, and the peak VmHWM, from /proc/PID/status) at each stage.
    The daemon is started as `nsenter --net=... vswitchd`; nsenter without --fork execs, so the
    Popen's PID is vswitchd's: the script checks /proc/PID/cmdline and otherwise looks among
    the children.

Everything created (namespaces, links, pins, processes) carries the harness's random tag and is
removed in a finally block; processes are stopped by their own PID / process group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The venv's vswitchd / vswctl entry points must import this checkout (children inherit this).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), str(ROOT / "clients"), os.environ.get("PYTHONPATH", "")) if p
)

from pyroute2 import NetNS, netns  # noqa: E402
from rate_common import SINKS, Counters, div, log, start_trafgen, stop_group, tc_ingress  # noqa: E402

from tests.netns.harness import (  # noqa: E402
    NETNS_DIR,
    VSWCTL,
    VSWITCHD,
    Host,
    trafgen_udp_config,
)
from vswitchd.datapath import bpfsys, tcx  # noqa: E402
from vswitchd.netlink import netns as netns_of_vswitchd  # noqa: E402

SETUPS = ("direct", "bare", "kernel", "ebpf", "ebpf-notrace", "ebpf+watch", "ebpf+flows")
# Goals per sink (issue 16): against bare, the ceiling of any TC datapath, in the drop sink (the
# path's own cost), and against the kernel bridge in both; ebpf/direct is for information.
GOALS_EVERY_SINK = {"ebpf+flows/ebpf": 0.95, "ebpf/ebpf-notrace": 0.97,
                    "ebpf+watch/ebpf-notrace": 0.9}
GOALS = {"drop": {"ebpf/bare": 0.92, "ebpf/kernel": 1.4, **GOALS_EVERY_SINK},
         "stack": {"ebpf/kernel": 1.3, **GOALS_EVERY_SINK}}
INFO_RATIOS = ("kernel/direct", "bare/direct", "ebpf/direct", "ebpf/bare")  # without a goal
PROFILED = ("bare", "ebpf")  # --profile: where the time of each goes
WATCH_MATCH = "udp,tp_dst=7"  # ebpf+watch's filter; the test traffic: UDP to 9, ICMP, ARP
FLOW_BRIDGE, FLOW_SHORT = "brf", "f"  # ports "fa" (A's) and "fb" (B's)
FLOW_MASKS = 4
UDP_PORT = 9
FRAME_LEN = 60  # + 4 bytes FCS on a wire = the classic 64-byte frame
MAC_A, MAC_B = "02:98:00:00:00:0b", "02:98:00:00:00:0c"
IP_A, IP_B, PREFIX = "10.98.0.11", "10.98.0.12", 24
WARMUP = 0.5

# The "bare" setup: each host-side end hands its frames straight to the other end's peer.
BARE_C = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

int to_b(struct __sk_buff *skb) { return bpf_redirect_peer(IFINDEX_B, 0); }
int to_a(struct __sk_buff *skb) { return bpf_redirect_peer(IFINDEX_A, 0); }
"""


# ---- the generator ----------------------------------------------------------------------------


def tx_packets(ipr: NetNS, ifname: str) -> int:
    link = ipr.get_links(ifname=ifname)[0]
    return int(link.get_attr("IFLA_STATS64")["tx_packets"])


def measure(host: Host, counters: Counters, setup: str, a_ns: str, b_ns: str, cfg: str,
            seconds: float, b_port: tuple[NetNS, str] | None,
            perf_data: Path | None = None) -> tuple[float, float | None]:
    """Mpps received at B while trafgen (one core) sends from A for `seconds`, and the share
    of them that left through B's host-side port the ordinary way (its tx counter; frames
    redirected with bpf_redirect_peer never pass there), or None for the direct pair.
    With perf_data, `perf record -a` samples every CPU meanwhile into that file."""
    if not host.ping(a_ns, IP_B, count=1):
        raise RuntimeError(f"{setup}: A cannot ping B before the measurement")
    proc = start_trafgen(f"{NETNS_DIR}/{a_ns}", cfg, WARMUP)
    try:
        x0 = tx_packets(*b_port) if b_port else 0
        c0, t0 = counters.read(setup), time.monotonic()
        if perf_data is None:
            time.sleep(seconds)
        else:
            subprocess.run(["perf", "record", "-q", "-a", "-F", "2999", "-o", str(perf_data),
                            "--", "sleep", str(seconds)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c1, t1 = counters.read(setup), time.monotonic()
        x1 = tx_packets(*b_port) if b_port else 0
    finally:
        stop_group(proc)
    share = (x1 - x0) / (c1 - c0) if b_port and c1 > c0 else None
    return (c1 - c0) / (t1 - t0) / 1e6, share


# ---- topology ---------------------------------------------------------------------------------


def perf_top(data: Path, limit: float = 1.0) -> list[tuple[float, str]]:
    """(share %, symbol) of the samples in a `perf record` file, by symbol, the largest first
    (those of limit % and more). BPF programs show as bpf_prog_<tag>_<name>."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-q", "--sort", "sym",
                          "--percent-limit", str(limit)],
                         capture_output=True, text=True, check=True).stdout
    top = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%"):
            top.append((float(parts[0][:-1]), " ".join(parts[2:])))
    return top


BPF_PROG_GET_NEXT_ID, BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 11, 32, 0


def bpf_prog_runs() -> dict[int, tuple[str, int, int]]:
    """Every BPF program of the machine: id -> (name, run_time_ns, run_cnt); the times count
    only while run-time stats are on (bpf_run_stats)."""
    import ctypes

    class NextId(ctypes.Structure):
        _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32)]

    progs: dict[int, tuple[str, int, int]] = {}
    attr = NextId(0, 0)
    while True:
        try:
            bpfsys.bpf(BPF_PROG_GET_NEXT_ID, attr, "BPF_PROG_GET_NEXT_ID")
        except FileNotFoundError:
            return progs
        attr.start_id = attr.next_id
        try:
            fd = bpfsys.bpf(bpfsys.BPF_PROG_GET_FD_BY_ID, NextId(attr.next_id, 0),
                            "BPF_PROG_GET_FD_BY_ID")
        except OSError:  # gone meanwhile
            continue
        try:
            info = bpfsys.obj_info(fd, 224)
        finally:
            os.close(fd)
        name = info[64:80].split(b"\0")[0].decode()
        progs[attr.next_id] = (name, int.from_bytes(info[192:200], "little"),
                               int.from_bytes(info[200:208], "little"))


@contextlib.contextmanager
def bpf_run_stats(into: dict[str, float]):
    """BPF run-time statistics on (BPF_ENABLE_STATS: while its fd is open) for the block; then
    into[name] = mean ns a run of each program that ran at least 10 000 times meanwhile. The
    stats cost two clock reads a run, so rates measured meanwhile are a little lower."""
    import ctypes

    class EnableStats(ctypes.Structure):
        _fields_ = [("type", ctypes.c_uint32)]

    fd = bpfsys.bpf(BPF_ENABLE_STATS, EnableStats(BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")
    try:
        before = bpf_prog_runs()
        yield
        after = bpf_prog_runs()
    finally:
        os.close(fd)
    for pid, (name, ns, cnt) in after.items():
        _, ns0, cnt0 = before.get(pid, (name, 0, 0))
        if cnt - cnt0 >= 10_000:
            into[name] = (ns - ns0) / (cnt - cnt0)


def make_direct_pair(host: Host) -> tuple[str, str]:
    """A veth pair A:eth0 <-> B:eth0 between two fresh namespaces (tagged: cleaned with host)."""
    a_ns, b_ns = host.name("dA"), host.name("dB")
    for ns in (a_ns, b_ns):
        netns.create(ns)
    b_fd = os.open(f"{NETNS_DIR}/{b_ns}", os.O_RDONLY)
    try:
        with NetNS(a_ns) as ipr:
            ipr.link("add", ifname="eth0", kind="veth", address=MAC_A,
                     peer={"ifname": "eth0", "net_ns_fd": b_fd, "address": MAC_B})
    finally:
        os.close(b_fd)
    configure_ends(a_ns, b_ns)
    return a_ns, b_ns


def configure_ends(a_ns: str, b_ns: str) -> None:
    for ns, ip in ((a_ns, IP_A), (b_ns, IP_B)):
        with NetNS(ns) as ipr:
            ipr.link("set", index=1, state="up")
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=idx, address=ip, prefixlen=PREFIX)
            ipr.link("set", index=idx, state="up")


def make_bare_pair(host: Host):
    """A and B on veth pairs whose host ends xa, xb (in the host namespace) are joined by
    BARE_C. Returns (a_ns, b_ns) and what keeps the programs attached: the bcc module and
    the TCX link fds."""
    from bcc import BPF

    a_ns, b_ns = host.name("xA"), host.name("xB")
    idx = {}
    with NetNS(host.ns) as ipr:
        for ns, mac, end in ((a_ns, MAC_A, "xa"), (b_ns, MAC_B, "xb")):
            netns.create(ns)
            fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY)
            try:
                ipr.link("add", ifname=end, kind="veth",
                         peer={"ifname": "eth0", "net_ns_fd": fd, "address": mac})
            finally:
                os.close(fd)
            idx[end] = ipr.link_lookup(ifname=end)[0]
            ipr.link("set", index=idx[end], state="up")
    configure_ends(a_ns, b_ns)
    bpf = BPF(text=BARE_C, cflags=[f"-DIFINDEX_A={idx['xa']}", f"-DIFINDEX_B={idx['xb']}"])
    to_b, to_a = bpf.load_func("to_b", BPF.SCHED_CLS), bpf.load_func("to_a", BPF.SCHED_CLS)
    try:  # attached as the datapath attaches its own (TCX links, else clsact)
        with netns_of_vswitchd.entered(host.ns):
            links = [tcx.link_create(idx["xa"], to_b.fd, "ingress"),
                     tcx.link_create(idx["xb"], to_a.fd, "ingress")]
    except tcx.TcxUnsupported:
        links = []
        tc_ingress(host.ns, "xa", to_b)
        tc_ingress(host.ns, "xb", to_a)
    return (a_ns, b_ns), (bpf, links)  # the links hold as long as their fds stay open


@contextlib.contextmanager
def watcher(host: Host, bridge: str, counts: dict):
    """`vswctl -j watch BRIDGE --match WATCH_MATCH` for the duration of the block, started
    once the daemon logged its watcher; counts["events"] gets the lines it printed."""
    n = host.log().count(": started (slot")
    proc = subprocess.Popen([VSWCTL, "--socket", host.socket, "-j", "watch", bridge,
                             "--match", WATCH_MATCH],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while host.log().count(": started (slot") <= n:
            if proc.poll() is not None or time.monotonic() - t0 > 10:
                raise RuntimeError(f"the watcher did not start: {proc.communicate()}")
            time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        counts["events"] = counts.get("events", 0) + len(out.splitlines())


def make_bridged_pair(host: Host, bridge: str, datapath: str, short: str) -> tuple[str, str]:
    host.vswctl("add-br", bridge, "--datapath", datapath)
    names = []
    for side, mac, ip in (("A", MAC_A, IP_A), ("B", MAC_B, IP_B)):
        ns = host.name(f"{short}{side}")
        host.vswctl("add-port", bridge, f"{short}{side.lower()}", "--netns", ns,
                    "--ip", f"{ip}/{PREFIX}", "--mac", mac)
        names.append(ns)
    return names[0], names[1]


def flow_rules(n: int, in_port: str) -> list[str]:
    """n rules over FLOW_MASKS masks (one priority each), none matching the test traffic
    (UDP 1024 -> 9 between 02:98:.. / 10.98.0.0/24, its pings and ARP, both directions)."""
    if n > FLOW_MASKS * 30_000:
        raise ValueError(f"--flows {n}: at most {FLOW_MASKS * 30_000}")
    rules = []
    for k in range(n):
        m, i = k % FLOW_MASKS, k // FLOW_MASKS
        prio = 100 * (FLOW_MASKS - m)
        if m == 0:    # A's ingress port, UDP, another destination port
            match = f"in_port={in_port},udp,tp_dst={20_000 + i}"
        elif m == 1:  # /24s in 10.128.0.0/9 (the test subnet is 10.98.0.0/24)
            net = (10 << 24) + (128 << 16) + (i << 8)
            match = f"ip,nw_dst={net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.0/24"
        elif m == 2:  # exact source MACs 02:99:.. (the test MACs are 02:98:..)
            match = f"dl_src=02:99:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        else:         # TCP (the test traffic is UDP, ICMP and ARP)
            match = f"tcp,tp_dst={20_000 + i}"
        rules.append(f"priority={prio},{match},actions=drop")
    return rules


def flow_counts(host: Host, bridge: str) -> dict:
    """Rules listed by `vswctl -j dump-flows` and those whose n_packets is not 0."""
    rows = host.json("dump-flows", bridge)
    hit = [f"priority={r['priority']},{r['match']} n_packets={r['n_packets']}"
           for r in rows if r["n_packets"]]
    return {"listed": len(rows), "n_packets_total": sum(r["n_packets"] for r in rows),
            "rules_with_packets": hit}


# ---- daemon: timed start, PID, memory ---------------------------------------------------------


def start_timed(host: Host, *extra: str, timeout: float = 120.0,
                env: dict | None = None) -> float:
    """Like Host.start (EXTRA: more vswitchd flags), but readiness is polled in-process every
    20 ms (a vswctl process per poll would cost more than the resolution we want)."""
    import grpc

    from vswapi import switch_pb2 as pb
    from vswapi.client import connect

    assert host.proc is None or host.proc.poll() is not None, "daemon already running"
    host.workdir.mkdir(parents=True, exist_ok=True)
    logf = open(host.log_path, "a")  # noqa: SIM115 - owned by the child's lifetime
    t0 = time.monotonic()
    host.proc = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR}/{host.ns}", VSWITCHD, "--socket", host.socket,
         "--state-dir", host.state_dir, "--bpffs-dir", host.bpffs_dir, "--log-level", "info",
         *extra],
        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    logf.close()
    while time.monotonic() - t0 < timeout:
        if host.proc.poll() is not None:
            raise RuntimeError(f"vswitchd exited with {host.proc.returncode}:\n{host.log()}")
        if os.path.exists(host.socket):
            with connect(host.socket) as client:
                try:
                    client.GetStatus(pb.GetStatusRequest(), timeout=1)
                    return time.monotonic() - t0
                except grpc.RpcError:
                    pass
        time.sleep(0.02)
    raise RuntimeError(f"vswitchd not ready after {timeout}s:\n{host.log()}")


def daemon_pid(host: Host) -> int:
    """vswitchd's PID: the Popen's own when nsenter exec'd it (expected), else its child's."""
    pid = host.proc.pid

    def is_vswitchd(p: int) -> bool:
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return any(arg.endswith(b"/vswitchd") for arg in argv[:2])

    if is_vswitchd(pid):
        return pid
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                if is_vswitchd(int(child)):
                    return int(child)
    raise RuntimeError(f"cannot find vswitchd's PID under {pid}")


def memory(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return out


def cli_times(host: Host, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        host.vswctl("status")
        times.append(time.monotonic() - t0)
    return times


# ---- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict:
    res: dict = {
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "loadavg_1m_at_start": os.getloadavg()[0]},
        "params": {"rounds": args.rounds, "seconds": args.seconds, "ports": args.ports,
                   "flows": args.flows, "flow_masks": FLOW_MASKS, "sink": args.sink,
                   "frame_bytes": FRAME_LEN + 4, "generator": "trafgen --cpus 1"},
        "memory_mib": {}, "notes": [],
    }
    host = Host(workdir)
    (workdir / "notrace").mkdir()
    host2 = Host(workdir / "notrace")  # the daemon built without the watch stage
    counters: Counters | None = None
    bare = None
    # one socket per namespace for the per-round counter reads (opening one is slow)
    host_ipr, host2_ipr = NetNS(host.ns), NetNS(host2.ns)
    watch_counts: dict = {}
    try:
        log(f"host namespace {host.ns}; starting vswitchd (fresh)")
        res["start_fresh_s"] = start_timed(host)
        pid = daemon_pid(host)
        res["daemon_pid_is_popen_pid"] = pid == host.proc.pid
        res["memory_mib"]["after fresh start"] = memory(pid)
        status = host.json("status")
        status = status[0] if isinstance(status, list) else status

        pairs = {"direct": make_direct_pair(host)}
        pairs["bare"], bare = make_bare_pair(host)
        pairs["kernel"] = make_bridged_pair(host, "brk", "kernel", "k")
        try:
            pairs["ebpf"] = make_bridged_pair(host, "bre", "ebpf", "e")
        except AssertionError as exc:
            reason = str(exc).strip().splitlines()
            res["notes"].append("ebpf datapath unavailable: " + " | ".join(reason[-2:]))
            log(res["notes"][-1])
        if "ebpf" in pairs:
            log("starting a second vswitchd, built without the watch stage")
            start_timed(host2, env={"VSWITCHD_NO_TRACE": "1"})
            pairs["ebpf-notrace"] = make_bridged_pair(host2, "brn", "ebpf", "n")
            pairs["ebpf+watch"] = pairs["ebpf"]  # the same pair, measured while watched
        if "ebpf" in pairs and args.flows > 0:
            pairs["ebpf+flows"] = make_bridged_pair(host, FLOW_BRIDGE, "ebpf", FLOW_SHORT)
            rules_file = workdir / "rules.flows"
            rules_file.write_text("\n".join(flow_rules(args.flows, f"{FLOW_SHORT}a")) + "\n")
            log(f"installing {args.flows} rules on {FLOW_BRIDGE}")
            t0 = time.monotonic()
            host.vswctl("add-flows", FLOW_BRIDGE, str(rules_file))
            res["add_flows_s"] = time.monotonic() - t0
            before = flow_counts(host, FLOW_BRIDGE)
            if before["listed"] != args.flows:
                raise RuntimeError(f"{FLOW_BRIDGE}: {before['listed']} rules listed after "
                                   f"adding {args.flows}")
        setups = [s for s in SETUPS if s in pairs]
        res["memory_mib"]["with bench bridges"] = memory(pid)

        cfg = workdir / "udp64.trafgen"
        cfg.write_text(trafgen_udp_config(MAC_A, MAC_B, IP_A, IP_B, UDP_PORT, FRAME_LEN))
        log("compiling the counting program")
        counters = Counters(setups, args.sink, UDP_PORT)
        for s in setups:
            if s != "ebpf+watch":  # counted by ebpf's program (one filter per device)
                counters.attach(s, pairs[s][1])

        rates: dict[str, list[float]] = {s: [] for s in setups}
        shares: dict[str, list[float]] = {s: [] for s in setups}
        b_ports = {"direct": None, "bare": (host_ipr, "xb"), "kernel": (host_ipr, "kb"),
                   "ebpf": (host_ipr, "eb"), "ebpf-notrace": (host2_ipr, "nb"),
                   "ebpf+watch": (host_ipr, "eb"), "ebpf+flows": (host_ipr, f"{FLOW_SHORT}b")}
        for r in range(args.rounds):
            order = setups[r % len(setups):] + setups[: r % len(setups)]
            for s in order:
                slot = "ebpf" if s == "ebpf+watch" else s
                with (watcher(host, "bre", watch_counts) if s == "ebpf+watch"
                      else contextlib.nullcontext()):
                    rate, share = measure(host, counters, slot, *pairs[s], str(cfg),
                                          args.seconds, b_ports[s])
                rates[s].append(rate)
                if share is not None:
                    shares[s].append(share)
                log(f"round {r + 1}/{args.rounds} {s:10s} {rate:.3f} Mpps"
                    + (f"  (via B's host port tx: {share:.0%})" if share is not None else ""))
        res["machine"]["loadavg_1m_after_rate"] = os.getloadavg()[0]
        if args.profile:
            res["profile"] = {}
            for s in (x for x in PROFILED if x in pairs):
                log(f"profiling {s} with perf record -a")
                data = workdir / f"perf-{s}.data"
                rate, _ = measure(host, counters, s, *pairs[s], str(cfg), args.seconds,
                                  b_ports[s], perf_data=data)
                ns_per_run: dict[str, float] = {}
                with bpf_run_stats(ns_per_run):
                    measure(host, counters, s, *pairs[s], str(cfg), args.seconds, b_ports[s])
                res["profile"][s] = {"mpps": rate, "top": perf_top(data),
                                     "bpf_ns_per_run": ns_per_run}
        # Drops the datapath counted at A's host-side port (where the frames enter a bridge):
        # a switch that drops the test frames shows here, not as a low rate only.
        bridges = {"kernel": (host, "brk", "ka"), "ebpf": (host, "bre", "ea"),
                   "ebpf-notrace": (host2, "brn", "na"),
                   "ebpf+flows": (host, FLOW_BRIDGE, f"{FLOW_SHORT}a")}
        res["drops_at_a_port"] = {}
        for s in setups:
            if s in bridges:
                owner, bridge, a_port = bridges[s]
                rows = owner.json("port-stats", bridge)
                row = next((r for r in rows if r["port"] == a_port), None)
                if row and row["drops"]:
                    res["drops_at_a_port"][s] = row["drops_by_reason"] or {"?": row["drops"]}
        if "ebpf+watch" in pairs:
            res["watch_events"] = watch_counts.get("events", 0)
        if "ebpf+flows" in pairs:
            res["flow_check"] = flow_counts(host, FLOW_BRIDGE)
            log(f"{FLOW_BRIDGE} after the rounds: {res['flow_check']}")
        res["mpps"] = {s: {"median": statistics.median(v), "min": min(v), "max": max(v),
                           "rounds": v} for s, v in rates.items()}
        res["via_host_port_tx"] = {s: statistics.median(v) for s, v in shares.items() if v}
        med = {s: v["median"] for s, v in res["mpps"].items()}
        names = [n for n in dict.fromkeys((*GOALS[args.sink], *INFO_RATIOS))
                 if n.split("/")[0] in med and n.split("/")[1] in med]
        # Ratio of the medians, and the median of the per-round ratios (the setups of one
        # round ran back to back, so slow drifts of a shared machine cancel better there).
        # None where the denominator is 0 (a setup that received nothing).
        res["ratios"] = {n: div(med[n.split("/")[0]], med[n.split("/")[1]]) for n in names}
        res["ratios_per_round_median"] = {}
        for n in names:
            per = [div(a, b) for a, b in zip(rates[n.split("/")[0]], rates[n.split("/")[1]],
                                             strict=True)]
            res["ratios_per_round_median"][n] = (
                statistics.median(per) if None not in per else None)

        log("restarting vswitchd over its pinned datapath")
        host.stop()
        pins = sorted(os.listdir(host.bpffs_dir)) if os.path.isdir(host.bpffs_dir) else []
        res["pins_while_stopped"] = pins
        res["start_pinned_s"] = start_timed(host)
        pid = daemon_pid(host)
        res["memory_mib"]["after restart (pinned)"] = memory(pid)
        for s in ("kernel", "ebpf", "ebpf+flows"):
            if s in pairs and not host.ping(pairs[s][0], IP_B, count=1):
                res["notes"].append(f"{s}: A cannot ping B after the restart")

        dp = "ebpf" if "ebpf" in pairs else "kernel"
        log(f"adding {args.ports} veth ports with namespaces to a {dp} bridge")
        host.vswctl("add-br", "brp", "--datapath", dp)
        floor = cli_times(host, 10)
        add_times = []
        for i in range(args.ports):
            t0 = time.monotonic()
            host.vswctl("add-port", "brp", f"p{i}", "--netns", host.name(f"p{i}"),
                        "--ip", f"10.97.{i // 200}.{i % 200 + 1}/16",
                        "--mac", f"02:97:00:00:{i // 256:02x}:{i % 256:02x}")
            add_times.append(time.monotonic() - t0)
        res["add_port"] = {"datapath": dp, "n": args.ports,
                           "median_s": statistics.median(add_times),
                           "p90_s": sorted(add_times)[int(0.9 * (len(add_times) - 1))],
                           "max_s": max(add_times),
                           "vswctl_status_median_s": statistics.median(floor)}
        res["memory_mib"][f"with {args.ports} more ports"] = memory(pid)
        t0 = time.monotonic()
        host.vswctl("del-br", "brp")
        res["del_br_with_ports_s"] = time.monotonic() - t0
        res["ebpf_supported_status"] = status.get("ebpf_supported") if isinstance(
            status, dict) else None
        return res
    finally:
        host_ipr.close()
        host2_ipr.close()
        if counters is not None:
            counters.close()
        if bare is not None:
            bare_bpf, links = bare
            for fd in links:
                os.close(fd)
            bare_bpf.cleanup()
        for h in (host, host2):
            h.cleanup()
            left = [n for n in os.listdir(NETNS_DIR) if n.startswith(h.tag)]
            if left or os.path.exists(h.bpffs_dir):
                log(f"WARNING: left behind after cleanup: {left} {h.bpffs_dir}")


def report(res: dict) -> str:
    p = res["params"]
    lines = [
        f"vswitchd benchmark  (kernel {res['machine']['kernel']}, {res['machine']['cpus']} CPUs,"
        f" 1-min load {res['machine']['loadavg_1m_at_start']:.2f} at start,"
        f" {res['machine']['loadavg_1m_after_rate']:.2f} after the packet rounds)",
        "",
        f"Packet rate: {p['frame_bytes']}-byte UDP frames ({FRAME_LEN} + FCS), A -> B, "
        f"one trafgen core, counted at TC ingress of B (--sink {p['sink']}: "
        + ("dropped there: the paths' own cost" if p["sink"] == "drop" else
           "then handled by B's IP stack, a cost common to every path") + ")",
        f"{p['rounds']} interleaved rounds x {p['seconds']:g} s; Mpps",
        "",
    ]
    if p["flows"] > 0:
        lines.insert(-1, f"ebpf+flows: ebpf on a bridge of its own with {p['flows']} rules over"
                         f" {p['flow_masks']} masks, none matching the test traffic")
    w = max(8, *(len(s) for s in res["mpps"]))
    lines.append(f"  {'setup':<{w}} {'median':>8} {'min':>8} {'max':>8}   rounds")
    for s, v in res["mpps"].items():
        rounds = " ".join(f"{x:.3f}" for x in v["rounds"])
        lines.append(f"  {s:<{w}} {v['median']:8.3f} {v['min']:8.3f} {v['max']:8.3f}   {rounds}")
    if "ebpf" not in res["mpps"]:
        lines.append(f"  {'ebpf':<{w}} {'n/a':>8}   (datapath not available)")
    for s, reasons in res.get("drops_at_a_port", {}).items():
        lines.append(f"  DATAPATH DROPS at A's port during the run, {s}: "
                     + ", ".join(f"{k}={v}" for k, v in reasons.items()))
    fc = res.get("flow_check")
    if fc is not None:
        ok = fc["listed"] == p["flows"] and not fc["rules_with_packets"]
        lines.append(f"  flow check: `vswctl -j dump-flows {FLOW_BRIDGE}` after the rounds lists"
                     f" {fc['listed']} rules, {len(fc['rules_with_packets'])} with n_packets > 0"
                     f" (total {fc['n_packets_total']}): {'OK' if ok else 'FAILED'}"
                     f"; add-flows of {p['flows']} took {res['add_flows_s']:.2f} s")
        if res["mpps"]["ebpf+flows"]["max"] == 0:
            lines.append("    (says little: no test frame reached B on ebpf+flows, so none may"
                         " have reached the table either)")
        for hit in fc["rules_with_packets"][:10]:
            lines.append(f"    hit: {hit}")
    if "watch_events" in res:
        lines.append(f"  watch check: the ebpf+watch watcher ({WATCH_MATCH}) printed "
                     f"{res['watch_events']} events: "
                     + ("OK" if res["watch_events"] == 0 else "FAILED, it matched something"))
    via = res.get("via_host_port_tx", {})
    if via:
        lines.append("  path check: share of received frames that left B's host-side port via its"
                     " tx (kernel forwarding): "
                     + ", ".join(f"{s} {v:.0%}" for s, v in via.items()))
    lines.append("")
    rw = max(13, *(len(n) for n in res["ratios"]))
    lines.append(f"  {'ratio':<{rw}} {'medians':>8} {'rounds':>8}   (ratio of the medians; "
                 "median of the per-round ratios)")
    for name, value in res["ratios"].items():
        goal = GOALS[p["sink"]].get(name)
        verdict = ""
        if goal is not None and value is not None:
            verdict = f"goal >= {goal:.2f}x  {'met' if value >= goal else 'NOT met'}"
        elif goal is not None:
            verdict = f"goal >= {goal:.2f}x  n/a ({name.split('/')[1]} received nothing)"
        per_round = res["ratios_per_round_median"][name]
        fmt = lambda x: f"{x:7.3f}x" if x is not None else f"{'n/a':>8}"  # noqa: E731
        lines.append(f"  {name:<{rw}} {fmt(value)} {fmt(per_round)}   {verdict}")
    for name, goal in GOALS[p["sink"]].items():
        if name not in res["ratios"]:
            why = "--flows 0" if name.startswith("ebpf+flows") and "ebpf" in res["mpps"] else (
                "no ebpf figure")
            lines.append(f"  {name:<{rw}} {'n/a':>6}    goal >= {goal:.2f}x  ({why})")
    ap = res["add_port"]
    lines += [
        "",
        "Control plane",
        f"  start to ready, fresh                 {res['start_fresh_s']:7.2f} s",
        f"  start to ready, pinned datapath       {res['start_pinned_s']:7.2f} s"
        f"   (pins kept while stopped: {', '.join(res['pins_while_stopped']) or 'none'})",
        f"  vswctl add-port veth+netns, median    {ap['median_s'] * 1000:7.0f} ms"
        f"   (p90 {ap['p90_s'] * 1000:.0f} ms, max {ap['max_s'] * 1000:.0f} ms; {ap['n']} ports,"
        f" {ap['datapath']} bridge)",
        f"  vswctl status, median (CLI floor)     {ap['vswctl_status_median_s'] * 1000:7.0f} ms",
        f"  vswctl del-br of those {ap['n']} ports        {res['del_br_with_ports_s']:7.2f} s",
        "",
        "vswitchd memory (MiB)             VmRSS    VmHWM"
        f"   (PID is the nsenter Popen's: {res['daemon_pid_is_popen_pid']})",
    ]
    for stage, m in res["memory_mib"].items():
        lines.append(f"  {stage:<30} {m['VmRSS']:7.1f}  {m['VmHWM']:7.1f}")
    for s, prof in res.get("profile", {}).items():
        lines += ["", f"perf profile of {s} ({prof['mpps']:.3f} Mpps while sampled;"
                  " `perf record -a`, both CPUs; symbols of >= 1% of the samples)"]
        bpf = sum(pct for pct, sym in prof["top"] if sym.startswith("bpf_prog_"))
        lines += [f"  {pct:6.2f}%  {sym}" for pct, sym in prof["top"]]
        lines.append(f"  BPF programs in all (the listed ones): {bpf:.2f}%")
        runs = sorted(prof["bpf_ns_per_run"].items())
        lines.append("  mean ns a run, from BPF run-time stats in a measurement of its own: "
                     + ", ".join(f"{n} {v:.1f}" for n, v in runs))
    for note in res["notes"]:
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (3)")
    ap.add_argument("--ports", type=int, default=50, help="ports to add for add-port timing (50)")
    ap.add_argument("--flows", type=int, default=1000, metavar="N",
                    help="rules on the ebpf+flows bridge, none matching (1000; 0: no such setup)")
    ap.add_argument("--sink", choices=sorted(SINKS), default="drop",
                    help="at B's TC ingress, drop the counted frames (default: the paths' own "
                         "cost) or hand them to B's IP stack (stack)")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 1 s, 10 ports")
    ap.add_argument("--xdp-paths", action="store_true",
                    help="instead: the XDP hook's paths (uplink->container, TAP->TAP, "
                         "TAP->container, drops at a TAP), each through XDP, TC only and the "
                         "kernel bridge (bench/xdp_paths.py)")
    ap.add_argument("--profile", action="store_true",
                    help="after the rounds, one more measurement of bare and ebpf each under "
                         "`perf record -a`; prints where their time goes")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.ports = 2, 1.0, 10
    if not 0 <= args.flows <= FLOW_MASKS * 30_000:
        ap.error(f"--flows must be within 0..{FLOW_MASKS * 30_000}")
    if os.geteuid() != 0:
        print("bench/packet_rate.py needs root (namespaces, BPF)", file=sys.stderr)
        return 1
    os.makedirs(NETNS_DIR, exist_ok=True)
    if args.xdp_paths:
        import xdp_paths  # bench/, beside this script

        run_it, report_it = xdp_paths.run, xdp_paths.report
    else:
        run_it, report_it = run, report
    with tempfile.TemporaryDirectory(prefix="vswbench-") as tmp:
        res = run_it(args, Path(tmp))
    print(report_it(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
