"""One change to the system, applied step by step: each step that changed something records how
to undo it, and a failure anywhere undoes the steps done so far, newest first."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Txn:
    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []
        self._commit: list[Callable[[], object]] = []

    @property
    def changed(self) -> bool:
        """Whether a step changed something (there is something to undo, or to commit)."""
        return bool(self._undo or self._commit)

    def step(self, what: str, do: Callable[[], T],
             undo: Callable[[], object] | None = None) -> T:
        """Apply DO; once it succeeded, UNDO (if given) is what takes it back."""
        result = do()
        if undo is not None:
            self._undo.append((what, undo))
        return result

    def on_undo(self, what: str, undo: Callable[[], object]) -> None:
        """Record how to take back a change the caller made itself."""
        self._undo.append((what, undo))

    def on_commit(self, fn: Callable[[], object]) -> None:
        """Run FN once the change is saved (e.g. end a flow table's journal)."""
        self._commit.append(fn)

    def committed(self) -> None:
        for fn in self._commit:
            fn()
        self._undo.clear()
        self._commit.clear()

    def rollback(self) -> None:
        for what, fn in reversed(self._undo):
            try:
                fn()
            except Exception:  # noqa: BLE001 - keep undoing the rest
                log.exception("rollback step failed: %s", what)
        self._undo.clear()
        self._commit.clear()


class NoUndo(Txn):
    """For re-applying stored state (reconciliation): nothing to take back on failure."""

    def step(self, what: str, do: Callable[[], T],
             undo: Callable[[], object] | None = None) -> T:
        return do()

    def on_undo(self, what: str, undo: Callable[[], object]) -> None:
        pass
