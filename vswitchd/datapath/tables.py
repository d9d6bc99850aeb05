"""The datapath's maps as Python mappings, over the bpf() syscall, without bcc: the daemon
never imports bcc (its LLVM costs 60 MiB of resident memory to import, 90 more to compile).

The interface is the part of bcc's table classes the datapath uses (`table[key]`, items(),
Key/Leaf, per-CPU leaves as one value per possible CPU, the batch calls), so map writers and
tests read the same whether a table came from bcc or from here. Key and Leaf are ctypes types
decoded from the descriptions bcc's compiler wrote for each map (compile.py): the C structs
are the one source of the layouts.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator, MutableMapping

from vswitchd.datapath.bpfsys import (
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_GET_NEXT_KEY,
    BPF_MAP_LOOKUP_ELEM,
    BPF_MAP_UPDATE_ELEM,
    bpf,
)

BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27

# enum bpf_map_type, the ones the datapath declares
MAP_HASH, MAP_ARRAY, MAP_PROG_ARRAY = 1, 2, 3
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY = 5, 6
MAP_RINGBUF = 27

_C_TYPES = {
    "_Bool": ctypes.c_bool, "char": ctypes.c_char, "signed char": ctypes.c_byte,
    "unsigned char": ctypes.c_ubyte, "short": ctypes.c_short,
    "unsigned short": ctypes.c_ushort, "int": ctypes.c_int, "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long, "unsigned long": ctypes.c_ulong, "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong, "__int128": ctypes.c_int64 * 2,
    "unsigned __int128": ctypes.c_uint64 * 2,
}


def decode_type(desc):
    """The ctypes type of bcc's JSON description of a C type: a scalar's name, or
    [name, [[field, type] | [field, type, [n]] | [field, type, bits] | nested], kind]."""
    if isinstance(desc, str):
        return _C_TYPES[desc]
    anonymous: list[str] = []
    fields: list[tuple] = []
    for field in desc[1]:
        if len(field) == 2:
            fields.append((field[0], decode_type(field[1])))
        elif len(field) == 3 and isinstance(field[2], list):
            fields.append((field[0], decode_type(field[1]) * field[2][0]))
        elif len(field) == 3 and isinstance(field[2], int):
            fields.append((field[0], decode_type(field[1]), field[2]))
        elif len(field) == 3 and field[2] in ("struct", "struct_packed", "union"):
            name = field[0] or f"__anon{len(anonymous)}"
            if not field[0]:
                anonymous.append(name)
            fields.append((name, decode_type(field)))
        else:
            raise ValueError(f"cannot decode the C type {field!r}")
    kind = desc[2] if len(desc) > 2 else "struct"
    base = ctypes.Union if kind == "union" else ctypes.Structure
    body = {"_anonymous_": anonymous, "_fields_": fields}
    if kind == "struct_packed":
        body["_pack_"] = 1
    return type(str(desc[0]), (base,), body)


@functools.cache
def possible_cpus() -> int:
    """How many values a per-CPU map holds for each key (the kernel's possible CPUs)."""
    with open("/sys/devices/system/cpu/possible") as f:
        count = 0
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    return count


class _Elem(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


class _Batch(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def _addr(obj) -> int:
    return ctypes.addressof(obj) if obj is not None else 0


class Table(MutableMapping):
    """A hash map: lookups raise KeyError for a missing key; iteration walks the keys."""

    def __init__(self, name: str, fd: int, ttype: int, key_type, leaf_type, max_entries: int,
                 flags: int = 0) -> None:
        self.name = name
        self.map_fd = fd
        self.ttype = ttype
        self.Key = key_type
        self.Leaf = leaf_type
        self.max_entries = max_entries
        self.flags = flags

    def get_fd(self) -> int:
        return self.map_fd

    def _key(self, key):
        return key

    def _call(self, cmd: int, key, value, flags: int, what: str) -> None:
        bpf(cmd, _Elem(self.map_fd, 0, _addr(key), _addr(value), flags), what)

    def __getitem__(self, key):
        key = self._key(key)
        leaf = self.Leaf()
        try:
            self._call(BPF_MAP_LOOKUP_ELEM, key, leaf, 0, f"looking up in {self.name}")
        except FileNotFoundError:
            raise KeyError(key) from None
        return leaf

    def __setitem__(self, key, leaf) -> None:
        self._call(BPF_MAP_UPDATE_ELEM, self._key(key), leaf, 0, f"updating {self.name}")

    def __delitem__(self, key) -> None:
        try:
            self._call(BPF_MAP_DELETE_ELEM, self._key(key), None, 0, f"deleting from {self.name}")
        except FileNotFoundError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator:
        key = None
        while True:
            nxt = self.Key()
            try:
                self._call(BPF_MAP_GET_NEXT_KEY, key, nxt, 0, f"walking {self.name}")
            except FileNotFoundError:
                return
            yield nxt
            key = nxt

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys(self):  # bcc's tables return a key iterator, not a view
        return iter(self)

    def items(self) -> list[tuple]:
        """(key, leaf) of the entries present; one deleted meanwhile is left out."""
        out = []
        for key in list(self):
            try:
                out.append((key, self[key]))
            except KeyError:
                pass
        return out

    def values(self) -> list:
        return [leaf for _key, leaf in self.items()]

    def clear(self) -> None:
        for key in list(self):
            try:
                del self[key]
            except KeyError:
                pass

    def items_lookup_batch(self) -> Iterator[tuple]:
        """Every (key, leaf), read with BPF_MAP_LOOKUP_BATCH calls."""
        keys = (self.Key * self.max_entries)()
        leaves = (self.Leaf * self.max_entries)()
        token = ctypes.create_string_buffer(max(8, ctypes.sizeof(self.Key)))
        total = 0
        while total < self.max_entries:
            attr = _Batch(_addr(token) if total else 0, _addr(token),
                          _addr(keys) + ctypes.sizeof(self.Key) * total,
                          _addr(leaves) + ctypes.sizeof(self.Leaf) * total,
                          self.max_entries - total, self.map_fd, 0, 0)
            try:
                bpf(BPF_MAP_LOOKUP_BATCH, attr, f"reading {self.name}")
            except FileNotFoundError:
                total += attr.count
                break
            total += attr.count
            if attr.count == 0:
                break
        for i in range(total):
            yield keys[i], leaves[i]

    def items_update_batch(self, keys, leaves) -> None:
        self._batch(BPF_MAP_UPDATE_BATCH, keys, leaves, f"updating {self.name}")

    def items_delete_batch(self, keys) -> None:
        self._batch(BPF_MAP_DELETE_BATCH, keys, None, f"deleting from {self.name}")

    def _batch(self, cmd: int, keys, leaves, what: str) -> None:
        if not 1 <= len(keys) <= self.max_entries or (leaves is not None
                                                      and len(leaves) != len(keys)):
            raise ValueError(f"{what}: {len(keys)} keys for a map of {self.max_entries}")
        bpf(cmd, _Batch(0, 0, _addr(keys), _addr(leaves), len(keys), self.map_fd, 0, 0), what)


class Array(Table):
    """An array map: every index up to max_entries exists; deleting zeroes the entry."""

    def _key(self, key):
        if isinstance(key, int):
            key = self.Key(key + self.max_entries if key < 0 else key)
        if not isinstance(key, ctypes._SimpleCData):
            raise IndexError("an array index must be an integer")
        if not 0 <= key.value < self.max_entries:
            raise IndexError(f"index {key.value} is outside {self.name}")
        return key

    def __delitem__(self, key) -> None:
        self[key] = self.Leaf()

    def __iter__(self) -> Iterator:
        return (self.Key(i) for i in range(self.max_entries))

    def __len__(self) -> int:
        return self.max_entries

    def clear(self) -> None:
        for key in self:
            del self[key]


class ProgArray(Array):
    """A tail-call table: the values are program fds on the way in."""

    def __delitem__(self, key) -> None:
        try:
            self._call(BPF_MAP_DELETE_ELEM, self._key(key), None, 0, f"deleting from {self.name}")
        except FileNotFoundError:
            raise KeyError(key) from None

    def __setitem__(self, key, prog) -> None:
        fd = prog if isinstance(prog, int) else getattr(prog, "fd", prog)
        super().__setitem__(key, self.Leaf(fd) if isinstance(fd, int) else fd)


class _PerCpu:
    """Per-CPU leaves: Leaf is sLeaf * possible CPUs, and a write sets every CPU's value."""

    def _per_cpu(self) -> None:
        self.sLeaf = self.Leaf
        size = ctypes.sizeof(self.sLeaf)
        if size % 8 == 0:
            self.Leaf = self.sLeaf * possible_cpus()
        elif self.sLeaf in (ctypes.c_uint, ctypes.c_int):  # the kernel pads each value to 8
            self.Leaf = (ctypes.c_uint64 if self.sLeaf is ctypes.c_uint
                         else ctypes.c_int64) * possible_cpus()
        else:
            raise ValueError(f"{self.name}: a per-CPU value must be a multiple of 8 bytes")

    def getvalue(self, key):
        return self[key]

    def sum(self, key):
        return self.sLeaf(sum(self[key]))


class PerCpuHash(_PerCpu, Table):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._per_cpu()


class PerCpuArray(_PerCpu, Array):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._per_cpu()


class RingBuf(Table):
    """A BPF ring buffer: no entries to look up; read it with ringbuf.RingReader."""

    def __iter__(self) -> Iterator:
        return iter(())

    def __len__(self) -> int:
        return 0


_CLASSES = {MAP_HASH: Table, MAP_ARRAY: Array, MAP_PROG_ARRAY: ProgArray,
            MAP_PERCPU_HASH: PerCpuHash, MAP_PERCPU_ARRAY: PerCpuArray, MAP_RINGBUF: RingBuf}


def table(name: str, fd: int, ttype: int, key_desc, leaf_desc, max_entries: int,
          flags: int = 0) -> Table:
    """The mapping over map fd, whose key and leaf bcc described as key_desc and leaf_desc."""
    cls = _CLASSES.get(ttype, Table)  # device maps: xdpmaps.py writes them, not through this
    return cls(name, fd, ttype, decode_type(key_desc), decode_type(leaf_desc), max_entries,
               flags)

