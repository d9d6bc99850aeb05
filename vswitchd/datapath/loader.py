"""The eBPF datapath of one daemon instance: Datapath, a facade over the modules that do the
work. bpf/datapath.c is compiled by bcc in a process of its own, or found compiled in a cache
(objfile.py), and loaded (build.py) against maps pinned in the instance's
bpffs directory (pins.py), so a restarted daemon reopens them with their contents while the old
programs keep forwarding. The programs go on the ports' TC hooks (attach.py); each map has one
writer (ports.py, fdb.py, flows.py, watch.py); counters.py and runs.py read what the programs
wrote.

Map layouts come from the ctypes classes decoded from bcc's descriptions of the C types
(tables.py: table.Key / table.Leaf); nothing about them is written twice.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator

from vswitchd import validate
from vswitchd.datapath import counters, pins, runs, tcx, testrun, xdp, xdpmaps
from vswitchd.datapath.attach import Hooks
from vswitchd.datapath.bpfsys import object_id
from vswitchd.datapath.build import DEFAULT_LIMITS, ebpf_unsupported_reason, load
from vswitchd.datapath.constants import PORT_F_ACCESS  # noqa: F401  (tests import it from here)
from vswitchd.datapath.counters import PortCounters
from vswitchd.datapath.fdb import FdbMaps, FdbRecord, mac_bytes
from vswitchd.datapath.flows import DpRule, FlowCounters, FlowTables
from vswitchd.datapath.limits import Limits
from vswitchd.datapath.objfile import DEFAULT_CACHE_DIR
from vswitchd.datapath.packet_in import PacketInCounters, PacketInEvent, PacketInMaps, check_key
from vswitchd.datapath.pins import (
    DEFAULT_BPFFS_DIR,
    map_shape,  # noqa: F401  (tests import it from here)
)
from vswitchd.datapath.ports import PortKind, PortMaps
from vswitchd.datapath.runs import RunResult
from vswitchd.datapath.tunnels import TunnelMaps
from vswitchd.datapath.vlan import UNCONFIGURED, VlanConfig
from vswitchd.datapath.watch import (
    MAX_RATE,
    MAX_WATCHERS,
    WatchEvent,
    WatchFilter,
    WatchMaps,
    check_filter,
)
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

XDP_MODES = ("auto", "native", "generic", "off")


def _vlan_arg(vlan: VlanConfig) -> VlanConfig:
    if not isinstance(vlan, VlanConfig):
        raise InvalidArgument("vlan", vlan, "must be a VlanConfig")
    return vlan


class Datapath:
    """The compiled datapath of one daemon instance and its pinned maps."""

    def __init__(self, bpffs_dir: str = DEFAULT_BPFFS_DIR, *, trace: bool = True,
                 cache_dir: str | None = DEFAULT_CACHE_DIR, limits: Limits = DEFAULT_LIMITS
                 ) -> None:
        """trace=False builds the programs without the watch stage (VSW_NO_TRACE); only
        bench/trace_cost.py uses it, as the baseline. The watch_* methods then raise
        FailedPrecondition; dry runs (trace()) still work. cache_dir holds compiled programs
        (objfile.py); None compiles every time. limits: the sizes of the maps (limits.py)."""
        problem = limits.problem()
        if problem:
            raise InvalidArgument(f"datapath.{problem[0]}", getattr(limits, problem[0]),
                                  problem[1])
        self.limits = limits
        self.bpffs_dir = os.path.abspath(bpffs_dir)
        self.trace_enabled = trace
        self.cache_dir = cache_dir
        self._lock = threading.RLock()
        self._bpf = None
        self._watch: WatchMaps | None = None
        self._packet_in: PacketInMaps | None = None
        self._xdp_attached: dict[int, XdpState] = {}  # what set_port_xdp got, with its reason
        self._deferred_sync: set[int] | None = None  # bridges to sync (deferred_flood_sync)
        reason = ebpf_unsupported_reason()
        if reason is None:
            try:
                self._open()
                return
            except Unavailable:
                raise
            except Exception as exc:  # the compiler's error, or the kernel's refusal
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise Unavailable(f"eBPF datapath unavailable: {reason}; use --datapath kernel")

    def _open(self) -> None:
        self._bpf = load(self.bpffs_dir, self.trace_enabled, self.cache_dir, self.limits)
        self._progs = self._bpf.progs
        try:
            self._flows = FlowTables(self._bpf)
            self._port_maps = PortMaps(self._bpf)
            self._fdb_maps = FdbMaps(self._bpf)
            self._tunnel_maps = TunnelMaps(self._bpf)
            self._result = self._bpf[b"dp_result"]
            self._hooks = Hooks(self.bpffs_dir, self._progs)
            self._xdp_maps = xdpmaps.XdpMaps(self._bpf, self.bpffs_dir,
                                             self._progs["xdp_egress"].fd)
            self._xdp_prog_id = object_id(self._progs["xdp"].fd)
            if self.trace_enabled:
                self._watch = WatchMaps(self._bpf)
            self._packet_in = PacketInMaps(self._bpf)
        except Exception:
            self._bpf.cleanup()
            self._bpf = None
            raise

    def _check_open(self):
        if self._bpf is None:
            raise FailedPrecondition("the datapath is closed")
        return self._bpf

    # ---- the maps behind the writers (tests write them behind the writers' backs) -------

    _ports = property(lambda self: self._port_maps.ports)
    _trunks = property(lambda self: self._port_maps.trunks)
    _port_gen = property(lambda self: self._port_maps.gen)
    _fdb = property(lambda self: self._fdb_maps.table)
    _fdb_gen = property(lambda self: self._fdb_maps.gen)
    _tcx = property(lambda self: self._hooks.tcx)  # attached with TCX links; None = not yet
    _watch_ctl = property(lambda self: self._watch.ctl)
    _watch_ring = property(lambda self: self._watch._ring)
    _watch_decoder = property(lambda self: self._watch.decoder)

    def _port_get(self, ifindex: int):
        return self._port_maps.get(ifindex)

    def _ports_changed(self) -> None:
        self._port_maps.changed()

    def _fdb_key(self, bridge: int, mac_raw: bytes, vlan: int):
        return self._fdb_maps.key(bridge, mac_raw, vlan)

    def _fdb_changed(self) -> None:
        self._fdb_maps.changed()

    def _stale_pins(self) -> list[str]:
        return pins.stale_pins(self._bpf)

    # ---- steps shared by the operations ------------------------------------------------

    def _attach(self, ifindex: int, direction: str) -> None:
        """Attaches the program at the device's hook, then invalidates the FDB caches: the
        program it replaced may be an earlier build's, which learned without bumping
        fdb_gen."""
        self._hooks.attach(ifindex, direction)
        self._fdb_maps.changed()

    def _forget_port(self, ifindex: int) -> None:
        """ports (and so its counter slot), its trunk entry, FDB entries pointing at the port
        (not members, not tc)."""
        self._port_maps.delete(ifindex)
        self._xdp_maps.set_target(ifindex, False)
        self._tunnel_maps.forget(ifindex)
        self._fdb_maps.delete_where(lambda key, leaf: leaf.ifindex == ifindex)

    @contextlib.contextmanager
    def deferred_flood_sync(self) -> Iterator[None]:
        """Within it, the bridges whose members change get their XDP flood groups synced
        once, on the way out: a reconciliation re-adds every port, and a sync reads every
        member (n ports, n syncs of n members)."""
        with self._lock:
            if self._deferred_sync is not None:
                yield  # nested: the outer one syncs
                return
            self._deferred_sync = set()
        try:
            yield
        finally:
            with self._lock:
                pending, self._deferred_sync = self._deferred_sync, None
                if self._bpf is not None:
                    for bridge_ifindex in sorted(pending):
                        self._sync_xdp(bridge_ifindex)

    def _sync_xdp(self, bridge_ifindex: int) -> None:
        """The bridge's XDP flood groups after a change of its members, their VLAN modes or
        who takes XDP frames; none while no port of the bridge has an XDP program."""
        if self._deferred_sync is not None:
            self._deferred_sync.add(bridge_ifindex)
            return
        ports = self._port_maps
        members = ports.members_of(bridge_ifindex)
        # a stat per member (up to the first pinned one), not a listing of every pin
        if not any(os.path.exists(xdp.pin_path(self.bpffs_dir, m)) for m in members):
            self._xdp_maps.forget_bridge(bridge_ifindex)
            return
        leaves = ports.get_many(members)
        vlans = {m: ports.vlan(leaf, m) for m, leaf in leaves.items() if leaf is not None}
        targets = {m for m, leaf in leaves.items() if leaf is not None and ports.xdp_tx(leaf)}
        self._xdp_maps.sync_bridge(bridge_ifindex,
                                   xdpmaps.flood_groups(members, vlans, targets), targets)

    # ---- bridges and ports -------------------------------------------------------------

    def add_bridge(self, bridge_ifindex: int, mac: str) -> None:
        with self._lock:
            self._check_open()
            mac_raw = mac_bytes(validate.unicast_mac(mac))
            self._port_maps.set(bridge_ifindex, bridge_ifindex, PortKind.BRIDGE)
            self._port_maps.join(bridge_ifindex, bridge_ifindex, first=True)
            self._fdb_maps.put(bridge_ifindex, mac_raw, 0, bridge_ifindex, static=True)
            self._attach(bridge_ifindex, "egress")

    def add_port(self, bridge_ifindex: int, ifindex: int, kind: PortKind,
                 vlan: VlanConfig = UNCONFIGURED) -> None:
        """Adds (or re-adopts) a port with its VLAN mode. Re-adding with another mode is
        set_port_vlan: the port's learned FDB entries are flushed."""
        with self._lock:
            self._check_open()
            vlan = _vlan_arg(vlan)
            kind = PortKind(kind)
            if kind == PortKind.BRIDGE:
                raise InvalidArgument("kind", kind.name, "bridges are added with add_bridge")
            ports = self._port_maps
            bridge = ports.get(bridge_ifindex)
            if bridge is None or bridge.kind != PortKind.BRIDGE:
                raise NotFound(
                    f"bridge ifindex {bridge_ifindex} is not in the datapath (add_bridge first)"
                )
            old = ports.get(ifindex)
            if old is not None and old.bridge != bridge_ifindex:  # moved between bridges
                ports.leave(old.bridge, ifindex)
                self._forget_port(ifindex)
                old = None
            old_vlan = ports.vlan(old, ifindex) if old is not None else vlan
            ports.set(ifindex, bridge_ifindex, kind, vlan)
            if old_vlan != vlan:
                self._fdb_maps.flush_learned(ifindex)
            ports.join(bridge_ifindex, ifindex)
            self._attach(ifindex, "ingress")
            self._sync_xdp(bridge_ifindex)

    def set_port_vlan(self, ifindex: int, vlan: VlanConfig) -> None:
        """Changes a port's VLAN mode at run time, atomically for packets, and flushes the
        FDB entries learned on the port (they belong to its old VLANs; static ones stay).
        The bridge device is always unconfigured."""
        with self._lock:
            self._check_open()
            vlan = _vlan_arg(vlan)
            port = self._port_maps.get(ifindex)
            if port is None:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            if port.kind == PortKind.BRIDGE:
                if vlan != UNCONFIGURED:
                    raise InvalidArgument("vlan", vlan.mode,
                                          "the bridge device (host port) carries every VLAN "
                                          "and cannot be an access or trunk port")
                return
            if self._port_maps.vlan(port, ifindex) == vlan:
                return
            self._port_maps.set(ifindex, port.bridge, PortKind(port.kind), vlan)
            self._fdb_maps.flush_learned(ifindex)
            self._sync_xdp(port.bridge)

    def port_vlan(self, ifindex: int) -> VlanConfig:
        with self._lock:
            self._check_open()
            port = self._port_maps.get(ifindex)
            if port is None:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            return self._port_maps.vlan(port, ifindex)

    def remove_port(self, bridge_ifindex: int, ifindex: int) -> None:
        with self._lock:
            self._check_open()
            self._hooks.detach(ifindex, "ingress")
            xdp.detach(self.bpffs_dir, ifindex)
            self._port_maps.leave(bridge_ifindex, ifindex)
            port = self._port_maps.get(ifindex)
            if port is None or port.bridge == bridge_ifindex:
                self._forget_port(ifindex)
            self._sync_xdp(bridge_ifindex)

    def remove_bridge(self, bridge_ifindex: int) -> None:
        with self._lock:
            self._check_open()
            self._hooks.detach(bridge_ifindex, "egress")
            for ifindex in self._port_maps.of_bridge(bridge_ifindex):
                if ifindex != bridge_ifindex:
                    self._hooks.detach(ifindex, "ingress")
                    xdp.detach(self.bpffs_dir, ifindex)
                    self._xdp_maps.set_target(ifindex, False)
                self._port_maps.delete(ifindex)
                self._tunnel_maps.forget(ifindex)
            self._xdp_maps.forget_bridge(bridge_ifindex)
            self._fdb_maps.delete_where(lambda key, leaf: key.bridge == bridge_ifindex)
            self._port_maps.forget_members(bridge_ifindex)
            self._flows.forget(lambda bridge: bridge == bridge_ifindex)

    def prune(self, keep: set[int]) -> None:
        with self._lock:
            self._check_open()
            self._port_maps.prune(keep)
            self._fdb_maps.delete_where(
                lambda key, leaf: key.bridge not in keep or leaf.ifindex not in keep)
            self._flows.forget(lambda bridge: bridge not in keep)
            self._tunnel_maps.prune(keep)
            self._hooks.prune(keep)
            xdp.prune(self.bpffs_dir, keep)
            for ifindex in self._xdp_maps.targets() - keep:
                self._xdp_maps.set_target(ifindex, False)
            self._xdp_maps.prune(keep)

    # ---- the XDP hook ------------------------------------------------------------------

    def set_port_xdp(self, ifindex: int, mode: str) -> XdpState:
        """Puts the XDP program on a port (mode "auto": native, else generic with the reason;
        "native"; "generic") or takes it off ("off"). A port that has it in that mode already
        gets this instance's program swapped in atomically (a restart loses no frame). Raises
        NotFound (not a port), InvalidArgument (bad mode), FailedPrecondition (an explicit
        mode the driver cannot do)."""
        if mode not in XDP_MODES:
            raise InvalidArgument("xdp", mode, f"must be one of {', '.join(XDP_MODES)}")
        with self._lock:
            self._check_open()
            port = self._port_maps.get(ifindex)
            if port is None or port.kind == PortKind.BRIDGE:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            if mode == "off":
                xdp.detach(self.bpffs_dir, ifindex)
                state = XdpState("off")
                self._xdp_attached.pop(ifindex, None)
            else:
                state = xdp.attach(self.bpffs_dir, ifindex, self._progs["xdp"].fd, mode)
                self._xdp_attached[ifindex] = state
                self._fdb_maps.changed()  # as for TC: the program replaced may be older
            self._sync_xdp(port.bridge)
            return state

    def port_xdp(self, ifindex: int, device_progs: dict[str, int] | None = None) -> XdpState:
        """The XDP program the port has now (as the kernel says: DEVICE_PROGS, the device's
        IFLA_XDP program ids when the caller has them), with the reason its attach gave (why
        auto fell back to generic)."""
        with self._lock:
            self._check_open()
            attached = self._xdp_attached.get(ifindex)
            if (attached is not None and device_progs is not None
                    and device_progs.get(attached.mode) == self._xdp_prog_id):
                # the device runs this instance's program in the mode it attached: only its
                # pinned link can have put it there, so the pin is not opened (a listing of
                # a thousand ports opened a thousand pins)
                return attached
            state = xdp.state(self.bpffs_dir, ifindex, device_progs)
            if attached is None and state.mode == "off":
                return XdpState("off")  # as asked: nothing to explain
            if attached is not None and attached.mode == state.mode and not state.reason:
                return attached
            return state

    def set_xdp_target(self, ifindex: int, on: bool) -> None:
        """Whether the XDP programs may redirect to the port as XDP frames (it can receive
        them: a TAP; a veth whose peer has NAPI; a NIC in native mode). Frames for other ports
        go through TC."""
        with self._lock:
            self._check_open()
            port = self._port_maps.get(ifindex)
            if port is None or port.kind == PortKind.BRIDGE:
                raise NotFound(f"ifindex {ifindex} is not a port of the datapath")
            # the device map first: a program that sees the flag finds the entry
            if on:
                self._xdp_maps.set_target(ifindex, True)
            self._port_maps.set_xdp_tx(ifindex, on)
            if not on:
                self._xdp_maps.set_target(ifindex, False)
            self._sync_xdp(port.bridge)

    # ---- flow tables -------------------------------------------------------------------

    def flows_sync(self, bridge_ifindex: int, rules: Iterable[DpRule]) -> None:
        """Makes the bridge's flow table exactly `rules`, atomically for packets, writing only
        the difference to the last sync of this instance (the first sync after a start
        rebuilds the table). Raises FailedPrecondition past MAX_FLOW_MASKS distinct masks,
        InvalidArgument for a bad rule; the table is unchanged then."""
        with self._lock:
            self._check_open()
            self._flows.sync(bridge_ifindex, rules)

    def flow_counters(self, bridge_ifindex: int,
                      rule_ids: Iterable[int] | None = None) -> dict[int, FlowCounters]:
        """{rule_id: counters} of the rules of the bridge that were hit (real packets only);
        RULE_IDS: of those rules only."""
        with self._lock:
            self._check_open()
            return self._flows.counters(bridge_ifindex, rule_ids)

    # ---- FDB ---------------------------------------------------------------------------

    def fdb_list(self, bridge_ifindex: int) -> list[FdbRecord]:
        with self._lock:
            self._check_open()
            return self._fdb_maps.records(bridge_ifindex)

    def fdb_add_static(self, bridge_ifindex: int, mac: str, vlan: int, ifindex: int,
                       remote: str = "") -> None:
        """A static entry; on a tunnel port REMOTE is the VTEP the MAC is behind."""
        with self._lock:
            self._check_open()
            self._fdb_maps.add_static(bridge_ifindex, mac, vlan, ifindex, remote)

    # ---- tunnels -----------------------------------------------------------------------

    def _tunnel_port(self, ifindex: int):
        port = self._port_maps.get(ifindex)
        if port is None or port.kind != PortKind.TUNNEL:
            raise NotFound(f"ifindex {ifindex} is not a tunnel port of the datapath")
        return port

    def set_tunnel(self, ifindex: int, vni: int, local: str = "") -> None:
        """A tunnel port's VNI (checked against every frame it receives, set on every frame
        sent into it) and local address (the source; "" = by route)."""
        with self._lock:
            self._check_open()
            self._tunnel_port(ifindex)
            self._tunnel_maps.set_tunnel(ifindex, vni, local)

    def set_vteps(self, ifindex: int, addresses: list[str]) -> None:
        """The remote VTEPs a tunnel port's floods are replicated to (exactly these)."""
        with self._lock:
            self._check_open()
            port = self._tunnel_port(ifindex)
            self._tunnel_maps.set_vteps(port.bridge, ifindex, list(addresses))

    def vteps(self, ifindex: int) -> list[str]:
        with self._lock:
            self._check_open()
            port = self._tunnel_port(ifindex)
            tunnel, addresses = self._tunnel_maps.vteps_of(port.bridge)
            return addresses if tunnel == ifindex else []

    def fdb_delete(self, bridge_ifindex: int, mac: str, vlan: int) -> bool:
        with self._lock:
            self._check_open()
            return self._fdb_maps.delete(bridge_ifindex, mac, vlan)

    def fdb_sweep(self, aging_seconds: float) -> int:
        """Deletes learned entries not seen for more than aging_seconds. Returns how many."""
        if aging_seconds < 0:
            raise InvalidArgument("aging_seconds", aging_seconds, "must not be negative")
        with self._lock:
            self._check_open()
            return self._fdb_maps.sweep(aging_seconds)

    # ---- counters ----------------------------------------------------------------------

    def port_counters(self, ifindex: int) -> PortCounters:
        with self._lock:
            self._check_open()
            port = self._port_maps.get(ifindex)
            if port is None:
                return PortCounters(0, 0, 0, 0, {})
            return counters.read(self._port_maps.stats, self._port_maps.xdp_stats, port.slot)

    # ---- test runs ---------------------------------------------------------------------

    def run(self, frame: bytes, ifindex: int, *, egress: bool = False, dry_run: bool = True,
            repeat: int = 1, hook: str = "tc") -> RunResult:
        """Runs the program on a crafted frame through BPF_PROG_TEST_RUN, as if it arrived on
        `ifindex` (a device in the current netns): the TC program, or the XDP one with
        hook="xdp". A dry run decides without side effects. Raises NotFound when no device
        has ifindex, OSError (EINVAL) when the kernel refuses the frame (BPF_PROG_TEST_RUN
        wants a whole IP header)."""
        runs.check_args(frame, repeat)
        if hook not in ("tc", "xdp") or (hook == "xdp" and egress):
            raise InvalidArgument("hook", hook, "must be tc, or xdp at a port's ingress")
        with self._lock:
            self._check_open()
            prog = self._progs["xdp" if hook == "xdp" else "egress" if egress else "ingress"]
            return runs.run(prog, self._result, frame, ifindex, dry_run, repeat, hook)

    def trace(self, frame: bytes, ifindex: int, *, egress: bool = False) -> RunResult:
        """What the datapath would do with `frame` arriving on `ifindex` (at the bridge
        device's egress with egress=True): one dry run of the real program, with no side
        effects (nothing learned, no counter, no watch event). The RunResult holds the whole
        report: key, stages, vlan, rule_id/priority, fdb_hit, verdict, out_ifindex/outputs/
        flood with their tags, drop_reason."""
        return self.run(frame, ifindex, egress=egress, dry_run=True)

    def trace_hooks(self, frame: bytes, ifindex: int, *, egress: bool = False
                    ) -> list[RunResult]:
        """trace() through every hook the frame meets: on a port with an XDP program, the
        XDP dry run first, then TC's when XDP hands the frame on (verdict "to-tc")."""
        if egress or xdp.state(self.bpffs_dir, ifindex).mode == "off":
            return [self.trace(frame, ifindex, egress=egress)]
        first = self.run(frame, ifindex, dry_run=True, hook="xdp")
        if first.verdict != "to-tc":
            return [first]
        return [first, self.trace(frame, ifindex)]

    def verified_insns(self) -> dict[str, int]:
        """Instructions the verifier processed per program (its `processed N insns`)."""
        with self._lock:
            self._check_open()
            return {name: testrun.verified_insns(prog.fd) for name, prog in self._progs.items()}

    # ---- live watch --------------------------------------------------------------------

    def _check_watch(self) -> WatchMaps:
        self._check_open()
        if not self.trace_enabled:
            raise FailedPrecondition("this datapath was built without the trace stage "
                                     "(trace=False): nothing to watch")
        return self._watch

    def watch_add(self, flt: WatchFilter) -> int:
        """Starts emission for a watcher; returns its slot (0..MAX_WATCHERS-1, the bit of
        WatchEvent.watchers). Raises InvalidArgument for a bad filter, Unavailable when
        MAX_WATCHERS watchers exist."""
        match = check_filter(flt)
        with self._lock:
            return self._check_watch().add(flt, match)

    def watch_remove(self, slot: int) -> None:
        """Stops emission for the watcher; with none left the datapath emits nothing."""
        with self._lock:
            self._check_watch().remove(slot)

    def watch_poll(self, timeout_ms: int) -> list[WatchEvent]:
        """Waits up to timeout_ms (0: no wait) for events and returns those in the ring. Call
        it from one poller thread; records of an unknown version/type are skipped (counted in
        watch_bad_events)."""
        return self._check_watch().poll(timeout_ms)

    @property
    def watch_bad_events(self) -> int:
        """Records watch_poll skipped (unknown version, type or length)."""
        return self._watch.bad_events

    def watch_lost(self, slot: int) -> int:
        """Events of the watcher lost to the rate limit or a full ring, summed over CPUs."""
        if not isinstance(slot, int) or not 0 <= slot < MAX_WATCHERS:
            raise InvalidArgument("slot", slot, f"must be in 0..{MAX_WATCHERS - 1}")
        with self._lock:
            return self._check_watch().lost(slot)

    def watch_set_rate(self, per_cpu_per_second: int) -> None:
        """The per-CPU event rate limit (default WATCH_DEFAULT_RATE events/s, bursts of one
        second's worth)."""
        if not isinstance(per_cpu_per_second, int) or not 1 <= per_cpu_per_second <= MAX_RATE:
            raise InvalidArgument("rate", per_cpu_per_second, f"must be in 1..{MAX_RATE}")
        with self._lock:
            self._check_watch().set_rate(per_cpu_per_second)

    # ---- packet-in ---------------------------------------------------------------------

    def _check_packet_in(self) -> PacketInMaps:
        self._check_open()
        assert self._packet_in is not None
        return self._packet_in

    def packet_in_watch(self, key: int) -> None:
        """Packet-ins of the bridge with ifindex KEY (ALL_BRIDGES: of every bridge) are sent to
        this instance's ring from now on, their losses counted from 0 (packet_in_lost)."""
        check_key(key)
        with self._lock:
            self._check_packet_in().watch(key)

    def packet_in_unwatch(self, key: int) -> None:
        """The packet-ins of KEY are no longer sent (counted unwatched) unless another key
        covers them."""
        check_key(key)
        with self._lock:
            self._check_packet_in().unwatch(key)

    def packet_in_lost(self, key: int) -> int:
        """Packet-ins of KEY's subscription lost to the rate limit or a full ring, summed over
        CPUs (0 when KEY is not watched)."""
        check_key(key)
        with self._lock:
            return self._check_packet_in().lost(key)

    def packet_in_poll(self, timeout_ms: int) -> list[PacketInEvent]:
        """Waits up to timeout_ms (0: no wait) for packet-ins and returns those in the ring.
        Call it from one poller thread; records of an unknown version/type are skipped
        (counted in packet_in_bad_events)."""
        return self._check_packet_in().poll(timeout_ms)

    @property
    def packet_in_bad_events(self) -> int:
        return self._packet_in.bad_events if self._packet_in is not None else 0

    def packet_in_counters(self) -> PacketInCounters:
        """sent, rate_limited, ring_full, unwatched since this program was loaded."""
        with self._lock:
            return self._check_packet_in().counters()

    def packet_in_set_rate(self, per_cpu_per_second: int) -> None:
        """The per-CPU packet-in rate limit (default PACKET_IN_DEFAULT_RATE/s, bursts of one
        second's worth)."""
        if isinstance(per_cpu_per_second, bool) or not isinstance(per_cpu_per_second, int) \
                or not 1 <= per_cpu_per_second <= MAX_RATE:
            raise InvalidArgument("rate", per_cpu_per_second, f"must be in 1..{MAX_RATE}")
        with self._lock:
            self._check_packet_in().set_rate(per_cpu_per_second)

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Releases our fds; programs stay attached and maps pinned (forwarding goes on)."""
        with self._lock:
            if self._bpf is not None:
                if self._watch is not None:  # attached programs outlive us: stop emission
                    self._watch.close()
                if self._packet_in is not None:
                    self._packet_in.close()
                self._xdp_maps.close()
                self._bpf.cleanup()
                self._bpf = None

    def destroy(self) -> None:
        """Detaches every program this datapath attached and removes its pins."""
        with self._lock:
            if self._bpf is not None:
                for ifindex, direction in self._port_maps.hooked():
                    self._hooks.detach(ifindex, direction)
            xdp.remove_all(self.bpffs_dir)
            tcx.remove_all(self.bpffs_dir)  # links of devices that are gone
            self.close()
            pins.remove_map_pins(self.bpffs_dir)

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
