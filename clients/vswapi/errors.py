"""vswitchd's refusals as Python exceptions: one class per canonical gRPC status code, each
carrying the code, the daemon's message and, for INVALID_ARGUMENT, the request field at fault
(the daemon sends it in the trailing metadata `vswitchd-field`).

    try:
        switch.update_port("br0", "c1", vlan=10, expected_revision=rev)
    except vswapi.Aborted:
        ...  # it changed meanwhile: read it again
    except vswapi.InvalidArgument as exc:
        print(exc.field, exc.details)
"""

from __future__ import annotations

import grpc

FIELD_KEY = "vswitchd-field"


class VswError(Exception):
    """A call failed. code: the grpc.StatusCode; details: the daemon's message (it names the
    problem and what to do); field: the request field at fault, when the daemon said."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: grpc.StatusCode | None = None, field: str = ""):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code
        self.field = field

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class InvalidArgument(VswError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(VswError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VswError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(VswError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(VswError):
    """A compare-and-swap lost (expected_revision): the object changed meanwhile."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(VswError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResyncNeeded(OutOfRange):
    """An event stream cannot resume: the daemon no longer holds the events after the revision
    (too old, or from before its store was reset). List again and subscribe from the list's
    revision."""


class ResourceExhausted(VswError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(VswError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(VswError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(VswError):
    """The daemon cannot be reached (not running, restarting, wrong socket)."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(VswError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(VswError):
    code = grpc.StatusCode.CANCELLED


class Internal(VswError):
    """A bug in the daemon (its log says more)."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, Aborted, OutOfRange,
    ResourceExhausted, PermissionDenied, Unauthenticated, Unavailable, DeadlineExceeded,
    Cancelled, Internal)}


def from_rpc_error(exc: grpc.RpcError) -> VswError:
    """The exception for a failed call (grpc.RpcError as raised by the stubs)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or str(code)
    field = ""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == FIELD_KEY:
            field = value if isinstance(value, str) else value.decode()
    cls = _BY_CODE.get(code, VswError)
    return cls(details, code, field)
