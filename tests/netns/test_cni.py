"""vswitchd-cni against a real daemon: driven as the specification's reference tool drives a
plugin (environment + stdin), and by a real runtime, Debian's podman with its CNI backend.

The daemon runs in the test's host namespace; the containers' namespaces are made by the test
(first test) or by podman (second), and their veth ends go there by path, as with any runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from pyroute2 import netns

from tests.netns.harness import BIN, NETNS_DIR, Host
from tests.netns.podman import Podman
from tests.netns.topo import new_ns, wire

PLUGIN = str(BIN / "vswitchd-cni")
HOST_LOCAL = "/usr/lib/cni/host-local"
CID_A = "a1b2c3d4e5f6" + "0" * 52
CID_B = "b1b2c3d4e5f6" + "1" * 52


def netconf(host: Host, ipam_dir: Path, **over: object) -> dict:
    conf: dict = {"cniVersion": "1.0.0", "name": "vsw-test", "type": "vswitchd-cni",
                  "bridge": "cni0", "isGateway": True, "ipMasq": True, "socket": host.socket,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.66.0.0/24"}]],
                           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir)}}
    conf.update(over)
    return conf


def cni(command: str, conf: dict | bytes, cid: str = CID_A, ns: str = "", ifname: str = "eth0",
        **env_over: str) -> tuple[int, dict | None]:
    """One invocation, as the reference tool (cnitool) makes it: (exit code, JSON output)."""
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_NETNS": f"{NETNS_DIR}/{ns}" if ns else "", "CNI_IFNAME": ifname,
           "CNI_PATH": "/usr/lib/cni", **env_over}
    env = {k: v for k, v in env.items() if v != ""}
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    res = subprocess.run([PLUGIN], input=data, env=env, capture_output=True, timeout=60)
    assert not res.stderr or res.returncode != 0, res.stderr.decode()
    out = res.stdout.decode().strip()
    return res.returncode, json.loads(out) if out else None


def leases(ipam_dir: Path, network: str = "vsw-test") -> set[str]:
    """The addresses host-local holds (one file per address)."""
    folder = ipam_dir / network
    if not folder.exists():
        return set()
    return {f.name for f in folder.iterdir() if f.name[0].isdigit() and "." in f.name
            and not f.name.startswith("last_reserved")}


def ports(host: Host, bridge: str = "cni0") -> dict[str, dict]:
    return {p["name"]: p for p in host.json("list-ports", bridge)}


def test_the_plugin_as_the_spec_drives_it(host, tmp_path):
    ipam_dir = tmp_path / "ipam"
    host.start()
    conf = netconf(host, ipam_dir)
    ns_a, ns_b = new_ns(host, "ca"), new_ns(host, "cb")

    # VERSION
    rc, out = cni("VERSION", {"cniVersion": "0.4.0"}, cid="", ifname="", CNI_PATH="")
    assert rc == 0 and out == {"cniVersion": "0.4.0",
                               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}

    # ADD: the bridge is made with the gateway and NAT; the container gets its address and route
    rc, res_a = cni("ADD", conf, CID_A, ns_a)
    assert rc == 0, res_a
    assert res_a["cniVersion"] == "1.0.0"
    port_a = res_a["interfaces"][0]["name"]
    assert len(port_a) <= 15 and port_a.startswith("vca1b2c3d4")
    assert res_a["interfaces"][1] == {"name": "eth0", "mac": res_a["interfaces"][1]["mac"],
                                      "sandbox": f"{NETNS_DIR}/{ns_a}"}
    assert res_a["ips"] == [{"address": "10.66.0.2/24", "gateway": "10.66.0.1", "interface": 1}]
    assert res_a["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.66.0.1"}]
    br = host.json("list-br")[0]
    assert (br["name"], br["addresses"], br["nat"]) == ("cni0", ["10.66.0.1/24"], True)
    labels = ports(host)[port_a]["labels"]
    assert labels == {"cni.container_id": CID_A, "cni.ifname": "eth0",
                      "cni.network": "vsw-test"}
    assert host.ping(ns_a, "10.66.0.1")

    # an older version's result carries the IP version; a second container reaches the first
    rc, res_b = cni("ADD", {**conf, "cniVersion": "0.4.0"}, CID_B, ns_b)
    assert rc == 0, res_b
    assert res_b["ips"][0] == {"version": "4", "address": "10.66.0.3/24",
                               "gateway": "10.66.0.1", "interface": 1}
    assert host.ping(ns_b, "10.66.0.2")
    assert leases(ipam_dir) == {"10.66.0.2", "10.66.0.3"}

    # CHECK: as ADD left it; an unknown container; a missing prevResult
    assert cni("CHECK", {**conf, "prevResult": res_a}, CID_A, ns_a) == (0, None)
    rc, out = cni("CHECK", {**conf, "prevResult": res_a}, "c0ffee", ns_a)
    assert rc == 1 and out["code"] == 3 and "has no port" in out["msg"]
    rc, out = cni("CHECK", conf, CID_A, ns_a)
    assert rc == 1 and out["code"] == 7 and out["msg"].startswith("prevResult")
    rc, out = cni("CHECK", {**conf, "cniVersion": "0.3.1", "prevResult": res_a}, CID_A, ns_a)
    assert rc == 1 and out["code"] == 1

    # ADD again for the same container and interface: refused, nothing changes
    rc, out = cni("ADD", conf, CID_A, ns_a)
    assert rc == 1 and out["code"] == 100 and "already exists" in out["msg"]
    assert leases(ipam_dir) == {"10.66.0.2", "10.66.0.3"}

    # DEL survives a daemon restart, and twice is fine; the address goes back to IPAM
    host.stop()
    host.start()
    assert cni("DEL", conf, CID_A, ns_a) == (0, None)
    assert cni("DEL", conf, CID_A, ns_a) == (0, None)
    assert port_a not in ports(host) and leases(ipam_dir) == {"10.66.0.3"}

    # DEL after the container's namespace is gone (the runtime tore it down first)
    netns.remove(ns_b)
    assert cni("DEL", conf, CID_B, "") == (0, None)
    assert ports(host) == {} and leases(ipam_dir) == set()


@pytest.mark.parametrize("conf_over, env_over, code, says", [
    ("not json", {}, 6, "not JSON"),
    ({"cniVersion": "0.2.0"}, {}, 1, "not supported"),
    ({"cniVersion": None}, {}, 6, "cniVersion"),
    ({"name": ""}, {}, 7, "name"),
    ({"vlan": "ten"}, {}, 7, "vlan"),
    ({"mtu": True}, {}, 7, "mtu"),
    ({"datapath": "ovs"}, {}, 7, "datapath"),
    ({"ipam": None}, {}, 7, "isGateway: needs ipam"),
    ({"ipam": {"type": "no-such-ipam"}}, {}, 7, "ipam.type"),
    ({"socket": "/nonexistent/vswitchd.sock"}, {}, 11, "not running"),
    ({}, {"CNI_COMMAND": "FROB"}, 4, "CNI_COMMAND"),
    ({}, {"CNI_NETNS": ""}, 4, "CNI_NETNS"),
    ({}, {"CNI_CONTAINERID": "../x"}, 4, "CNI_CONTAINERID"),
    ({}, {"CNI_ARGS": "IgnoreUnknown"}, 4, "CNI_ARGS"),
])
def test_bad_configurations_get_the_specs_errors(host, tmp_path, conf_over, env_over, code,
                                                 says):
    host.start()
    ns = new_ns(host, "c")
    if conf_over == "not json":
        conf: dict | bytes = b"{not json"
    else:
        conf = {**netconf(host, tmp_path / "ipam"), **conf_over}
        conf = {k: v for k, v in conf.items() if v is not None or k == "cniVersion"}
    rc, out = cni(env_over.pop("CNI_COMMAND", "ADD"), conf, CID_A, ns, **env_over)
    assert rc == 1 and out["code"] == code and says in out["msg"], out
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert host.json("list-br") == [] and leases(tmp_path / "ipam") == set()


def test_a_refused_port_gives_its_address_back(host, tmp_path):
    """The daemon refuses the port (an MTU out of range): code 7 naming the field, the IPAM
    lease is released, no port is left."""
    host.start()
    ns = new_ns(host, "c")
    conf = netconf(host, tmp_path / "ipam", mtu=20)
    rc, out = cni("ADD", conf, CID_A, ns)
    assert rc == 1 and out["code"] == 7 and "mtu" in out["msg"], out
    assert leases(tmp_path / "ipam") == set() and ports(host) == {}


def test_an_existing_bridge_gets_the_gateway_and_nat(host, tmp_path):
    """A bridge made beforehand without an address (vswctl add-br): ADD gives it the gateway
    address and NAT, as the reference bridge plugin adds its gateway."""
    host.start()
    host.vswctl("add-br", "cni0")
    ns = new_ns(host, "c")
    rc, res = cni("ADD", netconf(host, tmp_path / "ipam"), CID_A, ns)
    assert rc == 0, res
    br = host.json("list-br")[0]
    assert (br["addresses"], br["nat"]) == (["10.66.0.1/24"], True)
    assert host.ping(ns, "10.66.0.1")
    assert cni("DEL", netconf(host, tmp_path / "ipam"), CID_A, ns) == (0, None)


def test_concurrent_adds_and_dels(host, tmp_path):
    """A runtime starting four containers at once on a bridge that does not exist yet (a
    kernel-datapath one this time): every ADD succeeds with its own address, the bridge gets
    its gateway once; four DELs at once leave nothing."""
    from concurrent.futures import ThreadPoolExecutor

    host.start()
    conf = netconf(host, tmp_path / "ipam", datapath="kernel")
    cids = [f"{i}c" * 8 for i in range(4)]
    nss = [new_ns(host, f"p{i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: cni("ADD", conf, cids[i], nss[i]), range(4)))
    assert [rc for rc, _ in results] == [0] * 4, results
    addresses = {res["ips"][0]["address"] for _, res in results}
    assert len(addresses) == 4
    br = host.json("list-br")[0]
    assert (br["datapath"], br["addresses"], br["nat"]) == ("kernel", ["10.66.0.1/24"], True)
    assert host.ping(nss[0], results[3][1]["ips"][0]["address"].split("/")[0])
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda i: cni("DEL", conf, cids[i], nss[i]), range(4)))
    assert done == [(0, None)] * 4
    assert ports(host) == {} and leases(tmp_path / "ipam") == set()


def test_vlan_keeps_two_networks_on_one_bridge_apart(host, tmp_path):
    """Networks "red" (VLAN 10) and "blue" (VLAN 20) share bridge vlans0 and one subnet: a
    container reaches its own network's containers only."""
    host.start()

    def network(name: str, vlan: int, first: int) -> dict:
        ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam"), "ranges": [[{
            "subnet": "10.68.0.0/24", "rangeStart": f"10.68.0.{first}",
            "rangeEnd": f"10.68.0.{first + 9}"}]]}
        return {**netconf(host, tmp_path, bridge="vlans0", isGateway=False, ipMasq=False,
                          ipam=ipam), "name": name, "vlan": vlan}

    red, blue = network("red", 10, 10), network("blue", 20, 20)
    made = {}
    for short, conf, cid in (("r1", red, "aa01"), ("r2", red, "aa02"), ("b1", blue, "bb01")):
        ns = new_ns(host, short)
        rc, res = cni("ADD", conf, cid, ns)
        assert rc == 0, res
        made[short] = (ns, res["ips"][0]["address"].split("/")[0])
    assert {p["vlan"] for p in ports(host, "vlans0").values()} == {10, 20}
    assert host.ping(made["r1"][0], made["r2"][1])
    assert not host.ping(made["r1"][0], made["b1"][1], count=1)
    for short, conf, cid in (("r1", red, "aa01"), ("r2", red, "aa02"), ("b1", blue, "bb01")):
        assert cni("DEL", conf, cid, made[short][0]) == (0, None)
    assert ports(host, "vlans0") == {}


def test_podman_containers_on_a_vswitchd_network(host, tmp_path):
    """Two containers run by podman on a network whose plugin is vswitchd-cni: they reach each
    other and, through the bridge's gateway and NAT, a namespace outside; once stopped and
    removed nothing is left (ports, namespaces, IPAM leases, CNI cache)."""
    host.start()
    # "outside": a namespace wired to the host namespace, with no route back to the containers
    outside = new_ns(host, "out")
    wire(host, outside, "up0", "eth0", ("198.51.100.1/24",), ("198.51.100.2/24",))

    plugins, nets, ipam_dir = tmp_path / "cni-bin", tmp_path / "net.d", tmp_path / "ipam"
    plugins.mkdir()
    nets.mkdir()
    (plugins / "vswitchd-cni").symlink_to(PLUGIN)
    network = f"vsw{host.tag}"
    conflist = {"cniVersion": "1.0.0", "name": network, "plugins": [
        {**netconf(host, ipam_dir), "name": network,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.67.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir)}}]}
    (nets / f"{network}.conflist").write_text(json.dumps(conflist))
    netns_before = set(os.listdir(NETNS_DIR))
    cache_before = _cni_cache()

    podman = Podman(tmp_path / "podman", plugins, nets)
    try:
        image = podman.import_busybox()
        names = [f"{host.tag}-a", f"{host.tag}-b"]
        t0 = time.monotonic()
        for name in names:
            podman("run", "-d", "--name", name, "--network", network, image, "sleep", "600")
        started = time.monotonic() - t0
        ids = {name: podman.inspect(name)["Id"] for name in names}
        by_container = {p["labels"]["cni.container_id"]: p for p in ports(host).values()}
        assert set(by_container) == set(ids.values())
        ip_of = {name: by_container[ids[name]]["addresses"][0].split("/")[0] for name in names}
        assert sorted(ip_of.values()) == ["10.67.0.2", "10.67.0.3"]
        for port in by_container.values():
            assert port["state"] == "up" and port["netns"].startswith(NETNS_DIR)
        a, b = names

        def ping(src: str, dst: str) -> subprocess.CompletedProcess:
            return podman("exec", src, "ping", "-c", "2", "-W", "2", dst, check=False)

        assert ping(a, ip_of[b]).returncode == 0, ping(a, ip_of[b]).stdout
        assert ping(b, ip_of[a]).returncode == 0
        assert ping(a, "198.51.100.2").returncode == 0  # out through the gateway and NAT
        addr = podman("exec", a, "ip", "-4", "addr", "show", "eth0").stdout
        assert f"{ip_of[a]}/24" in addr
        assert leases(ipam_dir, network) == set(ip_of.values())

        podman("stop", "--time", "0", *names)
        podman("rm", *names)
        assert ports(host) == {}
        assert leases(ipam_dir, network) == set()
        assert set(os.listdir(NETNS_DIR)) - netns_before <= {
            n for n in os.listdir(NETNS_DIR) if n.startswith(host.tag)}
        assert _cni_cache() == cache_before
        print(f"podman: two containers started in {started:.1f}s")
    finally:
        podman.cleanup()


def _cni_cache() -> set[str]:
    """libcni's cache of results (podman's CNI backend keeps one per attachment)."""
    root = Path("/var/lib/cni/results")
    return {p.name for p in root.iterdir()} if root.exists() else set()
