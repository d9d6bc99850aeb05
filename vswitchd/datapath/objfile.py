"""Compiled datapath objects and their cache. An object is what compiler.py writes: each
program's instructions with the map each map-fd immediate names, and each map's shape and
bcc's description of its key and value types.

The cache holds objects by a key over everything the compile depends on: the source (the
pin directory aside, which ends up in no instruction), the build options, the running kernel
and bcc's version. A daemon whose programs did not change since the object was written
(restart, upgrade with the same datapath) loads it without compiling."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 2                    # of the object; part of the cache key
DEFAULT_CACHE_DIR = "/var/cache/vswitchd/programs"
KEEP = 8                      # objects kept in a cache; the least recently used go
COMPILE_TIMEOUT = 300         # seconds


class CompileError(Exception):
    """The compiler process failed; the message is its last line of output."""


def _bcc_version() -> str:
    spec = importlib.util.find_spec("bcc")  # without importing it (and its LLVM)
    if spec is None or spec.origin is None:
        return "no bcc"
    version = Path(spec.origin).with_name("version.py")
    return version.read_text() if version.exists() else spec.origin


def cache_key(body: str) -> str:
    uname = os.uname()
    h = hashlib.sha256()
    for part in (str(FORMAT), uname.release, uname.version, _bcc_version(), body):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile_in_child(body: str, scratch_dir: str) -> dict:
    """Runs compiler.py in a process of its own and returns the object it wrote."""
    cmd = [sys.executable, "-m", "vswitchd.datapath.compiler", scratch_dir]
    root = str(Path(__file__).resolve().parents[2])  # the package's checkout, for -m
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, input=body, capture_output=True, text=True, env=env,
                              timeout=COMPILE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise CompileError(f"compiling the datapath took over {COMPILE_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise CompileError(lines[-1] if lines else f"the compiler exited {done.returncode}")
    log.info("compiled the datapath in %.1f s", time.monotonic() - started)
    return json.loads(done.stdout)


def _valid(obj) -> bool:
    return (isinstance(obj, dict) and obj.get("format") == FORMAT
            and isinstance(obj.get("maps"), dict) and isinstance(obj.get("programs"), dict))


class Cache:
    """Compiled objects in a directory, one JSON file per key."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory  # None: no cache, compile every time

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, f"{key}.json")

    def get(self, key: str) -> dict | None:
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            with open(path) as f:
                obj = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("compiled datapath %s is unreadable (%s): compiling again", path, exc)
            return None
        if not _valid(obj):
            log.warning("compiled datapath %s is not an object of this build: compiling again",
                        path)
            return None
        os.utime(path)  # recently used
        return obj

    def put(self, key: str, obj: dict) -> None:
        """Stores obj; a cache that cannot be written is logged, not fatal (the next start
        compiles again)."""
        if self.directory is None:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".new-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(obj, f)
            os.replace(tmp, self._path(key))
            self._prune()
        except OSError as exc:
            log.warning("cannot store the compiled datapath in %s: %s", self.directory, exc)

    def _prune(self) -> None:
        entries = sorted(Path(self.directory).glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)


def obtain(body: str, key: str, scratch_dir: str, cache: Cache) -> tuple[dict, bool]:
    """The compiled object of body (whose cache_key is key), from the cache or from a
    compile (then stored); and whether it came from the cache."""
    obj = cache.get(key)
    if obj is not None:
        return obj, True
    obj = compile_in_child(body, scratch_dir)
    cache.put(key, obj)
    return obj, False
