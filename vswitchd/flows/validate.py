"""Validation of flow requests: FlowRequest -> canonical Rule, or an error in ovs-ofctl terms.

Messages name the field and the value the way an ovs-ofctl user writes them
(`tp_dst=80 needs tcp or udp`, `priority 70000 out of range 0..65535`,
`output:nosuch: no port nosuch on bridge br0`). Batch callers prefix them with `flow N: `.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Container

from vswitchd.datapath.constants import PACKET_IN_DEFAULT_LEN, PACKET_IN_MAX_LEN
from vswitchd.errors import FailedPrecondition, InvalidArgument, SwitchError, clip
from vswitchd.flows.model import (
    DEFAULT_PRIORITY,
    ETH_IP,
    ETH_IPV6,
    FIELD_BITS,
    FULL,
    MAX_PRIORITY,
    MAX_TIMEOUT,
    PROTO_TCP,
    PROTO_UDP,
    Action,
    FlowRequest,
    Match,
    Rule,
    mac_int,
)

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
VID_MIN, VID_MAX = 1, 4094


class FlowInvalid(InvalidArgument):
    """INVALID_ARGUMENT with a message in flow syntax (not InvalidArgument's generic form)."""

    def __init__(self, message: str, field: str = "", value: object = None) -> None:
        self.field = field
        self.value = value
        SwitchError.__init__(self, message)


class FlowConflict(FailedPrecondition):
    """The flow conflicts with a rule already in the table (overlap at the same priority)."""


def numbered(exc: SwitchError, n: int) -> SwitchError:
    """The same error, its message prefixed with `flow N: ` (N counts from 1)."""
    exc.args = (f"flow {n}: {exc}",)
    return exc


def _range(name: str, value: object, lo: int, hi: int, hexa: bool = False) -> int:
    if type(value) is int and lo <= value <= hi:  # the usual case, first (bool is no int here)
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        if hexa and isinstance(value, int):
            raise FlowInvalid(f"{name} {value:#x} out of range {lo:#06x}..{hi:#06x}", name, value)
        raise FlowInvalid(f"{name} {value} out of range {lo}..{hi}", name, value)
    return value


def _mac(name: str, text: str, mask: str) -> tuple[int, int] | None:
    if not isinstance(text, str) or not _MAC_RE.match(text):
        shown = f"{name}={clip(text)}" + (f"/{clip(mask)}" if mask else "")
        raise FlowInvalid(f"{shown}: not a MAC address (expected xx:xx:xx:xx:xx:xx)", name, text)
    m = FULL[name]
    if mask:
        if not _MAC_RE.match(mask):
            raise FlowInvalid(f"{name}={clip(text)}/{clip(mask)}: mask {clip(mask)} is not "
                              "a MAC address "
                              "(expected xx:xx:xx:xx:xx:xx)", name, mask)
        m = mac_int(mask)
    if m == 0:
        return None
    return (mac_int(text) & m, m)


def _bad_ip(name: str, text: object, family: int) -> FlowInvalid:
    kind = "IPv4" if family == socket.AF_INET else "IPv6"
    return FlowInvalid(f"{name}={clip(text)}: not an {kind} address or CIDR", name, text)


def _ip(name: str, text: str, family: int) -> tuple[int, int] | None:
    bits = FIELD_BITS[name]
    if not isinstance(text, str):
        raise _bad_ip(name, text, family)
    addr, slash, plen = text.partition("/")
    try:
        v = int.from_bytes(socket.inet_pton(family, addr), "big")
    except (OSError, ValueError):
        raise _bad_ip(name, text, family) from None
    n = bits
    if slash:
        if not plen.isdigit() or not 0 <= int(plen) <= bits:
            raise _bad_ip(name, text, family)
        n = int(plen)
    if n == 0:
        return None
    m = FULL[name] ^ ((1 << (bits - n)) - 1)
    return (v & m, m)


def _tp(name: str, value: object) -> tuple[int, int]:
    port, mask = value  # type: ignore[misc]
    _range(name, port, 0, 0xFFFF)
    if isinstance(mask, bool) or not isinstance(mask, int) or not 0 <= mask <= 0xFFFF:
        raise FlowInvalid(f"{name} mask {mask} out of range 0..0xffff (0 = exact)", name, mask)
    m = mask or 0xFFFF
    return (port & m, m)


def _shown(name: str, raw: object) -> str:
    """The field as the user wrote it, for prerequisite messages."""
    if name in ("tp_src", "tp_dst"):
        port, mask = raw  # type: ignore[misc]
        return f"{name}={port}" + (f"/{mask:#x}" if mask and mask != 0xFFFF else "")
    if name in ("dl_src", "dl_dst"):
        mac, mask = raw  # type: ignore[misc]
        return f"{name}={clip(mac)}" + (f"/{clip(mask)}" if mask else "")
    return f"{name}={clip(raw)}"


def match(raw: dict[str, object], *, bridge: str, ports: Container[str]) -> Match:
    """Validate and canonicalise a match (see FlowRequest for the raw form)."""
    return _match(raw, bridge, ports)[0]


def _match(raw: dict[str, object], bridge: str, ports: Container[str]
           ) -> tuple[Match, tuple[tuple[str, int], ...]]:
    """(the match, its signature: Rule.signature, made here on the way for less than it
    costs to derive from the match)."""
    raw = raw or {}
    for name in raw:
        if name not in FIELD_BITS:
            first = sorted(n for n in raw if n not in FIELD_BITS)[0]
            raise FlowInvalid(f"unknown field {clip(first)}", first, raw[first])
    # Fields are checked in Match order; each absent field costs one dict lookup (10 000 rules
    # a batch). A field whose mask is zero (dl_src=../00:00:.., nw_src=../0) is a wildcard: None.
    get = raw.get
    in_port = dl_src = dl_dst = dl_vlan = tp_src = tp_dst = None
    nw = [None, None, None, None]  # nw_src, nw_dst, ipv6_src, ipv6_dst
    sig = []  # (field, mask) of the fields present, in Match order
    if "in_port" in raw:
        in_port = raw["in_port"]
        if not isinstance(in_port, str) or in_port not in ports:
            raise FlowInvalid(f"in_port={clip(in_port)}: no port {clip(in_port)} on bridge "
                              f"{bridge}",
                              "in_port", in_port)
        sig.append(_SIG_IN_PORT)
    if "dl_src" in raw:
        mac, mask = raw["dl_src"]  # type: ignore[misc]
        dl_src = _mac("dl_src", mac, mask)
        if dl_src is not None:
            sig.append(("dl_src", dl_src[1]))
    if "dl_dst" in raw:
        mac, mask = raw["dl_dst"]  # type: ignore[misc]
        dl_dst = _mac("dl_dst", mac, mask)
        if dl_dst is not None:
            sig.append(("dl_dst", dl_dst[1]))
    dl_type = get("dl_type")
    if dl_type is not None:
        _range("dl_type", dl_type, 0, 0xFFFF, hexa=True)
        sig.append(_SIG_DL_TYPE)
    if "dl_vlan" in raw:
        dl_vlan = _range("dl_vlan", raw["dl_vlan"], 0, 4095)
        sig.append(_SIG_DL_VLAN)
    for i, (name, family, need, how) in enumerate(_IP_FIELDS):
        if name in raw:
            value = _ip(name, raw[name], family)  # type: ignore[arg-type]
            if dl_type != need:
                raise FlowInvalid(f"{_shown(name, raw[name])} needs {how}", name, raw[name])
            nw[i] = value
            if value is not None:
                sig.append((name, value[1]))
    nw_proto = get("nw_proto")
    if nw_proto is not None:
        _range("nw_proto", nw_proto, 0, 255)
        if dl_type != ETH_IP and dl_type != ETH_IPV6:
            raise FlowInvalid(f"nw_proto={nw_proto} needs ip or ipv6 "
                              "(dl_type=0x0800 or 0x86dd)", "nw_proto", nw_proto)
        sig.append(_SIG_NW_PROTO)
    if "tp_src" in raw:
        tp_src = _tp_checked("tp_src", raw["tp_src"], nw_proto)
        sig.append(("tp_src", tp_src[1]))
    if "tp_dst" in raw:
        tp_dst = _tp_checked("tp_dst", raw["tp_dst"], nw_proto)
        sig.append(("tp_dst", tp_dst[1]))
    # tuple.__new__: what Match(...) does, without its generated __new__'s argument handling
    m = tuple.__new__(Match, (in_port, dl_src, dl_dst, dl_type, dl_vlan, *nw, nw_proto, tp_src,
                              tp_dst))
    return m, tuple(sig)


_SIG_IN_PORT, _SIG_DL_TYPE, _SIG_DL_VLAN, _SIG_NW_PROTO = (
    (name, FULL[name]) for name in ("in_port", "dl_type", "dl_vlan", "nw_proto"))


_IP_FIELDS = (
    ("nw_src", socket.AF_INET, ETH_IP, "ip (dl_type=0x0800)"),
    ("nw_dst", socket.AF_INET, ETH_IP, "ip (dl_type=0x0800)"),
    ("ipv6_src", socket.AF_INET6, ETH_IPV6, "ipv6 (dl_type=0x86dd)"),
    ("ipv6_dst", socket.AF_INET6, ETH_IPV6, "ipv6 (dl_type=0x86dd)"),
)


def _tp_checked(name: str, raw: object, nw_proto: object) -> tuple[int, int]:
    value = _tp(name, raw)
    if nw_proto != PROTO_TCP and nw_proto != PROTO_UDP:
        raise FlowInvalid(f"{_shown(name, raw)} needs tcp or udp (nw_proto=6 or 17)", name, raw)
    return value


def actions(raw: list[tuple[str, object]], *, bridge: str, ports: Container[str],
            in_port: str | None, max_actions: int) -> tuple[Action, ...]:
    if len(raw) == 1 and max_actions >= 1:  # the usual single action without a port
        kind = raw[0][0]
        if kind in _SINGLE:
            return _SINGLE[kind]
    if not raw:
        raise FlowInvalid("actions= is required; use actions=drop to drop", "actions", "")
    out = []
    for i, (kind, arg) in enumerate(raw, 1):
        if kind in ("drop", "normal", "flood", "strip_vlan"):
            out.append(Action(kind))
        elif kind == "output":
            if not isinstance(arg, str) or arg not in ports:
                raise FlowInvalid(f"output:{clip(arg)}: no port {clip(arg)} on bridge {bridge}",
                                  "output", arg)
            if arg == in_port:
                raise FlowInvalid(f"output:{arg}: {arg} is the in_port of this flow and a frame "
                                  "is never sent back out of the port it came in on", "output",
                                  arg)
            out.append(Action("output", arg))
        elif kind == "mod_vlan_vid":
            out.append(Action(kind, _range("mod_vlan_vid", arg, VID_MIN, VID_MAX)))
        elif kind == "controller":
            out.append(_controller(arg))
        elif not kind:
            raise FlowInvalid(f"action {i} in actions is empty (set one of drop, normal, flood, "
                              "output, mod_vlan_vid, strip_vlan, controller)", "actions", i)
        else:
            raise FlowInvalid(f"unknown action {clip(kind)}", "actions", kind)
    if len(out) > 1 and any(a.kind == "drop" for a in out):
        listed = ",".join(str(a) for a in out)
        raise FlowInvalid(f"actions={listed}: drop cannot be combined with other actions",
                          "actions", listed)
    if len(out) > max_actions:
        raise FlowInvalid(f"{len(out)} actions: the datapath allows at most {max_actions} "
                          "per flow", "actions", len(out))
    if sum(1 for a in out if a.kind == "controller") > 1:
        listed = ",".join(str(a) for a in out)
        raise FlowInvalid(f"actions={listed}: controller can appear only once (one packet-in "
                          "a frame)", "actions", listed)
    ports_out = [a.arg for a in out if a.kind == "output"]
    for port in ports_out:
        if ports_out.count(port) > 1:
            raise FlowInvalid(f"output:{port}: the flow outputs to {port} twice (a frame leaves "
                              "a port once)", "output", port)
    return tuple(out)


_SINGLE = {kind: (Action(kind),) for kind in ("drop", "normal", "flood", "strip_vlan")}


def _controller(max_len: object) -> Action:
    """controller[:max_len]: None or 0 is the datapath's default length (the API's max_len 0),
    kept as `controller`."""
    if max_len is None or max_len == 0 and type(max_len) is int:
        return Action("controller")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or \
            not 1 <= max_len <= PACKET_IN_MAX_LEN:
        raise FlowInvalid(f"controller:{clip(max_len)}: max_len out of range "
                          f"1..{PACKET_IN_MAX_LEN} bytes (a whole frame; leave it out for "
                          f"{PACKET_IN_DEFAULT_LEN})", "controller", max_len)
    return Action("controller", max_len)


def priority(value: int | None) -> int:
    """A priority (None = the default 32768)."""
    return _range("priority", DEFAULT_PRIORITY if value is None else value, 0, MAX_PRIORITY)


def flow(req: FlowRequest, *, bridge: str, ports: Container[str], max_actions: int) -> Rule:
    """A canonical Rule (rule_id 0, not installed) or FlowInvalid."""
    prio = priority(req.priority)
    idle, hard, cookie = req.idle_timeout, req.hard_timeout, req.cookie
    if not (type(idle) is int and type(hard) is int and type(cookie) is int
            and 0 <= idle <= MAX_TIMEOUT and 0 <= hard <= MAX_TIMEOUT
            and 0 <= cookie < 1 << 64):  # the usual case in one test, else the messages
        _range("idle_timeout", idle, 0, MAX_TIMEOUT)
        _range("hard_timeout", hard, 0, MAX_TIMEOUT)
        _range("cookie", cookie, 0, (1 << 64) - 1, hexa=True)
    m, sig = _match(req.match or {}, bridge, ports)
    acts = actions(req.actions or [], bridge=bridge, ports=ports, in_port=m.in_port,
                   max_actions=max_actions)
    return Rule.new(prio, m, acts, cookie, idle, hard, sig)
