"""Where vswitchd's API socket is by default. No grpcio here: vswctl's unary commands read
this without loading it (`vswctl.unary`)."""

from __future__ import annotations

import os

DEFAULT_SOCKET = "/run/vswitchd/vswitchd.sock"
SOCKET_ENV = "VSWITCHD_SOCKET"


def default_socket_path() -> str:
    """The daemon's socket: $VSWITCHD_SOCKET when set and not empty, else the built-in path."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
