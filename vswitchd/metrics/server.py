"""The metrics HTTP listener: one registry holding the switch's collector, the API metrics,
the process' own (process_start_time_seconds, resident memory ...) and the build info, served
by a small WSGI app in the text format of vswitchd.metrics.exposition."""

from __future__ import annotations

import gzip
import logging
import os
import platform
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, disable_created_metrics

from vswitchd import __version__
from vswitchd.config import metrics_address
from vswitchd.errors import FailedPrecondition
from vswitchd.metrics import exposition
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
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self._httpd = make_server(host, port, self._app,
                                      _Server6 if family == socket.AF_INET6 else _Server,
                                      _QuietHandler)
        except OSError as exc:
            raise FailedPrecondition(f"metrics.address {address}: cannot listen: "
                                     f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics served on http://%s/metrics", address)

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """GET /metrics (or /): the registry in the text format, gzipped when the client
        takes it (Prometheus does)."""
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics is served here\n"]
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        body = exposition.render(self.registry)
        headers = [("Content-Type", exposition.CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body] if environ["REQUEST_METHOD"] == "GET" else [b""]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold up the daemon's exit


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # a line per scrape is noise in the daemon's log
