"""Prometheus metrics with a real daemon and the real Prometheus server (Debian's
`prometheus`, started by the test on loopback inside the test's host namespace, where the
daemon listens): a port counter queried through Prometheus moves with traffic, and
`promtool check metrics` accepts what the daemon serves."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse

import pytest

from tests.netns.harness import NETNS_DIR, SYSTEM_PYTHON, Host

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
METRICS = "127.0.0.1:9476"   # inside the test's host namespace: no clash with the machine's
PROM = "127.0.0.1:9490"


def http_get(host: Host, url: str) -> str:
    res = host.run_in(host.ns, SYSTEM_PYTHON, "-c",
                      "import sys, urllib.request; "
                      "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10)"
                      ".read().decode())", url)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def prometheus(host, tmp_path):
    """Prometheus scraping the daemon every second; stopped by PID whatever happens."""
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "vswitchd", "static_configs": [
            {"targets": [METRICS]}]}]}))
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR}/{host.ns}", PROMETHEUS, f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={PROM}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def query(host: Host, promql: str) -> list[dict]:
    url = f"http://{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = json.loads(http_get(host, url))
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_prometheus_sees_a_port_counter_move_with_traffic(host, tmp_path, prometheus):
    cfg = tmp_path / "vswitchd.yaml"
    cfg.write_text(f"metrics: {{address: {METRICS}}}\n")
    host.start("--config", str(cfg))
    host.vswctl("add-br", "br0", "--ip", "10.41.0.1/24")
    c1 = host.name("c1")
    host.vswctl("add-port", "br0", "c1", "--netns", c1, "--ip", "10.41.0.11/24")
    host.vswctl("add-flow", "br0", "cookie=0x42,priority=10,icmp,actions=normal")
    promql = 'vswitchd_port_rx_packets_total{bridge="br0",port="c1"}'

    def value() -> float | None:
        got = query(host, promql)
        return float(got[0]["value"][1]) if got else None

    assert wait_for(lambda: value() is not None), "Prometheus never scraped the port counter"
    before = value() or 0.0
    assert host.ping(c1, "10.41.0.1", count=5)
    after = wait_for(lambda: (value() or 0) >= before + 5 and value())
    assert after is not None and after >= before + 5, (before, after)
    # the rule with a cookie counted the echo requests, seen through Prometheus too (waited
    # for: the scrape that saw the port move may have come between two of the pings)
    def rule() -> float:
        got = query(host, 'vswitchd_flow_packets_total{bridge="br0",cookie="0x42"}')
        return float(got[0]["value"][1]) if got else 0.0

    assert wait_for(lambda: rule() >= 5), rule()
    up = query(host, 'up{job="vswitchd"}')
    assert up and up[0]["value"][1] == "1"
    # and the API calls above, by method and code
    calls = query(host, 'vswitchd_api_requests_total{method="CreatePort",code="OK"}')
    assert calls and float(calls[0]["value"][1]) == 1

    text = http_get(host, f"http://{METRICS}/metrics")
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check


def test_metrics_address_in_use_is_a_clear_start_error(host, tmp_path):
    """The configured address taken: the daemon exits 1 and says which address, and why."""
    holder = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR}/{host.ns}", SYSTEM_PYTHON, "-c",
         "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 9476)); "
         "s.listen(); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        cfg = tmp_path / "vswitchd.yaml"
        cfg.write_text(f"metrics: {{address: {METRICS}}}\n")
        with pytest.raises(RuntimeError, match="exited with 1") as ei:
            host.start("--config", str(cfg), timeout=60)
        assert f"metrics.address {METRICS}: cannot listen: Address already in use" in \
            str(ei.value)
    finally:
        holder.kill()
        holder.wait()
