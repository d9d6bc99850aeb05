"""Flow tables of the datapath: rule validation, packing, and atomic incremental sync.

Layouts and limits come from bpf/lib/flow.h (parsed, never retyped): the X(...) table of
actions and the MAX_FLOW_* defines; the struct layouts are packed with `struct` below and
checked against the sizes of bcc's generated ctypes classes when the maps are opened.

Per bridge the datapath holds two versions of the table. A sync writes the difference into the
inactive version, flips flow_active with one map update (a packet sees the old table or the new
one), then applies the same difference to the other version, so both are equal again.
"""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vswitchd.datapath.drop_reasons import LIB_DIR, parse_define, parse_xmacro
from vswitchd.errors import FailedPrecondition, InvalidArgument

_FLOW_H = (LIB_DIR / "flow.h").read_text()
FLIP_GRACE_SECONDS = 0.002
MAX_FLOW_MASKS: int = parse_define(_FLOW_H, "MAX_FLOW_MASKS")
MAX_FLOW_ACTIONS: int = parse_define(_FLOW_H, "MAX_FLOW_ACTIONS")
FLOW_F_FORWARDS: int = parse_define(_FLOW_H, "FLOW_F_FORWARDS")
ACTION_TYPES: dict[str, int] = {
    name: value for value, name in parse_xmacro(_FLOW_H, "FLOW_ACTIONS").items()
}

FLOW_FIELDS: dict[str, int] = {
    "in_port": 32, "dl_src": 48, "dl_dst": 48, "dl_type": 16, "dl_vlan": 12, "nw_proto": 8,
    "ip_src": 128, "ip_dst": 128, "tp_src": 16, "tp_dst": 16,
}
_ACTION_ARG_BITS = {"drop": 0, "normal": 0, "flood": 0, "output": 32, "mod_vlan_vid": 12,
                    "strip_vlan": 0}
_FORWARDING = ("output", "normal", "flood")
_TERMINAL = ("normal", "flood")
_VLAN = ("mod_vlan_vid", "strip_vlan")

# Byte layouts of the flow maps, for fast batch packing. They are DERIVED from the C structs in
# bpf/lib/flow.h (through bcc's generated ctypes classes) when the program is loaded: see
# bind_layouts(). Never written out by hand here.
_KEY: struct.Struct          # struct flow_key
_KEY_FIELDS: list[tuple[str, str]] = []  # (field, struct code) in C order
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
    global _KEY, _LOOKUP_HDR, _RULE_HDR, _ACTION, _MASK_TAIL, _LIST_HDR
    lookup_key, rule, mask_list = rules_table.Key, rules_table.Leaf, masks_table.Leaf
    key_type = dict((n, t) for n, t, *_ in lookup_key._fields_)["key"]
    action_type = dict((n, t) for n, t, *_ in rule._fields_)["actions"]._type_
    mask_type = dict((n, t) for n, t, *_ in mask_list._fields_)["m"]._type_
    _KEY_FIELDS[:] = _fields(key_type)
    _KEY = _struct(_KEY_FIELDS)
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
    args = []
    for name, code in _KEY_FIELDS:
        value = values.get(name, 0)
        args.append(value.to_bytes(int(code[:-1]), "big") if code.endswith("s") else value)
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
        if name not in FLOW_FIELDS:
            raise InvalidArgument("fields", name,
                                  f"unknown field (known: {', '.join(FLOW_FIELDS)})")
        if name in seen:
            raise InvalidArgument("fields", name, "given twice")
        seen.add(name)
        limit = 1 << FLOW_FIELDS[name]
        for what, number in (("value", value), ("mask", mask)):
            if not isinstance(number, int) or not 0 <= number < limit:
                raise InvalidArgument(f"{name} {what}", number,
                                      f"must fit in {FLOW_FIELDS[name]} bits")
    if len(rule.actions) > MAX_FLOW_ACTIONS:
        raise InvalidArgument("actions", len(rule.actions),
                              f"at most {MAX_FLOW_ACTIONS} actions per rule")
    for item in rule.actions:
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


def compile_actions(actions: tuple[tuple[str, int], ...]) -> list[tuple[int, int, int]]:
    """[(type, final, arg)] as the datapath executes them.

    normal/flood end the list in the datapath (their last copy is a plain redirect); an output
    after them is moved before them (a clone either way, the set of copies is the same), a VLAN
    action after them is refused. The last output is `final` when no normal/flood follows."""
    acts = [(n, a) for n, a in actions if n != "drop"]
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


def mask_of(rule: DpRule) -> tuple:
    return tuple((name, mask) for name, _v, mask in sorted(rule.fields))


def pack_rule(rule: DpRule) -> bytes:
    acts = compile_actions(rule.actions)
    flags = FLOW_F_FORWARDS if any(n in _FORWARDING for n, _ in rule.actions) else 0
    body = b"".join(_ACTION.pack(t, f, 0, a) for t, f, a in acts)
    body += bytes(_ACTION.size * (MAX_FLOW_ACTIONS - len(acts)))
    return _RULE_HDR.pack(rule.rule_id, rule.priority, len(acts), flags) + body


def pack_masked_key(rule: DpRule) -> bytes:
    return _pack_key({name: value & mask for name, value, mask in rule.fields})


def pack_mask(mask: tuple) -> bytes:
    return _pack_key(dict(mask))


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


@dataclass
class _BridgeFlows:
    installed: dict[tuple, DpRule]  # sorted fields -> the installed (highest-priority) rule
    mask_ids: dict[tuple, int]      # mask -> mask_id (the same in both versions)
    needs: Needs                    # mask -> its agreed bits (mask_needs)


class FlowTables:
    """The flow maps of one Datapath (bcc tables), and the last synced table of each bridge."""

    def __init__(self, bpf) -> None:
        self.active = bpf[b"flow_active"]
        self.masks = bpf[b"flow_masks"]
        self.rules = bpf[b"flow_rules"]
        self.stats = bpf[b"flow_stats"]
        bind_layouts(self.rules, self.masks)
        self._bridges: dict[int, _BridgeFlows] = {}

    # ---- map helpers -------------------------------------------------------------------

    def _lookup_key(self, bridge: int, version: int, mask_id: int, masked: bytes) -> bytes:
        return _LOOKUP_HDR.pack(bridge, version, mask_id, 0) + masked

    def _active_version(self, bridge: int) -> int | None:
        leaf = self.active.get(self.active.Key(bridge))
        return None if leaf is None else leaf.value & 1

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
                try:
                    del self.rules[keys[i]]
                except KeyError:
                    pass

    def _write_masks(self, bridge: int, version: int, ordered: list[tuple[tuple, int, int]],
                     needs: Needs):
        blob = _LIST_HDR.pack(len(ordered), 0)
        for mask, max_prio, mask_id in ordered:
            need_mask, need = needs[mask]
            blob += (pack_mask(mask) + _pack_key(need_mask) + _pack_key(need)
                     + _MASK_TAIL.pack(max_prio, mask_id))
        entry = len(_MASK_KEYS) * _KEY.size + _MASK_TAIL.size
        blob += bytes(entry * (MAX_FLOW_MASKS - len(ordered)))
        key = self.masks.Key()
        key.bridge, key.version = bridge, version
        self.masks[key] = self.masks.Leaf.from_buffer_copy(blob)

    def _scan_rule_keys(self, bridges) -> list[bytes]:
        return [bytes(k) for k in self.rules.keys() if k.bridge in bridges]

    # ---- sync --------------------------------------------------------------------------

    def sync(self, bridge: int, rules: Iterable[DpRule]) -> None:
        rules = list(rules)
        ids = set()
        groups: dict[tuple, DpRule] = {}
        for rule in rules:
            validate_rule(rule)
            if rule.rule_id in ids:
                raise InvalidArgument("rule_id", rule.rule_id, "given twice")
            ids.add(rule.rule_id)
            fields = tuple(sorted((n, v & m, m) for n, v, m in rule.fields))
            best = groups.get(fields)
            if best is None or (rule.priority, rule.rule_id) > (best.priority, best.rule_id):
                groups[fields] = rule
        new_masks: dict[tuple, int] = {}
        for rule in groups.values():
            m = mask_of(rule)
            if new_masks.get(m, -1) < rule.priority:
                new_masks[m] = rule.priority
        if len(new_masks) > MAX_FLOW_MASKS:
            raise FailedPrecondition(
                f"the flow table of bridge ifindex {bridge} needs {len(new_masks)} distinct "
                f"masks; the datapath supports at most {MAX_FLOW_MASKS}"
            )
        state = self._bridges.pop(bridge, None)  # restored only when the sync completes
        try:
            self._sync(bridge, state, groups, new_masks)
        except Exception as exc:
            raise FailedPrecondition(
                f"flow table update of bridge ifindex {bridge} failed: {exc} (the next sync "
                "rebuilds it)"
            ) from exc

    def _sync(self, bridge: int, state: _BridgeFlows | None, groups: dict[tuple, DpRule],
              new_masks: dict[tuple, int]) -> None:
        active = self._active_version(bridge)
        if state is None:  # first sync of this daemon: rebuild both versions from scratch
            existing: dict[int, set[bytes]] = {0: set(), 1: set()}
            for k in self._scan_rule_keys({bridge}):
                existing[k[4] & 1].add(k)
            mask_ids = {m: i for i, m in enumerate(new_masks)}
            writes_fields = list(groups)
            deletes_by_version = None
            old_ids: set[int] | None = None
            needs = mask_needs(groups)
        else:
            old = state.installed
            kept = {m: i for m, i in state.mask_ids.items() if m in new_masks}
            used = set(kept.values())
            mask_ids = dict(kept)
            free = (i for i in range(256) if i not in used and i not in state.mask_ids.values())
            for m in new_masks:
                if m not in mask_ids:
                    mask_ids[m] = next(free)
            deleted = [f for f in old if f not in groups]
            writes_fields = [f for f, r in groups.items() if old.get(f) != r]
            old_ids = {r.rule_id for r in old.values()}
            deletes_by_version = deleted
            # Rules only narrow the agreed bits: start from the last sync's, but recompute the
            # masks that lost rules (their bits may widen again).
            lost = {fields_mask(f) for f in deleted}
            kept_needs = {m: n for m, n in state.needs.items() if m in new_masks and m not in lost}
            needs = mask_needs([f for f in groups if fields_mask(f) in lost] if lost else [],
                               kept_needs)
            needs = mask_needs(writes_fields, needs)
        ordered = sorted(((m, p, mask_ids[m]) for m, p in new_masks.items()),
                         key=lambda x: (-x[1], x[2]))
        masked = {f: pack_masked_key(groups[f]) for f in writes_fields}
        leaves = {f: pack_rule(groups[f]) for f in writes_fields}

        def apply(version: int) -> None:
            if deletes_by_version is None:
                keep = {self._lookup_key(bridge, version, mask_ids[mask_of(groups[f])],
                                         masked[f]) for f in writes_fields}
                dels = [k for k in existing[version] if k not in keep]
            else:
                dels = [self._lookup_key(bridge, version, state.mask_ids[mask_of(old[f])],
                                         pack_masked_key(old[f])) for f in deletes_by_version]
            self._delete_batch(dels)
            self._write_batch([
                (self._lookup_key(bridge, version, mask_ids[mask_of(groups[f])], masked[f]),
                 leaves[f]) for f in writes_fields
            ])
            self._write_masks(bridge, version, ordered, needs)

        inactive = 1 if active in (None, 0) else 0
        apply(inactive)
        if groups:  # the flip: one map update
            self.active[self.active.Key(bridge)] = self.active.Leaf(inactive)
        else:  # empty table: no entry, packets go straight to normal after one lookup
            try:
                del self.active[self.active.Key(bridge)]
            except KeyError:
                pass
        # A packet that read the old version just before the flip finishes within
        # microseconds (programs run under RCU); wait out that window before changing it.
        time.sleep(FLIP_GRACE_SECONDS)
        apply(1 - inactive)
        new_ids = {r.rule_id for r in groups.values()}
        if old_ids is None:
            gone = [k for k in self.stats.keys() if k.bridge == bridge
                    and k.rule_id not in new_ids]
        else:
            gone = []
            for rid in old_ids - new_ids:
                key = self.stats.Key()
                key.bridge, key.rule_id = bridge, rid
                gone.append(key)
        for key in gone:
            try:
                del self.stats[key]
            except KeyError:
                pass
        self._bridges[bridge] = _BridgeFlows(installed=groups, mask_ids=mask_ids, needs=needs)

    # ---- counters and cleanup ----------------------------------------------------------

    def counters(self, bridge: int) -> dict[int, FlowCounters]:
        out = {}
        for key, per_cpu in self.stats.items():
            if key.bridge != bridge:
                continue
            out[key.rule_id] = FlowCounters(
                packets=sum(c.packets for c in per_cpu),
                bytes=sum(c.bytes for c in per_cpu),
                last_hit_ns=max((c.last_hit_ns for c in per_cpu), default=0),
            )
        return out

    def forget(self, drop) -> None:
        """Removes every flow map entry of the bridges for which drop(bridge) is true."""
        for key in list(self.active.keys()):
            if drop(key.value):
                self._del(self.active, key)
        for key in list(self.masks.keys()):
            if drop(key.bridge):
                self._del(self.masks, key)
        self._delete_batch([bytes(k) for k in self.rules.keys() if drop(k.bridge)])
        for key in list(self.stats.keys()):
            if drop(key.bridge):
                self._del(self.stats, key)
        for bridge in [b for b in self._bridges if drop(b)]:
            del self._bridges[bridge]

    @staticmethod
    def _del(table, key) -> None:
        try:
            del table[key]
        except KeyError:
            pass
