"""The programs on the devices' TC hooks: a pinned TCX link where the kernel has TCX (tcx.py),
else a clsact + cls_bpf filter (vswitchd.netlink.tc, imported when first needed)."""

from __future__ import annotations

import logging
import socket

from vswitchd.datapath import tcx
from vswitchd.errors import NotFound

log = logging.getLogger(__name__)


def attached_programs(ifindex: int, direction: str) -> list[str]:
    """Names of the programs at a device's TC hook: TCX links first, then cls_bpf filters."""
    from vswitchd.netlink import tc

    return tcx.attached(ifindex, direction) + tc.attached(ifindex, direction)


def _highest_ifindex() -> int:
    return max((index for index, _name in socket.if_nameindex()), default=0)


class Hooks:
    """Attaches one Datapath's programs ("ingress", "egress") and detaches them."""

    def __init__(self, bpffs_dir: str, progs: dict) -> None:
        self.bpffs_dir = bpffs_dir
        self.progs = progs
        self.tcx: bool | None = None  # attach with TCX links; None = not tried yet
        # The kernel numbers new devices upwards: one above this was made after we opened,
        # so no earlier build put a cls_bpf filter on it (looking costs 4 ms a port).
        self.older_than_us = _highest_ifindex()

    def attach(self, ifindex: int, direction: str) -> None:
        """TCX where the kernel has it (a pinned link), otherwise a clsact + cls_bpf filter."""
        prog = self.progs[direction]
        if self.tcx is not False:
            try:
                created = tcx.attach(self.bpffs_dir, ifindex, prog.fd, direction)
            except tcx.TcxUnsupported as exc:
                log.info("no TCX in this kernel (%s): programs go on clsact + cls_bpf", exc)
                self.tcx = False
            else:
                self.tcx = True
                if created and ifindex <= self.older_than_us:
                    _detach_filter(ifindex, direction)  # an earlier build's: one attachment
        if self.tcx is False:
            from vswitchd.netlink import tc

            tc.attach(ifindex, prog.fd, prog.name.decode(), direction)

    def detach(self, ifindex: int, direction: str) -> None:
        # A port with a link pin has no filter of ours (attach removed it); one without may
        # have one (clsact kernel, or attached by an earlier build and not re-added since).
        if not tcx.detach(self.bpffs_dir, ifindex, direction):
            _detach_filter(ifindex, direction)

    def prune(self, keep: set[int]) -> None:
        """Detaches the link pins of devices not in keep."""
        for ifindex, direction in tcx.pinned(self.bpffs_dir):
            if ifindex not in keep:
                tcx.detach(self.bpffs_dir, ifindex, direction)


def _detach_filter(ifindex: int, direction: str) -> None:
    from vswitchd.netlink import tc

    try:
        tc.detach(ifindex, direction)
    except NotFound:
        pass  # the device is gone, and its filters with it
