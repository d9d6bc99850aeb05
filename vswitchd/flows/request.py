"""Flows as clients send them (vswapi Flow messages, or ovs-ofctl text through the client
library's parser) turned into FlowRequests: raw values that vswitchd.flows.validate checks. An
unset optional or message field is a wildcard, an unset priority is the default (32768)."""

from __future__ import annotations

from vswapi import switch_pb2 as pb
from vswitchd.flows.model import FlowRequest

_NO_ARGUMENT = ("drop", "normal", "flood", "strip_vlan")  # actions that carry no value
_MAC_MATCH = ("dl_src", "dl_dst")
_PORT_MATCH = ("tp_src", "tp_dst")


def match_dict(msg: pb.FlowMatch) -> dict[str, object]:
    """The fields of MSG that are set, as raw values."""
    # ListFields: only the fields that are set (one call, not a HasField per field).
    out: dict[str, object] = {}
    for fd, value in msg.ListFields():
        name = fd.name
        if name in _MAC_MATCH:
            out[name] = (value.mac, value.mask)
        elif name in _PORT_MATCH:
            out[name] = (value.port, value.mask)
        else:
            out[name] = value
    return out


def from_message(msg: pb.Flow) -> FlowRequest:
    actions: list[tuple[str, object]] = []
    for action in msg.actions:
        kind = action.WhichOneof("action") or ""
        if kind == "controller":  # max_len 0: the default
            actions.append((kind, action.controller.max_len))
            continue
        actions.append((kind, None if kind in _NO_ARGUMENT or not kind else getattr(action, kind)))
    return FlowRequest(msg.priority if msg.HasField("priority") else None, msg.cookie,
                       msg.idle_timeout, msg.hard_timeout, match_dict(msg.match), actions)


def from_text(text: str) -> FlowRequest:
    """A flow in ovs-ofctl syntax; FlowSyntaxError (vswapi.flowspec) when it does not parse."""
    from vswapi.flowspec import parse_flow

    return from_message(parse_flow(text))


def no_argument(kind: str) -> bool:
    return kind in _NO_ARGUMENT
