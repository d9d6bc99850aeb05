"""The switch: the one place where changes to the desired state are applied.

Every change runs under one lock as a transaction (vswitchd.txn): each step records its undo,
a failure undoes the steps done, and the desired state is saved before the change is reported
done (a failed save undoes it too). What a change does is computed by the managers, one per
concern (bridges, ports, FDB, flows, tracing, reconciliation: this package's modules); this
class holds the transaction and dispatches the API's calls to them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import ModuleType
from typing import TypeVar

from vswitchd.backends import Backends
from vswitchd.config import Config
from vswitchd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchError,
    check_revision,
    clip,
)
from vswitchd.events import EventLog, Subscription
from vswitchd.flows import validate as flow_validate
from vswitchd.flows.batch import Stages
from vswitchd.flows.model import DEFAULT_PRIORITY, Clock, FlowRequest, Match
from vswitchd.model import Bridge, BridgeSpec, PortSpec
from vswitchd.netlink import ethtool as system_ethtool
from vswitchd.netlink import netns as system_netns
from vswitchd.seams import DatapathApi, EthtoolApi, LinksApi, NatApi, NetnsApi, PacketIoApi
from vswitchd.state import StateError, StateStore
from vswitchd.switch.bridges import BridgeManager
from vswitchd.switch.context import Context
from vswitchd.switch.events import REVISION_KEY, EventRecorder
from vswitchd.switch.fdb import FdbManager
from vswitchd.switch.flows import FlowManager
from vswitchd.switch.packet_in import PacketInManager
from vswitchd.switch.packetout import PacketOut
from vswitchd.switch.ports import PortManager
from vswitchd.switch.reconcile import Reconciler
from vswitchd.switch.tracing import TraceManager
from vswitchd.trace import packet_in as packet_in_streams
from vswitchd.trace import ratelimit
from vswitchd.trace.report import TraceReport
from vswitchd.trace.watch import Session
from vswitchd.txn import Txn
from vswitchd.views import BridgeView, FdbView, FlowView, PortView, StatsView, StatusView

log = logging.getLogger(__name__)
T = TypeVar("T")
SNAPSHOT_PORTS = 8  # a listing of more ports than this may read one dump of the links...
# ...when it covers at least 1/SNAPSHOT_SHARE of the links vswitchd owns: a link costs about
# 18 us parsed in a dump and a request 30 us, two or three a port (measured with 1 000 TAPs)
SNAPSHOT_SHARE = 4


def stored_revision(store: StateStore) -> int:
    """The last revision handed out before this start (0: a store older than revisions)."""
    text = store.get_meta(REVISION_KEY)
    try:
        return int(text) if text else 0
    except ValueError:
        raise StateError(f"state store {store.path}: the revision record {text!r} is damaged; "
                         "it was left in place for inspection") from None


class Switch:
    def __init__(self, cfg: Config, links: LinksApi, store: StateStore,
                 datapath: DatapathApi | None, ebpf_unsupported: str | None,
                 clock: Clock | None = None, nat: NatApi | None = None,
                 netns: NetnsApi | ModuleType = system_netns,
                 ethtool: EthtoolApi = system_ethtool,
                 packets: PacketIoApi | None = None) -> None:
        self.store = store
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._nat = nat
        self._packets = packets
        self._shutdown: Callable[[bool], None] | None = None
        self._saved_revision = 0
        bridges = store.load()
        if clock is not None:  # the store derived monotonic times from the real clock
            for br in bridges.values():
                br.flows.rebase(clock.wall(), clock.mono_ns())
        self.ctx = ctx = Context(cfg, links, netns,  # type: ignore[arg-type]
                                 Backends(links, datapath, ebpf_unsupported),
                                 clock or Clock(), bridges, ethtool=ethtool,
                                 events=EventLog(stored_revision(store), cfg.events.history))
        self.ports = PortManager(ctx)
        self.bridges = BridgeManager(ctx, self.ports, self._nat_impl)
        self.fdb = FdbManager(ctx)
        self.flows = FlowManager(ctx)
        self.tracing = TraceManager(ctx, ratelimit.stored(store))
        self.packet_in = PacketInManager(ctx, ratelimit.PACKET_IN.stored(store))
        self.reconciler = Reconciler(ctx, self.bridges, self.ports, self.fdb, self.flows)
        self.recorder = EventRecorder(ctx, self.bridges, self.ports)
        self.packetout = PacketOut(ctx, self._packets_impl)

    # ---- the transaction -----------------------------------------------------------------

    def _save(self, reason: str = "api") -> None:
        """Save the desired state with the revisions of its changes, then publish their events
        (REASON: why ports went, see EventRecorder.collect)."""
        self.recorder.collect(reason)
        try:
            self.store.save(self.ctx.bridges,
                            meta={REVISION_KEY: str(self.ctx.events.revision)})
        except OSError as exc:
            self.recorder.discard()
            raise FailedPrecondition(
                f"cannot write state store {self.store.path}: {exc.strerror}") from None
        self.recorder.commit()
        self._saved_revision = self.ctx.events.revision

    def _keep_revision(self) -> None:
        """Store the revision after events published without a save (observed changes), so a
        restarted daemon goes on above it."""
        revision = self.ctx.events.revision
        if revision != self._saved_revision:
            try:
                self.store.set_meta(REVISION_KEY, str(revision))
                self._saved_revision = revision
            except OSError as exc:
                log.error("cannot store the revision %d: %s", revision, exc)

    @contextmanager
    def _change(self, stages: Stages | None = None) -> Iterator[Txn]:
        """A transaction under the lock: undone on failure, saved (or undone) at the end."""
        with self._lock:
            txn = Txn()
            try:
                with self.ctx.flood_sync_once():
                    yield txn
                if txn.changed:
                    self._save()
                    if stages is not None:
                        stages.mark("store")
            except BaseException:
                self.recorder.discard()
                txn.rollback()
                raise
            txn.committed()

    def _packets_impl(self) -> PacketIoApi:
        if self._packets is None:
            from vswitchd.packetio import PacketIo

            self._packets = PacketIo()
        return self._packets

    def _nat_impl(self) -> NatApi:
        if self._nat is None:
            from vswitchd.netlink.nat import Nat

            self._nat = Nat()
        return self._nat

    # ---- bridges -------------------------------------------------------------------------

    def create_bridge(self, spec: BridgeSpec, may_exist: bool = False) -> BridgeView:
        spec = self.bridges.validate(spec)
        with self._change() as txn:
            self.bridges.create(spec, may_exist, txn)
        return self.get_bridge(spec.name)  # with the revision the change got

    def delete_bridge(self, name: str, if_exists: bool = False,
                      expected_revision: int | None = None) -> bool:
        with self._lock:
            if name not in self.ctx.bridges:
                if if_exists and expected_revision is None:
                    return False
                raise NotFound(f"bridge {clip(name)} does not exist (--if-exists ignores this)")
            br = self.ctx.bridges[name]
            check_revision(f"bridge {name}", expected_revision, br.facts.revision)
            self.bridges.delete(br)
            self._save()
            return True

    def update_bridge(self, name: str, nat: bool | None = None,
                      expected_revision: int | None = None,
                      addresses: list[str] | None = None) -> BridgeView:
        """Change a bridge's settings at run time: its own addresses (replaced as a whole),
        NAT on or off; both at once are one change (addresses first: NAT needs one)."""
        with self._change() as txn:
            br = self.ctx.bridge(name)
            check_revision(f"bridge {name}", expected_revision, br.facts.revision)
            if addresses is not None:
                self.bridges.set_addresses(br, addresses, txn)
            if nat is not None:
                self.bridges.set_nat(br, nat, txn)
        return self.get_bridge(name)

    def _reading(self, ports: int) -> AbstractContextManager[None]:
        """For a listing of PORTS ports (the caller holds the lock): one dump of the links
        (Links.snapshot) serves their interfaces when they are more than a few and a good
        share of all the links vswitchd owns; otherwise a request or two a port is cheaper
        than parsing every link (a bridge of 125 among 4 000 ports: 11 ms against 72)."""
        owned = sum(len(b.ports) + 1 for b in self.ctx.bridges.values())
        if ports > SNAPSHOT_PORTS and ports * SNAPSHOT_SHARE >= owned:
            return self.ctx.links.snapshot()
        return nullcontext()

    def _reading_all(self) -> AbstractContextManager[None]:
        """_reading() for a pass over every port of every bridge."""
        return self._reading(sum(len(b.ports) for b in self.ctx.bridges.values()))

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Several listings in a row by this thread (a metrics scrape) read the links from one
        dump. A link changed during them is seen as it was when they began."""
        with self.ctx.links.snapshot():
            yield

    def get_bridge(self, name: str) -> BridgeView:
        with self._lock:
            br = self.ctx.bridge(name)
            with self._reading(len(br.ports)):
                return self.bridges.view(br)

    def list_bridges(self) -> list[BridgeView]:
        with self._lock:
            bridges = sorted(self.ctx.bridges.values(), key=lambda b: b.name)
            with self._reading_all():
                return [self.bridges.view(b) for b in bridges]

    # ---- ports ---------------------------------------------------------------------------

    def create_port(self, bridge: str, spec: PortSpec, may_exist: bool = False) -> PortView:
        spec = self.ports.validate(bridge, spec)
        with self._change() as txn:
            self.ports.create(bridge, spec, may_exist, txn)
        return self.get_port(bridge, spec.name)  # with the revision the change got

    def delete_port(self, bridge: str, name: str, if_exists: bool = False,
                    expected_revision: int | None = None) -> bool:
        with self._lock:
            br = self.ctx.bridge(bridge)
            port = br.ports.get(name)
            if port is None:
                if if_exists and expected_revision is None:
                    return False
                raise NotFound(f"port {clip(name)} does not exist on bridge {bridge} "
                               "(--if-exists ignores this)")
            check_revision(f"port {name}", expected_revision, port.facts.revision)
            self.flows.drop_port(br, name)
            self.ports.remove(br, port)
            self._save()
            log.info("port %s deleted from bridge %s", name, bridge)
            return True

    def update_port(self, bridge: str, name: str, changes: dict[str, object],
                    expected_revision: int | None = None) -> PortView:
        """Change a port's VLAN settings and XDP mode at run time. CHANGES holds any of vlan,
        trunks, native_vlan (the resulting combination is validated as a whole) and xdp."""
        self.ports.check_changes(changes)
        with self._change() as txn:
            br = self.ctx.bridge(bridge)
            check_revision(f"port {name}", expected_revision,
                           self.ctx.port(br, name).facts.revision)
            self.ports.update(br, name, changes, txn)
        with self._lock:  # with the revision the change got
            return self.ports.view(br, self.ctx.port(br, name))

    def get_port(self, bridge: str, name: str) -> PortView:
        with self._lock:
            br = self.ctx.bridge(bridge)
            return self.ports.view(br, self.ctx.port(br, name))

    def list_ports(self, bridge: str) -> list[PortView]:
        with self._lock:
            br = self.ctx.bridge(bridge)
            with self._reading(len(br.ports)):
                return self.ports.views(br)

    def port_stats(self, bridge: str, port: str = "") -> list[StatsView]:
        with self._lock:
            br = self.ctx.bridge(bridge)
            with self._reading(0 if port else len(br.ports)):
                return self.ports.stats(br, port)

    # ---- FDB -----------------------------------------------------------------------------

    def fdb_list(self, bridge: str) -> list[FdbView]:
        """The bridge's FDB with each entry's revision (learned entries' changes since the
        last listing are published first)."""
        with self._lock:
            br = self.ctx.bridge(bridge)
            with self._reading(len(br.ports)):  # the entries' ports by ifindex
                views = self.recorder.fdb(br, self.fdb.list(br))
            self._keep_revision()
            return views

    def _fdb_revision(self, br: Bridge, mac: str, vlan: int) -> int:
        """The revision of BR's entry for (MAC, VLAN); 0 when it has none."""
        for view in self.recorder.fdb(br, self.fdb.list(br)):
            if (view.mac, view.vlan) == (mac, vlan):
                return view.revision
        return 0

    def fdb_add(self, bridge: str, mac: str, port: str, vlan: int = 0,
                remote: str = "", expected_revision: int | None = None) -> FdbView:
        """A static entry; on a tunnel port REMOTE names the VTEP the MAC is behind.
        EXPECTED_REVISION: the entry it replaces must be at it (0: there must be none)."""
        mac, vlan = self.fdb.check(mac, vlan)
        with self._change() as txn:
            br = self.ctx.bridge(bridge)
            if expected_revision is not None:
                check_revision(f"the FDB entry for {mac} vlan {vlan}", expected_revision,
                               self._fdb_revision(br, mac, vlan))
            self.fdb.add(br, mac, port, vlan, txn, remote)
        with self._lock:
            entry = next(f for f in br.fdb if (f.mac, f.vlan) == (mac, vlan))
            return FdbView(mac, entry.port, vlan, True, 0.0, entry.remote, entry.revision)

    def fdb_delete(self, bridge: str, mac: str, vlan: int = 0, if_exists: bool = False,
                   expected_revision: int | None = None) -> bool:
        mac, vlan = self.fdb.check(mac, vlan, unicast=False)
        with self._lock:
            br = self.ctx.bridge(bridge)
            if expected_revision is not None:
                check_revision(f"the FDB entry for {mac} vlan {vlan}", expected_revision,
                               self._fdb_revision(br, mac, vlan))
            deleted, changed = self.fdb.delete(br, mac, vlan, if_exists)
            if changed:
                self._save()
            return deleted

    # ---- remote VTEPs of tunnel ports --------------------------------------------------------

    def vtep_add(self, bridge: str, port: str, address: str,
                 may_exist: bool = False) -> tuple[str, str, str, int]:
        with self._change() as txn:
            p, canonical = self.ports.tunnels.add_vtep(self.ctx.bridge(bridge), port, address,
                                                       may_exist, txn)
            return bridge, port, canonical, p.spec.vni

    def vtep_delete(self, bridge: str, port: str, address: str, if_exists: bool = False) -> bool:
        with self._change() as txn:
            return self.ports.tunnels.delete_vtep(self.ctx.bridge(bridge), port, address,
                                                  if_exists, txn)

    def vtep_list(self, bridge: str = "", port: str = "") -> list[tuple[str, str, str, int]]:
        with self._lock:
            return [(b.name, p.name, r, p.spec.vni)
                    for b, p, r in self.ports.tunnels.list_vteps(bridge, port)]

    def sweep_fdb(self) -> int:
        """Age out learned entries (the datapath keeps their last-seen time)."""
        return self.fdb.sweep()

    def poll_fdb(self) -> int:
        """Publish the learned FDB entries' changes since the last look (events); how many
        bridges were looked at. Only while someone subscribes: a listing looks as well, so
        what is listed and what is streamed agree, and an idle daemon reads no FDB."""
        n = 0
        if not self.ctx.events.subscribers:
            return 0
        with self._lock:
            for br in list(self.ctx.bridges.values()):
                try:
                    self.recorder.fdb(br, self.fdb.list(br))
                    n += 1
                except SwitchError as exc:  # its datapath is unavailable or it is missing
                    log.debug("bridge %s: FDB not polled: %s", br.name, exc)
            self._keep_revision()
        return n

    # ---- flow tables ---------------------------------------------------------------------

    def flows_add(self, bridge: str, flows: Sequence[FlowRequest],
                  stages: Stages | None = None) -> tuple[int, int]:
        """Add a batch, all or nothing: (added, replaced). STAGES (started by the caller, e.g.
        before decoding the request) gets the time of each stage, logged at debug level."""
        stages = stages or Stages()
        with self._change(stages) as txn:
            stages.mark("lock")
            br, _dp = self.flows.bridge(bridge)
            rules = self.flows.rules(br, flows)
            stages.mark("validate")
            result = self.flows.add(br, rules, txn, stages)
        log.info("bridge %s: %d flows added, %d replaced", bridge, *result)
        log.debug("flows_add %s: %d flows; stages ms: %s", bridge, len(flows), stages)
        return result

    def flows_replace(self, bridge: str, flows: Sequence[FlowRequest]) -> tuple[int, int, int]:
        """Make the table exactly FLOWS: (added, removed, unchanged)."""
        with self._change() as txn:
            br, _dp = self.flows.bridge(bridge)
            result = self.flows.replace(br, self.flows.rules(br, flows), txn)
        log.info("bridge %s: flows replaced: %d added, %d removed, %d unchanged", bridge, *result)
        return result

    def flows_delete(self, bridge: str, match: dict[str, object] | None = None,
                     strict: bool = False, priority: int | None = None, cookie: int = 0,
                     cookie_mask: int = 0, expected_revision: int | None = None) -> int:
        """Delete by strict or loose match and/or cookie; the number deleted.
        EXPECTED_REVISION (strict only): the rule must be at it (ABORTED otherwise)."""
        if expected_revision is not None and not strict:
            raise InvalidArgument("expected_revision", expected_revision,
                                  "needs strict (one rule, its match and priority exactly)")
        with self._change() as txn:
            br, _dp = self.flows.bridge(bridge)
            m = self.flows.match(br, match) if match is not None else None
            if priority is not None:
                flow_validate.priority(priority)
            if expected_revision is not None:
                rule = br.flows.get(DEFAULT_PRIORITY if priority is None else priority,
                                    m if m is not None else Match())
                check_revision("the flow", expected_revision, rule.rule_id if rule else 0)
            deleted = self.flows.delete(br, m, strict, priority, cookie, cookie_mask, txn)
        if deleted:
            log.info("bridge %s: %d flows deleted", bridge, len(deleted))
        return len(deleted)

    def flows_add_if_absent(self, bridge: str, flow: FlowRequest) -> bool:
        """Add FLOW unless a rule with the same content exists (config re-application keeps the
        rule id and counters of an identical rule). True if it was added."""
        with self._lock:
            br, _dp = self.flows.bridge(bridge)
            rule = self.flows.rules(br, [flow])[0]
            if any(r.same_content(rule) for r in br.flows.rules()):
                return False
            self.flows_add(bridge, [flow])
            return True

    def flows_list(self, bridge: str) -> list[FlowView]:
        """Every rule with its counters and ages, highest priority first."""
        with self._lock:
            br, dp = self.flows.bridge(bridge)
            return self.flows.views(br, dp)

    def expire_flows(self) -> int:
        """Remove rules whose idle or hard timeout has passed; the number removed."""
        with self._lock:
            return self.flows.expire(self._change)

    # ---- tracing -------------------------------------------------------------------------

    def trace(self, bridge: str, packet: dict[str, object], truncate: int = 0) -> TraceReport:
        """Run the datapath program on a frame built from PACKET's exact fields (no side
        effects) and explain its decision stage by stage."""
        with self._lock:
            return self.tracing.trace(bridge, packet, truncate)

    def watch_open(self, bridge: str, port: str = "", match: dict[str, object] | None = None,
                   drops_only: bool = False) -> Session:
        """Start watching BRIDGE's live decisions that pass the filter (close the session when
        the client leaves)."""

        def names() -> tuple[dict[int, str], dict[int, int]]:
            with self._lock:
                return self.tracing.names(bridge)

        with self._lock:
            return self.tracing.watch_open(bridge, port, match, drops_only, names)

    def watch_config(self) -> dict[str, int]:
        """The switch-wide watch settings: rate_limit (events per second per CPU)."""
        return {"rate_limit": self.tracing.rate}

    def set_watch_rate(self, rate: int) -> dict[str, int]:
        """Give the datapath a new watch event rate limit and store it (it outlives restarts);
        a bad value or a failure changes nothing."""
        ratelimit.check(rate)
        with self._lock:
            txn = Txn()
            self.tracing.set_rate(rate, txn)
            try:
                self.store.set_meta(ratelimit.STORE_KEY, str(rate))
            except OSError as exc:
                txn.rollback()
                raise FailedPrecondition(
                    f"cannot write state store {self.store.path}: {exc.strerror}") from None
            txn.committed()
            return self.watch_config()

    def watch_slots(self) -> list[int]:
        """The datapath watcher slots of the open watch streams."""
        return self.tracing.slots()

    def stop_watches(self) -> None:
        """End every watch stream (daemon shutdown)."""
        self.tracing.stop()

    # ---- packet-in -----------------------------------------------------------------------

    def packet_in_open(self, bridges: Sequence[str] = ()) -> packet_in_streams.Session:
        """Start a stream of the packet-ins of BRIDGES (none: of every bridge); close the
        session when the client leaves."""

        def names() -> packet_in_streams.Names:
            with self._lock:
                return self.packet_in.names()

        with self._lock:
            return self.packet_in.open(bridges, names)

    def packet_in_config(self) -> dict[str, int]:
        """The switch-wide packet-in settings (rate_limit: packet-ins per second per CPU) and
        the datapath's counters (sent, rate_limited, ring_full, unwatched)."""
        with self._lock:
            c = self.packet_in.counters()
            return {"rate_limit": self.packet_in.rate, "sent": c.sent,
                    "rate_limited": c.rate_limited, "ring_full": c.ring_full,
                    "unwatched": c.unwatched}

    def stream_losses(self) -> dict[str, int]:
        """Events the watch and packet-in streams lost since start (queue full, datapath rate
        limit, full ring): what the metrics count."""
        with self._lock:
            return {"watch": self.tracing.lost(), "packet_in": self.packet_in.lost()}

    def set_packet_in_rate(self, rate: int) -> dict[str, int]:
        """Give the datapath a new packet-in rate limit and store it (it outlives restarts);
        a bad value or a failure changes nothing."""
        ratelimit.PACKET_IN.check(rate)
        with self._lock:
            txn = Txn()
            self.packet_in.set_rate(rate, txn)
            try:
                self.store.set_meta(ratelimit.PACKET_IN.store_key, str(rate))
            except OSError as exc:
                txn.rollback()
                raise FailedPrecondition(
                    f"cannot write state store {self.store.path}: {exc.strerror}") from None
            txn.committed()
            return self.packet_in_config()

    def stop_packet_in(self) -> None:
        """End every packet-in stream (daemon shutdown)."""
        self.packet_in.stop()

    # ---- reconciliation ------------------------------------------------------------------

    def reconcile(self) -> None:
        """Make the kernel match the stored desired state; never fails the daemon for one port."""
        with self._lock:
            self.reconciler.everything()
            self._save("container-gone")
            with self._reading_all():  # every port's state: one dump, not requests each
                self.recorder.port_states()
            self.tracing.restore_rate()
            self.packet_in.restore_rate()

    def forget_vanished_containers(self) -> list[str]:
        """Remove veth ports whose interface is gone together with a namespace vswitchd did not
        create (the container went away); each says so in the log. Returns their names."""
        with self._lock:
            gone = self.reconciler.vanished_containers()
            if gone:
                self._save("container-gone")
            return gone

    def links_changed(self) -> None:
        """The kernel changed under us (netlink events): drop the ports of vanished containers,
        re-create what can be re-created, mark the rest missing, prune stale datapath state."""
        with self._lock:
            self.reconciler.links_changed()
            self._save("container-gone")
            with self._reading_all():
                self.recorder.port_states()
            self._keep_revision()

    def port_states_changed(self, names: Iterable[str] | None = None) -> int:
        """Publish the ports whose link state changed (the link monitor saw messages about
        the links NAMES; None: look at every port)."""
        with self._lock:
            if names is not None:
                n = self.recorder.port_states(set(names))
            else:
                with self._reading_all():
                    n = self.recorder.port_states()
            self._keep_revision()
            return n

    # ---- packet-out ----------------------------------------------------------------------

    def send_packet(self, bridge: str, out_port: str = "", in_port: str = "",
                    data: bytes | None = None, packet: dict[str, object] | None = None) -> int:
        """A controller's frame out of OUT_PORT, or into the switch from IN_PORT (see
        vswitchd.switch.packetout); the bytes sent."""
        with self._lock:
            return self.packetout.send(bridge, out_port, in_port, data, packet)

    # ---- events --------------------------------------------------------------------------

    @property
    def events(self) -> EventLog:
        return self.ctx.events

    def revision(self) -> int:
        """The switch's revision: what a List call made now is consistent at."""
        with self._lock:
            return self.ctx.events.published

    def at_revision(self, read: Callable[[], T]) -> tuple[T, int]:
        """READ() and the revision it is consistent at (no change runs in between)."""
        with self._lock:
            return read(), self.ctx.events.published

    def subscribe(self, since: int | None = None, kinds: Sequence[str] = (),
                  bridges: Sequence[str] = ()) -> Subscription:
        """A cursor over the events after revision SINCE (None: from now on)."""
        with self._lock:
            return self.ctx.events.subscribe(since, kinds, bridges)

    def daemon_event(self, change: str) -> None:
        """Publish that the daemon is "ready" or "stopping"."""
        from vswitchd import __version__

        with self._lock:
            self.recorder.daemon(change, __version__)
            self._keep_revision()

    def missing_names(self) -> set[str]:
        with self._lock:
            return set(self.ctx.missing)

    def owned_links(self, names: Collection[str] | None = None
                    ) -> dict[str, tuple[str, str | None]]:
        """{ifname: (kind, bridge it belongs to)} of the interfaces vswitchd owns (NAMES: of
        those only)."""
        with self._lock:
            return self.ctx.owned_links(names)

    def snapshot(self) -> dict[str, Bridge]:
        """The desired state (the live objects: read-only, under no lock afterwards)."""
        with self._lock:
            return dict(self.ctx.bridges)

    # ---- the daemon ----------------------------------------------------------------------

    def status(self) -> StatusView:
        backends, cfg = self.ctx.backends, self.ctx.cfg
        return StatusView(time.monotonic() - self.started, backends.datapath is not None,
                          backends.unavailable, cfg.default_datapath, os.uname().release,
                          cfg.fdb_aging_seconds, self.tracing.rate)

    def set_shutdown_handler(self, handler: Callable[[bool], None]) -> None:
        """What the Shutdown RPC calls: handler(cleanup) stops the daemon after the reply."""
        self._shutdown = handler

    def request_shutdown(self, cleanup: bool) -> None:
        if self._shutdown is None:
            raise FailedPrecondition("this vswitchd instance cannot be shut down over the API")
        log.info("shutdown requested over the API%s", " with cleanup" if cleanup else "")
        self._shutdown(cleanup)

    def teardown_all(self) -> dict[str, int]:
        """Remove everything vswitchd created in the kernel (the desired state is kept)."""
        from vswitchd import cleanup

        with self._lock:
            backends = self.ctx.backends
            counts = cleanup.teardown(self.ctx.bridges, self.ctx.links, backends.datapath,
                                      self.ctx.cfg.bpffs_dir)
            backends.set_datapath(None, "the datapath was removed (cleanup)")
            return counts

