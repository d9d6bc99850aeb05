"""What a flow table derives from its rules for the datapath and for the store, kept up to date
rule by rule (the table reports each rule it indexes and unindexes), so that a batch costs what
it changes, not the size of the table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from vswitchd.datapath.constants import PACKET_IN_DEFAULT_LEN
from vswitchd.flows.model import FULL, Action, Match, Rule

if TYPE_CHECKING:
    from vswitchd.datapath.flows import DpRule

_IN_PORT_MASK = 0xFFFFFFFF
_DP_FIELD = {"nw_src": "ip_src", "nw_dst": "ip_dst", "ipv6_src": "ip_src", "ipv6_dst": "ip_dst"}


class StoreRows(dict[int, str]):
    """{rule_id: the store's text of the rule} at one moment. `base` is the snapshot handed out
    before this one (or None) and `changed` the rule ids whose rows may differ from it: a store
    that holds `base` writes only those."""

    __slots__ = ("base", "changed")
    base: StoreRows | None
    changed: frozenset[int]


class StoreView:
    """Snapshots of the rules' store texts (StoreRows), made from the previous snapshot and
    the rules changed since."""

    def __init__(self) -> None:
        self._rules: dict[int, Rule] = {}
        self._changed: set[int] = set()
        self._snap: StoreRows | None = None

    def added(self, rule: Rule) -> None:
        self._rules[rule.rule_id] = rule
        self._changed.add(rule.rule_id)

    def removed(self, rule: Rule) -> None:
        if self._rules.get(rule.rule_id) is rule:
            del self._rules[rule.rule_id]
        self._changed.add(rule.rule_id)

    def rows(self) -> StoreRows:
        """The current snapshot: the same object until a rule changes (never changed after
        it is handed out)."""
        snap = self._snap
        if snap is not None and not self._changed:
            return snap
        if snap is None:
            new = StoreRows({rid: r.to_store() for rid, r in self._rules.items()})
            new.base, new.changed = None, frozenset()
        else:
            new = StoreRows(snap)
            for rid in self._changed:
                rule = self._rules.get(rid)
                if rule is None:
                    new.pop(rid, None)
                else:
                    new[rid] = rule.to_store()
            new.base, new.changed = snap, frozenset(self._changed)
            snap.base = None  # a store compares with the last snapshot only: no chain
        self._snap, self._changed = new, set()
        return new


class DpView:
    """The rules as datapath DpRules, each converted once for the ifindexes of its ports, and
    converted again only when one of those ports changes its ifindex."""

    def __init__(self) -> None:
        self._rules: dict[int, Rule] = {}
        self._by_port: dict[str, set[int]] = {}    # port name -> ids of the rules using it
        self._dp: dict[int, DpRule] = {}           # rule_id -> DpRule, for the ifindexes in _ifs
        self._ifs: dict[str, int | None] = {}      # port name -> ifindex the conversions used
        self._todo: set[int] = set()               # rule ids not converted yet

    def added(self, rule: Rule) -> None:
        rid = rule.rule_id
        self._rules[rid] = rule
        self._dp.pop(rid, None)
        self._todo.add(rid)
        for port in rule.ports:
            self._by_port.setdefault(port, set()).add(rid)

    def removed(self, rule: Rule) -> None:
        rid = rule.rule_id
        if self._rules.get(rid) is not rule:
            return
        del self._rules[rid]
        self._dp.pop(rid, None)
        self._todo.discard(rid)
        for port in rule.ports:
            ids = self._by_port.get(port)
            if ids is not None:
                ids.discard(rid)
                if not ids:
                    del self._by_port[port]
                    self._ifs.pop(port, None)

    def referencing(self, port: str) -> list[Rule]:
        return [self._rules[rid] for rid in self._by_port.get(port, ())]

    def dp_rules(self, ifindex: Callable[[str], int | None]) -> tuple[list[DpRule], list[Rule]]:
        """(every rule as a DpRule, the rules left out because a port they use has no
        ifindex): one ifindex(port) call per port in use; unchanged rules give the same
        DpRule objects as the previous call (the datapath skips those)."""
        from vswitchd.datapath import DpRule

        ifs = {port: ifindex(port) for port in self._by_port}
        redo = self._todo
        self._todo = set()
        for port, i in ifs.items():
            if port not in self._ifs or self._ifs[port] != i:
                redo |= self._by_port[port]
        for rid in redo:
            rule = self._rules[rid]
            rule_ifs = tuple([ifs[p] for p in rule.ports])
            if None in rule_ifs:
                self._dp.pop(rid, None)
                continue
            self._dp[rid] = DpRule(rid, rule.priority, dp_fields(rule, rule_ifs),
                                   dp_actions(rule, rule_ifs))
        self._ifs = ifs
        missing = set().union(*(self._by_port[p] for p, i in ifs.items() if i is None))
        return list(self._dp.values()), [self._rules[rid] for rid in sorted(missing)]


# Per Match position: the datapath's field name and the shift of value and mask (IPv4
# addresses sit in the high bits of the 128-bit ip_src/ip_dst).
_POSITION = {name: i for i, name in enumerate(Match._fields)}
_DP_POS = tuple((_DP_FIELD.get(name, name), 96 if name in ("nw_src", "nw_dst") else 0)
                for name in Match._fields)


def dp_fields(rule: Rule, ifs: tuple[int, ...]) -> tuple[tuple[str, int, int], ...]:
    """The rule's match as sorted (field, value, mask) of the datapath; ifs[0] is the ifindex
    of in_port when the rule has one."""
    match = rule.match
    out = []
    for pos, name, shift, kind in _dp_plan(rule.signature):
        value = match[pos]
        if kind == 0:
            out.append((name, ifs[0], _IN_PORT_MASK))
        elif kind == 2:
            out.append((name, value[0] << shift, value[1] << shift))  # type: ignore[index]
        else:
            out.append((name, value, FULL[name]))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _dp_plan(signature: tuple[tuple[str, int], ...]) -> tuple[tuple[int, str, int, int], ...]:
    """(Match position, datapath field, shift, kind: 0 in_port, 1 exact, 2 masked) of the
    fields of a signature, in the datapath's sorted field order (rules share a few)."""
    plan = []
    for name, _mask in signature:
        pos = _POSITION[name]
        dp_name, shift = _DP_POS[pos]
        kind = 0 if name == "in_port" else 1 if name in ("dl_type", "dl_vlan", "nw_proto") else 2
        plan.append((pos, dp_name, shift, kind))
    return tuple(sorted(plan, key=lambda p: p[1]))


def dp_actions(rule: Rule, ifs: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    if not ifs or (len(ifs) == 1 and rule.match.in_port is not None):
        return _port_free_actions(rule.actions)  # no output: the same for every rule
    outputs = iter(ifs[1:] if rule.match.in_port is not None else ifs)
    out = []
    for action in rule.actions:
        if action.kind == "output":
            out.append(("output", next(outputs)))
        else:
            out.append(_dp_action(action))
    return tuple(out)


def _dp_action(action: Action) -> tuple[str, int]:
    """An action without a port as the datapath takes it."""
    if action.kind == "mod_vlan_vid":
        return ("mod_vlan_vid", int(action.arg))  # type: ignore[arg-type]
    if action.kind == "controller":  # max_len; `controller` alone: the datapath's default
        return ("controller", int(action.arg or PACKET_IN_DEFAULT_LEN))
    return (action.kind, 0)


@functools.lru_cache(maxsize=1024)
def _port_free_actions(actions: tuple[Action, ...]) -> tuple[tuple[str, int], ...]:
    return tuple(_dp_action(a) for a in actions)
