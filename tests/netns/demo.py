"""`make demo`: the two host topologies, built with the real daemon in network
namespaces, with some traffic, then `vswctl show`, the FDB and the counters, then teardown.

    python -m tests.netns.demo [--datapath ebpf|kernel]

1. Containers behind a NAT gateway: bridge br-nat (10.9.0.1/24, --nat), containers c1 and c2
   with the bridge as default gateway; an "outside" namespace (10.200.0.2) reachable only via a
   routed veth; the containers ping it and open a TCP connection (it sees the host's address).
2. VMs bridged onto the LAN: a "LAN" namespace behind veth up0, whose addresses and routes move
   to bridge br-lan with `add-port --uplink` while the host keeps pinging the LAN router; a VM
   stand-in (a process holding a multi-queue TAP) and a container reach the LAN; with the eBPF
   datapath two more containers share VLAN 100 on access ports.

Everything runs inside namespaces made for the demo (the machine's interfaces are not touched)
and is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.netns.harness import HERE, SYSTEM_PYTHON, Host
from tests.netns.topo import PingLoop, ip, new_ns, tcp_connect, tcp_server, wire

VM_MAC = "52:54:00:60:00:50"


def step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(host: Host, *args: str, show: bool = True) -> str:
    out = host.vswctl(*args).stdout
    print(f"$ vswctl {' '.join(args)}")
    if show and out:
        print(out, end="")
    return out


def check(what: str, ok: bool) -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return ok


def nat_topology(host: Host, datapath: str) -> bool:
    step("containers behind a NAT gateway")
    out = new_ns(host, "out")
    wire(host, out, "hx0", "ox0", ("10.200.0.1/24",), ("10.200.0.2/24",))
    run(host, "add-br", "br-nat", "--datapath", datapath, "--ip", "10.9.0.1/24", "--nat")
    for name, last in (("c1", 2), ("c2", 3)):
        run(host, "add-port", "br-nat", name, "--netns", host.name(name), "--ip",
            f"10.9.0.{last}/24", "--gateway", "10.9.0.1")
    ok = check("c1 pings the outside (10.200.0.2)", host.ping(host.name("c1"), "10.200.0.2"))
    ok &= check("c2 pings c1", host.ping(host.name("c2"), "10.9.0.2"))
    tcp_server(host, out, 8080)
    seen = tcp_connect(host, host.name("c2"), "10.200.0.2", 8080)
    ok &= check(f"c2 opens TCP to the outside, which sees {seen} (the host)",
                seen == "peer=10.200.0.1")
    return ok


def lan_topology(host: Host, datapath: str) -> bool:
    step("VMs and containers bridged onto the LAN through an uplink")
    lan = new_ns(host, "lan")
    wire(host, lan, "up0", "lan0", ("10.60.0.1/24", "fd60::1/64"),
         ("10.60.0.2/24", "fd60::2/64"))
    ip("-n", lan, "addr", "add", "10.61.0.1/24", "dev", "lo")
    ip("-n", host.ns, "route", "add", "10.61.0.0/24", "via", "10.60.0.2")
    run(host, "add-br", "br-lan", "--datapath", datapath)
    loop = PingLoop(host.ns, "10.61.0.1")
    run(host, "add-port", "br-lan", "up0", "--type", "system", "--uplink")
    sent, received = loop.stop()
    ok = check(f"the host kept pinging the LAN during add-port --uplink: "
               f"{sent - received} of {sent} lost (10 ms interval)", sent - received <= 5)
    run(host, "add-port", "br-lan", "vm0", "--type", "tap", "--owner", "root", "--multi-queue")
    res = host.run_in(host.ns, SYSTEM_PYTHON, str(HERE / "vmstub.py"), "--tap", "vm0",
                      "--mac", VM_MAC, "--ip", "10.60.0.50", "--ping", "10.60.0.2",
                      "--multi-queue")
    ok &= check("the VM (10.60.0.50 on TAP vm0) pings the LAN host", res.returncode == 0)
    run(host, "add-port", "br-lan", "c3", "--netns", host.name("c3"), "--ip", "10.60.0.51/24",
        "--gateway", "10.60.0.2")
    ok &= check("container c3 (10.60.0.51) pings beyond the LAN router (10.61.0.1)",
                host.ping(host.name("c3"), "10.61.0.1"))
    ok &= check("the host pings the LAN host over IPv6", host.ping(host.ns, "fd60::2"))
    if datapath == "ebpf":
        res = host.vswctl("add-port", "br-lan", "v1", "--netns", host.name("v1"), "--ip",
                          "10.60.0.61/24", "--vlan", "100", check=False)
        if res.returncode != 0:
            print(f"  (VLANs skipped: {res.stderr.strip()})")
        else:
            print("$ vswctl add-port br-lan v1 ... --vlan 100")
            run(host, "add-port", "br-lan", "v2", "--netns", host.name("v2"), "--ip",
                "10.60.0.62/24", "--vlan", "100")
            ok &= check("v1 pings v2 in VLAN 100", host.ping(host.name("v1"), "10.60.0.62"))
            ok &= check("v1 cannot reach the LAN host (VLAN 100 is not untagged)",
                        not host.ping(host.name("v1"), "10.60.0.2", count=1))
    return ok


def report(host: Host) -> None:
    step("what the switch shows")
    run(host, "show")
    for br in ("br-nat", "br-lan"):
        print()
        run(host, "list-ports", br)
        print()
        run(host, "dump-fdb", br)
        print()
        run(host, "port-stats", br)


def teardown(host: Host) -> bool:
    step("teardown")
    loop = PingLoop(host.ns, "10.61.0.1")
    run(host, "del-port", "br-lan", "up0")
    sent, received = loop.stop()
    ok = check(f"the host kept pinging the LAN during del-port of the uplink: "
               f"{sent - received} of {sent} lost", sent - received <= 5)
    run(host, "del-br", "br-nat")
    run(host, "del-br", "br-lan")
    from tests.netns.topo import nft_ruleset, routes

    ok &= check("no NAT rule left", "vswitchd" not in nft_ruleset(host.ns))
    ok &= check("no route to the bridge subnets left",
                not [r for r in routes(host.ns) if r.startswith("10.9.0.")])
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datapath", choices=["ebpf", "kernel"], default="ebpf")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vswdemo-", dir="/tmp") as tmp:
        host = Host(Path(tmp))
        ok = False
        try:
            host.start()
            print(f"vswitchd running in network namespace {host.ns} "
                  f"(datapath {args.datapath})")
            ok = nat_topology(host, args.datapath)
            ok &= lan_topology(host, args.datapath)
            report(host)
            ok &= teardown(host)
        except Exception as exc:  # noqa: BLE001 - print, clean up, fail
            print(f"demo failed: {exc}\n---- vswitchd log ----\n{host.log()[-4000:]}")
            ok = False
        finally:
            host.cleanup()
        print(f"\ndemo {'passed' if ok else 'FAILED'}; everything it made is removed")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
