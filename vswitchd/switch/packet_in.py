"""Packet-in glue: the streams of frames that rules' controller actions send (SubscribePacketIn),
the switch-wide packet-in rate limit and the datapath's packet-in counters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from vswitchd.datapath.packet_in import ALL_BRIDGES, PacketInCounters
from vswitchd.errors import FailedPrecondition, ResourceExhausted, SwitchError, clip
from vswitchd.flows.model import Match
from vswitchd.seams import DatapathApi
from vswitchd.switch.context import Context
from vswitchd.trace import ratelimit
from vswitchd.trace.packet_in import BridgeNames, Namer, Names, PacketInHub, Session
from vswitchd.txn import Txn

log = logging.getLogger(__name__)

RATE = ratelimit.PACKET_IN
# Streams open at once (all bridges together): each holds one of the API's threads
# (vswitchd.api.server.WORKERS), which watch and Subscribe streams share under caps of their own.
MAX_STREAMS = 8


class PacketInManager:
    def __init__(self, ctx: Context, rate: int) -> None:
        self.ctx = ctx
        self.rate = rate  # packet-ins per second per CPU: the stored value
        self._hub: PacketInHub | None = None
        self._lost_before = 0  # lost by the streams of hubs replaced since
        self._seq = 0

    def subscription(self, bridges: Sequence[str]) -> tuple[DatapathApi, frozenset[int], str]:
        """The datapath and the subscription keys of BRIDGES (none: every bridge), and a label
        for the log. NotFound for a bridge that does not exist, FailedPrecondition for one of
        the kernel datapath (no flow tables, no packet-ins) or without the eBPF datapath."""
        ctx = self.ctx
        if not bridges:
            return ctx.backends.ebpf_datapath(), frozenset({ALL_BRIDGES}), "every bridge"
        dp = None
        keys = set()
        for name in dict.fromkeys(bridges):  # once each, in order
            br = ctx.bridge(name)
            dp = ctx.backend(br).programs(name, "packet-in")
            keys.add(ctx.link(name).ifindex)
        assert dp is not None
        return dp, frozenset(keys), " ".join(clip(b) for b in dict.fromkeys(bridges))

    def names(self) -> Names:
        """Every eBPF bridge present: its name, ports by ifindex, and its rules' cookies and
        whether each is the table-miss rule (priority 0, empty match)."""
        out: Names = {}
        for br in self.ctx.bridges.values():
            info = self.ctx.links.get(br.name)
            if info is None or br.datapath == "kernel":
                continue
            rules = {r.rule_id: (r.cookie, r.priority == 0 and r.match == Match())
                     for r in br.flows}
            out[info.ifindex] = BridgeNames(br.name, self.ctx.port_names(br), rules)
        return out

    def _packet_in_hub(self, dp: DatapathApi) -> PacketInHub:
        if self._hub is None or self._hub.dp is not dp:
            if self._hub is not None:  # a new datapath (upgrade): its losses carry on
                self._lost_before += self._hub.lost_total()
            self._hub = PacketInHub(dp)
        return self._hub

    def lost(self) -> int:
        """Events the streams lost since the daemon started (the metrics' counter)."""
        return self._lost_before + (self._hub.lost_total() if self._hub is not None else 0)

    def open(self, bridges: Sequence[str], names: Callable[[], Names]) -> Session:
        """Start a stream of BRIDGES' packet-ins (none: every bridge's); close the session when
        the client leaves. NAMES looks up names, cookies and table-miss rules as they
        change."""
        dp, keys, what = self.subscription(bridges)
        if self.streams() >= MAX_STREAMS:
            raise ResourceExhausted(
                f"{MAX_STREAMS} packet-in streams are open, the most vswitchd allows at once: "
                "end one and try again (one stream can take several bridges, or all)")
        self._seq += 1
        stream = self._packet_in_hub(dp).open(keys, label=f"#{self._seq} {what}")
        return Session(stream, Namer(names))

    def counters(self) -> PacketInCounters:
        """The datapath's counters (zeros without a datapath)."""
        try:
            return self.ctx.backends.ebpf_datapath().packet_in_counters()
        except FailedPrecondition:
            return PacketInCounters()

    def set_rate(self, rate: int, txn: Txn) -> None:
        dp = self.ctx.backends.ebpf_datapath()
        old = self.rate
        txn.step("set the datapath's packet-in rate", lambda: dp.packet_in_set_rate(rate),
                 lambda: dp.packet_in_set_rate(old))
        txn.step("remember the packet-in rate", lambda: setattr(self, "rate", rate),
                 lambda: setattr(self, "rate", old))
        log.info("packet-in rate limit: %d %s (was %d)", rate, RATE.unit, old)

    def restore_rate(self) -> None:
        """A new datapath instance starts at its default: give it the stored limit."""
        if self.rate == RATE.limits()[0]:
            return
        try:
            self.ctx.backends.ebpf_datapath().packet_in_set_rate(self.rate)
        except FailedPrecondition:
            pass  # no datapath: nothing to give it
        except SwitchError as exc:
            log.error("the packet-in rate limit %d could not be restored: %s", self.rate, exc)

    def streams(self) -> int:
        return self._hub.streams() if self._hub is not None else 0

    def stop(self) -> None:
        """End every packet-in stream (daemon shutdown)."""
        if self._hub is not None:
            self._hub.close_all()
