"""The per-bridge flow table manager: pure Python, no kernel.

It keeps the bridge's rules (desired state), enforces the table's invariants and computes what
the datapath must hold (to_dp_rules); the Switch applies that with one flows_sync.

Invariants:
- one rule per (priority, match): adding the same match and priority replaces the rule (new
  rule_id, so its counters restart);
- no two rules of the same priority overlap (some packet could match both), so the winner is
  always defined.

Overlap checks are indexed: rules are grouped by priority and by mask signature (the fields and
masks they match, without values). Two rules with the same signature overlap only if their
matches are identical. For two different signatures S and S', a rule r of S overlaps a rule of S'
exactly when both agree on the fields they share, under the AND of their masks; each
(priority, S') group keeps a hash index of its rules projected onto that common mask (built on
first use, then maintained), so a check costs one lookup per signature at that priority, not a
scan of the table.

Changes are journalled: begin() ... rollback() puts back exactly what was there (all-or-nothing
batches, and undo when the datapath or the store refuses the result).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from vswitchd.errors import SwitchError
from vswitchd.flows.model import DEFAULT_PRIORITY, Match, Rule
from vswitchd.flows.validate import FlowConflict, FlowInvalid, numbered
from vswitchd.flows.views import DpView, StoreRows, StoreView

if TYPE_CHECKING:
    from vswitchd.datapath.flows import DpRule

Ident = tuple[int, Match]
Signature = tuple[tuple[str, int], ...]


# A projection compiled for _project: (position in Match, mask, kind) per field, kind 0 for
# in_port (a name, compared as is), 1 for an exact int field, 2 for a (value, mask) field.
Compiled = tuple[tuple[int, int, int], ...]
_POSITION = {name: i for i, name in enumerate(Match._fields)}


def _compile(proj: Signature) -> Compiled:
    return tuple((_POSITION[name], m, 0 if name == "in_port" else
                  1 if name in ("dl_type", "dl_vlan", "nw_proto") else 2) for name, m in proj)


def _project(match: Match, proj: Compiled) -> tuple[object, ...]:
    """The match's values of the projection's fields under its masks (a hash key)."""
    return tuple([match[i] if k == 0 else match[i] & m if k == 1  # type: ignore[operator]
                  else match[i][0] & m for i, m, k in proj])  # type: ignore[index]


def _common(a: Signature, b: Signature) -> Signature:
    """The fields both signatures match, with the AND of their masks (zero masks dropped)."""
    bm = dict(b)
    out = []
    for name, m in a:
        other = bm.get(name)
        if other is not None and m & other:
            out.append((name, m & other))
    return tuple(out)


class _Group:
    """The rules of one (priority, signature), with projection indexes for overlap checks."""

    __slots__ = ("rules", "proj")

    def __init__(self) -> None:
        self.rules: dict[Match, Rule] = {}
        self.proj: dict[Compiled, dict[tuple[object, ...], dict[Match, Rule]]] = {}

    def index(self, proj: Compiled) -> dict[tuple[object, ...], dict[Match, Rule]]:
        idx = self.proj.get(proj)
        if idx is None:
            idx = {}
            for rule in self.rules.values():
                idx.setdefault(_project(rule.match, proj), {})[rule.match] = rule
            self.proj[proj] = idx
        return idx

    def add(self, rule: Rule) -> None:
        match = rule.match
        self.rules[match] = rule
        for proj, idx in self.proj.items():
            key = _project(match, proj)
            bucket = idx.get(key)
            if bucket is None:
                idx[key] = {match: rule}
            else:
                bucket[match] = rule

    def remove(self, rule: Rule) -> None:
        del self.rules[rule.match]
        for proj, idx in self.proj.items():
            key = _project(rule.match, proj)
            bucket = idx[key]
            del bucket[rule.match]
            if not bucket:
                del idx[key]


class FlowTable:
    """One bridge's rules. `next_id` is the persisted high-water mark of rule ids."""

    def __init__(self, rules: Iterable[Rule] = (), next_id: int = 1) -> None:
        self._rules: dict[Ident, Rule] = {}
        self._groups: dict[int, dict[Signature, _Group]] = {}
        self._timed: dict[Ident, Rule] = {}
        self._common: dict[tuple[Signature, Signature], Compiled] = {}
        self._dp = DpView()
        self._store = StoreView()
        self._journal: list[tuple[Ident, Rule | None]] | None = None
        self.next_id = next_id
        for rule in rules:
            self._put(rule)
            self.next_id = max(self.next_id, rule.rule_id + 1)

    # ---- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlowTable):
            return NotImplemented
        return self.store_list() == other.store_list()

    def __repr__(self) -> str:
        return f"FlowTable({len(self)} rules, next_id={self.next_id})"

    def get(self, priority: int, match: Match) -> Rule | None:
        return self._rules.get((priority, match))

    def rules(self) -> list[Rule]:
        """Every rule in priority order, highest first (then by installation)."""
        return sorted(self._rules.values(), key=lambda r: (-r.priority, r.rule_id))

    def store_list(self) -> list[str]:
        return [r.to_store() for r in sorted(self._rules.values(), key=lambda r: r.rule_id)]

    def store_rows(self) -> StoreRows:
        """{rule_id: the store's text of the rule}: the same object until the table changes,
        then a new one that says which rows changed (see StoreRows)."""
        return self._store.rows()

    # ---- primitive changes (journalled) ------------------------------------------------------

    def _index(self, rule: Rule) -> None:
        self._dp.added(rule)
        self._store.added(rule)
        groups = self._groups.setdefault(rule.priority, {})
        group = groups.get(rule.signature)
        if group is None:
            group = groups[rule.signature] = _Group()
        group.add(rule)
        if rule.timed:
            self._timed[rule.ident] = rule

    def _unindex(self, rule: Rule) -> None:
        self._dp.removed(rule)
        self._store.removed(rule)
        groups = self._groups[rule.priority]
        group = groups[rule.signature]
        group.remove(rule)
        if not group.rules:
            del groups[rule.signature]
            if not groups:
                del self._groups[rule.priority]
        self._timed.pop(rule.ident, None)

    def _put(self, rule: Rule) -> Rule | None:
        ident = rule.ident
        old = self._rules.get(ident)
        if old is not None:
            self._unindex(old)
        self._rules[ident] = rule
        self._index(rule)
        if self._journal is not None:
            self._journal.append((ident, old))
        return old

    def _remove(self, ident: Ident) -> Rule:
        old = self._rules.pop(ident)
        self._unindex(old)
        if self._journal is not None:
            self._journal.append((ident, old))
        return old

    # ---- transactions ------------------------------------------------------------------------

    def begin(self) -> None:
        if self._journal is not None:
            raise RuntimeError("flow table transaction already open")
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def journal_changes(self) -> tuple[list[Rule], list[Rule]]:
        """(rules removed, rules added) by the open transaction so far: a rule replaced by
        another of the same priority and match is in both lists."""
        before: dict[Ident, Rule | None] = {}
        for ident, old in self._journal or ():
            before.setdefault(ident, old)  # the first entry holds the rule before the change
        removed, added = [], []
        for ident, old in before.items():
            now = self._rules.get(ident)
            if now is old:
                continue
            if old is not None:
                removed.append(old)
            if now is not None:
                added.append(now)
        return removed, added

    def rollback(self) -> None:
        journal, self._journal = self._journal or [], None
        for ident, old in reversed(journal):
            current = self._rules.pop(ident, None)
            if current is not None:
                self._unindex(current)
            if old is not None:
                self._rules[ident] = old
                self._index(old)

    def _atomic(self, fn: Callable[[], object]) -> object:
        """Run fn as one all-or-nothing change (inside an outer transaction if one is open)."""
        outer = self._journal is not None
        mark = len(self._journal) if outer else 0
        if not outer:
            self.begin()
        try:
            result = fn()
        except BaseException:
            if outer:
                tail = self._journal[mark:]
                del self._journal[mark:]
                saved, self._journal = self._journal, tail
                self.rollback()
                self._journal = saved
            else:
                self.rollback()
            raise
        if not outer:
            self.commit()
        return result

    # ---- overlap -----------------------------------------------------------------------------

    def overlapping(self, rule: Rule) -> Rule | None:
        """A different rule of the same priority that some packet could match together with
        `rule`, or None."""
        groups = self._groups.get(rule.priority)
        if not groups:
            return None
        if len(groups) == 1 and rule.signature in groups:
            return None  # one signature, the rule's: only the identical match overlaps
        sig = rule.signature
        for other_sig, group in groups.items():
            if other_sig == sig:
                continue  # same masks: only the identical match overlaps, and that is `rule`
            key = (sig, other_sig)
            proj = self._common.get(key)
            if proj is None:
                proj = self._common[key] = _compile(_common(sig, other_sig))
            hits = group.index(proj).get(_project(rule.match, proj))
            if hits:
                return next(iter(hits.values()))
        return None

    def _check_overlap(self, rule: Rule, numbers: dict[int, int] | None = None) -> None:
        """FlowInvalid naming the flow of this batch it overlaps (NUMBERS: rule_id -> flow
        number), else FlowConflict naming the rule of the table."""
        other = self.overlapping(rule)
        if other is None:
            return
        why = (f"a packet could match both at priority {rule.priority}; give one a different "
               "priority or make the matches disjoint")
        n = numbers.get(other.rule_id) if numbers else None
        if n is not None:
            raise FlowInvalid(f"match overlaps flow {n} ({other.to_ofctl()}): {why}", "match",
                              rule.match)
        raise FlowConflict(f"overlaps {other.to_ofctl()}: {why}")

    # ---- batch operations --------------------------------------------------------------------

    def add(self, rules: Sequence[Rule], alloc: Callable[[], int], wall: float,
            mono_ns: int) -> tuple[int, int]:
        """Add a batch, all or nothing: (added, replaced). Errors say `flow N: ...`."""

        def run() -> tuple[int, int]:
            numbers: dict[int, int] = {}  # rule_id given in this batch -> flow number
            replaced = again = 0
            for n, rule in enumerate(rules, 1):
                try:
                    self._check_overlap(rule, numbers)
                except SwitchError as exc:
                    raise numbered(exc, n) from None
                rule_id = alloc()
                numbers[rule_id] = n
                old = self._put(rule.installed(rule_id, wall, mono_ns))
                if old is not None:  # a rule of the table before this batch, or of this batch
                    if old.rule_id in numbers:
                        again += 1
                    else:
                        replaced += 1
            return len(rules) - again - replaced, replaced

        return self._atomic(run)  # type: ignore[return-value]

    def replace_all(self, rules: Sequence[Rule], alloc: Callable[[], int], wall: float,
                    mono_ns: int) -> tuple[int, int, int]:
        """Make the table exactly `rules`: (added, removed, unchanged). Unchanged rules keep
        their rule_id (and so their counters); a changed rule is removed and added."""

        def run() -> tuple[int, int, int]:
            desired: dict[Ident, tuple[int, Rule]] = {}
            for n, rule in enumerate(rules, 1):
                desired[rule.ident] = (n, rule)  # the last of duplicates wins, as in add
            removed = unchanged = 0
            numbers: dict[int, int] = {}  # rule_id -> flow number, for overlap messages
            for ident, old in list(self._rules.items()):
                want = desired.get(ident)
                if want is not None and want[1].same_content(old):
                    unchanged += 1
                    numbers[old.rule_id] = want[0]
                else:
                    self._remove(ident)
                    removed += 1
            added = 0
            for ident, (n, rule) in sorted(desired.items(), key=lambda kv: kv[1][0]):
                if ident in self._rules:
                    continue
                try:
                    self._check_overlap(rule, numbers)
                except SwitchError as exc:
                    raise numbered(exc, n) from None
                rule_id = alloc()
                numbers[rule_id] = n
                self._put(rule.installed(rule_id, wall, mono_ns))
                added += 1
            return added, removed, unchanged

        return self._atomic(run)  # type: ignore[return-value]

    def delete(self, match: Match | None = None, *, strict: bool = False,
               priority: int | None = None, cookie: int = 0,
               cookie_mask: int = 0) -> list[Rule]:
        """Remove and return the selected rules.

        strict: the rule with exactly this match (None = the empty match) and priority (None =
        32768). Loose: every rule whose match is at least as specific as `match` (each field of
        `match` is in the rule, with a mask covering it and an equal value under it); no match
        selects every rule. Both: only rules with cookie & cookie_mask == cookie & cookie_mask.
        """
        def cookie_ok(r: Rule) -> bool:
            return not cookie_mask or (r.cookie & cookie_mask) == (cookie & cookie_mask)

        if strict:
            prio = DEFAULT_PRIORITY if priority is None else priority
            rule = self._rules.get((prio, match or Match()))
            chosen = [rule] if rule is not None and cookie_ok(rule) else []
        else:
            chosen = [r for r in self._loose(match) if cookie_ok(r)]
        for rule in chosen:
            self._remove(rule.ident)
        return chosen

    def _loose(self, match: Match | None) -> Iterator[Rule]:
        terms = match.terms() if match is not None else ()
        if not terms:
            yield from list(self._rules.values())
            return
        for groups in list(self._groups.values()):
            for sig, group in list(groups.items()):
                masks = dict(sig)
                if not all(name in masks and masks[name] & m == m for name, _v, m in terms):
                    continue
                for rule in list(group.rules.values()):
                    values = {name: value for name, value, _m in rule.terms}
                    if all((values[name] == v) if name == "in_port"
                           else not (values[name] ^ v) & m  # type: ignore[operator]
                           for name, v, m in terms):
                        yield rule

    def remove_rules(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            if self._rules.get(rule.ident) is rule:
                self._remove(rule.ident)

    def referencing(self, port: str) -> list[Rule]:
        """Rules that match on in_port=port or output to it."""
        return self._dp.referencing(port)

    # ---- timeouts ----------------------------------------------------------------------------

    def expired(self, now_ns: int, last_hit_ns: Callable[[int], int]) -> list[Rule]:
        """Rules whose hard timeout (since installation) or idle timeout (since the later of the
        last hit and installation) has passed. last_hit_ns(rule_id) is 0 for never."""
        out = []
        for rule in self._timed.values():
            if rule.hard_timeout and now_ns - rule.installed_ns >= rule.hard_timeout * 10**9:
                out.append(rule)
            elif rule.idle_timeout:
                since = max(last_hit_ns(rule.rule_id), rule.installed_ns)
                if now_ns - since >= rule.idle_timeout * 10**9:
                    out.append(rule)
        return out

    @property
    def has_timeouts(self) -> bool:
        return bool(self._timed)

    def rebase(self, now_wall: float, now_ns: int) -> None:
        """Re-derive every rule's monotonic installation time from its wall time (after a
        load with a different clock)."""
        for ident, rule in list(self._rules.items()):
            age_ns = max(0, int((now_wall - rule.installed_wall) * 1e9))
            new = rule.installed(rule.rule_id, rule.installed_wall, now_ns - age_ns)
            self._unindex(rule)
            self._rules[ident] = new
            self._index(new)

    # ---- the datapath's view -----------------------------------------------------------------

    def to_dp_rules(
        self, ifindex: Callable[[str], int | None]
    ) -> tuple[list[DpRule], list[Rule]]:
        """(every rule as a datapath DpRule, the rules left out because a port they use has no
        ifindex). ifindex(name) resolves a port name, None when the port is missing from the
        kernel; it is called once per port in use. Conversions are cached per rule and port
        ifindex (see DpView)."""
        return self._dp.dp_rules(ifindex)
