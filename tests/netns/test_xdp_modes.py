"""XDP on ports with the real daemon: the modes TAPs get and what list-ports says,
set-port at run time and across a restart, a kernel bridge's refusal, and GRO (NAPI) on a
container's veth peer while its veth port runs XDP itself (a TAP's XDP alone leaves it off), with
traffic between them."""

from __future__ import annotations

import pytest
from pyroute2 import NetNS

from vswitchd.netlink import ethtool

pytestmark = pytest.mark.root

SUBNET = "10.78.0"
VM_MAC, VM_IP = "52:54:00:78:00:20", f"{SUBNET}.20"
# IFLA_XDP_ATTACHED as pyroute2 decodes it: how the kernel says an interface runs XDP
XDP_ATTACHED = {None: "off", "xdp": "native", "xdpgeneric": "generic", "xdpmulti": "multi"}


def kernel_xdp(host, name: str) -> str:
    """The XDP mode the kernel reports for NAME in the host namespace."""
    with NetNS(host.ns) as ipr:
        link = ipr.link("get", ifname=name)[0]
    xdp = link.get_attr("IFLA_XDP")
    attached = xdp.get_attr("IFLA_XDP_ATTACHED") if xdp else None
    return XDP_ATTACHED.get(attached, f"attached={attached}")


def modes(host, bridge: str = "br0") -> dict[str, tuple[str, str, str]]:
    return {p["name"]: (p["xdp"], p["xdp_mode"], p["xdp_reason"])
            for p in host.json("list-ports", bridge)}


def xdp_column(host, bridge: str = "br0") -> dict[str, str]:
    lines = host.vswctl("list-ports", bridge).stdout.splitlines()
    at = lines[0].split().index("XDP")
    return {line.split()[0]: line.split()[at] for line in lines[1:]}


def test_taps_get_their_modes_and_set_port_changes_them(host):
    host.start()
    host.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    host.vswctl("add-port", "br0", "vm0", "--type", "tap", "--owner", "root")
    host.vswctl("add-port", "br0", "vm1", "--type", "tap", "--xdp", "generic")
    host.vswctl("add-port", "br0", "vm2", "--type", "tap", "--xdp", "off")
    host.vswctl("add-port", "br0", "c1", "--netns", host.name("c1"),
                "--ip", f"{SUBNET}.11/24")
    assert modes(host) == {"vm0": ("auto", "native", ""), "vm1": ("generic", "generic", ""),
                           "vm2": ("off", "off", ""), "c1": ("off", "off", "")}
    assert xdp_column(host) == {"vm0": "native", "vm1": "generic", "vm2": "off", "c1": "off"}
    assert [kernel_xdp(host, n) for n in ("vm0", "vm1", "vm2", "c1")] == [
        "native", "generic", "off", "off"]

    host.vswctl("set-port", "br0", "vm0", "--xdp", "generic")
    host.vswctl("set-port", "br0", "vm2", "--xdp", "native")
    host.vswctl("set-port", "br0", "vm1", "--xdp", "off")
    assert xdp_column(host) == {"vm0": "generic", "vm1": "off", "vm2": "native", "c1": "off"}
    assert [kernel_xdp(host, n) for n in ("vm0", "vm1", "vm2")] == ["generic", "off", "native"]
    shown = host.vswctl("show").stdout
    assert "        xdp: generic" in shown.splitlines() and "        xdp: native" in shown

    # a restart keeps them (the stored modes are applied again)
    host.stop()
    host.start()
    assert xdp_column(host) == {"vm0": "generic", "vm1": "off", "vm2": "native", "c1": "off"}
    assert [kernel_xdp(host, n) for n in ("vm0", "vm1", "vm2")] == ["generic", "off", "native"]

    # del-port takes the program with the port
    host.vswctl("del-port", "br0", "vm2")
    assert "vm2" not in host.links()


def test_a_kernel_bridge_refuses_xdp(host):
    host.start()
    host.vswctl("add-br", "kbr", "--datapath", "kernel")
    res = host.vswctl("add-port", "kbr", "vm0", "--type", "tap", "--xdp", "native", check=False)
    assert res.returncode == 2, res
    assert res.stderr.startswith("vswctl: FAILED_PRECONDITION: XDP mode native is not supported "
                                 "on bridge kbr"), res.stderr
    assert "runs no programs" in res.stderr and "vm0" not in host.links()
    host.vswctl("add-port", "kbr", "vm0", "--type", "tap")  # the default stays silent
    assert modes(host, "kbr") == {"vm0": ("off", "off", "the kernel datapath runs no programs")}
    assert kernel_xdp(host, "vm0") == "off"
    res = host.vswctl("set-port", "kbr", "vm0", "--xdp", "generic", check=False)
    assert res.returncode == 2 and "FAILED_PRECONDITION" in res.stderr


def test_a_containers_peer_gets_gro_while_its_veth_runs_xdp(host):
    host.start()
    c1, c2 = host.name("c1"), host.name("c2")
    host.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    host.vswctl("add-port", "br0", "c1", "--netns", c1, "--ip", f"{SUBNET}.11/24")
    host.vswctl("add-port", "br0", "c2", "--netns", c2, "--ip", f"{SUBNET}.12/24",
                "--xdp", "generic")
    assert ethtool.gro("eth0", c1) is False  # a veth's default here: no XDP of its own
    assert ethtool.gro("eth0", c2) is True   # c2 runs XDP: an XDP target, its end has NAPI
    # a TAP with XDP changes nothing for the containers (frames for them go through TC)
    host.vswctl("add-port", "br0", "vm0", "--type", "tap", "--owner", "root")
    assert modes(host)["vm0"][1] == "native"
    assert ethtool.gro("eth0", c1) is False and ethtool.gro("eth0", c2) is True
    # frames from the VM reach both containers (c2 by an XDP redirect into its veth) and back
    vm = host.vm("vm0", VM_MAC, VM_IP)
    assert host.ping(c1, VM_IP) and host.ping(c2, VM_IP), host.log()[-3000:]
    vm.kill()
    vm.wait()
    for target in (f"{SUBNET}.11", f"{SUBNET}.12"):
        res = host.vm_ping("vm0", VM_MAC, VM_IP, target)
        assert res.returncode == 0, f"{res.stdout}{res.stderr}\n{host.log()[-3000:]}"
    # c2's XDP goes off: GRO off again at its end; on again with it
    host.vswctl("set-port", "br0", "c2", "--xdp", "off")
    assert ethtool.gro("eth0", c2) is False
    host.vswctl("set-port", "br0", "c2", "--xdp", "generic")
    assert ethtool.gro("eth0", c2) is True
    assert host.ping(c1, f"{SUBNET}.12")
