"""The packet of a trace request, and the filter of a watch request, from raw match fields.

Both take the raw form of a FlowRequest's match (see vswitchd.flows.model.FlowRequest) and reuse
the flow validation (prerequisites, ranges, port names), so errors read the same as add-flow's.
A trace describes ONE packet: every value must be exact.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from vswitchd.errors import InvalidArgument
from vswitchd.flows import validate as flow_validate
from vswitchd.flows.model import FULL, Match, Rule, format_value, ipv4_str, ipv6_str, mac_str
from vswitchd.flows.views import dp_fields
from vswitchd.trace.frames import FrameSpec


def packet_match(raw: dict[str, object], *, bridge: str, ports: Container[str]) -> Match:
    """Validate the fields of a packet to trace: in_port is required, values must be exact."""
    if not raw or raw.get("in_port") in (None, ""):
        raise InvalidArgument("in_port", raw.get("in_port", "") if raw else "",
                              "a trace needs the port the packet arrives on (in_port=PORT)")
    m = flow_validate.match(raw, bridge=bridge, ports=ports)
    for name, value in zip(m._fields, m, strict=True):
        if isinstance(value, tuple) and value[1] != FULL[name]:
            raise InvalidArgument(
                name, format_value(name, value),
                "a trace describes one packet: give an exact value, not a mask or prefix")
    for name in ("dl_src", "dl_dst", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst",
                 "tp_src", "tp_dst"):
        if name in raw and getattr(m, name) is None:  # a zero mask or /0 made it a wildcard
            raise InvalidArgument(
                name, raw[name],
                "a trace describes one packet: give an exact value, not a mask or prefix")
    return m


def frame_spec(m: Match, truncate: int = 0) -> FrameSpec:
    """The FrameSpec of an exact Match (fields not given keep FrameSpec's defaults)."""
    kw: dict[str, Any] = {"truncate": truncate}
    if m.dl_src is not None:
        kw["dl_src"] = mac_str(m.dl_src[0])
    if m.dl_dst is not None:
        kw["dl_dst"] = mac_str(m.dl_dst[0])
    for name in ("dl_type", "dl_vlan", "nw_proto"):
        if getattr(m, name) is not None:
            kw[name] = getattr(m, name)
    for name in ("nw_src", "nw_dst"):
        if getattr(m, name) is not None:
            kw[name] = ipv4_str(getattr(m, name)[0])
    for name in ("ipv6_src", "ipv6_dst"):
        if getattr(m, name) is not None:
            kw[name] = ipv6_str(getattr(m, name)[0])
    for name in ("tp_src", "tp_dst"):
        if getattr(m, name) is not None:
            kw[name] = getattr(m, name)[0]
    return FrameSpec(**kw)


def filter_fields(m: Match, ifindex: Callable[[str], int]
                  ) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    """(in_port ifindex or 0, the other fields in DpRule form) of a watch filter's match."""
    ifs = (ifindex(m.in_port),) if m.in_port is not None else ()
    fields = dp_fields(Rule(match=m), ifs)
    in_port = next((v for name, v, _m in fields if name == "in_port"), 0)
    return in_port, tuple(f for f in fields if f[0] != "in_port")
