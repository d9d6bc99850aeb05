"""Kernel errors (NetlinkError, or OSError from a syscall) -> the SwitchError a caller sees, in
one place. No pyroute2 import here: the datapath uses it too."""

from __future__ import annotations

import errno
import os

from vswitchd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchError,
    Unavailable,
)


def errno_of(exc: BaseException) -> int:
    """The errno of a NetlinkError (.code) or an OSError (.errno); 0 when it has none."""
    return getattr(exc, "code", None) or getattr(exc, "errno", None) or 0


def translate(
    exc: BaseException,
    action: str,
    *,
    name: str | None = None,
    field: str | None = None,
    value: object = None,
) -> SwitchError:
    """Map a kernel error to the SwitchError a caller can act on.

    ACTION says what was being done ("create bridge br0"); NAME is the interface concerned;
    FIELD/VALUE, when given, is the user-supplied value an EINVAL/ERANGE most likely refers to.
    """
    if isinstance(exc, SwitchError):
        return exc
    code = errno_of(exc)
    reason = os.strerror(code) if code else str(exc)
    what = f"cannot {action}"
    if code == errno.EEXIST:
        return AlreadyExists(f"{what}: interface {name} already exists" if name else
                             f"{what}: it already exists")
    if code in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
        return NotFound(f"{what}: interface {name} does not exist" if name else
                        f"{what}: {reason}")
    if code in (errno.EINVAL, errno.ERANGE, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) and field:
        return InvalidArgument(field, value, f"rejected by the kernel ({what}: {reason})")
    if code in (errno.EPERM, errno.EACCES):
        return FailedPrecondition(f"{what}: permission denied (vswitchd needs CAP_NET_ADMIN)")
    if code in (errno.EBUSY, errno.ELOOP, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT):
        return FailedPrecondition(f"{what}: {reason}")
    if code in (errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN, errno.ETIMEDOUT):
        return Unavailable(f"{what}: {reason}; retry later")
    if code == errno.EINVAL:
        return InvalidArgument("request", action, f"rejected by the kernel: {reason}")
    return SwitchError(f"{what}: {reason} (errno {code})")


def device_error(exc: BaseException, ifindex: int, action: str = "", *,
                 where: str = "") -> SwitchError:
    """Map a kernel error of an operation on the device IFINDEX (tc, TCX, test runs):
    NotFound "no device with ifindex N{where}" when there is no such device, else Unavailable
    "{action}: {exc}" (just the error without an action)."""
    if errno_of(exc) == errno.ENODEV:
        return NotFound(f"no device with ifindex {ifindex}{where}")
    return Unavailable(f"{action}: {exc}" if action else str(exc))
