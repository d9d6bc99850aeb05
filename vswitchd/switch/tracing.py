"""Tracing glue: `trace` (one dry run of the real program, explained stage by stage) and `watch`
(live decisions streamed through the datapath's filters), and the switch-wide watch rate."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from vswitchd.datapath import WatchFilter
from vswitchd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SwitchError,
    clip,
)
from vswitchd.flows import validate as flow_validate
from vswitchd.model import Bridge
from vswitchd.seams import DatapathApi
from vswitchd.switch.context import Context
from vswitchd.switch.tunnels import TUNNEL_TYPES
from vswitchd.trace import frames, ratelimit
from vswitchd.trace.packet import filter_fields, frame_spec, packet_match
from vswitchd.trace.report import TraceReport, build_report, through_hooks
from vswitchd.trace.watch import Namer, Session, WatchHub
from vswitchd.txn import Txn

log = logging.getLogger(__name__)

Names = tuple[dict[int, str], dict[int, int]]  # ifindex -> port name, rule id -> cookie


class TraceManager:
    def __init__(self, ctx: Context, rate: int) -> None:
        self.ctx = ctx
        self.rate = rate  # watch events per second per CPU: the stored value
        self._hub: WatchHub | None = None
        self._lost_before = 0  # lost by the streams of hubs replaced since
        self._seq = 0

    def bridge(self, name: str) -> tuple[Bridge, DatapathApi]:
        br = self.ctx.bridge(name)
        return br, self.ctx.backend(br).programs(name, "trace")

    def trace(self, bridge: str, packet: dict[str, object], truncate: int = 0) -> TraceReport:
        """Run the datapath program on a frame built from PACKET's exact fields (no side
        effects) and explain its decision stage by stage."""
        ctx = self.ctx
        br, dp = self.bridge(bridge)
        m = packet_match(packet, bridge=br.name, ports={br.name, *br.ports})
        in_port = str(m.in_port)  # packet_match requires it
        info = ctx.links.get(in_port)
        if info is None:
            why = ctx.missing.get(in_port, "interface not present")
            raise FailedPrecondition(f"port {in_port} is missing ({why}); it cannot be traced")
        whole = frames.build(frame_spec(m))
        frame = frames.build(frame_spec(m, truncate)) if truncate else whole
        try:
            results = dp.trace_hooks(frame, info.ifindex, egress=in_port == br.name)
        except OSError as exc:
            if exc.errno != errno.EINVAL or len(frame) == len(whole):
                raise
            raise InvalidArgument(
                "truncate", truncate,
                f"the kernel's BPF_PROG_TEST_RUN refuses this frame cut to {len(frame)} "
                "bytes (it needs the whole IP header: 34 bytes for IPv4, 54 for IPv6); "
                "cut it later, or send it for real and see `vswctl drops`") from None
        names, port_vlan = ctx.port_names(br), ctx.backend(br).port_vlan(in_port)
        rules = {r.rule_id: r for r in br.flows}
        return through_hooks([
            build_report(bridge=br.name, in_port=in_port, result=result, names=names,
                         rule=rules.get(result.rule_id), n_rules=len(br.flows),
                         length=len(frame), truncated=len(frame) < len(whole),
                         port_vlan=port_vlan, frame_vid=m.dl_vlan,
                         tunnels=self.tunnels(br, names))
            for result in results])

    @staticmethod
    def tunnels(br: Bridge, names: dict[int, str]) -> dict[int, tuple[int, tuple[str, ...]]]:
        """ifindex -> (VNI, remote VTEPs) of the bridge's tunnel ports present."""
        return {i: (br.ports[n].spec.vni, tuple(br.ports[n].spec.remotes))
                for i, n in names.items() if n in br.ports and br.ports[n].type in TUNNEL_TYPES}

    def names(self, bridge: str) -> Names:
        br = self.ctx.bridge(bridge)
        return self.ctx.port_names(br), {r.rule_id: r.cookie for r in br.flows}

    def _watch_hub(self, dp: DatapathApi) -> WatchHub:
        if self._hub is None or self._hub.dp is not dp:
            if self._hub is not None:  # a new datapath (upgrade): its losses carry on
                self._lost_before += self._hub.lost_total()
            self._hub = WatchHub(dp)
        return self._hub

    def lost(self) -> int:
        """Events the streams lost since the daemon started (the metrics' counter)."""
        return self._lost_before + (self._hub.lost_total() if self._hub is not None else 0)

    def watch_open(self, bridge: str, port: str, match: dict[str, object] | None,
                   drops_only: bool, names: Callable[[], Names]) -> Session:
        """Start watching BRIDGE's live decisions that pass the filter (close the session when
        the client leaves). NAMES looks up port names and cookies as they change."""
        ctx = self.ctx
        br, dp = self.bridge(bridge)
        ports = {br.name, *br.ports}
        if port and port not in ports:
            raise NotFound(f"port {clip(port)} does not exist on bridge {bridge}")
        m = flow_validate.match(match or {}, bridge=br.name, ports=ports)
        if port and m.in_port is not None and m.in_port != port:
            raise InvalidArgument("in_port", m.in_port,
                                  f"contradicts the watched port {port} (give one of them)")
        in_port_name = port or m.in_port or ""
        in_port, fields = filter_fields(m._replace(in_port=in_port_name or None),
                                        lambda n: ctx.link(n).ifindex)
        flt = WatchFilter(bridge=ctx.link(br.name).ifindex, in_port=in_port, fields=fields,
                          drops_only=drops_only)
        self._check_room()
        self._seq += 1
        label = " ".join(x for x in (
            f"#{self._seq} {bridge}", in_port_name and f"port {in_port_name}",
            m.to_ofctl() and f"match {m.to_ofctl()}", drops_only and "drops") if x)
        stream = self._watch_hub(dp).open(flt, label=label)
        return Session(stream, Namer(bridge, names))

    def _check_room(self) -> None:
        """ResourceExhausted when the configured number of watch streams is open."""
        most = self.ctx.cfg.watch.max_watchers
        if len(self.slots()) >= most:
            raise ResourceExhausted(
                f"{most} watch streams are open, the most vswitchd allows at once "
                f"(watch.max_watchers in its configuration): end one (Ctrl-C) and try again")

    def set_rate(self, rate: int, txn: Txn) -> None:
        dp = self.ctx.backends.ebpf_datapath()
        old = self.rate
        txn.step("set the datapath's watch rate", lambda: dp.watch_set_rate(rate),
                 lambda: dp.watch_set_rate(old))
        txn.step("remember the watch rate", lambda: setattr(self, "rate", rate),
                 lambda: setattr(self, "rate", old))
        log.info("watch rate limit: %d %s (was %d)", rate, ratelimit.UNIT, old)

    def restore_rate(self) -> None:
        """A new datapath instance starts at its default: give it the stored limit."""
        if self.rate == ratelimit.limits()[0]:
            return
        try:
            self.ctx.backends.ebpf_datapath().watch_set_rate(self.rate)
        except FailedPrecondition:
            pass  # no datapath: nothing to give it
        except SwitchError as exc:
            log.error("the watch rate limit %d could not be restored: %s", self.rate, exc)

    def slots(self) -> list[int]:
        """The datapath watcher slots of the open watch streams."""
        return self._hub.active_slots() if self._hub is not None else []

    def stop(self) -> None:
        """End every watch stream (daemon shutdown)."""
        if self._hub is not None:
            self._hub.close_all()
