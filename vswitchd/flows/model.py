"""Flow rules as plain values: Match, Action, Rule.

Every value here is canonical, so equal matches compare (and hash) equal:
- masked fields are (value, mask) pairs of ints with value & mask == value; a full mask means an
  exact match (10.0.0.5/24 -> (10.0.0.0, /24); 10.0.0.5/32 and 10.0.0.5 are the same),
- a field whose mask is zero is a wildcard and is absent (None),
- MACs, IPv4 and IPv6 addresses are ints; they are shown lower-case / compressed.

A rule is identified by (priority, match): two rules with the same match and priority are one
rule. `rule_id` names an installed rule in the datapath (its counters are keyed by it).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

DEFAULT_PRIORITY = 32768
MAX_PRIORITY = 65535
MAX_TIMEOUT = 65535

ETH_IP, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6 = 1, 6, 17, 58

# Bits of each match field (the datapath's FLOW_FIELDS use ip_src/ip_dst for both families).
FIELD_BITS = {
    "in_port": 32, "dl_src": 48, "dl_dst": 48, "dl_type": 16, "dl_vlan": 12,
    "nw_src": 32, "nw_dst": 32, "ipv6_src": 128, "ipv6_dst": 128, "nw_proto": 8,
    "tp_src": 16, "tp_dst": 16,
}
FULL = {name: (1 << bits) - 1 for name, bits in FIELD_BITS.items()}
MASKED_FIELDS = ("dl_src", "dl_dst", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst",
                 "tp_src", "tp_dst")
EXACT_FIELDS = ("dl_type", "dl_vlan", "nw_proto")

# (dl_type, nw_proto) -> ovs-ofctl shorthand, and back.
SHORTHANDS = {
    (ETH_IP, None): "ip", (ETH_IPV6, None): "ipv6", (ETH_ARP, None): "arp",
    (ETH_IP, PROTO_ICMP): "icmp", (ETH_IP, PROTO_TCP): "tcp", (ETH_IP, PROTO_UDP): "udp",
    (ETH_IPV6, PROTO_ICMP6): "icmp6", (ETH_IPV6, PROTO_TCP): "tcp6",
    (ETH_IPV6, PROTO_UDP): "udp6",
}

ACTION_NAMES = ("drop", "normal", "flood", "output", "mod_vlan_vid", "strip_vlan", "controller")
INT_ARG_ACTIONS = ("mod_vlan_vid", "controller")  # their argument is a number


_T = TypeVar("_T")


class _lazy(Generic[_T]):  # noqa: N801 - used like functools.cached_property
    """functools.cached_property without its per-instance lock (Python < 3.12 takes one on
    every first access, a measurable cost at 10 000 rules a batch): computed once, stored in
    the instance's __dict__, which later lookups find first."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, cls: type | None = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


class Match(NamedTuple):
    """Any subset of the match fields; None = wildcard. See the module docstring for forms."""

    in_port: str | None = None
    dl_src: tuple[int, int] | None = None
    dl_dst: tuple[int, int] | None = None
    dl_type: int | None = None
    dl_vlan: int | None = None
    nw_src: tuple[int, int] | None = None
    nw_dst: tuple[int, int] | None = None
    ipv6_src: tuple[int, int] | None = None
    ipv6_dst: tuple[int, int] | None = None
    nw_proto: int | None = None
    tp_src: tuple[int, int] | None = None
    tp_dst: tuple[int, int] | None = None

    def terms(self) -> tuple[tuple[str, object, int], ...]:
        """(field, value, mask) for every present field, in field order.

        in_port's value is the port name (names compare exactly, its mask is always full).
        """
        return tuple([(name, value[0], value[1]) if type(value) is tuple
                      else (name, value, FULL[name])
                      for name, value in zip(_MATCH_FIELDS, self, strict=True)
                      if value is not None])

    def ports(self) -> tuple[str, ...]:
        return (self.in_port,) if self.in_port is not None else ()

    def to_ofctl(self) -> str:
        """ovs-ofctl syntax, shorthands folded in: in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80."""
        return ",".join(_ofctl_tokens(self))

    def to_tokens(self) -> list[str]:
        """The store's form: explicit field=value tokens (no shorthands), in field order."""
        return [f"{name}={format_value(name, value)}"
                for name, value in zip(_MATCH_FIELDS, self, strict=True) if value is not None]


_MATCH_FIELDS = Match._fields


def _signature(match: Match) -> tuple[tuple[str, int], ...]:
    return tuple([(name, value[1]) if type(value) is tuple else (name, FULL[name])
                  for name, value in zip(_MATCH_FIELDS, match, strict=True)
                  if value is not None])


def _ports(match: Match, actions: tuple[Action, ...]) -> tuple[str, ...]:
    outs = [a.arg for a in actions if a.kind == "output"]
    if match.in_port is None:
        return tuple(outs)  # type: ignore[arg-type]
    return (match.in_port, *outs)  # type: ignore[return-value]


class Action(NamedTuple):
    """One action: kind in ACTION_NAMES; arg is the port name (output), the VLAN id
    (mod_vlan_vid), max_len (controller; None: the datapath's default, written `controller`)
    or None."""

    kind: str
    arg: str | int | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def actions_str(actions: tuple[Action, ...]) -> str:
    return ",".join(str(a) for a in actions)


@dataclass(frozen=True)
class Rule:
    priority: int = DEFAULT_PRIORITY
    match: Match = Match()
    actions: tuple[Action, ...] = ()
    cookie: int = 0
    idle_timeout: int = 0          # seconds, 0 = never
    hard_timeout: int = 0          # seconds, 0 = never
    rule_id: int = 0               # 0 until installed
    installed_wall: float = 0.0    # time.time() at installation (persisted)
    installed_ns: int = 0          # CLOCK_MONOTONIC ns at installation (derived on load)

    @_lazy
    def ident(self) -> tuple[int, Match]:
        """What makes two rules the same rule."""
        return (self.priority, self.match)

    @_lazy
    def terms(self) -> tuple[tuple[str, object, int], ...]:
        return self.match.terms()

    @_lazy
    def signature(self) -> tuple[tuple[str, int], ...]:
        """The fields and masks, without values: rules with one signature never overlap
        unless their matches are identical."""
        return _signature(self.match)

    @_lazy
    def ports(self) -> tuple[str, ...]:
        """Every port name the rule refers to (in_port first, then outputs)."""
        return _ports(self.match, self.actions)

    @property
    def timed(self) -> bool:
        return bool(self.idle_timeout or self.hard_timeout)

    def same_content(self, other: Rule) -> bool:
        """Equal as the operator wrote them (ignores rule_id and installation time)."""
        return (self.priority, self.match, self.actions, self.cookie, self.idle_timeout,
                self.hard_timeout) == (other.priority, other.match, other.actions, other.cookie,
                                       other.idle_timeout, other.hard_timeout)

    @classmethod
    def new(cls, priority: int, match: Match, actions: tuple[Action, ...], cookie: int,
            idle_timeout: int, hard_timeout: int,
            signature: tuple[tuple[str, int], ...] | None = None) -> Rule:
        """Rule(...) of validated values, not installed (SIGNATURE: the match's, when the
        caller has it). Fills the instance's __dict__ at once: the frozen dataclass __init__
        makes one object.__setattr__ call per field, a measurable part of a 10 000-rule
        batch."""
        rule = object.__new__(cls)
        # with the values every batch needs, rather than through the _lazy descriptors
        object.__setattr__(rule, "__dict__", {
            "priority": priority, "match": match, "actions": actions, "cookie": cookie,
            "idle_timeout": idle_timeout, "hard_timeout": hard_timeout, "rule_id": 0,
            "installed_wall": 0.0, "installed_ns": 0, "ident": (priority, match),
            "signature": _signature(match) if signature is None else signature,
            "ports": _ports(match, actions)})
        return rule

    def installed(self, rule_id: int, wall: float, mono_ns: int) -> Rule:
        """This rule with an id and installation time. A shallow copy of the instance: cheaper
        than dataclasses.replace (no __init__), and it keeps the cached values that do not
        depend on them (terms, signature, ports; the stored text if the id and wall time
        stay, as in rebase)."""
        new = object.__new__(Rule)
        d = new.__dict__
        d.update(self.__dict__)
        if rule_id != self.rule_id or wall != self.installed_wall:
            d.pop("_store_text", None)
        d["rule_id"], d["installed_wall"], d["installed_ns"] = rule_id, wall, mono_ns
        return new

    def to_ofctl(self) -> str:
        """add-flow syntax: cookie=0x7,priority=200,in_port=c1,udp,tp_dst=8,actions=drop."""
        parts = []
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        parts.append(f"priority={self.priority}")
        parts.extend(_ofctl_tokens(self.match))
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        parts.append(f"actions={actions_str(self.actions)}")
        return ",".join(parts)

    # ---- the store: one string per rule ------------------------------------------------------
    # The state store writes JSON with indent, which Python encodes with its pure-Python encoder:
    # 100 000 rules as dicts take ~1.4 s to write, as one string each ~0.08 s. Tokens are
    # separated by spaces, which no interface name contains.

    def to_store(self) -> str:
        return self._store_text

    @_lazy
    def _store_text(self) -> str:
        # The same text as " ".join([head, *match.to_tokens(), "actions", *actions]), built
        # from per-field formatters and cached parts (~5 -> ~2 us a rule).
        tail = _store_tail(self.cookie, self.idle_timeout, self.hard_timeout,
                           self.installed_wall)
        fmt = _STORE_TOKEN
        tokens = "".join([fmt[i](v) for i, v in enumerate(self.match) if v is not None])
        actions = _store_actions(self.actions)
        return f"{self.rule_id} {self.priority} {tail}{tokens} actions{actions}"

    @classmethod
    def from_store(cls, text: str, now_wall: float, now_ns: int) -> Rule:
        """Parse to_store()'s form; the monotonic installation time is derived from the wall
        time (the monotonic clock restarts with the machine)."""
        tokens = text.split(" ")
        if len(tokens) < 7:
            raise ValueError(f"stored flow {text!r} is truncated")
        rule_id, prio, cookie, idle, hard, wall = tokens[:6]
        at = tokens.index("actions", 6)
        fields: dict[str, object] = {}
        for tok in tokens[6:at]:
            name, _, value = tok.partition("=")
            if name not in FIELD_BITS:
                raise ValueError(f"unknown match field {name!r} in stored flow {text!r}")
            fields[name] = parse_value(name, value)
        actions = []
        for tok in tokens[at + 1:]:
            kind, sep, arg = tok.partition(":")
            if kind not in ACTION_NAMES:
                raise ValueError(f"unknown action {kind!r} in stored flow {text!r}")
            actions.append(Action(kind, (int(arg) if kind in INT_ARG_ACTIONS else arg)
                                  if sep else None))
        installed_wall = float(wall)
        age_ns = max(0, int((now_wall - installed_wall) * 1e9))
        return cls(priority=int(prio), match=Match(**fields), actions=tuple(actions),
                   cookie=int(cookie, 16), idle_timeout=int(idle), hard_timeout=int(hard),
                   rule_id=int(rule_id), installed_wall=installed_wall,
                   installed_ns=now_ns - age_ns)


# ---- value formatting and parsing (store and messages) ---------------------------------------


def mac_str(value: int) -> str:
    h = f"{value:012x}"
    return f"{h[0:2]}:{h[2:4]}:{h[4:6]}:{h[6:8]}:{h[8:10]}:{h[10:12]}"


def mac_int(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


def prefix_len(mask: int, bits: int) -> int | None:
    """The prefix length of a contiguous mask, or None."""
    n = mask.bit_count()
    return n if mask == ((1 << n) - 1) << (bits - n) else None


def ipv4_str(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def ipv6_str(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def format_value(name: str, value: object) -> str:
    if name == "in_port":
        return str(value)
    if name in ("dl_type",):
        return f"0x{value:04x}"
    if name in EXACT_FIELDS:
        return str(value)
    v, m = value  # type: ignore[misc]
    full = FULL[name]
    if name in ("dl_src", "dl_dst"):
        return mac_str(v) if m == full else f"{mac_str(v)}/{mac_str(m)}"
    if name in ("tp_src", "tp_dst"):
        return str(v) if m == full else f"{v:#x}/{m:#x}"
    ip = ipv4_str(v) if name in ("nw_src", "nw_dst") else ipv6_str(v)
    if m == full:
        return ip
    return f"{ip}/{prefix_len(m, FIELD_BITS[name])}"


def parse_value(name: str, text: str) -> object:
    """Inverse of format_value (for canonical, trusted text: the store)."""
    if name == "in_port":
        return text
    if name in EXACT_FIELDS:
        return int(text, 0)
    value, _, mask = text.partition("/")
    full = FULL[name]
    if name in ("dl_src", "dl_dst"):
        return (mac_int(value), mac_int(mask) if mask else full)
    if name in ("tp_src", "tp_dst"):
        return (int(value, 0), int(mask, 0) if mask else full)
    bits = FIELD_BITS[name]
    if name in ("nw_src", "nw_dst"):
        v = int.from_bytes(socket.inet_aton(value), "big")
    else:
        v = int.from_bytes(socket.inet_pton(socket.AF_INET6, value), "big")
    m = full if not mask else full ^ ((1 << (bits - int(mask))) - 1)
    return (v & m, m)


@functools.lru_cache(maxsize=64)
def _store_tail(cookie: int, idle: int, hard: int, wall: float) -> str:
    """The part of a stored rule's head after rule_id and priority (a batch shares it)."""
    return f"{cookie:#x} {idle} {hard} {wall:.3f}"


@functools.lru_cache(maxsize=1024)
def _store_actions(actions: tuple[Action, ...]) -> str:
    return "".join(f" {a}" for a in actions)


def _store_mac(name: str) -> Callable[[tuple[int, int]], str]:
    full = FULL[name]

    def fmt(value: tuple[int, int]) -> str:
        v, m = value
        return f" {name}={mac_str(v)}" if m == full else f" {name}={mac_str(v)}/{mac_str(m)}"

    return fmt


def _store_ipv4(name: str) -> Callable[[tuple[int, int]], str]:
    def fmt(value: tuple[int, int]) -> str:
        v, m = value
        ip = f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"
        return f" {name}={ip}" if m == 0xFFFFFFFF else f" {name}={ip}/{prefix_len(m, 32)}"

    return fmt


def _store_tp(name: str) -> Callable[[tuple[int, int]], str]:
    def fmt(value: tuple[int, int]) -> str:
        v, m = value
        return f" {name}={v}" if m == 0xFFFF else f" {name}={v:#x}/{m:#x}"

    return fmt


def _store_plain(name: str) -> Callable[[object], str]:
    return lambda value: f" {name}={value}"


def _store_generic(name: str) -> Callable[[object], str]:
    return lambda value: f" {name}={format_value(name, value)}"


# " name=value" of each Match position, equal to format_value's (the stored form).
_STORE_TOKEN: tuple[Callable[[Any], str], ...] = tuple(
    _store_mac(name) if name in ("dl_src", "dl_dst")
    else _store_ipv4(name) if name in ("nw_src", "nw_dst")
    else _store_tp(name) if name in ("tp_src", "tp_dst")
    else _store_plain(name) if name in ("in_port", "dl_vlan", "nw_proto")
    else (lambda value: f" dl_type=0x{value:04x}") if name == "dl_type"
    else _store_generic(name)
    for name in _MATCH_FIELDS)


def _ofctl_tokens(match: Match) -> list[str]:
    out = []
    if match.in_port is not None:
        out.append(f"in_port={match.in_port}")
    if match.dl_vlan is not None:
        out.append(f"dl_vlan={match.dl_vlan}")
    for name in ("dl_src", "dl_dst"):
        value = getattr(match, name)
        if value is not None:
            out.append(f"{name}={format_value(name, value)}")
    proto_done = False
    if match.dl_type is not None:
        short = SHORTHANDS.get((match.dl_type, match.nw_proto))
        if short is not None:
            out.append(short)
            proto_done = match.nw_proto is not None
        elif (match.dl_type, None) in SHORTHANDS:
            out.append(SHORTHANDS[(match.dl_type, None)])
        else:
            out.append(f"dl_type=0x{match.dl_type:04x}")
    for name in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst"):
        value = getattr(match, name)
        if value is not None:
            out.append(f"{name}={format_value(name, value)}")
    if match.nw_proto is not None and not proto_done:
        out.append(f"nw_proto={match.nw_proto}")
    for name in ("tp_src", "tp_dst"):
        value = getattr(match, name)
        if value is not None:
            out.append(f"{name}={format_value(name, value)}")
    return out


class Clock:
    """Wall time (persisted installation times) and CLOCK_MONOTONIC ns (ages, timeouts; the
    datapath's last-hit times use the same clock). Tests substitute a fake."""

    def wall(self) -> float:
        return time.time()

    def mono_ns(self) -> int:
        return time.monotonic_ns()


@dataclass(slots=True)
class FlowRequest:
    """A flow as a client wrote it, before validation (see validate.flow).

    match holds only the fields given: in_port: str; dl_src, dl_dst: (mac, mask) strings, mask
    "" = exact; dl_type, dl_vlan, nw_proto: int; nw_src, nw_dst, ipv6_src, ipv6_dst: address or
    CIDR strings; tp_src, tp_dst: (port, mask) ints, mask 0 = exact. actions: (kind, arg) pairs;
    kind "" is an action message with nothing set.
    """

    priority: int | None = None
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    match: dict[str, object] | None = None
    actions: list[tuple[str, object]] | None = None
