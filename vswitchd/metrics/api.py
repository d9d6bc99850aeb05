"""The API's requests as metrics, in the conventions of go-grpc-prometheus: requests by
service, method and status code when they end (a stream when it closes), and a latency
histogram by method. The interceptor only times and counts; it never changes a call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from vswitchd.api.intercept import on_end, wrap

# Unary calls take 1 ms (a Get) to seconds (add-port into a new namespace, a bridge with
# 1 000 ports deleted); streams last as long as their client.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)


class ApiMetrics(grpc.ServerInterceptor):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "vswitchd_api_requests", "API calls that ended, by service, method and status code",
            ["service", "method", "code"], registry=registry)
        self.seconds = Histogram(
            "vswitchd_api_request_duration_seconds", "How long API calls took, by method",
            ["service", "method"], buckets=BUCKETS, registry=registry)

    @contextmanager
    def _timed(self, service: str, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        """Count and time the call made inside, by the code it ended with."""
        t0 = time.perf_counter()

        def record(code: str) -> None:
            self.requests.labels(service, method, code).inc()
            self.seconds.labels(service, method).observe(time.perf_counter() - t0)

        with on_end(context, record):
            yield

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        wrapped = wrap(handler, lambda _request, context: self._timed(service, method, context))
        return wrapped or handler  # client and bidirectional streams (reflection): not counted
