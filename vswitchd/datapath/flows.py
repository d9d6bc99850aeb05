"""Flow tables of the datapath: rule validation, packing, and atomic incremental sync.

Layouts and limits come from bpf/lib/flow.h (never retyped): the X(...) table of actions and
the MAX_FLOW_* defines through constants.py; the struct layouts are packed with `struct` below and
checked against the sizes of bcc's generated ctypes classes when the maps are opened.

Per bridge the datapath holds two versions of the rules. A sync writes the difference into the
inactive version, flips flow_masks[bridge] (the version packets use, with its masks) with one
map update (a packet sees the old table or the new one), then applies the same difference to
the other version, so both are equal again.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vswitchd.datapath import maps
from vswitchd.datapath.constants import (
    FLOW_ACTIONS,
    FLOW_F_CONTROLLER,
    FLOW_F_FORWARDS,
    MAX_FLOW_ACTIONS,
    MAX_FLOW_MASKS,
    PACKET_IN_MAX_LEN,
)
from vswitchd.errors import FailedPrecondition, InvalidArgument

FLIP_GRACE_SECONDS = 0.002
ACTION_TYPES: dict[str, int] = {name: value for value, name in FLOW_ACTIONS.items()}

FLOW_FIELDS: dict[str, int] = {
    "in_port": 32, "dl_src": 48, "dl_dst": 48, "dl_type": 16, "dl_vlan": 12, "nw_proto": 8,
    "ip_src": 128, "ip_dst": 128, "tp_src": 16, "tp_dst": 16,
}
_FIELD_LIMITS = {name: 1 << bits for name, bits in FLOW_FIELDS.items()}
_ACTION_ARG_BITS = {"drop": 0, "normal": 0, "flood": 0, "output": 32, "mod_vlan_vid": 12,
                    "strip_vlan": 0, "controller": 16}
_FORWARDING = ("output", "normal", "flood")
_TERMINAL = ("normal", "flood")
_VLAN = ("mod_vlan_vid", "strip_vlan")

# Byte layouts of the flow maps, for fast batch packing. They are DERIVED from the C structs in
# bpf/lib/flow.h and flow_key.h (through bcc's generated ctypes classes) when the program is
# loaded: see bind_layouts(). Never written out by hand here.
_KEY: struct.Struct          # struct flow_key
_KEY_FIELDS: list[tuple[str, str]] = []  # (field, struct code) in C order
_KEY_POS: dict[str, tuple[int, int]] = {}  # field -> (argument position, bytes or 0 for ints)
_KEY_ZERO: tuple[object, ...] = ()         # the arguments of an all-zero key
_KEY_WHERE: dict[str, tuple[int, int, int]] = {}  # field -> (position, bytes, 1 << bits)
_LOOKUP_HDR: struct.Struct   # struct flow_lookup_key without .key
_RULE_HDR: struct.Struct     # struct flow_rule without .actions
_ACTION: struct.Struct       # struct flow_action
_MASK_TAIL: struct.Struct    # struct flow_mask without .mask, .need_mask, .need (_MASK_KEYS)
_LIST_HDR: struct.Struct     # struct flow_mask_list without .m

_MASK_KEYS = ("mask", "need_mask", "need")  # struct flow_mask's leading struct flow_keys
_CTYPE_CODES = {ctypes.c_uint8: "B", ctypes.c_uint16: "H", ctypes.c_uint32: "I",
                ctypes.c_uint64: "Q"}


def _code(ctype: type) -> str:
    """struct code of a scalar or u8-array ctypes type."""
    if issubclass(ctype, ctypes.Array) and ctypes.sizeof(ctype._type_) == 1:
        return f"{ctype._length_}s"
    for base, code in _CTYPE_CODES.items():
        if ctypes.sizeof(ctype) == ctypes.sizeof(base) and not issubclass(
                ctype, (ctypes.Structure, ctypes.Array)):
            return code
    raise TypeError(f"no struct code for {ctype}")


def _fields(cls: type, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, code) of cls's fields but SKIP, checking that they are contiguous in C."""
    out, pos = [], None
    for name, ctype, *_ in cls._fields_:
        if name in skip:
            continue
        offset = getattr(cls, name).offset
        if pos is not None and offset != pos:
            raise RuntimeError(f"{cls.__name__}.{name}: implicit padding is not supported")
        out.append((name, _code(ctype)))
        pos = offset + ctypes.sizeof(ctype)
    return out


def _struct(fields: list[tuple[str, str]]) -> struct.Struct:
    return struct.Struct("<" + "".join(code for _, code in fields))


def bind_layouts(rules_table: object, masks_table: object) -> None:
    """Derive the packing layouts from the loaded program's map types (bcc ctypes)."""
    global _KEY, _LOOKUP_HDR, _RULE_HDR, _ACTION, _MASK_TAIL, _LIST_HDR, _KEY_ZERO
    lookup_key, rule, mask_list = rules_table.Key, rules_table.Leaf, masks_table.Leaf
    key_type = dict((n, t) for n, t, *_ in lookup_key._fields_)["key"]
    action_type = dict((n, t) for n, t, *_ in rule._fields_)["actions"]._type_
    mask_type = dict((n, t) for n, t, *_ in mask_list._fields_)["m"]._type_
    _KEY_FIELDS[:] = _fields(key_type)
    _KEY = _struct(_KEY_FIELDS)
    _KEY_POS.clear()
    for pos, (name, code) in enumerate(_KEY_FIELDS):
        _KEY_POS[name] = (pos, int(code[:-1]) if code.endswith("s") else 0)
    _KEY_ZERO = tuple(bytes(size) if size else 0 for _pos, size in _KEY_POS.values())
    _KEY_WHERE.clear()
    _KEY_WHERE.update({name: (pos, size, _FIELD_LIMITS[name])
                       for name, (pos, size) in _KEY_POS.items() if name in _FIELD_LIMITS})
    _action_body.cache_clear()
    _shape.cache_clear()
    _LOOKUP_HDR = _struct(_fields(lookup_key, skip=("key",)))
    _RULE_HDR = _struct(_fields(rule, skip=("actions",)))
    _ACTION = _struct(_fields(action_type))
    if tuple(n for n, *_ in mask_type._fields_[:len(_MASK_KEYS)]) != _MASK_KEYS:
        raise RuntimeError(f"struct flow_mask must start with {', '.join(_MASK_KEYS)}")
    _MASK_TAIL = _struct(_fields(mask_type, skip=_MASK_KEYS))
    _LIST_HDR = _struct(_fields(mask_list, skip=("m",)))


@dataclass(frozen=True)
class DpRule:
    rule_id: int
    priority: int
    fields: tuple[tuple[str, int, int], ...]
    actions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class FlowCounters:
    packets: int
    bytes: int
    last_hit_ns: int


def _pack_key(values: dict[str, int]) -> bytes:
    """struct flow_key with VALUES by field name (byte-array fields big-endian, as on the wire)."""
    return _pack_items(values.items())


def _pack_items(items: Iterable[tuple[str, int]]) -> bytes:
    """struct flow_key of (field, value) pairs; absent fields are zero."""
    args = list(_KEY_ZERO)
    for name, value in items:
        pos, size = _KEY_POS[name]
        args[pos] = value.to_bytes(size, "big") if size else value
    return _KEY.pack(*args)


def pack_flow_key(values: dict[str, int]) -> bytes:
    """struct flow_key bytes of {field: int} (DpRule's integer form); the map layouts must be
    bound (a loaded Datapath)."""
    return _pack_key(values)


def validate_rule(rule: DpRule) -> None:
    if not isinstance(rule.rule_id, int) or not 0 < rule.rule_id <= 0xFFFFFFFF:
        raise InvalidArgument("rule_id", rule.rule_id, "must be an integer in 1..4294967295")
    if not isinstance(rule.priority, int) or not 0 <= rule.priority <= 0xFFFF:
        raise InvalidArgument("priority", rule.priority, "out of range 0..65535")
    seen = set()
    for item in rule.fields:
        if len(item) != 3:
            raise InvalidArgument("fields", item, "must be (field, value, mask)")
        name, value, mask = item
        limit = _FIELD_LIMITS.get(name)
        if limit is None:
            raise InvalidArgument("fields", name,
                                  f"unknown field (known: {', '.join(FLOW_FIELDS)})")
        if name in seen:
            raise InvalidArgument("fields", name, "given twice")
        seen.add(name)
        if type(value) is int and type(mask) is int and 0 <= value < limit \
                and 0 <= mask < limit:
            continue  # the usual case, without the loop below
        for what, number in (("value", value), ("mask", mask)):
            if not isinstance(number, int) or not 0 <= number < limit:
                raise InvalidArgument(f"{name} {what}", number,
                                      f"must fit in {FLOW_FIELDS[name]} bits")
    _check_actions(rule.actions)


def _check_actions(actions: tuple[tuple[str, int], ...]) -> None:
    if len(actions) > MAX_FLOW_ACTIONS:
        raise InvalidArgument("actions", len(actions),
                              f"at most {MAX_FLOW_ACTIONS} actions per rule")
    for item in actions:
        if len(item) != 2 or item[0] not in _ACTION_ARG_BITS:
            raise InvalidArgument("actions", item,
                                  f"unknown action (known: {', '.join(_ACTION_ARG_BITS)})")
        name, arg = item
        bits = _ACTION_ARG_BITS[name]
        if not isinstance(arg, int) or not 0 <= arg < (1 << bits if bits else 1):
            raise InvalidArgument(name, arg, f"argument must fit in {bits} bits" if bits
                                  else "takes no argument (0)")
        if name == "output" and arg == 0:
            raise InvalidArgument("output", arg, "needs an ifindex")
        if name == "controller" and not 1 <= arg <= PACKET_IN_MAX_LEN:
            raise InvalidArgument("controller", arg,
                                  f"max_len must be in 1..{PACKET_IN_MAX_LEN} bytes")
    if sum(1 for item in actions if item[0] == "controller") > 1:
        raise InvalidArgument("actions", actions, "at most one controller action")


def compile_actions(actions: tuple[tuple[str, int], ...]) -> list[tuple[int, int, int]]:
    """[(type, final, arg)] as the datapath executes them.

    normal/flood end the list in the datapath (their last copy is a plain redirect); an output
    after them is moved before them (a clone either way, the set of copies is the same), a VLAN
    action after them is refused. The last output is `final` when no normal/flood follows. A
    controller action goes first: the datapath sends the packet-in when the rule matches,
    before the other actions change the frame (bpf/lib/packet_in.h)."""
    acts = [(n, a) for n, a in actions if n != "drop"]
    acts.sort(key=lambda act: act[0] != "controller")  # stable: the others keep their order
    terminal = [i for i, (n, _) in enumerate(acts) if n in _TERMINAL]
    if len(terminal) > 1:
        raise InvalidArgument("actions", actions, "normal and flood can appear only once")
    if terminal:
        t = terminal[0]
        after = acts[t + 1:]
        if any(n in _VLAN for n, _ in after):
            raise InvalidArgument("actions", actions,
                                  "a VLAN action after normal/flood is not supported")
        acts = acts[:t] + after + [acts[t]]
    out = [[ACTION_TYPES[n], 0, a] for n, a in acts]
    if not terminal:
        for i in range(len(acts) - 1, -1, -1):
            if acts[i][0] == "output":
                out[i][1] = 1
                break
    return [tuple(x) for x in out]


@functools.lru_cache(maxsize=4096)
def _action_body(actions: tuple[tuple[str, int], ...]) -> tuple[int, int, bytes]:
    """(n_actions, flags, packed actions) of a valid action list (InvalidArgument otherwise):
    rules share a few lists, each is checked and packed once."""
    _check_actions(actions)
    acts = compile_actions(actions)
    flags = FLOW_F_FORWARDS if any(n in _FORWARDING for n, _ in actions) else 0
    if any(n == "controller" for n, _ in actions):
        flags |= FLOW_F_CONTROLLER
    body = b"".join(_ACTION.pack(t, f, 0, a) for t, f, a in acts)
    body += bytes(_ACTION.size * (MAX_FLOW_ACTIONS - len(acts)))
    return len(acts), flags, body


def pack_rule(rule: DpRule) -> bytes:
    try:
        n, flags, body = _action_body(rule.actions)
    except TypeError:  # not hashable (lists): the same actions as tuples
        n, flags, body = _action_body(tuple(tuple(a) for a in rule.actions))
    return _RULE_HDR.pack(rule.rule_id, rule.priority, n, flags) + body


def pack_mask(mask: tuple) -> bytes:
    return _pack_items(mask)


@functools.lru_cache(maxsize=1024)
def _shape(names: tuple[str, ...], masks: tuple[int, ...]
           ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[int, int], ...]] | None:
    """(mask, packing plan: (argument position, bytes) per field) of canonical field names
    (known, strictly increasing) with in-range int masks, or None."""
    prev = ""
    for name, m in zip(names, masks, strict=True):
        where = _KEY_WHERE.get(name)
        if where is None or name <= prev or type(m) is not int or not 0 <= m < where[2]:
            return None
        prev = name
    return (tuple(zip(names, masks, strict=True)),
            tuple((_KEY_WHERE[n][0], _KEY_WHERE[n][1]) for n in names))


class _Prepared:
    """A validated DpRule and what the maps need of it, computed once per rule object: a sync
    reuses it for every rule that is the same object as in the previous sync (the table
    manager hands out the same DpRule while a rule is unchanged), so unchanged rules cost a
    dict lookup, not a validation and packing."""

    __slots__ = ("rule", "fields", "mask", "masked", "leaf")

    def __init__(self, rule: DpRule) -> None:
        self.rule = rule
        # Fields that are already canonical (known names in order, masks in range, value &
        # mask == value), as the table manager makes them, are checked and packed in one
        # pass, with what depends only on the names and masks looked up once per shape;
        # anything else takes the full check and is normalised.
        rid, prio, fields = rule.rule_id, rule.priority, rule.fields
        try:
            names, values, masks = zip(*fields, strict=True) if fields else ((), (), ())
            shape = _shape(names, masks)
        except (TypeError, ValueError):
            shape = None
        if shape is not None and type(fields) is tuple and type(rid) is int \
                and 0 < rid <= 0xFFFFFFFF and type(prio) is int and 0 <= prio <= 0xFFFF:
            mask, plan = shape
            args = list(_KEY_ZERO)
            for (pos, size), value, m in zip(plan, values, masks, strict=True):
                if type(value) is not int or value & m != value:
                    break
                args[pos] = value.to_bytes(size, "big") if size else value
            else:
                self.leaf = pack_rule(rule)  # checks the actions
                self.fields, self.mask = fields, mask
                self.masked = _KEY.pack(*args)
                return
        validate_rule(rule)
        norm = sorted([(n, v & m, m) for n, v, m in fields])
        self.fields = tuple(norm)
        self.mask = tuple([(n, m) for n, _v, m in norm])
        self.masked = _pack_items((n, v) for n, v, _m in norm)
        self.leaf = pack_rule(rule)


Needs = dict[tuple, tuple[dict[str, int], dict[str, int]]]


def fields_mask(fields: tuple) -> tuple:
    """The mask of a rule given by its sorted (field, masked value, mask) tuples."""
    return tuple((name, m) for name, _v, m in fields)


def mask_needs(groups: Iterable[tuple], start: Needs | None = None) -> Needs:
    """{mask: (need_mask, need)} by field, for rules given by their sorted (field, masked
    value, mask) tuples: per mask, the bits on which all of its rules agree, and their value.
    A packet that differs there matches no rule of the mask (the datapath skips its lookup).
    START (not changed) holds masks of earlier rules: the new ones narrow it."""
    needs = {m: (dict(b), dict(v)) for m, (b, v) in (start or {}).items()}
    for fields in groups:
        mask = fields_mask(fields)
        cur = needs.get(mask)
        if cur is None:
            needs[mask] = ({name: m for name, _v, m in fields},
                           {name: v for name, v, _m in fields})
            continue
        bits, need = cur
        for name, value, _m in fields:
            agreed = bits[name] & ~(value ^ need[name])
            bits[name] = agreed
            need[name] &= agreed
    return needs


def _needs(prepared: Iterable[_Prepared], start: Needs) -> Needs:
    """mask_needs (START narrowed by the rules) for prepared rules, on their packed keys:
    bitwise operations never carry, so the agreed bits of all fields at once are two integer
    operations per rule (not a dict update per field)."""
    acc: dict[tuple, list[int]] = {
        mask: [int.from_bytes(_pack_key(bits), "big"), int.from_bytes(_pack_key(need), "big")]
        for mask, (bits, need) in start.items()}
    from_bytes = int.from_bytes
    for p in prepared:
        value = from_bytes(p.masked, "big")
        cur = acc.get(p.mask)
        if cur is None:
            acc[p.mask] = [from_bytes(pack_mask(p.mask), "big"), value]
        else:
            agreed = cur[0] & ~(value ^ cur[1])
            cur[0] = agreed
            cur[1] &= agreed
    return {mask: (_key_dict(bits, mask), _key_dict(need, mask))
            for mask, (bits, need) in acc.items()}


def _key_dict(packed: int, mask: tuple) -> dict[str, int]:
    """{field: value} of MASK's fields in a packed struct flow_key given as an integer."""
    values = _KEY.unpack(packed.to_bytes(_KEY.size, "big"))
    out = {}
    for name, _m in mask:
        pos, size = _KEY_POS[name]
        out[name] = int.from_bytes(values[pos], "big") if size else values[pos]
    return out


@dataclass
class _BridgeFlows:
    installed: dict[tuple, _Prepared]  # sorted fields -> the installed (highest-priority) rule
    mask_ids: dict[tuple, int]         # mask -> mask_id (the same in both versions)
    inputs: dict[int, _Prepared]       # rule_id -> every rule of the last sync
    needs: Needs                       # mask -> its agreed bits (mask_needs)


class FlowTables:
    """The flow maps of one Datapath (bcc tables), and the last synced table of each bridge."""

    def __init__(self, bpf) -> None:
        self.masks = bpf[b"flow_masks"]  # bridge -> the version packets use, and its masks
        self.rules = bpf[b"flow_rules"]
        self.stats = bpf[b"flow_stats"]
        self.bridge_set = bpf[b"flow_bridges"]  # bits of the bridges with a masks entry
        bind_layouts(self.rules, self.masks)
        self._bridges: dict[int, _BridgeFlows] = {}
        self._stale: dict[int, dict[int, set[bytes]]] | None = None  # see _stale_keys
        # The bits follow the masks entries (also those an earlier daemon left).
        self._tabled = {key.value for key in self.masks.keys()}
        self._publish_tabled()

    # ---- map helpers -------------------------------------------------------------------

    def _active_version(self, bridge: int) -> int | None:
        leaf = self.masks.get(self.masks.Key(bridge))
        return None if leaf is None else leaf.version & 1

    def _write_batch(self, blobs: list[tuple[bytes, bytes]]) -> None:
        if not blobs:
            return
        n = len(blobs)
        keys = (self.rules.Key * n).from_buffer_copy(b"".join(k for k, _ in blobs))
        vals = (self.rules.Leaf * n).from_buffer_copy(b"".join(v for _, v in blobs))
        try:
            self.rules.items_update_batch(keys, vals)
        except Exception:  # no batch ops: one by one (the same end state)
            for i in range(n):
                self.rules[keys[i]] = vals[i]

    def _delete_batch(self, keys_raw: list[bytes]) -> None:
        if not keys_raw:
            return
        n = len(keys_raw)
        keys = (self.rules.Key * n).from_buffer_copy(b"".join(keys_raw))
        try:
            self.rules.items_delete_batch(keys)
        except Exception:  # a key already gone stops the batch: finish one by one
            for i in range(n):
                maps.delete(self.rules, keys[i])

    def _publish_tabled(self) -> None:
        """Writes flow_bridges from _tabled: bit (bridge mod the bit count) for each bridge
        that has a masks entry. Set after an entry is written, cleared after it is deleted, so
        a packet never skips a table that exists (but for the write itself)."""
        leaf = self.bridge_set.Leaf()
        nbits = len(leaf.bits) * 64
        for bridge in self._tabled:
            bit = bridge % nbits
            leaf.bits[bit // 64] |= 1 << (bit % 64)
        self.bridge_set[ctypes.c_int(0)] = leaf

    def _write_masks(self, bridge: int, version: int, ordered: list[tuple[tuple, int, int]],
                     needs: Needs):
        blob = _LIST_HDR.pack(len(ordered), version)
        for mask, max_prio, mask_id in ordered:
            need_mask, need = needs[mask]
            blob += (pack_mask(mask) + _pack_key(need_mask) + _pack_key(need)
                     + _MASK_TAIL.pack(max_prio, mask_id))
        entry = len(_MASK_KEYS) * _KEY.size + _MASK_TAIL.size
        blob += bytes(entry * (MAX_FLOW_MASKS - len(ordered)))
        self.masks[self.masks.Key(bridge)] = self.masks.Leaf.from_buffer_copy(blob)
        if bridge not in self._tabled:
            self._tabled.add(bridge)
            self._publish_tabled()

    def _delete_masks(self, bridge: int) -> None:
        maps.delete(self.masks, self.masks.Key(bridge))
        if bridge in self._tabled:
            self._tabled.discard(bridge)
            self._publish_tabled()

    def _stale_keys(self, bridge: int) -> dict[int, set[bytes]]:
        """The rule keys, by version, of a bridge this instance has no state of: left by an
        earlier daemon or by a sync that failed. One scan of the map (slow: bcc walks it key by
        key) serves every such bridge; only syncs write the map, so what it found stays true
        for a bridge until its first sync, which takes its keys out."""
        return self._scan().pop(bridge, {0: set(), 1: set()})

    def _scan(self) -> dict[int, dict[int, set[bytes]]]:
        if self._stale is None:
            self._stale = {}
            for k in self.rules.keys():
                raw = bytes(k)
                self._stale.setdefault(k.bridge, {0: set(), 1: set()})[raw[4] & 1].add(raw)
        return self._stale

    def _state_keys(self, bridge: int, state: _BridgeFlows) -> list[bytes]:
        """The rule keys a completed sync left for BRIDGE, in both versions."""
        hdr = _LOOKUP_HDR.pack
        return [hdr(bridge, version, state.mask_ids[p.mask], 0) + p.masked
                for version in (0, 1) for p in state.installed.values()]

    # ---- sync --------------------------------------------------------------------------

    def sync(self, bridge: int, rules: Iterable[DpRule]) -> None:
        state = self._bridges.get(bridge)
        prev = state.inputs if state is not None else {}
        inputs: dict[int, _Prepared] = {}
        groups: dict[tuple, _Prepared] = {}
        for rule in rules:
            p = prev.get(rule.rule_id)
            if p is None or p.rule is not rule:
                p = _Prepared(rule)
            if rule.rule_id in inputs:
                raise InvalidArgument("rule_id", rule.rule_id, "given twice")
            inputs[rule.rule_id] = p
            best = groups.get(p.fields)
            if best is None or (rule.priority, rule.rule_id) > (best.rule.priority,
                                                                best.rule.rule_id):
                groups[p.fields] = p
        new_masks: dict[tuple, int] = {}
        for p in groups.values():
            if new_masks.get(p.mask, -1) < p.rule.priority:
                new_masks[p.mask] = p.rule.priority
        if len(new_masks) > MAX_FLOW_MASKS:
            raise FailedPrecondition(
                f"the flow table of bridge ifindex {bridge} needs {len(new_masks)} distinct "
                f"masks; the datapath supports at most {MAX_FLOW_MASKS}"
            )
        self._bridges.pop(bridge, None)  # restored only when the sync completes
        try:
            mask_ids, needs = self._sync(bridge, state, groups, new_masks)
        except Exception as exc:
            self._stale = None  # what is in the map now is unknown: the next sync scans it
            raise FailedPrecondition(
                f"flow table update of bridge ifindex {bridge} failed: {exc} (the next sync "
                "rebuilds it)"
            ) from exc
        self._bridges[bridge] = _BridgeFlows(installed=groups, mask_ids=mask_ids, inputs=inputs,
                                             needs=needs)

    def _sync(self, bridge: int, state: _BridgeFlows | None, groups: dict[tuple, _Prepared],
              new_masks: dict[tuple, int]) -> tuple[dict[tuple, int], Needs]:
        """Write the difference to STATE (None: rebuild) into both versions; the mask ids and
        the masks' agreed bits."""
        active = self._active_version(bridge)
        if state is None:  # first sync of this daemon: rebuild both versions from scratch
            existing = self._stale_keys(bridge)
            mask_ids = {m: i for i, m in enumerate(new_masks)}
            writes = list(groups.values())
            deleted: list[_Prepared] = []
            gone_ids: set[int] | None = None
            needs = _needs(writes, {})
        else:
            old = state.installed
            kept = {m: i for m, i in state.mask_ids.items() if m in new_masks}
            used = set(kept.values())
            mask_ids = dict(kept)
            free = (i for i in range(256) if i not in used and i not in state.mask_ids.values())
            for m in new_masks:
                if m not in mask_ids:
                    mask_ids[m] = next(free)
            deleted = [p for f, p in old.items() if f not in groups]
            writes = []
            replaced = []
            for f, p in groups.items():
                o = old.get(f)
                if o is p:
                    continue
                if o is None:
                    writes.append(p)
                elif o.rule != p.rule:
                    writes.append(p)
                    replaced.append(o)
            # counters of rules that are no longer installed (a rule id is installed once)
            gone_ids = ({o.rule.rule_id for o in deleted} | {o.rule.rule_id for o in replaced}) \
                - {p.rule.rule_id for p in writes}
            # Rules only narrow the agreed bits: start from the last sync's, but recompute the
            # masks that lost rules (their bits may widen again).
            lost = {p.mask for p in deleted}
            kept_needs = {m: n for m, n in state.needs.items() if m in new_masks and m not in lost}
            if lost:
                kept_needs = _needs([p for p in groups.values() if p.mask in lost], kept_needs)
            needs = _needs(writes, kept_needs)
        ordered = sorted(((m, p, mask_ids[m]) for m, p in new_masks.items()),
                         key=lambda x: (-x[1], x[2]))
        hdr = _LOOKUP_HDR.pack

        def apply(version: int) -> None:
            if state is None:
                dels = []
                if existing[version]:  # stale entries of an earlier daemon: keep what stays
                    keep = {hdr(bridge, version, mask_ids[p.mask], 0) + p.masked
                            for p in writes}
                    dels = [k for k in existing[version] if k not in keep]
            else:
                dels = [hdr(bridge, version, state.mask_ids[p.mask], 0) + p.masked
                        for p in deleted]
            self._delete_batch(dels)
            heads = {m: hdr(bridge, version, i, 0) for m, i in mask_ids.items()}
            self._write_batch([(heads[p.mask] + p.masked, p.leaf) for p in writes])

        inactive = 1 if active in (None, 0) else 0
        apply(inactive)
        if groups:  # the flip: one map update, the version and its masks together
            self._write_masks(bridge, inactive, ordered, needs)
        else:  # empty table: no entry (and no bit), packets go straight to normal
            self._delete_masks(bridge)
        # A packet that read the old version just before the flip finishes within
        # microseconds (programs run under RCU); wait out that window before changing it.
        time.sleep(FLIP_GRACE_SECONDS)
        apply(1 - inactive)
        if gone_ids is None:
            new_ids = {p.rule.rule_id for p in groups.values()}
            gone = [k for k in self.stats.keys() if k.bridge == bridge
                    and k.rule_id not in new_ids]
        else:
            gone = []
            for rid in gone_ids:
                key = self.stats.Key()
                key.bridge, key.rule_id = bridge, rid
                gone.append(key)
        for key in gone:
            try:
                del self.stats[key]
            except KeyError:
                pass
        return mask_ids, needs

    # ---- counters and cleanup ----------------------------------------------------------

    def counters(self, bridge: int,
                 rule_ids: Iterable[int] | None = None) -> dict[int, FlowCounters]:
        """{rule_id: counters} of the bridge's rules that were hit; RULE_IDS: only those (one
        lookup each rather than a walk of every rule's entry)."""
        if rule_ids is None:
            items: Iterable = self.stats.items()
        else:
            items = []
            for rid in rule_ids:
                key = self.stats.Key()
                key.bridge, key.rule_id = bridge, rid
                try:
                    items.append((key, self.stats[key]))
                except KeyError:
                    continue
        out = {}
        for key, per_cpu in items:
            if key.bridge != bridge:
                continue
            out[key.rule_id] = FlowCounters(
                packets=sum(c.packets for c in per_cpu),
                bytes=sum(c.bytes for c in per_cpu),
                last_hit_ns=max((c.last_hit_ns for c in per_cpu), default=0),
            )
        return out

    def forget(self, drop) -> None:
        """Removes every flow map entry of the bridges for which drop(bridge) is true. The
        rule keys of synced bridges are known; the others come from _stale_keys' scan."""
        for key in list(self.masks.keys()):
            if drop(key.value):
                self._delete_masks(key.value)
        stale = self._scan()
        keys: list[bytes] = []
        for bridge in [b for b in self._bridges if drop(b)]:
            keys += self._state_keys(bridge, self._bridges.pop(bridge))
        for bridge in [b for b in stale if drop(b)]:
            for version_keys in stale.pop(bridge).values():
                keys += version_keys
        self._delete_batch(keys)
        for key in list(self.stats.keys()):
            if drop(key.bridge):
                maps.delete(self.stats, key)
