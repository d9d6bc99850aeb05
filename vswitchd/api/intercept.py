"""What the API's server interceptors (access control, metrics) share: a method handler whose
calls each run inside a context of the interceptor's, and the status code a call ended with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import grpc

Around = Callable[[Any, grpc.ServicerContext], AbstractContextManager[Any]]


def wrap(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler | None:
    """HANDLER with each unary or server-streaming call run inside AROUND(request, context)
    (a stream's whole life); None for client and bidirectional streams, which the interceptor
    decides about."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with around(request, context):
                return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with around(request, context):
                yield from inner_stream(request, context)

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    return None


@contextmanager
def on_end(context: grpc.ServicerContext, record: Callable[[str], None]) -> Iterator[None]:
    """Run the call inside, then RECORD the name of the code it ended with: the one the servicer
    set (abort), else OK, CANCELLED for a stream its client left, UNKNOWN for an escaped
    exception.

    Only a code is kept here, never the exception: its traceback holds this frame, and a
    reference from the frame back to it would be a cycle that keeps the call's context, and so
    its HTTP/2 stream, alive until the garbage collector runs. Sixteen of those filled a
    connection (grpc.max_concurrent_streams) and it refused every further call."""
    failed = None
    try:
        yield
    except GeneratorExit:
        failed = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        failed = grpc.StatusCode.UNKNOWN
        raise
    finally:
        code = context.code() or failed or grpc.StatusCode.OK
        record(code.name if isinstance(code, grpc.StatusCode) else str(code))
