"""VXLAN devices and their FDB against the real kernel (vswitchd/netlink/vxlan.py through Links),
cross-checked with iproute2's own view (`ip -d -j link`, `bridge -j vni`, `bridge -j fdb`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute

from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.netlink import netns
from vswitchd.netlink.links import Links

pytestmark = pytest.mark.root


def sh_json(*argv: str) -> Any:
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def link_data(name: str) -> dict[str, Any]:
    """iproute2's view of NAME: flags, mtu and linkinfo.info_data."""
    (dev,) = sh_json("ip", "-d", "-j", "link", "show", "dev", name)
    return dev


def bridge_vnis(name: str) -> list[int]:
    """The VNI filter of NAME as `bridge -j vni show` prints it (ranges expanded)."""
    out = []
    for dev in sh_json("bridge", "-j", "vni", "show", "dev", name):
        for v in dev.get("vnis", []):
            out.extend(range(v["vni"], v.get("vniEnd", v["vni"]) + 1))
    return sorted(out)


def bridge_fdb(name: str) -> list[tuple[str, str]]:
    """(mac, dst) of NAME's own FDB entries with a destination, per `bridge -j fdb show`."""
    return sorted((e["mac"], e["dst"]) for e in sh_json("bridge", "-j", "fdb", "show", "dev", name)
                  if "dst" in e and "self" in e.get("flags", []))


def exists(name: str) -> bool:
    with IPRoute() as ip:
        return bool(ip.link_lookup(ifname=name))


# ---- creating devices ---------------------------------------------------------------------


def test_external_device_has_vnifilter_and_its_vni(links: Links, ifnames) -> None:
    vx = ifnames("vxe")
    info = links.create_vxlan(vx, vni=5001, mtu=1450)
    assert info.kind == "vxlan" and info.up and info.mtu == 1450

    dev = link_data(vx)
    data = dev["linkinfo"]["info_data"]
    assert data["external"] is True and data["vnifilter"] is True
    assert data["learning"] is False and data["port"] == 4789
    assert "UP" in dev["flags"] and dev["mtu"] == 1450

    assert links.vxlan_vnis(vx) == [5001]   # read back with RTM_GETTUNNEL
    assert bridge_vnis(vx) == [5001]        # what iproute2 reads

    v = links.vxlan_info(vx)
    assert v is not None
    assert (v.external, v.vnifilter, v.learning, v.dstport, v.vni, v.up) == \
        (True, True, False, 4789, 0, True)


def test_vni_filter_read_back_expands_ranges(links: Links, ifnames) -> None:
    vx = ifnames("vxr")
    links.create_vxlan(vx, vni=7000, dstport=4800)
    # the kernel reports consecutive VNIs as one START..END entry
    subprocess.run(["bridge", "vni", "add", "dev", vx, "vni", "7001-7003"], check=True)
    subprocess.run(["bridge", "vni", "add", "dev", vx, "vni", "7100"], check=True)
    assert links.vxlan_vnis(vx) == [7000, 7001, 7002, 7003, 7100] == bridge_vnis(vx)


def test_classic_device(links: Links, ifnames) -> None:
    vx = ifnames("vxc")
    info = links.create_vxlan(vx, vni=6001, local="10.98.0.1", dstport=4790, external=False)
    assert info.up
    data = link_data(vx)["linkinfo"]["info_data"]
    assert data["id"] == 6001 and data["learning"] is True and data["port"] == 4790
    assert data["local"] == "10.98.0.1"
    assert not data.get("external") and not data.get("vnifilter")
    assert links.vxlan_vnis(vx) == [6001]
    v = links.vxlan_info(vx)
    assert v is not None and (v.external, v.vni, v.local, v.learning) == \
        (False, 6001, "10.98.0.1", True)


def test_classic_device_ipv6_local(links: Links, ifnames) -> None:
    vx = ifnames("vx6")
    links.create_vxlan(vx, vni=6002, local="fd00:98::1", dstport=4791, external=False)
    assert link_data(vx)["linkinfo"]["info_data"]["local6"] == "fd00:98::1"
    v = links.vxlan_info(vx)
    assert v is not None and v.local == "fd00:98::1"


def test_two_external_devices_share_port_4789(links: Links, ifnames) -> None:
    a, b = ifnames("vxa"), ifnames("vxb")
    links.create_vxlan(a, vni=100)
    links.create_vxlan(b, vni=200)
    assert link_data(a)["linkinfo"]["info_data"]["port"] == 4789
    assert link_data(b)["linkinfo"]["info_data"]["port"] == 4789
    assert "UP" in link_data(a)["flags"] and "UP" in link_data(b)["flags"]
    assert (bridge_vnis(a), bridge_vnis(b)) == ([100], [200])
    assert (links.vxlan_vnis(a), links.vxlan_vnis(b)) == ([100], [200])


def test_duplicate_vni_names_the_holder_and_leaves_nothing(links: Links, ifnames) -> None:
    a, b = ifnames("vxa"), ifnames("vxb")
    links.create_vxlan(a, vni=300)
    with pytest.raises(AlreadyExists, match=f"VNI 300 is already terminated by VXLAN device {a} "
                       "on UDP port 4789"):
        links.create_vxlan(b, vni=300)
    assert not exists(b)
    assert bridge_vnis(a) == [300]


def test_duplicate_vni_of_classic_devices(links: Links, ifnames) -> None:
    a, b = ifnames("vxa"), ifnames("vxb")
    links.create_vxlan(a, vni=301, dstport=4792, external=False)
    with pytest.raises(AlreadyExists, match=f"VNI 301 is already terminated by VXLAN device {a}"):
        links.create_vxlan(b, vni=301, dstport=4792, external=False)
    assert not exists(b)


def test_classic_on_a_port_of_external_devices_is_refused(links: Links, ifnames) -> None:
    ext, classic = ifnames("vxe"), ifnames("vxc")
    links.create_vxlan(ext, vni=400)
    with pytest.raises(FailedPrecondition) as err:
        links.create_vxlan(classic, vni=401, external=False)
    msg = str(err.value)
    assert "UDP port 4789 is in use by" in msg and ext in msg and "VNI filter" in msg
    assert "a classic VXLAN device" in msg
    assert not exists(classic)
    assert "UP" in link_data(ext)["flags"]


def test_external_on_a_port_of_a_classic_device_is_refused(links: Links, ifnames) -> None:
    classic, ext = ifnames("vxc"), ifnames("vxe")
    links.create_vxlan(classic, vni=500, dstport=4793, external=False)
    with pytest.raises(FailedPrecondition) as err:
        links.create_vxlan(ext, vni=501, dstport=4793)
    msg = str(err.value)
    assert f"UDP port 4793 is in use by classic VXLAN device {classic} (VNI 500" in msg
    assert "an external VXLAN device with a VNI filter" in msg
    assert not exists(ext)


def test_bad_arguments_and_taken_names(links: Links, ifnames) -> None:
    vx = ifnames("vxa")
    links.create_vxlan(vx, vni=600, dstport=4794)
    with pytest.raises(AlreadyExists, match=f"interface {vx} already exists"):
        links.create_vxlan(vx, vni=601, dstport=4794)
    assert bridge_vnis(vx) == [600]
    other = ifnames("vxb")
    for kw, field in ((dict(vni=0), "vni"), (dict(vni=1 << 24), "vni"),
                      (dict(vni=1, dstport=0), "dstport"), (dict(vni=1, local="nope"), "local"),
                      (dict(vni=1, local="239.1.1.1"), "local"),
                      (dict(vni=602, dstport=4795, mtu=10), "mtu")):
        with pytest.raises(InvalidArgument, match=f"^{field} "):
            links.create_vxlan(other, **kw)
        assert not exists(other)
    with pytest.raises(FailedPrecondition, match="is not a VXLAN device"):
        links.vxlan_vnis("lo")
    assert links.vxlan_info(other) is None
    with pytest.raises(NotFound):
        links.vxlan_remotes(other)


# ---- FDB of classic devices ----------------------------------------------------------------


def test_remotes_set_replace_list(links: Links, ifnames) -> None:
    vx = ifnames("vxc")
    links.create_vxlan(vx, vni=700, dstport=4796, external=False, local="10.98.0.1")
    assert links.vxlan_remotes(vx) == []
    links.vxlan_set_remotes(vx, ["10.98.0.2", "10.98.0.3"])
    assert links.vxlan_remotes(vx) == ["10.98.0.2", "10.98.0.3"]
    zeros = "00:00:00:00:00:00"
    assert bridge_fdb(vx) == [(zeros, "10.98.0.2"), (zeros, "10.98.0.3")]

    links.vxlan_set_remotes(vx, ["10.98.0.3", "10.98.0.4", "10.98.0.4"])
    assert links.vxlan_remotes(vx) == ["10.98.0.3", "10.98.0.4"]
    assert bridge_fdb(vx) == [(zeros, "10.98.0.3"), (zeros, "10.98.0.4")]

    with pytest.raises(InvalidArgument, match="^remotes 'bogus'"):
        links.vxlan_set_remotes(vx, ["10.98.0.9", "bogus"])
    assert links.vxlan_remotes(vx) == ["10.98.0.3", "10.98.0.4"]

    links.vxlan_set_remotes(vx, [])
    assert links.vxlan_remotes(vx) == [] and bridge_fdb(vx) == []


def test_static_macs_round_trip(links: Links, ifnames) -> None:
    vx = ifnames("vxc")
    links.create_vxlan(vx, vni=701, dstport=4797, external=False, local="10.98.0.1")
    links.vxlan_set_remotes(vx, ["10.98.0.2"])
    links.vxlan_fdb_add(vx, "02:AA:00:00:00:01", "10.98.0.2")
    links.vxlan_fdb_add(vx, "02:aa:00:00:00:02", "10.98.0.3")
    assert links.vxlan_fdb_list(vx) == {"02:aa:00:00:00:01": "10.98.0.2",
                                        "02:aa:00:00:00:02": "10.98.0.3"}
    assert ("02:aa:00:00:00:01", "10.98.0.2") in bridge_fdb(vx)
    entry = [e for e in sh_json("bridge", "-j", "fdb", "show", "dev", vx)
             if e["mac"] == "02:aa:00:00:00:01"]
    assert entry and entry[0]["state"] == "permanent"

    links.vxlan_fdb_add(vx, "02:aa:00:00:00:01", "10.98.0.5")   # moves
    assert links.vxlan_fdb_list(vx)["02:aa:00:00:00:01"] == "10.98.0.5"
    assert ("02:aa:00:00:00:01", "10.98.0.5") in bridge_fdb(vx)
    assert ("02:aa:00:00:00:01", "10.98.0.2") not in bridge_fdb(vx)

    assert links.vxlan_fdb_delete(vx, "02:aa:00:00:00:01") is True
    assert links.vxlan_fdb_delete(vx, "02:aa:00:00:00:01") is False
    assert links.vxlan_fdb_list(vx) == {"02:aa:00:00:00:02": "10.98.0.3"}
    assert links.vxlan_remotes(vx) == ["10.98.0.2"]   # the flood list is not a MAC entry

    with pytest.raises(InvalidArgument, match="^mac "):
        links.vxlan_fdb_add(vx, "00:00:00:00:00:00", "10.98.0.2")
    with pytest.raises(InvalidArgument, match="^mac "):
        links.vxlan_fdb_add(vx, "not-a-mac", "10.98.0.2")
    with pytest.raises(InvalidArgument, match="^remote "):
        links.vxlan_fdb_add(vx, "02:aa:00:00:00:03", "10.98.0")


def test_fdb_of_an_external_device_is_refused(links: Links, ifnames) -> None:
    vx = ifnames("vxe")
    links.create_vxlan(vx, vni=702, dstport=4798)
    with pytest.raises(FailedPrecondition, match="external"):
        links.vxlan_set_remotes(vx, ["10.98.0.2"])
    with pytest.raises(FailedPrecondition, match="external"):
        links.vxlan_fdb_add(vx, "02:aa:00:00:00:01", "10.98.0.2")


# ---- the underlay --------------------------------------------------------------------------


@pytest.fixture
def underlay(ifnames) -> Iterator[str]:
    """A veth (MTU 1450, up) with 10.97.0.1/24 and fd00:97::1/64, and a route with its own MTU
    through it."""
    name = ifnames("und")
    with IPRoute() as ip:
        ip.link("add", ifname=name, kind="veth", peer=name + "p")
        for n in (name, name + "p"):
            index = ip.link_lookup(ifname=n)[0]
            ip.link("set", index=index, mtu=1450, state="up")
    subprocess.run(["ip", "addr", "add", "10.97.0.1/24", "dev", name], check=True)
    subprocess.run(["ip", "addr", "add", "fd00:97::1/64", "dev", name, "nodad"], check=True)
    subprocess.run(["ip", "route", "add", "10.96.0.0/16", "dev", name, "mtu", "1300"],
                   check=True)
    yield name


def test_host_addresses(links: Links, underlay: str) -> None:
    have = links.host_addresses()
    assert {"10.97.0.1", "fd00:97::1", "127.0.0.1", "::1"} <= have
    assert "10.97.0.2" not in have


def test_underlay_mtu(links: Links, underlay: str) -> None:
    assert links.underlay_mtu("10.97.0.1") == 1450     # a local address: its interface
    assert links.underlay_mtu("fd00:97::1") == 1450
    assert links.underlay_mtu("10.97.0.9") == 1450     # a remote: where its route leaves
    assert links.underlay_mtu("fd00:97::9") == 1450
    assert links.underlay_mtu("10.96.3.4") == 1300     # a route's own MTU
    assert links.underlay_mtu("192.0.2.1") == 1500     # no route at all
    assert links.underlay_mtu("127.0.0.1") == 65536
    with pytest.raises(InvalidArgument, match="^address "):
        links.underlay_mtu("10.97")


# ---- real traffic over a kernel-datapath tunnel ---------------------------------------------


def _host(make_ns: Callable[[], str]) -> tuple[str, Links]:
    ns = make_ns()
    with netns.entered(ns):
        lk = Links()   # its worker thread (and so its netlink socket) lives in NS
    return ns, lk


def test_ping_between_containers_across_a_classic_tunnel(make_ns) -> None:
    """Two hosts joined by a veth underlay (10.99.0.1/.2); in each a bridge, a classic VXLAN
    device (learning, flood list = the other host) and a container at 192.168.50.x."""
    made: list[Links] = []
    try:
        h1, lk1 = _host(make_ns)
        made.append(lk1)
        h2, lk2 = _host(make_ns)
        made.append(lk2)
        c1, c2 = make_ns(), make_ns()
        lk1.create_veth("und1", "und2", h2, addresses=["10.99.0.2/24"])
        lk1.set_addresses("und1", ["10.99.0.1/24"])
        for lk, me, other, ctr, ip in ((lk1, "10.99.0.1", "10.99.0.2", c1, "192.168.50.1"),
                                       (lk2, "10.99.0.2", "10.99.0.1", c2, "192.168.50.2")):
            assert me in lk.host_addresses()
            assert lk.underlay_mtu(other) == 1500
            lk.create_bridge("br0")
            lk.create_vxlan("vx0", vni=4242, local=me, external=False)
            lk.enslave("vx0", "br0")
            lk.vxlan_set_remotes("vx0", [other])
            lk.create_veth("c0", "eth0", ctr, addresses=[f"{ip}/24"])
            lk.enslave("c0", "br0")

        ping = subprocess.run(["ip", "netns", "exec", c1, "ping", "-c", "3", "-i", "0.2",
                               "-W", "2", "192.168.50.2"], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr

        # the tunnel learned where container 2 lives: behind host 2
        (c2_dev,) = sh_json("ip", "-n", c2, "-j", "link", "show", "dev", "eth0")
        assert lk1.vxlan_fdb_list("vx0").get(c2_dev["address"]) == "10.99.0.2"
        assert lk1.vxlan_remotes("vx0") == ["10.99.0.2"]
    finally:
        for lk in made:
            lk.close()
        # make_ns removes the four namespaces, and with them every link made here


def test_fdb_refuses_multicast_macs_and_other_families(links: Links, ifnames) -> None:
    vx = ifnames("vxc")
    links.create_vxlan(vx, vni=703, dstport=4799, external=False, local="10.98.0.1")
    with pytest.raises(InvalidArgument, match="^mac .*unicast"):
        links.vxlan_fdb_add(vx, "01:00:5e:00:00:01", "10.98.0.2")
    with pytest.raises(InvalidArgument, match="^remote 'fd00::2'.*same address family"):
        links.vxlan_fdb_add(vx, "02:aa:00:00:00:01", "fd00::2")
    with pytest.raises(InvalidArgument, match="^remotes 'fd00::2'.*same address family"):
        links.vxlan_set_remotes(vx, ["10.98.0.2", "fd00::2"])
    assert links.vxlan_remotes(vx) == [] and links.vxlan_fdb_list(vx) == {}
