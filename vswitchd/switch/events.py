"""What changed, as events: the desired state compared with what was last published, the ports'
link states, the learned FDB entries, and the flow rules the flow manager reports.

- Bridges, ports and static FDB entries: at every save the recorder compares the desired state
  with its snapshot of what it last published (a port's spec object is replaced on every change,
  so unchanged ports cost an identity check), reserves a revision for each difference, stamps
  the object with it (its facts, kept in the store) and publishes once the save succeeded.
- Flow rules: the flow manager reports the rules a change removed and added (a rule's id is the
  revision of its addition); the recorder adds the removals' revisions and reasons.
- Port states (up, down, missing): compared when the link monitor saw link messages and after
  a reconciliation.
- Learned FDB entries live in the datapath: the recorder compares its list with the last one
  (periodically, and before every FDB listing so that entries carry their revision): new MACs
  are learned, a MAC on another port (or VTEP) moved, a MAC gone aged (it had reached the aging
  time) or was deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vswitchd.datapath import FlowCounters
from vswitchd.events import Event, EventLog
from vswitchd.flows.model import Rule
from vswitchd.model import Bridge, Port, StaticFdb
from vswitchd.switch.bridges import BridgeManager
from vswitchd.switch.context import Context
from vswitchd.switch.ports import PortManager
from vswitchd.views import BridgeView, FdbView, FlowView, PortView

REVISION_KEY = "revision"  # state store meta: the last revision handed out
_NO_COUNTERS = FlowCounters(0, 0, 0)

# A port state's first word -> the reason of a change into it.
_STATE_REASON = {"up": "link-up", "down": "link-down", "missing:": "vanished"}


@dataclass
class _Learned:
    port: str
    remote: str
    revision: int
    age: float          # seconds since last seen, when listed
    listed: float       # clock (monotonic seconds) when listed


def _state_word(state: str) -> str:
    return state.split(" ", 1)[0]


class EventRecorder:
    def __init__(self, ctx: Context, bridges: BridgeManager, ports: PortManager) -> None:
        self.ctx = ctx
        self.log: EventLog = ctx.events
        self.bridges = bridges
        self.ports = ports
        self._pending: list[Event] = []
        self._bridges: dict[str, tuple[Bridge, tuple]] = {}
        self._ports: dict[tuple[str, str], Port] = {}
        self._specs: dict[tuple[str, str], object] = {}     # the port spec object published
        # per bridge, its ports' (port, spec) objects as published: a bridge whose ports are
        # the same objects is not looked at port by port (a change costs the same whatever
        # the number of ports)
        self._objects: dict[str, list[tuple[Port, object]]] = {}
        self._static: dict[tuple[str, int, str], StaticFdb] = {}
        self._states: dict[tuple[str, str], tuple[str, int]] = {}  # (state, ifindex)
        self._learned: dict[str, dict[tuple[int, str], _Learned]] = {}
        self._next: tuple | None = None  # the snapshot of the change being saved
        self.baseline()

    # ---- snapshots -------------------------------------------------------------------------

    @staticmethod
    def _bridge_values(br: Bridge) -> tuple:
        s = br.spec
        return (s.datapath, tuple(s.addresses), s.nat)

    @staticmethod
    def _port_objects(br: Bridge) -> list[tuple[Port, object]]:
        return [(p, p.spec) for p in br.ports.values()]

    def _snapshot(self, changed_only: bool = True) -> tuple:
        """(bridges, {bridge: its ports' objects} of those whose ports changed since published
        (all: not changed_only), static FDB entries)."""
        bridges = {b.name: (b, self._bridge_values(b)) for b in self.ctx.bridges.values()}
        objects = {}
        for name, (br, _values) in bridges.items():
            now = self._port_objects(br)
            if not changed_only or now != self._objects.get(name):  # identity first
                objects[name] = now
        static = {(b.name, f.vlan, f.mac): f for b in self.ctx.bridges.values() for f in b.fdb}
        return bridges, objects, static

    def baseline(self) -> None:
        """Take the desired state as published (at start: the store's state)."""
        self._bridges, self._objects, static = self._snapshot(changed_only=False)
        self._ports = {(name, p.name): p for name, now in self._objects.items() for p, _ in now}
        self._specs = {k: p.spec for k, p in self._ports.items()}
        self._static = dict(static)
        self._states = {}

    # ---- the change being saved ------------------------------------------------------------

    def collect(self, reason: str = "api") -> None:
        """Compare the desired state with the last published one: the differences become
        pending events, and the objects get their revisions (before the store saves them).
        REASON: why ports changed ("api", or "container-gone" for a reconciliation)."""
        bridges, objects, static = self._snapshot()
        ports: dict[tuple, Port] = {(name, p.name): p for name, now in objects.items()
                                    for p, _spec in now}
        ev = self.log.event
        out = self._pending
        for name, (br, values) in bridges.items():
            seen = self._bridges.get(name)
            if seen is None or seen[1] != values:
                if seen is None:
                    self._learned[name] = {}  # all it learns is new
                e = ev("bridge", "added" if seen is None else "changed", bridge=name)
                br.facts.revision = e.revision
                out.append(replace(e, obj=self._bridge_view(br)))
        for key, port in ports.items():
            old = self._ports.get(key)
            if old is not None and self._specs.get(key) is port.spec:
                continue
            if old is not None and old.spec == port.spec and old is not port:
                continue
            e = ev("port", "added" if old is None else "changed", bridge=key[0], reason="api")
            port.facts = replace(port.facts, revision=e.revision)
            br = self.ctx.bridges[key[0]]
            view = self.ports.view(br, port)
            self._states[key] = (view.state, view.ifindex)
            out.append(replace(e, obj=view))
        for key, entry in static.items():
            old_entry = self._static.get(key)
            if old_entry is not None and (old_entry.port, old_entry.remote) == (entry.port,
                                                                                  entry.remote):
                entry.revision = entry.revision or old_entry.revision
                continue
            e = ev("fdb", "added", bridge=key[0])
            entry.revision = e.revision
            out.append(replace(e, obj=FdbView(entry.mac, entry.port, entry.vlan, True, 0.0,
                                              entry.remote, e.revision)))
        self._flow_events()
        gone = [(name, br) for name, (br, _values) in self._bridges.items() if name not in bridges]
        for name, br in gone:  # what went with a bridge, before its ports and itself
            for f in br.flows:  # its datapath, and so the counters, went first
                out.append(replace(ev("flow", "removed", bridge=name, reason="deleted"),
                                   obj=self._flow_view(f)))
            for learned in self._learned.pop(name, {}).items():
                out.append(self._fdb_gone(name, learned, "deleted"))
        for key, entry in self._static.items():
            if key not in static:
                out.append(replace(ev("fdb", "deleted", bridge=key[0]),
                                   obj=FdbView(entry.mac, entry.port, entry.vlan, True, 0.0,
                                               entry.remote, entry.revision)))
        for name, before in self._objects.items():  # ports gone, from the bridges looked at
            if name in objects or name not in bridges:
                for port, _spec in before:
                    if (name, port.name) not in ports:
                        out.append(replace(ev("port", "removed", bridge=name,
                                              reason=reason if name in bridges else "api"),
                                           obj=self._gone_port((name, port.name), port)))
        for name, br in gone:
            out.append(replace(ev("bridge", "removed", bridge=name), obj=self._bridge_view(br)))
        self._next = (bridges, objects, static)

    def _flow_events(self) -> None:
        ev = self.log.event
        for fc in self.ctx.flow_changes:
            added = {r.ident for r in fc.added}
            for rule in fc.removed:
                why = "replaced" if rule.ident in added else \
                    (fc.reasons or {}).get(rule.rule_id, "deleted")
                self._pending.append(replace(ev("flow", "removed", bridge=fc.bridge,
                                                reason=why),
                                             obj=self._flow_view(rule, fc.counters)))
            for rule in fc.added:
                self._pending.append(Event(rule.rule_id, rule.installed_wall or
                                           self.ctx.clock.wall(), "flow", "added",
                                           bridge=fc.bridge, obj=self._flow_view(rule)))
        self.ctx.flow_changes.clear()

    def commit(self) -> None:
        """The change was saved: publish its events and take its state as published."""
        if self._next is not None:
            self._bridges, objects, static = self._next
            staying = {(name, p.name) for name, now in objects.items() for p, _spec in now}
            for name in [n for n in self._objects if n in objects or n not in self._bridges]:
                for port, _spec in self._objects.pop(name):
                    key = (name, port.name)
                    del self._ports[key], self._specs[key]
                    if key not in staying:
                        self._states.pop(key, None)
            for name, now in objects.items():
                self._objects[name] = now
                for port, spec in now:
                    key = (name, port.name)
                    self._ports[key], self._specs[key] = port, spec
            self._static = dict(static)
            self._next = None
        pending, self._pending = self._pending, []
        self.log.publish(pending)

    def discard(self) -> None:
        """The change was undone: nothing of it is published (its revisions stay unused)."""
        self._pending = []
        self._next = None
        self.ctx.flow_changes.clear()

    # ---- observed changes (published at once) ----------------------------------------------

    def port_states(self, names: set[str] | None = None) -> int:
        """Publish the ports whose state (up, down, missing) changed, and those whose interface
        was deleted and made again meanwhile (another ifindex: vanished, then restored); how
        many events. NAMES: only the ports of those names can have changed."""
        events = []
        for br, port in self.ctx.ports_named(names):  # NAMES: looked up, not walked
            key = (br.name, port.name)
            if key not in self._ports:
                continue
            view = self.ports.view(br, port)
            old = self._states.get(key)
            self._states[key] = (view.state, view.ifindex)
            if old is None:
                continue
            reasons = []
            if _state_word(old[0]) != _state_word(view.state):
                reasons.append("restored" if old[0].startswith("missing") else
                               _STATE_REASON.get(_state_word(view.state), "api"))
            elif old[1] and view.ifindex and old[1] != view.ifindex:
                reasons += ["vanished", "restored"]  # re-made between two looks
            for reason in reasons:
                e = self.log.event("port", "changed", bridge=br.name, reason=reason)
                port.facts = replace(port.facts, revision=e.revision)
                shown = view if reason != "vanished" else replace(
                    view, ifindex=old[1], state="missing: interface deleted")
                events.append(replace(e, obj=replace(shown, facts=port.facts)))
        self.log.publish(events)
        return len(events)

    def fdb(self, br: Bridge, views: list[FdbView]) -> list[FdbView]:
        """VIEWS (the bridge's FDB as listed now) with their revisions; the learned entries'
        changes since the last listing are published."""
        now = self.ctx.clock.mono_ns() / 1e9
        seen = self._learned.get(br.name)
        first = seen is None
        seen = seen if seen is not None else {}
        static = {(f.vlan, f.mac): f.revision for f in br.fdb}
        current: dict[tuple[int, str], _Learned] = {}
        out, events = [], []
        for v in views:
            key = (v.vlan, v.mac)
            if v.static:
                out.append(v.revised(static.get(key, 0)))
                continue
            old = seen.get(key)
            if old is not None and (old.port, old.remote) == (v.port, v.remote):
                rev = old.revision
            else:
                e = self.log.event("fdb", "learned" if old is None else "moved",
                                   bridge=br.name,
                                   old=None if old is None else (old.port, old.remote))
                rev = e.revision
                if not first:  # the first listing after a start adopts what is there
                    events.append(replace(e, obj=v.revised(rev)))
            current[key] = _Learned(v.port, v.remote, rev, v.age_seconds, now)
            out.append(v.revised(rev))
        aging = self.ctx.cfg.fdb_aging_seconds
        for key, old in seen.items():
            if key not in current and key not in static:
                aged = old.age + (now - old.listed) >= aging - 1
                events.append(self._fdb_gone(br.name, (key, old), "aged" if aged else "deleted"))
        self._learned[br.name] = current
        self.log.publish(events)
        return out

    def _fdb_gone(self, bridge: str, item: tuple[tuple[int, str], _Learned],
                  change: str) -> Event:
        (vlan, mac), old = item
        return replace(self.log.event("fdb", change, bridge=bridge),
                       obj=FdbView(mac, old.port, vlan, False, old.age, old.remote, old.revision))

    def daemon(self, change: str, version: str) -> None:
        self.log.publish([self.log.event("daemon", change, obj=version)])

    # ---- views of what is gone -------------------------------------------------------------

    def _flow_view(self, rule: Rule, counters: dict[int, FlowCounters] | None = None
                   ) -> FlowView:
        c = (counters or {}).get(rule.rule_id, _NO_COUNTERS)
        now = self.ctx.clock.mono_ns()
        return FlowView(rule, c, max(0, now - rule.installed_ns) / 1e9,
                        max(0, now - max(c.last_hit_ns, rule.installed_ns)) / 1e9)

    def _bridge_view(self, br: Bridge) -> BridgeView:
        info = self.ctx.links.get(br.name)
        return BridgeView(br.spec, info.ifindex if info else 0, info.mac if info else "", [],
                          br.facts.revision)

    def _gone_port(self, key: tuple[str, str], port: Port) -> PortView:
        return PortView(port.spec, key[0], 0, "removed", port.facts)
