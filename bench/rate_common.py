"""What the packet-rate benchmarks share: the frame counter at a receiver's TC ingress, stopping
a generator's process group, log lines, ratios. bench/packet_rate.py and bench/xdp_paths.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from pyroute2 import NetNS

SINKS = {"drop": "TC_ACT_SHOT", "stack": "TC_ACT_OK"}

COUNTER_C = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/pkt_cls.h>

BPF_PERCPU_ARRAY(hits, u64, NSLOTS);

static __always_inline int count(struct __sk_buff *skb, u32 slot)
{
    /* Loaded, not read in place: trafgen's TX_RING frames carry only the Ethernet header in
     * the linear area (the rest sits in page fragments), so direct packet access would not
     * reach the IP header. */
    struct {
        struct ethhdr eth;
        struct iphdr ip;
        struct udphdr udp;
    } __attribute__((packed)) h;

    if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)) < 0)
        return TC_ACT_OK;
    if (h.eth.h_proto != htons(ETH_P_IP) || h.ip.ihl != 5 || h.ip.protocol != IPPROTO_UDP)
        return TC_ACT_OK;
    if (h.udp.dest != htons(UDP_PORT))
        return TC_ACT_OK;
    u64 *v = hits.lookup(&slot);
    if (v)
        *v += 1;
    return SINK_VERDICT;
}
"""


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ---- counting at B's TC ingress ---------------------------------------------------------------


class Counters:
    """One bcc module with a counting program per setup, attached at TC ingress of B:eth0; it
    counts IPv4/UDP frames to udp_port, then drops them (sink "drop") or passes them on."""

    def __init__(self, slots: list[str], sink: str, udp_port: int = 9) -> None:
        from bcc import BPF  # Debian's python3-bpfcc, seen through the venv's system site

        self.slots = {name: i for i, name in enumerate(slots)}
        funcs = "".join(
            f"int count_{i}(struct __sk_buff *skb) {{ return count(skb, {i}); }}\n"
            for i in self.slots.values()
        )
        self.bpf = BPF(text=COUNTER_C + funcs,
                       cflags=[f"-DNSLOTS={len(slots)}", f"-DUDP_PORT={udp_port}",
                               f"-DSINK_VERDICT={SINKS[sink]}"])
        self.hits = self.bpf["hits"]
        self.attached: list[str] = []  # namespaces with our filter

    def attach(self, slot: str, ns: str, ifname: str = "eth0") -> None:
        fn = self.bpf.load_func(f"count_{self.slots[slot]}", self.bpf.SCHED_CLS)
        tc_ingress(ns, ifname, fn)
        self.attached.append(ns)

    def read(self, slot: str) -> int:
        return int(sum(self.hits.getvalue(self.hits.Key(self.slots[slot]))))

    def close(self) -> None:
        # The filters go with B's namespaces; the programs and the map with this module.
        self.bpf.cleanup()


def tc_ingress(ns: str, ifname: str, fn) -> None:
    """Attaches bcc function fn at TC ingress of ifname in namespace ns."""
    with NetNS(ns) as ipr:  # netlink socket bound to that namespace, requests sent from here
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.tc("add", "clsact", index=idx)
        ipr.tc("add-filter", "bpf", index=idx, handle=1, parent=0xFFFFFFF2, prio=1,
               fd=fn.fd, name=fn.name, direct_action=True)


def start_trafgen(ns_path: str, cfg: str, warmup: float,
                  extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """trafgen on one core sending CFG from eth0 of the namespace at NS_PATH, in a process
    group of its own (it forks its worker; stop it with stop_group), running after WARMUP
    seconds. EXTRA: more trafgen options (e.g. --rate 3000pps)."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={ns_path}", "trafgen", "--dev", "eth0", "--conf", cfg,
         "--cpus", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"trafgen exited with {proc.returncode}: {proc.stderr.read()}")
    return proc


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:  # the group may outlive its leader (the forked worker)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def div(a: float, b: float) -> float | None:
    return a / b if b else None
