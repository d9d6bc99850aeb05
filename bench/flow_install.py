#!/usr/bin/env python3
"""Flow installation rate, end to end (goal: 10 000 rules in one batch at >= 20 000/s).

Run from the repository root, as root:  .venv/bin/python bench/flow_install.py [--runs 3]
It prints figures; it is not a test and asserts nothing about them.

Method: a real vswitchd in a namespace of its own (tests.netns.harness.Host). Every run makes a
fresh eBPF bridge with two TAP ports, then times whole `vswctl add-flows BR FILE` processes
(wall time from spawn to exit: CLI start, parse, gRPC AddFlows, validation with the overlap
check, SQLite persistence, datapath sync):

  empty     --rules rules into the empty table,
  +N        --rules more (disjoint) into the table holding the first batch,

then `vswctl -j dump-flows` of the whole table (2 x --rules) and `vswctl status` (the floor of
any vswctl process: interpreter, imports, channel). Rules are spread over 4 masks with one
priority each but the last, as an operator's table might be: `in_port=P,udp,tp_dst=N` (400),
`ip,nw_dst=10.128+.y.0/24` (300), `dl_src=02:99:..` (exact, 200) and
`tcp,nw_dst=10.64.0.0/16,tp_dst=N` (300 too, disjoint from the /24s, so the equal-priority
overlap check has work to do), all actions=drop.
Figures are medians over --runs (min and max shown). The daemon's own per-stage times of each
batch come from its debug log ("flows_add ... stages"), the CLI's parse time from parsing the
file in this process.

--profile DIR writes cProfile dumps: the daemon's AddFlows handler (it runs in a gRPC worker
thread, which `python -m cProfile` would not see) and one vswctl add-flows process per batch.

Bytecode: with PYTHONDONTWRITEBYTECODE set (as in some sandboxes) every vswctl process compiles
the client's modules from source (~15-20 ms here); an installed vswctl has them compiled.
--pycache runs the vswctl processes without that variable (their __pycache__ is written on
the first run, before the timed ones), so the figures are those of an installed CLI. Which
case applies is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

from tests.netns import harness  # noqa: E402
from tests.netns.harness import Host  # noqa: E402

GOAL = 20_000
MASKS = 4

# The daemon under a profiler of its AddFlows handler (see --profile).
_PROFILED_DAEMON = """\
import cProfile, itertools, sys
from vswitchd.api import servicer
_orig, _n = servicer.SwitchServicer.AddFlows, itertools.count(1)
def AddFlows(self, request, context):
    prof = cProfile.Profile()
    prof.enable()
    try:
        return _orig(self, request, context)
    finally:
        prof.disable()
        prof.dump_stats(f"{OUT}/daemon-addflows-{next(_n)}.prof")
servicer.SwitchServicer.AddFlows = AddFlows
from vswitchd.main import main
sys.exit(main())
"""


def rules(n: int, first: int, in_port: str) -> list[str]:
    """N rules numbered from FIRST over MASKS masks (priority per mask); disjoint for disjoint
    ranges of numbers."""
    out = []
    for k in range(first, first + n):
        m, i = k % MASKS, k // MASKS
        prio = 300 if m == 3 else 100 * (MASKS - m)
        if m == 0:
            match = f"in_port={in_port},udp,tp_dst={i % 65536}" + (
                f",nw_src=10.{i >> 16}.0.0/16" if i >= 65536 else "")
        elif m == 1:
            net = (10 << 24) + (128 << 16) + (i << 8)
            match = f"ip,nw_dst={net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.0/24"
        elif m == 2:
            match = f"dl_src=02:99:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        else:  # priority 300 like mask 1 and disjoint from it (nw_dst): the overlap check runs
            match = f"tcp,nw_dst=10.64.0.0/16,tp_dst={i % 65536}" + (
                f",nw_src=10.{i >> 16}.0.0/16" if i >= 65536 else "")
        out.append(f"priority={prio},{match},actions=drop")
    return out


CLI_ENV = dict(os.environ)  # the environment of the timed vswctl processes (see --pycache)


def timed(host: Host, *args: str, prof: Path | None = None) -> float:
    cmd = [harness.VSWCTL, "--socket", host.socket, *args]
    if prof is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), *cmd]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=CLI_ENV)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"vswctl {' '.join(args)} -> {res.returncode}\n{res.stderr}")
    return took


_STAGES = re.compile(r"flows_add (\S+): (\d+) flows; stages ms: (.*)$", re.M)


def stages(log: str, bridge: str) -> list[dict[str, float]]:
    """The daemon's per-stage times (ms) of each add-flows batch on BRIDGE, in order."""
    out = []
    for br, _n, text in _STAGES.findall(log):
        if br == bridge:
            out.append({k: float(v) for k, v in (p.split("=") for p in text.split())})
    return out


def cli_parse_seconds(path: Path) -> float:
    """What vswctl add-flows does before it sends: parse the file into the request, encode."""
    from vswapi import switch_pb2 as pb
    from vswctl.commands import read_flows

    t0 = time.perf_counter()
    req = pb.AddFlowsRequest(bridge="br0")
    read_flows(str(path), req.flows)
    req.SerializeToString()
    return time.perf_counter() - t0


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.3f} s  (min {min(xs):.3f}, max {max(xs):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs, a fresh bridge each (3)")
    ap.add_argument("--rules", type=int, default=10_000, help="rules per batch (10000)")
    ap.add_argument("--profile", metavar="DIR", help="write cProfile dumps into DIR")
    ap.add_argument("--pycache", action="store_true",
                    help="let the vswctl processes use compiled bytecode (see above)")
    a = ap.parse_args()
    if a.pycache:
        CLI_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    compiled = "PYTHONDONTWRITEBYTECODE" not in CLI_ENV
    n = a.rules
    prof_dir = Path(a.profile).resolve() if a.profile else None
    with tempfile.TemporaryDirectory(prefix="vsw-bench-") as tmp:
        work = Path(tmp)
        if prof_dir is not None:
            prof_dir.mkdir(parents=True, exist_ok=True)
            wrapper = work / "vswitchd-profiled"
            wrapper.write_text(f"#!{sys.executable}\nOUT = {str(prof_dir)!r}\n"
                               + _PROFILED_DAEMON)
            wrapper.chmod(0o755)
            harness.VSWITCHD = str(wrapper)
        files = {}
        for label, first in (("empty", 0), ("second", n)):
            files[label] = work / f"{label}.flows"
            files[label].write_text("\n".join(rules(n, first, "fp1")) + "\n")
        host = Host(work)
        times: dict[str, list[float]] = {"empty": [], "second": [], "dump": [], "status": []}
        stage_rows: dict[str, list[dict[str, float]]] = {"empty": [], "second": []}
        try:
            host.start()
            timed(host, "status")  # with --pycache: writes the client's bytecode
            for run in range(a.runs):
                br = f"fb{run}"
                host.vswctl("add-br", br)
                host.vswctl("add-port", br, "fp1", "--type", "tap")
                host.vswctl("add-port", br, "fp2", "--type", "tap")
                for label in ("empty", "second"):
                    prof = (prof_dir / f"cli-{label}-{run + 1}.prof") if prof_dir else None
                    times[label].append(timed(host, "add-flows", br, str(files[label]),
                                              prof=prof))
                for label, row in zip(("empty", "second"), stages(host.log(), br), strict=False):
                    stage_rows[label].append(row)
                times["dump"].append(timed(host, "-j", "dump-flows", br))
                times["status"].append(timed(host, "status"))
                listed = host.json("dump-flows", br)
                if len(listed) != 2 * n:
                    raise RuntimeError(f"dump-flows listed {len(listed)} rules, not {2 * n}")
                host.vswctl("del-br", br)
        finally:
            host.cleanup()
        parse = [cli_parse_seconds(files["empty"]) for _ in range(3)]

    print(f"flow installation, end to end: `vswctl add-flows` of {n} rules ({MASKS} masks), "
          f"eBPF bridge with 2 ports, {a.runs} runs (fresh bridge each), medians")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; vswctl "
          + ("with compiled bytecode" if compiled else
             "compiling its modules on every run (PYTHONDONTWRITEBYTECODE set; see --pycache)"))
    for label, what in (("empty", "into an empty table"),
                        ("second", f"into a table of {n}")):
        rate = n / statistics.median(times[label])
        verdict = "meets" if rate >= GOAL else "misses"
        print(f"  add-flows {what:<22} {med(times[label])}  {rate:8.0f} rules/s "
              f"({verdict} the goal of {GOAL}/s)")
    print(f"  dump-flows -j of {2 * n:<14}   {med(times['dump'])}")
    print(f"  status (any vswctl's floor)       {med(times['status'])}")
    print(f"  CLI parse + encode, in-process    {statistics.median(parse):8.3f} s")
    for label in ("empty", "second"):
        rows = stage_rows[label]
        if rows:
            keys = list(rows[0])
            shown = ", ".join(f"{k} {statistics.median(r[k] for r in rows):.0f}" for k in keys)
            print(f"  daemon stages ({label}), ms: {shown}")
    if prof_dir is not None:
        print(f"profiles in {prof_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
