"""TCX attachment (kernel >= 6.6): a program on a device's TC hook through a bpf link.

TCX runs the hook's programs straight from the device's receive and transmit paths, without
the clsact qdisc and cls_bpf's filter walk (a bare redirect_peer program between two veths
forwarded 1-2.6% more 64-byte frames into the receiver's stack here). The link is
pinned in the datapath's bpffs directory, `links/IFINDEX_DIRECTION`: the pin keeps the program
attached while the daemon is down (no process holds the link open), a new daemon swaps its own
program in with one BPF_LINK_UPDATE (no window without one), and detach() ends it with
BPF_LINK_DETACH. A link whose device went away stays pinned but defunct; attach() replaces it.
Kernels without TCX refuse the link with EINVAL: attach() raises TcxUnsupported and the caller
uses clsact + cls_bpf (vswitchd.netlink.tc).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

from vswitchd.datapath.bpfsys import (
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_LINK_UPDATE,
    BPF_OBJ_GET,
    BPF_OBJ_PIN,
    BPF_PROG_GET_FD_BY_ID,
    BPF_PROG_QUERY,
    ByFd,
    LinkCreate,
    LinkUpdate,
    bpf,
    obj_info,
    obj_path,
)
from vswitchd.errors import InvalidArgument, Unavailable
from vswitchd.netlink.errors import device_error

ATTACH_TYPE = {"ingress": 46, "egress": 47}  # enum bpf_attach_type: BPF_TCX_INGRESS, _EGRESS
LINKS_DIR = "links"  # under the datapath's bpffs directory
_LINK_INFO_TCX_IFINDEX = 16  # struct bpf_link_info: type, id, prog_id, pad, then tcx.ifindex
_PROG_INFO_TAG = 8  # struct bpf_prog_info.tag[8]
_PROG_INFO_NAME = 64  # struct bpf_prog_info.name[16]
_MAX_PROGS = 64


class TcxUnsupported(Exception):
    """The kernel has no TCX (before 6.6)."""


class _ProgQuery(ctypes.Structure):
    _fields_ = [("target_ifindex", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("prog_attach_flags", ctypes.c_uint64),
                ("link_ids", ctypes.c_uint64), ("link_attach_flags", ctypes.c_uint64),
                ("revision", ctypes.c_uint64)]


class _ById(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


def _attach_type(direction: str) -> int:
    try:
        return ATTACH_TYPE[direction]
    except KeyError:
        raise InvalidArgument("direction", direction, "must be 'ingress' or 'egress'") from None


def pin_path(bpffs_dir: str, ifindex: int, direction: str) -> str:
    _attach_type(direction)
    return os.path.join(bpffs_dir, LINKS_DIR, f"{ifindex}_{direction}")  # bpffs: no dots


def _link_ifindex(link_fd: int) -> int:
    """The device of a TCX link; 0 once the device is gone."""
    info = obj_info(link_fd, 64)
    return int.from_bytes(info[_LINK_INFO_TCX_IFINDEX:_LINK_INFO_TCX_IFINDEX + 4], "little")


def link_create(ifindex: int, prog_fd: int, direction: str) -> int:
    """A new TCX link running prog_fd at the device's hook (appended after any other); the
    returned fd holds it. Raises TcxUnsupported, NotFound (no such device) or Unavailable."""
    try:
        return bpf(BPF_LINK_CREATE, LinkCreate(prog_fd, ifindex, _attach_type(direction)),
                   f"TCX link at {direction} of ifindex {ifindex}")
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise TcxUnsupported(str(exc)) from None
        raise device_error(exc, ifindex) from None


def attach(bpffs_dir: str, ifindex: int, prog_fd: int, direction: str) -> bool:
    """Attaches prog_fd at the device's hook through the pinned link, or swaps it into the
    link already there (atomic). Returns True when it made a new link. Raises TcxUnsupported,
    NotFound (no such device) or Unavailable."""
    path = pin_path(bpffs_dir, ifindex, direction)
    if os.path.exists(path):
        attr, _keep = obj_path(path)
        try:
            link_fd = bpf(BPF_OBJ_GET, attr, f"opening link pin {path}")
        except OSError as exc:
            raise Unavailable(str(exc)) from None
        try:
            if _link_ifindex(link_fd) == ifindex:
                bpf(BPF_LINK_UPDATE, LinkUpdate(link_fd, prog_fd, 0, 0),
                    f"replacing the program at {direction} of ifindex {ifindex}")
                return False
        except OSError as exc:
            if exc.errno != errno.ENOLINK:  # ENOLINK: its device went away just now
                raise Unavailable(str(exc)) from None
        finally:
            os.close(link_fd)
        os.unlink(path)  # defunct: its device is gone (the ifindex may be someone else's now)
    pin_link(path, link_fd=link_create(ifindex, prog_fd, direction))
    return True


def pin_link(path: str, link_fd: int) -> None:
    """Pins a new link at path and closes our fd (tcx.attach, xdp.attach): a link that could
    not be pinned goes with the fd."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        attr, _keep = obj_path(path, link_fd)
        bpf(BPF_OBJ_PIN, attr, f"pinning link {path}")
    except OSError as exc:
        raise Unavailable(str(exc)) from None
    finally:
        os.close(link_fd)


def detach(bpffs_dir: str, ifindex: int, direction: str) -> bool:
    """Detaches the pinned link's program and removes the pin. Returns False if there was no
    pin. Detached explicitly: the kernel frees a link whose last reference was a pin only
    later, from a work queue, and the program would run on a little after the call."""
    return detach_pinned(pin_path(bpffs_dir, ifindex, direction))


def detach_pinned(path: str) -> bool:
    """Detaches the link pinned at path and removes the pin (tcx.detach, xdp.detach); False if
    there was no pin."""
    attr, _keep = obj_path(path)
    try:
        link_fd = bpf(BPF_OBJ_GET, attr, f"opening link pin {path}")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise Unavailable(str(exc)) from None
    try:
        bpf(BPF_LINK_DETACH, ByFd(link_fd), f"detaching {path}")
    except OSError as exc:
        if exc.errno != errno.ENOLINK:  # defunct already: its device is gone
            raise Unavailable(str(exc)) from None
    finally:
        os.close(link_fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def pinned(bpffs_dir: str) -> list[tuple[int, str]]:
    """(ifindex, direction) of every link pin in the directory."""
    out = []
    try:
        names = os.listdir(os.path.join(bpffs_dir, LINKS_DIR))
    except FileNotFoundError:
        return []
    for name in names:
        ifindex, _, direction = name.partition("_")
        if ifindex.isdigit() and direction in ATTACH_TYPE:
            out.append((int(ifindex), direction))
    return sorted(out)


def remove_all(bpffs_dir: str) -> None:
    """Unlinks every link pin (detaching their programs) and the links directory."""
    for ifindex, direction in pinned(bpffs_dir):
        detach(bpffs_dir, ifindex, direction)
    try:
        os.rmdir(os.path.join(bpffs_dir, LINKS_DIR))
    except OSError:
        pass  # gone, or holds something that is not ours


def programs(ifindex: int, direction: str) -> list[tuple[int, str, str]]:
    """(id, name, tag) of each program TCX runs at the device's hook, in order ([] without
    TCX)."""
    ids = (ctypes.c_uint32 * _MAX_PROGS)()
    attr = _ProgQuery(target_ifindex=ifindex, attach_type=_attach_type(direction),
                      prog_ids=ctypes.addressof(ids), prog_cnt=_MAX_PROGS)
    try:
        bpf(BPF_PROG_QUERY, attr, f"querying {direction} of ifindex {ifindex}")
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return []
        raise device_error(exc, ifindex) from None
    out = []
    for prog_id in ids[:attr.prog_cnt]:
        fd = bpf(BPF_PROG_GET_FD_BY_ID, _ById(prog_id, 0, 0), f"opening program {prog_id}")
        try:
            info = obj_info(fd)
        finally:
            os.close(fd)
        name = info[_PROG_INFO_NAME:_PROG_INFO_NAME + 16].split(b"\0", 1)[0].decode()
        out.append((prog_id, name, info[_PROG_INFO_TAG:_PROG_INFO_TAG + 8].hex()))
    return out


def attached(ifindex: int, direction: str) -> list[str]:
    """Names of the programs TCX runs at the device's hook, in order ([] without TCX)."""
    return [name for _id, name, _tag in programs(ifindex, direction)]
