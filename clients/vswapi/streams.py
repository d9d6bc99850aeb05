"""The daemon's streams as iterators that survive the daemon going away.

- EventStream yields pb.Event. It remembers the revision of the last event and, when the
  connection drops (the daemon restarts, UNAVAILABLE), reconnects with backoff and resumes
  with since_revision = that revision: nothing is missed while the daemon still holds the
  events. When it does not (OUT_OF_RANGE: too old, or the daemon's store was reset), it calls
  on_resync() (which re-reads what the controller needs and returns the revision to go on
  from) or raises vswapi.errors.ResyncNeeded. Gaps are never hidden: an event whose `lost` is
  set says which revisions this client missed because it read too slowly.
- PacketInStream yields pb.PacketIn; WatchStream pb.WatchEvent. Neither has revisions: after a
  reconnection they go on with what comes next; a Lost(count) says frames or events were lost.

Each stream is read by one thread; close() (from any thread) ends it: the iteration stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from vswapi import switch_pb2 as pb
from vswapi.errors import ResyncNeeded, from_rpc_error

if TYPE_CHECKING:
    from vswapi.controller import Switch

BACKOFF_FIRST = 0.1
BACKOFF_MOST = 2.0
# What a daemon that stops or restarts looks like to a stream (CANCELLED: the server ended
# the call as it shut down; we tell our own cancel apart by `closed`).
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                             grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


@dataclass(frozen=True)
class Lost:
    """COUNT packet-ins (or watch events) for this stream were lost (the datapath's rate limit,
    its full ring, or a reader slower than the traffic)."""

    count: int


class _Stream:
    def __init__(self, switch: Switch, reconnect: bool) -> None:
        self.switch = switch
        self.reconnect = reconnect
        self.closed = False
        self.reconnects = 0
        self._call: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._iter: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def __next__(self) -> Any:
        return next(iter(self))

    def close(self) -> None:
        with self._lock:
            self.closed = True
            call = self._call
        self._wake.set()
        if call is not None:
            call.cancel()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, rpc: str, request: Any) -> Any:
        with self._lock:
            if self.closed:
                return None
            self._call = getattr(self.switch.client.stub, rpc)(request)
            return self._call

    def _pause(self, backoff: float) -> float:
        """Wait before reconnecting (close() cuts it short); the next backoff."""
        self._wake.wait(backoff)
        self.reconnects += 1
        return min(backoff * 2, BACKOFF_MOST)

    def _run(self) -> Iterator[Any]:
        raise NotImplementedError

    def _messages(self, rpc: str, request: Callable[[], Any],
                  on_error: Callable[[grpc.RpcError], None] | None = None) -> Iterator[Any]:
        """Every message of RPC, reconnecting as configured. ON_ERROR may handle an error (and
        return to retry) or raise."""
        backoff = BACKOFF_FIRST
        while not self.closed:
            call = self._open(rpc, request())
            if call is None:
                return
            try:
                for msg in call:
                    backoff = BACKOFF_FIRST
                    yield msg
            except grpc.RpcError as exc:
                if self.closed:
                    return
                if exc.code() not in RECONNECT_CODES or not self.reconnect:
                    if on_error is not None:
                        on_error(exc)
                        continue
                    raise from_rpc_error(exc) from None
            if not self.reconnect or self.closed:
                return
            backoff = self._pause(backoff)


class EventStream(_Stream):
    """Subscribe's events; `revision` is the last one seen (resume from it)."""

    def __init__(self, switch: Switch, bridges: list[str], kinds: list[int],
                 since_revision: int | None, reconnect: bool,
                 on_resync: Callable[[], int] | None) -> None:
        super().__init__(switch, reconnect)
        self.bridges = bridges
        self.kinds = kinds
        self.revision = since_revision
        self.on_resync = on_resync

    def _request(self) -> pb.SubscribeRequest:
        return pb.SubscribeRequest(bridges=self.bridges, kinds=self.kinds,
                                   since_revision=self.revision)

    def _resync(self, exc: grpc.RpcError) -> None:
        if exc.code() != grpc.StatusCode.OUT_OF_RANGE:
            raise from_rpc_error(exc) from None
        if self.on_resync is None:
            raise ResyncNeeded(exc.details() or "cannot resume", exc.code())
        self.revision = self.on_resync()

    def _start_revision(self) -> int:
        """The daemon's revision now (a stream from now on must resume from it too)."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                return self.switch.list_bridges().revision
            except Exception as exc:  # noqa: BLE001 - retried below when reconnecting
                if self.closed or not self.reconnect or \
                        getattr(exc, "code", None) != grpc.StatusCode.UNAVAILABLE:
                    raise
            backoff = self._pause(backoff)

    def _run(self) -> Iterator[pb.Event]:
        if self.revision is None:
            self.revision = self._start_revision()
        for msg in self._messages("Subscribe", self._request, self._resync):
            self.revision = msg.revision
            yield msg


class PacketInStream(_Stream):
    def __init__(self, switch: Switch, bridges: list[str], reconnect: bool) -> None:
        super().__init__(switch, reconnect)
        self.request = pb.PacketInRequest(bridges=bridges)

    def _run(self) -> Iterator[pb.PacketIn | Lost]:
        for msg in self._messages("SubscribePacketIn", lambda: self.request):
            yield Lost(msg.lost) if msg.WhichOneof("kind") == "lost" else msg.packet


class WatchStream(_Stream):
    def __init__(self, switch: Switch, request: pb.WatchRequest, reconnect: bool) -> None:
        super().__init__(switch, reconnect)
        self.request = request

    def _run(self) -> Iterator[pb.WatchEvent | Lost]:
        for msg in self._messages("Watch", lambda: self.request):
            yield Lost(msg.lost) if msg.WhichOneof("kind") == "lost" else msg.event
