"""The eBPF datapath: compile bpf/datapath.c once with bcc, keep its maps pinned, manage them.

Map layouts come from bcc's generated ctypes classes (table.Key / table.Leaf); nothing about
them is written twice here. Maps are pinned in the instance's bpffs directory, so a restarted
daemon reopens them with their contents while the old programs keep forwarding.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from vswitchd import validate
from vswitchd.datapath import tcx, testrun
from vswitchd.datapath.constants import (
    BPF_DIR,
    DROP_REASON_MAX,
    DRY_RUN_MAGIC,
    FDB_F_STATIC,
    FDB_GEN_DAEMON_STEP,
    FLOOD_CHANGED,
    MAX_BRIDGE_PORTS,
    MAX_PORTS,
    PORT_F_ACCESS,
    PORT_F_TRUNK,
    TAG_ENC_TAGGED,
    TAG_ENC_UNTAGGED,
    TRACE_STAGES,
    VERDICTS,
)
from vswitchd.datapath.drop_reasons import reason_name
from vswitchd.datapath.flows import (
    MAX_FLOW_ACTIONS,
    DpRule,
    FlowCounters,
    FlowTables,
    pack_flow_key,
)
from vswitchd.datapath.vlan import UNCONFIGURED, VLAN_BITMAP_WORDS, VlanConfig
from vswitchd.datapath.watch import (
    MAX_RATE,
    MAX_WATCHERS,
    WATCH_DEFAULT_RATE,
    EventDecoder,
    WatchEvent,
    WatchFilter,
    check_filter,
)
from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

BPFFS_ROOT = "/sys/fs/bpf"
DEFAULT_BPFFS_DIR = "/sys/fs/bpf/vswitchd"
PIN_NAMES = ("ports", "port_gen", "members", "fdb", "fdb_gen", "port_stats", "flow_masks",
             "flow_bridges", "flow_rules", "flow_stats", "flood_progs", "port_trunks")
RETIRED_PIN_NAMES = ("flow_active",)  # pinned by earlier builds; removed when found
PROG_INGRESS = "tc_ingress"
PROG_EGRESS = "tc_egress"
PROG_FLOOD = "tc_flood"

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
_RETVAL_VERDICT = {TC_ACT_OK: "pass", TC_ACT_SHOT: "drop", TC_ACT_REDIRECT: "redirect"}
_INCLUDE_RE = re.compile(r'^#include "(lib/[\w.-]+\.h)"\s*$', re.M)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
_NO_LOCK = contextlib.nullcontext()


class PortKind(IntEnum):
    PEER = 1    # veth whose peer is in another netns: bpf_redirect_peer at ingress
    DEVICE = 2  # tap, system NIC: bpf_redirect
    BRIDGE = 3  # the bridge device itself (the host): redirect to its ingress


@dataclass(frozen=True)
class FdbRecord:
    mac: str
    vlan: int
    ifindex: int
    static: bool
    age_seconds: float  # 0.0 for static entries


@dataclass(frozen=True)
class PortCounters:
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops: dict[str, int] = field(default_factory=dict)  # reason -> count, non-zero only


@dataclass(frozen=True)
class RunResult:
    """One BPF_PROG_TEST_RUN. In a dry run every field is the program's decision. In a real run
    (dry_run=False) only retval and data (the frame as the program left it) are known: verdict
    is derived from retval ("pass", "drop", "redirect"), drop_reason is "", flood is [], fdb_hit
    False, rule_id 0.

    vlan is the frame's VLAN inside the switch (once its ingress classification passed).

    rule_id is the matched flow rule (0 = table miss, "normal"), priority its priority, outputs
    the output:PORT targets of its actions in order (clones and the final one); out_ifindex and
    flood describe "normal"/"flood" (or the final output).

    Trace report (dry runs; `vswctl trace`), empty in real runs:
    key: the parsed headers, the flow key fields by FLOW_FIELDS name, integers as in
      DpRule.fields (MACs 48-bit, IPs 128-bit with IPv4 << 96, dl_vlan the frame's VID, 0 =
      untagged); for a malformed frame what was parsed before the frame ended (the rest 0).
    stages: the stages the packet reached, in order: "port" (in_port is a port of ours),
      "parse" (headers parsed), "flow" (the flow table was looked up: rule_id/priority or a
      miss), "vlan" (ingress VLAN classification passed: vlan holds it; a vlan-mismatch drop
      stops before it), "l2" (normal switching: FDB lookup, fdb_hit, out_ifindex or flood).
    tags: per output port (outputs, out_ifindex, flood) the tag it sends the frame with:
      "as-is" (the frame's tag state unchanged), "untagged", or "tagged:VID"."""

    retval: int
    verdict: str
    drop_reason: str
    out_ifindex: int
    flood: list[int]
    fdb_hit: bool
    duration_ns: int
    rule_id: int = 0
    priority: int = 0
    outputs: list[int] = field(default_factory=list)
    data: bytes = b""
    vlan: int = 0
    key: dict[str, int] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    tags: dict[int, str] = field(default_factory=dict)


def _key_dict(key) -> dict[str, int]:
    """struct flow_key (ctypes) -> {field: int} in DpRule's integer form."""
    out = {}
    for name in ("in_port", "dl_src", "dl_dst", "dl_type", "dl_vlan", "nw_proto", "ip_src",
                 "ip_dst", "tp_src", "tp_dst"):
        value = getattr(key, name)
        out[name] = int.from_bytes(bytes(value), "big") if isinstance(value, ctypes.Array) \
            else int(value)
    return out


def _tag_text(enc: int, arrived: int) -> str:
    if enc == arrived:
        return "as-is"
    if enc & TAG_ENC_TAGGED:
        return f"tagged:{enc & 0x0FFF}"
    return "untagged"


def _report_tags(res, n_flood: int) -> dict[int, str]:
    """Per output ifindex, the tag state it sends with (from the dry run's tag_enc values)."""
    tags: dict[int, str] = {}
    for i in range(min(res.n_outputs, MAX_FLOW_ACTIONS)):
        if res.output_tags[i]:
            tags[res.outputs[i]] = _tag_text(res.output_tags[i], res.in_tag)
    if res.out_ifindex and res.out_tag:
        tags[res.out_ifindex] = _tag_text(res.out_tag, res.in_tag)
    base = res.flood_base
    for i in range(n_flood):
        enc = base
        if res.flood_cls[i] == FLOOD_CHANGED:  # the one tag change: pop, or push res.vlan
            enc = TAG_ENC_UNTAGGED if base & TAG_ENC_TAGGED else TAG_ENC_TAGGED | res.vlan
        if enc:
            tags[res.flood[i]] = _tag_text(enc, res.in_tag)
    return tags


def _bpf_syscall_available() -> str | None:
    libc = ctypes.CDLL(None, use_errno=True)
    # BPF_PROG_LOAD with a NULL attr of size 0: EINVAL/EFAULT means the syscall is there.
    ret = libc.syscall(321, 5, None, 0)
    err = ctypes.get_errno()
    if ret < 0 and err in (errno.ENOSYS,):
        return "the kernel has no bpf() syscall"
    if ret < 0 and err == errno.EPERM:
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


def attached_programs(ifindex: int, direction: str) -> list[str]:
    """Names of the programs at a device's TC hook: TCX links first, then cls_bpf filters."""
    from vswitchd.netlink import tc

    return tcx.attached(ifindex, direction) + tc.attached(ifindex, direction)


def remove_map_pins(bpffs_dir: str, keep_dir: bool = False) -> None:
    """Unlinks the maps this build (or an earlier one) pins, only those names, then the
    directory unless keep_dir, if it is then empty. Link pins: tcx.remove_all."""
    for name in (*PIN_NAMES, *RETIRED_PIN_NAMES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(bpffs_dir, name))
    if not keep_dir:
        with contextlib.suppress(OSError):  # not empty (someone else's pins) or already gone
            os.rmdir(bpffs_dir)


def _bump(generation, step: int) -> None:
    """Adds step to a one-entry u64 array (a cache generation: ports.h, fdb.h)."""
    key = ctypes.c_int(0)
    generation[key] = ctypes.c_uint64((generation[key].value + step) % 2**64)


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


def _mac_bytes(mac: str, field_name: str = "mac") -> bytes:
    return bytes.fromhex(validate.mac(mac, field_name).replace(":", ""))


def _mac_str(raw) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))


def map_shape(map_fd: int) -> tuple[int, int, int, int]:
    """(type, key size, value size, max entries) of a BPF map, from its fdinfo."""
    info = {}
    for line in Path(f"/proc/self/fdinfo/{map_fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = value.strip()
    return tuple(int(info[k], 0) for k in ("map_type", "key_size", "value_size", "max_entries"))


def build_source(pin_dir: str, trace: bool = True) -> str:
    """datapath.c with the quoted lib/ includes inlined (bcc rewrites map calls such as
    `ports.lookup()` only in its main file) and VSW_PIN_DIR defined. trace=False defines
    VSW_NO_TRACE: no watch stage (bench/trace_cost.py's baseline; never the daemon's)."""
    if any(c in pin_dir for c in '"\\\n'):
        raise InvalidArgument("bpffs_dir", pin_dir, "must not contain quotes or backslashes")
    seen: set[str] = set()

    def expand(match: re.Match) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        text = (BPF_DIR / name).read_text()
        return f'/* ---- {name} ---- */\n{_INCLUDE_RE.sub(expand, text)}\n'

    main = (BPF_DIR / "datapath.c").read_text()
    head = f'#define VSW_PIN_DIR "{pin_dir}"\n' + ("" if trace else "#define VSW_NO_TRACE\n")
    return head + _INCLUDE_RE.sub(expand, main)


class Datapath:
    """The compiled datapath of one daemon instance and its pinned maps."""

    def __init__(self, bpffs_dir: str = DEFAULT_BPFFS_DIR, *, trace: bool = True) -> None:
        """trace=False builds the programs without the watch stage (VSW_NO_TRACE); only
        bench/trace_cost.py uses it, as the baseline. The watch_* methods then raise
        FailedPrecondition; dry runs (trace()) still work."""
        self.bpffs_dir = os.path.abspath(bpffs_dir)
        self.trace_enabled = trace
        self._watch = None
        self._tcx: bool | None = None  # attach with TCX links; None = not tried yet
        self._lock = threading.RLock()
        self._bpf = None
        reason = ebpf_unsupported_reason()
        if reason is None:
            try:
                self._open()
                return
            except Unavailable:
                raise
            except Exception as exc:  # bcc raises bare Exception for compile/load errors
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise Unavailable(f"eBPF datapath unavailable: {reason}; use --datapath kernel")

    # ---- setup -------------------------------------------------------------------------

    def _open(self) -> None:
        from bcc import BPF

        if self.bpffs_dir.startswith(BPFFS_ROOT + "/") and not _bpffs_mounted():
            try:
                _mount_bpffs()
            except OSError as exc:
                raise Unavailable(
                    f"eBPF datapath unavailable: cannot mount bpffs ({exc}); "
                    "use --datapath kernel"
                ) from None
        fresh = not os.path.exists(self.bpffs_dir)
        os.makedirs(self.bpffs_dir, mode=0o700, exist_ok=True)
        source = build_source(self.bpffs_dir, self.trace_enabled).encode()
        try:
            self._bpf = BPF(text=source)
            stale = self._stale_pins()
            if stale:
                # bcc reuses a pinned map whatever its shape: maps pinned by a build with
                # other layouts would be misread (or refused by the verifier). They are
                # replaced; the daemon re-adds its desired state (ports, static FDB, flows).
                log.warning("pinned datapath maps in %s have another layout than this build "
                            "(%s): replacing them; learned FDB entries and counters restart",
                            self.bpffs_dir, "; ".join(stale))
                self._bpf.cleanup()
                self._bpf = None
                self._remove_pins(keep_dir=True)
                self._bpf = BPF(text=source)
            for name in RETIRED_PIN_NAMES:  # no program of this build uses them
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.bpffs_dir, name))
        except Exception:
            if fresh:  # do not leave half-created pins behind a failed first start
                self._remove_pins()
            raise
        try:
            self._progs = {
                "ingress": self._bpf.load_func(PROG_INGRESS.encode(), BPF.SCHED_CLS),
                "egress": self._bpf.load_func(PROG_EGRESS.encode(), BPF.SCHED_CLS),
                "flood": self._bpf.load_func(PROG_FLOOD.encode(), BPF.SCHED_CLS),
            }
            flood_progs = self._bpf[b"flood_progs"]
            flood_progs[ctypes.c_int(0)] = ctypes.c_int(self._progs["flood"].fd)
            self._flows = FlowTables(self._bpf)
            self._ports = self._bpf[b"ports"]
            self._port_gen = self._bpf[b"port_gen"]
            self._trunks = self._bpf[b"port_trunks"]
            self._members = self._bpf[b"members"]
            self._fdb = self._bpf[b"fdb"]
            self._fdb_gen = self._bpf[b"fdb_gen"]
            self._stats = self._bpf[b"port_stats"]
            self._result = self._bpf[b"dp_result"]
            if self.trace_enabled:
                self._open_watch()
        except Exception:
            self._bpf.cleanup()
            self._bpf = None
            raise

    def _stale_pins(self) -> list[str]:
        """The pinned maps whose kernel shape (type, key and value size, max entries) is not
        what this build declares, described. Programs are not loaded yet (bcc loads them in
        load_func), so nothing has used a misfit map."""
        stale = []
        for name in PIN_NAMES:
            table = self._bpf[name.encode()]
            leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU maps: one CPU's value
            want = (table.ttype, ctypes.sizeof(table.Key), ctypes.sizeof(leaf),
                    table.max_entries)
            have = map_shape(table.map_fd)
            if have != want:
                stale.append(f"{name}: pinned type/key/value/entries {have}, built {want}")
        return stale

    def _check_open(self):
        if self._bpf is None:
            raise FailedPrecondition("the datapath is closed")
        return self._bpf

    # ---- members -----------------------------------------------------------------------

    def _members_get(self, bridge: int) -> list[int]:
        leaf = self._members.get(self._members.Key(bridge))
        if leaf is None:
            return []
        return [leaf.ifindex[i] for i in range(min(leaf.count, MAX_BRIDGE_PORTS))]

    def _members_set(self, bridge: int, ifindexes: list[int]) -> None:
        if len(ifindexes) > MAX_BRIDGE_PORTS:
            raise FailedPrecondition(
                f"bridge ifindex {bridge} already has {MAX_BRIDGE_PORTS} ports, the datapath "
                "maximum"
            )
        leaf = self._members.Leaf()
        leaf.count = len(ifindexes)
        for i, ifindex in enumerate(ifindexes):
            leaf.ifindex[i] = ifindex
        self._members[self._members.Key(bridge)] = leaf  # whole value: atomic for readers

    def _port_get(self, ifindex: int):
        return self._ports.get(self._ports.Key(ifindex))

    def _port_set(self, ifindex: int, bridge: int, kind: PortKind,
                  vlan: VlanConfig = UNCONFIGURED) -> None:
        """Writes the port and its VLAN mode so that every packet sees either the old or the
        new configuration: a trunk's entry (one value: bitmap + native) is written before a
        port_info that points at it, and deleted after one that no longer does."""
        if vlan.trunks:
            trunk = self._trunks.Leaf()
            trunk.native = vlan.native
            for i, word in enumerate(vlan.bitmap()):
                trunk.bits[i] = word
            self._trunks[self._trunks.Key(ifindex)] = trunk
        old = self._port_get(ifindex)
        leaf = self._ports.Leaf()
        leaf.bridge = bridge
        leaf.vlan = vlan.access
        leaf.kind = int(kind)
        leaf.flags = PORT_F_ACCESS if vlan.access else PORT_F_TRUNK if vlan.trunks else 0
        leaf.slot = old.slot if old is not None else self._new_slot()
        self._ports[self._ports.Key(ifindex)] = leaf
        self._ports_changed()
        if not vlan.trunks:
            self._delete(self._trunks, self._trunks.Key(ifindex))

    def _ports_changed(self) -> None:
        """Invalidates every program's port cache (ports.h: port_gen), after each change of
        the ports map. Counts on from the pinned value: an earlier daemon's programs may
        still hold entries filled under lower values."""
        _bump(self._port_gen, 1)

    def _port_delete(self, key) -> None:
        self._delete(self._ports, key)
        self._ports_changed()

    def _new_slot(self) -> int:
        """The lowest counter slot no port holds, zeroed (it may hold a removed port's
        counters): counters restart with the port, as they would with a new device."""
        used = {leaf.slot for leaf in self._ports.values()}
        slot = next((i for i in range(MAX_PORTS) if i not in used), None)
        if slot is None:
            raise FailedPrecondition(f"the datapath already has {MAX_PORTS} ports, its maximum")
        self._stats[self._stats.Key(slot)] = self._stats.Leaf()  # zero on every CPU
        return slot

    def _port_vlan(self, leaf, ifindex: int) -> VlanConfig:
        if leaf.flags & PORT_F_ACCESS:
            return VlanConfig(access=leaf.vlan)
        if leaf.flags & PORT_F_TRUNK:
            trunk = self._trunks.get(self._trunks.Key(ifindex))
            if trunk is not None:
                return VlanConfig.from_bitmap(
                    (trunk.bits[i] for i in range(VLAN_BITMAP_WORDS)), trunk.native)
        return VlanConfig()

    def _flush_learned(self, ifindex: int) -> None:
        self._fdb_delete_where(lambda key, leaf: leaf.ifindex == ifindex
                               and not leaf.flags & FDB_F_STATIC)

    @staticmethod
    def _delete(table, key) -> bool:
        try:
            del table[key]
            return True
        except KeyError:
            return False

    def _forget_port_state(self, ifindex: int) -> None:
        """ports (and so its counter slot), FDB entries pointing at the port (not members, not
        tc)."""
        self._port_delete(self._ports.Key(ifindex))
        self._delete(self._trunks, self._trunks.Key(ifindex))
        self._fdb_delete_where(lambda key, leaf: leaf.ifindex == ifindex)

    # ---- tc ----------------------------------------------------------------------------

    def _attach(self, ifindex: int, direction: str) -> None:
        """TCX where the kernel has it (a pinned link, vswitchd/datapath/tcx.py), otherwise a
        clsact + cls_bpf filter. Then invalidates the FDB caches: the program it replaced may
        be an earlier build's, which learned without bumping fdb_gen."""
        from vswitchd.netlink import tc

        prog = self._progs[direction]
        if self._tcx is not False:
            try:
                created = tcx.attach(self.bpffs_dir, ifindex, prog.fd, direction)
            except tcx.TcxUnsupported as exc:
                log.info("no TCX in this kernel (%s): programs go on clsact + cls_bpf", exc)
                self._tcx = False
            else:
                self._tcx = True
                if created:  # an earlier build's filter on the device: one attachment only
                    self._detach_filter(ifindex, direction)
        if self._tcx is False:
            tc.attach(ifindex, prog.fd, prog.name.decode(), direction)
        self._fdb_changed()

    def _detach(self, ifindex: int, direction: str) -> None:
        # A port with a link pin has no filter of ours (attach removed it); one without may
        # have one (clsact kernel, or attached by an earlier build and not re-added since).
        if not tcx.detach(self.bpffs_dir, ifindex, direction):
            self._detach_filter(ifindex, direction)

    @staticmethod
    def _detach_filter(ifindex: int, direction: str) -> None:
        from vswitchd.netlink import tc

        try:
            tc.detach(ifindex, direction)
        except NotFound:
            pass  # the device is gone, and its filters with it

    # ---- bridges and ports -------------------------------------------------------------

    def add_bridge(self, bridge_ifindex: int, mac: str) -> None:
        with self._lock:
            self._check_open()
            mac_raw = _mac_bytes(validate.unicast_mac(mac))
            self._port_set(bridge_ifindex, bridge_ifindex, PortKind.BRIDGE)
            members = self._members_get(bridge_ifindex)
            if bridge_ifindex not in members:
                self._members_set(bridge_ifindex, [bridge_ifindex, *members])
            self._fdb_put(bridge_ifindex, mac_raw, 0, bridge_ifindex, static=True)
            self._attach(bridge_ifindex, "egress")

    def add_port(self, bridge_ifindex: int, ifindex: int, kind: PortKind,
                 vlan: VlanConfig = UNCONFIGURED) -> None:
        """Adds (or re-adopts) a port with its VLAN mode. Re-adding with another mode is
        set_port_vlan: the port's learned FDB entries are flushed."""
        with self._lock:
            self._check_open()
            vlan = self._check_vlan(vlan)
            kind = PortKind(kind)
            if kind == PortKind.BRIDGE:
                raise InvalidArgument("kind", kind.name, "bridges are added with add_bridge")
            bridge = self._port_get(bridge_ifindex)
            if bridge is None or bridge.kind != PortKind.BRIDGE:
                raise NotFound(
                    f"bridge ifindex {bridge_ifindex} is not in the datapath (add_bridge first)"
                )
            old = self._port_get(ifindex)
            if old is not None and old.bridge != bridge_ifindex:  # moved between bridges
                self._members_set(
                    old.bridge, [i for i in self._members_get(old.bridge) if i != ifindex]
                )
                self._forget_port_state(ifindex)
                old = None
            old_vlan = self._port_vlan(old, ifindex) if old is not None else vlan
            self._port_set(ifindex, bridge_ifindex, kind, vlan)
            if old_vlan != vlan:
                self._flush_learned(ifindex)
            members = self._members_get(bridge_ifindex)
            if ifindex not in members:
                self._members_set(bridge_ifindex, [*members, ifindex])
            self._attach(ifindex, "ingress")

    @staticmethod
    def _check_vlan(vlan: VlanConfig) -> VlanConfig:
        if not isinstance(vlan, VlanConfig):
            raise InvalidArgument("vlan", vlan, "must be a VlanConfig")
        return vlan

    def set_port_vlan(self, ifindex: int, vlan: VlanConfig) -> None:
        """Changes a port's VLAN mode at run time, atomically for packets, and flushes the
        FDB entries learned on the port (they belong to its old VLANs; static ones stay).
        The bridge device is always unconfigured."""
        with self._lock:
            self._check_open()
            vlan = self._check_vlan(vlan)
            port = self._port_get(ifindex)
            if port is None:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            if port.kind == PortKind.BRIDGE:
                if vlan != UNCONFIGURED:
                    raise InvalidArgument("vlan", vlan.mode,
                                          "the bridge device (host port) carries every VLAN "
                                          "and cannot be an access or trunk port")
                return
            if self._port_vlan(port, ifindex) == vlan:
                return
            self._port_set(ifindex, port.bridge, PortKind(port.kind), vlan)
            self._flush_learned(ifindex)

    def port_vlan(self, ifindex: int) -> VlanConfig:
        with self._lock:
            self._check_open()
            port = self._port_get(ifindex)
            if port is None:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            return self._port_vlan(port, ifindex)

    def remove_port(self, bridge_ifindex: int, ifindex: int) -> None:
        with self._lock:
            self._check_open()
            self._detach(ifindex, "ingress")
            members = self._members_get(bridge_ifindex)
            if ifindex in members:
                self._members_set(bridge_ifindex, [i for i in members if i != ifindex])
            port = self._port_get(ifindex)
            if port is None or port.bridge == bridge_ifindex:
                self._forget_port_state(ifindex)

    def remove_bridge(self, bridge_ifindex: int) -> None:
        with self._lock:
            self._check_open()
            self._detach(bridge_ifindex, "egress")
            for key, leaf in list(self._ports.items()):
                if leaf.bridge != bridge_ifindex:
                    continue
                if key.value != bridge_ifindex:
                    self._detach(key.value, "ingress")
                self._port_delete(key)
                self._delete(self._trunks, self._trunks.Key(key.value))
            self._fdb_delete_where(lambda key, leaf: key.bridge == bridge_ifindex)
            self._delete(self._members, self._members.Key(bridge_ifindex))
            self._flows.forget(lambda bridge: bridge == bridge_ifindex)

    def prune(self, keep: set[int]) -> None:
        with self._lock:
            self._check_open()
            for key, _leaf in list(self._ports.items()):
                if key.value not in keep:
                    self._port_delete(key)
            for key in list(self._trunks.keys()):
                if key.value not in keep:
                    self._delete(self._trunks, key)
            for key, _leaf in list(self._members.items()):
                if key.value not in keep:
                    self._delete(self._members, key)
                    continue
                members = self._members_get(key.value)
                kept = [i for i in members if i in keep]
                if kept != members:
                    self._members_set(key.value, kept)
            self._fdb_delete_where(
                lambda key, leaf: key.bridge not in keep or leaf.ifindex not in keep)
            self._flows.forget(lambda bridge: bridge not in keep)
            for ifindex, direction in tcx.pinned(self.bpffs_dir):
                if ifindex not in keep:
                    tcx.detach(self.bpffs_dir, ifindex, direction)

    # ---- flow tables -------------------------------------------------------------------

    def flows_sync(self, bridge_ifindex: int, rules: Iterable[DpRule]) -> None:
        """Makes the bridge's flow table exactly `rules`, atomically for packets, writing only
        the difference to the last sync of this instance (the first sync after a start
        rebuilds the table). Raises FailedPrecondition past MAX_FLOW_MASKS distinct masks,
        InvalidArgument for a bad rule; the table is unchanged then."""
        with self._lock:
            self._check_open()
            self._flows.sync(bridge_ifindex, rules)

    def flow_counters(self, bridge_ifindex: int) -> dict[int, FlowCounters]:
        """{rule_id: counters} of the rules of the bridge that were hit (real packets only)."""
        with self._lock:
            self._check_open()
            return self._flows.counters(bridge_ifindex)

    # ---- FDB ---------------------------------------------------------------------------

    def _fdb_key(self, bridge: int, mac_raw: bytes, vlan: int):
        key = self._fdb.Key()
        key.bridge = bridge
        key.vlan = vlan
        for i, b in enumerate(mac_raw):
            key.mac[i] = b
        return key

    def _fdb_put(self, bridge: int, mac_raw: bytes, vlan: int, ifindex: int,
                 static: bool) -> None:
        leaf = self._fdb.Leaf()
        leaf.ifindex = ifindex
        leaf.flags = FDB_F_STATIC if static else 0
        leaf.last_seen_ns = time.monotonic_ns()
        self._fdb[self._fdb_key(bridge, mac_raw, vlan)] = leaf
        self._fdb_changed()

    def _fdb_changed(self) -> None:
        """Invalidates every program's FDB cache (fdb.h: fdb_gen), after entries were added,
        replaced or deleted. Steps above what the programs' own increments (after learning)
        can reach between this read and write, so the value never goes back."""
        _bump(self._fdb_gen, FDB_GEN_DAEMON_STEP)

    def _fdb_delete_where(self, doomed: Callable) -> int:
        """Deletes the entries for which doomed(key, leaf) holds. Returns how many."""
        deleted = 0
        for key, leaf in list(self._fdb.items()):
            if doomed(key, leaf):
                deleted += self._delete(self._fdb, key)
        if deleted:
            self._fdb_changed()
        return deleted

    def fdb_list(self, bridge_ifindex: int) -> list[FdbRecord]:
        with self._lock:
            self._check_open()
            now = time.monotonic_ns()
            records = []
            for key, leaf in self._fdb.items():
                if key.bridge != bridge_ifindex:
                    continue
                static = bool(leaf.flags & FDB_F_STATIC)
                age = 0.0 if static else max(0, now - leaf.last_seen_ns) / 1e9
                records.append(FdbRecord(mac=_mac_str(key.mac), vlan=key.vlan,
                                         ifindex=leaf.ifindex, static=static, age_seconds=age))
            return sorted(records, key=lambda r: (r.vlan, r.mac))

    def fdb_add_static(self, bridge_ifindex: int, mac: str, vlan: int, ifindex: int) -> None:
        with self._lock:
            self._check_open()
            mac_raw = _mac_bytes(validate.unicast_mac(mac))
            vlan = validate.vlan(vlan)
            self._fdb_put(bridge_ifindex, mac_raw, vlan, ifindex, static=True)

    def fdb_delete(self, bridge_ifindex: int, mac: str, vlan: int) -> bool:
        with self._lock:
            self._check_open()
            key = self._fdb_key(bridge_ifindex, _mac_bytes(mac), validate.vlan(vlan))
            deleted = self._delete(self._fdb, key)
            if deleted:
                self._fdb_changed()
            return deleted

    def fdb_sweep(self, aging_seconds: float) -> int:
        """Deletes learned entries not seen for more than aging_seconds. Returns how many."""
        if aging_seconds < 0:
            raise InvalidArgument("aging_seconds", aging_seconds, "must not be negative")
        with self._lock:
            self._check_open()
            limit = int(aging_seconds * 1e9)
            deleted = 0
            for key, leaf in list(self._fdb.items()):
                if leaf.flags & FDB_F_STATIC:
                    continue
                if time.monotonic_ns() - leaf.last_seen_ns <= limit:
                    continue
                fresh = self._fdb.get(key)  # the datapath may have refreshed it meanwhile
                if fresh is None or fresh.flags & FDB_F_STATIC:
                    continue
                if time.monotonic_ns() - fresh.last_seen_ns > limit:
                    deleted += self._delete(self._fdb, key)
            if deleted:
                self._fdb_changed()
            return deleted

    # ---- counters ----------------------------------------------------------------------

    def port_counters(self, ifindex: int) -> PortCounters:
        with self._lock:
            self._check_open()
            port = self._port_get(ifindex)
            if port is None:
                return PortCounters(0, 0, 0, 0, {})
            per_cpu = self._stats[self._stats.Key(port.slot)]
            rx_p = rx_b = tx_p = tx_b = 0
            drops = [0] * DROP_REASON_MAX
            for cpu in per_cpu:
                rx_p += cpu.rx_packets
                rx_b += cpu.rx_bytes
                tx_p += cpu.tx_packets
                tx_b += cpu.tx_bytes
                for i in range(DROP_REASON_MAX):
                    drops[i] += cpu.drops[i]
            named = {reason_name(i): n for i, n in enumerate(drops) if n}
            return PortCounters(rx_p, rx_b, tx_p, tx_b, named)

    # ---- test runs ---------------------------------------------------------------------

    def run(self, frame: bytes, ifindex: int, *, egress: bool = False, dry_run: bool = True,
            repeat: int = 1) -> RunResult:
        """Runs the program on a crafted frame through BPF_PROG_TEST_RUN, as if it arrived on
        `ifindex` (a device in the current netns). A dry run decides without side effects."""
        if len(frame) < testrun.ETH_HLEN:
            raise InvalidArgument(
                "frame", f"{len(frame)} bytes",
                f"BPF_PROG_TEST_RUN needs at least {testrun.ETH_HLEN} bytes (Ethernet header)",
            )
        if repeat < 1:
            raise InvalidArgument("repeat", repeat, "must be at least 1")
        with self._lock:
            self._check_open()
            prog = self._progs["egress" if egress else "ingress"]
            zero = self._result.Key(0)
            if dry_run:
                self._result[zero] = self._result.Leaf()  # zero on every CPU
            try:
                out = testrun.prog_test_run_skb(
                    prog.fd, frame, ifindex=ifindex,
                    cb=DRY_RUN_MAGIC if dry_run else (), repeat=repeat,
                )
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise NotFound(f"no device with ifindex {ifindex} in this netns") from None
                raise
            if not dry_run:
                return RunResult(out.retval, _RETVAL_VERDICT.get(out.retval, "other"), "", 0,
                                 [], False, out.duration_ns, data=out.data)
            for res in self._result[zero]:
                if res.verdict:
                    n = min(res.n_flood, MAX_BRIDGE_PORTS)
                    return RunResult(
                        retval=out.retval,
                        verdict=VERDICTS.get(res.verdict, f"unknown-{res.verdict}"),
                        drop_reason=reason_name(res.drop_reason),
                        out_ifindex=res.out_ifindex,
                        flood=[res.flood[i] for i in range(n)],
                        fdb_hit=bool(res.fdb_hit),
                        duration_ns=out.duration_ns,
                        rule_id=res.rule_id,
                        priority=res.priority,
                        outputs=[res.outputs[i]
                                 for i in range(min(res.n_outputs, MAX_FLOW_ACTIONS))],
                        data=out.data,
                        vlan=res.vlan,
                        key=_key_dict(res.key),
                        stages=tuple(name for bit, name in sorted(TRACE_STAGES.items())
                                     if res.stages & bit),
                        tags=_report_tags(res, n),
                    )
            raise Unavailable("the dry run wrote no result (is the program the datapath's?)")

    def trace(self, frame: bytes, ifindex: int, *, egress: bool = False) -> RunResult:
        """What the datapath would do with `frame` arriving on `ifindex` (at the bridge
        device's egress with egress=True): one dry run of the real program, with no side
        effects (nothing learned, no counter, no watch event). The RunResult holds the whole
        report: key, stages, vlan, rule_id/priority, fdb_hit, verdict, out_ifindex/outputs/
        flood with their tags, drop_reason."""
        return self.run(frame, ifindex, egress=egress, dry_run=True)

    # ---- live watch --------------------------------------------------------------------

    def _open_watch(self) -> None:
        """Instance-local watch maps (not pinned: this instance's ring, this daemon's
        watchers). Called by _open() when built with the trace stage."""
        self._watch_ctl = self._bpf[b"watch_ctl"]
        self._watch_filters = self._bpf[b"watch_filters"]
        self._watch_lost = self._bpf[b"watch_lost"]
        self._watch_slots: dict[int, WatchFilter] = {}
        self._watch_rate = WATCH_DEFAULT_RATE
        self._watch_poll_lock = threading.Lock()
        self._watch_pending: list[bytes] = []
        self.watch_bad_events = 0  # records refused by the decoder (version/type/length)
        # sLeaf: the struct (Leaf of a per-CPU map is an array of one per CPU)
        self._watch_decoder = EventDecoder(self._bpf[b"watch_scratch"].sLeaf, VERDICTS)

        def on_event(_ctx, data, size):
            self._watch_pending.append(ctypes.string_at(data, size))
            return 0

        self._bpf[b"watch_events"].open_ring_buffer(on_event)
        self._watch_write_ctl()

    def _check_watch(self):
        self._check_open()
        if not self.trace_enabled:
            raise FailedPrecondition("this datapath was built without the trace stage "
                                     "(trace=False): nothing to watch")

    def _watch_write_ctl(self) -> None:
        leaf = self._watch_ctl.Leaf()
        leaf.active = sum(1 << slot for slot in self._watch_slots)
        leaf.drops_only = sum(1 << slot for slot, f in self._watch_slots.items()
                              if f.drops_only)
        leaf.rate = self._watch_rate
        self._watch_ctl[self._watch_ctl.Key(0)] = leaf

    def watch_add(self, flt: WatchFilter) -> int:
        """Starts emission for a watcher; returns its slot (0..MAX_WATCHERS-1, the bit of
        WatchEvent.watchers). Raises InvalidArgument for a bad filter, Unavailable when
        MAX_WATCHERS watchers exist."""
        match = check_filter(flt)
        with self._lock:
            self._check_watch()
            free = [i for i in range(MAX_WATCHERS) if i not in self._watch_slots]
            if not free:
                raise Unavailable(f"at most {MAX_WATCHERS} watchers at once")
            slot = free[0]
            zero = self._watch_filters.Key(0)
            filters = self._watch_filters[zero]
            entry = filters.f[slot]
            ctypes.memset(ctypes.addressof(entry), 0, ctypes.sizeof(entry))
            entry.bridge = flt.bridge
            key = {name: value for name, (value, _m) in match.items()}
            mask = {name: m for name, (_v, m) in match.items()}
            for target, values in ((entry.key, key), (entry.mask, mask)):
                raw = pack_flow_key(values)
                ctypes.memmove(ctypes.addressof(target), raw, len(raw))
            self._watch_filters[zero] = filters  # the slot first, then its active bit
            self._watch_lost[self._watch_lost.Key(slot)] = self._watch_lost.Leaf()  # all CPUs
            self._watch_slots[slot] = flt
            self._watch_write_ctl()
            return slot

    def watch_remove(self, slot: int) -> None:
        """Stops emission for the watcher; with none left the datapath emits nothing."""
        with self._lock:
            self._check_watch()
            if slot not in self._watch_slots:
                raise NotFound(f"no watcher in slot {slot}")
            del self._watch_slots[slot]
            self._watch_write_ctl()

    def watch_poll(self, timeout_ms: int) -> list[WatchEvent]:
        """Waits up to timeout_ms (0: no wait) for events and returns those in the ring. Call
        it from one poller thread; records of an unknown version/type are skipped (counted in
        watch_bad_events)."""
        self._check_watch()
        with self._watch_poll_lock:
            bpf = self._bpf
            if bpf is None:
                return []
            bpf.ring_buffer_poll(max(0, int(timeout_ms)))
            raw, self._watch_pending = self._watch_pending, []
        events = []
        for record in raw:
            try:
                events.append(self._watch_decoder.decode(record))
            except ValueError:
                self.watch_bad_events += 1
        return events

    def watch_lost(self, slot: int) -> int:
        """Events of the watcher lost to the rate limit or a full ring, summed over CPUs."""
        if not isinstance(slot, int) or not 0 <= slot < MAX_WATCHERS:
            raise InvalidArgument("slot", slot, f"must be in 0..{MAX_WATCHERS - 1}")
        with self._lock:
            self._check_watch()
            return sum(int(v) for v in self._watch_lost[self._watch_lost.Key(slot)])

    def watch_set_rate(self, per_cpu_per_second: int) -> None:
        """The per-CPU event rate limit (default WATCH_DEFAULT_RATE events/s, bursts of one
        second's worth)."""
        if not isinstance(per_cpu_per_second, int) or not 1 <= per_cpu_per_second <= MAX_RATE:
            raise InvalidArgument("rate", per_cpu_per_second, f"must be in 1..{MAX_RATE}")
        with self._lock:
            self._check_watch()
            self._watch_rate = per_cpu_per_second
            self._watch_write_ctl()

    def verified_insns(self) -> dict[str, int]:
        """Instructions the verifier processed per program (its `processed N insns`)."""
        with self._lock:
            self._check_open()
            return {name: testrun.verified_insns(prog.fd) for name, prog in self._progs.items()}

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Releases our fds; programs stay attached and maps pinned (forwarding goes on)."""
        with self._lock:
            if self._bpf is not None:
                if self.trace_enabled:  # attached programs outlive us: stop their emission
                    self._watch_slots.clear()
                    try:
                        self._watch_write_ctl()
                    except Exception:
                        pass
                with self._watch_poll_lock if self.trace_enabled else _NO_LOCK:
                    self._bpf.cleanup()
                    self._bpf = None

    def destroy(self) -> None:
        """Detaches every program this datapath attached and removes its pins."""
        with self._lock:
            if self._bpf is not None:
                for key, leaf in list(self._ports.items()):
                    direction = "egress" if leaf.kind == PortKind.BRIDGE else "ingress"
                    self._detach(key.value, direction)
            tcx.remove_all(self.bpffs_dir)  # links of devices that are gone
            self.close()
            self._remove_pins()

    def _remove_pins(self, keep_dir: bool = False) -> None:
        remove_map_pins(self.bpffs_dir, keep_dir)

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


