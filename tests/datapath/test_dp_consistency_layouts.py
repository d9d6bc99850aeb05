"""vswitchd --check-state reads the pinned maps without bcc (vswitchd.consistency), with byte
layouts of its own: each is checked here against the C structs, through the ctypes classes bcc
generates from them when the programs load."""

from __future__ import annotations

import ctypes

import pytest

from vswitchd import consistency

pytestmark = pytest.mark.root


def _filled(cls: type) -> tuple[ctypes.Structure, list[int]]:
    """An instance of CLS with every scalar field (and array element) distinct, and those
    values in C order: what a struct.Struct of the same layout unpacks."""
    obj, values = cls(), []
    for n, (name, ctype) in enumerate(cls._fields_, start=1):
        if issubclass(ctype, ctypes.Array) and ctypes.sizeof(ctype._type_) == 1:
            raw = bytes(range(n, n + ctype._length_))
            getattr(obj, name)[:] = raw
            values.append(raw)
        elif issubclass(ctype, ctypes.Array):
            items = [n * 100 + i for i in range(ctype._length_)]
            getattr(obj, name)[:] = items
            values += items
        else:
            setattr(obj, name, n)
            values.append(n)
    return obj, values


@pytest.mark.parametrize("table, side, layout", [
    ("ports", "Leaf", consistency._PORT_INFO),
    ("port_trunks", "Leaf", consistency._TRUNK),
    ("fdb", "Key", consistency._FDB_KEY),
])
def test_check_state_reads_the_maps_as_the_programs_lay_them_out(dp, table, side, layout):
    cls = getattr(dp._bpf[table.encode()], side)
    obj, values = _filled(cls)
    assert layout.size == ctypes.sizeof(cls)
    unpacked = [v for v in layout.unpack(bytes(obj))]
    if table == "port_trunks":  # struct port_trunk's pad[3] is skipped ("6x")
        values = [values[0], *values[4:]]
    assert unpacked == values


def test_check_state_reads_an_fdb_entrys_port_and_flags(dp):
    cls = dp._bpf[b"fdb"].Leaf
    obj, values = _filled(cls)
    assert list(consistency._FDB_ENTRY.unpack_from(bytes(obj))) == values[:2]
