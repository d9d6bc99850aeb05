"""The datapath's bpffs directory: mounting bpffs when needed, the names of the maps pinned
there, whether a pinned map fits this build's layout, and their removal. Link pins: tcx.py,
xdp.py."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from vswitchd.datapath import builds
from vswitchd.errors import Unavailable

BPFFS_ROOT = "/sys/fs/bpf"
DEFAULT_BPFFS_DIR = "/sys/fs/bpf/vswitchd"
PIN_NAMES = ("ports", "port_gen", "members", "fdb", "fdb_gen", "port_stats", "flow_masks",
             "flow_bridges", "flow_rules", "flow_stats", "flood_progs", "port_trunks",
             "xdp_flood_progs", "flood_group_info", "xdp_stats", "tunnels", "vteps", "fdb_remote",
             "vtep_progs")
# maps the daemon creates and pins itself, bcc cannot make them (xdpmaps.py)
DEVICE_MAP_PIN_NAMES = ("xdp_tx", "flood_groups")
RETIRED_PIN_NAMES = ("flow_active",)  # pinned by earlier builds; removed when found
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


def _bpffs_mounted(path: str = BPFFS_ROOT) -> bool:
    try:
        with open("/proc/self/mounts") as mounts:
            return any(
                line.split()[1] == path and line.split()[2] == "bpf" for line in mounts
            )
    except OSError:
        return False


def _mount_bpffs(path: str = BPFFS_ROOT) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.mount(b"bpf", path.encode(), b"bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t bpf bpf {path}: {os.strerror(err)}")


def make_dir(bpffs_dir: str) -> bool:
    """Creates the pin directory, mounting bpffs at BPFFS_ROOT first when the directory is
    under it and nothing is mounted there. Returns True when the directory is new."""
    if bpffs_dir.startswith(BPFFS_ROOT + "/") and not _bpffs_mounted():
        try:
            _mount_bpffs()
        except OSError as exc:
            raise Unavailable(
                f"eBPF datapath unavailable: cannot mount bpffs ({exc}); use --datapath kernel"
            ) from None
    fresh = not os.path.exists(bpffs_dir)
    os.makedirs(bpffs_dir, mode=0o700, exist_ok=True)
    return fresh


def map_info(map_fd: int) -> dict[str, int]:
    """A BPF map's numbers from its fdinfo: map_type, key_size, value_size, max_entries,
    map_flags ..."""
    info = {}
    for line in Path(f"/proc/self/fdinfo/{map_fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        try:
            info[key] = int(value.strip(), 0)
        except ValueError:
            pass  # not a number (none of the map's)
    return info


def map_shape(map_fd: int) -> tuple[int, int, int, int]:
    """(type, key size, value size, max entries) of a BPF map, from its fdinfo."""
    info = map_info(map_fd)
    return tuple(info[k] for k in ("map_type", "key_size", "value_size", "max_entries"))


def stale_pins(bpf) -> list[str]:
    """The pinned maps whose kernel shape (type, key and value size, max entries) is not what
    the loaded build declares, described. Programs are not loaded yet (bcc loads them in
    load_func), so nothing has used a misfit map."""
    stale = []
    for name in PIN_NAMES:
        table = bpf[name.encode()]
        leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU maps: one CPU's value
        want = (table.ttype, ctypes.sizeof(table.Key), ctypes.sizeof(leaf), table.max_entries)
        have = map_shape(table.map_fd)
        if have != want:
            stale.append(f"{name}: pinned type/key/value/entries {have}, built {want}")
    return stale


def _unlink(bpffs_dir: str, names: tuple[str, ...]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(bpffs_dir, name))


def remove_retired_pins(bpffs_dir: str) -> None:
    """Unlinks the maps earlier builds pinned and no program of this build uses."""
    _unlink(bpffs_dir, RETIRED_PIN_NAMES)


def remove_map_pins(bpffs_dir: str, keep_dir: bool = False) -> None:
    """Unlinks the maps this build (or an earlier one) pins, only those names, and the
    builds' programs (builds.py), then the directory unless keep_dir, if it is then empty.
    Link pins: tcx.remove_all, xdp.remove_all."""
    _unlink(bpffs_dir, (*PIN_NAMES, *DEVICE_MAP_PIN_NAMES, *RETIRED_PIN_NAMES))
    builds.remove_all(bpffs_dir)  # its programs use these maps
    if not keep_dir:
        with contextlib.suppress(OSError):  # not empty (someone else's pins) or already gone
            os.rmdir(bpffs_dir)
