"""XDP attachment (vswitchd/datapath/xdp.py): pinned links in native and generic mode, the
fallback of "auto", atomic program swaps, mode changes, detach/prune, defunct links, and a
program someone else attached over netlink.

Each test runs in a network namespace of its own (entered with unshare, left with setns: the
module must work in whatever netns the daemon's thread is in) and pins under its own bpffs
directory; both go at the end. This kernel has no dummy driver: the device without native XDP
is a bridge (no ndo_bpf, like dummy).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import uuid

import pytest

from vswitchd.datapath import xdp
from vswitchd.datapath.bpfsys import BPF_OBJ_GET, bpf, obj_info, obj_path, object_id
from vswitchd.errors import FailedPrecondition, InvalidArgument

pytestmark = pytest.mark.root

CLONE_NEWNET = 0x40000000
ATTACHED = {None: 0, "xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}  # pyroute2's
XDP_ATTACHED_DRV, XDP_ATTACHED_SKB = 1, 2  # IFLA_XDP_ATTACHED: native, generic


@pytest.fixture(scope="module")
def progs():
    """Two XDP programs (the second to swap in) and a socket filter, loaded once."""
    from bcc import BPF

    b = BPF(text=b"""
int xp_one(struct xdp_md *ctx) { return XDP_PASS; }
int xp_two(struct xdp_md *ctx) { return XDP_PASS; }
int sock_f(struct __sk_buff *skb) { return 0; }
""")
    yield (b.load_func(b"xp_one", BPF.XDP).fd, b.load_func(b"xp_two", BPF.XDP).fd,
           b.load_func(b"sock_f", BPF.SOCKET_FILTER).fd)
    b.cleanup()


@pytest.fixture
def netns():
    """A fresh network namespace for this thread; the previous one is restored after (the
    namespace and its devices go with its last reference)."""
    libc = ctypes.CDLL(None, use_errno=True)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        yield
    finally:
        if libc.setns(saved, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(saved)


@pytest.fixture
def bpffs_dir(netns):
    path = f"/sys/fs/bpf/vswtest-xdp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(path, mode=0o700)
    try:
        yield path
    finally:
        try:
            xdp.remove_all(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)


def add(kind: str, name: str) -> int:
    """A device (veth: with its peer, both up) in the test's netns; its ifindex."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        if kind == "veth":
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}x")
            ipr.link("set", index=ipr.link_lookup(ifname=f"{name}x")[0], state="up")
        else:
            ipr.link("add", ifname=name, kind=kind)
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, state="up")
    return index


def delete(ifindex: int) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("del", index=ifindex)


def ifla_xdp(ifindex: int) -> tuple[int, int]:
    """(IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID) of the device, straight from netlink."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        attrs = ipr.get_links(ifindex)[0].get_attr("IFLA_XDP")
    mode = attrs.get_attr("IFLA_XDP_ATTACHED")
    return ATTACHED.get(mode, mode), attrs.get_attr("IFLA_XDP_PROG_ID") or 0


def link_ids(bpffs_dir: str, ifindex: int) -> tuple[int, int]:
    """(link id, program id) of the pinned link."""
    attr, _keep = obj_path(xdp.pin_path(bpffs_dir, ifindex))
    fd = bpf(BPF_OBJ_GET, attr, "open pin")
    try:
        info = obj_info(fd, 64)
    finally:
        os.close(fd)
    return int.from_bytes(info[4:8], "little"), int.from_bytes(info[8:12], "little")


def test_native_on_veth(bpffs_dir, progs):
    v = add("veth", "v0")
    assert xdp.attach(bpffs_dir, v, progs[0], "native") == xdp.XdpState("native")
    assert xdp.state(bpffs_dir, v) == xdp.XdpState("native")
    assert ifla_xdp(v) == (XDP_ATTACHED_DRV, object_id(progs[0]))
    assert os.path.exists(os.path.join(bpffs_dir, "xdp", str(v)))
    assert xdp.pinned(bpffs_dir) == [v]


def test_auto_on_veth_is_native(bpffs_dir, progs):
    v = add("veth", "v0")
    assert xdp.attach(bpffs_dir, v, progs[0], "auto") == xdp.XdpState("native")
    assert ifla_xdp(v)[0] == XDP_ATTACHED_DRV


def test_generic_explicitly(bpffs_dir, progs):
    v = add("veth", "v0")
    assert xdp.attach(bpffs_dir, v, progs[0], "generic") == xdp.XdpState("generic")
    assert xdp.state(bpffs_dir, v) == xdp.XdpState("generic")
    assert ifla_xdp(v) == (XDP_ATTACHED_SKB, object_id(progs[0]))


def test_auto_falls_back_to_generic_without_native(bpffs_dir, progs):
    br = add("bridge", "br0")
    got = xdp.attach(bpffs_dir, br, progs[0], "auto")
    assert got == xdp.XdpState(
        "generic", "native XDP not available on br0 (driver bridge): Operation not supported")
    assert xdp.state(bpffs_dir, br) == xdp.XdpState("generic")
    assert ifla_xdp(br) == (XDP_ATTACHED_SKB, object_id(progs[0]))


def test_explicit_native_without_it_raises(bpffs_dir, progs):
    br = add("bridge", "br0")
    with pytest.raises(xdp.XdpUnsupported, match=r"native XDP not available on br0 \(driver "
                                                 r"bridge\): Operation not supported"):
        xdp.attach(bpffs_dir, br, progs[0], "native")
    assert issubclass(xdp.XdpUnsupported, FailedPrecondition)
    assert xdp.pinned(bpffs_dir) == []
    assert ifla_xdp(br) == (0, 0)
    assert xdp.state(bpffs_dir, br).mode == "off"


@pytest.mark.parametrize(("kind", "mode", "runs"), [("veth", "native", "native"),
                                                     ("veth", "generic", "generic"),
                                                     ("bridge", "auto", "generic")])
def test_reattach_in_the_same_mode_swaps_the_program(bpffs_dir, progs, kind, mode, runs):
    """Same link, new program (BPF_LINK_UPDATE): what a restarted daemon does."""
    dev = add(kind, "d0")
    xdp.attach(bpffs_dir, dev, progs[0], mode)
    link0, prog0 = link_ids(bpffs_dir, dev)
    assert prog0 == object_id(progs[0])
    got = xdp.attach(bpffs_dir, dev, progs[1], mode)
    assert got.mode == runs
    link1, prog1 = link_ids(bpffs_dir, dev)
    assert link1 == link0 and prog1 == object_id(progs[1]) != prog0
    assert ifla_xdp(dev)[1] == prog1
    assert xdp.state(bpffs_dir, dev).mode == runs


def test_auto_keeps_a_live_generic_link(bpffs_dir, progs):
    """auto over a generic link swaps the program in (no retry of native, which would drop
    frames) and says so."""
    v = add("veth", "v0")
    xdp.attach(bpffs_dir, v, progs[0], "generic")
    link0, _ = link_ids(bpffs_dir, v)
    got = xdp.attach(bpffs_dir, v, progs[1], "auto")
    assert got.mode == "generic" and "kept" in got.reason
    assert link_ids(bpffs_dir, v) == (link0, object_id(progs[1]))


def test_mode_change_replaces_the_link(bpffs_dir, progs):
    v = add("veth", "v0")
    xdp.attach(bpffs_dir, v, progs[0], "native")
    link0, _ = link_ids(bpffs_dir, v)
    assert xdp.attach(bpffs_dir, v, progs[1], "generic") == xdp.XdpState("generic")
    link1, prog1 = link_ids(bpffs_dir, v)
    assert link1 != link0 and prog1 == object_id(progs[1])
    assert ifla_xdp(v) == (XDP_ATTACHED_SKB, prog1)
    assert xdp.attach(bpffs_dir, v, progs[0], "native") == xdp.XdpState("native")
    assert ifla_xdp(v) == (XDP_ATTACHED_DRV, object_id(progs[0]))


def test_detach_removes_pin_and_program(bpffs_dir, progs):
    v = add("veth", "v0")
    xdp.attach(bpffs_dir, v, progs[0], "native")
    assert xdp.detach(bpffs_dir, v) is True
    assert ifla_xdp(v) == (0, 0)
    assert not os.path.exists(xdp.pin_path(bpffs_dir, v))
    assert xdp.state(bpffs_dir, v) == xdp.XdpState("off", "no XDP link pinned")
    assert xdp.detach(bpffs_dir, v) is False


def test_pinned_and_prune(bpffs_dir, progs):
    a, b, c = add("veth", "a0"), add("veth", "b0"), add("bridge", "c0")
    for dev in (a, b, c):
        xdp.attach(bpffs_dir, dev, progs[0], "auto")
    assert xdp.pinned(bpffs_dir) == sorted([a, b, c])
    xdp.prune(bpffs_dir, {a, c})
    assert xdp.pinned(bpffs_dir) == sorted([a, c])
    assert ifla_xdp(b) == (0, 0)
    assert ifla_xdp(a)[0] == XDP_ATTACHED_DRV and ifla_xdp(c)[0] == XDP_ATTACHED_SKB


def test_prune_removes_the_pin_of_a_deleted_device(bpffs_dir, progs):
    a, gone = add("veth", "a0"), add("veth", "g0")
    xdp.attach(bpffs_dir, a, progs[0], "native")
    xdp.attach(bpffs_dir, gone, progs[0], "native")
    delete(gone)
    assert xdp.pinned(bpffs_dir) == sorted([a, gone])  # the pin outlives the device
    assert xdp.state(bpffs_dir, gone) == xdp.XdpState(
        "off", "the pinned link is defunct: its device is gone")
    xdp.prune(bpffs_dir, {a})
    assert xdp.pinned(bpffs_dir) == [a]
    assert xdp.state(bpffs_dir, a).mode == "native"


def test_defunct_link_is_replaced(bpffs_dir, progs):
    """A pin whose device went away, found under the ifindex of a new device (as if the index
    had been reused): attach makes a new link instead of updating the dead one."""
    gone = add("veth", "g0")
    xdp.attach(bpffs_dir, gone, progs[0], "native")
    old_link, _ = link_ids(bpffs_dir, gone)
    delete(gone)
    new = add("veth", "n0")
    os.rename(xdp.pin_path(bpffs_dir, gone), xdp.pin_path(bpffs_dir, new))
    assert xdp.attach(bpffs_dir, new, progs[1], "native") == xdp.XdpState("native")
    link, prog = link_ids(bpffs_dir, new)
    assert link != old_link and prog == object_id(progs[1])
    assert ifla_xdp(new) == (XDP_ATTACHED_DRV, prog)
    assert xdp.pinned(bpffs_dir) == [new]


@pytest.mark.parametrize("mode", ["native", "generic", "auto"])
def test_program_attached_over_netlink_is_a_clear_error(bpffs_dir, progs, mode):
    """Someone else's XDP program (netlink, no link: native on a veth) holds the device: the
    kernel says EBUSY (same mode) or EEXIST (the other one); attach says who is there."""
    from pyroute2 import IPRoute

    v = add("veth", "v0")
    with IPRoute() as ipr:
        ipr.link("set", index=v, xdp_fd=progs[0])
    foreign = object_id(progs[0])
    assert ifla_xdp(v) == (XDP_ATTACHED_DRV, foreign)
    with pytest.raises(FailedPrecondition, match=(
            f"another XDP program is attached to it \\(program {foreign} \\(native\\)\\),"
            " not by this datapath; detach it first")) as err:
        xdp.attach(bpffs_dir, v, progs[1], mode)
    assert not isinstance(err.value, xdp.XdpUnsupported)
    assert xdp.pinned(bpffs_dir) == []
    assert ifla_xdp(v) == (XDP_ATTACHED_DRV, foreign)  # untouched
    assert xdp.state(bpffs_dir, v).mode == "off"


def test_bad_arguments(bpffs_dir, progs):
    v = add("veth", "v0")
    with pytest.raises(InvalidArgument, match="must be 'native', 'generic' or 'auto'"):
        xdp.attach(bpffs_dir, v, progs[0], "offload")
    with pytest.raises(InvalidArgument, match="is not XDP"):
        xdp.attach(bpffs_dir, v, progs[2], "native")
    assert xdp.pinned(bpffs_dir) == []


def test_missing_device_is_not_found(bpffs_dir, progs):
    from vswitchd.errors import NotFound

    with pytest.raises(NotFound, match="no device with ifindex 4242"):
        xdp.attach(bpffs_dir, 4242, progs[0], "auto")


def test_cleanup_removes_the_xdp_pins(bpffs_dir, progs):
    from vswitchd.cleanup import remove_pins

    v = add("veth", "v0")
    xdp.attach(bpffs_dir, v, progs[0], "native")
    remove_pins(bpffs_dir)
    assert ifla_xdp(v) == (0, 0)
    assert not os.path.exists(bpffs_dir)
