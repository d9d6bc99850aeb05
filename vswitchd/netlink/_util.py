"""Helpers shared by the netlink modules (links.py, vxlan.py): looking links up, turning kernel
errors into SwitchErrors, best-effort rollback steps."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2.iproute import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vswitchd.errors import NotFound
from vswitchd.netlink.errors import translate
from vswitchd.netlink.types import LinkInfo

IFF_UP = 0x1


@contextmanager
def _kernel(action: str, **kw: Any) -> Iterator[None]:
    try:
        yield
    except (NetlinkError, OSError) as exc:
        raise translate(exc, action, **kw) from exc


IFLA_XDP_PROG_IDS = {"native": "IFLA_XDP_DRV_PROG_ID", "generic": "IFLA_XDP_SKB_PROG_ID",
                     "offload": "IFLA_XDP_HW_PROG_ID"}


def xdp_programs(msg: Any) -> dict[str, int]:
    """{mode: program id} of the XDP programs on the device of a link message (IFLA_XDP)."""
    progs = {}
    xdp = msg.get_attr("IFLA_XDP")
    if xdp is not None:
        for mode, attr in IFLA_XDP_PROG_IDS.items():
            prog_id = xdp.get_attr(attr)
            if prog_id:
                progs[mode] = prog_id
    return progs


def _to_info(msg: Any) -> LinkInfo:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = (linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None) or ""
    master = msg.get_attr("IFLA_MASTER")
    return LinkInfo(
        name=msg.get_attr("IFLA_IFNAME"),
        ifindex=msg["index"],
        kind=kind,
        master=master or None,
        mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & IFF_UP),
        operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
        xdp_progs=tuple(xdp_programs(msg).items()),
    )


def drop_stray_replies(ipr: IPRoute) -> None:
    """Drops what pyroute2 queued for no request. It asks for a link with
    NLM_F_ACK, takes the link and forgets the request; the kernel's ACK, which follows, lands in
    the socket's root queue, kept for a reader of multicast messages, and no IPRoute here joins
    a multicast group. Left alone, they stay for good: 4 an added port, 1 a link looked up."""
    root = ipr.asyncore.msg_queue.root
    while not root.empty():
        root.get_nowait()
        root.task_done()


def _get(ipr: IPRoute, name: str) -> Any | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        if exc.code == errno.EINVAL and len(name.encode()) > 15:
            return None  # a name longer than IFNAMSIZ cannot exist
        raise translate(exc, f"look up interface {name}", name=name) from exc


def _require(ipr: IPRoute, name: str) -> Any:
    msg = _get(ipr, name)
    if msg is None:
        raise NotFound(f"interface {name} does not exist")
    return msg


def _quiet(fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
    """Best-effort call for rollback paths: the original error is what the caller needs."""
    try:
        fn(*args, **kw)
    except Exception:  # rollback must not mask the original error
        pass
