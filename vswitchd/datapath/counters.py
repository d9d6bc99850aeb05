"""Per-port counters (port_stats, one value per CPU, at the port's slot): packets and bytes
each way and drops by reason, summed over CPUs."""

from __future__ import annotations

from dataclasses import dataclass, field

from vswitchd.datapath.constants import DROP_REASON_MAX
from vswitchd.datapath.drop_reasons import reason_name


@dataclass(frozen=True)
class PortCounters:
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops: dict[str, int] = field(default_factory=dict)  # reason -> count, non-zero only
    # the port's XDP hook: frames it finished (forwarded, flooded, dropped), frames it handed
    # on to TC (then also counted by TC in the fields above)
    xdp_finished: int = 0
    xdp_handoffs: int = 0


def read(stats, xdp_stats, slot: int) -> PortCounters:
    """The counters at slot of the port_stats and xdp_stats tables."""
    per_cpu = stats[stats.Key(slot)]
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
    xdp = xdp_stats[xdp_stats.Key(slot)]
    return PortCounters(rx_p, rx_b, tx_p, tx_b, named, sum(c.finished for c in xdp),
                        sum(c.handoffs for c in xdp))
