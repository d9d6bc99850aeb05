"""Flow rules as text, in the syntax ovs-ofctl users know, to and from `switch_pb2` messages.

Shared by vswctl and controllers; imports only the generated stubs (and the standard library).

    from vswapi.flowspec import parse_flow, format_flow, parse_match_spec

    flow = parse_flow("priority=200,in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=drop")
    client.AddFlows(pb.AddFlowsRequest(bridge="br0", flows=[flow]))
    format_flow(flow)  # 'priority=200,in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=drop'

    spec = parse_match_spec("cookie=0x1/-1")          # for deletes: match + priority + cookie/mask
    client.DeleteFlows(spec.delete_request("br0"))

Syntax: `key=value` and shorthand tokens separated by commas (or whitespace, as in ovs-ofctl),
then `actions=` and a comma-separated action list (everything after `actions=`). Whitespace
around tokens and around `=`, `:` and `/` is ignored. Numbers are decimal or 0x hex.

Only syntax is checked here. Prerequisites between fields (`tp_dst` needs `tcp` or `udp`, ...)
are the daemon's to check: it refuses with INVALID_ARGUMENT naming the field.

Values are normalized so that equal rules give equal messages: MACs in lower case, an all-ones
mask dropped (exact match), IP networks with their host bits cleared (`10.0.0.1/24` ->
`10.0.0.0/24`, `10.0.0.1/32` -> `10.0.0.1`), a masked port ANDed with its mask. `format_flow`
prints the shortest equivalent text (`tcp` for dl_type=0x0800,nw_proto=6), and
`parse_flow(format_flow(f))` gives `f` back (read-only counters aside).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vswapi import switch_pb2 as pb

DEFAULT_PRIORITY = 32768
MAX_PRIORITY = 65535
MAX_TIMEOUT = 65535  # seconds, as OpenFlow's 16-bit timeouts
MAX_VLAN = 4095
# ControllerAction.max_len (proto/vswapi/switch.proto): bytes of the frame a packet-in carries,
# at most a whole frame; 0 (written `controller`) is the daemon's default, 128
MAX_CONTROLLER_LEN = 1518
U16 = 0xFFFF
U64 = (1 << 64) - 1

ETH_IP = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806

# shorthand -> (dl_type, nw_proto or None)
SHORTHANDS: dict[str, tuple[int, int | None]] = {
    "ip": (ETH_IP, None),
    "ipv6": (ETH_IPV6, None),
    "arp": (ETH_ARP, None),
    "icmp": (ETH_IP, 1),
    "icmp6": (ETH_IPV6, 58),
    "tcp": (ETH_IP, 6),
    "udp": (ETH_IP, 17),
    "tcp6": (ETH_IPV6, 6),
    "udp6": (ETH_IPV6, 17),
}
_SHORTHAND_OF = {v: k for k, v in SHORTHANDS.items()}

MATCH_FIELDS = ("in_port", "dl_src", "dl_dst", "dl_type", "dl_vlan", "nw_src", "nw_dst",
                "ipv6_src", "ipv6_dst", "nw_proto", "tp_src", "tp_dst")
FLOW_FIELDS = ("priority", "cookie", "idle_timeout", "hard_timeout")
NO_ARG_ACTIONS = ("drop", "normal", "flood", "strip_vlan")
_MATCH_KEYS = frozenset(MATCH_FIELDS)
_FLOW_KEYS = frozenset(FLOW_FIELDS)
_KNOWN_KEYS = _MATCH_KEYS | _FLOW_KEYS


class FlowSyntaxError(ValueError):
    """Text that is not a valid flow, match or action list; the message names field and value."""


@dataclass
class MatchSpec:
    """What selects flows to delete: a match, the priority (strict deletes) and a cookie filter.

    cookie_mask 0 means no cookie filter; `cookie=V` alone means `cookie=V/-1` (exact).
    """

    match: pb.FlowMatch = field(default_factory=pb.FlowMatch)
    priority: int | None = None
    cookie: int = 0
    cookie_mask: int = 0

    @property
    def has_match(self) -> bool:
        """True when at least one match field was given (otherwise: every flow)."""
        return bool(self.match.ListFields())

    def delete_request(self, bridge: str, strict: bool = False) -> pb.DeleteFlowsRequest:
        req = pb.DeleteFlowsRequest(bridge=bridge, strict=strict, cookie=self.cookie,
                                    cookie_mask=self.cookie_mask)
        if self.has_match or strict:  # strict: the empty match is a match like any other
            req.match.CopyFrom(self.match)
        if self.priority is not None:
            req.priority = self.priority
        return req


# ---------------------------------------------------------------- tokens

_WS_AROUND = re.compile(r"\s*([=:/])\s*")
_ACTIONS = re.compile(r"(?:^|[,\s])actions=")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


_SPACE = re.compile(r"\s")
_SPLIT = re.compile(r"[,\s]+")


def _tokens(text: str) -> list[str]:
    if _SPACE.search(text) is None:  # the usual case, without the regex split
        return [t for t in text.split(",") if t]
    return [t for t in _SPLIT.split(text) if t]


def _split_actions(text: str) -> tuple[str, str | None]:
    """(fields text, actions text or None when there is no `actions=`)."""
    norm = _WS_AROUND.sub(r"\1", text) if _SPACE.search(text) is not None else text
    i = norm.find("actions=")
    if i > 0 and norm[i - 1] != ",":  # not the usual `...,actions=`: the full rule
        m = _ACTIONS.search(norm)
        if not m:
            return norm, None
        return norm[: m.start()], norm[m.end():]
    if i < 0:
        return norm, None
    return norm[:max(i - 1, 0)], norm[i + 8:]


def _number(text: str) -> int | None:
    if not _NUMBER.fullmatch(text):
        return None
    return int(text, 16) if text[:2].lower() == "0x" else int(text, 10)


def _uint(key: str, value: str, hi: int, hi_text: str | None = None, sep: str = "=") -> int:
    if value.isdigit() and value.isascii() and int(value) <= hi:  # plain decimal, in range
        return int(value)
    n = _number(value)
    if n is None:
        raise FlowSyntaxError(f"{key}{sep}{value}: not a number")
    if n > hi:
        raise FlowSyntaxError(f"{key} {value} out of range 0..{hi_text or hi}")
    return n


# ---------------------------------------------------------------- field values

def _mac_match(key: str, value: str) -> pb.MacMatch:
    mac, slash, mask = value.partition("/")
    if not _MAC.fullmatch(mac):
        raise FlowSyntaxError(f"{key} {mac}: not a MAC address")
    if slash and not _MAC.fullmatch(mask):
        raise FlowSyntaxError(f"{key} {value}: mask {mask or '(empty)'} is not a MAC address")
    mask = mask.lower()
    if mask == "ff:ff:ff:ff:ff:ff":
        mask = ""
    return pb.MacMatch(mac=mac.lower(), mask=mask)


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_FAST = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/([1-9]?[0-9]))?")


def _ipv4(key: str, value: str) -> str:
    m = _IPV4_FAST.fullmatch(value)
    if m is not None and (m[5] is None or int(m[5]) <= 32):
        # The common forms (a.b.c.d, a.b.c.d/N) without ipaddress, which costs ~10 us a rule;
        # the regex takes only what IPv4Network(strict=False) reads the same way.
        plen = 32 if m[5] is None else int(m[5])
        addr = (int(m[1]) << 24 | int(m[2]) << 16 | int(m[3]) << 8 | int(m[4])) \
            & (0xFFFFFFFF ^ (0xFFFFFFFF >> plen))
        text = f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"
        return text if plen == 32 else f"{text}/{plen}"
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise FlowSyntaxError(f"{key} {value}: not an IPv4 address or CIDR") from None
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def _ipv6(key: str, value: str) -> str:
    try:
        net = ipaddress.IPv6Network(value, strict=False)
    except ValueError:
        raise FlowSyntaxError(f"{key} {value}: not an IPv6 address or CIDR") from None
    return str(net.network_address) if net.prefixlen == 128 else str(net)


def _set_port(fields: _Fields, key: str, value: str, token: str) -> None:
    """tp_src/tp_dst set in place (no message to copy); present even for port 0."""
    port, mask = _port_value(key, value)
    target = getattr(fields.match, key)
    target.SetInParent()
    target.port = port
    if mask:
        target.mask = mask


def _port_value(key: str, value: str) -> tuple[int, int]:
    """(port, mask), mask 0 for an exact port (as PortMatch has it)."""
    if value.isdigit() and value.isascii() and int(value) <= U16:  # the usual: a plain port
        return int(value), 0
    port_text, slash, mask_text = value.partition("/")
    port = _number(port_text)
    if port is None:
        raise FlowSyntaxError(f"{key}={value}: not a port number")
    if port > U16:
        raise FlowSyntaxError(f"{key} {port_text} out of range 0..65535")
    if not slash:
        return port, 0
    mask = _number(mask_text)
    if mask is None:
        raise FlowSyntaxError(f"{key}={value}: mask {mask_text or '(empty)'} is not a number")
    if mask > U16:
        raise FlowSyntaxError(f"{key} mask {mask_text} out of range 0..0xffff")
    if mask == 0:
        # The proto reads mask 0 as "exact"; a zero mask would match every port anyway.
        raise FlowSyntaxError(f"{key}={value}: mask 0 matches every port (leave {key} out)")
    if mask == U16:
        return port, 0
    return port & mask, mask


# ---------------------------------------------------------------- fields

class _Fields:
    """Parses the `key=value` / shorthand tokens before `actions=` into a FlowMatch."""

    def __init__(self, extra_keys: Iterable[str], match: pb.FlowMatch | None = None) -> None:
        self.match = pb.FlowMatch() if match is None else match
        self.extra: dict[str, str] = {}       # priority, cookie, ... (raw values)
        self._extra_keys = extra_keys if isinstance(extra_keys, frozenset) else frozenset(
            extra_keys)
        self._seen: set[str] = set()
        self._origin: dict[str, tuple[int, str]] = {}  # dl_type / nw_proto -> (value, token)

    def _set(self, name: str, value: int, token: str) -> None:
        """Set dl_type or nw_proto, refusing a token that contradicts an earlier one."""
        if name in self._origin:
            old, old_token = self._origin[name]
            if old != value:
                show = (lambda v: f"0x{v:04x}") if name == "dl_type" else str
                raise FlowSyntaxError(
                    f"{token} conflicts with {old_token} ({name} {show(value)} vs {show(old)})")
            return
        self._origin[name] = (value, token)
        setattr(self.match, name, value)

    def add(self, token: str) -> None:
        key, eq, value = token.partition("=")
        if key in self._seen:
            raise FlowSyntaxError(f"duplicate field {key}")
        self._seen.add(key)
        if value:  # the usual tokens first: a match field or an extra key with a value
            setter = _MATCH_SETTERS.get(key)
            if setter is not None:
                setter(self, key, value, token)
                return
            if key in self._extra_keys:
                self.extra[key] = value
                return
        if key in SHORTHANDS:
            if eq:
                raise FlowSyntaxError(f"{token}: {key} takes no value")
            dl_type, nw_proto = SHORTHANDS[key]
            self._set("dl_type", dl_type, key)
            if nw_proto is not None:
                self._set("nw_proto", nw_proto, key)
            return
        if key == "actions":  # a bare `actions` (with `=` it would have ended the fields)
            raise FlowSyntaxError("actions= is missing" if "priority" in self._extra_keys
                                  else "actions= cannot be used in a match")
        if key not in _KNOWN_KEYS:
            raise FlowSyntaxError(f"unknown field {key}")
        if key not in _MATCH_KEYS and key not in self._extra_keys:
            raise FlowSyntaxError(f"{key} cannot be used in a match")
        if not value:
            raise FlowSyntaxError(f"{key} needs a value ({key}=VALUE)")
        if key in self._extra_keys:
            self.extra[key] = value
            return
        _MATCH_SETTERS[key](self, key, value, token)


# key -> setter(fields, key, value, token) of each match field (value not empty)
_MATCH_SETTERS: dict[str, Callable[[_Fields, str, str, str], None]] = {
    "in_port": lambda f, k, v, t: setattr(f.match, "in_port", v),
    "dl_src": lambda f, k, v, t: f.match.dl_src.CopyFrom(_mac_match(k, v)),
    "dl_dst": lambda f, k, v, t: f.match.dl_dst.CopyFrom(_mac_match(k, v)),
    "dl_type": lambda f, k, v, t: f._set("dl_type", _uint(k, v, U16, "0xffff"), t),
    "dl_vlan": lambda f, k, v, t: setattr(f.match, "dl_vlan", _uint(k, v, MAX_VLAN)),
    "nw_src": lambda f, k, v, t: setattr(f.match, "nw_src", _ipv4(k, v)),
    "nw_dst": lambda f, k, v, t: setattr(f.match, "nw_dst", _ipv4(k, v)),
    "ipv6_src": lambda f, k, v, t: setattr(f.match, "ipv6_src", _ipv6(k, v)),
    "ipv6_dst": lambda f, k, v, t: setattr(f.match, "ipv6_dst", _ipv6(k, v)),
    "nw_proto": lambda f, k, v, t: f._set("nw_proto", _uint(k, v, 255), t),
    "tp_src": _set_port,
    "tp_dst": _set_port,
}
assert set(_MATCH_SETTERS) == set(MATCH_FIELDS)


def _parse_fields(text: str, extra_keys: Iterable[str],
                  match: pb.FlowMatch | None = None) -> _Fields:
    fields = _Fields(extra_keys, match)
    for token in _tokens(text):
        fields.add(token)
    return fields


def _cookie(value: str) -> int:
    return _uint("cookie", value, U64, "0xffffffffffffffff")


def _cookie_mask(value: str, text: str) -> int:
    if value == "-1":
        return U64
    n = _number(value)
    if n is None:
        raise FlowSyntaxError(f"cookie={text}: mask {value or '(empty)'} is not a number or -1")
    if n > U64:
        raise FlowSyntaxError(f"cookie mask {value} out of range 0..0xffffffffffffffff")
    return n


# ---------------------------------------------------------------- actions

def parse_actions(text: str) -> list[pb.FlowAction]:
    """`output:c1,normal` -> FlowAction messages, in order."""
    tokens = _tokens(_WS_AROUND.sub(r"\1", text) if _SPACE.search(text) is not None else text)
    if not tokens:
        raise FlowSyntaxError("actions= is empty (to drop packets, say actions=drop)")
    actions = []
    for token in tokens:
        name, colon, arg = token.partition(":")
        if name in NO_ARG_ACTIONS:
            if colon:
                raise FlowSyntaxError(f"{token}: {name} takes no argument")
            actions.append(pb.FlowAction(**{name: pb.NoArgument()}))
        elif name == "output":
            if not arg:
                raise FlowSyntaxError("output needs a port (output:PORT)")
            actions.append(pb.FlowAction(output=arg))
        elif name == "mod_vlan_vid":
            if not arg:
                raise FlowSyntaxError("mod_vlan_vid needs a VLAN id (mod_vlan_vid:N)")
            vid = _uint(name, arg, MAX_VLAN, sep=":")
            actions.append(pb.FlowAction(mod_vlan_vid=vid))
        elif name == "controller":
            actions.append(pb.FlowAction(controller=_controller(token, colon, arg)))
        else:
            raise FlowSyntaxError(f"unknown action {token}")
    return actions


def _controller(token: str, colon: str, arg: str) -> pb.ControllerAction:
    """`controller` (max_len 0: the daemon's default) or `controller:MAX_LEN`."""
    if not colon:
        return pb.ControllerAction()
    if not arg:
        raise FlowSyntaxError("controller: needs a length (controller:MAX_LEN), or write "
                              "controller alone for the default")
    max_len = _number(arg)
    if max_len is None:
        raise FlowSyntaxError(f"{token}: not a number")
    if not 1 <= max_len <= MAX_CONTROLLER_LEN:
        raise FlowSyntaxError(f"{token}: max_len out of range 1..{MAX_CONTROLLER_LEN} bytes "
                              "(write controller alone for the default, 128)")
    return pb.ControllerAction(max_len=max_len)


@functools.lru_cache(maxsize=256)
def _parsed_actions(text: str) -> tuple[pb.FlowAction, ...]:
    """parse_actions for parse_flow, which copies the messages: a file of 10 000 rules has a
    few distinct action lists (errors are not cached: they raise again)."""
    return tuple(parse_actions(text))


# ---------------------------------------------------------------- parse

def parse_flow(text: str) -> pb.Flow:
    """One rule: `[priority=N,][cookie=N,][idle_timeout=S,][hard_timeout=S,]MATCH,actions=...`.

    Raises FlowSyntaxError. Priority is left unset (the daemon's default, 32768) unless given.
    """
    flow = pb.Flow()
    parse_flow_into(flow, text)
    return flow


def parse_flow_into(flow: pb.Flow, text: str) -> None:
    """parse_flow into FLOW, an empty message: e.g. `request.flows.add()`, which saves copying
    each rule into the request (a file of 10 000 rules)."""
    fields_text, actions_text = _split_actions(text)
    flow.match.SetInParent()  # parsed in place (no copy); present even when empty
    fields = _parse_fields(fields_text, _FLOW_KEYS, flow.match)
    if actions_text is None:
        raise FlowSyntaxError("actions= is missing")
    flow.actions.extend(_parsed_actions(actions_text))
    for key, value in fields.extra.items():
        if key == "priority":
            flow.priority = _uint(key, value, MAX_PRIORITY)
        elif key == "cookie":
            if "/" in value:
                raise FlowSyntaxError(
                    f"cookie={value}: a cookie mask only selects flows (del-flows); "
                    "a new flow takes a plain cookie")
            flow.cookie = _cookie(value)
        else:  # idle_timeout, hard_timeout
            setattr(flow, key, _uint(key, value, MAX_TIMEOUT))


def parse_match_spec(text: str) -> MatchSpec:
    """A selection of flows (del-flows): match fields, `priority=N`, `cookie=V[/MASK]`.

    MASK is a number or -1 (all ones); `cookie=V` without a mask matches V exactly. Empty text
    selects every flow.
    """
    fields_text, actions_text = _split_actions(text)
    if actions_text is not None:
        raise FlowSyntaxError("actions= cannot be used in a match")
    fields = _parse_fields(fields_text, ("priority", "cookie"))
    spec = MatchSpec(match=fields.match)
    if "priority" in fields.extra:
        spec.priority = _uint("priority", fields.extra["priority"], MAX_PRIORITY)
    if "cookie" in fields.extra:
        value = fields.extra["cookie"]
        cookie_text, slash, mask_text = value.partition("/")
        spec.cookie = _cookie(cookie_text)
        spec.cookie_mask = _cookie_mask(mask_text, value) if slash else U64
    return spec


def parse_match(text: str) -> pb.FlowMatch:
    """Match fields only (no priority, cookie or actions)."""
    fields_text, actions_text = _split_actions(text)
    if actions_text is not None:
        raise FlowSyntaxError("actions= cannot be used in a match")
    return _parse_fields(fields_text, ()).match


# ---------------------------------------------------------------- format

def format_match(match: pb.FlowMatch) -> str:
    """The match as text, shorthands where possible; '' for the empty (match-all) match."""
    m = match
    parts: list[str] = []
    if m.HasField("in_port"):
        parts.append(f"in_port={m.in_port}")
    if m.HasField("dl_vlan"):
        parts.append(f"dl_vlan={m.dl_vlan}")
    for key in ("dl_src", "dl_dst"):
        if m.HasField(key):
            mac = getattr(m, key)
            parts.append(f"{key}={mac.mac}" + (f"/{mac.mask}" if mac.mask else ""))
    nw_proto_shown = False
    if m.HasField("dl_type"):
        nw_proto = m.nw_proto if m.HasField("nw_proto") else None
        name = _SHORTHAND_OF.get((m.dl_type, nw_proto))
        if name:
            nw_proto_shown = nw_proto is not None
        else:
            name = _SHORTHAND_OF.get((m.dl_type, None)) or f"dl_type=0x{m.dl_type:04x}"
        parts.append(name)
    if m.HasField("nw_proto") and not nw_proto_shown:
        parts.append(f"nw_proto={m.nw_proto}")
    for key in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst"):
        if m.HasField(key):
            parts.append(f"{key}={getattr(m, key)}")
    for key in ("tp_src", "tp_dst"):
        if m.HasField(key):
            pm = getattr(m, key)
            if pm.mask and pm.mask != U16:
                parts.append(f"{key}=0x{pm.port:x}/0x{pm.mask:x}")
            else:
                parts.append(f"{key}={pm.port}")
    return ",".join(parts)


def format_action(action: pb.FlowAction) -> str:
    kind = action.WhichOneof("action")
    if kind == "output":
        return f"output:{action.output}"
    if kind == "mod_vlan_vid":
        return f"mod_vlan_vid:{action.mod_vlan_vid}"
    if kind == "controller":
        max_len = action.controller.max_len
        return f"controller:{max_len}" if max_len else "controller"
    return kind or "unknown"


def format_actions(actions: Iterable[pb.FlowAction]) -> str:
    return ",".join(format_action(a) for a in actions)


def format_flow(flow: pb.Flow) -> str:
    """The rule as `parse_flow` reads it (counters and ages are not part of it)."""
    parts: list[str] = []
    if flow.HasField("priority"):
        parts.append(f"priority={flow.priority}")
    if flow.cookie:
        parts.append(f"cookie=0x{flow.cookie:x}")
    if flow.idle_timeout:
        parts.append(f"idle_timeout={flow.idle_timeout}")
    if flow.hard_timeout:
        parts.append(f"hard_timeout={flow.hard_timeout}")
    match = format_match(flow.match)
    if match:
        parts.append(match)
    parts.append(f"actions={format_actions(flow.actions)}")
    return ",".join(parts)
