"""TCX attachment (vswitchd/datapath/tcx.py): pinned links, atomic program swaps on restart,
defunct links, the move off an earlier build's cls_bpf filter, and the clsact fallback."""

from __future__ import annotations

import os

import pytest
from dp_helpers import Bridge

from vswitchd.datapath import Datapath, PortKind, builds, tcx
from vswitchd.datapath.bpfsys import BPF_OBJ_GET, bpf, obj_info, obj_path
from vswitchd.netlink import tc

pytestmark = pytest.mark.root


def link_ids(path: str) -> tuple[int, int]:
    """(link id, program id) of a pinned link."""
    attr, _keep = obj_path(path)
    fd = bpf(BPF_OBJ_GET, attr, "open pin")
    try:
        info = obj_info(fd, 64)
    finally:
        os.close(fd)
    return int.from_bytes(info[4:8], "little"), int.from_bytes(info[8:12], "little")


def test_ports_get_pinned_tcx_links_and_no_filter(dp, bridge, bpffs_dir):
    assert dp._tcx is True
    assert tcx.attached(bridge.br, "egress") == ["tc_egress"]
    assert tc.attached(bridge.br, "egress") == []
    for port in bridge.ports:
        assert tcx.attached(port, "ingress") == ["tc_ingress"]
        assert tc.attached(port, "ingress") == []
    assert tcx.pinned(bpffs_dir) == sorted(
        [(bridge.br, "egress")] + [(p, "ingress") for p in bridge.ports])


def test_restart_swaps_the_program_into_the_same_link(dp, bridge, bpffs_dir):
    """The link outlives the Datapath that made it (the pin holds it), and a new one replaces
    the program inside it: same link, new program, still one program at the hook."""
    port = bridge.ports[0]
    path = tcx.pin_path(bpffs_dir, port, "ingress")
    link0, prog0 = link_ids(path)
    dp.close()
    assert tcx.attached(port, "ingress") == ["tc_ingress"]  # nobody holds it but the pin
    dp._bpf = None
    dp.__init__(bpffs_dir)  # the same build: its programs taken back, nothing to swap
    dp.add_port(bridge.br, port, PortKind.PEER)
    assert link_ids(path) == (link0, prog0)
    assert prog0 == int.from_bytes(obj_info(dp._progs["ingress"].fd)[4:8], "little")
    dp.close()
    builds.remove_all(bpffs_dir)  # as after an upgrade: programs loaded anew
    dp.__init__(bpffs_dir)
    dp.add_port(bridge.br, port, PortKind.PEER)
    link1, prog1 = link_ids(path)
    assert link1 == link0 and prog1 != prog0
    assert prog1 == int.from_bytes(obj_info(dp._progs["ingress"].fd)[4:8], "little")
    assert tcx.attached(port, "ingress") == ["tc_ingress"]


def test_unpinning_detaches_and_remove_port_unpins(dp, bridge, bpffs_dir):
    p0, p1, _ = bridge.ports
    assert tcx.detach(bpffs_dir, p0, "ingress") is True
    assert tcx.attached(p0, "ingress") == []
    assert tcx.detach(bpffs_dir, p0, "ingress") is False
    dp.remove_port(bridge.br, p1)
    assert tcx.attached(p1, "ingress") == []
    assert not os.path.exists(tcx.pin_path(bpffs_dir, p1, "ingress"))


def test_defunct_link_is_replaced(dp, topo, bridge, bpffs_dir):
    """A pin whose device went away (as if its ifindex were taken by a new device): attach
    makes a new link instead of updating the dead one."""
    gone = bridge.ports[2]
    old = tcx.pin_path(bpffs_dir, gone, "ingress")
    topo.delete(gone)
    assert os.path.exists(old)  # the pin outlives the device
    new = topo.add("n0", "veth")
    os.rename(old, tcx.pin_path(bpffs_dir, new, "ingress"))
    dp.add_port(bridge.br, new, PortKind.DEVICE)
    assert tcx.attached(new, "ingress") == ["tc_ingress"]
    link_new, _ = link_ids(tcx.pin_path(bpffs_dir, new, "ingress"))
    assert link_new  # a live link in place of the defunct one
    dp.prune({bridge.br, *bridge.ports[:2], new})
    assert (gone, "ingress") not in tcx.pinned(bpffs_dir)


def test_earlier_builds_filter_is_replaced_by_the_link(dp, topo, bridge, bpffs_dir,
                                                      monkeypatch):
    """A port attached by a clsact build: re-adding it after a restart moves it to TCX, the
    filter goes. Devices made after the datapath opened cannot have one: not looked at."""
    port = topo.add("l0", "veth")
    prog = dp._progs["ingress"]
    tc.attach(port, prog.fd, "tc_ingress", "ingress")
    assert tc.attached(port, "ingress") == ["tc_ingress"]
    dp.close()
    dp.__init__(bpffs_dir)  # the restart of the upgraded daemon
    dp.add_port(bridge.br, port, PortKind.DEVICE)
    assert tc.attached(port, "ingress") == []
    assert tcx.attached(port, "ingress") == ["tc_ingress"]
    dp.remove_port(bridge.br, port)
    assert tcx.attached(port, "ingress") == [] and tc.attached(port, "ingress") == []
    monkeypatch.setattr(tc, "detach", lambda *a: pytest.fail("a new device's filters read"))
    dp.add_port(bridge.br, topo.add("l1", "veth"), PortKind.DEVICE)


def test_kernel_without_tcx_falls_back_to_clsact(topo, bpffs_dir, monkeypatch):
    def unsupported(*_args):
        raise tcx.TcxUnsupported("EINVAL")

    monkeypatch.setattr(tcx, "attach", unsupported)
    dp = Datapath(bpffs_dir)
    try:
        b = Bridge(topo, dp, "f", 2, [PortKind.PEER, PortKind.DEVICE])
        assert dp._tcx is False
        assert tc.attached(b.br, "egress") == ["tc_egress"]
        assert tc.attached(b.ports[0], "ingress") == ["tc_ingress"]
        assert tcx.attached(b.ports[0], "ingress") == []
        dp.remove_port(b.br, b.ports[0])
        assert tc.attached(b.ports[0], "ingress") == []
    finally:
        dp.destroy()
    assert not os.path.exists(bpffs_dir)
    assert tc.attached(b.br, "egress") == []
