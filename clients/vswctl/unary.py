"""Unary gRPC calls over a Unix socket without grpcio: what every vswctl command needs except
the three that stream (watch, events, packet-in; `vswctl.daemon` gives them grpcio).

Why not grpcio: importing it takes 40-60 ms, most of a command that should take 50 ms in all
(`vswctl status`, issue 16). The daemon is still the one gRPC server; this is only a smaller
client of the same protocol, for the one shape of call vswctl makes most.

The protocol is gRPC's (grpc/doc/PROTOCOL-HTTP2.md) on HTTP/2 (RFC 9113), one call per stream,
calls in turn on one connection:
- we send the preface and our SETTINGS: a window of 2^31-1 bytes on the connection and each
  stream, so a reply of any size we accept arrives without a WINDOW_UPDATE from us;
- a request goes as HEADERS and DATA frames, within the daemon's frame size and flow-control
  windows (a request larger than them waits for its WINDOW_UPDATEs);
- we answer SETTINGS and PING, and read the reply's HEADERS, DATA and trailers (or a
  trailers-only reply). `vswctl.hpackcodec` encodes and decodes the header blocks.
Errors are `CallError` with the call's status `Code`, named as grpcio names them.
"""

from __future__ import annotations

import enum
import socket
import struct
import time

from vswctl import hpackcodec

# frame types and flags (RFC 9113 section 6)
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
# settings
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x2, 0x4, 0x5

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
OUR_MAX_FRAME = 1 << 20  # a large reply in fewer frames


class Code(enum.IntEnum):
    """gRPC status codes (grpc/doc/statuscodes.md), with grpcio's names."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# an HTTP status other than 200 (PROTOCOL-HTTP2.md's mapping), and a stream reset's error code
_HTTP_CODES = {400: Code.INTERNAL, 401: Code.UNAUTHENTICATED, 403: Code.PERMISSION_DENIED,
               404: Code.UNIMPLEMENTED, 429: Code.UNAVAILABLE, 502: Code.UNAVAILABLE,
               503: Code.UNAVAILABLE, 504: Code.UNAVAILABLE}
_RESET_CODES = {0x7: Code.UNAVAILABLE, 0x8: Code.CANCELLED, 0xB: Code.RESOURCE_EXHAUSTED,
                0xC: Code.PERMISSION_DENIED}


class CallError(Exception):
    """A call that did not return OK: `code()` and `details()`, as on grpc.RpcError."""

    def __init__(self, code: Code, details: str):
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> Code:
        return self._code

    def details(self) -> str:
        return self._details


class Connection:
    """One HTTP/2 connection to a gRPC server's Unix socket; `call` makes one unary call on it.

    It connects on the first call; a connection error is that call's UNAVAILABLE.
    """

    def __init__(self, socket_path: str, authority: str = "localhost"):
        self.socket_path = socket_path
        self._authority = authority
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._deadline = 0.0
        self._fresh_connection_state()

    def _fresh_connection_state(self) -> None:
        """What a new connection starts from: HTTP/2's defaults until the daemon's SETTINGS."""
        self._decoder = hpackcodec.Decoder()
        self._next_stream = 1
        self._max_frame = DEFAULT_FRAME
        self._initial_window = DEFAULT_WINDOW  # the daemon's, for each new stream we send on
        self._conn_window = DEFAULT_WINDOW

    # ------------------------------------------------------------ the call

    def call(self, path: str, request: bytes, timeout: float | None = None) -> bytes:
        """The reply message's bytes for the request message's bytes, or CallError."""
        self._deadline = time.monotonic() + timeout if timeout is not None else 0.0
        try:
            if self._sock is None:
                self._connect()
            call = _Stream(self._next_stream, self._initial_window)
            self._next_stream += 2
            headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                       (":authority", self._authority), ("te", "trailers"),
                       ("content-type", "application/grpc"), ("user-agent", "vswctl")]
            if timeout is not None:  # the server gives up too (millis: at most 8 digits)
                millis = min(max(int(timeout * 1000), 1), 99_999_999)
                headers.append(("grpc-timeout", f"{millis}m"))
            self._send_headers(call.sid, hpackcodec.encode(headers))
            # the gRPC message: not compressed, its length, its bytes
            self._send_data(call, b"\0" + len(request).to_bytes(4, "big") + request)
            while not call.ended:
                self._receive(call)
        except CallError:
            self.close()  # the connection's state is unknown: the next call makes a new one
            raise
        return call.reply()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf.clear()

    # ------------------------------------------------------------ sending

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._remaining())
            sock.connect(self.socket_path)
        except TimeoutError:
            sock.close()
            raise _deadline_exceeded() from None
        except OSError as exc:
            sock.close()
            raise CallError(Code.UNAVAILABLE, exc.strerror or str(exc)) from None
        self._sock = sock
        self._fresh_connection_state()
        settings = struct.pack(">HIHIHI", SETTINGS_ENABLE_PUSH, 0,
                               SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW,
                               SETTINGS_MAX_FRAME_SIZE, OUR_MAX_FRAME)
        self._write(PREFACE + _frame(SETTINGS, 0, 0, settings)
                    + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)))

    def _send_headers(self, sid: int, block: bytes) -> None:
        chunks = [block[i:i + self._max_frame] for i in range(0, len(block), self._max_frame)]
        frames = [_frame(CONTINUATION if i else HEADERS, END_HEADERS if i == len(chunks) - 1 else 0,
                         sid, chunk) for i, chunk in enumerate(chunks)]
        self._write(b"".join(frames))

    def _send_data(self, call: _Stream, message: bytes) -> None:
        """The message in DATA frames as the windows allow; the last one ends our side."""
        view = memoryview(message)
        while view:
            n = min(len(view), self._max_frame, self._conn_window, call.window)
            if n <= 0:  # a window is shut (or below 0: the daemon's SETTINGS made it smaller)
                self._receive(call)  # wait for its WINDOW_UPDATE
                if call.ended:  # the daemon answered (a refusal) before reading it all
                    return
                continue
            last = n == len(view)
            self._write(_frame(DATA, END_STREAM if last else 0, call.sid, bytes(view[:n])))
            view = view[n:]
            self._conn_window -= n
            call.window -= n

    def _write(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self._remaining())
            self._sock.sendall(data)
        except TimeoutError:
            raise _deadline_exceeded() from None
        except OSError as exc:
            raise _closed(exc) from None

    # ------------------------------------------------------------ receiving

    def _receive(self, call: _Stream) -> None:
        """Reads one frame (a header block: with its CONTINUATIONs) and acts on it."""
        ftype, flags, sid, payload = self._frame()
        if ftype == DATA:
            if sid == call.sid:  # no WINDOW_UPDATE needed: our windows are 2^31-1
                call.data += _unpadded(payload, flags)
                call.ended = bool(flags & END_STREAM)
        elif ftype == HEADERS:
            block = _unpadded(payload, flags)
            if flags & PRIORITY:
                block = block[5:]
            end_stream = flags & END_STREAM
            while not flags & END_HEADERS:
                ftype, flags, more_sid, payload = self._frame()
                if ftype != CONTINUATION or more_sid != sid:
                    raise CallError(Code.INTERNAL, "HTTP/2: a header block was cut")
                block += payload
            try:  # every block: it updates the dynamic table
                headers = self._decoder.decode(block)
            except hpackcodec.HpackError as exc:
                raise CallError(Code.INTERNAL, f"HTTP/2: {exc}") from None
            if sid == call.sid:
                call.headers.update(headers)
                call.ended = bool(end_stream)
        elif ftype == SETTINGS and not flags & ACK:
            self._apply_settings(payload, call)
            self._write(_frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self._write(_frame(PING, ACK, 0, payload))
        elif ftype == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFF_FFFF
            if sid == 0:
                self._conn_window += increment
            elif sid == call.sid:
                call.window += increment
        elif ftype == RST_STREAM and sid == call.sid:
            error = int.from_bytes(payload[:4], "big")
            raise CallError(_RESET_CODES.get(error, Code.INTERNAL),
                            f"the daemon reset the call (HTTP/2 error {error:#x})")
        elif ftype == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFF_FFFF
            if last < call.sid:
                raise CallError(Code.UNAVAILABLE, "the daemon is closing the connection")
        # PRIORITY, PUSH_PROMISE (we disabled push), unknown types: nothing to do

    def _apply_settings(self, payload: bytes, call: _Stream) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            # (the server's HEADER_TABLE_SIZE does not matter: we never index a header)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:  # applies to the open stream too
                call.window += value - self._initial_window
                self._initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._max_frame = value

    def _frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        sid = int.from_bytes(head[5:9], "big") & 0x7FFF_FFFF
        return head[3], head[4], sid, self._read(length)

    def _read(self, n: int) -> bytes:
        assert self._sock is not None
        while len(self._buf) < n:
            try:
                self._sock.settimeout(self._remaining())
                chunk = self._sock.recv(max(65_536, n - len(self._buf)))
            except TimeoutError:
                raise _deadline_exceeded() from None
            except OSError as exc:
                raise _closed(exc) from None
            if not chunk:
                raise CallError(Code.UNAVAILABLE, "the daemon closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _remaining(self) -> float | None:
        if not self._deadline:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _deadline_exceeded()
        return left


class _Stream:
    """One call's stream: our send window on it, and what came back."""

    def __init__(self, sid: int, window: int):
        self.sid = sid
        self.window = window
        self.headers: dict[str, str] = {}  # the reply's headers and trailers
        self.data = bytearray()
        self.ended = False

    def reply(self) -> bytes:
        """The reply message, or the call's CallError."""
        status = self.headers.get(":status", "")
        if status != "200":
            code = _HTTP_CODES.get(int(status) if status.isdigit() else 0, Code.UNKNOWN)
            raise CallError(code, f"the daemon answered with HTTP status {status or 'none'}")
        try:
            code = Code(int(self.headers["grpc-status"]))
        except (KeyError, ValueError):
            code = Code.UNKNOWN
        if code != Code.OK:
            raise CallError(code, _unpercent(self.headers.get("grpc-message", "")))
        length = int.from_bytes(self.data[1:5], "big")
        if len(self.data) != 5 + length or self.data[0] != 0:
            raise CallError(Code.INTERNAL, "the reply is not one uncompressed gRPC message")
        return bytes(self.data[5:])


def _deadline_exceeded() -> CallError:
    return CallError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")  # grpcio's words


def _closed(exc: OSError) -> CallError:
    return CallError(Code.UNAVAILABLE, f"the daemon closed the connection ({exc.strerror})")


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big")
    return head + payload


def _unpadded(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    return payload[1:len(payload) - payload[0]]


def _unpercent(message: str) -> str:
    """grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md)."""
    if "%" not in message:
        return message
    raw = message.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and _is_hex(raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)
