"""The small client library controllers (and vswctl) use to talk to vswitchd.

Only grpcio and the generated stubs are imported here: a controller runs on machines without bcc
or pyroute2.

    from vswapi import switch_pb2 as pb
    from vswapi.client import connect

    with connect() as client:                  # $VSWITCHD_SOCKET or /run/vswitchd/vswitchd.sock
        status = client.GetStatus(pb.GetStatusRequest(), timeout=5)

Every RPC of the `vswitchd.v1.Switch` service is reachable as `client.stub.<Rpc>` and, for
brevity, as `client.<Rpc>`. Errors are the usual `grpc.RpcError` with a canonical status code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from vswapi import switch_pb2_grpc
from vswapi.sockets import DEFAULT_SOCKET, SOCKET_ENV, default_socket_path

__all__ = ["DEFAULT_SOCKET", "SOCKET_ENV", "SwitchClient", "connect", "default_socket_path"]


class SwitchClient:
    """A channel to vswitchd and the `Switch` stub over it. Close it (or use `with`) when done."""

    def __init__(self, channel: grpc.Channel, target: str, socket_path: str | None = None):
        self.channel = channel
        self.target = target
        self.socket_path = socket_path
        self.stub = switch_pb2_grpc.SwitchStub(channel)

    @property
    def address(self) -> str:
        """Where the daemon is expected, for messages: the socket path, or the gRPC target."""
        return self.socket_path or self.target

    def wait_ready(self, timeout: float) -> None:
        """Block until the channel is connected; raises grpc.FutureTimeoutError after timeout."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SwitchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined on the client: forward RPC names to the stub.
        if name[:1].isupper():
            try:
                return getattr(self.__dict__["stub"], name)
            except (KeyError, AttributeError):
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"SwitchClient(target={self.target!r})"


def _socket_of(target: str) -> str | None:
    for prefix in ("unix://", "unix:"):
        if target.startswith(prefix):
            return target[len(prefix) :]
    return None


def connect(
    socket_path: str | None = None,
    target: str | None = None,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> SwitchClient:
    """Open a channel to vswitchd.

    socket_path: the daemon's Unix socket (default $VSWITCHD_SOCKET or /run/vswitchd/vswitchd.sock).
    target: any gRPC target instead (e.g. "vswitch-host:50051"); excludes socket_path.
    credentials: TLS channel credentials for a TCP target (the daemon serves TCP only with TLS).

    The channel connects lazily: an unreachable daemon shows up as UNAVAILABLE on the first call
    (or use `wait_ready`).
    """
    if socket_path and target:
        raise ValueError("give either socket_path or target, not both")
    if target is None:
        socket_path = socket_path or default_socket_path()
        target = f"unix:{socket_path}"
    else:
        socket_path = _socket_of(target)
    # a listing is as large as what it lists (gRPC's default would refuse a reply over 4 MiB:
    # some 110 000 FDB entries of a bridge), unless the caller says otherwise
    opts = list(options or [])
    if not any(key == "grpc.max_receive_message_length" for key, _ in opts):
        opts.append(("grpc.max_receive_message_length", -1))
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=opts)
    else:
        channel = grpc.insecure_channel(target, options=opts)
    return SwitchClient(channel, target, socket_path)
