"""Loading the programs: whether this machine can run the eBPF datapath, datapath.c with its
lib/ includes inlined, its compiled object (objfile.py: from the cache or the compiler
process), and the object loaded with the bpf() syscall against the maps pinned in the
instance's directory (created when absent; pins of another layout are replaced)."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vswitchd.datapath import builds, objfile, pins, tables, xdpmaps
from vswitchd.datapath.bpfsys import BPF_PROG_LOAD, bpf, map_create, obj_get, obj_pin, prog_load
from vswitchd.datapath.constants import BPF_DIR
from vswitchd.datapath.limits import Limits
from vswitchd.errors import InvalidArgument

log = logging.getLogger(__name__)
DEFAULT_LIMITS = Limits()

BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6
BPF_XDP_DEVMAP = 33  # enum bpf_attach_type: a devmap entry's program
# hook -> (function in datapath.c, program type, expected attach type)
PROGRAMS = {
    "ingress": ("tc_ingress", BPF_PROG_TYPE_SCHED_CLS, 0),
    "egress": ("tc_egress", BPF_PROG_TYPE_SCHED_CLS, 0),
    "flood": ("tc_flood", BPF_PROG_TYPE_SCHED_CLS, 0),      # the tail call in flood_progs
    "vteps": ("tc_vteps", BPF_PROG_TYPE_SCHED_CLS, 0),      # in vtep_progs
    "xdp": ("xdp_ingress", BPF_PROG_TYPE_XDP, 0),
    "xdp_flood": ("xdp_flood", BPF_PROG_TYPE_XDP, 0),       # in xdp_flood_progs
    "xdp_egress": ("xdp_egress", BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP),  # the flood groups'
}
TAIL_CALLS = {"flood_progs": "flood", "vtep_progs": "vteps", "xdp_flood_progs": "xdp_flood"}
_INCLUDE_RE = re.compile(r'^#include "(lib/[\w.-]+\.h)"\s*$', re.M)


def _bpf_syscall_available() -> str | None:
    # BPF_PROG_LOAD with a NULL attr of size 0: EINVAL/EFAULT means the syscall is there.
    try:
        os.close(bpf(BPF_PROG_LOAD, None, "BPF_PROG_LOAD probe"))
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return "the kernel has no bpf() syscall"
        if exc.errno == errno.EPERM:
            return "bpf() is not permitted (needs root / CAP_BPF and CAP_NET_ADMIN)"
    return None


def ebpf_unsupported_reason() -> str | None:
    """A cheap probe: None if the eBPF datapath can be used, else what is missing."""
    if os.geteuid() != 0:
        return "not running as root"
    reason = _bpf_syscall_available()
    if reason:
        return reason
    if importlib.util.find_spec("bcc") is None:  # the compiler process imports it
        return ("bcc is not importable (install Debian's python3-bpfcc and use a venv made with "
                "--system-site-packages)")
    build = Path("/lib/modules") / os.uname().release / "build"
    if not (build / "include").exists() and not (build / "Makefile").exists():
        return f"no kernel headers at {build} (run `make kernel-headers`)"
    if not (BPF_DIR / "datapath.c").exists():
        return f"{BPF_DIR / 'datapath.c'} is missing"
    return None


def pin_dir_define(pin_dir: str) -> str:
    if any(c in pin_dir for c in '"\\\n'):
        raise InvalidArgument("bpffs_dir", pin_dir, "must not contain quotes or backslashes")
    return f'#define VSW_PIN_DIR "{pin_dir}"\n'


def source_body(trace: bool = True, limits: Limits = DEFAULT_LIMITS) -> str:
    """datapath.c with the quoted lib/ includes inlined (bcc rewrites map calls such as
    `ports.lookup()` only in its main file), without the VSW_PIN_DIR define the compiler
    puts first, with the limits that are not the defaults defined. trace=False defines
    VSW_NO_TRACE: no watch stage (bench/trace_cost.py's baseline; never the daemon's)."""
    head = ("" if trace else "#define VSW_NO_TRACE\n") + limits.defines()
    return head + inline_includes((BPF_DIR / "datapath.c").read_text())


def inline_includes(text: str) -> str:
    """TEXT with its quoted lib/ includes replaced by the headers, recursively, each once."""
    seen: set[str] = set()

    def expand(match: re.Match) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        text = (BPF_DIR / name).read_text()
        return f'/* ---- {name} ---- */\n{_INCLUDE_RE.sub(expand, text)}\n'

    return _INCLUDE_RE.sub(expand, text)


class Program:
    """A loaded program: its fd, and its name as the kernel knows it."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name.encode()
        self.fd = fd


class Loaded:
    """One loaded build: its maps by name (tables.py, made when first asked for) and its
    programs by hook."""

    def __init__(self, shapes: dict[str, dict], fds: dict[str, int],
                 progs: dict[str, Program]) -> None:
        self._shapes = shapes
        self.map_fds = fds
        self.progs = progs
        self._tables: dict[str, tables.Table] = {}

    def __getitem__(self, name: bytes | str) -> tables.Table:
        name = name.decode() if isinstance(name, bytes) else name
        if name not in self._tables:
            shape = self._shapes[name]
            self._tables[name] = tables.table(name, self.map_fds[name], shape["type"],
                                              shape["key"], shape["leaf"],
                                              shape["max_entries"], shape["flags"])
        return self._tables[name]

    def cleanup(self) -> None:
        """Closes the fds of its maps and programs; what is pinned or attached stays."""
        _close(self.map_fds.values())
        _close(prog.fd for prog in self.progs.values())
        self.map_fds, self.progs, self._tables = {}, {}, {}


def _close(fds) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _stale(shape: dict, fd: int) -> tuple | None:
    want = tuple(shape[k] for k in ("type", "key_size", "value_size", "max_entries"))
    have = pins.map_shape(fd)
    return None if have == want else (have, want)


def _pinned(name: str) -> bool:
    return name in pins.PIN_NAMES or name in pins.DEVICE_MAP_PIN_NAMES


def _open_pinned(obj: dict, bpffs_dir: str) -> tuple[dict[str, int], list[str]]:
    """fds of the object's pinned maps, opened (created and pinned when missing); and the
    pins whose shape is not the build's, described."""
    fds: dict[str, int] = {}
    stale: list[str] = []
    try:
        for name, shape in obj["maps"].items():
            path = os.path.join(bpffs_dir, name)
            if name in pins.DEVICE_MAP_PIN_NAMES:  # xdpmaps made them
                fds[name] = obj_get(path)
            elif name in pins.PIN_NAMES and os.path.exists(path):
                fds[name] = obj_get(path)
                mismatch = _stale(shape, fds[name])
                if mismatch:
                    stale.append(f"{name}: pinned type/key/value/entries {mismatch[0]}, "
                                 f"built {mismatch[1]}")
            elif name in pins.PIN_NAMES:
                fds[name] = _create(name, shape)
                obj_pin(fds[name], path)
    except BaseException:
        _close(fds.values())
        raise
    return fds, stale


def _create(name: str, shape: dict) -> int:
    return map_create(shape["type"], shape["key_size"], shape["value_size"],
                      shape["max_entries"], name, flags=shape["flags"])


def _create_own(obj: dict) -> dict[str, int]:
    """The maps of this instance alone (rings, scratch space, caches), created."""
    fds: dict[str, int] = {}
    try:
        for name, shape in obj["maps"].items():
            if not _pinned(name):
                fds[name] = _create(name, shape)
    except BaseException:
        _close(fds.values())
        raise
    return fds


def _load_program(obj: dict, prog: dict, map_fds: dict[str, int]) -> Program:
    code = bytearray.fromhex(prog["insns"])
    for index, map_name in prog["relocations"]:
        struct.pack_into("<i", code, index * 8 + 4, map_fds[map_name])
    return Program(prog["name"], prog_load(prog["type"], bytes(code), prog["name"],
                                           obj["license"], obj["kern_version"],
                                           prog["attach_type"], prog["funcs"]))


def _load_programs(obj: dict, map_fds: dict[str, int]) -> Loaded:
    """The object's programs loaded with map_fds in their instructions, and set in the
    tail-call tables. The verifier takes most of a start (1.3 s for the seven programs, one
    after the other): they are verified side by side (ctypes lets go of the GIL)."""
    items = list(obj["programs"].items())
    with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1)) as pool:
        futures = {hook: pool.submit(_load_program, obj, prog, map_fds) for hook, prog in items}
    progs = {hook: f.result() for hook, f in futures.items() if f.exception() is None}
    try:
        for f in futures.values():
            if f.exception() is not None:
                raise f.exception()
        loaded = Loaded(obj["maps"], map_fds, progs)
        for table, hook in TAIL_CALLS.items():
            loaded[table][0] = progs[hook].fd
    except BaseException:
        _close(p.fd for p in progs.values())
        raise
    return loaded


def load(bpffs_dir: str, trace: bool, cache_dir: str | None = objfile.DEFAULT_CACHE_DIR,
         limits: Limits = DEFAULT_LIMITS) -> Loaded:
    """The programs, compiled in a child process (or found in the cache at cache_dir; None:
    no cache) and loaded against the maps pinned in bpffs_dir, which are created there when
    absent; or, when the same build runs already, its programs taken back (builds.py). Pins
    of another layout than the build's are replaced. Raises Unavailable when bpffs cannot be
    mounted, objfile.CompileError when the source does not compile, OSError when the kernel
    refuses a map or a program."""
    pin_dir_define(bpffs_dir)  # refuses a directory the source could not name
    fresh = pins.make_dir(bpffs_dir)
    try:
        return _load_into(bpffs_dir, trace, cache_dir, limits)
    except Exception:
        if fresh:  # a failed first start leaves no pins behind (its maps, its directory)
            pins.remove_map_pins(bpffs_dir)
        raise


def _load_into(bpffs_dir: str, trace: bool, cache_dir: str | None, limits: Limits) -> Loaded:
    """load() into the directory pins.make_dir made."""
    body = source_body(trace, limits)
    key = objfile.cache_key(body)
    obj, cached = objfile.obtain(body, key, f"{bpffs_dir}-compile-{os.getpid()}",
                                 objfile.Cache(cache_dir))
    xdpmaps.ensure_pins(bpffs_dir, limits.max_ports)
    map_fds, stale = _open_pinned(obj, bpffs_dir)
    if stale:
        # Pinned maps of an earlier build with other layouts would be misread (or refused
        # by the verifier). They are replaced; the daemon re-adds its desired state
        # (ports, static FDB, flows).
        log.warning("pinned datapath maps in %s have another layout than this build "
                    "(%s): replacing them; learned FDB entries and counters restart",
                    bpffs_dir, "; ".join(stale))
        _close(map_fds.values())
        pins.remove_map_pins(bpffs_dir, keep_dir=True)
        xdpmaps.ensure_pins(bpffs_dir, limits.max_ports)
        map_fds, _ = _open_pinned(obj, bpffs_dir)
    pins.remove_retired_pins(bpffs_dir)  # no program of this build uses them
    own = [name for name in obj["maps"] if not _pinned(name)]
    reused = builds.reuse(bpffs_dir, key, list(obj["programs"]), own, map_fds)
    if reused is not None:
        prog_fds, own_fds = reused
        log.info("datapath programs: the running build's, taken back")
        progs = {hook: Program(obj["programs"][hook]["name"], fd)
                 for hook, fd in prog_fds.items()}
        return Loaded(obj["maps"], {**map_fds, **own_fds}, progs)
    log.info("datapath programs %s and loaded", "from the cache" if cached else "compiled")
    try:
        own_fds = _create_own(obj)
        map_fds.update(own_fds)
        loaded = _load_programs(obj, map_fds)
    except Exception:
        _close(map_fds.values())
        raise
    try:
        builds.pin(bpffs_dir, key, loaded.progs, own_fds)
    except OSError as exc:  # the next start loads them again
        log.warning("the datapath programs could not be pinned in %s: %s", bpffs_dir, exc)
    return loaded
