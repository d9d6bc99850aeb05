"""The desired-state store: one JSON document in the state directory, replaced atomically.

A change is written (temp file, fsync, rename, fsync of the directory) before the RPC that made
it returns, so a crash never leaves half a file. A file that cannot be read stops the daemon
with a clear message and is left in place for inspection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vswitchd.model import BridgeSpec

FORMAT_VERSION = 1


class StateError(Exception):
    """The store exists but cannot be used."""


class StateStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"

    def load(self) -> dict[str, BridgeSpec]:
        """Bridges by name; empty when no store exists yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"cannot read state store {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unsupported format version {data.get('version')!r}")
            bridges = [BridgeSpec.from_dict(b) for b in data["bridges"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"state store {self.path} is damaged ({exc}); it was left in place for "
                "inspection: move it away to start with an empty state"
            ) from None
        return {b.name: b for b in bridges}

    def save(self, bridges: dict[str, BridgeSpec]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"version": FORMAT_VERSION, "bridges": [b.to_dict() for b in bridges.values()]}
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
