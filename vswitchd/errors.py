"""Errors that user input and system state can cause, each tied to one canonical gRPC code.

Every layer (validation, netlink, datapath, switch) raises these; the API layer maps them to
status codes, so a user error never becomes UNKNOWN.
"""

from __future__ import annotations


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
        super().__init__(f"{field} {value!r}: {problem}")


class AlreadyExists(SwitchError):
    code_name = "ALREADY_EXISTS"


class NotFound(SwitchError):
    code_name = "NOT_FOUND"


class FailedPrecondition(SwitchError):
    code_name = "FAILED_PRECONDITION"


class Unavailable(SwitchError):
    code_name = "UNAVAILABLE"
