"""XDP programs on devices through pinned bpf links (BPF_LINK_CREATE, attach type BPF_XDP).

The link is pinned in the datapath's bpffs directory, `xdp/IFINDEX` (a directory of its own:
tcx.pinned() parses `links/`): the pin keeps the program attached while the daemon is down, a
new daemon swaps its own program into the link with one BPF_LINK_UPDATE (no window without
one), and detach() ends it with BPF_LINK_DETACH. A link whose device went away stays pinned but
defunct; attach() replaces it.

Modes: "native" runs the program in the driver (XDP_FLAGS_DRV_MODE), "generic" on the skb in
the core receive path (XDP_FLAGS_SKB_MODE, any device), "auto" native where the driver has it,
else generic. A device runs XDP in one mode at a time, so a mode change detaches the old link
before making the new one (a short window without a program). The kernel says which mode a
program runs in (IFLA_XDP): state() asks it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

from vswitchd.datapath.bpfsys import (
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_LINK_UPDATE,
    BPF_OBJ_GET,
    ByFd,
    LinkCreate,
    LinkUpdate,
    bpf,
    obj_info,
    obj_path,
)
from vswitchd.datapath.tcx import detach_pinned, pin_link
from vswitchd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchError,
    Unavailable,
)
from vswitchd.netlink import linkdump
from vswitchd.netlink.errors import device_error

XDP_DIR = "xdp"  # under the datapath's bpffs directory
MODES = ("native", "generic", "auto")
BPF_XDP = 37  # enum bpf_attach_type
BPF_PROG_TYPE_XDP = 6  # enum bpf_prog_type
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
# The driver cannot run this program natively: no ndo_bpf (EOPNOTSUPP), or it refuses this
# device's setup (MTU, queues, features: EINVAL, ERANGE, ENOSPC, ENOMEM, depending on the driver).
_NATIVE_REFUSED = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ERANGE, errno.ENOSPC,
                             errno.ENOMEM})
# Another program holds the hook: EBUSY (same mode, or another link), EEXIST (the other mode,
# or an upper device's program).
_OCCUPIED = frozenset({errno.EBUSY, errno.EEXIST})
_LINK_INFO_PROG_ID = 8  # struct bpf_link_info: type, id, prog_id, pad, then xdp.ifindex
_LINK_INFO_XDP_IFINDEX = 16
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo


@dataclass(frozen=True)
class XdpState:
    mode: str  # "native" | "generic" | "off"
    reason: str = ""  # why the mode is not what was asked (fallback), or why off


class XdpUnsupported(FailedPrecondition):
    """The device's driver cannot run XDP in the mode asked for explicitly (native)."""


def pin_path(bpffs_dir: str, ifindex: int) -> str:
    return os.path.join(bpffs_dir, XDP_DIR, str(ifindex))


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidArgument("xdp mode", mode, "must be 'native', 'generic' or 'auto'")
    return mode


def _open_pin(path: str) -> int | None:
    """An fd of the link pinned at path; None when there is no pin."""
    attr, _keep = obj_path(path)
    try:
        return bpf(BPF_OBJ_GET, attr, f"opening link pin {path}")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unavailable(str(exc)) from None



def _link(link_fd: int) -> tuple[int, int]:
    """(ifindex, program id) of an XDP link; ifindex 0 once the device is gone."""
    info = obj_info(link_fd, 64)

    def u32(off: int) -> int:
        return int.from_bytes(info[off:off + 4], "little")

    return u32(_LINK_INFO_XDP_IFINDEX), u32(_LINK_INFO_PROG_ID)


def _device(ifindex: int) -> tuple[str, str, dict[str, int]]:
    """(name, link kind, {mode: program id}) of the device in the current netns: the XDP
    programs the kernel runs on it, per mode (IFLA_XDP_{DRV,SKB,HW}_PROG_ID)."""
    found = linkdump.get(index=ifindex)  # (pyroute2 took 2.5 ms to parse the answer)
    if found is None:
        raise NotFound(f"no device with ifindex {ifindex}")
    info = found[0]
    return info.name or f"ifindex {ifindex}", info.kind, dict(info.xdp_progs)


def _name(ifindex: int) -> str:
    try:
        return _device(ifindex)[0]
    except SwitchError:
        return f"ifindex {ifindex}"


def _driver(name: str, kind: str) -> str:
    """The device's driver as ethtool names it (ETHTOOL_GDRVINFO), else its link kind."""
    info = ctypes.create_string_buffer(struct.pack("I", ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
    ifreq = struct.pack("16sP16x", os.fsencode(name)[:15], ctypes.addressof(info))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # the current netns
            fcntl.ioctl(sock, SIOCETHTOOL, ifreq)
    except OSError:
        return kind
    return info.raw[4:36].split(b"\0", 1)[0].decode(errors="replace") or kind


def _refusal(ifindex: int, exc: OSError) -> str:
    try:
        name, kind, _ = _device(ifindex)
    except SwitchError:
        return f"native XDP not available on ifindex {ifindex}: {os.strerror(exc.errno or 0)}"
    driver = _driver(name, kind)
    on = f"{name} (driver {driver})" if driver and driver != name else name
    return f"native XDP not available on {on}: {os.strerror(exc.errno or 0)}"


def _error(exc: OSError, ifindex: int, mode: str) -> SwitchError:
    """The SwitchError of a failed link creation in mode."""
    if exc.errno in _OCCUPIED:
        try:
            name, _, progs = _device(ifindex)
        except SwitchError:
            name, progs = f"ifindex {ifindex}", {}
        held = ", ".join(f"program {pid} ({m})" for m, pid in progs.items())
        return FailedPrecondition(
            f"cannot attach XDP ({mode}) to {name}: another XDP program is attached to it"
            f"{' (' + held + ')' if held else ' or to a device above it'}, not by this"
            f" datapath; detach it first (ip link set dev {name} xdp off)")
    return device_error(exc, ifindex, f"cannot attach XDP ({mode}) to {_name(ifindex)}")


def _create(ifindex: int, prog_fd: int, mode: str) -> int:
    """A new XDP link in mode ("native" or "generic"); the returned fd holds it. Raises the
    kernel's OSError."""
    return bpf(BPF_LINK_CREATE, LinkCreate(prog_fd, ifindex, BPF_XDP, _FLAGS[mode]),
               f"{mode} XDP link on ifindex {ifindex}")


def _mode_of(prog_id: int, progs: dict[str, int]) -> str | None:
    return next((m for m, pid in progs.items() if pid == prog_id and m in _FLAGS), None)


def _live(link_fd: int, ifindex: int) -> tuple[bool, str | None]:
    """Whether the pinned link is live (its device is there, or was a moment ago), and the
    mode it runs its program in on ifindex (None: defunct, on another device, or its program
    is not on the device)."""
    link_ifindex, prog_id = _link(link_fd)
    if link_ifindex != ifindex:
        return link_ifindex != 0, None
    return True, _mode_of(prog_id, _device(ifindex)[2])


def _check_prog(prog_fd: int) -> None:
    try:
        prog_type = int.from_bytes(obj_info(prog_fd)[0:4], "little")
    except OSError as exc:
        raise InvalidArgument("prog_fd", prog_fd, f"not a BPF program: {exc}") from None
    if prog_type != BPF_PROG_TYPE_XDP:
        raise InvalidArgument("prog_fd", prog_fd, f"program type {prog_type} is not XDP")


def attach(bpffs_dir: str, ifindex: int, prog_fd: int, mode: str) -> XdpState:
    """Runs prog_fd at the device's XDP hook through the pinned link: swaps it into the live
    link already pinned there when that runs in the mode asked for ("auto" keeps the mode of a
    live link: retrying native would drop frames), else makes a new link (a link in the other
    mode is detached first; a defunct one is replaced). Returns the mode it runs in and, for
    "auto" that fell back to generic, why. Raises XdpUnsupported (explicit native the driver
    refuses), FailedPrecondition (another XDP program holds the device), NotFound (no such
    device), InvalidArgument or Unavailable."""
    _mode(mode)
    _check_prog(prog_fd)
    path = pin_path(bpffs_dir, ifindex)
    link_fd = _open_pin(path)
    replaced = None  # the mode of a live link detached for the new one
    if link_fd is not None:
        try:
            live, current = _live(link_fd, ifindex)
            if current is not None and mode in (current, "auto"):
                bpf(BPF_LINK_UPDATE, LinkUpdate(link_fd, prog_fd, 0, 0),
                    f"replacing the XDP program of ifindex {ifindex}")
                reason = ("" if current == "native" or mode == current else
                          "generic XDP kept from the link already pinned (auto does not retry"
                          " native on a live link)")
                return XdpState(current, reason)
            if live:  # the other mode (a device runs one at a time), or not ours to update:
                # detached now, as the kernel would release the unpinned link only later
                bpf(BPF_LINK_DETACH, ByFd(link_fd), f"detaching {path}")
                replaced = current
        except OSError as exc:
            if exc.errno != errno.ENOLINK:  # ENOLINK: its device went away just now
                raise device_error(exc, ifindex, f"cannot attach XDP to {_name(ifindex)}") \
                    from None
        finally:
            os.close(link_fd)
        os.unlink(path)  # defunct or detached (the ifindex may be someone else's now)
    try:
        state, link_fd = _new_link(ifindex, prog_fd, mode)
    except SwitchError:
        if replaced is None:
            raise
        # the mode asked is refused: the device gets back the mode it had (a short gap)
        pin_link(path, _create(ifindex, prog_fd, replaced))
        raise
    pin_link(path, link_fd)
    return state


def _new_link(ifindex: int, prog_fd: int, mode: str) -> tuple[XdpState, int]:
    _device(ifindex)  # NotFound first: the kernel says EINVAL for a missing device
    if mode != "auto":
        try:
            return XdpState(mode), _create(ifindex, prog_fd, mode)
        except OSError as exc:
            if mode == "native" and exc.errno in _NATIVE_REFUSED:
                raise XdpUnsupported(_refusal(ifindex, exc)) from None
            raise _error(exc, ifindex, mode) from None
    try:
        return XdpState("native"), _create(ifindex, prog_fd, "native")
    except OSError as exc:
        if exc.errno not in _NATIVE_REFUSED:
            raise _error(exc, ifindex, "native") from None
        reason = _refusal(ifindex, exc)
    try:
        return XdpState("generic", reason), _create(ifindex, prog_fd, "generic")
    except OSError as exc:
        raise _error(exc, ifindex, "generic") from None


def detach(bpffs_dir: str, ifindex: int) -> bool:
    """Detaches the pinned link's program and removes the pin. Returns False if there was no
    pin. Detached explicitly: the kernel frees a link whose last reference was a pin only
    later, from a work queue, and the program would run on a little after the call."""
    return detach_pinned(pin_path(bpffs_dir, ifindex))


def state(bpffs_dir: str, ifindex: int,
          device_progs: dict[str, int] | None = None) -> XdpState:
    """The mode the device runs the program of our pinned link in, as the kernel reports it
    (IFLA_XDP of the device in the current netns: DEVICE_PROGS when the caller has just read
    them, else asked for); "off" with the reason when none runs."""
    link_fd = _open_pin(pin_path(bpffs_dir, ifindex))
    if link_fd is None:
        return XdpState("off", "no XDP link pinned")
    try:
        link_ifindex, prog_id = _link(link_fd)
    finally:
        os.close(link_fd)
    if link_ifindex == 0:
        return XdpState("off", "the pinned link is defunct: its device is gone")
    if link_ifindex != ifindex:
        return XdpState("off", f"the pinned link is on ifindex {link_ifindex}")
    progs = _device(ifindex)[2] if device_progs is None else device_progs
    mode = _mode_of(prog_id, progs)
    if mode is None:
        return XdpState("off", f"the link's program {prog_id} is not on the device "
                               f"(it runs {progs or 'none'})")
    return XdpState(mode)


def pinned(bpffs_dir: str) -> list[int]:
    """The ifindexes with an XDP link pin in the directory."""
    try:
        names = os.listdir(os.path.join(bpffs_dir, XDP_DIR))
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def prune(bpffs_dir: str, keep: set[int]) -> None:
    """Detaches the links pinned for devices not in keep (and those of devices gone)."""
    for ifindex in pinned(bpffs_dir):
        if ifindex not in keep:
            detach(bpffs_dir, ifindex)


def remove_all(bpffs_dir: str) -> None:
    """Unlinks every XDP link pin (detaching their programs) and the xdp directory."""
    prune(bpffs_dir, set())
    try:
        os.rmdir(os.path.join(bpffs_dir, XDP_DIR))
    except OSError:
        pass  # gone, or holds something that is not ours
