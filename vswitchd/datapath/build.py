"""Compiling and loading the programs: whether this machine can run the eBPF datapath,
datapath.c with its lib/ includes inlined, and bcc's build of it against the pinned maps
(pins of another layout are replaced)."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
from pathlib import Path

from vswitchd.datapath import pins, xdpmaps
from vswitchd.datapath.bpfsys import BPF_PROG_LOAD, bpf
from vswitchd.datapath.constants import BPF_DIR
from vswitchd.errors import InvalidArgument

log = logging.getLogger(__name__)

PROG_INGRESS = "tc_ingress"
PROG_EGRESS = "tc_egress"
PROG_FLOOD = "tc_flood"
PROG_VTEPS = "tc_vteps"
PROG_XDP = "xdp_ingress"
PROG_XDP_FLOOD = "xdp_flood"
PROG_XDP_EGRESS = "xdp_egress"
BPF_XDP_DEVMAP = 33  # enum bpf_attach_type: a devmap entry's program
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
    try:
        import bcc  # noqa: F401
    except ImportError:
        return ("bcc is not importable (install Debian's python3-bpfcc and use a venv made with "
                "--system-site-packages)")
    build = Path("/lib/modules") / os.uname().release / "build"
    if not (build / "include").exists() and not (build / "Makefile").exists():
        return f"no kernel headers at {build} (run `make kernel-headers`)"
    if not (BPF_DIR / "datapath.c").exists():
        return f"{BPF_DIR / 'datapath.c'} is missing"
    return None


def build_source(pin_dir: str, trace: bool = True) -> str:
    """datapath.c with the quoted lib/ includes inlined (bcc rewrites map calls such as
    `ports.lookup()` only in its main file) and VSW_PIN_DIR defined. trace=False defines
    VSW_NO_TRACE: no watch stage (bench/trace_cost.py's baseline; never the daemon's)."""
    if any(c in pin_dir for c in '"\\\n'):
        raise InvalidArgument("bpffs_dir", pin_dir, "must not contain quotes or backslashes")
    head = f'#define VSW_PIN_DIR "{pin_dir}"\n' + ("" if trace else "#define VSW_NO_TRACE\n")
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


def load(bpffs_dir: str, trace: bool):
    """Compiles the programs against the maps pinned in bpffs_dir (creating them there when
    absent) and loads them. Returns bcc's BPF object and the programs by hook: "ingress",
    "egress", "flood" (the tail call in flood_progs), "vteps" (in vtep_progs), "xdp",
    "xdp_flood" (in xdp_flood_progs) and "xdp_egress" (the flood groups' devmap program).
    Raises Unavailable when bpffs cannot be mounted; bcc raises bare Exception for compile and
    load errors."""
    from bcc import BPF

    fresh = pins.make_dir(bpffs_dir)
    source = build_source(bpffs_dir, trace).encode()
    try:
        xdpmaps.ensure_pins(bpffs_dir)  # before bcc, which would make them of another type
        loaded = BPF(text=source)
        stale = pins.stale_pins(loaded)
        if stale:
            # bcc reuses a pinned map whatever its shape: maps pinned by a build with
            # other layouts would be misread (or refused by the verifier). They are
            # replaced; the daemon re-adds its desired state (ports, static FDB, flows).
            log.warning("pinned datapath maps in %s have another layout than this build "
                        "(%s): replacing them; learned FDB entries and counters restart",
                        bpffs_dir, "; ".join(stale))
            loaded.cleanup()
            pins.remove_map_pins(bpffs_dir, keep_dir=True)
            xdpmaps.ensure_pins(bpffs_dir)
            loaded = BPF(text=source)
        pins.remove_retired_pins(bpffs_dir)  # no program of this build uses them
    except Exception:
        if fresh:  # do not leave half-created pins behind a failed first start
            pins.remove_map_pins(bpffs_dir)
        raise
    try:
        progs = {
            "ingress": loaded.load_func(PROG_INGRESS.encode(), BPF.SCHED_CLS),
            "egress": loaded.load_func(PROG_EGRESS.encode(), BPF.SCHED_CLS),
            "flood": loaded.load_func(PROG_FLOOD.encode(), BPF.SCHED_CLS),
            "vteps": loaded.load_func(PROG_VTEPS.encode(), BPF.SCHED_CLS),
            "xdp": loaded.load_func(PROG_XDP.encode(), BPF.XDP),
            "xdp_flood": loaded.load_func(PROG_XDP_FLOOD.encode(), BPF.XDP),
            "xdp_egress": loaded.load_func(PROG_XDP_EGRESS.encode(), BPF.XDP,
                                           attach_type=BPF_XDP_DEVMAP),
        }
        loaded[b"flood_progs"][ctypes.c_int(0)] = ctypes.c_int(progs["flood"].fd)
        loaded[b"vtep_progs"][ctypes.c_int(0)] = ctypes.c_int(progs["vteps"].fd)
        loaded[b"xdp_flood_progs"][ctypes.c_int(0)] = ctypes.c_int(progs["xdp_flood"].fd)
    except Exception:
        loaded.cleanup()
        raise
    return loaded, progs
