"""Helpers for large flow batches: per-stage timing (one debug log line per batch, read by
bench/flow_install.py) and pausing the cyclic garbage collector while a batch is handled."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable


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
_gc_pauses = 0          # pauses not yet resumed
_gc_resume = False      # whether the collector was enabled when the first of them started


def pause_gc() -> Callable[[], None]:
    """Stop cyclic collections until the returned function is called (once).

    A batch of 10 000 rules allocates a few hundred thousand long-lived objects; the
    collections they trigger rescan the whole table again and again (a third of the time of
    a batch into a table of 10 000). Nothing in a batch makes cycles that need collecting
    soon. Pauses nest, also across threads: the collector runs again after the last resume.
    """
    global _gc_pauses, _gc_resume
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            _gc_resume = gc.isenabled()
            gc.disable()
    done = False

    def resume() -> None:
        global _gc_pauses
        nonlocal done
        with _gc_lock:
            if done:
                return
            done = True
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()

    return resume
