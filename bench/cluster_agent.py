"""The cluster agent's figures (issue 13), printed, not asserted. Run as root from the repo:

    .venv/bin/python bench/cluster_agent.py [--quick] [--ports 1000] [--pings 5]
                                            [--window 30] [--part all|latency|etcd]

Method
1. latency (goal <= 1 s): two hosts (tests/netns/overlay.py: a namespace and a real vswitchd
   each, joined by a LAN bridge), a real 1-member etcd (tests/cluster/etcd.py) on 127.0.0.1,
   one `vswcluster run --interval 0.3` (the default) per host in the root namespace, as
   tests/cluster/test_agent_e2e.py runs them: the agent reaches etcd on loopback and its
   vswitchd over the daemon's unix socket. Each host: br0, a tunnel port vx0 (VNI 100,
   --local, NO --remote) and a container c1. Once the agents have made the segment, --pings
   ports are added on host A one after the other; for each, from `vswctl add-port` returning:
     - ping: `ping -D -c 1 -w 10 -i 0.01` from host B's c1 (started right then; -D's
       timestamp of the first reply),
     - fdb: host B's vswitchd holds the new MAC as a static entry behind A's VTEP (what the
       agent programmed; ListFdbEntries polled every 10 ms).
   The ping may succeed before the agent's entry exists: once the agents have set the VTEPs
   (remotes), flooding and learning carry ARP and the first echo; the fdb figure is the
   agent's own path.
2. etcd traffic: one real 1-member etcd; two agents (vswcluster.agent.Agent, in this process,
   each in its own thread, default --interval 0.3 and --ttl 10) whose vswitchd side is the fake
   of tests/unit/vswcluster_fake.py: host "a" with --ports local MACs on VNI 100, host "b" (the
   other host) with --ports MACs of its own on VNI 100. The first step of each (list, watch,
   lease grant, read, publish of every key) is timed: the first full publication. Then both
   run until each fake holds the other's MACs as programmed entries; 2 s later a --window
   second steady window is measured with etcd's own counters from its /metrics (on its client
   URL) and the agents' counters. Keys under /vswitchd/v1/ are counted with a count_only
   range before the window.

Everything is removed at the end, also on failure or SIGTERM: processes by their PID,
namespaces, the etcd data directory.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

import requests  # noqa: E402

from tests.cluster.etcd import EtcdCluster  # noqa: E402
from tests.netns.overlay import Overlay  # noqa: E402

VSWCLUSTER = str(Path(sys.executable).parent / "vswcluster")
VNI = 100
SUBNET = "192.168.100"
PREFIX = "/vswitchd/v1/"
INTERVAL = 0.3   # vswcluster's default --interval
TTL = 10         # vswcluster's default --ttl


MAIN_PID = os.getpid()


def _sigterm(signum, _frame):
    """SIGTERM: unwind (the finally blocks clean up). Children forked by pyroute2 inherit the
    handler; they die as by default."""
    if os.getpid() != MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise SystemExit("SIGTERM")


def wait(cond, timeout: float, what: str, step: float = 0.05) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise RuntimeError(f"{what}: not within {timeout} s")


# ---- etcd helpers ---------------------------------------------------------------------------

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def count_keys(url: str, prefix: str = PREFIX) -> int:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = requests.post(url + "/v3/kv/range", json={"key": _b64(prefix), "range_end": _b64(end),
                                                  "count_only": True}, timeout=5)
    r.raise_for_status()
    return int(r.json().get("count", 0))


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metrics(url: str) -> dict[str, float]:
    """etcd's /metrics: plain counters and gauges by name; grpc_server_* summed per method
    (e.g. 'grpc_server_msg_received_total:Put')."""
    out: dict[str, float] = {}
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name.startswith("grpc_server_"):
            meth = re.search(r'grpc_method="([^"]*)"', labels)
            key = f"{name}:{meth.group(1) if meth else '?'}"
            out[key] = out.get(key, 0.0) + value
        elif not labels:
            out[name] = value
    return out


# ---- 1. latency -----------------------------------------------------------------------------

def container(o: Overlay, n: int, name: str, last: int) -> tuple[str, str]:
    h = o.hosts[n - 1]
    addr, mac = f"{SUBNET}.{last}", f"02:00:00:{VNI:02x}:{last:02x}:{n:02x}"
    h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip", f"{addr}/24",
             "--mac", mac)
    return addr, mac


def static_remote(o: Overlay, n: int) -> dict[str, str]:
    from vswapi import switch_pb2 as pb
    from vswapi.client import connect
    with connect(o.hosts[n - 1].socket) as c:
        entries = c.ListFdbEntries(pb.ListFdbEntriesRequest(bridge="br0"), timeout=5).entries
    return {e.mac.lower(): e.remote for e in entries if e.port == "vx0" and e.static and e.remote}


def latency(tmp: Path, pings: int) -> None:
    o = etcd = None
    agents: list[subprocess.Popen] = []
    try:
        etcd = EtcdCluster(tmp / "etcd1", 1)
        etcd.start()
        o = Overlay(tmp, 2)
        o.start()
        for i, h in enumerate(o.hosts, 1):
            h.vswctl("add-br", "br0")
            h.vswctl("add-port", "br0", "vx0", "--type", "vxlan", "--vni", str(VNI),
                     "--local", o.vtep(i))
            container(o, i, "c1", i)
        for i, h in enumerate(o.hosts, 1):
            log = open(tmp / f"agent{i}.log", "a")  # noqa: SIM115 - the child's
            agents.append(subprocess.Popen(
                [VSWCLUSTER, "run", "--host", f"h{i}", "--etcd", etcd.urls, "--socket",
                 h.socket, "--interval", str(INTERVAL), "--ttl", str(TTL),
                 "--status-file", str(tmp / f"agent{i}.json")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            log.close()
        a, b = o.hosts
        mac_a1 = f"02:00:00:{VNI:02x}:01:01"
        wait(lambda: static_remote(o, 2).get(mac_a1) == o.vtep(1), 20, "B got A's c1", 0.1)
        assert b.ping(b.name("c1"), f"{SUBNET}.1"), "B's c1 cannot ping A's c1"
        pinged, programmed = [], []
        for k in range(pings):
            last = 20 + k
            addr, mac = f"{SUBNET}.{last}", f"02:00:00:{VNI:02x}:{last:02x}:01"
            t_start = time.time()
            a.vswctl("add-port", "br0", f"p{k}", "--netns", a.name(f"p{k}"), "--ip",
                     f"{addr}/24", "--mac", mac)
            t0_wall = time.time()
            ping = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{b.name('c1')}", "ping", "-D", "-n", "-c", "1",
                 "-w", "10", "-i", "0.01", addr],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                fdb_t = wait(lambda mac=mac: static_remote(o, 2).get(mac) == o.vtep(1), 10,
                             f"B's static entry for {mac}", 0.01)
            except RuntimeError:
                fdb_t = float("nan")
            out, _ = ping.communicate(timeout=15)
            m = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)
            ping_t = float(m.group(1)) - t0_wall if m else float("nan")
            pinged.append(ping_t)
            programmed.append(fdb_t)
            print(f"  port p{k} ({addr}, add-port took {t0_wall - t_start:.2f} s): "
                  f"first ping reply from B {ping_t:.3f} s, agent's entry on B {fdb_t:.3f} s",
                  flush=True)
            time.sleep(0.5)
        ok_p = [t for t in pinged if t == t]
        ok_f = [t for t in programmed if t == t]
        print(f"port added on A -> first ping reply from B, median of {len(ok_p)}/{pings}: "
              f"{statistics.median(ok_p):.3f} s   (goal <= 1 s)" if ok_p else
              "port added on A -> first ping reply from B: NO reply")
        print(f"port added on A -> agent's static FDB entry on B, median of {len(ok_f)}/{pings}: "
              f"{statistics.median(ok_f):.3f} s" if ok_f else
              "port added on A -> agent's static FDB entry on B: NOT programmed")
    except BaseException:
        for i in range(len(agents)):
            p = tmp / f"agent{i + 1}.log"
            if p.exists():
                print(f"---- agent {i + 1} (tail) ----\n" + "".join(
                    p.read_text().splitlines(True)[-30:]), file=sys.stderr)
        raise
    finally:
        for p in agents:
            with contextlib.suppress(Exception):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if o is not None:
            o.cleanup()
        if etcd is not None:
            etcd.cleanup()


# ---- 2. etcd traffic ------------------------------------------------------------------------

def etcd_traffic(tmp: Path, ports: int, window: float) -> None:
    from tests.unit.vswcluster_fake import FakeSwitch
    from vswcluster.agent import Agent
    from vswcluster.store import Store

    etcd = EtcdCluster(tmp / "etcd2", 1)
    agents: list[Agent] = []
    threads: list[threading.Thread] = []
    try:
        etcd.start()
        url = etcd.members[0].url
        fakes = {}
        for n, (host, vtep) in enumerate((("a", "10.77.0.1"), ("b", "10.77.0.2")), 1):
            sw = FakeSwitch()
            sw.add_tunnel("br0", "vx0", VNI, vtep)
            for i in range(ports):
                sw.add_mac(VNI, f"02:{n:02x}:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                           (f"10.{n}.{i >> 8}.{i & 0xff}",))
            fakes[host] = sw
            agents.append(Agent(host=host, store=Store(url), switch=sw, ttl=TTL,
                                interval=INTERVAL))
        firsts = []
        for ag in agents:
            t0 = time.monotonic()
            ag.step()
            firsts.append((time.monotonic() - t0, ag.counters.puts))
        for ag in agents:
            th = threading.Thread(target=ag.run, name=f"agent-{ag.host}", daemon=True)
            th.start()
            threads.append(th)
        t0 = time.monotonic()
        full = wait(lambda: all(len(t.fdb) == ports for sw in fakes.values()
                                for t in sw.tunnels.values()), 120,
                    "each fake programmed with the other's MACs", 0.05)
        time.sleep(2.0)
        keys = count_keys(url)
        before_agents = [vars(ag.counters).copy() for ag in agents]
        m0, w0 = metrics(url), time.monotonic()
        time.sleep(window)
        m1, w1 = metrics(url), time.monotonic()
        after_agents = [vars(ag.counters).copy() for ag in agents]
        secs = w1 - w0

        def rate(name: str) -> float:
            return (m1.get(name, 0.0) - m0.get(name, 0.0)) / secs

        for (took, puts), ag in zip(firsts, agents, strict=True):
            print(f"first full publication, host {ag.host}: {puts} puts in {took:.2f} s "
                  f"({puts / took:.0f} puts/s; list + watch + lease grant + {ports} MACs + "
                  f"host and VTEP keys)")
        print(f"both fakes programmed with the other host's {ports} MACs: "
              f"{full + sum(t for t, _ in firsts):.2f} s after the first step began "
              f"({full:.2f} s of agent loop after the two first steps)")
        print(f"keys under {PREFIX} (etcd count_only range): {keys} "
              f"(expected 2 x ({ports} MACs + 1 VTEP + 1 host) = {2 * (ports + 2)})")
        print(f"steady window: {secs:.1f} s, 2 agents, {ports} + {ports} MACs, interval "
              f"{INTERVAL} s, TTL {TTL} s (keep-alive every {TTL / 3:.1f} s per agent)")
        print(f"  etcd puts/s (etcd_mvcc_put_total):         {rate('etcd_mvcc_put_total'):.3f}"
              f"   (goal 0)")
        print(f"  etcd deletes/s (etcd_mvcc_delete_total):   {rate('etcd_mvcc_delete_total'):.3f}")
        print(f"  etcd txns/s (etcd_mvcc_txn_total):         {rate('etcd_mvcc_txn_total'):.3f}")
        print(f"  watch events sent/s (etcd_debugging_mvcc_events_total): "
              f"{rate('etcd_debugging_mvcc_events_total'):.3f}   (goal 0)")
        print(f"  lease renewals/s (etcd_debugging_lease_renewed_total): "
              f"{rate('etcd_debugging_lease_renewed_total'):.3f}   (2 agents / "
              f"{TTL / 3:.1f} s = {2 / (TTL / 3):.2f} expected; the only traffic allowed)")
        print(f"  ranges/s (etcd_mvcc_range_total):          {rate('etcd_mvcc_range_total'):.3f}")
        print(f"  watch streams / watchers open (gauges):    "
              f"{m1.get('etcd_debugging_mvcc_watch_stream_total', 0):.0f} / "
              f"{m1.get('etcd_debugging_mvcc_watcher_total', 0):.0f}")
        print(f"  client gRPC bytes/s in / out (etcd_network_client_grpc_*_bytes_total, "
              f"through the gateway): {rate('etcd_network_client_grpc_received_bytes_total'):.0f}"
              f" / {rate('etcd_network_client_grpc_sent_bytes_total'):.0f}")
        meths = sorted({k.split(":", 1)[1] for k in m1 if k.startswith("grpc_server_msg_")})
        per = [(mth, rate(f"grpc_server_msg_received_total:{mth}"),
                rate(f"grpc_server_msg_sent_total:{mth}")) for mth in meths]
        per = [p for p in per if p[1] or p[2]]
        print("  gRPC messages/s received / sent, by method (grpc_server_msg_*_total): " +
              (", ".join(f"{mth} {r:.2f}/{s:.2f}" for mth, r, s in per) or "none"))
        for ag, c0, c1 in zip(agents, before_agents, after_agents, strict=True):
            d = {k: c1[k] - c0[k] for k in c0}
            print(f"  agent {ag.host} counters in the window: " +
                  ", ".join(f"{k} {v}" for k, v in d.items()) +
                  f"; etcd connected {ag.etcd.connected}")
    finally:
        for ag in agents:
            ag.stop()
        for th in threads:
            th.join(5)
        for ag in agents:
            with contextlib.suppress(Exception):
                ag.close(revoke=True)
        etcd.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="2 pings, a 10 s window (unless given)")
    ap.add_argument("--ports", type=int, default=1000, help="MACs per host in part 2")
    ap.add_argument("--pings", type=int, default=None, help="ports added in part 1 (5)")
    ap.add_argument("--window", type=float, default=None, help="steady window, s (30)")
    ap.add_argument("--part", choices=["all", "latency", "etcd"], default="all")
    a = ap.parse_args()
    pings = a.pings if a.pings is not None else (2 if a.quick else 5)
    window = a.window if a.window is not None else (10.0 if a.quick else 30.0)
    signal.signal(signal.SIGTERM, _sigterm)
    print(__doc__.split("\nMethod\n", 1)[1].split("\nEverything", 1)[0].rstrip())
    print()
    with tempfile.TemporaryDirectory(prefix="vsw-bench-") as tmp:
        if a.part in ("all", "latency"):
            print(f"== 1. port added on host A -> reachable from host B ({pings} ports) ==",
                  flush=True)
            (Path(tmp) / "lat").mkdir()
            latency(Path(tmp) / "lat", pings)
            print()
        if a.part in ("all", "etcd"):
            print(f"== 2. etcd traffic, {a.ports} + {a.ports} MACs ==", flush=True)
            (Path(tmp) / "etcd").mkdir()
            etcd_traffic(Path(tmp) / "etcd", a.ports, window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
