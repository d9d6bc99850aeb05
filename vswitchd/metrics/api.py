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
        """Count and time the call made inside: its code is the one the servicer set (abort),
        else OK, CANCELLED for a stream its client left, UNKNOWN for an escaped exception."""
        t0, failed = time.perf_counter(), None
        try:
            yield
        except BaseException as exc:
            failed = exc
            raise
        finally:
            code = context.code()
            if code is None:
                code = (grpc.StatusCode.CANCELLED if isinstance(failed, GeneratorExit) else
                        grpc.StatusCode.UNKNOWN if failed is not None else grpc.StatusCode.OK)
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            self.requests.labels(service, method, name).inc()
            self.seconds.labels(service, method).observe(time.perf_counter() - t0)

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        timed = self._timed
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                with timed(service, method, context):
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with timed(service, method, context):
                    yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler  # client and bidirectional streams (reflection): not counted
