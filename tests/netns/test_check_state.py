"""`vswitchd --check-state` against a real daemon: consistent while it runs and after it
stopped; then things broken by hand behind its back (links, namespaces, nftables, pinned map
entries) are each reported. (Every comparison's failing case: tests/unit/test_consistency.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.netns.harness import NETNS_DIR, VSWITCHD
from vswitchd.datapath import bpfsys
from vswitchd.datapath.pins import map_info

pytestmark = pytest.mark.root


def check_state(host, bpffs_dir: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", f"--net={NETNS_DIR}/{host.ns}", VSWITCHD, "--check-state",
         "--state-dir", host.state_dir, "--bpffs-dir", bpffs_dir or host.bpffs_dir],
        capture_output=True, text=True, timeout=60)


def findings(host) -> list[str]:
    res = check_state(host)
    assert res.returncode in (0, 1), res.stderr
    assert (res.returncode == 1) == bool(res.stdout.strip()), res
    return res.stdout.splitlines()


def in_host(host, *cmd: str) -> None:
    res = host.run_in(host.ns, *cmd)
    assert res.returncode == 0, f"{cmd}: {res.stderr}"


class PinnedMap:
    """A pinned map of the stopped daemon, edited behind its back."""

    def __init__(self, host, name: str) -> None:
        self.fd = bpfsys.obj_get(f"{host.bpffs_dir}/{name}")
        info = map_info(self.fd)
        self.key_size, self.value_size = info["key_size"], info["value_size"]

    def items(self) -> dict[bytes, bytes]:
        return {k: bpfsys.map_lookup(self.fd, k, self.value_size, "lookup")
                for k in bpfsys.map_keys(self.fd, self.key_size, "keys")}

    def key(self, ifindex: int) -> bytes:
        return ifindex.to_bytes(4, "little") + bytes(self.key_size - 4)

    def close(self) -> None:
        bpfsys.os.close(self.fd)


def ifindex(host, name: str) -> int:
    return json.loads(host.run_in(host.ns, "ip", "-j", "link", "show", name).stdout)[0]["ifindex"]


@pytest.fixture
def built(host):
    host.start()
    c = host.name("c")
    host.vswctl("add-br", "br0", "--ip", "10.61.0.1/24", "--nat")
    host.vswctl("add-port", "br0", "p1", "--netns", c, "--peer-name", "e1")
    host.vswctl("add-port", "br0", "p2", "--netns", c, "--peer-name", "e2", "--vlan", "10",
                "--mtu", "1400")
    host.vswctl("add-port", "br0", "p3", "--netns", host.name("d"), "--trunks", "20,30",
                "--native-vlan", "5")
    host.vswctl("add-port", "br0", "t1", "--type", "tap")
    host.vswctl("add-fdb", "br0", "02:00:00:00:00:01", "p1")
    host.vswctl("add-flow", "br0", "priority=10,in_port=p1,actions=normal")
    host.vswctl("add-br", "kb0", "--datapath", "kernel")
    host.vswctl("add-port", "kb0", "k1", "--netns", host.name("k"))
    return host


def test_consistent_while_running_and_after_stop(built):
    res = check_state(built)
    assert (res.returncode, res.stdout) == (0, ""), res
    assert "agree" in res.stderr
    built.stop()
    res = check_state(built)
    assert (res.returncode, res.stdout) == (0, ""), res


def test_cannot_check(built, tmp_path):
    res = subprocess.run([VSWITCHD, "--check-state", "--state-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no state store" in res.stderr, res
    assert not (tmp_path / "none").exists()  # a check creates nothing
    res = check_state(built, bpffs_dir=f"{built.bpffs_dir}-none")
    assert res.returncode == 1 and "bridge br0: the datapath's pinned maps do not exist" \
        in res.stdout, res


def test_kernel_disagreements_are_found(built):
    h = built
    h.stop()  # else its link monitor would repair what the test breaks
    in_host(h, "ip", "link", "del", "kb0")
    in_host(h, "ip", "link", "add", "kb0", "type", "veth", "peer", "kb0p")
    in_host(h, "ip", "link", "set", "p1", "nomaster")
    in_host(h, "ip", "link", "del", "t1")
    in_host(h, "ip", "link", "add", "t1", "master", "br0", "type", "veth", "peer", "t1p")
    in_host(h, "ip", "link", "del", "k1")
    h.run_in(h.name("c"), "ip", "link", "del", "e2")  # (p2 goes with it: a veth pair)
    in_host(h, "ip", "link", "set", "br0", "address", "02:12:34:56:78:9a")
    subprocess.run(["ip", "netns", "del", h.name("d")], check=True)
    in_host(h, "nft", "flush", "chain", "ip", "vswitchd_nat", "postrouting")
    in_host(h, "nft", "add", "rule", "ip", "vswitchd_nat", "postrouting", "ip", "saddr",
            "10.99.0.0/24", "masquerade", "comment", '"vswitchd:gone0"')
    got = "\n".join(findings(h))
    for want in ("bridge kb0: interface kb0 is a veth, not a bridge",
                 "port p1 of bridge br0: interface p1 is not enslaved to br0",
                 "port t1 of bridge br0: interface t1 is a veth, not a tun",
                 "port t1 of bridge br0: XDP mode auto but no XDP program is attached",
                 "port k1 of bridge kb0: its interface does not exist",
                 f"port p2 of bridge br0: network namespace {h.name('c')} has no interface e2",
                 "bridge br0: its MAC is 02:12:34:56:78:9a, not its own",
                 f"port p3 of bridge br0: its network namespace {h.name('d')} does not exist",
                 "bridge br0: NAT is on but there is no NAT rule for it",
                 "NAT rule for gone0 (10.99.0.0/24): the store has no bridge gone0",
                 # t1's old ifindex: the new t1 is another interface
                 "ports map entry for ifindex"):
        assert want in got, got


def test_datapath_disagreements_are_found(built):
    h = built
    br0, p1, p2, p3 = (ifindex(h, n) for n in ("br0", "p1", "p2", "p3"))
    h.stop()
    in_host(h, "ip", "link", "set", "p2", "mtu", "1300")
    ports = PinnedMap(h, "ports")
    try:
        items = ports.items()
        bpfsys.map_delete(ports.fd, ports.key(p1), "delete")
        value = bytearray(items[ports.key(p2)])
        value[4:6] = (11).to_bytes(2, "little")  # access VLAN 11, not 10
        bpfsys.map_update(ports.fd, ports.key(p2), bytes(value), "update")
        bpfsys.map_update(ports.fd, ports.key(99999), items[ports.key(p2)], "stale")
    finally:
        ports.close()
    trunks = PinnedMap(h, "port_trunks")
    try:
        value = bytearray(trunks.items()[trunks.key(p3)])
        value[0:2] = (6).to_bytes(2, "little")  # native VLAN 6, not 5
        bpfsys.map_update(trunks.fd, trunks.key(p3), bytes(value), "update")
    finally:
        trunks.close()
    fdb = PinnedMap(h, "fdb")
    try:
        (key, value), = ((k, v) for k, v in fdb.items().items() if k[6:] == bytes.fromhex(
            "020000000001"))
        bpfsys.map_delete(fdb.fd, key, "delete")
        bpfsys.map_update(fdb.fd, (99999).to_bytes(4, "little") + key[4:], value, "stale")
    finally:
        fdb.close()
    masks = PinnedMap(h, "flow_masks")
    try:
        value = masks.items()[masks.key(br0)]
        bpfsys.map_delete(masks.fd, masks.key(br0), "delete")
        bpfsys.map_update(masks.fd, masks.key(99999), value, "stale")
    finally:
        masks.close()
    got = "\n".join(findings(h))
    for want in (f"port p1 of bridge br0: no entry (ifindex {p1}) in the datapath's ports map",
                 "port p2 of bridge br0: its MTU is 1300, not 1400",
                 "port p2 of bridge br0: the ports map does not make it an access port of "
                 "VLAN 10",
                 "port p3 of bridge br0: the datapath's trunk entry (native 6",
                 "ports map entry for ifindex 99999",
                 "static FDB entry 02:00:00:00:00:01 vlan 0 of bridge br0: not in the "
                 "datapath's FDB map",
                 "FDB map entry 02:00:00:00:00:01 vlan 0 of bridge ifindex 99999",
                 "bridge br0: the store has 1 flow rules but the datapath has no flow table",
                 "flow table of bridge ifindex 99999"):
        assert want in got, got
