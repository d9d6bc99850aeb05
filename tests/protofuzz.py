"""Hypothesis strategies for protobuf request messages, made from the message descriptors: every
field of every message gets random and boundary values (huge strings, long repeated fields,
unknown enum numbers, names with odd characters), biased towards values that look valid
(the names of objects that exist, addresses, MACs, VLAN ids) so that calls get past the first
check. A field can be given its own strategy by name (`Hints`), e.g. to keep namespace paths
inside what a test owns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

HUGE = 100_000  # characters of a huge string (the daemon's request limit is far above)
LONG = 1_000    # elements of a long repeated field

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1),
    F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1),
    F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
}
ODD_TEXT = ["", " ", "a b", "-", ".", "..", "/", "x/y", "a\x00b", "\n", "é", "名前", "\u202e",
            "%s%n", "'; DROP TABLE bridges; --", "*", "a" * 15, "a" * 16, "a" * 64,
            "a:b", "0", "-1"]


# built when drawn: a strategy's repr (in hypothesis' reports) then stays short
HUGE_TEXT = st.builds(str.__mul__, st.just("x"), st.just(HUGE))
HUGE_BYTES = st.builds(bytes.__mul__, st.just(b"\xff"), st.just(HUGE))


def boundary_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (lo, lo + 1, -1, 0, 1, 2, 255, 256, 4094, 4095, 4096, 65535,
                                65536, 2**24 - 1, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                                hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


@dataclass(repr=False)
class Hints:
    """Strategies for string fields by name (the same name in every message), and pools of
    valid-looking strings."""

    by_name: dict[str, st.SearchStrategy] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # objects that exist, or may be created

    def __repr__(self) -> str:  # (in hypothesis' reports: the strategies are long)
        return f"Hints({sorted(self.by_name)}, names={self.names})"

    def text(self) -> st.SearchStrategy[str]:
        return mostly(st.sampled_from(self.names), st.one_of(
            st.sampled_from(ODD_TEXT), st.text(max_size=24), HUGE_TEXT))


def mostly(likely: st.SearchStrategy, other: st.SearchStrategy,
           tenths: int = 6) -> st.SearchStrategy:
    """LIKELY in TENTHS of the draws, else OTHER (one_of would pick each about as often)."""
    return st.integers(0, 9).flatmap(lambda i: likely if i < tenths else other)


def _scalar(fd: FieldDescriptor, hints: Hints) -> st.SearchStrategy:
    t = fd.type
    if fd.name in hints.by_name and t == F.TYPE_STRING:  # (a uint32 mask is not a MAC's)
        return hints.by_name[fd.name]
    if t in _INT_RANGES:
        return boundary_ints(*_INT_RANGES[t])
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, -1.0, 1e300, float("inf"), float("nan")]),
                         st.floats(width=32 if t == F.TYPE_FLOAT else 64))
    if t == F.TYPE_STRING:
        return hints.text()
    if t == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.binary(min_size=1500, max_size=2000),
                         HUGE_BYTES)
    if t == F.TYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known),
                         st.sampled_from([max(known) + 1, 99, -1, 2**31 - 1]))
    raise TypeError(f"no strategy for field {fd.full_name} of type {t}")


def _size(value: object) -> int:
    return value.ByteSize() if isinstance(value, Message) else len(str(value))


def _repeated(fd: FieldDescriptor, one: st.SearchStrategy) -> st.SearchStrategy[list]:
    # long: one value repeated (a huge one only twice: the request stays under the limit)
    return st.one_of(st.lists(one, max_size=3),
                     one.map(lambda v: [v] * (LONG if _size(v) < 1000 else 2)))


@st.composite
def message(draw: Callable, desc: Descriptor, hints: Hints, depth: int = 0) -> Message:
    """A message of type DESC with each field set or not (oneofs: at most one member)."""
    from google.protobuf import message_factory

    msg = message_factory.GetMessageClass(desc)()
    chosen_oneofs = {o.name: draw(st.sampled_from([None, *[f.name for f in o.fields]]))
                     for o in desc.oneofs if not o.name.startswith("_")}  # not proto3 optional
    for fd in desc.fields:
        oneof = fd.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if chosen_oneofs[fd.containing_oneof.name] != fd.name:
                continue
        elif draw(st.integers(0, 3)) == 0:  # mostly set: each must pass for a call to
            continue
        _set(draw, msg, fd, hints, depth)
    return msg


def _set(draw: Callable, msg: Message, fd: FieldDescriptor, hints: Hints, depth: int) -> None:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key_fd, value_fd = (fd.message_type.fields_by_name[k] for k in ("key", "value"))
        items = draw(st.one_of(
            st.dictionaries(_scalar(key_fd, hints), _scalar(value_fd, hints), max_size=3),
            st.just({f"k{i}": "v" for i in range(LONG)})))
        getattr(msg, fd.name).update(items)
        return
    if fd.message_type is not None:
        if fd.message_type.full_name == "google.protobuf.FieldMask":
            one_msg = _field_mask(msg.DESCRIPTOR, hints)
        elif depth >= 3:
            return
        else:
            one_msg = message(fd.message_type, hints, depth + 1)
        if fd.is_repeated:
            getattr(msg, fd.name).extend(draw(_repeated(fd, one_msg)))
        else:
            getattr(msg, fd.name).CopyFrom(draw(one_msg))
        return
    one = _scalar(fd, hints)
    if fd.is_repeated:
        getattr(msg, fd.name).extend(draw(_repeated(fd, one)))
    else:
        setattr(msg, fd.name, draw(one))


def _field_mask(request: Descriptor, hints: Hints) -> st.SearchStrategy[Message]:
    """A FieldMask whose paths are mostly field names of the request's object (the message
    field besides the mask), some unknown."""
    from google.protobuf.field_mask_pb2 import FieldMask

    names = sorted({f.name for m in request.fields if m.message_type is not None
                    and m.message_type.full_name != "google.protobuf.FieldMask"
                    for f in m.message_type.fields})
    path = st.one_of(st.sampled_from(names or ["x"]), hints.text())
    return st.lists(path, max_size=4).map(lambda paths: FieldMask(paths=paths))


def _paths(msg: Message, depth: int = 0) -> list[tuple[Message, FieldDescriptor]]:
    """(parent, field) of every field of MSG and of its set sub-messages (two levels)."""
    out = []
    for fd in msg.DESCRIPTOR.fields:
        out.append((msg, fd))
        if depth < 1 and fd.message_type is not None and not fd.is_repeated \
                and msg.HasField(fd.name):
            out += _paths(getattr(msg, fd.name), depth + 1)
    return out


@st.composite
def mutated(draw: Callable, seed: Message, hints: Hints) -> Message:
    """SEED (a valid request) with one or two of its fields cleared or given a generated value:
    calls get past the checks of the fields left alone."""
    msg = type(seed)()
    msg.CopyFrom(seed)
    paths = _paths(msg)
    for i in draw(st.lists(st.integers(0, len(paths) - 1), min_size=1, max_size=2, unique=True)):
        parent, fd = paths[i]
        parent.ClearField(fd.name)
        if draw(st.integers(0, 3)) > 0:  # mostly a new value, else left cleared
            _set(draw, parent, fd, hints, depth=1)
    return msg
