"""Tunnel ports with real devices and real traffic: two "hosts" (network namespaces) joined by a
veth underlay (10.99.0.1/24, 10.99.0.2/24), in each a bridge, an external VXLAN device with a
VNI filter and a veth into a "container" namespace, each host with a Datapath of its own (own
pin directory) that this process drives from inside the host's netns (setns: the bpffs mount
stays the same, DESIGN.md). Containers ping each other across the tunnel; learned entries carry
the remote VTEP; a broadcast arrives once; a VNI other than the port's is dropped.
Everything (namespaces, links, pins) is removed even when the test fails."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import time
import uuid

import pytest

from vswitchd.datapath import Datapath, PortKind, WatchFilter
from vswitchd.datapath.flows import DpRule

pytestmark = pytest.mark.root

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
VNI = 100
UNDERLAY = {1: "10.99.0.1", 2: "10.99.0.2"}
CONTAINER_IP = {1: "192.168.77.1", 2: "192.168.77.2"}
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def netns(name: str):
    """This thread in netns NAME for the block, back where it was after."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY)
    try:
        _setns(there)
        yield
    finally:
        _setns(home)
        os.close(there)
        os.close(home)


def ip(*args: str, ns: str = "") -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def run_in(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={NETNS_DIR}/{ns}", *cmd], capture_output=True,
                          text=True, check=check, timeout=60)


def ifindex(ns: str, name: str) -> int:
    return int(ip("-o", "link", "show", name, ns=ns).split(":")[0])


def mac(ns: str, name: str) -> str:
    out = ip("-o", "link", "show", name, ns=ns)
    return out.split("link/ether ")[1].split()[0]


def add_netns(ns: str, made: list[str]) -> None:
    """A namespace (recorded in made, for the cleanup) without IPv6: a new link's own DAD, MLD
    and RS frames would otherwise be flooded over the tunnel when they please, and the FDB
    checks would see their sources."""
    ip("netns", "add", ns)
    made.append(ns)
    for key in ("all", "default"):
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
    ip("link", "set", "lo", "up", ns=ns)


def add_bridge_and_vxlan(ns: str, cns: str) -> None:
    """br0, an external VXLAN device vx0 whose VNI filter has VNI, and a veth c0 whose peer
    is eth0 in the container namespace cns."""
    ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0", ns=ns)
    ip("link", "add", "vx0", "type", "vxlan", "external", "vnifilter", "dstport", "4789", ns=ns)
    subprocess.run(["bridge", "-n", ns, "vni", "add", "dev", "vx0", "vni", str(VNI)], check=True)
    ip("link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", cns, ns=ns)


class Host:
    def __init__(self, n: int, tag: str) -> None:
        self.n = n
        self.ns = f"{tag}h{n}"
        self.cns = f"{tag}c{n}"
        self.pins = f"/sys/fs/bpf/vswtest-{tag}-h{n}"
        self.dp: Datapath | None = None


@pytest.fixture
def hosts():
    tag = "vt" + uuid.uuid4().hex[:5]
    pair = [Host(1, tag), Host(2, tag)]
    made: list[str] = []
    try:
        for h in pair:
            for ns in (h.ns, h.cns):
                add_netns(ns, made)
        # the underlay
        ip("link", "add", "u1", "netns", pair[0].ns, "type", "veth", "peer", "name", "u2",
           "netns", pair[1].ns)
        for h in pair:
            u = f"u{h.n}"
            ip("addr", "add", f"{UNDERLAY[h.n]}/24", "dev", u, ns=h.ns)
            ip("link", "set", u, "up", ns=h.ns)
            add_bridge_and_vxlan(h.ns, h.cns)
            ip("link", "set", "vx0", "mtu", "1450", ns=h.ns)
            ip("link", "set", "c0", "mtu", "1450", ns=h.ns)
            for dev in ("vx0", "c0"):
                ip("link", "set", dev, "master", "br0", ns=h.ns)
            for dev in ("br0", "vx0", "c0"):
                ip("link", "set", dev, "up", ns=h.ns)
            ip("link", "set", "eth0", "mtu", "1450", ns=h.cns)
            ip("addr", "add", f"{CONTAINER_IP[h.n]}/24", "dev", "eth0", ns=h.cns)
            ip("link", "set", "eth0", "up", ns=h.cns)
            with netns(h.ns):
                h.dp = Datapath(h.pins)
                br = ifindex(h.ns, "br0")
                h.dp.add_bridge(br, mac(h.ns, "br0"))
                h.dp.add_port(br, ifindex(h.ns, "c0"), PortKind.PEER)
                vx = ifindex(h.ns, "vx0")
                h.dp.add_port(br, vx, PortKind.TUNNEL)
                h.dp.set_tunnel(vx, VNI)
                h.dp.set_vteps(vx, [UNDERLAY[3 - h.n]])
        yield pair
    finally:
        for h in pair:
            if h.dp is not None:
                with netns(h.ns):
                    h.dp.destroy()
        for ns in reversed(made):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", ns)
        for h in pair:
            assert not os.path.exists(h.pins)


def ping(src: Host, dst: Host, count: int = 3) -> subprocess.CompletedProcess:
    return run_in(src.cns, "ping", "-c", str(count), "-i", "0.2", "-W", "1",
                  CONTAINER_IP[dst.n], check=False)


def test_ping_across_the_tunnel_learns_remote_vteps(hosts):
    h1, h2 = hosts
    res = ping(h1, h2)
    assert res.returncode == 0, res.stdout + res.stderr
    for here, there in ((h1, h2), (h2, h1)):
        vx = ifindex(here.ns, "vx0")
        remote_mac = mac(there.cns, "eth0")
        recs = {r.mac: r for r in here.dp.fdb_list(ifindex(here.ns, "br0"))}
        assert remote_mac in recs, recs
        assert (recs[remote_mac].ifindex, recs[remote_mac].remote) == (vx, UNDERLAY[there.n])
        assert not recs[remote_mac].static
        c = here.dp.port_counters(vx)
        assert c.rx_packets >= 3 and c.tx_packets >= 3, c
        assert not c.drops, c


def _arp_request(src_mac: str, src_ip: str, target_ip: str) -> bytes:
    return (b"\xff" * 6 + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x06"
            + bytes.fromhex("0001080006040001") + bytes.fromhex(src_mac.replace(":", ""))
            + socket.inet_aton(src_ip) + b"\x00" * 6 + socket.inet_aton(target_ip))


def test_a_broadcast_arrives_once(hosts):
    h1, h2 = hosts
    src = mac(h1.cns, "eth0")
    with netns(h2.cns):
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        rx.bind(("eth0", 0))
    with netns(h1.cns):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind(("eth0", 0))
    with rx, tx:
        rx.settimeout(0.2)
        tx.send(_arp_request(src, CONTAINER_IP[1], "192.168.77.99"))  # nobody has it
        seen, deadline = 0, time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                frame = rx.recv(2048)
            except TimeoutError:
                continue
            if frame[6:12] == bytes.fromhex(src.replace(":", "")) and \
                    frame[38:42] == socket.inet_aton("192.168.77.99"):
                seen += 1
    assert seen == 1


def test_another_vni_is_dropped(hosts):
    """Host 2's port sends VNI 200, which host 1's device lets through (its filter has it) but
    which is not the port's: dropped with tunnel-vni, nothing learned."""
    h1, h2 = hosts
    subprocess.run(["bridge", "-n", h1.ns, "vni", "add", "dev", "vx0", "vni", "200"], check=True)
    subprocess.run(["bridge", "-n", h2.ns, "vni", "add", "dev", "vx0", "vni", "200"], check=True)
    vx1, vx2 = ifindex(h1.ns, "vx0"), ifindex(h2.ns, "vx0")
    h2.dp.set_tunnel(vx2, 200)
    assert ping(h2, h1, count=2).returncode != 0
    c = h1.dp.port_counters(vx1)
    assert c.drops.get("tunnel-vni", 0) >= 1, c
    assert mac(h2.cns, "eth0") not in {r.mac for r in h1.dp.fdb_list(ifindex(h1.ns, "br0"))}


@pytest.fixture
def underlay_on_the_bridge():
    """One host whose VTEP address is on the bridge device: the underlay veth u1 is a port of
    br0, so what the VXLAN port vx0 sends leaves through br0, where tc_egress runs at once
    (nested in the program that cloned into vx0). Also a container (c0) and the underlay's far
    end (u2, in a namespace of its own, without an address: what arrives there is dropped
    without an answer)."""
    tag = "vu" + uuid.uuid4().hex[:5]
    h, c, far = f"{tag}h", f"{tag}c", f"{tag}p"
    pins = f"/sys/fs/bpf/vswtest-{tag}"
    made: list[str] = []
    dp = None
    try:
        for ns in (h, c, far):
            add_netns(ns, made)
        ip("link", "add", "u1", "netns", h, "type", "veth", "peer", "name", "u2", "netns", far)
        add_bridge_and_vxlan(h, c)
        for dev in ("vx0", "c0", "u1"):
            ip("link", "set", dev, "master", "br0", ns=h)
        for dev in ("br0", "vx0", "c0", "u1"):
            ip("link", "set", dev, "up", ns=h)
        ip("addr", "add", "10.98.0.1/24", "dev", "br0", ns=h)
        ip("link", "set", "u2", "up", ns=far)
        ip("link", "set", "eth0", "up", ns=c)
        ip("neigh", "replace", "10.98.0.2", "lladdr", mac(far, "u2"), "dev", "br0", "nud",
           "permanent", ns=h)
        with netns(h):
            dp = Datapath(pins)
            br = ifindex(h, "br0")
            dp.add_bridge(br, mac(h, "br0"))
            for dev in ("c0", "u1"):
                dp.add_port(br, ifindex(h, dev), PortKind.PEER)
            vx = ifindex(h, "vx0")
            dp.add_port(br, vx, PortKind.TUNNEL)
            dp.set_tunnel(vx, VNI)
            dp.set_vteps(vx, ["10.98.0.2"])
            # the far end's MAC on u1: the nested tc_egress forwards, floods nothing
            dp.fdb_add_static(br, mac(far, "u2"), 0, ifindex(h, "u1"))
        yield h, c, dp
    finally:
        if dp is not None:
            with netns(h):
                dp.destroy()
        for ns in reversed(made):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", ns)
        assert not os.path.exists(pins)


REMOTE_MAC = "02:00:00:00:00:99"  # behind underlay_on_the_bridge's VTEP


def clone_into_the_tunnel(h: str, c: str, dp: Datapath) -> str:
    """The rule `in_port=c0 actions=output:vx0,normal`, REMOTE_MAC on vx0, and one frame from
    the container to REMOTE_MAC, counted in at c0. Its source MAC."""
    br, c0, vx = ifindex(h, "br0"), ifindex(h, "c0"), ifindex(h, "vx0")
    dp.fdb_add_static(br, REMOTE_MAC, 0, vx, "10.98.0.2")
    dp.flows_sync(br, [DpRule(1, 100, (("in_port", c0, 0xFFFFFFFF),),
                              (("output", vx), ("normal", 0)))])
    src = mac(c, "eth0")
    with netns(c):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind(("eth0", 0))
    with tx:
        tx.send(bytes.fromhex(REMOTE_MAC.replace(":", "") + src.replace(":", ""))
                + b"\x88\xb5" + bytes(46))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not dp.port_counters(c0).rx_packets:
        time.sleep(0.05)
    return src


def test_a_clone_into_a_tunnel_that_runs_tc_egress_nested_leaves_the_macs(
        underlay_on_the_bridge):
    """The flow key is per CPU (lib/flow.h). A rule `output:vx0,normal` clones into vx0, whose
    encapsulated copy leaves through br0 at once: tc_egress runs nested and parses that copy
    (source: br0's MAC) into the same key. The rest of the rule, normal, must still learn and
    forward by the container's frame: its source on c0, not a spoof of the host's MAC."""
    h, c, dp = underlay_on_the_bridge
    br, c0, vx = ifindex(h, "br0"), ifindex(h, "c0"), ifindex(h, "vx0")
    src = clone_into_the_tunnel(h, c, dp)
    counters = dp.port_counters(c0)
    assert counters.rx_packets == 1 and not counters.drops, counters
    learned = {r.mac: r for r in dp.fdb_list(br)}
    assert learned[src].ifindex == c0 and not learned[src].static
    assert dp.port_counters(vx).tx_packets == 2  # the clone, then normal's forward
    # both copies, encapsulated, left through br0 (tc_egress: rx of the bridge's own port)
    assert dp.port_counters(br).rx_packets == 2
    assert dp.port_counters(ifindex(h, "u1")).tx_packets == 2


def test_a_watched_packet_keeps_its_event_when_tc_egress_runs_nested(underlay_on_the_bridge):
    """The event a watched packet builds is per CPU too (lib/watch.h): the nested tc_egress
    runs of its clone build theirs elsewhere. Each of the three gets its own event."""
    h, c, dp = underlay_on_the_bridge
    br, c0, vx, u1 = (ifindex(h, n) for n in ("br0", "c0", "vx0", "u1"))
    dp.watch_add(WatchFilter(bridge=br))
    src = clone_into_the_tunnel(h, c, dp)
    events, deadline = [], time.monotonic() + 2
    while len(events) < 3 and time.monotonic() < deadline:
        events += dp.watch_poll(50)
    outer = [(e.in_port, e.dl_src, e.dl_dst, e.verdict, e.outputs) for e in events
             if e.in_port != br]
    assert outer == [(c0, src, REMOTE_MAC, "forward", (vx, vx))]
    nested = [(e.dl_src, e.dl_type, e.verdict, e.outputs) for e in events if e.in_port == br]
    assert nested == [(mac(h, "br0"), 0x0800, "forward", (u1,))] * 2
    assert not any(dp._bpf[b"watch_claimed"][0])  # every slot free again
