"""Helpers for large flow batches: per-stage timing (one debug log line per batch, read by
bench/flow_install.py) and pausing the cyclic garbage collector while a batch is handled."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stages:
    """Accumulates milliseconds per stage name; mark(name) ends the stage running since the
    previous mark (or since creation)."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + (now - self._t) * 1000
        self._t = now

    def __str__(self) -> str:
        return " ".join(f"{k}={v:.1f}" for k, v in self.ms.items())


_gc_lock = threading.Lock()
_gc_pauses = 0          # batches inside gc_paused() now
_gc_resume = False      # whether the collector was enabled when the first of them started


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collections inside, and what it allocated promoted to the oldest generation.

    A batch of 10 000 rules allocates a few hundred thousand long-lived objects; the young
    collections they trigger scan them again and again, and the full ones the whole table (a
    third of the time of a batch into a table of 10 000). At the end gc.freeze() +
    gc.unfreeze() moves every tracked object into the oldest generation in O(1), without a
    young collection scanning them first; cycles among them are still found by the next full
    collection. Nests, also across threads: the collector runs again after the last batch.
    """
    global _gc_pauses, _gc_resume
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            _gc_resume = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.freeze()
                gc.unfreeze()
                gc.enable()
