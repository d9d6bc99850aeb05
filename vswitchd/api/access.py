"""Access control for the API: who is calling (the Unix socket they used and their uid/gid/pid,
or their client certificate on TCP), whether their role allows the RPC (vswitchd.api.roles),
and an audit line for every admin call and every refusal. A refused call never reaches the
servicer: nothing changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from vswitchd.api import audit, certnames, roles
from vswitchd.api.peers import Relay
from vswitchd.api.roles import Role
from vswitchd.config import TcpListener


@dataclass(frozen=True)
class Caller:
    role: Role | None
    who: str
    listener: str


class Identify:
    """The caller of a call, from gRPC's peer and auth context."""

    def __init__(self, relay: Relay, tcp: TcpListener | None) -> None:
        self.relay = relay
        self.tcp = tcp
        self.by_name: dict[str, Role] = {}
        for role, names in (tcp.roles if tcp else {}).items():
            for name in names:
                self.by_name[name] = role  # type: ignore[assignment]  # checked by config

    def __call__(self, context: grpc.ServicerContext) -> Caller:
        peer = context.peer()
        unix = self.relay.peer(peer)
        if unix is not None:
            return Caller(unix.role, unix.who(), f"unix:{unix.listener}")
        if self.tcp is not None and peer.startswith(("ipv4:", "ipv6:")):
            listener = f"tcp:{self.tcp.address}"
            if self.tcp.unauthenticated_clients:
                return Caller("admin", f"unauthenticated {peer}", listener)
            auth = context.auth_context()
            role = next((self.by_name[n] for n in certnames.of_peer(auth)
                         if n in self.by_name), None)
            return Caller(role, f"{certnames.subject(auth)} at {peer}", listener)
        # gRPC's private socket reached without the relay: nobody we know
        return Caller(None, peer or "unknown peer", "the private gRPC socket")


def _code_of(exc: BaseException) -> grpc.StatusCode:
    """The code of a call that EXC ended. Only the code is kept, never EXC: its traceback holds
    the handler's frame, and a reference from that frame back to EXC is a cycle that keeps the
    call's context, and so its HTTP/2 stream, alive until the garbage collector runs; 16 of
    them filled a connection (grpc.max_concurrent_streams) and it refused every further call."""
    return grpc.StatusCode.CANCELLED if isinstance(exc, GeneratorExit) else grpc.StatusCode.UNKNOWN


def _refusal(method: str, needed: Role, caller: Caller) -> str:
    if caller.role is None:
        why = ("its certificate matches no entry of tcp.roles" if caller.listener.startswith("tcp:")
               else "it did not come through one of the daemon's sockets")
        return f"{method} needs the {needed} role; {caller.who} has no role ({why})"
    return (f"{method} needs the {needed} role; {caller.who} on {caller.listener} has the "
            f"{caller.role} role")


class AccessControl(grpc.ServerInterceptor):
    def __init__(self, identify: Callable[[grpc.ServicerContext], Caller]) -> None:
        self.identify = identify

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        needed = roles.required(handler_call_details.method)
        handler = continuation(handler_call_details)
        if needed is None or handler is None:
            return handler  # health, reflection: open to every caller
        method = handler_call_details.method.rpartition("/")[2]
        identify = self.identify

        def admit(request: Any, context: grpc.ServicerContext) -> Caller:
            caller = identify(context)
            if not roles.allows(caller.role, needed):
                audit.record(method, request, "PERMISSION_DENIED", caller.role, caller.who,
                             caller.listener)
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              _refusal(method, needed, caller))
            return caller

        def audited(request: Any, context: grpc.ServicerContext, caller: Caller,
                    failed: grpc.StatusCode | None) -> None:
            """FAILED: the code of an exception that ended the call, when the call set none."""
            if needed != "admin":
                return  # a reader's call changes nothing
            code = context.code() or failed or grpc.StatusCode.OK
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            audit.record(method, request, name, caller.role, caller.who, caller.listener)

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                caller = admit(request, context)
                failed = None
                try:
                    return inner(request, context)
                except BaseException as exc:
                    failed = _code_of(exc)
                    raise
                finally:
                    audited(request, context, caller, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                caller = admit(request, context)
                failed = None
                try:
                    yield from inner_stream(request, context)
                except BaseException as exc:
                    failed = _code_of(exc)
                    raise
                finally:
                    audited(request, context, caller, failed)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        # The Switch service has no client-streaming RPC; should one appear, it is refused
        # until this interceptor checks it.
        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{method}: client streams are not access-checked")

        return grpc.stream_unary_rpc_method_handler(refuse)
