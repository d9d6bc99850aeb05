"""The loaded programs of the running build, pinned beside the maps (with the maps only they
use), so that a restart with the same compiled object takes them back instead of loading
them again: the verifier takes most of a second for them, and the ports' links already run
them, so nothing needs swapping either.

A build's pins live in `build-<key>` under the instance's directory (key: the compiled
object's cache key, objfile.py). One build is kept; a new one replaces the others."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil

from vswitchd.datapath.bpfsys import obj_get, obj_info, obj_pin, object_id

PREFIX = "build-"
_PROG_INFO_SIZE = 64
_NR_MAP_IDS, _MAP_IDS = 52, 56  # offsets in struct bpf_prog_info


def build_dir(bpffs_dir: str, key: str) -> str:
    return os.path.join(bpffs_dir, PREFIX + key[:32])


def prog_map_ids(prog_fd: int) -> set[int]:
    """The ids of the maps a loaded program uses."""
    count = int.from_bytes(obj_info(prog_fd, _PROG_INFO_SIZE)[_NR_MAP_IDS:_MAP_IDS], "little")
    ids = (ctypes.c_uint32 * max(count, 1))()
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    info[_NR_MAP_IDS:_MAP_IDS] = count.to_bytes(4, "little")
    info[_MAP_IDS:_MAP_IDS + 8] = ctypes.addressof(ids).to_bytes(8, "little")
    obj_info(prog_fd, buf=info)
    return set(ids[:count])


def pin(bpffs_dir: str, key: str, progs: dict, own_maps: dict[str, int]) -> None:
    """Pins the build's programs ({hook: Program}) and the maps only it uses ({name: fd}),
    and removes the pins of other builds (their programs live on as long as a link runs
    them)."""
    path = build_dir(bpffs_dir, key)
    remove_all(bpffs_dir)
    os.makedirs(path, mode=0o700)
    try:
        for hook, prog in progs.items():
            obj_pin(prog.fd, os.path.join(path, f"prog_{hook}"))
        for name, fd in own_maps.items():
            obj_pin(fd, os.path.join(path, f"map_{name}"))
    except OSError:
        shutil.rmtree(path, ignore_errors=True)  # a build half pinned is no build
        raise


def reuse(bpffs_dir: str, key: str, hooks: list[str], own_maps: list[str],
          held: dict[str, int]) -> tuple[dict[str, int], dict[str, int]] | None:
    """({hook: program fd}, {name: map fd}) of the pinned build of key, when it is complete
    and its programs use no map but those in held (the maps pinned for the instance) and its
    own: else None (a map replaced since, a build half gone)."""
    path = build_dir(bpffs_dir, key)
    if not os.path.isdir(path):
        return None
    fds: list[int] = []
    try:
        progs = {h: obj_get(os.path.join(path, f"prog_{h}")) for h in hooks}
        fds += progs.values()
        maps = {n: obj_get(os.path.join(path, f"map_{n}")) for n in own_maps}
        fds += maps.values()
        ours = {object_id(fd) for fd in (*held.values(), *maps.values())}
        if any(not prog_map_ids(fd) <= ours for fd in progs.values()):
            raise LookupError("the build's programs use maps that are no longer pinned")
    except (OSError, LookupError):
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        return None
    return progs, maps


def remove_all(bpffs_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(bpffs_dir):
            if name.startswith(PREFIX):
                shutil.rmtree(os.path.join(bpffs_dir, name), ignore_errors=True)
