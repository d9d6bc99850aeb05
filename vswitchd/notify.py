"""systemd readiness notification (sd_notify) without a libsystemd dependency.

With Type=notify, systemd sets NOTIFY_SOCKET; we send "READY=1" once the API listens and the
datapath is attached, "STOPPING=1" on the way out. Without NOTIFY_SOCKET this does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send STATE (e.g. "READY=1") to systemd; False when not run under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
