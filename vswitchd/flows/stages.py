"""Wall time of the stages of one flow batch, for one debug log line per batch (benchmarks
read it: bench/flow_install.py)."""

from __future__ import annotations

import time


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
