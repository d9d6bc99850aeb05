"""Metrics: the `metrics:` configuration, the switch's collector on the fakes (what a scrape
reads and how it is named), and the API interceptor over a real in-process gRPC server."""

from __future__ import annotations

import gzip
import tempfile
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import pytest
from fakes import PortCounters, make_rig
from prometheus_client import (
    CollectorRegistry,
    Enum,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd import config
from vswitchd.api.servicer import SwitchServicer
from vswitchd.config import ConfigError
from vswitchd.flows.request import from_text
from vswitchd.metrics import exposition
from vswitchd.metrics.api import ApiMetrics
from vswitchd.metrics.collector import SwitchCollector
from vswitchd.metrics.server import MetricsServer
from vswitchd.model import BridgeSpec, PortSpec


@pytest.mark.parametrize("text, address", [
    ("metrics: {address: 127.0.0.1:9476}", "127.0.0.1:9476"),
    ("metrics: {address: '[::1]:9476'}", "[::1]:9476"),
    ("metrics: {address: 'localhost:80'}", "localhost:80"),
])
def test_metrics_configuration(text, address):
    assert config.parse(text).metrics.address == address
    assert config.parse("log_level: info").metrics is None  # off unless configured


@pytest.mark.parametrize("text, says", [
    ("metrics: {address: 9476}", "metrics.address: 9476: give HOST:PORT"),
    ("metrics: {address: '127.0.0.1'}", "must be HOST:PORT"),
    ("metrics: {address: '127.0.0.1:0'}", "port in 1..65535"),
    ("metrics: {address: '127.0.0.1:99999'}", "port in 1..65535"),
    ("metrics: {address: ':9476'}", "must be HOST:PORT"),
    ("metrics:", "give HOST:PORT (e.g. 127.0.0.1:9476), or leave the metrics section out"),
    ("metrics: {port: 9476}", "unknown key 'metrics.port'"),
])
def test_bad_metrics_configuration_names_the_key(text, says):
    with pytest.raises(ConfigError) as ei:
        config.parse(text, "vswitchd.yaml")
    assert says in str(ei.value) and str(ei.value).startswith("vswitchd.yaml:1")


def scrape(rig) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SwitchCollector(rig.switch))
    return registry


def test_the_collector_reads_the_switch_at_scrape_time(monkeypatch, tmp_path):
    rig = make_rig(monkeypatch, str(tmp_path / "state"))
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.0.0.1/24"]))
    sw.create_bridge(BridgeSpec("kbr", datapath="kernel"))
    sw.create_port("br0", PortSpec("p1", netns="c1"))
    sw.create_port("kbr", PortSpec("k1", netns="c2"))
    sw.flows_add("br0", [from_text("cookie=0x42,priority=10,icmp,actions=normal"),
                         from_text("priority=5,udp,actions=drop")])
    sw.fdb_add("br0", "02:00:00:00:00:01", "p1")
    p1 = rig.links.get("p1").ifindex
    rig.dp.counters[p1] = PortCounters(3, 300, 4, 400, {"no-fdb-port": 2})
    registry = scrape(rig)
    get = registry.get_sample_value

    def port(name: str, port_: str, bridge: str = "br0") -> float | None:
        return get(f"vswitchd_port_{name}_total", {"bridge": bridge, "port": port_})

    assert (port("rx_packets", "p1"), port("rx_bytes", "p1"), port("tx_packets", "p1"),
            port("tx_bytes", "p1")) == (3, 300, 4, 400)
    assert get("vswitchd_port_drops_total",
               {"bridge": "br0", "port": "p1", "reason": "no-fdb-port"}) == 2
    rig.dp.counters[p1] = PortCounters(13, 1300, 4, 400, {})
    assert port("rx_packets", "p1") == 13  # read anew at every scrape
    assert port("rx_packets", "k1", "kbr") is not None  # kernel bridges too
    assert get("vswitchd_bridge_info", {"bridge": "kbr", "datapath": "kernel"}) == 1
    assert get("vswitchd_port_info", {"bridge": "br0", "port": "p1", "type": "veth",
                                      "xdp_mode": "off"}) == 1
    assert get("vswitchd_port_up", {"bridge": "br0", "port": "p1"}) == 1
    assert get("vswitchd_fdb_entries", {"bridge": "br0", "kind": "static"}) == 1
    rule = sw.flows_list("br0")[0].rule
    labels = {"bridge": "br0", "cookie": "0x42", "priority": "10", "rule": str(rule.rule_id)}
    assert get("vswitchd_flow_packets_total", labels) == 0
    text = generate_latest(registry).decode()
    assert 'priority="5"' not in text  # only rules with a cookie
    assert get("vswitchd_stream_events_lost_total", {"stream": "watch"}) == 0
    assert get("vswitchd_datapath_packet_ins_total", {"outcome": "rate_limited"}) == 0
    assert get("vswitchd_revision") == sw.revision()
    assert get("vswitchd_ebpf_datapath_available", {"reason": ""}) == 1


def test_the_api_interceptor_counts_calls_by_method_and_code(monkeypatch, tmp_path):
    rig = make_rig(monkeypatch, str(tmp_path / "state"))
    registry = CollectorRegistry()
    d = tempfile.mkdtemp(prefix="vswm-", dir="/tmp")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         interceptors=[ApiMetrics(registry)])
    pb_grpc.add_SwitchServicer_to_server(SwitchServicer(rig.switch), server)
    server.add_insecure_port(f"unix:{d}/s.sock")
    server.start()
    channel = grpc.insecure_channel(f"unix:{d}/s.sock")
    stub = pb_grpc.SwitchStub(channel)
    try:
        stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                stub.GetBridge(pb.GetBridgeRequest(name="nope"), timeout=10)
        events = stub.Subscribe(pb.SubscribeRequest(since_revision=0), timeout=10)
        next(events)
        events.cancel()
    finally:
        channel.close()
        server.stop(grace=1).wait()
    get = registry.get_sample_value
    switch = "vswitchd.v1.Switch"
    assert get("vswitchd_api_requests_total",
               {"service": switch, "method": "CreateBridge", "code": "OK"}) == 1
    assert get("vswitchd_api_requests_total",
               {"service": switch, "method": "GetBridge", "code": "NOT_FOUND"}) == 2
    assert get("vswitchd_api_request_duration_seconds_count",
               {"service": switch, "method": "GetBridge"}) == 2
    # a stream counts once, when it ends (here: the client cancelled it)
    stream = [s for s in registry.collect() if s.name == "vswitchd_api_requests"][0]
    subscribe = [s for s in stream.samples if s.labels.get("method") == "Subscribe"
                 and s.name.endswith("_total")]
    assert len(subscribe) == 1 and subscribe[0].value == 1


def _busy_registry(monkeypatch, tmp_path) -> CollectorRegistry:
    """The switch's collector on the fakes with ports, and every kind of family the server
    holds: counters, gauges, a histogram, an info, the process' own; odd label values."""
    rig = make_rig(monkeypatch, str(tmp_path / "state"))
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.0.0.1/24"]))
    for n in range(3):
        sw.create_port("br0", PortSpec(f"t{n}", "tap"))
    registry = CollectorRegistry()
    registry.register(SwitchCollector(sw))
    ProcessCollector(registry=registry)
    ApiMetrics(registry).requests.labels("s", 'we"ird\\va\nlue', "OK").inc(3)
    hist = Histogram("x_seconds", "A histogram\nwith a \\ in its help", ["m"],
                     registry=registry)
    hist.labels("GetBridge").observe(0.003)
    hist.labels("GetBridge").observe(12345678.5)
    Info("x_build", "Build", registry=registry).info({"version": "1.0", "ü": "ä"})
    Gauge("x_untyped_like", "A gauge", registry=registry).set(float("nan"))
    Enum("x_state", "A state set", states=["a", "b"], registry=registry).state("b")
    return registry


def test_the_exposition_is_byte_for_byte_prometheus_clients(monkeypatch, tmp_path):
    metrics = list(_busy_registry(monkeypatch, tmp_path).collect())  # once: CPU time moves

    class Collected:
        def collect(self):
            return iter(metrics)

    ours = exposition.render(Collected())
    assert ours == generate_latest(Collected())
    assert b'method="we\\"ird\\\\va\\nlue"' in ours and b"vswitchd_port_rx_packets_total" in ours


def test_the_metrics_endpoint_over_http(monkeypatch, tmp_path):
    server = MetricsServer(make_rig(monkeypatch, str(tmp_path / "state")).switch,
                           "127.0.0.1:19476")
    base = "http://127.0.0.1:19476"
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
            assert reply.headers["Content-Type"] == exposition.CONTENT_TYPE
            body = reply.read()
        assert body.startswith(b"# HELP ") and b"\nvswitchd_revision " in body
        gz = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(gz, timeout=10) as reply:
            assert reply.headers["Content-Encoding"] == "gzip"
            assert b"\nvswitchd_revision " in gzip.decompress(reply.read())
        for path, code in (("/nope", 404),):
            with pytest.raises(urllib.error.HTTPError) as ei:
                urllib.request.urlopen(f"{base}{path}", timeout=10)
            assert ei.value.code == code
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", data=b"x"),
                                   timeout=10)
        assert ei.value.code == 405
    finally:
        server.stop()
