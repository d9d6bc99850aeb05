"""The switch's metrics, read when Prometheus scrapes: the same reads as the API's listings
(port counters from the datapath's per-CPU maps, flow counters, the FDB), so the forwarding
path does no work for them. A bridge deleted during a scrape is left out of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vswitchd.errors import SwitchError

_PORT_COUNTERS = (("rx_packets", "Frames the port received"),
                  ("rx_bytes", "Bytes the port received"),
                  ("tx_packets", "Frames the port sent"),
                  ("tx_bytes", "Bytes the port sent"))


class SwitchCollector(Collector):
    def __init__(self, switch: Any) -> None:
        self.switch = switch

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration: the switch may not be ready yet

    def collect(self) -> Iterator[Metric]:
        with self.switch.reading():  # one dump of the links for the whole scrape
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        sw = self.switch
        status = sw.status()
        ebpf = GaugeMetricFamily("vswitchd_ebpf_datapath_available",
                                 "1 when the eBPF datapath is loaded (reason: why it is not)",
                                 labels=["reason"])
        ebpf.add_metric([status.ebpf_unsupported_reason], 1 if status.ebpf_supported else 0)
        yield ebpf
        revision = GaugeMetricFamily("vswitchd_revision",
                                     "The switch-wide revision: changes made since the store "
                                     "was created")
        revision.add_metric([], sw.revision())
        yield revision

        bridges = GaugeMetricFamily("vswitchd_bridge_info", "A bridge and its datapath "
                                    "(always 1)", labels=["bridge", "datapath"])
        ports = GaugeMetricFamily("vswitchd_port_info", "A port, its type and the XDP mode it "
                                  "got (always 1)", labels=["bridge", "port", "type", "xdp_mode"])
        up = GaugeMetricFamily("vswitchd_port_up", "1 when the port's interface is up with a "
                               "carrier", labels=["bridge", "port"])
        counters = {key: CounterMetricFamily(f"vswitchd_port_{key}", text,
                                             labels=["bridge", "port"])
                    for key, text in _PORT_COUNTERS}
        drops = CounterMetricFamily("vswitchd_port_drops", "Frames dropped on entering the "
                                    "port, by reason", labels=["bridge", "port", "reason"])
        fdb = GaugeMetricFamily("vswitchd_fdb_entries", "Forwarding database entries, learned "
                                "and static", labels=["bridge", "kind"])
        flow_packets = CounterMetricFamily(
            "vswitchd_flow_packets", "Frames a flow rule with a cookie matched",
            labels=["bridge", "cookie", "priority", "rule"])
        flow_bytes = CounterMetricFamily(
            "vswitchd_flow_bytes", "Bytes of the frames a flow rule with a cookie matched",
            labels=["bridge", "cookie", "priority", "rule"])
        for br in sw.list_bridges():
            name = br.spec.name
            bridges.add_metric([name, br.spec.datapath], 1)
            for p in br.ports:
                ports.add_metric([name, p.spec.name, p.spec.type, p.xdp_mode], 1)
                up.add_metric([name, p.spec.name], 1 if p.state == "up" else 0)
            try:
                stats = sw.port_stats(name)
                entries = sw.fdb_list(name)
                flows = sw.flows_list(name) if br.spec.datapath == "ebpf" else []
            except SwitchError:
                continue  # deleted (or its datapath gone) meanwhile
            for s in stats:
                for key, family in counters.items():
                    family.add_metric([name, s.port], getattr(s, key))
                for reason, count in sorted(s.drops_by_reason.items()):
                    drops.add_metric([name, s.port, reason], count)
            static = sum(1 for e in entries if e.static)
            fdb.add_metric([name, "learned"], len(entries) - static)
            fdb.add_metric([name, "static"], static)
            for f in flows:
                if f.rule.cookie:
                    labels = [name, f"{f.rule.cookie:#x}", str(f.rule.priority),
                              str(f.rule.rule_id)]
                    flow_packets.add_metric(labels, f.counters.packets)
                    flow_bytes.add_metric(labels, f.counters.bytes)
        yield from (bridges, ports, up, *counters.values(), drops, fdb, flow_packets,
                    flow_bytes)

        lost = CounterMetricFamily("vswitchd_stream_events_lost", "Events the watch and "
                                   "packet-in streams lost (slow reader, datapath rate limit, "
                                   "full ring)", labels=["stream"])
        for stream, count in sw.stream_losses().items():
            lost.add_metric([stream], count)
        yield lost
        if status.ebpf_supported:
            packet_in = CounterMetricFamily("vswitchd_datapath_packet_ins", "The datapath's "
                                            "packet-ins by outcome", labels=["outcome"])
            config = sw.packet_in_config()
            for outcome in ("sent", "rate_limited", "ring_full", "unwatched"):
                packet_in.add_metric([outcome], config[outcome])
            yield packet_in
