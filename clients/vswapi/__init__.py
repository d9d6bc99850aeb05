"""vswapi: the Python client of vswitchd's gRPC API, for controllers and tools.

    from vswapi import Switch, Aborted

    with Switch.connect() as sw:
        ...

`Switch` (vswapi.controller) has a method per call; the exceptions are vswapi.errors'; the
messages are vswapi.switch_pb2's. Names are imported on first use (PEP 562), so a tool that
needs only the stubs (vswctl) does not load the rest.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Switch": "vswapi.controller", "Listed": "vswapi.controller",
         "Lost": "vswapi.streams", "pb": "vswapi.switch_pb2"}
_ERRORS = ("VswError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
           "Aborted", "OutOfRange", "ResyncNeeded", "ResourceExhausted", "PermissionDenied",
           "Unauthenticated", "Unavailable", "DeadlineExceeded", "Cancelled", "Internal")
__all__ = [*_LAZY, *_ERRORS]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _ERRORS:
        return getattr(importlib.import_module("vswapi.errors"), name)
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if name == "pb" else getattr(module, name)
    raise AttributeError(f"module 'vswapi' has no attribute {name!r}")
