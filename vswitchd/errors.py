"""Errors that user input and system state can cause, each tied to one canonical gRPC code.

Every layer (validation, netlink, datapath, switch) raises these; the API layer maps them to
status codes, so a user error never becomes UNKNOWN.

A message quotes what the user sent through `shown` (quoted) or `clip` (as is; both from
vswapi.names, which vswctl shares): whole when it is short, else a short prefix and its length.
gRPC carries the message in a header of limited size: a message that echoed a 100 000-character
value would be lost (RESOURCE_EXHAUSTED "metadata size exceeds hard limit") instead of naming
the problem.
"""

from __future__ import annotations

from vswapi.names import clip, shown

__all__ = ["AlreadyExists", "FailedPrecondition", "InvalidArgument", "NotFound",
           "ResourceExhausted", "SwitchError", "Unavailable", "clip", "shown"]


class SwitchError(Exception):
    """Base class: a message a person can act on."""

    code_name = "INTERNAL"


class InvalidArgument(SwitchError):
    """A field has a bad value. The message names the field and the value."""

    code_name = "INVALID_ARGUMENT"

    def __init__(self, field: str, value: object, problem: str):
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field} {shown(value)}: {problem}")


class AlreadyExists(SwitchError):
    code_name = "ALREADY_EXISTS"


class NotFound(SwitchError):
    code_name = "NOT_FOUND"


class FailedPrecondition(SwitchError):
    code_name = "FAILED_PRECONDITION"


class ResourceExhausted(SwitchError):
    """A limit is reached (e.g. the number of watch streams); the message names it."""

    code_name = "RESOURCE_EXHAUSTED"


class Unavailable(SwitchError):
    code_name = "UNAVAILABLE"


class Aborted(SwitchError):
    """A compare-and-swap lost: the object's revision is not the one the caller expected."""

    code_name = "ABORTED"


class OutOfRange(SwitchError):
    """A revision the daemon cannot serve events from (too old, or ahead of it)."""

    code_name = "OUT_OF_RANGE"


def check_revision(what: str, expected: int | None, actual: int) -> None:
    """Aborted unless EXPECTED (None: no condition) is ACTUAL, the revision of WHAT."""
    if expected is not None and expected != actual:
        raise Aborted(f"{what} is at revision {actual}, not {expected}: it changed meanwhile "
                      "(read it again and retry)")
