"""Access control for the API: who is calling (the Unix socket they used and their uid/gid/pid,
or their client certificate on TCP), whether their role allows the RPC (vswitchd.api.roles),
and an audit line for every admin call and every refusal. A refused call never reaches the
servicer: nothing changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from vswitchd.api import audit, certnames, intercept, roles
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

        @contextmanager
        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[None]:
            caller = admit(request, context)
            if needed != "admin":  # a reader's call changes nothing: no audit line
                yield
                return
            with intercept.on_end(context, lambda code: audit.record(
                    method, request, code, caller.role, caller.who, caller.listener)):
                yield

        wrapped = intercept.wrap(handler, guarded)
        if wrapped is not None:
            return wrapped
        # The Switch service has no client-streaming RPC; should one appear, it is refused
        # until this interceptor checks it.
        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{method}: client streams are not access-checked")

        return grpc.stream_unary_rpc_method_handler(refuse)
