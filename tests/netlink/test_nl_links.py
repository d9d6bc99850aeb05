"""Links against the real kernel, inside the test process' private namespace."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
from pyroute2 import IPRoute, NetNS

from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.netlink import netns
from vswitchd.netlink.links import Links

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def _addrs(ip: IPRoute, index: int) -> set[str]:
    """Addresses on INDEX, without the kernel's own IPv6 link-local ones."""
    out = set()
    for m in ip.addr("dump", index=index):
        a = ipaddress.ip_address(m.get_attr("IFA_ADDRESS"))
        if a.version == 6 and a.is_link_local:
            continue
        out.add(f"{a}/{m['prefixlen']}")
    return out


def _local_veth(ip: IPRoute, name: str) -> None:
    """A veth pair NAME / NAMEp in this namespace (the dummy module is missing here)."""
    ip.link("add", ifname=name, kind="veth", peer=name + "p")


def _wait(pred, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# ---- bridges --------------------------------------------------------------------------------


@pytest.mark.root
def test_bridge_create_addresses_delete(links: Links, ipr: IPRoute, ifnames) -> None:
    br = ifnames("vswbr")
    info = links.create_bridge(br, ["10.1.0.1/24", "fd00:1::1/64"])
    assert info.name == br and info.kind == "bridge" and info.up and info.master is None

    msg = ipr.link("get", ifname=br)[0]
    assert msg["index"] == info.ifindex
    assert msg["flags"] & IFF_UP
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_BR_STP_STATE") == 0
    assert data.get_attr("IFLA_BR_FORWARD_DELAY") == 0
    assert _addrs(ipr, info.ifindex) == {"10.1.0.1/24", "fd00:1::1/64"}
    assert links.get(br) == links.get_by_index(info.ifindex)

    links.set_addresses(br, ["10.2.0.1/16", "10.1.0.1/24"])
    assert _addrs(ipr, info.ifindex) == {"10.2.0.1/16", "10.1.0.1/24"}
    links.set_addresses(br, [])
    assert _addrs(ipr, info.ifindex) == set()

    with pytest.raises(AlreadyExists, match=br):
        links.create_bridge(br)

    assert links.delete(br) is True
    assert links.get(br) is None
    assert ipr.link_lookup(ifname=br) == []
    assert links.delete(br) is False
    assert links.get_by_index(info.ifindex) is None


@pytest.mark.root
def test_bridge_created_with_its_mac_keeps_it(links: Links, ipr: IPRoute, ifnames) -> None:
    """An address given at creation is one the kernel keeps when ports come and go."""
    br, port = ifnames("vswbr"), ifnames("vswd")
    info = links.create_bridge(br, mac="02:5a:00:00:00:01")
    assert info.mac == "02:5a:00:00:00:01"
    _local_veth(ipr, port)
    links.enslave(port, br)
    assert links.get(br).mac == "02:5a:00:00:00:01"
    links.release(port)
    assert links.get(br).mac == "02:5a:00:00:00:01"  # not zeros
    assert links.delete(br)


@pytest.mark.root
def test_set_addresses_rolls_back_on_kernel_error(links: Links, ipr: IPRoute, ifnames) -> None:
    br = ifnames("vswbr")
    info = links.create_bridge(br, ["10.1.0.1/24"])
    # The kernel refuses IPv6 multicast interface addresses (EADDRNOTAVAIL).
    with pytest.raises(InvalidArgument) as ei:
        links.set_addresses(br, ["10.9.0.1/24", "ff02::5/64"])
    assert ei.value.field == "addresses"
    assert _addrs(ipr, info.ifindex) == {"10.1.0.1/24"}  # unchanged


@pytest.mark.root
def test_create_bridge_rollback_leaves_nothing(links: Links, ipr: IPRoute, ifnames) -> None:
    br = ifnames("vswbr")
    with pytest.raises(InvalidArgument):
        links.create_bridge(br, ["ff02::5/64"])
    assert ipr.link_lookup(ifname=br) == []


@pytest.mark.root
def test_missing_interfaces_raise_not_found(links: Links) -> None:
    assert links.get("vswnope0") is None
    for call in (
        lambda: links.set_up("vswnope0"),
        lambda: links.stats("vswnope0"),
        lambda: links.release("vswnope0"),
        lambda: links.set_addresses("vswnope0", []),
    ):
        with pytest.raises(NotFound, match="vswnope0"):
            call()


# ---- veth -----------------------------------------------------------------------------------


@pytest.mark.root
def test_veth_into_named_netns(links: Links, ipr: IPRoute, make_ns, ifnames) -> None:
    ns = make_ns()
    host = ifnames("vswv")
    info = links.create_veth(
        host, "eth0", ns, addresses=["10.3.0.2/24", "fd00:3::2/64"],
        mac="02:00:00:aa:bb:01", mtu=1400,
    )
    assert info.name == host and info.kind == "veth" and info.up and info.mtu == 1400
    assert ipr.link("get", ifname=host)[0]["flags"] & IFF_UP

    with NetNS(ns, flags=0) as nsr:
        peer = nsr.link("get", ifname="eth0")[0]
        assert peer.get_attr("IFLA_ADDRESS") == "02:00:00:aa:bb:01"
        assert peer.get_attr("IFLA_MTU") == 1400
        assert peer["flags"] & IFF_UP
        assert _addrs(nsr, peer["index"]) == {"10.3.0.2/24", "fd00:3::2/64"}
        assert nsr.link("get", ifname="lo")[0]["flags"] & IFF_UP
    assert links.peer_exists(ns, "eth0")
    assert not links.peer_exists(ns, "eth1")
    assert not links.peer_exists("vswt-nl-no-such-ns", "eth0")

    # deleting the host end takes the peer with it
    assert links.delete(host)
    assert _wait(lambda: not links.peer_exists(ns, "eth0"))


@pytest.mark.root
def test_veth_into_proc_pid_netns(links: Links, ifnames) -> None:
    proc = subprocess.Popen(["unshare", "-n", "sleep", "30"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        mine = os.stat("/proc/self/ns/net").st_ino
        assert _wait(lambda: os.stat(path).st_ino != mine), "sleep never entered its own netns"
        host = ifnames("vswp")
        links.create_veth(host, "ceth0", path, addresses=["10.4.0.2/24"])
        with netns.entered(path):
            with IPRoute() as nsr:
                peer = nsr.link("get", ifname="ceth0")[0]
                assert peer["flags"] & IFF_UP
                assert _addrs(nsr, peer["index"]) == {"10.4.0.2/24"}
                assert nsr.link("get", ifname="lo")[0]["flags"] & IFF_UP
        assert links.peer_exists(path, "ceth0")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.root
def test_veth_peer_name_taken_rolls_back(links: Links, ipr: IPRoute, make_ns, ifnames) -> None:
    ns = make_ns()
    with NetNS(ns, flags=0) as nsr:
        nsr.link("add", ifname="eth0", kind="bridge")  # (no dummy module on these kernels)
    host = ifnames("vswv")
    with pytest.raises(AlreadyExists) as ei:
        links.create_veth(host, "eth0", ns)
    assert ns in str(ei.value) and "eth0" in str(ei.value)
    assert ipr.link_lookup(ifname=host) == []
    with NetNS(ns, flags=0) as nsr:  # the namespace's own eth0 is untouched
        assert nsr.link("get", ifname="eth0")[0].get_attr("IFLA_LINKINFO").get_attr(
            "IFLA_INFO_KIND") == "bridge"


@pytest.mark.root
def test_veth_host_name_taken(links: Links, ipr: IPRoute, make_ns, ifnames) -> None:
    ns = make_ns()
    host = ifnames("vswv")
    ipr.link("add", ifname=host, kind="bridge")
    with pytest.raises(AlreadyExists, match=host):
        links.create_veth(host, "eth0", ns)
    assert not links.peer_exists(ns, "eth0")
    assert links.get(host).kind == "bridge"  # the existing interface is not deleted


@pytest.mark.root
def test_veth_missing_netns_leaves_nothing(links: Links, ipr: IPRoute, ifnames) -> None:
    host = ifnames("vswv")
    with pytest.raises(NotFound, match="vswt-nl-missing"):
        links.create_veth(host, "eth0", "vswt-nl-missing")
    with pytest.raises(NotFound):
        links.create_veth(host, "eth0", "/proc/999999999/ns/net")
    with pytest.raises(InvalidArgument) as ei:
        links.create_veth(host, "eth0", "../etc")
    assert ei.value.field == "netns"
    assert ipr.link_lookup(ifname=host) == []
    assert not os.path.lexists("/run/netns/vswt-nl-missing")  # not created as a side effect


@pytest.mark.root
def test_veth_failure_after_creation_rolls_back(
    links: Links, ipr: IPRoute, make_ns, ifnames
) -> None:
    ns = make_ns()
    host = ifnames("vswv")
    # the pair gets created, then the kernel refuses the address inside the namespace
    with pytest.raises(InvalidArgument) as ei:
        links.create_veth(host, "eth0", ns, addresses=["10.5.0.2/24", "ff02::5/64"])
    assert ei.value.field == "addresses"
    assert ipr.link_lookup(ifname=host) == []
    assert not links.peer_exists(ns, "eth0")
    # a bad MTU is refused by the kernel before anything exists
    with pytest.raises(InvalidArgument) as ei:
        links.create_veth(host, "eth0", ns, mtu=10)
    assert ei.value.field == "mtu"
    assert ipr.link_lookup(ifname=host) == []
    assert not links.peer_exists(ns, "eth0")
    assert netns.exists(ns)  # a namespace the caller made is not ours to remove


# ---- TAP ------------------------------------------------------------------------------------


@pytest.mark.root
def test_tap_owner_and_carrier(links: Links, ipr: IPRoute, ifnames) -> None:
    tap = ifnames("vswtap")
    info = links.create_tap(tap, owner="nobody", mtu=1400)
    assert info.kind == "tun" and info.up and info.mtu == 1400
    msg = ipr.link("get", ifname=tap)[0]
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_TUN_TYPE") == 2  # TAP
    assert data.get_attr("IFLA_TUN_OWNER") == 65534
    assert data.get_attr("IFLA_TUN_PI") == 0
    assert data.get_attr("IFLA_TUN_VNET_HDR") == 0
    assert data.get_attr("IFLA_TUN_PERSIST") == 1
    assert not msg["flags"] & IFF_LOWER_UP  # nobody has it open: no carrier

    with pytest.raises(AlreadyExists, match=tap):
        links.create_tap(tap)

    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
        assert _wait(lambda: links.get(tap).operstate == "UP")
        assert ipr.link("get", ifname=tap)[0]["flags"] & IFF_LOWER_UP
    finally:
        os.close(fd)
    assert _wait(lambda: links.get(tap).operstate != "UP")
    assert links.get(tap) is not None  # persistent: survives the close
    assert links.delete(tap)


@pytest.mark.root
def test_tap_root_owner_and_unknown_owner(links: Links, ipr: IPRoute, ifnames) -> None:
    tap = ifnames("vswtap")
    links.create_tap(tap, owner="root")
    data = ipr.link("get", ifname=tap)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_TUN_OWNER") == 0

    other = ifnames("vswtap")
    with pytest.raises(InvalidArgument) as ei:
        links.create_tap(other, owner="vsw-no-such-user")
    assert ei.value.field == "owner" and "no such user" in str(ei.value)
    assert ipr.link_lookup(ifname=other) == []
    with pytest.raises(InvalidArgument) as ei:
        links.create_tap(other, mtu=10)
    assert ei.value.field == "mtu"
    assert ipr.link_lookup(ifname=other) == []


@pytest.mark.root
def test_tap_named_in_utf8(links: Links, ipr: IPRoute, ifnames) -> None:
    """A TAP takes any name a bridge or veth takes (pyroute2's own TAP creation takes ASCII
    only)."""
    tap = ifnames("tü")  # 'tü' + 6 hex: 9 bytes
    info = links.create_tap(tap, owner="nobody", multi_queue=True)
    assert (info.name, info.kind) == (tap, "tun")
    data = ipr.link("get", ifname=tap)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert (data.get_attr("IFLA_TUN_TYPE"), data.get_attr("IFLA_TUN_OWNER")) == (2, 65534)
    assert data.get_attr("IFLA_TUN_MULTI_QUEUE") == 1 and data.get_attr("IFLA_TUN_PERSIST") == 1
    assert links.delete(tap)


# ---- ports ----------------------------------------------------------------------------------


@pytest.mark.root
def test_enslave_release(links: Links, ipr: IPRoute, ifnames) -> None:
    br = ifnames("vswbr")
    port = ifnames("vswd")
    binfo = links.create_bridge(br)
    _local_veth(ipr, port)
    assert not links.get(port).up
    links.set_up(port)
    assert links.get(port).up

    links.enslave(port, br)
    assert links.get(port).master == binfo.ifindex
    assert ipr.link("get", ifname=port)[0].get_attr("IFLA_MASTER") == binfo.ifindex
    links.release(port)
    assert links.get(port).master is None
    assert ipr.link("get", ifname=port)[0].get_attr("IFLA_MASTER") in (None, 0)

    other = ifnames("vswd")
    _local_veth(ipr, other)
    with pytest.raises(FailedPrecondition, match="not a bridge"):
        links.enslave(port, other)
    with pytest.raises(NotFound):
        links.enslave(port, "vswnobr0")


# ---- traffic, stats, kernel FDB -------------------------------------------------------------


@pytest.fixture
def two_hosts(links: Links, make_ns, ifnames):
    """Bridge with two namespaces a (10.50.0.1) and b (10.50.0.2) on veth ports."""
    br = ifnames("vswbr")
    links.create_bridge(br)
    ns_a, ns_b = make_ns(), make_ns()
    pa, pb = ifnames("vswa"), ifnames("vswb")
    links.create_veth(pa, "eth0", ns_a, addresses=["10.50.0.1/24"], mac="02:00:00:00:50:01")
    links.create_veth(pb, "eth0", ns_b, addresses=["10.50.0.2/24"], mac="02:00:00:00:50:02")
    links.enslave(pa, br)
    links.enslave(pb, br)
    return br, (ns_a, pa), (ns_b, pb)


def _udp_exchange(ns_a: str, ns_b: str, count: int, size: int) -> int:
    with netns.entered(ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.entered(ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("10.50.0.2", 40000))
        rx.settimeout(0.2)
        got = 0
        deadline = time.monotonic() + 10
        # first datagrams may be lost while ARP resolves; send until COUNT arrived
        while got < count and time.monotonic() < deadline:
            tx.sendto(b"x" * size, ("10.50.0.2", 40000))
            try:
                while True:
                    rx.recv(2048)
                    got += 1
            except TimeoutError:
                pass
        return got
    finally:
        rx.close()
        tx.close()


@pytest.mark.root
def test_stats_and_learned_fdb_after_traffic(links: Links, two_hosts) -> None:
    br, (ns_a, pa), (ns_b, pb) = two_hosts
    before_a, before_b = links.stats(pa), links.stats(pb)
    got = _udp_exchange(ns_a, ns_b, count=5, size=200)
    assert got >= 5
    after_a, after_b = links.stats(pa), links.stats(pb)
    # frames from a enter the host end of a (rx) and leave by the host end of b (tx)
    assert after_a.rx_packets - before_a.rx_packets >= 5
    assert after_b.tx_packets - before_b.tx_packets >= 5
    assert after_a.rx_bytes - before_a.rx_bytes >= 5 * (200 + 42)
    assert after_b.tx_bytes - before_b.tx_bytes >= 5 * (200 + 42)

    entries = {e.mac: e for e in links.fdb_list(br)}
    a_idx, b_idx = links.get(pa).ifindex, links.get(pb).ifindex
    assert entries["02:00:00:00:50:01"].ifindex == a_idx
    assert entries["02:00:00:00:50:02"].ifindex == b_idx
    assert not entries["02:00:00:00:50:01"].static
    assert 0 <= entries["02:00:00:00:50:01"].age_seconds < 60
    # the ports' own (local/permanent) MACs are not listed
    assert links.get(pa).mac not in entries and links.get(br).mac not in entries


@pytest.mark.root
def test_kernel_fdb_static_add_list_delete(links: Links, two_hosts, ifnames) -> None:
    br, (_, pa), (_, pb) = two_hosts
    mac = "02:aa:bb:cc:dd:01"
    links.fdb_add_static(br, pa, mac)
    [e] = [e for e in links.fdb_list(br) if e.mac == mac]
    assert e.static and e.vlan == 0 and e.ifindex == links.get(pa).ifindex
    time.sleep(1.2)
    [e] = [e for e in links.fdb_list(br) if e.mac == mac]
    assert 1.0 <= e.age_seconds < 30  # centiseconds converted to seconds

    links.fdb_add_static(br, pb, mac)  # replaces: moves the entry to the other port
    [e] = [e for e in links.fdb_list(br) if e.mac == mac]
    assert e.ifindex == links.get(pb).ifindex

    assert links.fdb_delete(br, mac) is True
    assert mac not in {e.mac for e in links.fdb_list(br)}
    assert links.fdb_delete(br, mac) is False

    stray = ifnames("vswd")
    with IPRoute() as ipr:
        _local_veth(ipr, stray)
    with pytest.raises(FailedPrecondition, match="not a port"):
        links.fdb_add_static(br, stray, mac)
    with pytest.raises(FailedPrecondition, match="not a bridge"):
        links.fdb_list(stray)


# ---- threading ------------------------------------------------------------------------------


@pytest.mark.root
def test_links_usable_from_many_threads(links: Links, ifnames) -> None:
    names = [ifnames("vswt") for _ in range(8)]
    errors: list[BaseException] = []

    def worker(n: str) -> None:
        try:
            links.create_bridge(n)
            assert links.get(n).kind == "bridge"
            assert links.delete(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(links.get(n) is None for n in names)
    # all requests went through the one worker thread: no extra netlink sockets per caller
    assert len([t for t in threading.enumerate() if t.name.startswith("vsw-netlink")]) == 1


def test_replies_to_no_request_are_not_kept(links: Links) -> None:
    """pyroute2 leaves the kernel's ACK of each link it looked up in a queue nothing reads
    (an add-port left 4 there, for good); Links drops them after each operation."""
    for _ in range(20):
        links.set_up("lo")  # looks lo up (RTM_GETLINK with NLM_F_ACK), then sets it up
    # on the worker thread (pyroute2's queues are its own); counted before this call's drop
    assert links._run(lambda: links._ipr.asyncore.msg_queue.root.qsize()) == 0
