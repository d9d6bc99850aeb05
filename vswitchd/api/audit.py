"""The audit log: one line per admin call (each call that may change the switch) and per refused
call, through the `vswitchd.audit` logger: the daemon log, and api.audit_log when set.

    call=CreateBridge resource="bridge.name=br0" result=OK role=admin
        who="uid=0 gid=0 pid=4242" listener=unix:/run/vswitchd/vswitchd.sock
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

log = logging.getLogger("vswitchd.audit")
# always written, whatever log_level says (the root logger's handlers take every level)
log.setLevel(logging.INFO)

_MAX_VALUE = 64   # characters of one value
_MAX_FIELDS = 4   # fields of a request named
_MAX_ITEMS = 3    # items of a repeated field named


def open_file(path: str) -> logging.Handler:
    """A handler appending to PATH, a file created 0600 (an existing one keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8", buffering=1))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    return handler


def value(text: str) -> str:
    """TEXT as one token of the line: quoted (JSON) when it has blanks, quotes or `=`."""
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text)


def _clip(v: Any) -> str:
    text = v.hex() if isinstance(v, bytes) else str(v)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + "..."


def resource(request: Message) -> str:
    """What the request names, e.g. `bridge.name=br0 may_exist=True`: its scalar fields and the
    names of the objects it carries, clipped, never a whole flow table or frame."""
    parts: list[str] = []
    for fd, v in request.ListFields():
        if len(parts) == _MAX_FIELDS:
            parts.append("...")
            break
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            items = v if fd.is_repeated else [v]
            names = [getattr(m, "name", "") for m in items[:_MAX_ITEMS]
                     if "name" in m.DESCRIPTOR.fields_by_name]
            if names:
                parts.append(f"{fd.name}.name={_clip(','.join(names))}")
            elif fd.is_repeated:
                parts.append(f"{fd.name}=[{len(v)}]")
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            parts.append(f"{fd.name}=<{len(v)} bytes>")
        elif fd.is_repeated:
            more = ",..." if len(v) > _MAX_ITEMS else ""
            parts.append(f"{fd.name}={_clip(','.join(map(str, v[:_MAX_ITEMS])))}{more}")
        else:
            parts.append(f"{fd.name}={_clip(v)}")
    return " ".join(parts)


def record(call: str, request: Message | None, result: str, role: str | None, who: str,
           listener: str) -> None:
    what = resource(request) if request is not None else ""
    log.info("call=%s resource=%s result=%s role=%s who=%s listener=%s", call,
             value(what), result, role or "none", value(who), value(listener))
