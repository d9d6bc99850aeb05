"""The API's Unix sockets, with the callers' credentials.

gRPC gives a servicer neither the connection's fd nor SO_PEERCRED (grpc/grpc#15511: the
auth context of a Unix socket is empty; its peer is `unix:`). So the daemon accepts on the
public sockets itself, reads SO_PEERCRED, and relays the bytes to gRPC's own listener, a
private socket (0600, root). Each relayed connection comes from a socket autobound to a unique
abstract address, which gRPC reports as the call's peer (`unix-abstract:XXXXX`): the relay's
table maps it to the socket the client used and its uid/gid/pid. A connection to the private
socket that did not come through the relay is in no table and gets no role.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from vswitchd.api.roles import Role
from vswitchd.errors import FailedPrecondition

log = logging.getLogger(__name__)

# Connections at once per public socket; more wait in the listen backlog. Each takes two
# threads while it lasts; its streams are capped by grpc.max_concurrent_streams (server.py).
MAX_CONNECTIONS = 256
_CHUNK = 64 << 10  # a read: below the malloc mmap threshold (vswitchd.main), so no mmap per read
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class UnixPeer:
    listener: str  # the public socket's path
    role: Role
    uid: int
    gid: int
    pid: int

    def who(self) -> str:
        return f"uid={self.uid} gid={self.gid} pid={self.pid}"


def claim_socket_path(path: str) -> None:
    """Remove a stale socket file; refuse if a live daemon answers on it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over from a daemon that died
        return
    finally:
        probe.close()
    raise FailedPrecondition(f"another vswitchd is already listening on {path}")


def bind_private(path: str, mode: int, gid: int = -1) -> socket.socket:
    """A listening Unix socket at PATH, born 0600 root:root (umask) and only then given GID and
    MODE: it is never more open than asked."""
    claim_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    if gid != -1:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    sock.listen(128)
    return sock


class Relay:
    """Public Unix sockets -> gRPC's private socket, remembering who is behind each
    connection."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._peers: dict[str, UnixPeer] = {}  # gRPC's peer string -> who
        self._lock = threading.Lock()
        self._listeners: list[tuple[str, socket.socket]] = []
        self._conns: set[socket.socket] = set()
        self._closing = False

    def listen(self, path: str, role: Role, mode: int, gid: int = -1) -> None:
        sock = bind_private(path, mode, gid)
        self._listeners.append((path, sock))
        threading.Thread(target=self._accept, args=(sock, path, role), daemon=True,
                         name=f"accept-{role}").start()

    def peer(self, grpc_peer: str) -> UnixPeer | None:
        with self._lock:
            return self._peers.get(grpc_peer)

    def _accept(self, listener: socket.socket, path: str, role: Role) -> None:
        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        while True:
            slots.acquire()
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: the daemon stops
            try:
                self._start(client, path, role, slots)
            except OSError as exc:
                log.warning("cannot relay a connection on %s: %s", path, exc)
                client.close()
                slots.release()

    def _start(self, client: socket.socket, path: str, role: Role,
               slots: threading.BoundedSemaphore) -> None:
        pid, uid, gid = _UCRED.unpack(
            client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        key = ""
        try:
            upstream.bind("")  # autobind: a unique abstract address, gRPC's peer for us
            key = "unix-abstract:" + upstream.getsockname()[1:].decode()
            with self._lock:
                if self._closing:
                    raise OSError("the daemon is stopping")
                self._peers[key] = UnixPeer(path, role, uid, gid, pid)
                self._conns.update((client, upstream))
            upstream.connect(self.target)
        except OSError:
            self._forget(key, client, upstream)
            upstream.close()
            raise
        done = threading.Barrier(2, action=lambda: self._end(key, client, upstream, slots))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(src, dst, done), daemon=True,
                             name="relay").start()

    def _forget(self, key: str, *socks: socket.socket) -> None:
        with self._lock:
            self._peers.pop(key, None)
            self._conns.difference_update(socks)

    def _end(self, key: str, client: socket.socket, upstream: socket.socket,
             slots: threading.BoundedSemaphore) -> None:
        # forget the address before it is freed, so nobody can inherit it
        self._forget(key, client, upstream)
        client.close()
        upstream.close()
        slots.release()

    def stop_accepting(self) -> None:
        """Close the public sockets and remove their files; open connections go on."""
        with self._lock:
            self._closing = True
        for path, sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._listeners.clear()

    def close(self) -> None:
        """End every connection (after gRPC's grace for the calls on them)."""
        self.stop_accepting()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _pump(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)  # the other side sees the end
    with contextlib.suppress(OSError):
        src.shutdown(socket.SHUT_RD)
    done.wait()
