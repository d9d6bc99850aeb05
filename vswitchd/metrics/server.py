"""The metrics HTTP listener: one registry holding the switch's collector, the API metrics,
the process' own (process_start_time_seconds, resident memory ...) and the build info."""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from vswitchd import __version__
from vswitchd.config import metrics_address
from vswitchd.errors import FailedPrecondition
from vswitchd.metrics.api import ApiMetrics
from vswitchd.metrics.collector import SwitchCollector

log = logging.getLogger(__name__)
# No `_created` series next to every counter: a third of a 1 000-port scrape, and Prometheus
# does not need them (resets show as counters going down).
disable_created_metrics()


class MetricsServer:
    """Serves /metrics until stop(). `api` is the interceptor the gRPC server takes."""

    def __init__(self, switch: Any, address: str) -> None:
        self.address = address
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        info = Gauge("vswitchd_build_info", "The running vswitchd: version, Python, kernel "
                     "(always 1)", ["version", "python", "kernel"], registry=self.registry)
        info.labels(__version__, platform.python_version(), os.uname().release).set(1)
        self.registry.register(SwitchCollector(switch))
        self.api = ApiMetrics(self.registry)
        host, port = metrics_address(address)
        try:
            self._httpd, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise FailedPrecondition(f"metrics.address {address}: cannot listen: "
                                     f"{exc.strerror or exc}") from None
        log.info("metrics served on http://%s/metrics", address)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)
