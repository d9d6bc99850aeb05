"""Helpers for the topology tests: extra namespaces wired to the test host by veth pairs,
a ping loop that counts losses, nftables and routes as the host namespace sees them.

Tests may use `ip` here (the daemon never does); every namespace is named with the test's tag,
so Host.cleanup() removes it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

from pyroute2 import NetNS, netns

from tests.netns.harness import HERE, NETNS_DIR, SYSTEM_PYTHON, Host


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def new_ns(host: Host, short: str) -> str:
    name = host.name(short)
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=1, state="up")
    return name


def wire(host: Host, other_ns: str, here: str, there: str, here_ips: tuple[str, ...] = (),
         there_ips: tuple[str, ...] = ()) -> None:
    """A veth pair: HERE in the host namespace, THERE in OTHER_NS, both up, with addresses."""
    ip("-n", host.ns, "link", "add", here, "type", "veth", "peer", "name", there, "netns",
       other_ns)
    for ns, dev, addrs in ((host.ns, here, here_ips), (other_ns, there, there_ips)):
        for a in addrs:
            ip("-n", ns, "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []))
        ip("-n", ns, "link", "set", dev, "up")


def routes(ns: str, family: int = 4) -> list[str]:
    out = subprocess.run(["ip", f"-{family}", "-n", ns, "-j", "route", "show"],
                         capture_output=True, text=True, check=True).stdout
    return [f"{r['dst']} dev {r.get('dev', '')}" + (f" via {r['gateway']}"
                                                    if r.get("gateway") else "")
            for r in json.loads(out or "[]")]


def addresses(ns: str, dev: str) -> set[str]:
    out = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    found = set()
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            if a.get("scope") != "link":
                found.add(f"{a['local']}/{a['prefixlen']}")
    return found


def mac(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def nft_ruleset(ns: str) -> str:
    return subprocess.run(["nsenter", f"--net={NETNS_DIR}/{ns}", "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


class PingLoop:
    """`ping -i 0.01` from a namespace while something happens; stop() -> (sent, received)."""

    def __init__(self, ns: str, target: str, interval: float = 0.01) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR}/{ns}", "ping", "-n", "-i", str(interval), "-W",
             "1", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)  # let it settle (ARP) before the change under test

    def stop(self) -> tuple[int, int]:
        time.sleep(1.2)  # replies to the last requests (-W 1)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))


def tcp_server(host: Host, ns: str, port: int):
    return host.spawn_in(ns, SYSTEM_PYTHON, str(HERE / "tcppeer.py"), "serve", str(port))


def tcp_connect(host: Host, ns: str, addr: str, port: int) -> str:
    res = host.run_in(ns, SYSTEM_PYTHON, str(HERE / "tcppeer.py"), "connect", addr, str(port))
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def sniffer(host: Host, ns: str, iface: str, seconds: float):
    return host.spawn_in(ns, SYSTEM_PYTHON, str(HERE / "l2tool.py"), "sniff", iface,
                         str(seconds))


def sniffed(proc) -> list[list[object]]:
    out, err = proc.communicate(timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def send_frames(host: Host, ns: str, iface: str, dst: str, src: str, vlan: int,
                count: int = 3) -> None:
    res = host.run_in(ns, SYSTEM_PYTHON, str(HERE / "l2tool.py"), "send", iface, dst, src,
                      str(vlan), str(count))
    assert res.returncode == 0, res.stderr
