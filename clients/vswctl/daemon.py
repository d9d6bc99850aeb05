"""vswctl's connection to vswitchd: `daemon.stub.<Rpc>(request, timeout=t)` for every RPC of
the Switch service, as on grpcio's stub.

Unary RPCs go over `vswctl.unary`, without importing grpcio; the streaming ones (Watch,
Subscribe, SubscribePacketIn) open a grpcio channel, imported by them only. Either way a call
that fails raises `unary.CallError` with the call's status code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from vswapi import switch_pb2 as pb
from vswctl.unary import CallError, Code, Connection

SERVICE = pb.DESCRIPTOR.services_by_name["Switch"]


class Daemon:
    """The daemon at a Unix socket; connects on the first call. Close it when done."""

    def __init__(self, socket_path: str):
        self.address = socket_path
        self.unary = Connection(socket_path)
        self._grpc: Any = None  # vswapi.client.SwitchClient, opened by the first stream
        self.stub = _Stub(self)

    def grpc_stub(self) -> Any:
        if self._grpc is None:
            from vswapi.client import connect

            self._grpc = connect(socket_path=self.address)
        return self._grpc.stub

    def close(self) -> None:
        self.unary.close()
        if self._grpc is not None:
            self._grpc.close()


class _Stub:
    """The service's RPCs by name; each is made on first use from the service descriptor."""

    def __init__(self, daemon: Daemon):
        self._daemon = daemon

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = SERVICE.methods_by_name.get(name)
        if method is None:
            raise AttributeError(f"the Switch service has no RPC {name!r}")
        rpc = (_streaming(self._daemon, name) if method.server_streaming or method.client_streaming
               else _unary(self._daemon.unary, f"/{SERVICE.full_name}/{name}",
                           GetMessageClass(method.output_type)))
        setattr(self, name, rpc)
        return rpc


def _unary(connection: Connection, path: str, reply: type[Message]) -> Callable[..., Message]:
    def call(request: Message, timeout: float | None = None) -> Message:
        return reply.FromString(connection.call(path, request.SerializeToString(), timeout))

    return call


def _streaming(daemon: Daemon, name: str) -> Callable[..., _Stream]:
    def start(request: Message, timeout: float | None = None) -> _Stream:
        return _Stream(getattr(daemon.grpc_stub(), name)(request, timeout=timeout))

    return start


class _Stream:
    """A grpcio stream whose failures are CallErrors, like the unary calls'."""

    def __init__(self, call: Any):
        self._call = call

    def __iter__(self) -> Iterator[Message]:
        import grpc

        try:
            yield from self._call
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]  # the call is also a grpc.Call
            raise CallError(Code[code.name] if code is not None else Code.UNKNOWN,
                            exc.details() or "") from None  # type: ignore[attr-defined]

    def cancel(self) -> None:
        self._call.cancel()
