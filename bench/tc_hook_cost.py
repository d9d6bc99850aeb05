"""What a program on a port's TC hook costs the port's attach and delete (issue 16's del-br
goal), without the daemon: TAP devices with no program, with a TCX link, and with clsact +
cls_bpf, then deleted together as DeleteBridge does (vswitchd.netlink.bulk). As root:

    .venv/bin/python bench/tc_hook_cost.py [--devices 200] [--rounds 3] [--expedited]

It runs in a network namespace of its own (it re-runs itself under `unshare --net`), so every
device goes with it. The kernel's TCX attach and detach each wait for one RCU grace period
under RTNL (kernel/bpf/tcx.c: tcx_entry_sync, also in tcx_uninstall when a device goes), one
device after another; cls_bpf does not. --expedited runs each mode a second time with
/sys/kernel/rcu_expedited set to 1 (grace periods forced through with IPIs), to show that
wait is the whole difference; the setting is put back as it was, also on failure. Medians
over the rounds, in ms a device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

RCU_EXPEDITED = "/sys/kernel/rcu_expedited"
MODES = ("none", "tcx", "clsact")
_INNER = "VSW_BENCH_IN_OWN_NETNS"


def one_round(mode: str, n: int, prog_fd: int) -> tuple[float, float]:
    """(attach, delete) in ms a device for N fresh TAPs."""
    from vswitchd.datapath import tcx
    from vswitchd.netlink import bulk, tc
    from vswitchd.netlink.links import Links

    with Links() as links:
        index = [links.create_tap(f"b{mode[0]}{i}").ifindex for i in range(n)]
    held = []
    t0 = time.perf_counter()
    for i in index:
        if mode == "tcx":
            held.append(tcx.link_create(i, prog_fd, "ingress"))
        elif mode == "clsact":
            tc.attach(i, prog_fd, "hook_cost", "ingress")
    t1 = time.perf_counter()
    bulk.delete_links(index)
    t2 = time.perf_counter()
    for fd in held:
        os.close(fd)
    return (t1 - t0) * 1000 / n, (t2 - t1) * 1000 / n


def measure(args: argparse.Namespace, prog_fd: int, label: str) -> list[str]:
    got: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:  # side by side, each round
            got[mode].append(one_round(mode, args.devices, prog_fd))
    out = []
    for mode in MODES:
        attach = statistics.median(a for a, _ in got[mode])
        delete = statistics.median(d for _, d in got[mode])
        out.append(f"{label:<22} {mode:<7} attach {attach:6.2f}  delete {delete:6.2f}  "
                   f"ms a device")
    return out


def inner(args: argparse.Namespace) -> int:
    from bcc import BPF

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    prog = BPF(text="int hook_cost(struct __sk_buff *skb) { return 0; }")
    prog_fd = prog.load_func("hook_cost", BPF.SCHED_CLS).fd
    before = Path(RCU_EXPEDITED).read_text().strip()
    print(f"{args.devices} TAPs a round, {args.rounds} rounds; {RCU_EXPEDITED} = {before}; "
          f"kernel {os.uname().release}")
    for line in measure(args, prog_fd, f"rcu_expedited={before}"):
        print(line, flush=True)
    if args.expedited and before != "1":
        try:
            Path(RCU_EXPEDITED).write_text("1\n")
            for line in measure(args, prog_fd, "rcu_expedited=1"):
                print(line, flush=True)
        finally:
            Path(RCU_EXPEDITED).write_text(f"{before}\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200, help="TAPs a round (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each mode (default 3)")
    ap.add_argument("--expedited", action="store_true",
                    help="also measure with expedited RCU grace periods (set and put back)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    if os.environ.get(_INNER) == "1":
        return inner(args)
    env = {**os.environ, _INNER: "1"}
    return subprocess.run(["unshare", "--net", sys.executable, __file__, *sys.argv[1:]],
                          env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
