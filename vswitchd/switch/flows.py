"""Flow tables glue: a bridge's table (vswitchd.flows.table) and its copy in the datapath, kept
equal; rule ids unique across bridges; timeouts; the rules of a port that goes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from vswitchd.datapath import MAX_FLOW_ACTIONS, FlowCounters
from vswitchd.errors import FailedPrecondition, SwitchError
from vswitchd.flows import validate as flow_validate
from vswitchd.flows.batch import Stages
from vswitchd.flows.model import FlowRequest, Match, Rule
from vswitchd.flows.table import FlowTable
from vswitchd.model import Bridge
from vswitchd.seams import DatapathApi
from vswitchd.switch.context import Context, FlowChange
from vswitchd.txn import Txn
from vswitchd.views import FlowView

log = logging.getLogger(__name__)


class FlowManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Rule ids are revisions (unique across bridges, never reused): each table persists its
        # high-water mark, and revisions go on above all of them (stores older than revisions).
        ctx.events.advance(max((b.flows.next_id for b in ctx.bridges.values()), default=1) - 1)

    def bridge(self, name: str) -> tuple[Bridge, DatapathApi]:
        """The bridge and the datapath that holds its table (FailedPrecondition if none)."""
        br = self.ctx.bridge(name)
        return br, self.ctx.backend(br).programs(name, "flows")

    def rules(self, br: Bridge, flows: Sequence[FlowRequest]) -> list[Rule]:
        """Validate a batch against the bridge's ports; errors say `flow N: `."""
        ports = {br.name, *br.ports}
        present: dict[str, bool] = {}  # one netlink lookup per port, not per rule
        rules = []
        for n, req in enumerate(flows, 1):
            try:
                rule = flow_validate.flow(req, bridge=br.name, ports=ports,
                                          max_actions=MAX_FLOW_ACTIONS)
                for port in rule.ports:
                    if port not in present:
                        present[port] = self.ctx.links.get(port) is not None
                    if not present[port]:
                        why = self.ctx.missing.get(port, "interface not present")
                        raise FailedPrecondition(
                            f"port {port} is missing ({why}); its flows cannot be installed")
            except SwitchError as exc:
                raise flow_validate.numbered(exc, n) from None
            rules.append(rule)
        return rules

    def match(self, br: Bridge, match: dict[str, object]) -> Match:
        return flow_validate.match(match, bridge=br.name, ports={br.name, *br.ports})

    def sync(self, br: Bridge, stages: Stages | None = None) -> None:
        """Make the datapath's table for BR exactly br.flows (rules using a missing port are
        left out until the port is back)."""
        ifindexes: dict[str, int | None] = {}  # one netlink lookup per port, not per rule

        def ifindex(name: str) -> int | None:
            if name not in ifindexes:
                info = self.ctx.links.get(name)
                ifindexes[name] = info.ifindex if info is not None else None
            return ifindexes[name]

        rules, skipped = br.flows.to_dp_rules(ifindex)
        if skipped:
            log.warning("bridge %s: %d flows not installed: a port they use is missing",
                        br.name, len(skipped))
        if stages is not None:
            stages.mark("to_dp")
        self.ctx.backend(br).programs(br.name, "flows").flows_sync(
            self.ctx.link(br.name).ifindex, rules)

    def restore(self, br: Bridge) -> None:
        if not len(br.flows):
            return
        try:
            self.sync(br)  # same rule_ids: pinned counters keep counting
        except SwitchError as exc:
            log.error("flows of bridge %s not restored: %s", br.name, exc)

    def _alloc(self, table: FlowTable) -> Callable[[], int]:
        def alloc() -> int:
            # A rule never changes once installed: its id is the revision of its addition
            # (vswitchd.events), unique switch-wide.
            rule_id = self.ctx.events.reserve()
            table.next_id = max(table.next_id, rule_id + 1)
            return rule_id

        return alloc

    def change(self, br: Bridge, change: Callable[[FlowTable], object], txn: Txn,
               stages: Stages | None = None, reasons: dict[int, str] | None = None) -> object:
        """Apply CHANGE to the bridge's table and the datapath; the transaction's undo puts
        both back, its commit ends the table's journal. The rules it removed and added are
        recorded for the events (REASONS: rule_id -> why a rule was removed, default
        "deleted")."""
        table = br.flows
        table.begin()
        synced = False

        def restore() -> None:
            table.rollback()
            if synced:
                try:
                    self.sync(br)
                except Exception:  # noqa: BLE001 - report the original error
                    log.exception("bridge %s: could not restore the datapath's flows", br.name)

        txn.on_undo(f"restore the flow table of {br.name}", restore)
        txn.on_commit(table.commit)
        result = change(table)
        removed, added = table.journal_changes()
        if removed or added:
            self.ctx.flow_changes.append(FlowChange(br.name, removed, added, reasons,
                                                    self.final_counters(br, removed)))
        if stages is not None:
            stages.mark("table")
        self.sync(br, stages)
        synced = True
        if stages is not None:
            stages.mark("dp_sync")
        return result

    def add(self, br: Bridge, rules: list[Rule], txn: Txn,
            stages: Stages | None = None) -> tuple[int, int]:
        wall, mono = self.ctx.clock.wall(), self.ctx.clock.mono_ns()
        return self.change(  # type: ignore[return-value]
            br, lambda t: t.add(rules, self._alloc(t), round(wall, 3), mono), txn, stages)

    def replace(self, br: Bridge, rules: list[Rule], txn: Txn) -> tuple[int, int, int]:
        wall, mono = self.ctx.clock.wall(), self.ctx.clock.mono_ns()
        return self.change(  # type: ignore[return-value]
            br, lambda t: t.replace_all(rules, self._alloc(t), round(wall, 3), mono), txn)

    def delete(self, br: Bridge, match: Match | None, strict: bool, priority: int | None,
               cookie: int, cookie_mask: int, txn: Txn) -> list[Rule]:
        deleted: list[Rule] = []

        def change(table: FlowTable) -> None:
            deleted.extend(table.delete(match, strict=strict, priority=priority, cookie=cookie,
                                        cookie_mask=cookie_mask))

        if len(br.flows):
            self.change(br, change, txn)
        return deleted

    def final_counters(self, br: Bridge, rules: list[Rule]) -> dict[int, FlowCounters]:
        """The counters of RULES, read before the datapath forgets them (for the events of
        their removal); {} when the bridge has no datapath now."""
        info = self.ctx.links.get(br.name) if rules else None
        if info is None:
            return {}
        try:
            dp = self.ctx.backend(br).programs(br.name, "flows")
            return dp.flow_counters(info.ifindex, [r.rule_id for r in rules])
        except SwitchError:
            return {}

    def views(self, br: Bridge, dp: DatapathApi) -> list[FlowView]:
        """Every rule with its counters and ages, highest priority first."""
        rules = br.flows.rules()
        counters = dp.flow_counters(self.ctx.link(br.name).ifindex) if rules else {}
        now = self.ctx.clock.mono_ns()
        zero = FlowCounters(0, 0, 0)
        out = []
        for rule in rules:
            c = counters.get(rule.rule_id, zero)
            since = max(c.last_hit_ns, rule.installed_ns)
            out.append(FlowView(rule, c, max(0, now - rule.installed_ns) / 1e9,
                                max(0, now - since) / 1e9))
        return out

    def expired(self, br: Bridge) -> list[Rule]:
        """The rules whose idle or hard timeout has passed."""
        if not br.flows.has_timeouts:
            return []
        info = self.ctx.links.get(br.name)
        if info is None:
            return []
        try:
            dp = self.ctx.backend(br).programs(br.name, "flows")
        except FailedPrecondition:
            return []
        counters = dp.flow_counters(info.ifindex)

        def last_hit(rule_id: int) -> int:
            c = counters.get(rule_id)
            return c.last_hit_ns if c is not None else 0

        return br.flows.expired(self.ctx.clock.mono_ns(), last_hit)

    def remove(self, br: Bridge, rules: list[Rule], txn: Txn,
               reasons: dict[int, str] | None = None) -> None:
        self.change(br, lambda t: t.remove_rules(rules), txn, reasons=reasons)

    def expire(self, transaction: Callable[[], AbstractContextManager[Txn]]) -> int:
        """Remove the rules whose timeout passed, one transaction per bridge; how many."""
        total = 0
        now = self.ctx.clock.mono_ns()
        for br in list(self.ctx.bridges.values()):
            gone = self.expired(br)
            if not gone:
                continue
            reasons = {r.rule_id: "hard-timeout" if r.hard_timeout and
                       now - r.installed_ns >= r.hard_timeout * 10**9 else "idle-timeout"
                       for r in gone}
            try:
                with transaction() as txn:
                    self.remove(br, gone, txn, reasons)
            except SwitchError as exc:
                log.error("bridge %s: expired flows not removed: %s", br.name, exc)
                continue
            total += len(gone)
            log.info("bridge %s: %d flows expired", br.name, len(gone))
        return total

    def drop_port(self, br: Bridge, port: str) -> None:
        """Delete the rules that match on or output to PORT (before the port goes)."""
        gone = br.flows.referencing(port)
        if not gone:
            return
        counters = self.final_counters(br, gone)
        br.flows.remove_rules(gone)
        self.ctx.flow_changes.append(FlowChange(br.name, gone, [], None, counters))
        if self.ctx.links.get(br.name):
            try:
                self.sync(br)
            except SwitchError as exc:
                log.error("bridge %s: flows of port %s not removed from the datapath: %s",
                          br.name, port, exc)
        log.info("port %s: deleted %d flows of bridge %s that used it", port, len(gone), br.name)
