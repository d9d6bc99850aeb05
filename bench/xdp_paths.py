"""The paths the XDP hook serves, each through XDP, the TC-only path of the same build and the
kernel bridge, side by side: `bench/packet_rate.py --xdp-paths [--quick|--rounds N ...]`.

Setups. Three bridges on one daemon, one per variant, each with the same ports:
  xdp     --datapath ebpf, uplink and TAPs with --xdp auto (checked: native),
  tc      --datapath ebpf, uplink and TAPs with --xdp off (the TC pipeline alone),
  kernel  --datapath kernel (plain Linux bridge).
Ports: `Xup` (--type system: a veth whose other end, eth0, is in a "LAN" namespace of its own),
TAPs `Xg` (a generator writes into it), `Xs` (a sink reads from it), `Xd` (a generator floods
it with frames a rule drops; not on kernel), and container B (`Xb`, in a namespace, as
packet_rate's B: frames counted at its TC ingress by the same counter, --sink drop|stack).
Static FDB entries hold B's and the sink's MACs (nothing they send is needed to learn them).

Paths, 60-byte IPv4/UDP frames (64 on a wire) to port 9 with UDP checksum 0 (XDP finishes
those; a partial checksum would be handed to TC) and a correct IPv4 checksum (the kernel
bridge's netfilter drops bad ones):
  uplink->B  trafgen on one core in the LAN namespace -> Xup -> B (counted at B's TC ingress),
  tap->tap   bench/tapio.c writing one frame per write() to Xg's fd from one core (non-blocking,
             as QEMU: tun runs native XDP only for such writers) -> Xs, whose reader (tapio
             sink, on the other CPU) counts what it reads,
  tap->B     the same generator -> B (counted at B's TC ingress),
  drop@tap   the generator into Xd, matching `priority=100,in_port=Xd,udp,actions=drop`:
             frames/s from Xd's flow-drop counter (port-stats drops_by_reason), xdp vs tc.
Beside them, the generator's own ceiling: tapio into a lone TAP whose XDP program (native)
drops everything; no path through a TAP can be faster than that.

Every measurement: start the generator (pinned to GEN_CPU), wait WARMUP, sample, wait
--seconds, sample, stop it. Samples: the rate's source (B's counter, the sink's count, the
flow-drop counter, or the generator's own count), what the generator got into the kernel
("offered": tapio's successful writes; for trafgen, the LAN end's tx_packets + tx_dropped),
and the ingress port's xdp_finished / xdp_handoffs (port-stats over gRPC, in-process: no
vswctl process per sample). All setups are interleaved in every round, the order rotating;
figures are medians over the rounds with min and max.

Goals (printed, not asserted): xdp >= 1.3x tc on uplink->B, tap->tap and tap->B, >= 2x on
drop@tap, and xdp never slower than tc. For a path that misses one, the xdp and tc setups
are profiled once more with `perf record -e cpu-clock -C GEN_CPU` (hardware counters are not
needed) and the top symbols are printed; without a working perf the report says so.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import statistics
import struct
import subprocess
import time
from pathlib import Path

from pyroute2 import NetNS, netns
from rate_common import Counters, div, log, stop_group

from tests.netns.harness import NETNS_DIR, Host, trafgen_udp_config
from vswitchd.netlink import netns as netns_of_vswitchd

HERE = Path(__file__).resolve().parent
# variant: (short name, datapath, --xdp of the uplink and TAPs)
VARIANTS = {"xdp": ("x", "ebpf", "auto"), "tc": ("t", "ebpf", "off"),
            "kernel": ("k", "kernel", None)}
PATHS = ("uplink->B", "tap->tap", "tap->B", "drop@tap")
GOALS = {"uplink->B": 1.3, "tap->tap": 1.3, "tap->B": 1.3, "drop@tap": 2.0}  # xdp/tc
CEILING = ("generator ceiling", "xdp-drop")
UDP_PORT, FRAME_LEN, PREFIX = 9, 60, 24
MAC_B, IP_B = "02:98:00:00:00:0c", "10.98.0.12"  # container B
MAC_L, IP_L = "02:98:00:00:00:21", "10.98.0.21"  # the LAN end of the uplink
MAC_G, IP_G = "02:98:00:00:00:31", "10.98.0.31"  # the VM writing into Xg and Xd
MAC_S, IP_S = "02:98:00:00:00:32", "10.98.0.32"  # the VM reading Xs
GEN_CPU, SINK_CPU = 0, 1  # trafgen --cpus 1 runs on CPU 0
WARMUP = 0.5
TRAFGEN_SNDBUF = 4 << 20  # bytes (bench/sndbuf.c: why)
DROP_RULE = "priority=100,in_port={port},udp,actions=drop"

XDP_DROP_C = "int drop_all(struct xdp_md *ctx) { return XDP_DROP; }"


# ---- frames and the C generator ---------------------------------------------------------------


def udp_frame(dst_mac: str, src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    """FRAME_LEN bytes: Ethernet, IPv4 (checksum set), UDP 1024 -> UDP_PORT, checksum 0."""
    payload = FRAME_LEN - 14 - 20 - 8
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + payload, 1, 0x4000, 64, 17,
                               0, bytes(map(int, src_ip.split("."))),
                               bytes(map(int, dst_ip.split(".")))))
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xFFFF) + (s >> 16)
    ip[10:12] = struct.pack("!H", ~(s + (s >> 16)) & 0xFFFF)
    eth = bytes.fromhex(dst_mac.replace(":", "") + src_mac.replace(":", "") + "0800")
    return eth + bytes(ip) + struct.pack("!HHHH", 1024, UDP_PORT, 8 + payload, 0) + bytes(payload)


def build_c(workdir: Path) -> tuple[str, str]:
    """tapio (the TAP generator and sink) and sndbuf.so (trafgen's send buffer, LD_PRELOAD)."""
    exe, shim = workdir / "tapio", workdir / "sndbuf.so"
    for cmd in (["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / "tapio.c")],
                ["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(shim),
                 str(HERE / "sndbuf.c"), "-ldl"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return str(exe), str(shim)


class CountFile:
    """The 16 bytes tapio maps shared: frames written (or read), failed writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(bytes(16))
        with open(path, "r+b") as f:
            self.map = mmap.mmap(f.fileno(), 16)

    def read(self) -> int:
        return struct.unpack_from("<Q", self.map, 0)[0]


def start_tapio(host: Host, exe: str, mode: str, tap: str, cpu: int, count: CountFile,
                frame: bytes | None = None) -> subprocess.Popen:
    cmd = ["nsenter", f"--net={NETNS_DIR}/{host.ns}", exe, mode, tap, str(cpu), str(count.path)]
    if frame is not None:
        cmd.append(frame.hex())
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        stop_group(proc)
        raise RuntimeError(f"tapio {mode} {tap} did not start: {line}{proc.stderr.read()}")
    return proc


# ---- topology ---------------------------------------------------------------------------------


def port_names(v: str) -> dict[str, str]:
    s = VARIANTS[v][0]
    return {"bridge": f"b{s}", "up": f"{s}up", "gen": f"{s}g", "sink": f"{s}s", "drop": f"{s}d",
            "b": f"{s}b"}


def build_variant(host: Host, v: str) -> dict[str, str]:
    """Bridge, uplink + LAN namespace, TAPs and container B of variant v. Returns the names."""
    short, datapath, xdp = VARIANTS[v]
    n = port_names(v)
    n["lan_ns"], n["b_ns"] = host.name(f"{short}L"), host.name(f"{short}B")
    xdp_opt = ["--xdp", xdp] if xdp else []
    host.vswctl("add-br", n["bridge"], "--datapath", datapath)
    netns.create(n["lan_ns"])
    fd = os.open(f"{NETNS_DIR}/{n['lan_ns']}", os.O_RDONLY)
    try:
        with NetNS(host.ns) as ipr:
            ipr.link("add", ifname=n["up"], kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": fd, "address": MAC_L})
            ipr.link("set", index=ipr.link_lookup(ifname=n["up"])[0], state="up")
    finally:
        os.close(fd)
    with NetNS(n["lan_ns"]) as ipr:
        ipr.link("set", index=1, state="up")
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=idx, address=IP_L, prefixlen=PREFIX)
        ipr.link("set", index=idx, state="up")
    host.vswctl("add-port", n["bridge"], n["up"], "--type", "system", *xdp_opt)
    taps = ("gen", "sink", "drop") if datapath == "ebpf" else ("gen", "sink")
    for t in taps:
        host.vswctl("add-port", n["bridge"], n[t], "--type", "tap", *xdp_opt)
    host.vswctl("add-port", n["bridge"], n["b"], "--netns", n["b_ns"], "--ip",
                f"{IP_B}/{PREFIX}", "--mac", MAC_B)
    host.vswctl("add-fdb", n["bridge"], MAC_B, n["b"])
    host.vswctl("add-fdb", n["bridge"], MAC_S, n["sink"])
    if datapath == "ebpf":
        host.vswctl("add-flow", n["bridge"], DROP_RULE.format(port=n["drop"]))
    return n


def xdp_modes(host: Host, names: dict[str, dict[str, str]]) -> dict[str, str]:
    got = {}
    for v, n in names.items():
        if VARIANTS[v][1] != "ebpf":
            continue
        for p in host.json("list-ports", n["bridge"]):
            if p["name"] in (n["up"], n["gen"], n["sink"], n["drop"]):
                got[p["name"]] = p.get("xdp_mode", "?")
    return got


def ceiling_tap(host: Host):
    """A lone TAP `gx` in the host namespace with a native XDP program dropping everything.
    Returns the bcc module (the program goes with it and the TAP with the namespace)."""
    from bcc import BPF

    for args in (("tuntap", "add", "dev", "gx", "mode", "tap"), ("link", "set", "gx", "up")):
        subprocess.run(["ip", "-n", host.ns, *args], check=True, capture_output=True)
    bpf = BPF(text=XDP_DROP_C)
    fn = bpf.load_func("drop_all", BPF.XDP)
    with netns_of_vswitchd.entered(host.ns):
        bpf.attach_xdp("gx", fn, 1 << 2)  # XDP_FLAGS_DRV_MODE: tun runs it natively
    return bpf


# ---- sampling ---------------------------------------------------------------------------------


class Stats:
    """port-stats through the daemon's gRPC API, from this process."""

    def __init__(self, host: Host) -> None:
        from vswapi import switch_pb2 as pb
        from vswapi.client import connect

        self.pb, self.client = pb, connect(host.socket)

    def port(self, bridge: str, port: str) -> dict[str, int]:
        st = self.client.GetPortStats(self.pb.GetPortStatsRequest(bridge=bridge, port=port),
                                      timeout=10).stats[0]
        return {"rx": st.rx_packets, "xdp_finished": st.xdp_finished,
                "xdp_handoffs": st.xdp_handoffs,
                "flow_drop": st.drops_by_reason.get("flow-drop", 0)}

    def close(self) -> None:
        self.client.close()


def link_counters(ipr: NetNS, ifname: str) -> dict[str, int]:
    s = ipr.get_links(ifname=ifname)[0].get_attr("IFLA_STATS64")
    return {k: int(s[k]) for k in ("tx_packets", "tx_dropped")}


class Bench:
    def __init__(self, host: Host, exe: str, shim: str, names: dict[str, dict[str, str]],
                 counters: Counters, stats: Stats, workdir: Path) -> None:
        self.host, self.exe, self.shim, self.names = host, exe, shim, names
        self.counters, self.stats, self.workdir = counters, stats, workdir
        self.host_ipr = NetNS(host.ns)
        self.lan_ipr = {v: NetNS(n["lan_ns"]) for v, n in names.items()}
        self.sinks = {v: CountFile(workdir / f"sink-{v}.count") for v in names}
        self.gen_count = CountFile(workdir / "gen.count")

    def close(self) -> None:
        for ipr in (self.host_ipr, *self.lan_ipr.values()):
            ipr.close()

    def start_sinks(self) -> None:
        for v, n in self.names.items():
            proc = start_tapio(self.host, self.exe, "sink", n["sink"], SINK_CPU, self.sinks[v])
            self.host._helpers.append(proc)  # killed by Host.cleanup, whatever happens

    def start_generator(self, path: str, v: str) -> subprocess.Popen:
        if (path, v) == CEILING:
            return start_tapio(self.host, self.exe, "gen", "gx", GEN_CPU, self.gen_count,
                               udp_frame(MAC_B, MAC_G, IP_G, IP_B))
        n = self.names[v]
        if path == "uplink->B":
            if not self.host.ping(n["lan_ns"], IP_B, count=1):
                raise RuntimeError(f"{v}: the LAN cannot ping B before the measurement")
            cfg = self.workdir / "lan.trafgen"
            cfg.write_text(trafgen_udp_config(MAC_L, MAC_B, IP_L, IP_B, UDP_PORT, FRAME_LEN))
            return subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR}/{n['lan_ns']}", "trafgen", "--dev", "eth0",
                 "--conf", str(cfg), "--cpus", "1", "--no-sock-mem", "--notouch-irq",
                 "--no-cpu-stats"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, "LD_PRELOAD": self.shim, "SNDBUF_BYTES": str(TRAFGEN_SNDBUF)})
        tap = n["drop"] if path == "drop@tap" else n["gen"]
        frame = (udp_frame(MAC_S, MAC_G, IP_G, IP_S) if path == "tap->tap"
                 else udp_frame(MAC_B, MAC_G, IP_G, IP_B))
        return start_tapio(self.host, self.exe, "gen", tap, GEN_CPU, self.gen_count, frame)

    def sample(self, path: str, v: str) -> dict[str, float]:
        out: dict[str, float] = {"t": time.monotonic()}
        if (path, v) == CEILING:
            out["rate"] = out["offered"] = self.gen_count.read()
            return out
        n = self.names[v]
        ebpf = VARIANTS[v][1] == "ebpf"
        port = {"uplink->B": n["up"], "drop@tap": n["drop"]}.get(path, n["gen"])
        if ebpf:
            out.update(self.stats.port(n["bridge"], port))
        if path == "uplink->B":
            lan = link_counters(self.lan_ipr[v], "eth0")
            out["offered"] = lan["tx_packets"] + lan["tx_dropped"]
        else:
            out["offered"] = self.gen_count.read()
        if path in ("uplink->B", "tap->B"):
            out["rate"] = self.counters.read(v)
        elif path == "tap->tap":
            out["rate"] = self.sinks[v].read()
            out["sink_ring_drops"] = link_counters(self.host_ipr, n["sink"])["tx_dropped"]
        else:
            out["rate"] = out["flow_drop"]
        return out

    def measure(self, path: str, v: str, seconds: float,
                during=None) -> dict[str, float]:
        """Mpps of every sampled counter over `seconds` while the generator runs; `during`,
        if given, is called instead of sleeping (a profiler)."""
        proc = self.start_generator(path, v)
        try:
            time.sleep(WARMUP)
            if proc.poll() is not None:
                raise RuntimeError(f"{path} {v}: the generator exited with {proc.returncode}: "
                                   f"{proc.stderr.read() if proc.stderr else ''}")
            s0 = self.sample(path, v)
            if during is not None:
                during()
            else:
                time.sleep(seconds)
            s1 = self.sample(path, v)
        finally:
            stop_group(proc)
        dt = s1["t"] - s0["t"]
        return {k: (s1[k] - s0[k]) / dt / 1e6 for k in s0 if k != "t"}


# ---- perf ---------------------------------------------------------------------------------------


def perf_works() -> str | None:
    """None when `perf record -e cpu-clock` works here, else why not."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: linux-perf; `make bench` installs it)"
    res = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "true"],
                         capture_output=True, text=True)
    if res.returncode:
        return f"perf record fails here: {res.stderr.strip()[:200]}"
    return None


def profile(bench: Bench, path: str, v: str, workdir: Path, top: int = 10) -> list[str]:
    """Where GEN_CPU's time goes during one more measurement: its processes, then the top
    symbols by self time."""
    data = workdir / f"perf-{v}.data"

    def record() -> None:
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-C", str(GEN_CPU), "-o",
                        str(data), "--", "sleep", "1"], capture_output=True, check=True)

    def report(sort: str, limit: str) -> list[str]:
        res = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                              "--sort", sort, "--percent-limit", limit],
                             capture_output=True, text=True)
        return [" ".join(line.split()) for line in res.stdout.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    m = bench.measure(path, v, 1.0, during=record)
    comms = report("comm", "1")
    rows = report("sym", "1")
    data.unlink(missing_ok=True)
    return [f"({m['rate']:.3f} Mpps while profiled; CPU {GEN_CPU}: {', '.join(comms[:4])})",
            *rows[:top]]


# ---- the run ----------------------------------------------------------------------------------


def setups() -> list[tuple[str, str]]:
    out = [(p, v) for p in PATHS for v in VARIANTS if not (p == "drop@tap" and v == "kernel")]
    out += [CEILING]
    only = os.environ.get("XDP_PATHS_ONLY")  # for development: "tap->B xdp,tap->B tc"
    return [s for s in out if not only or key(*s) in only.split(",")]


def key(path: str, v: str) -> str:
    return f"{path} {v}"


def run(args: argparse.Namespace, workdir: Path) -> dict:
    res: dict = {
        "machine": {"kernel": os.uname().release, "cpus": os.cpu_count(),
                    "loadavg_1m_at_start": os.getloadavg()[0]},
        "params": {"rounds": args.rounds, "seconds": args.seconds, "sink": args.sink,
                   "frame_bytes": FRAME_LEN + 4, "gen_cpu": GEN_CPU, "sink_cpu": SINK_CPU},
        "notes": [],
    }
    host = Host(workdir)
    counters: Counters | None = None
    stats: Stats | None = None
    bench: Bench | None = None
    ceiling_bpf = None
    try:
        log(f"host namespace {host.ns}; compiling tapio; starting vswitchd")
        exe, shim = build_c(workdir)
        host.start()
        names = {v: build_variant(host, v) for v in VARIANTS}
        res["xdp_modes"] = xdp_modes(host, names)
        ceiling_bpf = ceiling_tap(host)
        log("compiling the counting program")
        counters = Counters(list(VARIANTS), args.sink, UDP_PORT)
        for v, n in names.items():
            counters.attach(v, n["b_ns"])
        stats = Stats(host)
        bench = Bench(host, exe, shim, names, counters, stats, workdir)
        bench.start_sinks()

        items = setups()
        runs: dict[str, list[dict[str, float]]] = {key(*s): [] for s in items}
        for r in range(args.rounds):
            order = items[r % len(items):] + items[: r % len(items)]
            for path, v in order:
                m = bench.measure(path, v, args.seconds)
                runs[key(path, v)].append(m)
                log(f"round {r + 1}/{args.rounds} {key(path, v):24s} {m['rate']:.3f} Mpps"
                    f"  (offered {m['offered']:.3f})")
        res["machine"]["loadavg_1m_after"] = os.getloadavg()[0]
        res["mpps"] = {}
        for k, ms in runs.items():
            rates = [m["rate"] for m in ms]
            entry = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "rounds": rates}
            for field in ("offered", "xdp_finished", "xdp_handoffs", "sink_ring_drops"):
                if field in ms[0]:
                    entry[field] = statistics.median(m[field] for m in ms)
            res["mpps"][k] = entry
        res["ratios"] = ratios(res["mpps"], runs)

        missed = [p for p, r in res["ratios"].items()
                  if r["xdp/tc"] is None or r["xdp/tc"] < max(GOALS[p], 1.0)]
        res["profiles"] = {}
        if missed:
            why = perf_works()
            if why:
                res["notes"].append(f"no profile of the missed goals: {why}")
            else:
                for p in missed:
                    log(f"profiling {p} (xdp, tc) with perf")
                    res["profiles"][p] = {v: profile(bench, p, v, workdir) for v in ("xdp", "tc")}
        return res
    finally:
        if bench is not None:
            bench.close()
        if stats is not None:
            stats.close()
        if counters is not None:
            counters.close()
        if ceiling_bpf is not None:
            ceiling_bpf.cleanup()
        host.cleanup()
        left = [n for n in os.listdir(NETNS_DIR) if n.startswith(host.tag)]
        if left or os.path.exists(host.bpffs_dir):
            log(f"WARNING: left behind after cleanup: {left} {host.bpffs_dir}")


def ratios(mpps: dict, runs: dict) -> dict:
    """Per path: xdp/tc, xdp/kernel, tc/kernel of the medians, and xdp/tc's per-round median."""
    out = {}
    for p in PATHS:
        if key(p, "xdp") not in mpps or key(p, "tc") not in mpps:
            continue
        med = {v: mpps[key(p, v)]["median"] for v in VARIANTS if key(p, v) in mpps}
        per_round = [div(x["rate"], t["rate"])
                     for x, t in zip(runs[key(p, "xdp")], runs[key(p, "tc")], strict=True)]
        out[p] = {"xdp/tc": div(med["xdp"], med["tc"]),
                  "xdp/tc_rounds": (statistics.median(per_round)
                                    if None not in per_round else None),
                  "xdp/kernel": div(med["xdp"], med["kernel"]) if "kernel" in med else None,
                  "tc/kernel": div(med["tc"], med["kernel"]) if "kernel" in med else None}
    return out


def report(res: dict) -> str:
    p, mach = res["params"], res["machine"]
    fmt = lambda x: f"{x:.2f}x" if x is not None else "n/a"  # noqa: E731
    lines = [
        f"vswitchd XDP paths  (kernel {mach['kernel']}, {mach['cpus']} CPUs, 1-min load "
        f"{mach['loadavg_1m_at_start']:.2f} at start, {mach['loadavg_1m_after']:.2f} after)",
        "",
        f"{p['frame_bytes']}-byte UDP frames ({FRAME_LEN} + FCS), one generator core (CPU "
        f"{p['gen_cpu']}; the TAP sink reads on CPU {p['sink_cpu']}), {p['rounds']} interleaved "
        f"rounds x {p['seconds']:g} s; Mpps. B counts at its TC ingress (--sink {p['sink']}).",
        "offered: what the generator got into the kernel; xdp_fin / to_tc: the ingress port's",
        "xdp_finished / xdp_handoffs per second (ebpf bridges).",
        "",
        f"  {'path':<18} {'setup':<8} {'median':>7} {'min':>7} {'max':>7} {'offered':>8}"
        f" {'xdp_fin':>8} {'to_tc':>7}",
    ]
    last = None
    for k, e in res["mpps"].items():
        path, v = k.rsplit(" ", 1)
        xf = f"{e['xdp_finished']:8.3f}" if "xdp_finished" in e else f"{'-':>8}"
        xh = f"{e['xdp_handoffs']:7.3f}" if "xdp_handoffs" in e else f"{'-':>7}"
        lines.append(f"  {path if path != last else '':<18} {v:<8} {e['median']:7.3f}"
                     f" {e['min']:7.3f} {e['max']:7.3f} {e['offered']:8.3f} {xf} {xh}")
        last = path
    modes = res.get("xdp_modes", {})
    lines.append("  XDP modes got: " + ", ".join(f"{k} {m}" for k, m in modes.items()))
    drops = {k.rsplit(" ", 1)[1]: e["sink_ring_drops"] / e["offered"] if e["offered"] else 0
             for k, e in res["mpps"].items() if "sink_ring_drops" in e}
    if drops:
        lines.append("  tap->tap sink check: frames the sink's ring refused, of those the switch"
                     " forwarded (offered): " + ", ".join(f"{v} {d:.1%}" for v, d in drops.items())
                     + ("  (the reader bounds the figure)" if max(drops.values()) > 0.01 else ""))
        fwd = {v: res["mpps"][key("tap->tap", v)]["offered"] for v in VARIANTS
               if key("tap->tap", v) in res["mpps"]}
        if "xdp" in fwd and "tc" in fwd:
            lines.append(f"  tap->tap forwarded by the switch (offered), xdp/tc: "
                         f"{fmt(div(fwd['xdp'], fwd['tc']))}")
    ceiling = res["mpps"].get(key(*CEILING), {}).get("median")
    lines += ["", f"  {'path':<12} {'xdp/tc':>7} {'rounds':>7}   {'goal':<22} {'xdp/kernel':>10}"
                  f" {'tc/kernel':>9}  {'ceiling/tc':>10}"]
    slower = []
    for path, r in res["ratios"].items():
        goal, val = GOALS[path], r["xdp/tc"]
        verdict = f">= {goal:.1f}x " + ("n/a" if val is None else
                                        "met" if val >= goal else "NOT met")
        if val is not None and val < 1.0:
            slower.append(path)
        bound = (div(ceiling, res["mpps"][key(path, "tc")]["median"])
                 if ceiling and path != "uplink->B" else None)
        lines.append(f"  {path:<12} {fmt(val):>7} {fmt(r['xdp/tc_rounds']):>7}   {verdict:<22}"
                     f" {fmt(r['xdp/kernel']):>10} {fmt(r['tc/kernel']):>9}  {fmt(bound):>10}")
    lines.append("  xdp never slower than tc: " + ("met" if not slower else
                                                    "NOT met on " + ", ".join(slower)))
    lines.append("  ceiling/tc: the highest xdp/tc the TAP generator's own ceiling allows")
    for path, prof in res.get("profiles", {}).items():
        lines += ["", f"Profile of {path} (perf record -e cpu-clock -C {p['gen_cpu']}, 1 s; "
                      "self time by process and symbol)"]
        for v, rows in prof.items():
            lines.append(f"  {v} {rows[0]}")
            lines += [f"    {row}" for row in rows[1:]]
    for note in res["notes"]:
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)
