"""Small operations on bcc tables that several map writers share: deleting an entry that may
be gone, and bumping a cache generation."""

from __future__ import annotations

import ctypes


def delete(table, key) -> bool:
    """Deletes table[key]; False when there was no such entry."""
    try:
        del table[key]
        return True
    except KeyError:
        return False


def bump(generation, step: int) -> None:
    """Adds step to a one-entry u64 array (a cache generation: ports.h, fdb.h)."""
    key = ctypes.c_int(0)
    generation[key] = ctypes.c_uint64((generation[key].value + step) % 2**64)
